"""The ledger's unit of work on SQL: lock an account, read it, write rows back.

A write unit costs, on the hot path, one round trip to lock the account and
read its live grants, active holds and idempotency matches, and (on
PostgreSQL) one to write every changed row. Statements are built
once per storage and executed with bound parameters, so SQLAlchemy's
compiled cache serves every call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import column, literal, literal_column
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.types import TypeEngine

from ..base import AccountState, Changes, EntryRecord, GrantRecord, HoldRecord
from .pg_writes import build_write_all, expected_rows, write_all_params
from .records import entry_row, grant_row, hold_row, key_rows, load_draws, to_grant, to_hold
from .tables import Tables, UTCDateTime


def _null(type_: TypeEngine[Any]) -> ColumnElement[Any]:
    return null().cast(type_)


class LedgerStatements:
    """The ledger's SQL, built once per storage."""

    def __init__(self, tables: Tables, *, postgres: bool) -> None:
        t = tables
        self.tables = t
        self.postgres = postgres
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
            ).where(g.c.account_id == account, g.c.remaining > 0)

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
                ]

            no_key = [_null(String()), _null(String()), _null(String()), _null(String())]
            # Only the partial index on active holds can serve this part.
            active = select(*hold_columns("h", no_key)).where(
                h.c.account_id == account, h.c.status == "active"
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
                )
                .join_from(k, e, e.c.id == k.c.entry_id)
                .where(k.c.account_id == account, k.c.key == key)
            )
            return [grants, active, keyed_hold, keyed_entry]

        def head(account: ColumnElement[Any]) -> list[Any]:
            """The row that reports the account id (in ``seq``)."""
            return [
                literal("a"),
                *(_null(String()) for _ in range(2)),
                *(_null(BigInteger()) for _ in range(2)),
                _null(Integer()),
                *(_null(UTCDateTime()) for _ in range(3)),
                *(_null(Text()) for _ in range(2)),
                *(_null(String()) for _ in range(4)),
                account,
            ]

        key_param: BindParameter[str] = bindparam("key")
        # SQLite: BEGIN IMMEDIATE already holds the write lock, so one plain
        # statement finds the account and reads its state.
        found = select(acc.c.id).where(acc.c.user_id == user).cte("acct")
        account_id = select(found.c.id).scalar_subquery()
        self.open = {
            keyed: union_all(
                *parts(account_id, key_param if keyed else None), select(*head(found.c.id))
            )
            for keyed in (False, True)
        }
        # PostgreSQL: the same query inside a function that first locks the
        # account row. Each statement of a VOLATILE function takes a fresh
        # snapshot, so the state is read as of after the lock was granted:
        # one round trip, never a stale read.
        v_account = literal_column("v_account", BigInteger())
        body = union_all(
            select(*head(v_account)), *parts(v_account, literal_column("p_key", String()))
        )
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
        # Positional result columns: SQLAlchemy then maps them by position
        # instead of matching names on every execution.
        self.open_locked = text(
            f"SELECT * FROM {self.function_name}(:user_id, :key, :lock)"
        ).columns(*(column(name, _TYPES[type_]()) for name, type_ in _RESULT))
        dialect_insert = postgresql.insert if postgres else sqlite.insert
        self.create_account = (
            dialect_insert(acc)
            .values(user_id=user, created_at=bindparam("now", type_=UTCDateTime()))
            .on_conflict_do_nothing(index_elements=[acc.c.user_id])
            .returning(acc.c.id)
        )
        # By primary key alone (one usable index); the unit checks the account.
        self.grants_by_id = select(g).where(g.c.id.in_(bindparam("ids", expanding=True)))
        self.hold_by_id = select(h).where(h.c.id == bindparam("id"))
        self.insert_keys = k.insert()

        self.write_all = build_write_all(t) if postgres else None
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


def _parse(rows: Iterable[Any], key: str | None) -> _Read:
    read = _Read()
    for r in rows:
        if r.src == "g":
            read.grants.append(
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
        elif r.src in ("h", "k"):
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
            if r.src == "h":
                read.holds.append(hold)
            else:
                read.keyed_hold = hold
        elif r.src == "e":
            read.keyed_entry = EntryRecord(
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
        else:
            read.account_id = r.seq
    return read


async def open_unit(
    conn: AsyncConnection,
    sql: LedgerStatements,
    user_id: str,
    *,
    write: bool,
    key: str | None,
    now: Callable[[], datetime],
) -> SQLLedgerUnit:
    """Find (or create) and, for writes, lock the account; read its state."""
    params: dict[str, Any] = {"user_id": user_id, "key": key, "lock": write}

    async def read_state() -> _Read:
        if sql.postgres:
            return _parse(await conn.execute(sql.open_locked, params), key)
        return _parse(await conn.execute(sql.open[key is not None], params), key)

    read = await read_state()
    created = False
    if read.account_id is None:
        if not write:
            raise LookupError(user_id)
        new_id = (await conn.execute(sql.create_account, {**params, "now": now()})).scalar()
        if new_id is not None:
            read, created = _Read(account_id=new_id), True
        else:
            # Another transaction created it since we looked; lock and read it.
            read = await read_state()
    assert read.account_id is not None
    state = AccountState(
        user_id=user_id,
        created=created,
        grants=tuple(read.grants),
        holds=tuple(read.holds),
        keyed_entry=read.keyed_entry,
        keyed_hold=read.keyed_hold,
    )
    return SQLLedgerUnit(conn, sql, read.account_id, state, write=write)


_TYPES: dict[str, type[TypeEngine[Any]]] = {
    "varchar": String,
    "bigint": BigInteger,
    "integer": Integer,
    "timestamptz": UTCDateTime,
    "text": Text,
}

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
        self,
        conn: AsyncConnection,
        sql: LedgerStatements,
        account_id: int,
        state: AccountState,
        *,
        write: bool,
    ) -> None:
        self._conn = conn
        self._sql = sql
        self.account_id = account_id
        self.state = state
        self._write = write

    async def get_grants(self, grant_ids: Sequence[str]) -> list[GrantRecord]:
        if not grant_ids:
            return []
        rows = await self._conn.execute(self._sql.grants_by_id, {"ids": list(grant_ids)})
        return [to_grant(r) for r in rows if r.account_id == self.account_id]

    async def get_hold(self, hold_id: str) -> HoldRecord | None:
        rows = (await self._conn.execute(self._sql.hold_by_id, {"id": hold_id})).all()
        if not rows or rows[0].account_id != self.account_id:
            return None
        return to_hold(rows[0])

    async def apply(self, changes: Changes) -> None:
        if not self._write:
            raise RuntimeError("apply() in a read-only unit")
        sql, a, conn = self._sql, self.account_id, self._conn
        if sql.write_all is not None:
            written = (await conn.execute(sql.write_all, write_all_params(changes, a))).scalar()
            if written != expected_rows(changes):
                # An update that matched no row means our view of the account
                # was wrong; never commit half of a decision.
                raise RuntimeError(f"wrote {written} rows, expected {expected_rows(changes)}")
            return
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
        keys = key_rows(changes, a)
        if keys:
            await conn.execute(sql.insert_keys, keys)
