"""Runs through the real ``anthropic`` SDK, mocked at the HTTP layer with respx.

Each scenario asserts the ledger's outcome exactly: what was held, captured or
released, the balance, and ``verify()``, on SQLite and PostgreSQL.

Prices: Haiku 4.5 ($1 in, $5 out, $1.25 cache write, $0.10 cache read per
million tokens) with 1 credit = $0.00001, so a token of input costs 0.1
credit and one of output 0.5. The recorded streams report 25 input and 15
output tokens: (25 + 75) / 10 = 10 credits.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from prpm_playground import (
    AnthropicProvider,
    CreditLedger,
    CreditPolicy,
    Estimator,
    InMemoryPackages,
    PlaygroundRunner,
    RunRequest,
    SQLAlchemyStorage,
)
from prpm_playground.errors import ModelOverloaded, ModelUnavailable
from prpm_playground.providers import approx_tokens
from prpm_playground.testing import ManualClock

from .anthropic_sse import (
    MESSAGES_PATH,
    ChunkedBody,
    cut_stream,
    error_event_stream,
    mocked_anthropic,
    overloaded_response,
    rate_limit_response,
    sse_response,
    text_stream,
)

PACKAGE = "# Haiku writer\nAnswer in a haiku."


@dataclass
class World:
    router: Any
    ledger: CreditLedger
    runner: PlaygroundRunner
    estimator: Estimator
    storage: SQLAlchemyStorage
    user: str

    async def hold_amount(self) -> int:
        prepared = await self.estimator.prepare(self.user, request(), ask_provider=False)
        return prepared.max_credits

    async def outcome(self) -> tuple[list[tuple[int, int, str]], int]:
        audit = await self.storage.audit(self.user)
        assert audit is not None
        holds = sorted((h.amount, h.captured, h.status) for h in audit[1])
        await self.ledger.verify(self.user)
        return holds, (await self.ledger.balance(self.user)).available

    async def exchanges(self) -> list[tuple[str, str | None]]:
        """(response, stop_reason) of each exchange in the user's one session."""
        [summary] = await self.storage.list_sessions(self.user, limit=5, before=None)
        session = await self.storage.get_session(summary.id)
        assert session is not None
        return [(e.response, e.stop_reason) for e in session.exchanges]


def request() -> RunRequest:
    return RunRequest(package_id="haiku-writer", input="Write about rain", model="haiku")


def cost(input_tokens: int, output_tokens: int, cache_write: int = 0, cache_read: int = 0) -> int:
    usd_e6 = input_tokens + 5 * output_tokens + 1.25 * cache_write + 0.1 * cache_read
    return math.ceil(usd_e6 / 10 - 1e-9)


@pytest.fixture
async def world(
    storage: SQLAlchemyStorage, clock: ManualClock, user: str, request: pytest.FixtureRequest
) -> AsyncIterator[World]:
    retries = getattr(request, "param", 0)
    async with mocked_anthropic(max_retries=retries) as (router, client):
        policy = CreditPolicy(
            trial_credits=0,
            usd_per_credit=Decimal("0.00001"),
            limits={"run_deadline": 2.0},  # type: ignore[arg-type]
        )
        ledger = CreditLedger(storage, policy=policy, clock=clock)
        provider = AnthropicProvider(client=client)
        packages = InMemoryPackages({"haiku-writer": PACKAGE})
        estimator = Estimator(ledger, packages, provider, storage)
        runner = PlaygroundRunner(ledger, estimator, provider, storage, clock=clock)
        await ledger.grant(user, 10_000, kind="purchased", idempotency_key="fund")
        yield World(router, ledger, runner, estimator, storage, user)


async def test_a_normal_stream_is_charged_its_usage(world: World) -> None:
    route = world.router.post(MESSAGES_PATH).mock(
        return_value=sse_response(text_stream(["Rain on ", "the roof ", "falls"]))
    )
    result = await world.runner.run(world.user, request())
    assert result.response == "Rain on the roof falls"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (25, 15)
    assert result.credits_spent == cost(25, 15) == 10
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, 10, "captured")], 10_000 - 10)
    body = route.calls.last.request.content.decode()
    assert '"cache_control":{"type":"ephemeral"}' in body.replace(" ", "")
    assert '"model":"claude-haiku-4-5"' in body.replace(" ", "")


async def test_a_prompt_cache_hit_is_charged_at_the_read_rate(world: World) -> None:
    world.router.post(MESSAGES_PATH).mock(
        return_value=sse_response(text_stream(["Drops"], cache_read_input_tokens=2_000))
    )
    result = await world.runner.run(world.user, request())
    assert result.usage.cache_read_input_tokens == 2_000
    assert result.credits_spent == cost(25, 15, cache_read=2_000) == 30
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, 30, "captured")], 10_000 - 30)


async def test_a_prompt_cache_write_is_charged_at_the_write_rate(world: World) -> None:
    world.router.post(MESSAGES_PATH).mock(
        return_value=sse_response(text_stream(["Drops"], cache_creation_input_tokens=200))
    )
    result = await world.runner.run(world.user, request())
    assert result.credits_spent == cost(25, 15, cache_write=200) == 35


@pytest.mark.parametrize("world", [1], indirect=True)
async def test_a_429_then_success_is_charged_once(world: World) -> None:
    route = world.router.post(MESSAGES_PATH).mock(
        side_effect=[rate_limit_response(), sse_response(text_stream(["Rain"]))]
    )
    result = await world.runner.run(world.user, request())
    assert route.call_count == 2  # the SDK retried the refused request
    assert result.credits_spent == 10
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, 10, "captured")], 10_000 - 10)


async def test_a_529_releases_the_hold(world: World) -> None:
    world.router.post(MESSAGES_PATH).mock(return_value=overloaded_response())
    with pytest.raises(ModelOverloaded):
        await world.runner.run(world.user, request())
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, 0, "released")], 10_000)


async def test_an_error_event_mid_stream_charges_what_was_produced(world: World) -> None:
    world.router.post(MESSAGES_PATH).mock(
        return_value=sse_response(error_event_stream(["Rain on ", "the"]))
    )
    with pytest.raises(ModelOverloaded):
        await world.runner.run(world.user, request())
    charged = cost(25, approx_tokens("Rain on the"))
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, charged, "captured")], 10_000 - charged)


async def test_a_stream_cut_before_message_delta_counts_what_arrived(world: World) -> None:
    world.router.post(MESSAGES_PATH).mock(
        return_value=sse_response(cut_stream(["Rain on ", "the roof"]))
    )
    with pytest.raises(ModelUnavailable):
        await world.runner.run(world.user, request())
    charged = cost(25, approx_tokens("Rain on the roof"))
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, charged, "captured")], 10_000 - charged)
    assert await world.exchanges() == [("Rain on the roof", "error")]


@pytest.mark.parametrize(
    "failure",
    [httpx.RemoteProtocolError("peer closed connection"), httpx.ReadTimeout("read timed out")],
    ids=["connection-broken", "read-timeout"],
)
async def test_a_transport_failure_mid_stream_charges_what_arrived(
    world: World, failure: httpx.HTTPError
) -> None:
    body = ChunkedBody(cut_stream(["Rain on ", "the roof"]), raise_at_end=failure)
    world.router.post(MESSAGES_PATH).mock(return_value=sse_response(body))
    with pytest.raises(ModelUnavailable):
        await world.runner.run(world.user, request())
    assert body.closed
    charged = cost(25, approx_tokens("Rain on the roof"))
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, charged, "captured")], 10_000 - charged)
    assert await world.exchanges() == [("Rain on the roof", "error")]


async def test_a_timeout_before_any_output_releases_the_hold(world: World) -> None:
    world.router.post(MESSAGES_PATH).mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(ModelUnavailable):
        await world.runner.run(world.user, request())
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, 0, "released")], 10_000)


async def test_a_stream_that_stalls_past_the_deadline_is_charged_what_arrived(
    world: World,
) -> None:
    body = ChunkedBody(cut_stream(["Rain "]), hang=True)
    world.router.post(MESSAGES_PATH).mock(return_value=sse_response(body))
    with pytest.raises(ModelUnavailable, match="deadline"):
        await world.runner.run(world.user, request())
    assert body.closed  # the upstream response was closed
    charged = cost(25, approx_tokens("Rain "))
    held = await world.hold_amount()
    assert await world.outcome() == ([(held, charged, "captured")], 10_000 - charged)
