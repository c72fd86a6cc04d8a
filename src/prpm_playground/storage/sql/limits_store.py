"""Rate-limit counters on SQL (the ``RateLimitStorage`` port).

One row per ``(key, window_start)``. A hit is a single upsert that adds to
the row and returns the new count, so concurrent hits from any number of
processes are all counted without a read-then-write race (PostgreSQL's and
SQLite's ``INSERT … ON CONFLICT DO UPDATE … RETURNING``). On SQLite the
upsert and its commit go to the driver's thread in one hand-off (``lite``).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite

from .engine import Transactions
from .lite import LiteStatements

__all__ = ["SQLRateLimits"]


class SQLRateLimits:
    """The ``RateLimitStorage`` methods, for ``SQLAlchemyStorage`` to delegate to.

    Args:
        tx: The storage's transactions.
        table: The counters' table.
    """

    def __init__(self, tx: Transactions, table: Table) -> None:
        self._tx = tx
        self._table = table
        insert = (postgresql.insert if tx.is_postgres else sqlite.insert)(table)
        self._upsert = insert.on_conflict_do_update(
            index_elements=[table.c.key, table.c.window_start],
            set_={"hits": table.c.hits + insert.excluded.hits},
        ).returning(table.c.hits)
        self._lite = LiteStatements(sqlite.dialect())

    async def record_hit(self, key: str, window_start: datetime, amount: int) -> int:
        """Add ``amount`` to the counter of ``(key, window_start)``; return its new value."""
        row = {"key": key, "window_start": window_start, "hits": amount}
        if self._tx.is_postgres:
            async with self._tx.begin(write=True) as conn:
                return int((await conn.execute(self._upsert, row)).scalar_one())
        upsert = self._lite.get(self._upsert, tuple(row)).fetch(row)
        hits: list[int] = []

        def hit(c: sqlite3.Connection) -> None:
            hits.extend(r[0] for r in upsert(c))

        async with self._tx.lite(write=True) as tx:
            tx.defer(hit)
        return int(hits[0])

    async def prune(self, before: datetime) -> int:
        """Delete every counter of a window that started before ``before``; return how many."""
        async with self._tx.begin(write=True) as conn:
            result = await conn.execute(
                delete(self._table).where(self._table.c.window_start < before)
            )
            return int(result.rowcount or 0)
