"""The ledger's unit of work on SQL: lock an account, read it, write rows back.

One query shape reads an account's state: its live grants, its active holds,
and the entry or hold recorded under an idempotency key, as one UNION. On
SQLite it runs as a SQLAlchemy statement under ``BEGIN IMMEDIATE``; on
PostgreSQL the same query, compiled into the ``open_account`` function,
runs after the function locks the account row (see ``postgres``). Either
way a write unit costs one round trip to lock and read, and the statements
that write its rows back (one on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable, literal, literal_column
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeEngine

from ..base import (
    AccountState,
    Changes,
    EntryRecord,
    GrantRecord,
    HoldRecord,
    SubscriptionRecord,
)
from .lite import LiteStatements, LiteTransaction
from .records import (
    account_row,
    entry_row,
    grant_row,
    hold_row,
    key_rows,
    load_draws,
    to_grant,
    to_hold,
    to_subscription,
)
from .tables import Tables, UTCDateTime, is_active


def _null(type_: TypeEngine[Any]) -> ColumnElement[Any]:
    return null().cast(type_)


class LedgerStatements:
    """The ledger's SQL, built once per storage: SQLite's statements, and the
    PostgreSQL function compiled from the same state query."""

    def __init__(self, tables: Tables) -> None:
        t = tables
        g, h, e, k, acc = t.grants, t.holds, t.entries, t.keys, t.accounts
        user: BindParameter[str] = bindparam("user_id")

        def parts(account: ColumnElement[Any], key: ColumnElement[Any] | None) -> list[Select[Any]]:
            """Live grants, active holds, and the rows recorded under ``key``.

            A NULL key matches nothing, so the function below can pass it
            through; the SQLAlchemy statements leave the keyed parts out.
            """
            grants = select(
                literal("g").label("src"),
                g.c.id,
                g.c.kind,
                g.c.amount,
                g.c.remaining.label("n2"),
                g.c.priority,
                g.c.effective_at.label("t1"),
                g.c.expires_at.label("t2"),
                g.c.created_at.label("t3"),
                g.c.description,
                _null(Text()).label("draws"),
                _null(String()).label("request_hash"),
                _null(String()).label("grant_id"),
                _null(String()).label("hold_id"),
                _null(String()).label("idempotency_key"),
                _null(BigInteger()).label("seq"),
                g.c.period.label("p1"),
                _null(Integer()).label("p2"),
            ).where(
                g.c.account_id == account,
                # Also the latest allowance when it is used up: Balance.monthly
                # reports it whatever is left.
                (g.c.remaining > 0)
                | (
                    (g.c.kind == "monthly")
                    & (
                        g.c.period
                        == select(acc.c.sub_last_period)
                        .where(acc.c.id == account)
                        .scalar_subquery()
                    )
                ),
            )

            def hold_columns(src: str, key_columns: list[Any]) -> list[Any]:
                return [
                    literal(src),
                    h.c.id,
                    h.c.status,
                    h.c.amount,
                    h.c.captured,
                    _null(Integer()),
                    h.c.created_at,
                    h.c.expires_at,
                    h.c.settled_at,
                    _null(Text()),
                    h.c.draws,
                    *key_columns,
                    _null(BigInteger()),
                    _null(Integer()),
                    _null(Integer()),
                ]

            no_key = [_null(String()), _null(String()), _null(String()), _null(String())]
            # Only the partial index on active holds can serve this part.
            active = select(*hold_columns("h", no_key)).where(
                h.c.account_id == account, is_active(h)
            )
            if key is None:
                return [grants, active]
            # Keyed rows: the key table's primary key, then a primary/unique id.
            keyed_hold = (
                select(
                    *hold_columns(
                        "k", [k.c.request_hash, _null(String()), _null(String()), k.c.key]
                    )
                )
                .join_from(k, h, h.c.id == k.c.hold_id)
                .where(k.c.account_id == account, k.c.key == key)
            )
            keyed_entry = (
                select(
                    literal("e"),
                    e.c.id,
                    e.c.type,
                    e.c.amount,
                    e.c.balance_after,
                    _null(Integer()),
                    e.c.created_at,
                    _null(UTCDateTime()),
                    _null(UTCDateTime()),
                    e.c.description,
                    e.c.draws,
                    k.c.request_hash,
                    e.c.grant_id,
                    e.c.hold_id,
                    k.c.key,
                    e.c.seq,
                    _null(Integer()),
                    _null(Integer()),
                )
                .join_from(k, e, e.c.id == k.c.entry_id)
                .where(k.c.account_id == account, k.c.key == key)
            )
            return [grants, active, keyed_hold, keyed_entry]

        def head(account: ColumnElement[Any]) -> Select[Any]:
            """The account's own row: its id (in ``seq``), subscription and ``due_at``."""
            return select(
                literal("a"),
                _null(String()),
                _null(String()),
                acc.c.sub_credits,
                acc.c.sub_next_credits,
                acc.c.sub_last_period,
                acc.c.sub_anchor,
                acc.c.due_at,
                _null(UTCDateTime()),
                _null(Text()),
                _null(Text()),
                *(_null(String()) for _ in range(4)),
                acc.c.id,
                acc.c.sub_ends_after,
                acc.c.sub_next_from,
            ).where(acc.c.id == account)

        key_param: BindParameter[str] = bindparam("key")
        # SQLite: BEGIN IMMEDIATE already holds the write lock, so one plain
        # statement finds the account and reads its state.
        account_id = select(acc.c.id).where(acc.c.user_id == user).scalar_subquery()
        self.open = {
            keyed: union_all(*parts(account_id, key_param if keyed else None), head(account_id))
            for keyed in (False, True)
        }
        # PostgreSQL: the same query inside a function that first locks the
        # account row. Each statement of a VOLATILE function takes a fresh
        # snapshot, so the state is read as of after the lock was granted:
        # one round trip, never a stale read.
        v_account = literal_column("v_account", BigInteger())
        body = union_all(head(v_account), *parts(v_account, literal_column("p_key", String())))
        self.function_name = f"{t.prefix}open_account_v1"
        self.function_ddl = _function_ddl(
            self.function_name,
            t,
            str(
                body.compile(
                    dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
                    compile_kwargs={"literal_binds": True},
                )
            ),
        )
        self.create_account = (
            sqlite.insert(acc)
            .values(user_id=user, created_at=bindparam("now", type_=UTCDateTime()))
            .on_conflict_do_nothing(index_elements=[acc.c.user_id])
            .returning(acc.c.id)
        )
        # By primary key alone (one usable index); the unit checks the account.
        self.grants_by_id = select(g).where(g.c.id.in_(bindparam("ids", expanding=True)))
        # The same, one id at a time, for statements compiled once (``lite``).
        self.grant_by_id = select(g).where(g.c.id == bindparam("id"))
        self.hold_by_id = select(h).where(h.c.id == bindparam("id"))
        self.insert_keys = k.insert()

        self.lite = LiteStatements(sqlite.dialect())
        self.driver_many = DriverMany(self.lite)
        self.set_account = update(acc).where(acc.c.id == bindparam("b_account"))
        self.insert_grants = g.insert()
        self.insert_holds = h.insert()
        self.insert_entries = e.insert()
        self.set_remaining = (
            update(g).where(g.c.id == bindparam("b_id")).values(remaining=bindparam("b_remaining"))
        )
        self.settle_holds = (
            update(h)
            .where(h.c.id == bindparam("b_id"))
            .values(
                status=bindparam("b_status"),
                captured=bindparam("b_captured"),
                settled_at=bindparam("b_settled_at"),
            )
        )


@dataclass(slots=True)
class _Read:
    grants: list[GrantRecord] = field(default_factory=list)
    holds: list[HoldRecord] = field(default_factory=list)
    keyed_entry: EntryRecord | None = None
    keyed_hold: HoldRecord | None = None
    account_id: int | None = None
    subscription: SubscriptionRecord | None = None
    due_at: datetime | None = None


def _parse(rows: Iterable[Any], key: str | None) -> _Read:
    """Sort the UNION's rows (SQLAlchemy rows or asyncpg records, by position)."""
    read = _Read()
    for r in rows:
        src = r[0]
        if src == "g":
            read.grants.append(
                GrantRecord(
                    id=r[1],
                    kind=r[2],
                    amount=r[3],
                    remaining=r[4],
                    priority=r[5],
                    effective_at=r[6],
                    expires_at=r[7],
                    created_at=r[8],
                    description=r[9],
                    period=r[16],
                )
            )
        elif src in ("h", "k"):
            hold = HoldRecord(
                id=r[1],
                amount=r[3],
                captured=r[4],
                status=r[2],
                draws=load_draws(r[10]),
                created_at=r[6],
                expires_at=r[7],
                settled_at=r[8],
                idempotency_key=r[14],
                request_hash=r[11],
            )
            if src == "h":
                read.holds.append(hold)
            else:
                read.keyed_hold = hold
        elif src == "e":
            read.keyed_entry = EntryRecord(
                id=r[1],
                type=r[2],
                amount=r[3],
                balance_after=r[4],
                created_at=r[6],
                description=r[9],
                grant_id=r[12],
                hold_id=r[13],
                draws=load_draws(r[10]),
                idempotency_key=r[14],
                request_hash=r[11],
                seq=r[15],
            )
        else:
            read.account_id = r[15]
            read.subscription = to_subscription(r[6], r[3], r[5], r[16], r[4], r[17])
            read.due_at = r[7]
    return read


class Executor(Protocol):
    """The few statements a unit of work runs, per dialect."""

    async def open(self, user_id: str, key: str | None, lock: bool) -> Iterable[Any]:
        """Find (and, if ``lock``, lock) the account; return the state rows."""
        ...

    async def create_account(self, user_id: str, now: datetime) -> int | None:
        """Insert the account unless it exists; return its id if this call made it."""
        ...

    async def grants(self, ids: list[str]) -> list[Any]:
        """Grant rows by id (attribute access)."""
        ...

    async def hold(self, hold_id: str) -> Any | None:
        """A hold row by id (attribute access), or None."""
        ...

    async def write(self, changes: Changes, account_id: int) -> None:
        """Write every row of ``changes``."""
        ...


class SQLiteExecutor:
    """Runs the unit's statements on SQLite's driver thread (see ``lite``):
    the locking read goes with the transaction's begin, and the writes are
    deferred to go with its commit."""

    def __init__(self, tx: LiteTransaction, sql: LedgerStatements) -> None:
        self._tx = tx
        self._sql = sql
        self._lite = sql.lite

    async def open(self, user_id: str, key: str | None, lock: bool) -> Iterable[Any]:
        # BEGIN IMMEDIATE, sent with this read, already holds the write lock.
        statement = self._lite.get(self._sql.open[key is not None])
        return await self._tx.query(statement, {"user_id": user_id, "key": key})

    async def create_account(self, user_id: str, now: datetime) -> int | None:
        statement = self._lite.get(self._sql.create_account)
        rows = await self._tx.query(statement, {"user_id": user_id, "now": now})
        return int(rows[0][0]) if rows else None

    async def grants(self, ids: list[str]) -> list[Any]:
        statement = self._lite.get(self._sql.grant_by_id)
        reads = [statement.fetch({"id": i}) for i in ids]
        raw = await self._tx.run(lambda c: [row for read in reads for row in read(c)])
        return statement.rows(raw)

    async def hold(self, hold_id: str) -> Any | None:
        rows = await self._tx.query(self._lite.get(self._sql.hold_by_id), {"id": hold_id})
        return rows[0] if rows else None

    async def write(self, changes: Changes, account_id: int) -> None:
        async def defer(statement: Executable, rows: list[dict[str, Any]]) -> None:
            self._tx.defer(self._lite.get(statement, tuple(rows[0])).many(rows))

        await write_rows(self._sql, [(account_id, changes)], defer)


RunMany = Callable[[Executable, list[dict[str, Any]]], Awaitable[object]]


async def write_rows(
    sql: LedgerStatements, items: Sequence[tuple[int, Changes]], run_many: RunMany
) -> None:
    """Write the changes of one or many accounts, one executemany per kind of row."""
    grants = [grant_row(x, a) for a, c in items for x in c.new_grants]
    if grants:
        await run_many(sql.insert_grants, grants)
    remaining = [
        {"b_id": k, "b_remaining": v} for _, c in items for k, v in c.grant_remaining.items()
    ]
    if remaining:
        await run_many(sql.set_remaining, remaining)
    holds = [hold_row(x, a) for a, c in items for x in c.new_holds]
    if holds:
        await run_many(sql.insert_holds, holds)
    settled = [
        {"b_id": x.id, "b_status": x.status, "b_captured": x.captured, "b_settled_at": x.settled_at}
        for _, c in items
        for x in c.updated_holds
    ]
    if settled:
        await run_many(sql.settle_holds, settled)
    entries = [entry_row(x, a) for a, c in items for x in c.new_entries]
    if entries:
        await run_many(sql.insert_entries, entries)
    keys = [row for a, c in items for row in key_rows(c, a)]
    if keys:
        await run_many(sql.insert_keys, keys)
    accounts = [
        {"b_account": a, **account_row(c.account)} for a, c in items if c.account is not None
    ]
    if accounts:
        await run_many(sql.set_account, accounts)


class DriverMany:
    """executemany straight on the driver, each statement compiled once.

    SQLAlchemy's own executemany builds and processes a parameter dict per
    row; for the reset job's thousands of rows per batch that cost several
    times the database's work. Here each row becomes a tuple, with the
    same bind processors (see ``LiteStatement``), and the driver gets the
    list in one call.
    """

    def __init__(self, statements: LiteStatements) -> None:
        self._statements = statements

    async def __call__(
        self, conn: AsyncConnection, statement: Executable, rows: list[dict[str, Any]]
    ) -> object:
        compiled = self._statements.get(statement, tuple(rows[0]))
        return await conn.exec_driver_sql(compiled.sql, compiled.bind_many(rows))


async def open_unit(
    executor: Executor,
    user_id: str,
    *,
    write: bool,
    key: str | None,
    now: Callable[[], datetime],
) -> SQLLedgerUnit:
    """Find (or create) and, for writes, lock the account; read its state."""
    read = _parse(await executor.open(user_id, key, write), key)
    created = False
    if read.account_id is None:
        if not write:
            raise LookupError(user_id)
        new_id = await executor.create_account(user_id, now())
        if new_id is not None:
            read, created = _Read(account_id=new_id), True
        else:
            # Another transaction created it since we looked; lock and read it.
            read = _parse(await executor.open(user_id, key, write), key)
    assert read.account_id is not None
    state = AccountState(
        user_id=user_id,
        created=created,
        grants=tuple(read.grants),
        holds=tuple(read.holds),
        keyed_entry=read.keyed_entry,
        keyed_hold=read.keyed_hold,
        subscription=read.subscription,
        due_at=read.due_at,
    )
    return SQLLedgerUnit(executor, read.account_id, state, write=write)


_RESULT = (
    ("src", "varchar"),
    ("id", "varchar"),
    ("kind", "varchar"),
    ("amount", "bigint"),
    ("n2", "bigint"),
    ("priority", "integer"),
    ("t1", "timestamptz"),
    ("t2", "timestamptz"),
    ("t3", "timestamptz"),
    ("description", "text"),
    ("draws", "text"),
    ("request_hash", "varchar"),
    ("grant_id", "varchar"),
    ("hold_id", "varchar"),
    ("idempotency_key", "varchar"),
    ("seq", "bigint"),
    ("p1", "integer"),
    ("p2", "integer"),
)


def _function_ddl(name: str, t: Tables, body: str) -> str:
    returns = ", ".join(f"{column} {type_}" for column, type_ in _RESULT)
    # RETURN QUERY demands the declared types exactly; the UNION's own types
    # (text literals, varchar(n) columns) are cast to them by position.
    casts = ", ".join(f"CAST(q.c{i} AS {type_})" for i, (_, type_) in enumerate(_RESULT))
    aliases = ", ".join(f"c{i}" for i in range(len(_RESULT)))
    return f"""
CREATE OR REPLACE FUNCTION {name}(p_user varchar, p_key varchar, p_lock boolean)
RETURNS TABLE ({returns})
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    v_account bigint;
BEGIN
    IF p_lock THEN
        SELECT a.id INTO v_account FROM {t.accounts.name} AS a
        WHERE a.user_id = p_user FOR UPDATE;
    ELSE
        SELECT a.id INTO v_account FROM {t.accounts.name} AS a WHERE a.user_id = p_user;
    END IF;
    IF v_account IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT {casts} FROM ({body}) AS q({aliases});
END
$fn$
"""


class SQLLedgerUnit:
    """One transaction on one account; ``state`` was read when it opened."""

    def __init__(
        self, executor: Executor, account_id: int, state: AccountState, *, write: bool
    ) -> None:
        self._executor = executor
        self.account_id = account_id
        self.state = state
        self._write = write

    async def get_grants(self, grant_ids: Sequence[str]) -> list[GrantRecord]:
        if not grant_ids:
            return []
        rows = await self._executor.grants(list(grant_ids))
        return [to_grant(r) for r in rows if r.account_id == self.account_id]

    async def get_hold(self, hold_id: str) -> HoldRecord | None:
        row = await self._executor.hold(hold_id)
        if row is None or row.account_id != self.account_id:
            return None
        return to_hold(row)

    async def apply(self, changes: Changes) -> None:
        if not self._write:
            raise RuntimeError("apply() in a read-only unit")
        await self._executor.write(changes, self.account_id)
