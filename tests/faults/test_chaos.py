"""Runs and spends over HTTP and through the ledger while the database keeps
failing: PostgreSQL's connections killed every few milliseconds, or a SQLite
file locked and unlocked by another process. Afterwards every run whose text
reached its client is charged exactly once and saved, nothing else is
charged, no hold outlives its deadline after a sweep, ``verify()`` is clean,
and every error a client saw was a 4xx or a 503 with ``Retry-After``."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import httpx

from prpm_playground import (
    CreditPolicy,
    InMemoryPackages,
    OfflineProvider,
    Playground,
    RateLimits,
)
from prpm_playground.errors import StorageUnavailable
from prpm_playground.testing import ManualClock

from ..web.conftest import client_for, sse_events
from .conftest import Faulty, MakeFaulty

USERS = [f"chaos-{i}" for i in range(4)]
FUNDS = 100_000
SECONDS = 2.5  # of chaos
# What a stream's error event may say: a passing failure, or a refusal.
STREAM_ERRORS = {"storage_unavailable", "insufficient_credits", "run_in_progress"}


@dataclass
class Seen:
    """What the clients saw."""

    statuses: list[int] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    delivered: dict[str, tuple[str, str]] = field(default_factory=dict)  # run id: user, text
    spends: dict[str, tuple[str, int]] = field(default_factory=dict)  # key: user, amount
    answers: dict[str, list[str]] = field(default_factory=dict)  # run id: what it got
    unavailable: int = 0  # "try again later" answers, whichever way they came


async def client_runs(
    client: httpx.AsyncClient, user: str, runs: list[int], seen: Seen, retry: list[int]
) -> None:
    """Run each of ``runs``; those answered "try again later" go into ``retry``."""
    headers = {"X-User": user}
    for i in runs:
        run_id = f"{user}-run-{i}"
        body = {"package_id": "echo", "input": f"question {i}", "max_tokens": 300, "run_id": run_id}
        stream = i % 2 == 0
        try:
            response = await client.post(
                "/run",
                json=body,
                headers={**headers, **({"Accept": "text/event-stream"} if stream else {})},
            )
        except httpx.HTTPError as exc:  # the app itself never drops a client
            seen.bad.append(f"{run_id}: transport {exc!r}")
            continue
        seen.statuses.append(response.status_code)
        seen.answers.setdefault(run_id, []).append(f"{response.status_code} {response.text[-300:]}")
        if response.status_code == 503 and response.headers.get("Retry-After"):
            seen.unavailable += 1
            retry.append(i)
            continue
        if response.status_code >= 500:
            seen.bad.append(f"{run_id}: {response.status_code} {response.text[:200]}")
            continue
        if response.status_code != 200:
            continue
        if not stream:
            seen.delivered[run_id] = (user, response.json()["response"])
            continue
        events = sse_events(response.text)
        text = "".join(data["text"] for kind, data in events if kind == "delta")
        if text:
            seen.delivered[run_id] = (user, text)
        for kind, data in events:
            if kind == "error" and data["error"] not in STREAM_ERRORS:
                seen.bad.append(f"{run_id}: stream error {data}")
            if kind == "error" and data["error"] == "storage_unavailable":
                seen.unavailable += 1
                if not text:
                    retry.append(i)
        await asyncio.sleep(random.uniform(0, 0.01))


async def client_spends(playground: Playground, user: str, n: int, seen: Seen) -> None:
    for i in range(n):
        key = f"{user}-spend-{i}"
        try:
            await playground.ledger.spend(user, 1, idempotency_key=key)
        except StorageUnavailable:  # maybe written: retried with the key afterwards
            seen.unavailable += 1
        seen.spends[key] = (user, 1)
        await asyncio.sleep(random.uniform(0, 0.01))


async def chaos(faulty: Faulty, stop: asyncio.Event) -> int:
    """Break the database until ``stop``; how many times it did."""
    breaks = 0
    while not stop.is_set():
        if faulty.path is None:
            await faulty.kill_connections()
            await asyncio.sleep(random.uniform(0.005, 0.03))
        else:
            # Off the loop: taking the lock waits for the app's writers to finish.
            await asyncio.to_thread(faulty.lock)
            await asyncio.sleep(random.uniform(0.02, 0.12))
            faulty.unlock()
            await asyncio.sleep(random.uniform(0.02, 0.12))
        breaks += 1
    return breaks


async def settled(playground: Playground) -> None:
    """Wait (at most 10 s) for the settlements the chaos pushed to the background."""
    for _ in range(500):
        if not [t for t in asyncio.all_tasks() if t.get_name().startswith("settle-later")]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("settlements still retrying")


async def under_chaos(faulty: Faulty) -> None:
    clock = ManualClock()
    playground = Playground(
        storage=faulty.storage,
        provider=OfflineProvider(delay=0.002, chunk_words=8),
        packages=InMemoryPackages({"echo": "# Echo\nRepeat the question."}),
        policy=CreditPolicy(trial_credits=0, usd_per_credit=Decimal("0.0001")),
        # The clients here run faster than any real user: no per-user limits.
        rate_limits=RateLimits(runs_per_minute=None, max_concurrent_streams=None),
        clock=clock,
    )
    playground.runner.settle_wait = timedelta(seconds=0.5)
    app = playground.asgi_app(authenticate=lambda request: request.headers.get("x-user"))
    for user in USERS:
        await playground.ledger.grant(user, FUNDS, kind="purchased", idempotency_key="fund")

    seen = Seen()
    stop = asyncio.Event()
    async with client_for(app) as client:
        breaker = asyncio.create_task(chaos(faulty, stop))
        retry: dict[str, list[int]] = {user: [] for user in USERS}
        workers = [client_runs(client, user, list(range(25)), seen, retry[user]) for user in USERS]
        workers += [client_spends(playground, user, 25, seen) for user in USERS]
        clients = asyncio.gather(*workers)
        await asyncio.sleep(SECONDS)
        stop.set()
        breaks = await breaker
        await clients
        faulty.unlock()
        await settled(playground)
        # As a client does after Retry-After: the same runs, the same ids.
        again: dict[str, list[int]] = {user: [] for user in USERS}
        await asyncio.gather(
            *(client_runs(client, user, retry[user], seen, again[user]) for user in USERS)
        )
        assert again == {user: [] for user in USERS}

    assert seen.bad == []
    assert breaks > 10
    # Some runs got through, and the chaos refused some calls.
    assert seen.delivered
    assert seen.unavailable > 0
    assert playground.runner.unsettled == []
    # Spends whose answer was lost are retried under their key: each counts once.
    for key, (user, amount) in seen.spends.items():
        await playground.ledger.spend(user, amount, idempotency_key=key)

    # After every deadline has passed, a sweep leaves no hold active.
    clock.advance(timedelta(days=1))
    await playground.reset_job.run()

    for user in USERS:
        audit = await faulty.storage.audit(user)
        assert audit is not None
        holds = {h.idempotency_key: h for h in audit[1]}
        assert [h.id for h in holds.values() if h.status == "active"] == []
        delivered = {run: text for run, (who, text) in seen.delivered.items() if who == user}
        captured = 0
        for run_id, text in delivered.items():
            hold = holds[f"run:{run_id}"]
            found = await faulty.storage.exchange_by_run(user, run_id)
            assert found is not None, f"{run_id} delivered text but saved none"
            _, exchange = found
            assert exchange.response == text
            assert (hold.status, hold.captured) == ("captured", exchange.credits_spent)
            assert exchange.credits_spent > 0
            captured += exchange.credits_spent
        # Nothing else was charged: runs that delivered nothing were released.
        undelivered = [
            h for key, h in holds.items() if key and key.removeprefix("run:") not in delivered
        ]
        charged = [h.idempotency_key.removeprefix("run:") for h in undelivered if h.captured]
        assert charged == [], [seen.answers.get(run) for run in charged]
        spent = sum(a for k, (who, a) in seen.spends.items() if who == user)
        balance = await playground.ledger.balance(user)
        assert (balance.available, balance.held) == (FUNDS - captured - spent, 0)
        history = await playground.ledger.history(user, types=["spend"], limit=200)
        assert -sum(e.amount for e in history.entries) == captured + spent
        await playground.ledger.verify(user)
    await playground.aclose()


async def test_postgres_with_connections_killed_every_few_milliseconds(
    pg_faulty: MakeFaulty,
) -> None:
    await under_chaos(await pg_faulty(busy_timeout=1))


async def test_sqlite_locked_and_unlocked_by_another_process(sqlite_faulty: MakeFaulty) -> None:
    await under_chaos(await sqlite_faulty(busy_timeout=0.05))
