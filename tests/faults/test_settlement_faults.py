"""A run whose settlement meets a database that is locked (another process holds
SQLite's write lock): retried while it lasts, finished in the background if it
outlasts ``settle_wait``, given up as unsettled (logged, recorded) only after
``settle_window``. The output is charged exactly once, never lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from prpm_playground import CreditLedger, CreditPolicy, Estimator, InMemoryPackages
from prpm_playground.models import RunDelta, RunDone, RunError, RunRequest, Usage
from prpm_playground.providers.base import TextDelta, UsageReport
from prpm_playground.runner import PlaygroundRunner, UnsettledRun

from ..scripted_provider import ScriptedProvider
from .conftest import Faulty, MakeFaulty

COST = 7  # 1000 input and 500 output tokens on the default model at $0.001 a credit


@dataclass
class Setup:
    faulty: Faulty
    ledger: CreditLedger
    runner: PlaygroundRunner
    gate: asyncio.Event

    async def spends(self, user: str) -> list[int]:
        return [e.amount for e in (await self.ledger.history(user, types=["spend"])).entries]

    async def stream(self, user: str, run_id: str) -> AsyncIterator[Any]:
        request = RunRequest(package_id="p", input="hi", max_tokens=1000, run_id=run_id)
        async for event in self.runner.stream(user, request):
            yield event


@pytest.fixture
async def setup(sqlite_faulty: MakeFaulty) -> Any:
    async def make(**runner_options: Any) -> Setup:
        faulty = await sqlite_faulty(busy_timeout=0.05)
        policy = CreditPolicy(trial_credits=0, usd_per_credit=Decimal("0.001"))
        ledger = CreditLedger(faulty.storage, policy=policy)
        gate = asyncio.Event()
        start = Usage(input_tokens=1000, output_tokens=1)
        provider = ScriptedProvider(
            [
                UsageReport(start),
                TextDelta("Hello "),
                gate,
                TextDelta("world."),
                UsageReport(start.model_copy(update={"output_tokens": 500}), final=True),
            ],
            count=1000,
        )
        estimator = Estimator(ledger, InMemoryPackages({"p": "Be kind."}), provider, faulty.storage)
        runner = PlaygroundRunner(ledger, estimator, provider, faulty.storage, **runner_options)
        return Setup(faulty, ledger, runner, gate)

    return make


async def run_while_locked(s: Setup, user: str, run_id: str, locked_for: float) -> list[Any]:
    """Stream a run; another process locks the database from the first delta, for
    ``locked_for`` seconds, so the run's settlement meets the lock."""
    events: list[Any] = []
    unlocking: asyncio.Task[None] | None = None

    async def unlock_later() -> None:
        await asyncio.sleep(locked_for)
        s.faulty.unlock()

    try:
        async for event in s.stream(user, run_id):
            events.append(event)
            if isinstance(event, RunDelta) and not s.gate.is_set():
                s.faulty.lock()
                unlocking = asyncio.create_task(unlock_later())
                s.gate.set()
        assert unlocking is not None
        await unlocking
    finally:
        s.faulty.unlock()
    return events


async def charged_once(s: Setup, user: str) -> None:
    """Wait (at most 10 s) until the run's charge is recorded."""
    for _ in range(500):
        if await s.spends(user):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the run was never charged")


async def test_a_lock_shorter_than_settle_wait_is_waited_out(setup: Any, user: str) -> None:
    s = await setup(settle_wait=timedelta(seconds=10))
    await s.ledger.grant(user, 100, idempotency_key="fund")

    events = await run_while_locked(s, user, "r1", locked_for=0.4)

    done = [e for e in events if isinstance(e, RunDone)]
    assert len(done) == 1, events[-1]
    assert done[0].result.credits_spent == COST
    assert await s.spends(user) == [-COST]
    assert s.runner.unsettled == []
    await s.ledger.verify(user)


async def test_a_lock_past_settle_wait_answers_503_then_settles_in_the_background(
    setup: Any, user: str
) -> None:
    s = await setup(settle_wait=timedelta(seconds=0.2), settle_window=timedelta(seconds=30))
    await s.ledger.grant(user, 100, idempotency_key="fund")

    events = await run_while_locked(s, user, "r2", locked_for=0.6)

    assert isinstance(events[-1], RunError)
    assert events[-1].error == "storage_unavailable"
    assert "".join(e.text for e in events if isinstance(e, RunDelta)) == "Hello world."

    await charged_once(s, user)  # the lock is gone: the background retry settles it
    assert await s.spends(user) == [-COST]
    again = RunRequest(package_id="p", input="hi", max_tokens=1000, run_id="r2")
    replay = await s.runner.run(user, again)
    assert (replay.response, replay.credits_spent) == ("Hello world.", COST)
    assert await s.spends(user) == [-COST]
    assert s.runner.unsettled == []
    await s.ledger.verify(user)


async def test_a_lock_past_settle_window_is_recorded_as_unsettled(
    setup: Any, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    s = await setup(settle_wait=timedelta(seconds=0.1), settle_window=timedelta(seconds=0.3))
    await s.ledger.grant(user, 100, idempotency_key="fund")

    with caplog.at_level(logging.ERROR, logger="prpm_playground.runner"):
        events = await run_while_locked(s, user, "r3", locked_for=2.0)

    assert events[-1].error == "storage_unavailable"
    [gone] = s.runner.unsettled
    hold = events[0].hold_id
    assert gone == UnsettledRun(user_id=user, run_id="r3", credits=COST, hold_id=hold)
    assert "run left unsettled" in caplog.text
    assert await s.spends(user) == []  # nothing was recorded: the hold lapses on its own
    balance = await s.ledger.balance(user)
    assert balance.held == events[0].held
    await s.ledger.verify(user)


async def test_closing_the_runner_records_what_is_still_retrying(setup: Any, user: str) -> None:
    s = await setup(settle_wait=timedelta(seconds=0.1), settle_window=timedelta(minutes=5))
    await s.ledger.grant(user, 100, idempotency_key="fund")
    events: list[Any] = []
    try:
        async for event in s.stream(user, "r4"):
            events.append(event)
            if isinstance(event, RunDelta) and not s.gate.is_set():
                s.faulty.lock()  # and it stays locked
                s.gate.set()
        await s.runner.aclose()  # the host shuts down while the settlement retries
    finally:
        s.faulty.unlock()
    assert events[-1].error == "storage_unavailable"
    assert [u.run_id for u in s.runner.unsettled] == ["r4"]
