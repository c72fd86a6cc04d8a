"""Accounts due for settling, in batches: the reset job's reads and writes.

A batch is one transaction: one statement picks (and on PostgreSQL locks,
skipping rows other workers hold) the next due accounts by the
``(due_at, id)`` index, two read their live grants and active holds, and
one writes every account's changes back (several executemany calls on
SQLite). Its cost per account is a share of a few statements, not the round
trips of a unit of work each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import BindParameter, TextClause

from ..base import AccountState, Changes, GrantRecord, HoldRecord
from .ledger_store import LedgerStatements, write_rows
from .postgres import build_write, expected_rows, write_params
from .records import entry_row, grant_row, to_grant, to_hold, to_subscription
from .tables import Id, Tables, UTCDateTime


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
        self.columns = (
            acc.c.id,
            acc.c.user_id,
            acc.c.due_at,
            acc.c.sub_anchor,
            acc.c.sub_credits,
            acc.c.sub_last_period,
            acc.c.sub_ends_after,
            acc.c.sub_next_credits,
            acc.c.sub_next_from,
        )
        self.due = select(*self.columns).where(acc.c.due_at <= now)
        self.after = tuple_(acc.c.due_at, acc.c.id) > tuple_(
            bindparam("after_due", type_=UTCDateTime()), bindparam("after_id", type_=Id)
        )
        self.count = select(func.count()).select_from(acc).where(acc.c.due_at <= now)
        ids: BindParameter[list[int]] = bindparam("ids", expanding=True)
        # The same rows a unit of work reads for one account (see ledger_store).
        last_period = select(acc.c.sub_last_period).where(acc.c.id == g.c.account_id)
        # Columns in GrantRecord's field order, so a row builds one positionally.
        grant_columns = [g.c[f.name] for f in fields(GrantRecord)]
        self.grants = select(g.c.account_id, *grant_columns).where(
            g.c.account_id.in_(ids),
            or_(
                g.c.remaining > 0,
                and_(g.c.kind == "monthly", g.c.period == last_period.scalar_subquery()),
            ),
        )
        self.holds = select(h).where(h.c.account_id.in_(ids), h.c.status == "active")
        # PostgreSQL: new grants and entries go in by COPY (binary, in order,
        # so entries keep their sequence); the updates in one statement.
        self.write: TextClause | None = (
            build_write(t, ("account", "remaining", "settled"), batch=True) if postgres else None
        )
        self.grant_columns = [c.name for c in t.grants.columns]
        self.entry_columns = [c.name for c in t.entries.columns if c.name != "seq"]

    async def open(
        self,
        conn: AsyncConnection,
        now: datetime,
        *,
        limit: int,
        after: object | None,
        write: bool,
    ) -> SQLDueBatch:
        """Pick the next due accounts (locking them for a write batch) and read them."""
        query = self.due
        params: dict[str, Any] = {"now": now}
        if after is not None:
            if not isinstance(after, DueCursor):
                raise TypeError("after must be the cursor of a previous batch")
            query = query.where(self.after)
            params.update(after_due=after.due_at, after_id=after.account_id)
        acc = self.tables.accounts
        query = query.order_by(acc.c.due_at, acc.c.id).limit(limit)
        if write and self.postgres:
            query = query.with_for_update(of=acc, skip_locked=True)
        accounts = list(await conn.execute(query, params))
        ids = [r.id for r in accounts]
        grants: dict[int, list[GrantRecord]] = {i: [] for i in ids}
        holds: dict[int, list[HoldRecord]] = {i: [] for i in ids}
        if ids:
            for row in await conn.execute(self.grants, {"ids": ids}):
                grants[row[0]].append(GrantRecord(*row[1:]))
            for row in await conn.execute(self.holds, {"ids": ids}):
                holds[row.account_id].append(to_hold(row))
        states = [
            AccountState(
                user_id=r.user_id,
                created=False,
                grants=tuple(grants[r.id]),
                holds=tuple(holds[r.id]),
                subscription=to_subscription(
                    r.sub_anchor,
                    r.sub_credits,
                    r.sub_last_period,
                    r.sub_ends_after,
                    r.sub_next_credits,
                    r.sub_next_from,
                ),
                due_at=r.due_at,
            )
            for r in accounts
        ]
        cursor = DueCursor(accounts[-1].due_at, accounts[-1].id) if accounts else None
        return SQLDueBatch(self, conn, ids, states, cursor, write=write)


class SQLDueBatch:
    """One batch of due accounts inside its transaction."""

    def __init__(
        self,
        sql: DueStatements,
        conn: AsyncConnection,
        account_ids: list[int],
        states: list[AccountState],
        cursor: DueCursor | None,
        *,
        write: bool,
    ) -> None:
        self._sql = sql
        self._conn = conn
        self._ids = account_ids
        self._write = write
        self.states: Sequence[AccountState] = states
        self.cursor: object | None = cursor

    async def get_grants(self, grant_ids: Sequence[str]) -> list[GrantRecord]:
        if not grant_ids:
            return []
        rows = await self._conn.execute(self._sql.ledger.grants_by_id, {"ids": list(grant_ids)})
        mine = set(self._ids)
        return [to_grant(r) for r in rows if r.account_id in mine]

    async def apply(self, changes: Sequence[Changes | None]) -> None:
        if not self._write:
            raise RuntimeError("apply() in a read-only batch")
        if len(changes) != len(self._ids):
            raise ValueError("one entry of changes per account of the batch")
        items = [(a, c) for a, c in zip(self._ids, changes, strict=True) if c]
        if not items:
            return
        sql = self._sql
        if sql.write is None:
            await write_rows(self._conn, sql.ledger, items, sql.ledger.driver_many)
            return
        driver: Any = (await self._conn.get_raw_connection()).driver_connection
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
                status = await driver.copy_records_to_table(
                    table.name, records=[pick(r) for r in rows], columns=columns
                )
                written += int(status.split()[-1])
        params = write_params(sql.tables, items, batch=True)
        written += (await self._conn.execute(sql.write, params)).scalar() or 0
        expected = sum(expected_rows(c) for _, c in items)
        if written != expected:
            # Rolls the whole batch back: no account is half-written.
            raise RuntimeError(f"wrote {written} rows, expected {expected}")
