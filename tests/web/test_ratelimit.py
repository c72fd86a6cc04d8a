"""Rate limits: runs and estimates per minute, kept in the database so that every
app instance sharing it enforces the same limit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from prpm_playground import RateLimits, SQLAlchemyStorage
from prpm_playground.testing import ManualClock

from ..conftest import Backend
from ..scripted_provider import ScriptedProvider
from .conftest import Web, as_user, client_for, make_playground, run_body, twin_engine

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


async def test_runs_per_minute_are_limited_with_retry_after(
    make_web: Callable[..., Web], user: str, clock: ManualClock
) -> None:
    clock.set(T0 + timedelta(seconds=15))
    web = make_web(rate_limits=RateLimits(runs_per_minute=2))
    await web.fund(user, 100)
    for _ in range(2):
        ok = await web.client.post("/run", json=run_body(), headers=as_user(user))
        assert ok.status_code == 200
    refused = await web.client.post("/run", json=run_body(), headers=as_user(user))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "45"  # the rest of the minute
    assert refused.json() == {
        "error": "rate_limited",
        "message": "too many requests: at most 2 runs per minute; try again in 45 s",
        "retry_after": 45,
    }
    assert len(web.provider.requests) == 2
    assert await web.available(user) == 100 - 2 * 7  # the refused run cost nothing
    other = "other-" + user  # per user
    await web.fund(other, 100)
    assert (await web.client.post("/run", json=run_body(), headers=as_user(other))).is_success
    clock.advance(timedelta(seconds=45))  # a new window
    again = await web.client.post("/run", json=run_body(), headers=as_user(user))
    assert again.status_code == 200


async def test_a_comparison_counts_one_run_per_variant(
    make_web: Callable[..., Web], user: str, clock: ManualClock
) -> None:
    clock.set(T0)
    web = make_web(rate_limits=RateLimits(runs_per_minute=3))
    await web.fund(user, 100)
    body = {
        "input": "Review this",
        "max_tokens": 1000,
        "variants": [{"package_id": "reviewer"}, {"no_prompt": True}],
    }
    assert (await web.client.post("/compare", json=body, headers=as_user(user))).is_success
    refused = await web.client.post("/compare", json=body, headers=as_user(user))
    assert refused.status_code == 429
    assert len(web.provider.requests) == 2


async def test_estimates_have_their_own_limit(
    make_web: Callable[..., Web], user: str, clock: ManualClock
) -> None:
    clock.set(T0)
    web = make_web(rate_limits=RateLimits(estimates_per_minute=1, runs_per_minute=None))
    first = await web.client.post("/estimate", json=run_body(), headers=as_user(user))
    second = await web.client.post("/estimate", json=run_body(), headers=as_user(user))
    assert (first.status_code, second.status_code) == (200, 429)
    await web.fund(user, 100)
    assert (await web.client.post("/run", json=run_body(), headers=as_user(user))).is_success


async def test_the_limit_holds_across_app_instances_sharing_a_database(
    backend: Backend, clock: ManualClock, user: str
) -> None:
    clock.set(T0)
    engine = await backend.make_engine()
    other_engine = await twin_engine(backend, engine)
    limits = RateLimits(runs_per_minute=3)
    one = make_playground(
        SQLAlchemyStorage(engine), clock, ScriptedProvider(count=1000), rate_limits=limits
    )
    two = make_playground(
        SQLAlchemyStorage(other_engine), clock, ScriptedProvider(count=1000), rate_limits=limits
    )
    try:
        async with (
            one,
            two,
            client_for(one.asgi_app(authenticate=lambda r: r.headers.get("x-user"))) as a,
            client_for(two.asgi_app(authenticate=lambda r: r.headers.get("x-user"))) as b,
        ):
            await one.ledger.grant(user, 100, kind="purchased", idempotency_key="fund")
            statuses = []
            for client in (a, b, a, b):
                response = await client.post("/run", json=run_body(), headers=as_user(user))
                statuses.append(response.status_code)
            assert statuses == [200, 200, 200, 429]
            assert (await two.ledger.balance(user)).available == 100 - 3 * 7
    finally:
        await one.storage.close()
        await two.storage.close()
        await other_engine.dispose()


async def test_concurrent_hits_are_all_counted(storage: SQLAlchemyStorage, user: str) -> None:
    counts = await asyncio.gather(*(storage.rate_limit_hit(f"t:{user}", T0) for _ in range(40)))
    assert sorted(counts) == list(range(1, 41))
    assert await storage.rate_limit_hit(f"t:{user}", T0, 5) == 45
    assert await storage.rate_limit_hit(f"t:{user}", T0 + timedelta(minutes=1)) == 1


async def test_old_windows_are_pruned(backend: Backend) -> None:
    storage = await backend.storage()
    try:
        for minutes in range(4):
            await storage.rate_limit_hit("k", T0 + timedelta(minutes=minutes))
        assert await storage.rate_limit_prune(T0 + timedelta(minutes=2)) == 2
        table = storage.tables.rate_limits
        async with storage.engine.connect() as conn:
            left = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
        assert left == 2
    finally:
        await storage.close()


async def test_the_limiter_prunes_once_per_window(
    make_web: Callable[..., Web], user: str, clock: ManualClock
) -> None:
    clock.set(T0 + timedelta(days=365))  # later than any other test's windows
    web = make_web()
    storage = web.playground.storage
    await storage.rate_limit_hit(f"runs:{user}", T0)  # an old window
    await web.fund(user, 100)
    assert (await web.client.post("/run", json=run_body(), headers=as_user(user))).is_success
    table = storage.tables.rate_limits
    async with storage.engine.connect() as conn:
        old = await conn.execute(
            select(func.count()).select_from(table).where(table.c.key == f"runs:{user}")
        )
        assert old.scalar_one() == 1  # only the current window is left
