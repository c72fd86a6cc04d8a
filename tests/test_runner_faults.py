"""Runs under contention and faults, on SQLite and PostgreSQL: concurrent runs on
one session, a session deleted mid-run, failed runs retried, a provider that
streams past the deadline. Each ends with the output charged exactly once and
saved (or, for a deleted session, charged and not brought back)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from prpm_playground.errors import ModelUnavailable, NotFound, RunFailed
from prpm_playground.models import RunDelta, RunError, RunStarted, Usage
from prpm_playground.providers import approx_tokens
from prpm_playground.providers.base import CompletionRequest, ProviderEvent, TextDelta, UsageReport

from .test_runner import Harness, make, normal, request, start_usage

__all__ = ["make"]  # the runner tests' fixture, used here too


async def collect(h: Harness, user: str, **fields: Any) -> list[Any]:
    return [event async for event in h.runner.stream(user, request(**fields))]


async def test_six_runs_at_once_on_one_session_are_all_saved_and_charged_once(
    make: Any, user: str
) -> None:
    h = make()
    await h.funded(user, 1000)
    first = await h.runner.run(user, request(run_id="first"))
    runs = [request(session_id=first.session_id, run_id=f"run-{i}") for i in range(6)]

    results = await asyncio.gather(*(h.runner.run(user, r) for r in runs))

    assert sorted(r.exchange_index for r in results) == [1, 2, 3, 4, 5, 6]
    session = await h.storage.get_session(first.session_id)
    assert session is not None
    assert [e.index for e in session.exchanges] == list(range(7))
    assert sorted(e.run_id for e in session.exchanges[1:]) == sorted(f"run-{i}" for i in range(6))
    paid = -sum(await h.spends(user))
    assert paid == sum(e.credits_spent for e in session.exchanges) == 7 * 7
    # A retry of each replays its result and charges nothing.
    again = await asyncio.gather(*(h.runner.run(user, r) for r in runs))
    assert [(a.exchange_index, a.response) for a in again] == [
        (r.exchange_index, r.response) for r in results
    ]
    assert -sum(await h.spends(user)) == paid
    assert all(status == "captured" for _, _, status in await h.holds(user))
    await h.ledger.verify(user)


async def test_a_session_deleted_mid_run_stays_deleted_and_the_run_is_charged(
    make: Any, user: str
) -> None:
    h = make()
    await h.funded(user, 1000)
    first = await h.runner.run(user, request(run_id="first"))
    gate = asyncio.Event()
    final = UsageReport(Usage(input_tokens=1000, output_tokens=500), final=True)
    h.provider.scripts = [[start_usage(), TextDelta("Half "), gate, TextDelta("done."), final]]

    events: list[Any] = []

    async def continue_it() -> None:
        async for event in h.runner.stream(
            user, request(session_id=first.session_id, run_id="cont")
        ):
            events.append(event)
            if isinstance(event, RunDelta) and not gate.is_set():
                # The user deletes the session while the answer streams.
                assert await h.storage.delete_session(first.session_id)
                gate.set()

    await asyncio.wait_for(continue_it(), timeout=10)

    assert "".join(e.text for e in events if isinstance(e, RunDelta)) == "Half done."
    assert isinstance(events[-1], RunError)
    assert events[-1].error == "not_found"
    assert await h.storage.get_session(first.session_id) is None
    assert await h.spends(user) == [-7, -7]  # the continued run was charged all the same
    # A retry gets a final answer: the session is gone.
    for _ in range(2):
        with pytest.raises(NotFound):
            await h.runner.run(user, request(session_id=first.session_id, run_id="cont"))
    await h.ledger.verify(user)


async def test_failed_runs_answer_a_retry_the_same_way(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 1000)
    h.provider.scripts = [
        [ModelUnavailable("down before any text")],
        [start_usage(), TextDelta("Half an "), ModelUnavailable("cut mid-stream")],
    ]
    with pytest.raises(ModelUnavailable):
        await h.runner.run(user, request(run_id="before"))
    with pytest.raises(ModelUnavailable):
        await h.runner.run(user, request(run_id="during"))
    paid = await h.spends(user)
    assert len(paid) == 1  # only the output that was produced

    answers = []
    for run_id in ("before", "during"):
        with pytest.raises(RunFailed) as failed:
            await h.runner.run(user, request(run_id=run_id))
        answers.append((failed.value.code, failed.value.run_id))
        with pytest.raises(RunFailed):  # streamed: refused before the first event
            await collect(h, user, run_id=run_id)
    assert answers == [("run_failed", "before"), ("run_failed", "during")]
    assert await h.spends(user) == paid
    await h.ledger.verify(user)


class EndlessProvider:
    """A provider that streams for ever and ignores the request's deadline."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed = False

    @asynccontextmanager
    async def stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[AsyncIterator[ProviderEvent]]:
        try:
            yield self._events()
        finally:
            self.closed = True

    async def _events(self) -> AsyncIterator[ProviderEvent]:
        yield start_usage(200)
        while True:
            await asyncio.sleep(0.01)
            self.sent.append("word ")
            yield TextDelta("word ")

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        return 200


async def test_a_provider_streaming_past_the_deadline_is_cut_and_charged_what_it_delivered(
    make: Any, user: str
) -> None:
    h = make(limits={"run_deadline": 0.3})
    endless = EndlessProvider()
    h.runner.provider = endless
    h.estimator.provider = endless
    await h.funded(user, 1000)

    events = await asyncio.wait_for(collect(h, user, run_id="long"), timeout=10)

    assert isinstance(events[0], RunStarted)
    assert isinstance(events[-1], RunError)
    assert events[-1].error == "model_unavailable"
    assert "deadline" in events[-1].message
    delivered = "".join(e.text for e in events if isinstance(e, RunDelta))
    assert delivered
    assert endless.closed
    expected = h.estimator.credits_for(
        (await h.estimator.prepare(user, request(), ask_provider=False)).model,
        Usage(input_tokens=200, output_tokens=approx_tokens(delivered)),
    )
    [(_, captured, status)] = await h.holds(user)
    assert (captured, status) == (expected, "captured")
    assert await h.spends(user) == [-expected]
    session = await h.storage.get_session(events[0].session_id)
    assert session is not None
    assert session.exchanges[0].response == delivered
    await h.ledger.verify(user)


async def test_a_normal_run_is_unaffected_by_the_deadline(make: Any, user: str) -> None:
    h = make(normal(), limits={"run_deadline": 5})
    await h.funded(user, 100)
    result = await h.runner.run(user, request())
    assert result.credits_spent == 7
