"""PostgreSQL: the ledger's unit of work on the asyncpg driver.

A unit checks a connection out of SQLAlchemy's pool, opens its own
READ COMMITTED transaction on the driver, and runs its few statements there,
compiled once: SQLAlchemy's per-execution work (parameter processing, result
metadata) costs several times the round trip itself on this hot path.
Everything else (pool, migrations, history, audit) stays on SQLAlchemy.

Locking and reading is one call of the ``open_account`` function (see
``ledger_store``). Writing is one statement of a fixed shape: each kind of
change is a data-modifying CTE over ``unnest()`` of parameter arrays, and an
empty array is a no-op. One prepared statement therefore serves every unit
of work, however many rows of each kind it writes, in one round trip; a
second, with only the parts a spend needs, serves the commonest case; the
same CTEs with an account id per row serve the reset job's batches. Foreign keys are checked at the
end of the statement, so entries may reference grants and holds inserted by
the same statement; rows are never both inserted and updated by it (the
services fold such changes into the insert). An update with nothing to do
is gated by a parameter-only condition, which PostgreSQL evaluates once,
before touching the table, so a spend never reads the holds table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from sqlalchemy import (
    ARRAY,
    ClauseElement,
    String,
    Table,
    TextClause,
    any_,
    bindparam,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import greenlet_spawn

from ..base import AccountRow, Changes
from .faults import raise_if_transient, transient_reason
from .records import account_row, entry_row, grant_row, hold_row, key_rows
from .tables import Tables, UTCDateTime

# Each kind of change is one data-modifying CTE. Only table names are
# interpolated, and they come from a prefix that SQLAlchemyStorage validated
# against ^[a-z][a-z0-9_]*$.
T = TypeVar("T")

# Tries of a unit whose connection turned out dead before its first statement.
_FIRST_ATTEMPTS = 3

_GRANT = (
    ("id", "varchar"),
    ("kind", "varchar"),
    ("amount", "bigint"),
    ("remaining", "bigint"),
    ("priority", "integer"),
    ("effective_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("created_at", "timestamptz"),
    ("description", "text"),
    ("period", "integer"),
)
_HOLD = (
    ("id", "varchar"),
    ("amount", "bigint"),
    ("captured", "bigint"),
    ("status", "varchar"),
    ("draws", "text"),
    ("created_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("settled_at", "timestamptz"),
)
_ENTRY = (
    ("id", "varchar"),
    ("type", "varchar"),
    ("amount", "bigint"),
    ("balance_after", "bigint"),
    ("created_at", "timestamptz"),
    ("description", "text"),
    ("grant_id", "varchar"),
    ("hold_id", "varchar"),
    ("draws", "text"),
)
_KEY = (
    ("key", "varchar"),
    ("request_hash", "varchar"),
    ("entry_id", "varchar"),
    ("hold_id", "varchar"),
    ("created_at", "timestamptz"),
)
_ACCOUNT = (
    ("sub_anchor", "timestamptz"),
    ("sub_credits", "bigint"),
    ("sub_last_period", "integer"),
    ("sub_ends_after", "integer"),
    ("sub_next_credits", "bigint"),
    ("sub_next_from", "integer"),
    ("due_at", "timestamptz"),
)
_ACCOUNT_ID = (("account_id", "bigint"),)


def _unnest(prefix: str, columns: tuple[tuple[str, str], ...], *, ordinality: bool = False) -> str:
    """``unnest()`` of one array parameter per column, as ``x``."""
    arrays = ", ".join(f"CAST(:{prefix}_{name} AS {type_}[])" for name, type_ in columns)
    names = ", ".join(name for name, _ in columns) + (", n" if ordinality else "")
    return f"unnest({arrays}){' WITH ORDINALITY' if ordinality else ''} AS x({names})"


def _insert(table: str, prefix: str, columns: tuple[tuple[str, str], ...], batch: bool) -> str:
    """Insert the rows of ``prefix``'s arrays, with one account id or one per row."""
    names = [name for name, _ in columns]
    account = "x.account_id" if batch else ":account_id"
    ordered = prefix == "e"  # entries take their seq in the order given
    source = _unnest(prefix, (_ACCOUNT_ID if batch else ()) + columns, ordinality=ordered)
    return f"""
    INSERT INTO {table} (account_id, {", ".join(names)})
    SELECT {account}, {", ".join(f"x.{n}" for n in names)}
    FROM {source}{" ORDER BY x.n" if ordered else ""}
    RETURNING 1
"""


def _ctes(t: Tables, batch: bool) -> dict[str, str]:
    a, g, h = t.accounts.name, t.grants.name, t.holds.name
    if batch:
        account = f"""
    UPDATE {a} AS target SET {", ".join(f"{n} = x.{n}" for n, _ in _ACCOUNT)}
    FROM {_unnest("a", _ACCOUNT_ID + _ACCOUNT)}
    WHERE target.id = x.account_id
    RETURNING 1
"""
    else:
        account = f"""
    UPDATE {a} SET {", ".join(f"{n} = :a_{n}" for n, _ in _ACCOUNT)}
    WHERE id = :account_id AND CAST(:a_set AS boolean)
    RETURNING 1
"""
    return {
        "account": account,
        "new_grants": _insert(g, "g", _GRANT, batch),
        "remaining": f"""
    UPDATE {g} AS target SET remaining = x.remaining
    FROM {_unnest("r", (("id", "varchar"), ("remaining", "bigint")))}
    WHERE target.id = x.id AND cardinality(CAST(:r_id AS varchar[])) > 0
    RETURNING 1
""",
        "new_holds": _insert(h, "h", _HOLD, batch),
        "settled": f"""
    UPDATE {h} AS target
    SET status = x.status, captured = x.captured, settled_at = x.settled_at
    FROM {
            _unnest(
                "s",
                (
                    ("id", "varchar"),
                    ("status", "varchar"),
                    ("captured", "bigint"),
                    ("settled_at", "timestamptz"),
                ),
            )
        }
    WHERE target.id = x.id AND cardinality(CAST(:s_id AS varchar[])) > 0
    RETURNING 1
""",
        "new_entries": _insert(t.entries.name, "e", _ENTRY, batch),
        "new_keys": _insert(t.keys.name, "k", _KEY, batch),
    }


ALL_CHANGES = (
    "account",
    "new_grants",
    "remaining",
    "new_holds",
    "settled",
    "new_entries",
    "new_keys",
)
# A plain spend (or a capture that returns nothing to a dead grant) only
# updates grants and appends entries and keys: a statement with just those
# parts spares encoding and running the empty rest.
SPEND_CHANGES = ("remaining", "new_entries", "new_keys")


def build_write(
    t: Tables, parts: tuple[str, ...] = ALL_CHANGES, *, batch: bool = False
) -> TextClause:
    """One statement writing the given kinds of change, returning the rows touched.

    With ``batch``, rows carry their own account ids, for many accounts at once.
    """
    ctes = _ctes(t, batch)
    with_clause = ",\n".join(f"{name} AS (\n{ctes[name].strip(chr(10))}\n)" for name in parts)
    total = "\n     + ".join(f"(SELECT count(*) FROM {name})" for name in parts)
    return text(f"WITH {with_clause}\nSELECT {total}")


def _columns(prefix: str, rows: list[dict[str, Any]], table: Table) -> dict[str, list[Any]]:
    """Row dicts transposed into one array parameter per column, ``<prefix>_<column>``."""
    names = rows[0].keys() if rows else table.columns.keys()
    return {f"{prefix}_{name}": [row[name] for row in rows] for name in names}


def write_params(
    t: Tables,
    items: Sequence[tuple[int, Changes]],
    *,
    batch: bool = False,
    parts: tuple[str, ...] = ALL_CHANGES,
) -> dict[str, Any]:
    """Array parameters for ``build_write``, from the same row mappings SQLite inserts.

    ``items`` pairs account ids with their changes: exactly one unless
    ``batch``. Only the ``parts`` the statement writes are built.
    """
    if not batch and len(items) != 1:
        raise ValueError("a one-account statement writes one account's changes")
    params: dict[str, Any] = {}
    if "new_grants" in parts:
        grants = [grant_row(x, a) for a, c in items for x in c.new_grants]
        params.update(_columns("g", grants, t.grants))
    if "remaining" in parts:
        remaining = [(k, v) for _, c in items for k, v in c.grant_remaining.items()]
        params["r_id"] = [k for k, _ in remaining]
        params["r_remaining"] = [v for _, v in remaining]
    if "new_holds" in parts:
        holds = [hold_row(x, a) for a, c in items for x in c.new_holds]
        params.update(_columns("h", holds, t.holds))
    if "settled" in parts:
        settled = [x for _, c in items for x in c.updated_holds]
        params["s_id"] = [x.id for x in settled]
        params["s_status"] = [x.status for x in settled]
        params["s_captured"] = [x.captured for x in settled]
        params["s_settled_at"] = [x.settled_at for x in settled]
    if "new_entries" in parts:
        entries = [entry_row(x, a) for a, c in items for x in c.new_entries]
        params.update(_columns("e", entries, t.entries))
    if "new_keys" in parts:
        params.update(_columns("k", [row for a, c in items for row in key_rows(c, a)], t.keys))
    if "account" in parts:
        if batch:
            accounts = [(a, account_row(c.account)) for a, c in items if c.account is not None]
            params["a_account_id"] = [a for a, _ in accounts]
            for name, _ in _ACCOUNT:
                params[f"a_{name}"] = [row[name] for _, row in accounts]
        else:
            ((_, changes),) = items
            row = account_row(changes.account or AccountRow(subscription=None, due_at=None))
            params.update({f"a_{name}": value for name, value in row.items()})
            params["a_set"] = changes.account is not None
    if not batch:
        params["account_id"] = items[0][0]
    return params


def expected_rows(changes: Changes) -> int:
    """How many rows ``build_write`` must insert or update for ``changes``."""
    return (
        (changes.account is not None)
        + len(changes.new_grants)
        + len(changes.grant_remaining)
        + len(changes.new_holds)
        + len(changes.updated_holds)
        + len(changes.new_entries)
        + len(key_rows(changes, 0))
    )


class DriverStatement:
    """A SQLAlchemy statement compiled once to asyncpg's ``$n`` form."""

    def __init__(self, clause: ClauseElement) -> None:
        compiled = cast(
            SQLCompiler,
            clause.compile(dialect=PGDialect_asyncpg()),  # type: ignore[no-untyped-call]
        )
        self.sql = str(compiled)
        self.order = list(compiled.positiontup or ())
        # Literals in the statement (``remaining > 0``) are parameters too.
        self.fixed = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.callable is None
        }

    def args(self, params: dict[str, Any]) -> list[Any]:
        """Positional arguments, in the order the compiled SQL numbers them."""
        fixed = self.fixed
        if not fixed:
            return [params[name] for name in self.order]
        return [params[name] if name in params else fixed[name] for name in self.order]


class PostgresStatements:
    """The unit of work's statements, compiled for the driver."""

    def __init__(self, tables: Tables, function_name: str) -> None:
        t = tables
        acc, g, h = t.accounts, t.grants, t.holds
        self.open_sql = f"SELECT * FROM {function_name}($1, $2, $3)"
        self.create_account = DriverStatement(
            postgresql.insert(acc)
            .values(user_id=bindparam("user_id"), created_at=bindparam("now", type_=UTCDateTime()))
            .on_conflict_do_nothing(index_elements=[acc.c.user_id])
            .returning(acc.c.id)
        )
        self.grants_by_id = DriverStatement(
            select(g).where(g.c.id == any_(bindparam("ids", type_=ARRAY(String()))))
        )
        self.hold_by_id = DriverStatement(select(h).where(h.c.id == bindparam("id")))
        self.tables = t
        self.write_all = DriverStatement(build_write(t))
        self.write_spend = DriverStatement(build_write(t, SPEND_CHANGES))


class PostgresExecutor:
    """Runs a unit's statements on an asyncpg connection inside its transaction."""

    def __init__(self, driver: Any, sql: PostgresStatements) -> None:
        self._driver = driver
        self._sql = sql

    async def open(self, user_id: str, key: str | None, lock: bool) -> Iterable[Any]:
        rows: Iterable[Any] = await self._driver.fetch(self._sql.open_sql, user_id, key, lock)
        return rows

    async def create_account(self, user_id: str, now: datetime) -> int | None:
        statement = self._sql.create_account
        params = {"user_id": user_id, "now": now}
        created: int | None = await self._driver.fetchval(statement.sql, *statement.args(params))
        return created

    async def grants(self, ids: list[str]) -> list[Any]:
        statement = self._sql.grants_by_id
        rows = await self._driver.fetch(statement.sql, *statement.args({"ids": ids}))
        return [SimpleNamespace(**dict(r)) for r in rows]

    async def hold(self, hold_id: str) -> Any | None:
        statement = self._sql.hold_by_id
        row = await self._driver.fetchrow(statement.sql, *statement.args({"id": hold_id}))
        return None if row is None else SimpleNamespace(**dict(row))

    async def write(self, changes: Changes, account_id: int) -> None:
        spend_shaped = not (
            changes.account or changes.new_grants or changes.new_holds or changes.updated_holds
        )
        parts = SPEND_CHANGES if spend_shaped else ALL_CHANGES
        statement = self._sql.write_spend if spend_shaped else self._sql.write_all
        args = statement.args(write_params(self._sql.tables, [(account_id, changes)], parts=parts))
        written = await self._driver.fetchval(statement.sql, *args)
        if written != expected_rows(changes):
            # An update that matched no row means our view of the account was
            # wrong; raising rolls back, so half a decision is never committed.
            raise RuntimeError(f"wrote {written} rows, expected {expected_rows(changes)}")


@asynccontextmanager
async def driver_transaction(
    engine: AsyncEngine, *, write: bool, first: Callable[[Any], Awaitable[T]]
) -> AsyncIterator[T]:
    """A pooled connection's asyncpg driver, in a READ COMMITTED transaction for writes.

    ``first(driver)`` runs the unit's first statements (for the ledger, the
    account's lock and read) and its result is what the context yields.

    READ COMMITTED whatever the engine's default: the locking read relies on
    each statement taking a fresh snapshot. After a failure that may have left
    the connection unusable (it closed, it is still inside a transaction, a
    statement was cut short), it is invalidated so the pool never hands it
    out again; read units included. A connection the server closed before
    anything of the unit was done (a restart or a killed backend, not yet
    noticed by the driver when it was checked out) is replaced, up to
    ``_FIRST_ATTEMPTS`` times; any other passing failure is raised as
    ``StorageUnavailable``.
    """
    for attempt in range(1, _FIRST_ATTEMPTS + 1):
        try:
            # The pool's raw connection: the unit needs nothing of SQLAlchemy's
            # Connection, and skipping it saves a good share of the per-call cost.
            pooled = await engine.raw_connection()
        except Exception as exc:
            raise_if_transient(exc)
            raise
        opened = False
        try:
            driver: Any = pooled.driver_connection
            if not write:
                # A read unit's answer rests on one statement (the lock-free
                # call), consistent on its own; anything needing a second one
                # also has changes to record, and the ledger redoes it as a
                # locked write. So no BEGIN and COMMIT round trips.
                result = await first(driver)
                opened = True
                yield result
            else:
                async with driver.transaction(isolation="read_committed"):
                    result = await first(driver)
                    opened = True
                    yield result
            return
        except BaseException as exc:
            if _unusable(driver, exc):
                await greenlet_spawn(pooled.invalidate)
            if not isinstance(exc, Exception):
                raise
            if not opened and attempt < _FIRST_ATTEMPTS and transient_reason(exc) is not None:
                # Nothing was done: the same unit on another connection. One
                # turn of the loop first, so the driver sees the other
                # connections the server closed meanwhile, and the pool's
                # check at checkout replaces them.
                await asyncio.sleep(0)
                continue
            raise_if_transient(exc)
            raise
        finally:
            await greenlet_spawn(pooled.close)


def _unusable(driver: Any, exc: BaseException) -> bool:
    """Whether the connection may not be pooled again after ``exc``.

    Errors of the code using the unit (an account not found, refused
    credits) and statement errors the server reported (with a SQLSTATE not
    about the connection) leave it idle and usable. A cancellation (maybe
    mid-statement), a socket error or another driver error may leave it
    closed, mid-statement, or inside a transaction that still holds the
    account's lock, none of which the pool can see.
    """
    if driver.is_closed() or driver.is_in_transaction():
        return True
    if not isinstance(exc, Exception) or isinstance(exc, OSError):
        return True
    if not type(exc).__module__.startswith("asyncpg"):
        return False
    return not isinstance(getattr(exc, "sqlstate", None), str) or transient_reason(exc) is not None
