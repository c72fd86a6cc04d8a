"""Fixtures: every storage-touching test runs on SQLite and on PostgreSQL.

PostgreSQL is read from ``PRPM_TEST_POSTGRES_URL`` (default: the local test
database). Each test session works in a fresh schema, dropped at the end.
With ``PRPM_REQUIRE_POSTGRES=1`` (as in CI) an unreachable PostgreSQL fails
the run instead of skipping its half.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from prpm_playground import CreditLedger, CreditPolicy, SQLAlchemyStorage
from prpm_playground.storage.sql.tables import build_tables
from prpm_playground.testing import ManualClock

PG_URL = os.environ.get(
    "PRPM_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("PRPM_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgres"]

# A constraint refusing a write: the database's own error as it reaches us,
# raw from a driver (SQLite's thread, asyncpg) or wrapped by SQLAlchemy.
# Tests match these public classes, never a database's or driver's wording.
INTEGRITY_ERRORS = (
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
    IntegrityError,
)


@dataclass
class Backend:
    """Creates databases for one backend."""

    name: str
    make_engine: Callable[[], Awaitable[AsyncEngine]]
    url: str  # a URL for tools that take one (CLI); a fresh database/schema is not implied

    async def storage(self) -> SQLAlchemyStorage:
        """A migrated storage on a fresh database; the caller closes it."""
        store = SQLAlchemyStorage(await self.make_engine())
        await store.migrate()
        return store


def library_tables(prefix: str) -> list[str]:
    """Every table the migrations create under ``prefix``, children before parents."""
    tables = build_tables(prefix)
    return [t.name for t in reversed(tables.metadata.sorted_tables)] + [tables.version_table]


async def require_postgres() -> None:
    """Fail (in CI) or skip the test when PostgreSQL is not reachable."""
    problem = await _pg_reachable()
    if problem:
        message = f"PostgreSQL at {PG_URL} is not reachable ({problem})"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)


async def _pg_reachable() -> str | None:
    engine = create_async_engine(PG_URL)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Backend]:
    """A way to make fresh databases on one backend, cleaned up at the end."""
    engines: list[AsyncEngine] = []
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("sqlite")

        async def make_sqlite() -> AsyncEngine:
            path = directory / f"{secrets.token_hex(4)}.db"
            # A pooled engine, as SQLAlchemy 2.1 makes by default (2.0 made a NullPool).
            engine = create_async_engine(
                f"sqlite+aiosqlite:///{path}", poolclass=AsyncAdaptedQueuePool
            )
            engines.append(engine)
            return engine

        yield Backend("sqlite", make_sqlite, f"sqlite+aiosqlite:///{directory / 'cli.db'}")
        for engine in engines:
            await engine.dispose()
        return

    await require_postgres()
    schemas: list[str] = []

    async def make_pg() -> AsyncEngine:
        schema = f"prpm_test_{secrets.token_hex(6)}"
        admin = create_async_engine(PG_URL)
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        await admin.dispose()
        schemas.append(schema)
        engine = create_async_engine(
            PG_URL, connect_args={"server_settings": {"search_path": schema}}
        )
        engines.append(engine)
        return engine

    yield Backend("postgres", make_pg, PG_URL)
    for engine in engines:
        await engine.dispose()
    admin = create_async_engine(PG_URL)
    async with admin.begin() as conn:
        for schema in schemas:
            await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    await admin.dispose()


@pytest.fixture(scope="session")
async def storage(backend: Backend) -> AsyncIterator[SQLAlchemyStorage]:
    """One migrated storage per backend, shared by the session; tests use fresh users."""
    if backend.name == "sqlite":
        # The library builds its own engine from a URL on SQLite, as most hosts will.
        engine = await backend.make_engine()
        url = str(engine.url)
        await engine.dispose()
        store = SQLAlchemyStorage(url)
    else:
        store = SQLAlchemyStorage(await backend.make_engine())
    await store.migrate()
    yield store
    await store.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def user() -> str:
    return f"user-{secrets.token_hex(8)}"


@pytest.fixture
def make_ledger(storage: SQLAlchemyStorage, clock: ManualClock) -> Callable[..., CreditLedger]:
    def make(**policy: object) -> CreditLedger:
        return CreditLedger(storage, policy=CreditPolicy(**policy), clock=clock)  # type: ignore[arg-type]

    return make


@pytest.fixture
def ledger(make_ledger: Callable[..., CreditLedger]) -> CreditLedger:
    """A ledger with PRPM's default policy (5 trial credits)."""
    return make_ledger()


@pytest.fixture
def bare(make_ledger: Callable[..., CreditLedger]) -> CreditLedger:
    """A ledger without trial credits, for exact arithmetic."""
    return make_ledger(trial_credits=0)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
