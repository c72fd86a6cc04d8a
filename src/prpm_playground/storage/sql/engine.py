"""Engine creation and the per-dialect transaction rules.

SQLite: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions
so writers queue for the lock instead of failing mid-transaction; inside one
process writers also queue on an asyncio lock, which is cheaper than SQLite's
busy polling. PostgreSQL: ordinary transactions; writers lock the account row.

Either way a transaction waits a bounded time: ``busy_timeout`` seconds for
this process's other writers, then as long again for another process's lock
(SQLite) or for a connection (PostgreSQL). A database that stays locked,
restarts or cannot be reached ends the transaction with ``StorageUnavailable``
(see ``faults``); a pooled connection that the server closed is replaced
when it is checked out, at no cost to the others.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, PoolResetState, StaticPool

from ..._loops import LoopLock
from ...errors import InvalidRequest, StorageUnavailable
from .faults import raise_if_transient
from .lite import LiteTransaction, Work, check_driver, lite_transaction

DEFAULT_URL = "sqlite+aiosqlite:///./prpm_playground.db"
BUSY_TIMEOUT_S = 5.0
_CONFIGURED = "_prpm_playground_configured"
T = TypeVar("T")


def create_engine(url: str, *, busy_timeout: float = BUSY_TIMEOUT_S) -> AsyncEngine:
    """Create an async engine for ``url`` with the settings this library relies on.

    ``busy_timeout`` bounds, in seconds, SQLite's wait for another process's
    lock and PostgreSQL's wait for a new connection.
    """
    parsed = async_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.get_driver_name() != "aiosqlite":
            raise InvalidRequest("SQLite URLs must use the async driver: sqlite+aiosqlite://")
        # The pool's rollback-on-return would cost a hand-off to the driver's
        # thread per transaction; ``_reset_if_open`` rolls back only a
        # connection that comes back inside a transaction.
        kwargs: dict[str, Any] = {
            "connect_args": {"timeout": busy_timeout},
            "pool_reset_on_return": None,
        }
        # Named, not left to the default: SQLAlchemy before 2.1 gave file
        # databases under aiosqlite a NullPool, a new connection (and its
        # pragmas) per transaction.
        kwargs["poolclass"] = StaticPool if is_memory(parsed.database) else AsyncAdaptedQueuePool
        engine = create_async_engine(parsed, **kwargs)
        event.listen(engine.sync_engine, "reset", _reset_if_open)
    elif backend == "postgresql":
        if parsed.get_driver_name() != "asyncpg":
            raise InvalidRequest(
                "PostgreSQL URLs must use the async driver: postgresql+asyncpg:// "
                "(pip install 'prpm-playground[postgres]')"
            )
        # No pool_pre_ping: it costs three round trips per checkout. Stale
        # connections are recycled instead, and a dropped one fails its
        # transaction, which rolls back whole.
        try:
            engine = create_async_engine(
                parsed, pool_recycle=1800, connect_args={"timeout": busy_timeout}
            )
        except ImportError:
            raise InvalidRequest(
                "PostgreSQL needs the asyncpg driver: pip install 'prpm-playground[postgres]'"
            ) from None
    else:
        raise InvalidRequest(f"unsupported database {backend!r}: use SQLite or PostgreSQL")
    configure(engine, busy_timeout=busy_timeout)
    return engine


# What host platforms hand out, and the async driver each one means here.
_ASYNC_DRIVERS = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
}


def async_url(url: str) -> URL:
    """``url`` parsed, with a bare scheme mapped to the async driver.

    ``postgres://`` and ``postgresql://`` (what hosting platforms hand out)
    mean ``postgresql+asyncpg://``; ``sqlite://`` means ``sqlite+aiosqlite://``.
    A URL naming another driver is left as it is (and refused later).
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InvalidRequest(f"not a database URL: {shown_url(url)!r}") from exc
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed if driver is None else parsed.set(drivername=driver)


def shown_url(url: str | URL) -> str:
    """``url`` fit for messages and logs: its password, if any, masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<the database URL>"


def _reset_if_open(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
    """Roll back a pooled SQLite connection returned inside a transaction.

    Every transaction of this library ends in a commit or a rollback; this
    catches one a failure left open, which would otherwise keep the
    database's write lock. Reading ``in_transaction`` needs no hand-off.
    """
    if state.asyncio_safe and dbapi_connection._connection.in_transaction:
        dbapi_connection.rollback()


def is_memory(database: str | None) -> bool:
    """True for an in-memory SQLite database."""
    return not database or database == ":memory:" or "mode=memory" in database


def configure(engine: AsyncEngine, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
    """Install the per-connection settings and checks; harmless to call twice.

    SQLite: WAL and the busy timeout on every new connection. PostgreSQL: a
    pooled connection the server has closed (a restart, a failover, a killed
    backend) is dropped when it is checked out, and the pool hands out
    another; asyncpg knows it is closed, so this costs no round trip.
    """
    if getattr(engine.sync_engine, _CONFIGURED, False):
        return
    setattr(engine.sync_engine, _CONFIGURED, True)
    if engine.dialect.name == "postgresql":
        event.listen(engine.sync_engine, "checkout", _refuse_closed)
        return
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not is_memory(engine.url.database):
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # The pool then reconnects this one, and recycles every connection made
    # before now: one closed by the server means a restart or failover more
    # often than a single killed backend.
    if dbapi_connection.driver_connection.is_closed():
        closed = sa_exc.DisconnectionError("the server closed this pooled connection")
        closed.invalidate_pool = True
        raise closed


class HeldWriter:
    """A SQLite connection kept checked out for write transactions.

    Checking a connection out of SQLAlchemy's pool and back in costs more
    than a ledger write's own SQL; writers queue on the loop's lock anyway,
    so one connection serves them all. It serves one event loop at a time:
    a loop running alongside (a scheduler thread's ``ResetJob.run_sync``)
    uses the pool, and a later loop takes the connection over once the
    loop that had it is closed.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._driver: Any = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._claim = threading.Lock()

    async def driver(self) -> Any | None:
        """The held driver connection, or None if another running loop has it.

        The caller holds the running loop's writer lock.
        """
        if not self._claimed(asyncio.get_running_loop()):
            return None
        if self._driver is None:
            # Made by the pool (so its connect events, ours and the host's,
            # run), then detached from it: the pool no longer counts or
            # collects it, and ``close`` closes it.
            conn = await self._engine.connect()
            try:
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                check_driver(driver)
            except BaseException:
                await conn.close()
                raise
            raw.detach()
            self._driver = driver
        elif self._driver.in_transaction:
            # Left open by a loop that closed mid-transaction.
            await self._driver.rollback()
        return self._driver

    async def close(self) -> None:
        """Close the connection (a new one is made when needed).

        Not if another loop that is still open has it: that loop goes on
        writing with it (``ResetJob.run_sync`` closes the storage from its own
        loop, maybe while an application's loop serves requests).
        """
        with self._claim:
            if self._taken_by_another(asyncio.get_running_loop()):
                return
            driver, self._driver, self._loop = self._driver, None, None
        if driver is not None:
            await driver.close()

    def _claimed(self, loop: asyncio.AbstractEventLoop) -> bool:
        with self._claim:  # loops in other threads may ask at the same time
            if self._taken_by_another(loop):
                return False
            self._loop = weakref.ref(loop)
            return True

    def _taken_by_another(self, loop: asyncio.AbstractEventLoop) -> bool:
        owner = self._loop() if self._loop is not None else None
        return owner is not None and owner is not loop and not owner.is_closed()


class Joint:
    """One SQLite write transaction that several units of one task share (``together``)."""

    def __init__(self, owner: Transactions, tx: LiteTransaction, stack: AsyncExitStack) -> None:
        self.owner = owner
        self.task = asyncio.current_task()
        self.tx = tx
        self.ended = False
        self.broken = False
        self._stack = stack

    def serves(self, owner: Transactions) -> bool:
        """True if a unit of ``owner`` opened now should join this transaction."""
        return self.owner is owner and not self.ended and asyncio.current_task() is self.task

    async def finish(self, last: Work[T]) -> T | None:
        """Commit with ``last`` (see ``LiteTransaction.commit``) and release the lock.

        Units opened afterwards, in the same block, get transactions of their own.
        """
        self.ended = True
        try:
            if self.broken:
                raise _unit_left_writes()
            result = await self.tx.commit(last)
        except BaseException as exc:
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await self._stack.aclose()
        return result

    async def end(self, exc: BaseException | None) -> None:
        """Commit, or roll back if ``exc`` (or a unit that could not be undone)."""
        if self.ended:
            return
        self.ended = True
        if exc is None and self.broken:
            exc = _unit_left_writes()
            await self._stack.__aexit__(type(exc), exc, None)
            raise exc
        if exc is None:
            await self._stack.aclose()
        else:
            await self._stack.__aexit__(type(exc), exc, exc.__traceback__)

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[LiteTransaction]:
        """A unit inside the shared transaction: its writes are undone if it fails."""
        mark = self.tx.mark()
        try:
            yield self.tx
        except BaseException:
            if not self.tx.undo_to(mark):
                self.broken = True
            raise


class _Bounded:
    """Hold ``lock``, waiting at most ``timeout`` seconds for it."""

    __slots__ = ("_lock", "_timeout")

    def __init__(self, lock: asyncio.Lock, timeout: float) -> None:
        self._lock = lock
        self._timeout = timeout

    async def __aenter__(self) -> None:
        # Always under the timeout: an unlocked lock may still have waiters ahead.
        try:
            async with asyncio.timeout(self._timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise StorageUnavailable(
                f"the database is busy: no write slot within {self._timeout:g} s; "
                "nothing was written, try again shortly"
            ) from None

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


def _unit_left_writes() -> RuntimeError:
    return RuntimeError("a unit failed after its writes were sent")


_JOINT: ContextVar[Joint | None] = ContextVar("prpm_playground_joint", default=None)


class Transactions:
    """Opens transactions with the dialect's locking rules.

    A transaction that fails because the database is locked, restarting or
    unreachable raises ``StorageUnavailable`` (rolled back, nothing written);
    a write waits at most ``busy_timeout`` seconds for this process's other
    writers before that.
    """

    def __init__(self, engine: AsyncEngine, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.engine = engine
        self.busy_timeout = busy_timeout
        self.dialect = engine.dialect.name
        self._memory = self.dialect == "sqlite" and is_memory(engine.url.database)
        self._writer = LoopLock() if self.dialect == "sqlite" else None
        self._held = HeldWriter(engine) if self._writer is not None and not self._memory else None

    @property
    def is_postgres(self) -> bool:
        """True on PostgreSQL."""
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def begin(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on error."""
        try:
            async with self._queue(write), self._begin(write=write) as conn:
                yield conn
        except Exception as exc:
            raise_if_transient(exc)
            raise

    @asynccontextmanager
    async def lite(self, *, write: bool) -> AsyncIterator[LiteTransaction]:
        """SQLite only: a transaction sent to the driver's thread in batches.

        Inside ``together``, a write joins the shared transaction instead.
        """
        joint = self.joint() if write else None
        if joint is not None:
            async with joint.unit() as tx:
                yield tx
            return
        async with self._open_lite(write=write) as tx:
            yield tx

    def joint(self) -> Joint | None:
        """The shared transaction the current task's writes join, if any."""
        joint = _JOINT.get()
        return joint if joint is not None and joint.serves(self) else None

    @asynccontextmanager
    async def together(self) -> AsyncIterator[bool]:
        """On a SQLite file, the block's ``lite`` writes share one transaction.

        It saves a transaction's hand-offs, lock and connection per unit
        joined. It commits when the block ends (or at ``Joint.finish``) and
        rolls back everything if the block raises. Writes in the block that
        are not ``lite`` would wait for the lock it holds, so they raise
        instead. Elsewhere (PostgreSQL, an in-memory database) it does
        nothing. Yields whether the block's writes are joined (nested: the
        outer block's answer).
        """
        if self._writer is None or self._memory:
            yield False
            return
        if self.joint() is not None:
            yield True
            return
        stack = AsyncExitStack()
        tx = await stack.enter_async_context(self._open_lite(write=True))
        joint = Joint(self, tx, stack)
        token = _JOINT.set(joint)
        try:
            yield True
        except BaseException as exc:
            _JOINT.reset(token)
            await joint.end(exc)
            raise
        _JOINT.reset(token)
        await joint.end(None)

    async def close(self) -> None:
        """Close the connection held for writes, once this loop's writes in flight end."""
        if self._held is not None:
            async with self._queue(True):
                await self._held.close()

    @asynccontextmanager
    async def _open_lite(self, *, write: bool) -> AsyncIterator[LiteTransaction]:
        try:
            async with self._queue(write):
                driver = await self._held.driver() if write and self._held is not None else None
                if driver is not None:
                    async with lite_transaction(driver, write=write) as tx:
                        yield tx
                    return
                async with self.engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    async with lite_transaction(raw.driver_connection, write=write) as tx:
                        yield tx
        except Exception as exc:
            raise_if_transient(exc)
            raise

    def _queue(self, write: bool) -> AbstractAsyncContextManager[object]:
        """The in-process writer lock where SQLite needs it, else nothing."""
        if self._writer is not None and (write or self._memory):
            if self.joint() is not None:
                # The lock is this task's own, held by ``together``: waiting would never end.
                raise RuntimeError("only lite writes can run inside Transactions.together()")
            return _Bounded(self._writer.get(), self.busy_timeout)
        return nullcontext()

    @asynccontextmanager
    async def _begin(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                # pysqlite would begin lazily, and only before DML; begin now,
                # and take the write lock up front so a reader never has to upgrade.
                await conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
            else:
                # Our locking reads rely on READ COMMITTED (a fresh snapshot per
                # statement), whatever default the host's engine was given.
                await conn.execution_options(isolation_level="READ COMMITTED")
                await conn.begin()
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            else:
                await conn.commit()
