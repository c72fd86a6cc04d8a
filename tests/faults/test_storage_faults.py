"""Storage faults: killed PostgreSQL connections, an unreachable server, a SQLite
file locked by another process. Callers get ``StorageUnavailable`` (503 with
``Retry-After`` over HTTP) with nothing written, and the storage recovers by
itself."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from prpm_playground import (
    CreditLedger,
    InMemoryPackages,
    OfflineProvider,
    Playground,
    SQLAlchemyStorage,
)
from prpm_playground.errors import StorageUnavailable

from ..web.conftest import client_for
from .conftest import MakeFaulty


def calls(
    ledger: CreditLedger, storage: SQLAlchemyStorage, user: str
) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """One call of every kind of path: locking writes, lock-free reads, SQLAlchemy reads."""
    return {
        "balance": lambda n: ledger.balance(user),
        "spend": lambda n: ledger.spend(user, 1, idempotency_key=f"spend-{n}"),
        "hold": lambda n: ledger.hold(user, 1, idempotency_key=f"hold-{n}"),
        "history": lambda n: ledger.history(user),
        "sessions": lambda n: storage.list_sessions(user, limit=5, before=None),
        "rate limit": lambda n: storage.rate_limit_hit(f"{user}:{n}", datetime.now(UTC)),
    }


async def test_after_connections_are_killed_every_later_call_succeeds(
    pg_faulty: MakeFaulty, user: str
) -> None:
    faulty = await pg_faulty()
    ledger = CreditLedger(faulty.storage)
    await ledger.grant(user, 1000, idempotency_key="fund")
    paths = calls(ledger, faulty.storage, user)
    for round_ in range(3):
        # Several pooled connections, each used by every kind of path.
        await asyncio.gather(*(call(round_ * 10 + i) for i in range(4) for call in paths.values()))
        assert await faulty.kill_connections(wait=True) >= 1
        for n in range(3):
            for name, call in paths.items():
                await call(1000 + round_ * 100 + n)  # none may fail
    balance = await ledger.balance(user)
    spent = held = 3 * (4 + 3)  # one spend and one hold per call of each kind
    assert (balance.total, balance.held) == (1000 + 5 - spent, held)  # 5: the trial
    await ledger.verify(user)


async def test_an_unreachable_server_is_storage_unavailable() -> None:
    # Nothing listens on port 1: refused at once, as a server that is down.
    storage = SQLAlchemyStorage("postgresql+asyncpg://postgres@127.0.0.1:1/test", busy_timeout=2)
    ledger = CreditLedger(storage)
    for call in (ledger.balance("u"), ledger.spend("u", 1, idempotency_key="k"), storage.migrate()):
        with pytest.raises(StorageUnavailable) as info:
            await call
        assert info.value.code == "storage_unavailable"
        assert info.value.retry_after >= 1
    await storage.close()


async def test_over_http_an_unreachable_server_is_503_with_retry_after() -> None:
    storage = SQLAlchemyStorage("postgresql+asyncpg://postgres@127.0.0.1:1/test", busy_timeout=2)
    playground = Playground(
        storage=storage, provider=OfflineProvider(delay=0), packages=InMemoryPackages({})
    )
    app = playground.asgi_app(authenticate=lambda request: "alice")
    async with client_for(app) as client:
        for method, path in (("GET", "/credits"), ("GET", "/sessions"), ("POST", "/estimate")):
            body = {"no_prompt": True, "input": "hi"} if method == "POST" else None
            response = await client.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"] == "storage_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["retry_after"] == int(response.headers["Retry-After"])
    await storage.close()


async def test_a_sqlite_file_locked_by_another_process(
    sqlite_faulty: MakeFaulty, user: str
) -> None:
    faulty = await sqlite_faulty(busy_timeout=0.2)
    ledger = CreditLedger(faulty.storage)
    await ledger.grant(user, 10, idempotency_key="fund")
    with faulty.locked():
        # Writes wait the bounded time, then give up with nothing written;
        # several at once each give up too, none waits behind the others for ever.
        results = await asyncio.gather(
            *(ledger.spend(user, 1, idempotency_key=f"s{i}") for i in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(r, StorageUnavailable) for r in results), results
        # Reads go on (WAL): the lock is another writer's only.
        assert (await ledger.balance(user)).available == 10 + 5  # the trial counts
    # Released: the same writes succeed, once each.
    for i in range(5):
        await ledger.spend(user, 1, idempotency_key=f"s{i}")
    assert (await ledger.balance(user)).available == 10
    await ledger.verify(user)


async def test_over_http_a_locked_sqlite_file_is_503_then_the_run_succeeds(
    sqlite_faulty: MakeFaulty, user: str
) -> None:
    faulty = await sqlite_faulty(busy_timeout=0.2)
    playground = Playground(
        storage=faulty.storage, provider=OfflineProvider(delay=0), packages=InMemoryPackages({})
    )
    app = playground.asgi_app(authenticate=lambda request: user)
    body = {"no_prompt": True, "input": "hello", "max_tokens": 100, "run_id": "r1"}
    async with client_for(app) as client:
        await client.get("/credits")  # opens the account: 5 trial credits
        with faulty.locked():
            refused = await client.post("/run", json=body)
        assert refused.status_code == 503
        assert refused.json()["error"] == "storage_unavailable"
        assert refused.headers["Retry-After"] == "1"
        assert (await client.get("/credits")).json()["held"] == 0
        done = await client.post("/run", json=body)
        assert done.status_code == 200, done.text
        assert done.json()["credits_spent"] >= 1
    await playground.aclose()
