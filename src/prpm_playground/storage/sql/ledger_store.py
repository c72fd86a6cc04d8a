"""The ledger's unit of work on SQL: lock an account, read it, write rows back.

A write unit costs, on the hot path, one statement to lock (or create) the
account, one to read its live grants, active holds and idempotency matches
together, and one statement per kind of row written. Statements are built
once per storage and executed with bound parameters, so SQLAlchemy's
compiled cache serves every call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

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
from sqlalchemy.sql import literal
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeEngine

from ..base import AccountState, Changes, EntryRecord, GrantRecord, HoldRecord
from .records import entry_row, grant_row, hold_row, load_draws, to_grant, to_hold
from .tables import Tables, UTCDateTime


def _null(type_: TypeEngine[Any]) -> ColumnElement[Any]:
    return null().cast(type_)


class LedgerStatements:
    """The ledger's SQL, built once per storage."""

    def __init__(self, tables: Tables, *, postgres: bool) -> None:
        t = tables
        self.tables = t
        g, h, e, acc = t.grants, t.holds, t.entries, t.accounts
        account: BindParameter[int] = bindparam("account_id")
        key: BindParameter[str] = bindparam("key")

        lock = select(acc.c.id).where(acc.c.user_id == bindparam("user_id"))
        self.find_account = lock
        self.lock_account = lock.with_for_update() if postgres else lock
        dialect_insert = postgresql.insert if postgres else sqlite.insert
        self.create_account = (
            dialect_insert(acc)
            .values(user_id=bindparam("user_id"), created_at=bindparam("now", type_=UTCDateTime()))
            .on_conflict_do_nothing(index_elements=[acc.c.user_id])
            .returning(acc.c.id)
        )

        # Live grants, active holds and the rows recorded under the key come
        # back in one round trip, as one UNION over a common column layout.
        grants_part = select(
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
        ).where(g.c.account_id == account, g.c.remaining > 0)

        def holds_part(keyed: bool) -> Select[Any]:
            active = h.c.status == "active"
            return select(
                literal("h"),
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
                h.c.request_hash,
                _null(String()),
                _null(String()),
                h.c.idempotency_key,
                _null(BigInteger()),
            ).where(
                h.c.account_id == account,
                (active | (h.c.idempotency_key == key)) if keyed else active,
            )

        entries_part = select(
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
            e.c.request_hash,
            e.c.grant_id,
            e.c.hold_id,
            e.c.idempotency_key,
            e.c.seq,
        ).where(e.c.account_id == account, e.c.idempotency_key == key)

        self.state = union_all(grants_part, holds_part(False))
        self.keyed_state = union_all(grants_part, holds_part(True), entries_part)

        self.grants_by_id = select(g).where(
            g.c.account_id == account, g.c.id.in_(bindparam("ids", expanding=True))
        )
        self.hold_by_id = select(h).where(h.c.account_id == account, h.c.id == bindparam("id"))

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


class SQLLedgerUnit:
    """One transaction on one account."""

    def __init__(
        self,
        conn: AsyncConnection,
        sql: LedgerStatements,
        account_id: int,
        user_id: str,
        *,
        created: bool,
        write: bool,
    ) -> None:
        self._conn = conn
        self._sql = sql
        self.account_id = account_id
        self.user_id = user_id
        self.created = created
        self._write = write

    async def state(self, *, idempotency_key: str | None = None) -> AccountState:
        if idempotency_key is None:
            rows = await self._conn.execute(self._sql.state, {"account_id": self.account_id})
        else:
            rows = await self._conn.execute(
                self._sql.keyed_state, {"account_id": self.account_id, "key": idempotency_key}
            )
        grants: list[GrantRecord] = []
        holds: list[HoldRecord] = []
        keyed_entry: EntryRecord | None = None
        keyed_hold: HoldRecord | None = None
        for r in rows:
            if r.src == "g":
                grants.append(
                    GrantRecord(
                        id=r.id,
                        kind=r.kind,
                        amount=r.amount,
                        remaining=r.n2,
                        priority=r.priority,
                        effective_at=r.t1,
                        expires_at=r.t2,
                        created_at=r.t3,
                        description=r.description,
                    )
                )
            elif r.src == "h":
                hold = HoldRecord(
                    id=r.id,
                    amount=r.amount,
                    captured=r.n2,
                    status=r.kind,
                    draws=load_draws(r.draws),
                    created_at=r.t1,
                    expires_at=r.t2,
                    settled_at=r.t3,
                    idempotency_key=r.idempotency_key,
                    request_hash=r.request_hash,
                )
                if hold.status == "active":
                    holds.append(hold)
                if idempotency_key is not None and hold.idempotency_key == idempotency_key:
                    keyed_hold = hold
            else:
                keyed_entry = EntryRecord(
                    id=r.id,
                    type=r.kind,
                    amount=r.amount,
                    balance_after=r.n2,
                    created_at=r.t1,
                    description=r.description,
                    grant_id=r.grant_id,
                    hold_id=r.hold_id,
                    draws=load_draws(r.draws),
                    idempotency_key=r.idempotency_key,
                    request_hash=r.request_hash,
                    seq=r.seq,
                )
        return AccountState(
            user_id=self.user_id,
            created=self.created,
            grants=tuple(grants),
            holds=tuple(holds),
            keyed_entry=keyed_entry,
            keyed_hold=keyed_hold,
        )

    async def get_grants(self, grant_ids: Sequence[str]) -> list[GrantRecord]:
        if not grant_ids:
            return []
        rows = await self._conn.execute(
            self._sql.grants_by_id, {"account_id": self.account_id, "ids": list(grant_ids)}
        )
        return [to_grant(r) for r in rows]

    async def get_hold(self, hold_id: str) -> HoldRecord | None:
        rows = (
            await self._conn.execute(
                self._sql.hold_by_id, {"account_id": self.account_id, "id": hold_id}
            )
        ).all()
        return to_hold(rows[0]) if rows else None

    async def apply(self, changes: Changes) -> None:
        if not self._write:
            raise RuntimeError("apply() in a read-only unit")
        sql, a, conn = self._sql, self.account_id, self._conn
        if changes.new_grants:
            await conn.execute(sql.insert_grants, [grant_row(x, a) for x in changes.new_grants])
        if changes.grant_remaining:
            await conn.execute(
                sql.set_remaining,
                [{"b_id": k, "b_remaining": v} for k, v in changes.grant_remaining.items()],
            )
        if changes.new_holds:
            await conn.execute(sql.insert_holds, [hold_row(x, a) for x in changes.new_holds])
        if changes.updated_holds:
            await conn.execute(
                sql.settle_holds,
                [
                    {
                        "b_id": x.id,
                        "b_status": x.status,
                        "b_captured": x.captured,
                        "b_settled_at": x.settled_at,
                    }
                    for x in changes.updated_holds
                ],
            )
        if changes.new_entries:
            await conn.execute(sql.insert_entries, [entry_row(x, a) for x in changes.new_entries])


async def lock_account(
    conn: AsyncConnection, sql: LedgerStatements, user_id: str, now: Callable[[], datetime]
) -> tuple[int, bool]:
    """Lock the account row (creating it if missing); return (id, created)."""
    params = {"user_id": user_id}
    account_id = (await conn.execute(sql.lock_account, params)).scalar()
    if account_id is not None:
        return account_id, False
    created = (await conn.execute(sql.create_account, {**params, "now": now()})).scalar()
    if created is not None:
        return created, True
    # Another transaction created it between our read and insert; lock that row.
    return (await conn.execute(sql.lock_account, params)).scalar_one(), False
