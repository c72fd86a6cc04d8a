"""SQLAlchemyStorage: the SQL adapter's entry point."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ..._clock import utc_now
from ..._loops import LoopLock
from ...errors import InvalidRequest, SchemaMismatch
from ..base import (
    EntryRecord,
    ExchangeRecord,
    FeedbackRecord,
    GrantRecord,
    HoldRecord,
    SessionRecord,
    ShareRecord,
)
from . import migrate as migrations
from .due import DueStatements, SQLDueBatch
from .engine import (
    BUSY_TIMEOUT_S,
    DEFAULT_URL,
    Transactions,
    configure,
    create_engine,
    shown_url,
)
from .ledger_store import LedgerStatements, SQLiteExecutor, SQLLedgerUnit, open_unit
from .limits_store import SQLRateLimits
from .postgres import PostgresExecutor, PostgresStatements, driver_transaction
from .records import to_entry, to_grant, to_hold
from .sessions_store import SQLSessions
from .tables import Tables, build_tables

__all__ = ["SQLAlchemyStorage"]

logger = logging.getLogger(__name__)

_R = TypeVar("_R", HoldRecord, EntryRecord)

_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,29}$")


class SQLAlchemyStorage:
    """Storage on SQLite (the embedded default) or PostgreSQL, via SQLAlchemy 2 async.

    All tables, indexes, constraints and the migration version table carry
    ``table_prefix``, in the library's own ``MetaData``; host tables are never
    touched.

    Args:
        url_or_async_engine: A URL (``sqlite+aiosqlite:///…`` or
            ``postgresql+asyncpg://…``) or an ``AsyncEngine`` the host owns.
            Defaults to ``sqlite+aiosqlite:///./prpm_playground.db``.
        table_prefix: Prefix of every object the library creates.
        busy_timeout: Seconds a transaction may wait for the database: for
            this process's other writers, then again for another process's
            lock on a SQLite file, or for a new PostgreSQL connection. Past
            that, and whenever the database restarts or cannot be reached,
            a call raises ``StorageUnavailable`` with nothing written.

    Raises:
        InvalidRequest: An unsupported URL, a malformed prefix, or a
            ``busy_timeout`` that is not a positive number of seconds.
    """

    def __init__(
        self,
        url_or_async_engine: str | AsyncEngine | None = None,
        *,
        table_prefix: str = "prpm_",
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        if not isinstance(table_prefix, str) or not _PREFIX.match(table_prefix):
            raise InvalidRequest(
                "table_prefix must be 1-30 lower-case letters, digits or '_', "
                "starting with a letter"
            )
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, int | float)
            or not 0 < busy_timeout <= 3600
        ):
            raise InvalidRequest("busy_timeout must be a number of seconds, > 0 and <= 3600")
        if isinstance(url_or_async_engine, AsyncEngine):
            self.engine = url_or_async_engine
            self._owns_engine = False
            configure(self.engine, busy_timeout=busy_timeout)
        else:
            self.engine = create_engine(
                url_or_async_engine or DEFAULT_URL, busy_timeout=busy_timeout
            )
            self._owns_engine = True
        if self.engine.dialect.name not in ("sqlite", "postgresql"):
            raise InvalidRequest(f"unsupported database {self.engine.dialect.name!r}")
        self.tables: Tables = build_tables(table_prefix)
        self.table_prefix = table_prefix
        self._tx = Transactions(self.engine, busy_timeout=busy_timeout)
        self._sql = LedgerStatements(self.tables)
        self._pg = (
            PostgresStatements(self.tables, self._sql.function_name)
            if self._tx.is_postgres
            else None
        )
        self._due = DueStatements(self.tables, self._sql, postgres=self._tx.is_postgres)
        self._schema_checked = False
        self._schema_lock = LoopLock()
        self._sessions = SQLSessions(self._tx, self.tables, self._check_schema)
        self._limits = SQLRateLimits(self._tx, self.tables.rate_limits)

    # -- lifecycle ------------------------------------------------------------

    async def migrate(self) -> None:
        """Create or upgrade the schema to this version's head. Idempotent.

        Safe to call from several processes at once: on PostgreSQL the
        migration runs under an advisory lock, on SQLite under the write lock.
        Within one process, migrations (of any database) run one at a time.

        Raises:
            SchemaMismatch: The database was migrated by a newer version.
        """
        async with migrations.one_at_a_time(), self._tx.begin(write=True) as conn:
            if self._tx.is_postgres:
                await conn.exec_driver_sql(
                    f"SELECT pg_advisory_xact_lock(hashtext('{self.table_prefix}migrate'))"
                )
            await conn.run_sync(migrations.upgrade, self.table_prefix)
            if self._tx.is_postgres:
                # Code, not schema: derived from this version's queries and
                # replaced on every migrate (its name carries a version).
                await conn.exec_driver_sql(self._sql.function_ddl)
        self._schema_checked = True
        logger.info("prpm_playground schema is at %s", migrations.head_revision())

    async def current_revision(self) -> str | None:
        """The schema revision of the database, or None if never migrated."""
        async with self._tx.begin(write=False) as conn:
            return await conn.run_sync(migrations.current_revision, self.table_prefix)

    async def close(self) -> None:
        """Release pooled connections; used again, the storage opens new ones.

        An engine passed in by the host is left alone: its pool is the host's.
        On SQLite this also closes the connection the storage keeps for
        writes, once the writes in flight on this event loop have ended
        (unless another event loop, still open, is using it).
        """
        await self._tx.close()
        if self._owns_engine:
            await self.engine.dispose()

    async def _check_schema(self) -> None:
        if self._schema_checked:
            return
        async with self._schema_lock.get():
            if self._schema_checked:
                return
            revision = await self.current_revision()
            migrations.check_known(revision, self.table_prefix)
            head = migrations.head_revision(self.table_prefix)
            if revision != head:
                raise SchemaMismatch(
                    f"the database schema is at {revision or 'nothing (not migrated)'}, "
                    f"this prpm_playground needs {head}; run: "
                    + migrations.upgrade_hint(shown_url(self.engine.url))
                )
            self._schema_checked = True

    # -- the ledger port --------------------------------------------------------

    @asynccontextmanager
    async def account(
        self, user_id: str, *, write: bool, idempotency_key: str | None = None
    ) -> AsyncIterator[SQLLedgerUnit]:
        """Open a unit of work on one account (see ``LedgerStorage.account``)."""
        await self._check_schema()
        key = idempotency_key
        if self._pg is not None:
            pg_sql = self._pg

            def first(driver: object) -> Awaitable[SQLLedgerUnit]:
                executor = PostgresExecutor(driver, pg_sql)
                return open_unit(executor, user_id, write=write, key=key, now=utc_now)

            async with driver_transaction(self.engine, write=write, first=first) as unit:
                yield unit
        else:
            async with self._tx.lite(write=write) as tx:
                lite = SQLiteExecutor(tx, self._sql)
                yield await open_unit(lite, user_id, write=write, key=key, now=utc_now)

    def together(self) -> AbstractAsyncContextManager[bool]:
        """Ledger writes and an exchange save in the block share one transaction.

        On a SQLite file this saves the run's settlement a transaction of its
        own (see ``SharedCommit``); on PostgreSQL and in-memory SQLite the
        block's writes commit one by one as usual. On SQLite the block holds
        the write lock: ledger writes, ``save_exchange`` and rate-limit hits
        join it, and other writes (sharing, feedback, forks, deletes) raise
        ``RuntimeError`` rather than wait for it. Yields whether the block's
        writes share one transaction.
        """
        return self._tx.together()

    # -- the reset job's port -----------------------------------------------------

    @asynccontextmanager
    async def due(
        self, now: datetime, *, limit: int, after: object | None, write: bool
    ) -> AsyncIterator[SQLDueBatch]:
        """Open a batch of due accounts (see ``ResetStorage.due``)."""
        await self._check_schema()
        sql = self._due
        if self._pg is not None:
            # A transaction even for a dry run, so its reads agree with each other.
            def first(driver: object) -> Awaitable[SQLDueBatch]:
                return sql.open(sql.executor(driver), now, limit=limit, after=after, write=write)

            async with driver_transaction(self.engine, write=True, first=first) as batch:
                yield batch
        else:
            async with self._tx.begin(write=write) as conn:
                yield await sql.open(sql.executor(conn), now, limit=limit, after=after, write=write)

    async def count_due(self, now: datetime) -> int:
        """How many accounts are due at ``now``."""
        await self._check_schema()
        async with self._tx.begin(write=False) as conn:
            return int((await conn.execute(self._due.count, {"now": now})).scalar_one())

    async def user_of_hold(self, hold_id: str) -> str | None:
        """Return the user id owning a hold, or None."""
        await self._check_schema()
        acc, holds = self.tables.accounts, self.tables.holds
        query = select(acc.c.user_id).join(holds, holds.c.account_id == acc.c.id)
        async with self._tx.begin(write=False) as conn:
            return (await conn.execute(query.where(holds.c.id == hold_id))).scalar()

    async def entries(
        self,
        user_id: str,
        *,
        types: Sequence[str] | None,
        limit: int,
        before_seq: int | None,
    ) -> list[EntryRecord]:
        """Return up to ``limit`` entries, newest first, with ``seq`` below ``before_seq``."""
        await self._check_schema()
        acc, e = self.tables.accounts, self.tables.entries
        query = (
            select(e)
            .join(acc, acc.c.id == e.c.account_id)
            .where(acc.c.user_id == user_id)
            .order_by(e.c.seq.desc())
            .limit(limit)
        )
        if types is not None:
            query = query.where(e.c.type.in_(list(types)))
        if before_seq is not None:
            query = query.where(e.c.seq < before_seq)
        async with self._tx.begin(write=False) as conn:
            return [to_entry(r) for r in await conn.execute(query)]

    async def audit(
        self, user_id: str
    ) -> tuple[list[GrantRecord], list[HoldRecord], list[EntryRecord]] | None:
        """Return every grant, hold and entry of an account, or None if it does not exist."""
        await self._check_schema()
        t = self.tables
        async with self._tx.begin(write=False) as conn:
            account_id = (
                await conn.execute(select(t.accounts.c.id).where(t.accounts.c.user_id == user_id))
            ).scalar()
            if account_id is None:
                return None
            grants = await conn.execute(select(t.grants).where(t.grants.c.account_id == account_id))
            holds = await conn.execute(select(t.holds).where(t.holds.c.account_id == account_id))
            entries = await conn.execute(
                select(t.entries)
                .where(t.entries.c.account_id == account_id)
                .order_by(t.entries.c.seq)
            )
            keys = {
                (r.entry_id or r.hold_id): (r.key, r.request_hash)
                for r in await conn.execute(select(t.keys).where(t.keys.c.account_id == account_id))
            }

            def keyed(record: _R) -> _R:
                key = keys.get(record.id)
                if key is None:
                    return record
                return replace(record, idempotency_key=key[0], request_hash=key[1])

            return (
                [to_grant(r) for r in grants],
                [keyed(to_hold(r)) for r in holds],
                [keyed(to_entry(r)) for r in entries],
            )

    # -- the sessions port (see SessionStorage; implemented in sessions_store) ------

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """Return the session with all its exchanges, oldest first, or None."""
        return await self._sessions.get_session(session_id)

    async def list_sessions(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None
    ) -> list[SessionRecord]:
        """Return up to ``limit`` of a user's sessions, newest ``(updated_at, id)`` first."""
        return await self._sessions.list_sessions(user_id, limit=limit, before=before)

    async def save_exchange(self, session: SessionRecord, exchange: ExchangeRecord) -> int:
        """Append ``exchange`` at the session's next index (see ``SessionStorage``)."""
        return await self._sessions.save_exchange(session, exchange)

    async def create_session(self, session: SessionRecord) -> None:
        """Store a new session together with ``session.exchanges`` (for forks)."""
        await self._sessions.create_session(session)

    async def exchange_by_run(
        self, user_id: str, run_id: str
    ) -> tuple[SessionRecord, ExchangeRecord] | None:
        """Return the session (without exchanges) and exchange a run saved, or None."""
        return await self._sessions.exchange_by_run(user_id, run_id)

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session with its exchanges, feedback and shares; False if missing."""
        return await self._sessions.delete_session(session_id)

    async def create_share(self, share: ShareRecord) -> ShareRecord:
        """Store ``share`` unless the session has a live share; return the live one."""
        return await self._sessions.create_share(share)

    async def revoke_share(self, session_id: str, at: datetime) -> bool:
        """Revoke the session's live share; False if it had none."""
        return await self._sessions.revoke_share(session_id, at)

    async def get_share(self, token: str) -> ShareRecord | None:
        """Return the live share with this token, or None (unknown or revoked)."""
        return await self._sessions.get_share(token)

    async def live_share(self, session_id: str) -> ShareRecord | None:
        """Return the session's live share, or None."""
        return await self._sessions.live_share(session_id)

    async def add_feedback(self, feedback: FeedbackRecord) -> None:
        """Store a vote; ``Conflict`` if the exchange already has one."""
        await self._sessions.add_feedback(feedback)

    # -- the rate-limit port (see RateLimitStorage; implemented in limits_store) ------

    async def rate_limit_hit(self, key: str, window_start: datetime, amount: int = 1) -> int:
        """Add ``amount`` to the counter of ``(key, window_start)``; return its new value."""
        await self._check_schema()
        return await self._limits.record_hit(key, window_start, amount)

    async def rate_limit_prune(self, before: datetime) -> int:
        """Delete the counters of windows that started before ``before``; return how many."""
        await self._check_schema()
        return await self._limits.prune(before)
