"""SQLite transactions run on the driver's own thread, one hand-off per batch.

aiosqlite runs every call on a worker thread per connection, and each call
is a hand-off between threads (about 70 µs on a quiet machine). SQLAlchemy's
adapter makes three or four per statement, so a ledger write, with its
begin, read, writes, commit and the pool's reset, cost about eighteen.
Here statements are compiled once, parameters are bound on the event loop,
and each batch (begin with the first read; the writes with the commit) goes
to the worker thread in a single hand-off.

This reaches into aiosqlite's ``Connection._execute`` and ``._conn``, as
SQLAlchemy's own adapter reaches into ``_connection``; the supported range
of aiosqlite is bounded in pyproject.toml, and ``check_driver`` refuses a
version without them at startup rather than failing mid-transaction.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

if TYPE_CHECKING:
    from sqlalchemy.sql.type_api import _BindProcessorType

__all__ = [
    "LiteStatement",
    "LiteStatements",
    "LiteTransaction",
    "check_driver",
    "lite_transaction",
]

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]


def check_driver(driver_connection: object) -> None:
    """Refuse an aiosqlite without the internals this module relies on."""
    if not (hasattr(driver_connection, "_execute") and hasattr(driver_connection, "_conn")):
        raise RuntimeError(
            "this aiosqlite version is not supported by prpm_playground; "
            "install the version range its package metadata requires"
        )


class LiteStatement:
    """One SQLAlchemy statement compiled for SQLite, run on the raw driver.

    Parameters go through the bind processors SQLAlchemy itself applies (so
    values are stored exactly as its own statements store them), and result
    rows through its result processors, as named tuples. ``column_keys``
    names the columns an INSERT or UPDATE without values sets, as SQLAlchemy
    derives them from the first parameter set.
    """

    def __init__(
        self, statement: Executable, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = cast(
            SQLCompiler,
            statement.compile(  # type: ignore[attr-defined]
                dialect=dialect, column_keys=None if column_keys is None else list(column_keys)
            ),
        )
        self.sql = str(compiled)
        self._names = list(compiled.positiontup or ())
        # Literals and bound values; required parameters come with each call.
        self._defaults = {
            name: bind.effective_value
            for name, bind in ((n, compiled.binds[n]) for n in self._names)
            if not bind.required
        }
        processors = [_processor(compiled.binds[n].type, dialect) for n in self._names]
        self._binds = processors
        self._processed = [(i, p) for i, p in enumerate(processors) if p is not None]
        names = self._names
        # itemgetter of one name returns the value, not a 1-tuple.
        self._pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = (
            itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
        )
        columns = list(getattr(statement, "exported_columns", ()))
        self._results = [
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ]
        self._row: Any = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]

    def bind(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for ``params`` (literals fill the rest)."""
        values = []
        for name, process in zip(self._names, self._binds, strict=True):
            value = params[name] if name in params else self._defaults[name]
            values.append(process(value) if process is not None else value)
        return tuple(values)

    def bind_many(self, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Positional parameters for many rows, each naming every parameter."""
        pick, processed = self._pick, self._processed
        if not processed:
            return [pick(row) for row in rows]
        # Rows of a batch share instants (a period's start and end): each
        # distinct value is processed once per call.
        memo: dict[tuple[int, Any], Any] = {}
        params = []
        for row in rows:
            values = list(pick(row))
            for i, process in processed:
                value = values[i]
                done = memo.get((i, value), _MISSING)
                if done is _MISSING:
                    done = memo[(i, value)] = process(value)
                values[i] = done
            params.append(tuple(values))
        return params

    def rows(self, raw: Iterable[Sequence[Any]]) -> list[Any]:
        """Driver rows as named tuples of processed values."""
        results = self._results
        make = self._row._make
        return [
            make(v if p is None else p(v) for p, v in zip(results, row, strict=True)) for row in raw
        ]

    def fetch(self, params: Mapping[str, Any]) -> Work[list[Any]]:
        """Work that runs the statement and returns its raw rows."""
        sql, bound = self.sql, self.bind(params)
        return lambda c: c.execute(sql, bound).fetchall()

    def many(self, rows: Iterable[Mapping[str, Any]]) -> Work[None]:
        """Work that runs the statement once per row."""
        sql, bound = self.sql, self.bind_many(rows)

        def work(c: sqlite3.Connection) -> None:
            c.executemany(sql, bound)

        return work


class LiteStatements:
    """``LiteStatement``s by statement and column keys, each compiled once."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._cache: dict[tuple[int, tuple[str, ...] | None], tuple[Executable, LiteStatement]] = {}

    def get(self, statement: Executable, column_keys: Sequence[str] | None = None) -> LiteStatement:
        """The compiled form of ``statement`` (which must live as long as this cache)."""
        keys = None if column_keys is None else tuple(column_keys)
        found = self._cache.get((id(statement), keys))
        if found is None:
            # The statement is kept with its plan so its id is never reused.
            found = (statement, LiteStatement(statement, self.dialect, keys))
            self._cache[(id(statement), keys)] = found
        return found[1]


_MISSING = object()


def _processor(type_: TypeEngine[Any], dialect: Dialect) -> _BindProcessorType[Any] | None:
    """The bind processor SQLAlchemy itself applies: the dialect's implementation
    of the type (for a TypeDecorator, its ``process_bind_param`` then that)."""
    return type_.dialect_impl(dialect).bind_processor(dialect)


class LiteTransaction:
    """A transaction on one aiosqlite connection, sent to its thread in batches.

    Nothing reaches the database until the first ``run``: it begins the
    transaction (``BEGIN IMMEDIATE`` for writes) in the same hand-off.
    ``defer`` queues writes to go with the next hand-off, normally the commit.
    Once committed or rolled back, ``commit`` and ``rollback`` do nothing.
    """

    def __init__(self, driver_connection: Any, *, write: bool) -> None:
        self._aio = driver_connection
        self._begin: str | None = "BEGIN IMMEDIATE" if write else "BEGIN"
        self._pending: list[Work[None]] = []
        self._sends = 0  # hand-offs that carried deferred writes
        self._ended = False

    async def run(self, work: Work[T]) -> T:
        """Run ``work`` (after the transaction's begin and any deferred writes)."""
        return await self._send(self._batch(work))

    async def query(self, statement: LiteStatement, params: Mapping[str, Any]) -> list[Any]:
        """Rows of ``statement``, processed."""
        return statement.rows(await self.run(statement.fetch(params)))

    def defer(self, work: Work[None]) -> None:
        """Queue a write for the next hand-off."""
        self._pending.append(work)

    def mark(self) -> tuple[int, int]:
        """A point that ``undo_to`` can return the deferred writes to."""
        return self._sends, len(self._pending)

    def undo_to(self, mark: tuple[int, int]) -> bool:
        """Drop the writes deferred since ``mark``; False if some were already sent."""
        sends, pending = mark
        if sends != self._sends:
            return False
        del self._pending[pending:]
        return True

    async def commit(self, last: Work[T] | None = None) -> T | None:
        """Send deferred writes, then ``last``, and commit, in one hand-off.

        ``last`` runs in a savepoint: if it fails, only its own statements
        are undone, the rest is committed, and then its error is raised.

        Returns:
            What ``last`` returned (None without it).
        """
        if self._ended:
            if last is not None:
                raise RuntimeError("the transaction has ended")
            return None
        if self._begin is not None and not self._pending and last is None:
            self._ended = True
            return None  # nothing was ever sent
        committed: list[bool] = []

        def commit(c: sqlite3.Connection) -> None:
            c.commit()
            committed.append(True)

        def finish(c: sqlite3.Connection) -> T | None:
            result = None
            if last is not None:
                c.execute("SAVEPOINT lite_last")
                try:
                    result = last(c)
                except BaseException:
                    c.execute("ROLLBACK TO lite_last")
                    c.execute("RELEASE lite_last")
                    commit(c)
                    raise
                c.execute("RELEASE lite_last")
            commit(c)
            return result

        try:
            return await self._send(self._batch(finish))
        finally:
            # Known committed (``last`` failed after the commit) or not; a
            # cancelled hand-off stays open for the rollback that follows.
            self._ended = bool(committed)

    async def rollback(self) -> None:
        """Roll back whatever was sent (deferred writes are dropped)."""
        self._pending.clear()
        if self._ended:
            return
        self._ended = True
        if self._begin is None:
            await self._aio._execute(_rollback, self._aio._conn)

    def _batch(self, work: Work[T]) -> Work[T]:
        begin, self._begin = self._begin, None
        pending, self._pending = self._pending, []
        if pending:
            self._sends += 1

        def batch(c: sqlite3.Connection) -> T:
            if begin is not None:
                c.execute(begin)
            for write in pending:
                write(c)
            return work(c)

        return batch

    async def _send(self, batch: Work[T]) -> T:
        return cast(T, await self._aio._execute(batch, self._aio._conn))


def _rollback(c: sqlite3.Connection) -> None:
    c.rollback()


@asynccontextmanager
async def lite_transaction(
    driver_connection: Any, *, write: bool
) -> AsyncIterator[LiteTransaction]:
    """A ``LiteTransaction`` on an aiosqlite connection; commits on success.

    The caller holds the connection (checked out, with no SQLAlchemy
    transaction of its own) and the dialect's writer lock.
    """
    check_driver(driver_connection)
    tx = LiteTransaction(driver_connection, write=write)
    try:
        yield tx
    except BaseException:
        await tx.rollback()
        raise
    else:
        await tx.commit()
