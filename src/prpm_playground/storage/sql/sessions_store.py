"""Sessions, exchanges, share links and feedback on SQL (the ``SessionStorage`` port).

Writes run in the dialect's write transactions (``Transactions.begin``: on
SQLite the in-process writer lock and ``BEGIN IMMEDIATE``). Uniqueness is the
database's job: the primary key of an exchange ``(session_id, idx)``, one run
id per user, one live share per session (a partial unique index) and one vote
per exchange. A violated rule rolls the whole transaction back and surfaces
as ``Conflict``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

from ...errors import Conflict, NotFound, PlaygroundError
from ...models import SharedExchange, Usage
from ..base import ExchangeRecord, FeedbackRecord, SessionRecord, ShareRecord
from .engine import Transactions
from .lite import LiteStatements
from .tables import Tables

__all__ = ["SQLSessions"]

# A share insert that lost to a live share which was revoked before it could
# be read tries again; only a pathological share/unshare loop gets this far.
_SHARE_ATTEMPTS = 5


class SQLSessions:
    """The ``SessionStorage`` methods, for ``SQLAlchemyStorage`` to delegate to.

    Args:
        tx: The storage's transactions (and with them its SQLite writer lock).
        tables: The storage's tables.
        ready: Awaited before every operation (the storage's schema check).
    """

    def __init__(
        self, tx: Transactions, tables: Tables, ready: Callable[[], Awaitable[None]]
    ) -> None:
        self._tx = tx
        self._t = tables
        self._ready = ready
        self._lite = LiteStatements(sqlite.dialect())
        s = tables.sessions
        insert = self._insert(s)
        self._upsert_session = insert.on_conflict_do_update(
            index_elements=[s.c.id],
            set_={
                "updated_at": insert.excluded.updated_at,
                "exchange_count": s.c.exchange_count + 1,
            },
            # Never append to someone else's session, whatever the caller checked.
            where=s.c.user_id == insert.excluded.user_id,
        ).returning(s.c.exchange_count)
        # Continuing a session: never re-creates one that was deleted meanwhile.
        self._append_session = (
            update(s)
            .where(s.c.id == bindparam("sid"), s.c.user_id == bindparam("uid"))
            .values(exchange_count=s.c.exchange_count + 1, updated_at=bindparam("at"))
            .returning(s.c.exchange_count)
        )
        # The exchange takes the index the session's count gave it, in the same
        # transaction: concurrent appends queue on the session row, never collide.
        x = tables.exchanges
        self._append_exchange = x.insert().values(
            idx=select(s.c.exchange_count - 1)
            .where(s.c.id == bindparam("of_session"))
            .scalar_subquery()
        )
        self._insert_exchange = x.insert()

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        return postgresql.insert(table) if self._tx.is_postgres else sqlite.insert(table)

    # -- sessions and exchanges ---------------------------------------------------

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """Return the session with all its exchanges, oldest first, or None."""
        await self._ready()
        s, x = self._t.sessions, self._t.exchanges
        async with self._tx.begin(write=False) as conn:
            row = (await conn.execute(select(s).where(s.c.id == session_id))).first()
            if row is None:
                return None
            exchanges = await conn.execute(
                select(x).where(x.c.session_id == session_id).order_by(x.c.idx)
            )
            return _to_session(row, tuple(_to_exchange(r) for r in exchanges))

    async def list_sessions(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None
    ) -> list[SessionRecord]:
        """Return up to ``limit`` of a user's sessions, newest ``(updated_at, id)`` first."""
        await self._ready()
        s = self._t.sessions
        query = (
            select(s)
            .where(s.c.user_id == user_id)
            .order_by(s.c.updated_at.desc(), s.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(tuple_(s.c.updated_at, s.c.id) < before)
        async with self._tx.begin(write=False) as conn:
            return [_to_session(r, ()) for r in await conn.execute(query)]

    async def save_exchange(self, session: SessionRecord, exchange: ExchangeRecord) -> int:
        """Append ``exchange`` at the session's next index; all or nothing.

        A session with ``exchange_count`` 0 is created (if it is new); any
        other is continued, and only if it still exists. Appends to one
        session queue on its row: each gets the next index, whatever
        ``exchange.index`` says.

        Returns:
            The index the exchange was saved at.

        Raises:
            NotFound: The session to continue was deleted (or is another user's).
            Conflict: The user already has an exchange with this run id, or
                the new session's id belongs to another user.
        """
        await self._ready()
        new = session.exchange_count == 0
        first: Executable = self._upsert_session if new else self._append_session
        first_row = (
            _session_row(session, 1)
            if new
            else {"sid": session.id, "uid": session.user_id, "at": session.updated_at}
        )
        exchange_row = _exchange_row(session, exchange)
        del exchange_row["idx"]
        exchange_row["of_session"] = session.id
        refused: PlaygroundError = (
            Conflict(f"session {session.id!r} belongs to another user")
            if new
            else NotFound(f"session {session.id!r} no longer exists")
        )
        try:
            if self._tx.is_postgres:
                async with self._tx.begin(write=True) as conn:
                    count = (await conn.execute(first, first_row)).scalar()
                    if count is None:
                        raise refused
                    await conn.execute(self._append_exchange, exchange_row)
                return int(count) - 1
            # SQLite: both statements and the commit in one hand-off (see ``lite``).
            counted = self._lite.get(first, tuple(first_row)).fetch(first_row)
            insert = self._lite.get(self._append_exchange, tuple(exchange_row)).fetch(exchange_row)

            def save(c: sqlite3.Connection) -> int:
                rows = counted(c)
                if not rows:
                    raise refused
                insert(c)
                return int(rows[0][0]) - 1

            joint = self._tx.joint()
            if joint is not None:
                # Inside ``together``: after the writes already deferred there
                # (the run's capture), in a savepoint of their commit, so a
                # refusal here leaves them committed.
                index = await joint.finish(save)
            else:
                async with self._tx.lite(write=True) as tx:
                    index = await tx.commit(save)
            assert index is not None
            return index
        except (IntegrityError, sqlite3.IntegrityError) as exc:
            raise Conflict(
                f"run {exchange.run_id!r} already saved an exchange, "
                f"or session {session.id!r} could not take it"
            ) from exc

    async def create_session(self, session: SessionRecord) -> None:
        """Store a new session together with ``session.exchanges`` (for forks).

        Raises:
            Conflict: The session id or one of the run ids is taken.
        """
        await self._ready()
        try:
            async with self._tx.begin(write=True) as conn:
                await conn.execute(
                    self._t.sessions.insert().values(_session_row(session, len(session.exchanges)))
                )
                if session.exchanges:
                    await conn.execute(
                        self._t.exchanges.insert(),
                        [_exchange_row(session, e) for e in session.exchanges],
                    )
        except IntegrityError as exc:
            raise Conflict(f"session {session.id!r} could not be created") from exc

    async def exchange_by_run(
        self, user_id: str, run_id: str
    ) -> tuple[SessionRecord, ExchangeRecord] | None:
        """Return the session (without exchanges) and exchange a run saved, or None."""
        await self._ready()
        s, x = self._t.sessions, self._t.exchanges
        async with self._tx.begin(write=False) as conn:
            found = (
                await conn.execute(select(x).where(x.c.user_id == user_id, x.c.run_id == run_id))
            ).first()
            if found is None:
                return None
            # The foreign key guarantees the session row.
            row = (await conn.execute(select(s).where(s.c.id == found.session_id))).one()
            return _to_session(row, ()), _to_exchange(found)

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session; its exchanges, feedback and shares go by cascade."""
        await self._ready()
        s = self._t.sessions
        async with self._tx.begin(write=True) as conn:
            result = await conn.execute(delete(s).where(s.c.id == session_id))
            return bool(result.rowcount)

    # -- shares -------------------------------------------------------------------

    async def create_share(self, share: ShareRecord) -> ShareRecord:
        """Store ``share`` unless the session has a live share; return the live one.

        Raises:
            NotFound: The session does not exist (any more).
        """
        await self._ready()
        sh = self._t.shares
        insert = (
            self._insert(sh)
            .values(_share_row(share))
            .on_conflict_do_nothing(
                index_elements=[sh.c.session_id], index_where=sh.c.revoked_at.is_(None)
            )
            .returning(sh.c.token)
        )
        live = select(sh).where(sh.c.session_id == share.session_id, sh.c.revoked_at.is_(None))
        try:
            for _ in range(_SHARE_ATTEMPTS):
                async with self._tx.begin(write=True) as conn:
                    if (await conn.execute(insert)).first() is not None:
                        return share
                    # Lost to a live share: on PostgreSQL the insert waited for
                    # it to commit, and this read (a fresh snapshot) sees it.
                    row = (await conn.execute(live)).first()
                    if row is not None:
                        return _to_share(row)
        except IntegrityError as exc:
            raise NotFound(f"session {share.session_id!r} not found") from exc
        raise Conflict(f"session {share.session_id!r} is being shared and unshared concurrently")

    async def revoke_share(self, session_id: str, at: datetime) -> bool:
        """Revoke the session's live share; False if it had none."""
        await self._ready()
        sh = self._t.shares
        query = (
            update(sh)
            .where(sh.c.session_id == session_id, sh.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        async with self._tx.begin(write=True) as conn:
            return bool((await conn.execute(query)).rowcount)

    async def get_share(self, token: str) -> ShareRecord | None:
        """Return the live share with this token, or None (unknown or revoked)."""
        return await self._live_share(self._t.shares.c.token == token)

    async def live_share(self, session_id: str) -> ShareRecord | None:
        """Return the session's live share, or None."""
        return await self._live_share(self._t.shares.c.session_id == session_id)

    async def _live_share(self, which: ColumnElement[bool]) -> ShareRecord | None:
        await self._ready()
        sh = self._t.shares
        query = select(sh).where(which, sh.c.revoked_at.is_(None))
        async with self._tx.begin(write=False) as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _to_share(row)

    # -- feedback -----------------------------------------------------------------

    async def add_feedback(self, feedback: FeedbackRecord) -> None:
        """Store a vote.

        Raises:
            Conflict: The exchange already has a vote.
            NotFound: The exchange does not exist (any more).
        """
        await self._ready()
        f = self._t.feedback
        insert = (
            self._insert(f)
            .values(
                session_id=feedback.session_id,
                exchange_idx=feedback.exchange_index,
                user_id=feedback.user_id,
                helpful=feedback.helpful,
                comment=feedback.comment,
                created_at=feedback.created_at,
            )
            .on_conflict_do_nothing(index_elements=[f.c.session_id, f.c.exchange_idx])
            .returning(f.c.session_id)
        )
        try:
            async with self._tx.begin(write=True) as conn:
                stored = (await conn.execute(insert)).first() is not None
        except IntegrityError as exc:  # the foreign key: no such exchange
            raise NotFound(
                f"exchange {feedback.exchange_index} of session {feedback.session_id!r} not found"
            ) from exc
        if not stored:
            raise Conflict(f"exchange {feedback.exchange_index} already has feedback")


# -- rows <-> records -----------------------------------------------------------------


def _session_row(session: SessionRecord, exchange_count: int) -> dict[str, Any]:
    return {
        "id": session.id,
        "user_id": session.user_id,
        "package_id": session.package_id,
        "package_version": session.package_version,
        "no_prompt": session.no_prompt,
        "comparison_id": session.comparison_id,
        "title": session.title,
        "exchange_count": exchange_count,
        "created_at": session.created_at,
        "updated_at": session.updated_at,
    }


def _exchange_row(session: SessionRecord, exchange: ExchangeRecord) -> dict[str, Any]:
    usage = exchange.usage
    return {
        "session_id": session.id,
        "idx": exchange.index,
        "user_id": session.user_id,
        "run_id": exchange.run_id,
        "input": exchange.input,
        "response": exchange.response,
        "model": exchange.model,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "credits_spent": exchange.credits_spent,
        "duration_ms": exchange.duration_ms,
        "stop_reason": exchange.stop_reason,
        "created_at": exchange.created_at,
    }


def _share_row(share: ShareRecord) -> dict[str, Any]:
    return {
        "token": share.token,
        "session_id": share.session_id,
        "user_id": share.user_id,
        "package_id": share.package_id,
        "package_version": share.package_version,
        "no_prompt": share.no_prompt,
        "snapshot": json.dumps(
            [e.model_dump(mode="json") for e in share.exchanges],
            ensure_ascii=False,
            separators=(",", ":"),
        ),
        "created_at": share.created_at,
        "revoked_at": share.revoked_at,
    }


def _to_session(row: Any, exchanges: tuple[ExchangeRecord, ...]) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        user_id=row.user_id,
        package_id=row.package_id,
        package_version=row.package_version,
        no_prompt=bool(row.no_prompt),
        created_at=row.created_at,
        updated_at=row.updated_at,
        title=row.title,
        exchange_count=row.exchange_count,
        comparison_id=row.comparison_id,
        exchanges=exchanges,
    )


def _to_exchange(row: Any) -> ExchangeRecord:
    return ExchangeRecord(
        index=row.idx,
        input=row.input,
        response=row.response,
        model=row.model,
        usage=Usage(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cache_creation_input_tokens=row.cache_creation_input_tokens,
            cache_read_input_tokens=row.cache_read_input_tokens,
        ),
        credits_spent=row.credits_spent,
        run_id=row.run_id,
        created_at=row.created_at,
        duration_ms=row.duration_ms,
        stop_reason=row.stop_reason,
    )


def _to_share(row: Any) -> ShareRecord:
    return ShareRecord(
        token=row.token,
        session_id=row.session_id,
        user_id=row.user_id,
        package_id=row.package_id,
        package_version=row.package_version,
        no_prompt=bool(row.no_prompt),
        created_at=row.created_at,
        exchanges=tuple(SharedExchange.model_validate(e) for e in json.loads(row.snapshot)),
        revoked_at=row.revoked_at,
    )
