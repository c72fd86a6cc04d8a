"""Accounts due for settling, in batches: the reset job's reads and writes.

A batch is one transaction: one statement picks (and on PostgreSQL locks,
skipping rows other workers hold) the next due accounts by the
``(due_at, id)`` index, two read their live grants and active holds, and the
changes go back in bulk: on PostgreSQL new grants and entries by binary COPY
and every update in one statement, on SQLite one executemany per kind of
row. Its cost per account is a share of a few statements, not the round
trips of a unit of work each.

As for a unit of work, PostgreSQL batches run on the asyncpg driver in their
own READ COMMITTED transaction, with statements compiled once; SQLite's run
through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import partial
from operator import itemgetter
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Select,
    and_,
    any_,
    bindparam,
    func,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from ..base import AccountState, Changes, GrantRecord, HoldRecord
from .ledger_store import LedgerStatements, write_rows
from .postgres import DriverStatement, build_write, expected_rows, write_params
from .records import entry_row, grant_row, load_draws, to_grant, to_subscription
from .tables import Id, Tables, UTCDateTime, is_active

_UPDATES = ("account", "remaining", "settled")


@dataclass(frozen=True, slots=True)
class DueCursor:
    """The ``(due_at, id)`` of the last account of a batch."""

    due_at: datetime
    account_id: int


class DueStatements:
    """The batch statements, built once per storage."""

    def __init__(self, tables: Tables, ledger: LedgerStatements, *, postgres: bool) -> None:
        t = tables
        acc, g, h = t.accounts, t.grants, t.holds
        self.tables, self.ledger, self.postgres = t, ledger, postgres
        now = bindparam("now", type_=UTCDateTime())
        # Positional rows throughout: each record is built from a slice.
        accounts = select(
            acc.c.id,
            acc.c.user_id,
            acc.c.due_at,
            acc.c.sub_anchor,
            acc.c.sub_credits,
            acc.c.sub_last_period,
            acc.c.sub_ends_after,
            acc.c.sub_next_credits,
            acc.c.sub_next_from,
        ).where(acc.c.due_at <= now)
        after = tuple_(acc.c.due_at, acc.c.id) > tuple_(
            bindparam("after_due", type_=UTCDateTime()), bindparam("after_id", type_=Id)
        )
        limit = bindparam("limit", type_=BigInteger())
        # [after?][lock?]
        self.accounts: dict[tuple[bool, bool], Select[Any]] = {}
        for keyset in (False, True):
            for lock in (False, True):
                query = (accounts.where(after) if keyset else accounts).order_by(
                    acc.c.due_at, acc.c.id
                )
                query = query.limit(limit)
                if lock:
                    query = query.with_for_update(of=acc, skip_locked=True)
                self.accounts[(keyset, lock)] = query
        self.count = select(func.count()).select_from(acc).where(acc.c.due_at <= now)

        def of_accounts(column: ColumnElement[Any]) -> ColumnElement[bool]:
            if postgres:  # one array parameter, one statement whatever the batch size
                return column == any_(bindparam("ids", type_=ARRAY(BigInteger())))
            return column.in_(bindparam("ids", expanding=True))

        # The same rows a unit of work reads for one account (see ledger_store).
        last_period = select(acc.c.sub_last_period).where(acc.c.id == g.c.account_id)
        self.grants = select(g.c.account_id, *(g.c[f.name] for f in fields(GrantRecord))).where(
            of_accounts(g.c.account_id),
            or_(
                g.c.remaining > 0,
                and_(g.c.kind == "monthly", g.c.period == last_period.scalar_subquery()),
            ),
        )
        self.holds = select(
            h.c.account_id,
            h.c.id,
            h.c.amount,
            h.c.captured,
            h.c.status,
            h.c.draws,
            h.c.created_at,
            h.c.expires_at,
            h.c.settled_at,
        ).where(of_accounts(h.c.account_id), is_active(h))
        self.grants_by_id = ledger.grants_by_id
        if postgres:
            self.pg_accounts = {key: DriverStatement(q) for key, q in self.accounts.items()}
            self.pg_grants = DriverStatement(self.grants)
            self.pg_holds = DriverStatement(self.holds)
            self.pg_grants_by_id = DriverStatement(
                select(g).where(g.c.id == any_(bindparam("ids", type_=ARRAY(g.c.id.type))))
            )
            # New grants and entries go in by COPY (binary, in order, so
            # entries keep their sequence); the updates in one statement.
            self.pg_write = DriverStatement(build_write(t, _UPDATES, batch=True))
            self.grant_columns = [c.name for c in t.grants.columns]
            self.entry_columns = [c.name for c in t.entries.columns if c.name != "seq"]

    def executor(self, conn: Any) -> DueExecutor:
        """The executor for a connection: an asyncpg driver or a SQLAlchemy connection."""
        return PostgresDue(conn, self) if self.postgres else SQLiteDue(conn, self)

    async def open(
        self, executor: DueExecutor, now: datetime, *, limit: int, after: object | None, write: bool
    ) -> SQLDueBatch:
        """Pick the next due accounts (locking them for a write batch) and read them."""
        params: dict[str, Any] = {"now": now, "limit": limit}
        if after is not None:
            if not isinstance(after, DueCursor):
                raise TypeError("after must be the cursor of a previous batch")
            params.update(after_due=after.due_at, after_id=after.account_id)
        accounts = list(await executor.accounts(after is not None, write, params))
        ids = [r[0] for r in accounts]
        grants: dict[int, list[GrantRecord]] = {i: [] for i in ids}
        holds: dict[int, list[HoldRecord]] = {i: [] for i in ids}
        if ids:
            for row in await executor.grants(ids):
                grants[row[0]].append(GrantRecord(*row[1:]))
            for row in await executor.holds(ids):
                holds[row[0]].append(
                    HoldRecord(row[1], row[2], row[3], row[4], load_draws(row[5]), *row[6:9])
                )
        states = [
            AccountState(
                user_id=r[1],
                created=False,
                grants=tuple(grants[r[0]]),
                holds=tuple(holds[r[0]]),
                subscription=to_subscription(*r[3:9]),
                due_at=r[2],
            )
            for r in accounts
        ]
        cursor = DueCursor(accounts[-1][2], accounts[-1][0]) if accounts else None
        return SQLDueBatch(executor, ids, states, cursor, write=write)


class DueExecutor(Protocol):
    """The few statements of a batch, per dialect; rows are positional."""

    async def accounts(self, keyset: bool, lock: bool, params: dict[str, Any]) -> Iterable[Any]:
        """The next due accounts."""
        ...

    async def grants(self, ids: list[int]) -> Iterable[Any]:
        """Live grants (and each latest allowance) of these accounts."""
        ...

    async def holds(self, ids: list[int]) -> Iterable[Any]:
        """Active holds of these accounts."""
        ...

    async def grants_by_id(self, grant_ids: list[str]) -> list[Any]:
        """Grant rows by id (attribute access)."""
        ...

    async def write(self, items: list[tuple[int, Changes]]) -> None:
        """Write every account's changes."""
        ...


class SQLiteDue:
    """A batch's statements through SQLAlchemy, on SQLite."""

    def __init__(self, conn: AsyncConnection, sql: DueStatements) -> None:
        self._conn = conn
        self._sql = sql

    async def accounts(self, keyset: bool, lock: bool, params: dict[str, Any]) -> Iterable[Any]:
        # BEGIN IMMEDIATE already holds the database's only write lock.
        return await self._conn.execute(self._sql.accounts[(keyset, False)], params)

    async def grants(self, ids: list[int]) -> Iterable[Any]:
        return await self._conn.execute(self._sql.grants, {"ids": ids})

    async def holds(self, ids: list[int]) -> Iterable[Any]:
        return await self._conn.execute(self._sql.holds, {"ids": ids})

    async def grants_by_id(self, grant_ids: list[str]) -> list[Any]:
        return list(await self._conn.execute(self._sql.grants_by_id, {"ids": grant_ids}))

    async def write(self, items: list[tuple[int, Changes]]) -> None:
        ledger = self._sql.ledger
        await write_rows(ledger, items, partial(ledger.driver_many, self._conn))


class PostgresDue:
    """A batch's statements on the asyncpg driver, inside its transaction."""

    def __init__(self, driver: Any, sql: DueStatements) -> None:
        self._driver = driver
        self._sql = sql

    async def _fetch(self, statement: DriverStatement, params: dict[str, Any]) -> list[Any]:
        rows: list[Any] = await self._driver.fetch(statement.sql, *statement.args(params))
        return rows

    async def accounts(self, keyset: bool, lock: bool, params: dict[str, Any]) -> Iterable[Any]:
        return await self._fetch(self._sql.pg_accounts[(keyset, lock)], params)

    async def grants(self, ids: list[int]) -> Iterable[Any]:
        return await self._fetch(self._sql.pg_grants, {"ids": ids})

    async def holds(self, ids: list[int]) -> Iterable[Any]:
        return await self._fetch(self._sql.pg_holds, {"ids": ids})

    async def grants_by_id(self, grant_ids: list[str]) -> list[Any]:
        rows = await self._fetch(self._sql.pg_grants_by_id, {"ids": grant_ids})
        return [SimpleNamespace(**dict(r)) for r in rows]

    async def write(self, items: list[tuple[int, Changes]]) -> None:
        sql = self._sql
        written = 0
        for table, columns, rows in (
            (
                sql.tables.grants,
                sql.grant_columns,
                [grant_row(x, a) for a, c in items for x in c.new_grants],
            ),
            (
                sql.tables.entries,
                sql.entry_columns,
                [entry_row(x, a) for a, c in items for x in c.new_entries],
            ),
        ):
            if rows:
                pick = itemgetter(*columns)
                status = await self._driver.copy_records_to_table(
                    table.name, records=[pick(r) for r in rows], columns=columns
                )
                written += int(status.split()[-1])
        statement = sql.pg_write
        params = write_params(sql.tables, items, batch=True, parts=_UPDATES)
        written += await self._driver.fetchval(statement.sql, *statement.args(params))
        expected = sum(expected_rows(c) for _, c in items)
        if written != expected:
            # Rolls the whole batch back: no account is half-written.
            raise RuntimeError(f"wrote {written} rows, expected {expected}")


class SQLDueBatch:
    """One batch of due accounts inside its transaction."""

    def __init__(
        self,
        executor: DueExecutor,
        account_ids: list[int],
        states: list[AccountState],
        cursor: DueCursor | None,
        *,
        write: bool,
    ) -> None:
        self._executor = executor
        self._ids = account_ids
        self._write = write
        self.states: Sequence[AccountState] = states
        self.cursor: object | None = cursor

    async def get_grants(self, grant_ids: Sequence[str]) -> list[GrantRecord]:
        if not grant_ids:
            return []
        rows = await self._executor.grants_by_id(list(grant_ids))
        mine = set(self._ids)
        return [to_grant(r) for r in rows if r.account_id in mine]

    async def apply(self, changes: Sequence[Changes | None]) -> None:
        if not self._write:
            raise RuntimeError("apply() in a read-only batch")
        if len(changes) != len(self._ids):
            raise ValueError("one entry of changes per account of the batch")
        items = [(a, c) for a, c in zip(self._ids, changes, strict=True) if c]
        if items:
            await self._executor.write(items)
