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
second, with only the parts a spend needs, serves the commonest case.

The statement has a fixed shape: each kind of change is a data-modifying CTE
over ``unnest()`` of parameter arrays, and an empty array is a no-op. One
prepared statement therefore serves every unit of work, however many rows
of each kind it writes, in one round trip. Foreign keys are checked at the
end of the statement, so entries may reference grants and holds inserted by
the same statement; rows are never both inserted and updated by it (the
services fold such changes into the insert). An update with nothing to do
is gated by a parameter-only condition, which PostgreSQL evaluates once,
before touching the table, so a spend never reads the holds table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

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
from .records import account_row, entry_row, grant_row, hold_row, key_rows
from .tables import Tables, UTCDateTime


# Each kind of change is one data-modifying CTE. Only table names are
# interpolated, and they come from a prefix that SQLAlchemyStorage validated
# against ^[a-z][a-z0-9_]*$.
def _ctes(t: Tables) -> dict[str, str]:
    a, g, h, e, k = t.accounts.name, t.grants.name, t.holds.name, t.entries.name, t.keys.name
    return {
        "account": f"""
    UPDATE {a} SET sub_anchor = :a_sub_anchor, sub_credits = :a_sub_credits,
        sub_last_period = :a_sub_last_period, sub_ends_after = :a_sub_ends_after,
        sub_next_credits = :a_sub_next_credits, sub_next_from = :a_sub_next_from,
        due_at = :a_due_at
    WHERE id = :account_id AND CAST(:a_set AS boolean)
    RETURNING 1
""",
        "new_grants": f"""
    INSERT INTO {g} (id, account_id, kind, amount, remaining, priority,
                     effective_at, expires_at, created_at, description, period)
    SELECT x.id, :account_id, x.kind, x.amount, x.remaining, x.priority,
           x.effective_at, x.expires_at, x.created_at, x.description, x.period
    FROM unnest(CAST(:g_id AS varchar[]), CAST(:g_kind AS varchar[]),
                CAST(:g_amount AS bigint[]), CAST(:g_remaining AS bigint[]),
                CAST(:g_priority AS integer[]), CAST(:g_effective_at AS timestamptz[]),
                CAST(:g_expires_at AS timestamptz[]), CAST(:g_created_at AS timestamptz[]),
                CAST(:g_description AS text[]), CAST(:g_period AS integer[]))
         AS x(id, kind, amount, remaining, priority, effective_at, expires_at,
              created_at, description, period)
    RETURNING 1
""",
        "remaining": f"""
    UPDATE {g} AS target SET remaining = x.remaining
    FROM unnest(CAST(:r_id AS varchar[]), CAST(:r_remaining AS bigint[])) AS x(id, remaining)
    WHERE target.id = x.id AND cardinality(CAST(:r_id AS varchar[])) > 0
    RETURNING 1
""",
        "new_holds": f"""
    INSERT INTO {h} (id, account_id, amount, captured, status, draws, created_at,
                     expires_at, settled_at)
    SELECT x.id, :account_id, x.amount, x.captured, x.status, x.draws, x.created_at,
           x.expires_at, x.settled_at
    FROM unnest(CAST(:h_id AS varchar[]), CAST(:h_amount AS bigint[]),
                CAST(:h_captured AS bigint[]), CAST(:h_status AS varchar[]),
                CAST(:h_draws AS text[]), CAST(:h_created_at AS timestamptz[]),
                CAST(:h_expires_at AS timestamptz[]), CAST(:h_settled_at AS timestamptz[]))
         AS x(id, amount, captured, status, draws, created_at, expires_at, settled_at)
    RETURNING 1
""",
        "settled": f"""
    UPDATE {h} AS target
    SET status = x.status, captured = x.captured, settled_at = x.settled_at
    FROM unnest(CAST(:s_id AS varchar[]), CAST(:s_status AS varchar[]),
                CAST(:s_captured AS bigint[]), CAST(:s_settled_at AS timestamptz[]))
         AS x(id, status, captured, settled_at)
    WHERE target.id = x.id AND cardinality(CAST(:s_id AS varchar[])) > 0
    RETURNING 1
""",
        "new_entries": f"""
    INSERT INTO {e} (id, account_id, type, amount, balance_after, created_at, description,
                     grant_id, hold_id, draws)
    SELECT x.id, :account_id, x.type, x.amount, x.balance_after, x.created_at,
           x.description, x.grant_id, x.hold_id, x.draws
    FROM unnest(CAST(:e_id AS varchar[]), CAST(:e_type AS varchar[]),
                CAST(:e_amount AS bigint[]), CAST(:e_balance_after AS bigint[]),
                CAST(:e_created_at AS timestamptz[]), CAST(:e_description AS text[]),
                CAST(:e_grant_id AS varchar[]), CAST(:e_hold_id AS varchar[]),
                CAST(:e_draws AS text[]))
         WITH ORDINALITY
         AS x(id, type, amount, balance_after, created_at, description, grant_id, hold_id,
              draws, n)
    ORDER BY x.n
    RETURNING 1
""",
        "new_keys": f"""
    INSERT INTO {k} (account_id, key, request_hash, entry_id, hold_id, created_at)
    SELECT :account_id, x.key, x.request_hash, x.entry_id, x.hold_id, x.created_at
    FROM unnest(CAST(:k_key AS varchar[]), CAST(:k_request_hash AS varchar[]),
                CAST(:k_entry_id AS varchar[]), CAST(:k_hold_id AS varchar[]),
                CAST(:k_created_at AS timestamptz[]))
         AS x(key, request_hash, entry_id, hold_id, created_at)
    RETURNING 1
""",
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


def build_write(t: Tables, parts: tuple[str, ...] = ALL_CHANGES) -> TextClause:
    """One statement writing the given kinds of change, returning the rows touched."""
    ctes = _ctes(t)
    with_clause = ",\n".join(f"{name} AS (\n{ctes[name].strip(chr(10))}\n)" for name in parts)
    total = "\n     + ".join(f"(SELECT count(*) FROM {name})" for name in parts)
    return text(f"WITH {with_clause}\nSELECT {total}")


def _columns(prefix: str, rows: list[dict[str, Any]], table: Table) -> dict[str, list[Any]]:
    """Row dicts transposed into one array parameter per column, ``<prefix>_<column>``."""
    names = rows[0].keys() if rows else table.columns.keys()
    return {f"{prefix}_{name}": [row[name] for row in rows] for name in names}


def write_all_params(t: Tables, changes: Changes, account_id: int) -> dict[str, Any]:
    """Array parameters for ``build_write``, from the same row mappings SQLite inserts."""
    a = account_id
    settled = changes.updated_holds
    row = account_row(changes.account or AccountRow(subscription=None, due_at=None))
    return {
        "account_id": a,
        "a_set": changes.account is not None,
        **{f"a_{name}": value for name, value in row.items()},
        **_columns("g", [grant_row(x, a) for x in changes.new_grants], t.grants),
        "r_id": list(changes.grant_remaining),
        "r_remaining": list(changes.grant_remaining.values()),
        **_columns("h", [hold_row(x, a) for x in changes.new_holds], t.holds),
        "s_id": [x.id for x in settled],
        "s_status": [x.status for x in settled],
        "s_captured": [x.captured for x in settled],
        "s_settled_at": [x.settled_at for x in settled],
        **_columns("e", [entry_row(x, a) for x in changes.new_entries], t.entries),
        **_columns("k", key_rows(changes, a), t.keys),
    }


def expected_rows(changes: Changes) -> int:
    """How many rows ``build_write_all`` must insert or update for ``changes``."""
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

    def args(self, params: dict[str, Any]) -> list[Any]:
        """Positional arguments, in the order the compiled SQL numbers them."""
        return [params[name] for name in self.order]


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
        statement = self._sql.write_spend if spend_shaped else self._sql.write_all
        args = statement.args(write_all_params(self._sql.tables, changes, account_id))
        written = await self._driver.fetchval(statement.sql, *args)
        if written != expected_rows(changes):
            # An update that matched no row means our view of the account was
            # wrong; raising rolls back, so half a decision is never committed.
            raise RuntimeError(f"wrote {written} rows, expected {expected_rows(changes)}")


@asynccontextmanager
async def driver_transaction(engine: AsyncEngine, *, write: bool) -> AsyncIterator[Any]:
    """A pooled connection's asyncpg driver, in a READ COMMITTED transaction for writes.

    READ COMMITTED whatever the engine's default: the locking read relies on
    each statement taking a fresh snapshot. After an error or cancellation, a
    connection that is closed or still in a transaction is invalidated, so
    the pool never hands it out again.
    """
    # The pool's raw connection: the unit needs nothing of SQLAlchemy's
    # Connection, and skipping it saves a good share of the per-call cost.
    pooled = await engine.raw_connection()
    try:
        driver: Any = pooled.driver_connection
        if not write:
            # A read unit's answer rests on one statement (the lock-free
            # call), consistent on its own; anything needing a second one
            # also has changes to record, and the ledger redoes it as a
            # locked write. So no BEGIN and COMMIT round trips.
            yield driver
            return
        try:
            async with driver.transaction(isolation="read_committed"):
                yield driver
        except BaseException:
            # Cancelled mid-statement, the rollback may not have completed:
            # a connection still inside a transaction (holding the account's
            # lock) must never go back to the pool, which cannot see it.
            if driver.is_closed() or driver.is_in_transaction():
                await greenlet_spawn(pooled.invalidate)
            raise
    finally:
        await greenlet_spawn(pooled.close)
