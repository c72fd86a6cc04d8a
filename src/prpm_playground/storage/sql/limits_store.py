"""Rate-limit counters on SQL (the ``RateLimitStorage`` port).

One row per ``(key, window_start)``. A hit is a single upsert that adds to
the row and returns the new count, so concurrent hits from any number of
processes are all counted without a read-then-write race (PostgreSQL's and
SQLite's ``INSERT … ON CONFLICT DO UPDATE … RETURNING``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite

from .engine import Transactions

__all__ = ["prune", "record_hit"]


async def record_hit(
    tx: Transactions, table: Table, key: str, window_start: datetime, amount: int
) -> int:
    """Add ``amount`` to the counter of ``(key, window_start)``; return its new value."""
    insert = (postgresql.insert if tx.is_postgres else sqlite.insert)(table).values(
        key=key, window_start=window_start, hits=amount
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[table.c.key, table.c.window_start],
        set_={"hits": table.c.hits + insert.excluded.hits},
    ).returning(table.c.hits)
    async with tx.begin(write=True) as conn:
        return int((await conn.execute(upsert)).scalar_one())


async def prune(tx: Transactions, table: Table, before: datetime) -> int:
    """Delete every counter of a window that started before ``before``; return how many."""
    async with tx.begin(write=True) as conn:
        result = await conn.execute(delete(table).where(table.c.window_start < before))
        return int(result.rowcount or 0)
