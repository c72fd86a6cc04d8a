"""Fixtures for fault injection: storages of their own, whose server connections
a test can kill (PostgreSQL) or whose file another connection can lock (SQLite).

They make their own databases rather than use the session's ``backend``, so a
test can ask for one backend without the shared fixtures switching over.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from prpm_playground import SQLAlchemyStorage

from ..conftest import PG_URL, require_postgres

MakeFaulty = Callable[..., Awaitable["Faulty"]]


def _asyncpg_dsn() -> str:
    return make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Faulty:
    """A migrated storage on a fresh database, and the means to break it."""

    storage: SQLAlchemyStorage
    name: str
    path: Path | None = None
    _other: sqlite3.Connection | None = None

    async def kill_connections(self, *, wait: bool = False) -> int:
        """Terminate every server connection of this storage (PostgreSQL).

        With ``wait``, return once the server has ended them all (termination
        is asynchronous), so the next call starts after the kill.
        """
        admin = await asyncpg.connect(_asyncpg_dsn())
        try:
            pids = [
                row["pid"]
                for row in await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1", self.name
                )
            ]
            await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids)
            for _ in range(500 if wait else 0):
                alive = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
                )
                if not alive:
                    break
                await asyncio.sleep(0.01)
        finally:
            await admin.close()
        return len(pids)

    def lock(self) -> None:
        """Take the SQLite file's write lock from another connection, as another process would."""
        assert self.path is not None
        assert self._other is None
        other = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        self._other = other

    def unlock(self) -> None:
        """Give the lock back (nothing was written under it)."""
        other, self._other = self._other, None
        if other is not None:
            other.execute("ROLLBACK")
            other.close()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The SQLite file locked for the block."""
        self.lock()
        try:
            yield
        finally:
            self.unlock()


@pytest.fixture
async def sqlite_faulty(tmp_path: Path) -> AsyncIterator[MakeFaulty]:
    """``await sqlite_faulty(**storage_options)``: a storage on a SQLite file of its own."""
    made: list[SQLAlchemyStorage] = []

    async def make(**options: Any) -> Faulty:
        name = f"fault_{secrets.token_hex(4)}"
        path = tmp_path / f"{name}.db"
        storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{path}", **options)
        made.append(storage)
        await storage.migrate()
        return Faulty(storage, name, path)

    yield make
    for storage in made:
        await storage.close()


@pytest.fixture
async def pg_faulty() -> AsyncIterator[MakeFaulty]:
    """``await pg_faulty(**storage_options)``: a storage on a PostgreSQL schema of its own,
    whose connections carry an application name of their own (so only they are killed)."""
    await require_postgres()
    made: list[tuple[SQLAlchemyStorage, str]] = []

    async def make(**options: Any) -> Faulty:
        name = f"prpm_fault_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(_asyncpg_dsn())
        try:
            await admin.execute(f'CREATE SCHEMA "{name}"')
        finally:
            await admin.close()
        engine = create_async_engine(
            PG_URL,
            connect_args={"server_settings": {"search_path": name, "application_name": name}},
        )
        storage = SQLAlchemyStorage(engine, **options)
        made.append((storage, name))
        await storage.migrate()
        return Faulty(storage, name)

    yield make
    admin = await asyncpg.connect(_asyncpg_dsn())
    try:
        for storage, name in made:
            await storage.close()
            await storage.engine.dispose()
            await admin.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await admin.close()
