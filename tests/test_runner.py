"""The runner's money flow, on SQLite and PostgreSQL, with a scripted provider.

Prices are made easy to follow with 1 credit = $0.001: on Sonnet 5.5 ($2 in,
$10 out, $2.50 cache write per million tokens), 1,000 input and 500 output
tokens cost $0.007 = 7 credits. A run holds its worst case: its input (by the
local approximation, as runs do not wait for the provider's counter) all
written to the cache, plus ``max_tokens=1000`` of output: ``Harness.hold_of``.
"""

from __future__ import annotations

import asyncio
import math
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from prpm_playground import CreditLedger, CreditPolicy, SQLAlchemyStorage
from prpm_playground.catalog import ModelCatalog, ModelInfo
from prpm_playground.errors import (
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    ModelOverloaded,
    ModelUnavailable,
    NotFound,
    RateLimited,
    RunInProgress,
)
from prpm_playground.estimator import Estimator
from prpm_playground.models import (
    CompareRequest,
    CompareVariant,
    RunDelta,
    RunDone,
    RunError,
    RunRequest,
    RunStarted,
    RunUsage,
    Usage,
    VariantDelta,
    VariantDone,
    VariantError,
    VariantStarted,
)
from prpm_playground.providers import approx_tokens
from prpm_playground.providers.base import TextDelta, UsageReport
from prpm_playground.runner import PlaygroundRunner
from prpm_playground.sources import InMemoryPackages
from prpm_playground.testing import ManualClock

from .scripted_provider import ScriptedProvider, Step, normal

PACKAGE_TEXT = "# Reviewer\nYou review code carefully."


@dataclass
class Harness:
    ledger: CreditLedger
    provider: ScriptedProvider
    runner: PlaygroundRunner
    estimator: Estimator
    storage: SQLAlchemyStorage

    async def funded(self, user: str, credits: int) -> None:
        await self.ledger.grant(user, credits, kind="purchased", idempotency_key=f"fund-{user}")

    async def spends(self, user: str) -> list[int]:
        page = await self.ledger.history(user, types=["spend"])
        return [entry.amount for entry in page.entries]

    async def hold_of(self, req: RunRequest, user: str = "anyone") -> int:
        return (await self.estimator.prepare(user, req, ask_provider=False)).max_credits

    async def holds(self, user: str) -> list[tuple[int, int, str]]:
        audit = await self.storage.audit(user)
        assert audit is not None
        return sorted((h.amount, h.captured, h.status) for h in audit[1])


@pytest.fixture
def make(storage: SQLAlchemyStorage, clock: ManualClock) -> Any:
    def build(
        script: list[Step] | None = None,
        *,
        count: int | None = 1000,
        catalog: ModelCatalog | None = None,
        **policy: Any,
    ) -> Harness:
        settings: dict[str, Any] = {"trial_credits": 0, "usd_per_credit": Decimal("0.001")}
        settings.update(policy)
        ledger = CreditLedger(storage, policy=CreditPolicy(**settings), clock=clock)
        provider = ScriptedProvider(script if script is not None else normal(), count=count)
        packages = InMemoryPackages({"reviewer": PACKAGE_TEXT, "other": "Be brief."})
        estimator = Estimator(ledger, packages, provider, storage, catalog=catalog)
        runner = PlaygroundRunner(ledger, estimator, provider, storage, clock=clock)
        return Harness(ledger, provider, runner, estimator, storage)

    return build


def request(**fields: Any) -> RunRequest:
    values: dict[str, Any] = {
        "package_id": "reviewer",
        "input": "Check my code",
        "max_tokens": 1000,
    }
    values.update(fields)
    return RunRequest(**values)


def start_usage(input_tokens: int = 1000) -> UsageReport:
    return UsageReport(Usage(input_tokens=input_tokens, output_tokens=1))


async def test_a_run_holds_the_worst_case_and_charges_actual_usage(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    result = await h.runner.run(user, request())
    assert result.response == "Hello from the model."
    assert result.usage == Usage(input_tokens=1000, output_tokens=500)
    assert (result.credits_spent, result.credits_remaining) == (7, 93)
    assert result.model == "claude-sonnet-5-5"
    assert result.stop_reason == "end_turn"
    assert await h.holds(user) == [(await h.hold_of(request()), 7, "captured")]
    assert await h.spends(user) == [-7]
    assert (await h.ledger.balance(user)).available == 93
    await h.ledger.verify(user)
    sent = h.provider.requests[0]
    assert sent.system == PACKAGE_TEXT
    assert [(m.role, m.content) for m in sent.messages] == [("user", "Check my code")]
    assert sent.model == "claude-sonnet-5-5"
    assert sent.temperature is None
    assert sent.user_hash
    assert user not in sent.user_hash


async def test_stream_yields_started_deltas_usage_and_done(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    async with aclosing(h.runner.stream(user, request())) as events:
        seen = [event async for event in events]
    assert isinstance(seen[0], RunStarted)
    started = seen[0]
    hold = await h.hold_of(request())
    assert (started.held, started.estimate.max_credits, started.estimate.available) == (
        hold,
        hold,
        100,
    )
    prepared = await h.estimator.prepare(user, request(), ask_provider=False)
    assert started.estimate.credits == prepared.expected_credits
    assert started.estimate.input_tokens_exact is False
    assert "".join(e.text for e in seen if isinstance(e, RunDelta)) == "Hello from the model."
    assert [e.usage.output_tokens for e in seen if isinstance(e, RunUsage)] == [1, 500]
    assert isinstance(seen[-1], RunDone)
    assert seen[-1].result.session_id == started.session_id
    assert seen[-1].result.credits_spent == 7


@pytest.mark.parametrize(
    "failure",
    [ModelUnavailable("upstream down"), ModelOverloaded("overloaded"), RateLimited("slow down")],
)
async def test_a_failure_before_any_output_releases_everything(
    make: Any, user: str, failure: Exception
) -> None:
    h = make([start_usage(), failure])
    await h.funded(user, 100)
    with pytest.raises(type(failure)):
        await h.runner.run(user, request())
    assert await h.holds(user) == [(await h.hold_of(request()), 0, "released")]
    assert await h.spends(user) == []
    assert (await h.ledger.balance(user)).available == 100
    assert (await h.runner.sessions.list_sessions(user, limit=10, before=None)) == []
    await h.ledger.verify(user)


async def test_stream_reports_a_failure_as_a_final_error_event(make: Any, user: str) -> None:
    h = make([start_usage(), ModelOverloaded("overloaded")])
    await h.funded(user, 100)
    async with aclosing(h.runner.stream(user, request())) as events:
        seen = [event async for event in events]
    assert isinstance(seen[-1], RunError)
    assert (seen[-1].error, seen[-1].message) == ("model_overloaded", "overloaded")
    assert (await h.ledger.balance(user)).available == 100


async def test_a_failure_mid_stream_charges_what_was_produced(make: Any, user: str) -> None:
    h = make([start_usage(), TextDelta("partial answer "), ModelOverloaded("overloaded")])
    await h.funded(user, 100)
    with pytest.raises(ModelOverloaded):
        await h.runner.run(user, request())
    output = approx_tokens("partial answer ")
    cost = math.ceil((1000 * 2 + output * 10) / 1000)
    assert await h.holds(user) == [(await h.hold_of(request()), cost, "captured")]
    assert (await h.ledger.balance(user)).available == 100 - cost
    [summary] = await h.runner.sessions.list_sessions(user, limit=10, before=None)
    session = await h.runner.sessions.get_session(summary.id)
    assert session is not None
    [exchange] = session.exchanges
    assert (exchange.response, exchange.stop_reason) == ("partial answer ", "error")
    assert exchange.usage.output_tokens == output
    await h.ledger.verify(user)


async def test_a_failure_after_the_final_report_still_completes_the_run(
    make: Any, user: str
) -> None:
    # Everything the run is charged for had arrived; only the stream's tail broke.
    h = make([*normal(), ModelUnavailable("connection reset")])
    await h.funded(user, 100)
    result = await h.runner.run(user, request())
    assert (result.response, result.credits_spent, result.stop_reason) == (
        "Hello from the model.",
        7,
        "end_turn",
    )
    assert await h.spends(user) == [-7]
    await h.ledger.verify(user)


async def test_the_run_is_settled_as_soon_as_the_final_report_arrives(
    make: Any, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tail = asyncio.Event()  # the provider's stream stays open until set
    h = make([*normal(), tail])
    await h.funded(user, 100)
    charged = asyncio.Event()
    capture = h.ledger._capture

    async def noted(*args: Any, **kwargs: Any) -> Any:
        outcome = await capture(*args, **kwargs)
        charged.set()
        return outcome

    monkeypatch.setattr(h.ledger, "_capture", noted)
    task = asyncio.create_task(h.runner.run(user, request()))
    await asyncio.wait_for(charged.wait(), timeout=5)
    assert not task.done()  # charged while the stream is still open
    tail.set()
    result = await task
    assert result.credits_spent == 7
    await h.ledger.verify(user)


async def test_a_client_that_goes_away_pays_for_what_was_produced(make: Any, user: str) -> None:
    gate = asyncio.Event()  # never set: the model would go on forever
    h = make([start_usage(), TextDelta("one two three "), gate, TextDelta("never")])
    await h.funded(user, 100)
    async with aclosing(h.runner.stream(user, request())) as events:
        async for event in events:
            if isinstance(event, RunDelta):
                break  # the client disconnects after the first words
    assert h.provider.closed == 1  # the upstream stream was closed at once
    output = approx_tokens("one two three ")
    cost = math.ceil((1000 * 2 + output * 10) / 1000)
    assert await h.holds(user) == [(await h.hold_of(request()), cost, "captured")]
    assert await h.spends(user) == [-cost]
    assert (await h.ledger.balance(user)).available == 100 - cost
    await h.ledger.verify(user)


async def test_a_client_gone_right_after_started_gets_its_hold_back(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    async with aclosing(h.runner.stream(user, request())) as events:
        first = await anext(events)
        assert isinstance(first, RunStarted)
    # Closed before the model was called: nothing held, nothing charged.
    assert h.provider.requests == []
    assert await h.holds(user) == [(await h.hold_of(request()), 0, "released")]
    assert (await h.ledger.balance(user)).available == 100
    await h.ledger.verify(user)


async def test_a_cancelled_task_settles_before_the_cancellation_ends(make: Any, user: str) -> None:
    gate = asyncio.Event()
    h = make([start_usage(), TextDelta("a b c "), gate])
    await h.funded(user, 100)
    task = asyncio.create_task(h.runner.run(user, request()))
    await h.provider.reached.wait()
    for _ in range(20):  # let the first delta through
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.provider.closed == 1
    [(held, captured, status)] = await h.holds(user)
    assert (held, status) == (await h.hold_of(request()), "captured")
    assert captured == math.ceil((1000 * 2 + approx_tokens("a b c ") * 10) / 1000)
    await h.ledger.verify(user)


async def test_cancelled_before_the_provider_reported_anything_costs_nothing(
    make: Any, user: str
) -> None:
    gate = asyncio.Event()
    h = make([gate])
    await h.funded(user, 100)
    task = asyncio.create_task(h.runner.run(user, request()))
    await h.provider.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await h.holds(user) == [(await h.hold_of(request()), 0, "released")]
    assert (await h.ledger.balance(user)).available == 100


async def test_a_retry_with_the_same_run_id_is_never_charged_twice(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    first = await h.runner.run(user, request(run_id="run-1"))
    again = await h.runner.run(user, request(run_id="run-1"))
    assert again.model_dump(exclude={"credits_remaining", "warnings"}) == first.model_dump(
        exclude={"credits_remaining", "warnings"}
    )
    assert again.credits_remaining == 93
    assert len(h.provider.requests) == 1
    assert await h.spends(user) == [-7]
    events = [e async for e in h.runner.stream(user, request(run_id="run-1"))]
    assert [type(e) for e in events] == [RunDone]


async def test_a_retry_while_the_run_is_still_going_is_refused(make: Any, user: str) -> None:
    gate = asyncio.Event()
    h = make([start_usage(), TextDelta("slow "), gate, *normal()[-1:]])
    await h.funded(user, 100)
    task = asyncio.create_task(h.runner.run(user, request(run_id="run-2")))
    await h.provider.reached.wait()
    with pytest.raises(RunInProgress) as caught:
        await h.runner.run(user, request(run_id="run-2"))
    assert caught.value.code == "run_in_progress"
    gate.set()
    result = await task
    assert result.credits_spent == 7
    assert len(h.provider.requests) == 1


async def test_a_failed_run_id_cannot_be_reused(make: Any, user: str) -> None:
    h = make([ModelUnavailable("down")])
    await h.funded(user, 100)
    with pytest.raises(ModelUnavailable):
        await h.runner.run(user, request(run_id="run-3"))
    with pytest.raises(Conflict, match="new run_id"):
        await h.runner.run(user, request(run_id="run-3"))
    assert len(h.provider.requests) == 1


async def test_five_concurrent_runs_with_credits_for_one(make: Any, user: str) -> None:
    h = make()
    hold = await h.hold_of(request())
    await h.funded(user, hold)
    outcomes = await asyncio.gather(
        *(h.runner.run(user, request()) for _ in range(5)), return_exceptions=True
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1
    assert len(lost) == 4
    assert all(isinstance(o, InsufficientCredits) for o in lost)
    assert len(h.provider.requests) == 1  # the losers never reached the model
    assert (await h.ledger.balance(user)).available == hold - 7
    await h.ledger.verify(user)


async def test_a_session_continues_with_its_full_history(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    first = await h.runner.run(user, request(input="First question"))
    second = await h.runner.run(
        user, RunRequest(session_id=first.session_id, input="Follow-up", max_tokens=1000)
    )
    assert (second.session_id, second.exchange_index) == (first.session_id, 1)
    sent = h.provider.requests[1]
    assert sent.system == PACKAGE_TEXT  # the session keeps its package
    assert [(m.role, m.content) for m in sent.messages] == [
        ("user", "First question"),
        ("assistant", "Hello from the model."),
        ("user", "Follow-up"),
    ]
    session = await h.runner.sessions.get_session(first.session_id)
    assert session is not None
    assert [e.input for e in session.exchanges] == ["First question", "Follow-up"]


async def test_two_runs_continuing_one_session_are_both_charged_and_saved(
    make: Any, user: str
) -> None:
    h = make()
    await h.funded(user, 100)
    first = await h.runner.run(user, request(input="First question"))
    gate = asyncio.Event()
    h.provider.scripts = [[*normal("A")[:-1], gate, normal("A")[-1]], normal("B")]
    follow = RunRequest(session_id=first.session_id, input="Follow-up", max_tokens=1000)
    # Both are prepared against one exchange; the second saves first, so the
    # first's save is refused, after its charge is committed, and appends after it.
    slow = asyncio.create_task(h.runner.run(user, follow))
    await h.provider.opened(2)
    fast = await h.runner.run(user, follow)
    gate.set()
    late = await slow

    assert (fast.exchange_index, late.exchange_index) == (1, 2)
    session = await h.runner.sessions.get_session(first.session_id)
    assert session is not None
    assert [e.response for e in session.exchanges] == ["Hello from the model.", "B", "A"]
    assert session.exchange_count == 3
    assert await h.spends(user) == [-7, -7, -7]
    await h.ledger.verify(user)


async def test_a_nul_from_the_model_is_saved_as_a_replacement_character(
    make: Any, user: str
) -> None:
    h = make([start_usage(), TextDelta("before\x00after"), *normal()[-1:]])
    await h.funded(user, 100)
    result = await h.runner.run(user, request())
    assert result.response == "before\ufffdafter"
    session = await h.runner.sessions.get_session(result.session_id)
    assert session is not None
    assert session.exchanges[0].response == "before\ufffdafter"
    await h.ledger.verify(user)


async def test_only_the_owner_continues_a_session(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    await h.funded("intruder-" + user, 100)
    first = await h.runner.run(user, request())
    with pytest.raises(NotFound):
        await h.runner.run(
            "intruder-" + user, RunRequest(session_id=first.session_id, input="mine now")
        )
    assert len(h.provider.requests) == 1
    assert await h.holds("intruder-" + user) == []


async def test_a_full_session_is_refused_before_anything_is_held(make: Any, user: str) -> None:
    h = make(limits={"max_session_messages": 2})
    await h.funded(user, 100)
    first = await h.runner.run(user, request())
    with pytest.raises(InvalidRequest, match="at most 2 messages"):
        await h.runner.run(user, RunRequest(session_id=first.session_id, input="more"))
    assert await h.holds(user) == [(await h.hold_of(request()), 7, "captured")]


async def test_over_the_context_window_is_refused_with_the_numbers(make: Any, user: str) -> None:
    tiny = ModelInfo(
        id="tiny-model",
        name="Tiny",
        input_usd_per_mtok=Decimal(1),
        output_usd_per_mtok=Decimal(5),
        cache_write_usd_per_mtok=Decimal("1.25"),
        cache_read_usd_per_mtok=Decimal("0.1"),
        context_window=2_000,
        max_output_tokens=1_000,
    )
    h = make(count=1_500, catalog=ModelCatalog().with_models([tiny]))
    await h.funded(user, 100)
    with pytest.raises(InvalidRequest) as caught:  # the provider's count
        await h.estimator.estimate(user, request(model="tiny-model"))
    assert caught.value.message == (
        "1,500 input tokens plus max_tokens 1,000 exceed tiny-model's context window "
        "of 2,000 tokens"
    )
    with pytest.raises(InvalidRequest, match="context window of 2,000 tokens"):
        await h.runner.run(user, request(model="tiny-model", input="word " * 1_000))
    assert h.provider.requests == []
    assert await h.holds(user) == []


@pytest.mark.parametrize(
    ("fields", "error", "text"),
    [
        ({"model": "gpt-5"}, InvalidRequest, "unknown model 'gpt-5'"),
        ({"package_id": "missing"}, NotFound, "missing"),
        ({"input": "x" * 50_001}, InvalidRequest, "50,001 characters"),
        ({"max_tokens": 200_000}, InvalidRequest, "max_tokens 200,000"),
    ],
)
async def test_bad_requests_are_refused_before_anything_is_held(
    make: Any, user: str, fields: dict[str, Any], error: type[Exception], text: str
) -> None:
    h = make()
    await h.funded(user, 100)
    with pytest.raises(error, match=text):
        await h.runner.run(user, request(**fields))
    assert h.provider.requests == []
    assert await h.holds(user) == []


@pytest.mark.parametrize("field", ["input", "package_id", "run_id", "session_id", "model"])
@pytest.mark.parametrize("bad", ["a\x00b", "lone \ud800", "\udfff"])
def test_text_no_database_can_store_is_refused_by_the_request_models(field: str, bad: str) -> None:
    # Library callers build requests in Python, where such strings are valid.
    fields: dict[str, Any] = {"package_id": "reviewer", "input": "hi", field: bad}
    with pytest.raises(ValidationError) as info:
        RunRequest(**fields)
    assert [e["loc"] for e in info.value.errors()] == [(field,)]
    with pytest.raises(ValidationError) as info:
        CompareRequest(input="hi", variants=[{"package_id": bad}, {"no_prompt": True}])
    assert [e["loc"] for e in info.value.errors()] == [("variants", 0, "package_id")]


async def test_a_run_without_a_prompt_sends_no_system_prompt(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    result = await h.runner.run(user, RunRequest(no_prompt=True, input="hi", max_tokens=1000))
    assert h.provider.requests[0].system is None
    session = await h.runner.sessions.get_session(result.session_id)
    assert session is not None
    assert (session.no_prompt, session.package_id) == (True, None)


async def test_a_trial_user_can_afford_a_default_sonnet_run(
    storage: SQLAlchemyStorage, clock: ManualClock, user: str
) -> None:
    ledger = CreditLedger(storage, clock=clock)  # PRPM defaults: 5 trial credits, $0.05
    provider = ScriptedProvider(normal(), count=None)  # the local approximation
    estimator = Estimator(ledger, InMemoryPackages({"reviewer": PACKAGE_TEXT}), provider, storage)
    runner = PlaygroundRunner(ledger, estimator, provider, storage, clock=clock)
    estimate = await estimator.estimate(user, RunRequest(package_id="reviewer", input="Hi"))
    assert (estimate.max_output_tokens, estimate.can_afford, estimate.available) == (4096, True, 5)
    assert estimate.max_credits == 1
    result = await runner.run(user, RunRequest(package_id="reviewer", input="Hi"))
    assert (result.credits_spent, result.credits_remaining) == (1, 4)


async def test_estimates_use_the_providers_count_and_cache_it(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 10)
    estimate = await h.estimator.estimate(user, request())
    assert estimate.model_dump() == {
        "credits": 12,
        "max_credits": 13,
        "input_tokens": 1000,
        "input_tokens_exact": True,
        "max_output_tokens": 1000,
        "expected_output_tokens": 1000,
        "model": "claude-sonnet-5-5",
        "can_afford": False,
        "available": 10,
    }
    await h.estimator.estimate(user, request())
    assert h.provider.count_calls == 1  # the second count came from the cache
    await h.estimator.estimate(user, request(input="Something else"))
    assert h.provider.count_calls == 2


async def test_estimates_fall_back_to_the_approximation(make: Any, user: str) -> None:
    h = make()
    h.provider.count_error = ModelUnavailable("count endpoint down")
    estimate = await h.estimator.estimate(user, request())
    assert estimate.input_tokens_exact is False
    assert estimate.input_tokens >= approx_tokens(PACKAGE_TEXT) + approx_tokens("Check my code")

    slow = make(limits={"token_count_timeout": 0.01})
    slow.provider.count_delay = 1.0
    estimate = await slow.estimator.estimate(user, request())
    assert estimate.input_tokens_exact is False


async def test_compare_runs_every_variant_and_charges_each(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    comparison = await h.runner.compare(
        user,
        CompareRequest(
            input="Review this",
            max_tokens=1000,
            variants=[
                CompareVariant(package_id="reviewer"),
                CompareVariant(no_prompt=True),
            ],
        ),
    )
    assert [o.index for o in comparison.outcomes] == [0, 1]
    results = [o.result for o in comparison.outcomes]
    assert all(r is not None and r.credits_spent == 7 for r in results)
    assert sorted(r.system or "" for r in h.provider.requests) == ["", PACKAGE_TEXT]
    assert (await h.ledger.balance(user)).available == 86
    sessions = await h.runner.sessions.list_sessions(user, limit=10, before=None)
    assert {s.comparison_id for s in sessions} == {comparison.id}
    assert len(sessions) == 2
    await h.ledger.verify(user)


def two_variants(**fields: Any) -> CompareRequest:
    values: dict[str, Any] = {
        "input": "Review this",
        "max_tokens": 1000,
        "variants": [CompareVariant(package_id="reviewer"), CompareVariant(no_prompt=True)],
    }
    values.update(fields)
    return CompareRequest(**values)


async def test_a_streamed_compare_sends_every_variants_events(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    async with aclosing(h.runner.compare_stream(user, two_variants())) as stream:
        events = [event async for event in stream]
    [comparison_id] = {e.comparison_id for e in events}
    for index in (0, 1):
        mine = [e for e in events if e.variant == index]
        assert isinstance(mine[0], VariantStarted)
        assert isinstance(mine[-1], VariantDone)
        assert sum(isinstance(e, VariantDelta) for e in mine) > 1
        text = "".join(e.text for e in mine if isinstance(e, VariantDelta))
        assert text == mine[-1].result.response
        assert mine[-1].result.credits_spent == 7
    assert (await h.ledger.balance(user)).available == 86
    sessions = await h.runner.sessions.list_sessions(user, limit=10, before=None)
    assert {s.comparison_id for s in sessions} == {comparison_id}
    # Replayed with the same id: each variant's result again, nothing run or charged.
    request = two_variants(compare_id=comparison_id)
    async with aclosing(h.runner.compare_stream(user, request)) as stream:
        again = [event async for event in stream]
    assert sorted((type(e), e.variant) for e in again) == [(VariantDone, 0), (VariantDone, 1)]
    assert len(h.provider.requests) == 2
    assert (await h.ledger.balance(user)).available == 86
    await h.ledger.verify(user)


async def test_a_streamed_compare_refuses_before_its_first_event(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 10)  # one variant holds 11
    stream = h.runner.compare_stream(user, two_variants())
    with pytest.raises(InsufficientCredits) as caught:
        await anext(stream)
    assert caught.value.required == 22
    assert h.provider.requests == []
    assert (await h.ledger.balance(user)).available == 10


async def test_a_streamed_compare_reports_a_failed_variant_and_runs_the_other(
    make: Any, user: str
) -> None:
    h = make()
    await h.funded(user, 100)
    h.provider.scripts = [normal(), [ModelUnavailable("down")]]
    async with aclosing(h.runner.compare_stream(user, two_variants())) as stream:
        events = [event async for event in stream]
    ends = sorted((e.variant, e.type) for e in events if isinstance(e, VariantDone | VariantError))
    assert [kind for _, kind in ends] in (["done", "error"], ["error", "done"])
    [failed] = [e for e in events if isinstance(e, VariantError)]
    assert failed.error == "model_unavailable"
    assert (await h.ledger.balance(user)).available == 93
    await h.ledger.verify(user)


async def test_a_streamed_compare_closed_early_settles_every_variant(make: Any, user: str) -> None:
    never = asyncio.Event()
    h = make([start_usage(), TextDelta("one two three "), never])
    await h.funded(user, 100)
    seen: set[int] = set()
    async with aclosing(h.runner.compare_stream(user, two_variants())) as stream:
        async for event in stream:
            if isinstance(event, VariantDelta):
                seen.add(event.variant)
                if seen == {0, 1}:
                    break  # the client goes away once both have said something
    assert h.provider.closed == 2
    statuses = [status for _, _, status in await h.holds(user)]
    assert statuses == ["captured", "captured"]
    assert not h.runner._settling
    await h.ledger.verify(user)


async def test_compare_runs_nothing_unless_every_variant_is_affordable(
    make: Any, user: str
) -> None:
    h = make()
    with_package = await h.hold_of(request(input="Review this"))
    without = await h.hold_of(RunRequest(no_prompt=True, input="Review this", max_tokens=1000))
    await h.funded(user, with_package + without - 1)
    with pytest.raises(InsufficientCredits) as caught:
        await h.runner.compare(
            user,
            CompareRequest(
                input="Review this",
                max_tokens=1000,
                variants=[CompareVariant(package_id="reviewer"), CompareVariant(no_prompt=True)],
            ),
        )
    total = with_package + without
    assert (caught.value.required, caught.value.available) == (total, total - 1)
    assert h.provider.requests == []
    assert (await h.ledger.balance(user)).available == total - 1
    assert await h.holds(user) == [(with_package, 0, "released")]
    await h.ledger.verify(user)


async def test_compare_reports_a_failed_variant_and_charges_only_the_other(
    make: Any, user: str
) -> None:
    h = make()
    await h.funded(user, 100)
    h.provider.scripts = [normal(), [ModelUnavailable("down")]]
    comparison = await h.runner.compare(
        user,
        CompareRequest(
            input="Review this",
            max_tokens=1000,
            variants=[CompareVariant(package_id="reviewer"), CompareVariant(package_id="other")],
        ),
    )
    errors = [o.error.error for o in comparison.outcomes if o.error]
    spent = [o.result.credits_spent for o in comparison.outcomes if o.result]
    assert (errors, spent) == (["model_unavailable"], [7])
    assert (await h.ledger.balance(user)).available == 93


async def test_a_cancelled_compare_ends_only_after_every_variant_settled(
    make: Any, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    never = asyncio.Event()
    h = make([start_usage(), TextDelta("one two three "), never])
    await h.funded(user, 100)
    gate = asyncio.Event()  # holds back the second variant's charge
    second = asyncio.Event()
    captures = 0
    capture = h.ledger._capture

    async def slow_second(*args: Any, **kwargs: Any) -> Any:
        nonlocal captures
        captures += 1
        if captures == 2:
            second.set()
            await gate.wait()
        return await capture(*args, **kwargs)

    monkeypatch.setattr(h.ledger, "_capture", slow_second)
    task = asyncio.create_task(
        h.runner.compare(
            user,
            CompareRequest(
                input="Review this",
                max_tokens=1000,
                variants=[
                    CompareVariant(package_id="reviewer"),
                    CompareVariant(package_id="other"),
                ],
            ),
        )
    )
    await h.provider.opened(2)
    for _ in range(20):  # both variants stream their first words
        await asyncio.sleep(0)
    task.cancel()
    # The first variant settles; the second reaches its charge.
    await asyncio.wait_for(second.wait(), timeout=5)
    assert not task.done()  # the second variant is still being charged
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [status for _, _, status in await h.holds(user)] == ["captured", "captured"]
    await h.ledger.verify(user)


async def test_settling_names_the_user_and_refuses_another_users_hold(make: Any, user: str) -> None:
    h = make()
    await h.funded(user, 100)
    hold = await h.ledger.hold(user, 5, idempotency_key="mine")
    with pytest.raises(NotFound):
        await h.ledger._capture(hold.id, 1, user_id="someone-else")
    captured, balance = await h.ledger._capture(hold.id, 2, user_id=user)
    assert (captured.captured, balance.available) == (2, 98)
