"""Providers: the Anthropic adapter against the real SDK (HTTP mocked by respx),
the offline provider, and the local token approximation."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest
import respx

from prpm_playground import providers
from prpm_playground.errors import (
    InvalidRequest,
    ModelOverloaded,
    ModelUnavailable,
    PlaygroundError,
    ProviderMisconfigured,
    RateLimited,
)
from prpm_playground.models import Usage
from prpm_playground.providers import (
    AnthropicProvider,
    CompletionRequest,
    Message,
    OfflineProvider,
    Provider,
    ProviderEvent,
    TextDelta,
    UsageReport,
    approx_request_tokens,
    approx_tokens,
)
from prpm_playground.providers.offline import CACHE_TTL_SECONDS, OFFLINE_LABEL
from tests.anthropic_sse import (
    COUNT_TOKENS_PATH,
    MESSAGES_PATH,
    ChunkedBody,
    count_tokens_response,
    cut_stream,
    error_event_stream,
    error_response,
    mocked_anthropic,
    overloaded_response,
    rate_limit_response,
    sse_event,
    sse_response,
    text_stream,
)

MODEL = "claude-haiku-4-5"
PACKAGE = "# Code reviewer\n\nYou review Python code for bugs and style."


def make_request(**changes: Any) -> CompletionRequest:
    fields: dict[str, Any] = {
        "model": MODEL,
        "system": PACKAGE,
        "messages": [Message("user", "Please review my function")],
        "max_tokens": 512,
        "user_hash": "u_5f1d2c",
    }
    fields.update(changes)
    return CompletionRequest(**fields)


async def collect(provider: Provider, request: CompletionRequest) -> list[ProviderEvent]:
    async with provider.stream(request) as events:
        return [event async for event in events]


async def collect_until_error(
    provider: Provider, request: CompletionRequest
) -> tuple[list[ProviderEvent], BaseException]:
    received: list[ProviderEvent] = []

    async def drain() -> None:
        async with provider.stream(request) as events:
            async for event in events:
                received.append(event)

    with pytest.raises(PlaygroundError) as info:
        await drain()
    return received, info.value


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def reports(events: list[ProviderEvent]) -> list[UsageReport]:
    return [event for event in events if isinstance(event, UsageReport)]


def sent_body(route: respx.Route) -> dict[str, Any]:
    return json.loads(route.calls.last.request.content)


@pytest.fixture
async def anthropic_mock() -> AsyncIterator[tuple[respx.Router, anthropic.AsyncAnthropic]]:
    async with mocked_anthropic() as pair:
        yield pair


# -- Anthropic: successful streams ----------------------------------------------------


async def test_normal_stream_yields_text_and_exact_usage(anthropic_mock) -> None:
    router, client = anthropic_mock
    body = text_stream(
        ["Looks ", "good, ", "but rename x."],
        input_tokens=40,
        output_tokens=9,
        thinking="Let me look at the function first.",
        extra_events=[sse_event("content_policy_notice", {"type": "content_policy_notice"})],
    )
    route = router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    events = await collect(AnthropicProvider(client=client), make_request())

    assert text_of(events) == "Looks good, but rename x."
    first, *_, last = events
    assert first == UsageReport(Usage(input_tokens=40, output_tokens=1))
    assert last == UsageReport(
        Usage(input_tokens=40, output_tokens=9), final=True, stop_reason="end_turn"
    )
    assert [r.final for r in reports(events)] == [False, True]
    # Thinking never leaks into the response text.
    assert "Let me look" not in text_of(events)

    sent = sent_body(route)
    assert sent["system"] == [
        {"type": "text", "text": PACKAGE, "cache_control": {"type": "ephemeral"}}
    ]
    assert sent["messages"] == [{"role": "user", "content": "Please review my function"}]
    assert sent["metadata"] == {"user_id": "u_5f1d2c"}
    assert sent["model"] == MODEL
    assert sent["max_tokens"] == 512
    assert sent["stream"] is True
    assert "temperature" not in sent


async def test_conversation_history_is_sent_in_order(anthropic_mock) -> None:
    router, client = anthropic_mock
    route = router.post(MESSAGES_PATH).mock(return_value=sse_response(text_stream(["ok"])))
    history = [
        Message("user", "first"),
        Message("assistant", "answer"),
        Message("user", "second"),
    ]

    await collect(AnthropicProvider(client=client), make_request(messages=history))

    assert sent_body(route)["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": "second"},
    ]


async def test_no_system_and_no_user_hash_are_left_out(anthropic_mock) -> None:
    router, client = anthropic_mock
    route = router.post(MESSAGES_PATH).mock(return_value=sse_response(text_stream(["Hi"])))

    await collect(AnthropicProvider(client=client), make_request(system=None, user_hash=None))

    sent = sent_body(route)
    assert "system" not in sent
    assert "metadata" not in sent


async def test_temperature_is_not_sent_by_default(anthropic_mock) -> None:
    # API version 2026-10-21 (what this SDK sends) answers 400 to any temperature.
    router, client = anthropic_mock
    route = router.post(MESSAGES_PATH).mock(return_value=sse_response(text_stream(["Hi"])))

    await collect(AnthropicProvider(client=client), make_request(temperature=0.4))

    assert "temperature" not in sent_body(route)


async def test_temperature_is_sent_to_listed_sampling_models(anthropic_mock) -> None:
    router, client = anthropic_mock
    route = router.post(MESSAGES_PATH).mock(
        side_effect=lambda request: sse_response(text_stream(["Hi"]))
    )
    provider = AnthropicProvider(client=client, sampling_models={MODEL})

    await collect(provider, make_request(temperature=0.4))
    assert sent_body(route)["temperature"] == 0.4

    await collect(provider, make_request(temperature=None))
    assert "temperature" not in sent_body(route)

    await collect(provider, make_request(model="claude-sonnet-5-5", temperature=0.4))
    assert "temperature" not in sent_body(route)


async def test_cache_hit_usage(anthropic_mock) -> None:
    router, client = anthropic_mock
    body = text_stream(["Cached."], input_tokens=12, cache_read_input_tokens=2048, output_tokens=3)
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    events = await collect(AnthropicProvider(client=client), make_request())

    first, final = reports(events)
    assert first.usage == Usage(input_tokens=12, output_tokens=1, cache_read_input_tokens=2048)
    assert final.usage == Usage(input_tokens=12, output_tokens=3, cache_read_input_tokens=2048)
    assert final.usage.total_input_tokens == 2060


async def test_cache_write_usage_from_an_output_only_message_delta(anthropic_mock) -> None:
    # Older API versions put only output_tokens in message_delta: the input
    # counts must come from message_start.
    router, client = anthropic_mock
    body = text_stream(
        ["Written."],
        input_tokens=20,
        cache_creation_input_tokens=1500,
        output_tokens=4,
        delta_has_input_usage=False,
    )
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    events = await collect(AnthropicProvider(client=client), make_request())

    assert reports(events)[-1] == UsageReport(
        Usage(input_tokens=20, output_tokens=4, cache_creation_input_tokens=1500),
        final=True,
        stop_reason="end_turn",
    )


async def test_max_tokens_stop_reason_is_passed_on(anthropic_mock) -> None:
    router, client = anthropic_mock
    body = text_stream(["Cut"], output_tokens=5, stop_reason="max_tokens")
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    events = await collect(AnthropicProvider(client=client), make_request(max_tokens=5))

    assert reports(events)[-1].stop_reason == "max_tokens"


# -- Anthropic: errors when the request is sent ---------------------------------------


async def test_429_then_success_is_retried_by_the_sdk() -> None:
    async with mocked_anthropic(max_retries=1) as (router, client):
        route = router.post(MESSAGES_PATH).mock(
            side_effect=[rate_limit_response(), sse_response(text_stream(["After the wait."]))]
        )

        events = await collect(AnthropicProvider(client=client), make_request())

    assert text_of(events) == "After the wait."
    assert route.call_count == 2


async def test_429_exhausted_raises_rate_limited_with_retry_after() -> None:
    async with mocked_anthropic(max_retries=1) as (router, client):
        route = router.post(MESSAGES_PATH).mock(
            side_effect=[rate_limit_response(retry_after=20), rate_limit_response(retry_after=20)]
        )

        with pytest.raises(RateLimited) as info:
            await collect(AnthropicProvider(client=client), make_request())

    assert route.call_count == 2
    assert info.value.code == "rate_limited"
    assert info.value.retry_after == 20.0


async def test_429_without_retry_after(anthropic_mock) -> None:
    router, client = anthropic_mock
    router.post(MESSAGES_PATH).mock(
        return_value=error_response(429, "rate_limit_error", "Too many requests")
    )

    with pytest.raises(RateLimited) as info:
        await collect(AnthropicProvider(client=client), make_request())

    assert info.value.retry_after is None


async def test_529_raises_model_overloaded_after_sdk_retries() -> None:
    async with mocked_anthropic(max_retries=2) as (router, client):
        route = router.post(MESSAGES_PATH).mock(side_effect=lambda r: overloaded_response())

        with pytest.raises(ModelOverloaded) as info:
            await collect(AnthropicProvider(client=client), make_request())

    assert route.call_count == 3
    assert type(info.value) is ModelOverloaded
    assert info.value.code == "model_overloaded"


@pytest.mark.parametrize(
    ("status", "error_type", "message", "expected"),
    [
        (400, "invalid_request_error", "prompt is too long: 250000 tokens", InvalidRequest),
        (404, "not_found_error", "model: claude-sonnet-9", InvalidRequest),
        (413, "request_too_large", "Request exceeds the maximum size", InvalidRequest),
        (401, "authentication_error", "invalid x-api-key", ProviderMisconfigured),
        (403, "permission_error", "Your API key does not have permission", ProviderMisconfigured),
        (500, "api_error", "Internal server error", ModelUnavailable),
        (503, "api_error", "Service unavailable", ModelUnavailable),
    ],
)
async def test_status_errors_are_mapped(
    anthropic_mock, status: int, error_type: str, message: str, expected: type[PlaygroundError]
) -> None:
    router, client = anthropic_mock
    router.post(MESSAGES_PATH).mock(return_value=error_response(status, error_type, message))

    with pytest.raises(PlaygroundError) as info:
        await collect(AnthropicProvider(client=client), make_request())

    assert type(info.value) is expected
    assert info.value.code == expected.code
    assert "test-key" not in str(info.value)


async def test_invalid_request_carries_the_api_message(anthropic_mock) -> None:
    router, client = anthropic_mock
    router.post(MESSAGES_PATH).mock(
        return_value=error_response(400, "invalid_request_error", "max_tokens: 9999999 > 128000")
    )

    with pytest.raises(InvalidRequest, match=r"max_tokens: 9999999 > 128000"):
        await collect(AnthropicProvider(client=client), make_request())


async def test_unknown_model_points_at_the_catalog(anthropic_mock) -> None:
    router, client = anthropic_mock
    router.post(MESSAGES_PATH).mock(
        return_value=error_response(404, "not_found_error", "model: claude-sonnet-9")
    )

    with pytest.raises(InvalidRequest, match="catalog"):
        await collect(AnthropicProvider(client=client), make_request(model="claude-sonnet-9"))


async def test_request_timeout_raises_model_unavailable(anthropic_mock) -> None:
    router, client = anthropic_mock
    router.post(MESSAGES_PATH).mock(side_effect=httpx.ReadTimeout("timed out"))

    with pytest.raises(ModelUnavailable) as info:
        await collect(AnthropicProvider(client=client), make_request())

    assert type(info.value) is ModelUnavailable
    assert info.value.code == "model_unavailable"
    assert "timed out" in info.value.message


async def test_connection_error_raises_model_unavailable(anthropic_mock) -> None:
    router, client = anthropic_mock
    router.post(MESSAGES_PATH).mock(side_effect=httpx.ConnectError("connection refused"))

    with pytest.raises(ModelUnavailable) as info:
        await collect(AnthropicProvider(client=client), make_request())

    assert type(info.value) is ModelUnavailable
    assert "connect" in info.value.message


async def test_deadline_while_waiting_for_the_response(anthropic_mock) -> None:
    router, client = anthropic_mock

    async def never_answers(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        raise AssertionError("the deadline should have fired")

    router.post(MESSAGES_PATH).mock(side_effect=never_answers)

    with pytest.raises(ModelUnavailable, match="deadline"):
        await collect(AnthropicProvider(client=client), make_request(deadline=0.05))


# -- Anthropic: errors in the middle of a stream --------------------------------------


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [("overloaded_error", ModelOverloaded), ("api_error", ModelUnavailable)],
)
async def test_error_event_mid_stream(
    anthropic_mock, error_type: str, expected: type[PlaygroundError]
) -> None:
    router, client = anthropic_mock
    body = ChunkedBody(error_event_stream(["Hel", "lo"], error_type=error_type))
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    received, error = await collect_until_error(AnthropicProvider(client=client), make_request())

    assert type(error) is expected
    assert text_of(received) == "Hello"
    assert [r.final for r in reports(received)] == [False]
    assert body.closed


async def test_stream_cut_before_message_delta(anthropic_mock) -> None:
    router, client = anthropic_mock
    body = ChunkedBody(cut_stream(["Half ", "an ans"]))
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    received, error = await collect_until_error(AnthropicProvider(client=client), make_request())

    assert type(error) is ModelUnavailable
    assert text_of(received) == "Half an ans"
    assert reports(received)[-1].final is False
    assert reports(received)[-1].usage.input_tokens == 25
    assert body.closed


@pytest.mark.parametrize(
    "failure",
    [
        httpx.RemoteProtocolError("peer closed connection without sending body"),
        httpx.ReadTimeout("read timed out"),
    ],
    ids=["connection-broken", "read-timeout"],
)
async def test_transport_failure_mid_stream(anthropic_mock, failure: httpx.HTTPError) -> None:
    # How the SDK wraps a transport failure mid-stream changes between its
    # releases; what the caller gets does not: a retryable ModelUnavailable
    # after the text that arrived, with no final usage (so the runner charges
    # what was delivered).
    router, client = anthropic_mock
    body = ChunkedBody(cut_stream(["Half"]), raise_at_end=failure)
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    received, error = await collect_until_error(AnthropicProvider(client=client), make_request())

    assert type(error) is ModelUnavailable
    assert error.to_dict()["error"] == "model_unavailable"
    assert text_of(received) == "Half"
    assert [r.final for r in reports(received)] == [False]
    assert reports(received)[0].usage.input_tokens == 25
    assert error.__cause__ is not None  # the SDK's error stays chained for logs
    assert "test-key" not in str(error)
    assert body.closed


async def test_deadline_mid_stream_closes_the_response(anthropic_mock) -> None:
    router, client = anthropic_mock
    body = ChunkedBody(cut_stream(["Slow ", "start"]), hang=True)
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    received, error = await collect_until_error(
        AnthropicProvider(client=client), make_request(deadline=0.2)
    )

    assert type(error) is ModelUnavailable
    assert "deadline" in error.message
    assert text_of(received) == "Slow start"
    assert body.closed


# -- Anthropic: closing and cancellation ----------------------------------------------


async def test_deadline_passing_while_the_consumer_works_is_raised_at_the_next_event(
    anthropic_mock,
) -> None:
    router, client = anthropic_mock
    body = ChunkedBody(text_stream(["one ", "two ", "three"]))
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))
    slept: list[float] = []

    async def consume() -> None:
        async with AnthropicProvider(client=client).stream(make_request(deadline=0.1)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    # The consumer's own wait spans the deadline: it is not cut short.
                    await asyncio.sleep(0.2)
                    slept.append(0.2)

    with pytest.raises(ModelUnavailable, match="deadline"):
        await consume()
    assert slept == [0.2]
    assert body.closed


async def test_deadline_timer_is_gone_after_a_completed_stream(
    anthropic_mock, monkeypatch: pytest.MonkeyPatch
) -> None:
    router, client = anthropic_mock
    router.post(MESSAGES_PATH).mock(return_value=sse_response(text_stream(["done"])))
    loop = asyncio.get_running_loop()
    start = loop.time()
    timers: list[asyncio.TimerHandle] = []
    call_at = loop.call_at

    def recorded(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        handle = call_at(when, callback, *args, **kwargs)
        timers.append(handle)
        return handle

    monkeypatch.setattr(loop, "call_at", recorded)
    await collect(AnthropicProvider(client=client), make_request(deadline=600))
    monkeypatch.undo()

    deadline_timers = [h for h in timers if h.when() >= start + 599]
    assert deadline_timers  # the stream did set its deadline timer
    assert all(h.cancelled() for h in deadline_timers)


async def test_leaving_early_closes_the_response(anthropic_mock) -> None:
    router, client = anthropic_mock
    body = ChunkedBody(text_stream(["one ", "two ", "three ", "four"]))
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))

    async with AnthropicProvider(client=client).stream(make_request()) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                break
        assert not body.closed

    assert body.closed
    assert body.sent < len(body.chunks)


async def test_caller_cancellation_propagates_and_closes(anthropic_mock) -> None:
    router, client = anthropic_mock
    body = ChunkedBody(cut_stream(["first"]), hang=True)
    router.post(MESSAGES_PATH).mock(return_value=sse_response(body))
    first_text = asyncio.Event()

    async def consume() -> None:
        async with AnthropicProvider(client=client).stream(make_request()) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), timeout=5)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert body.closed


async def test_cancellation_while_connecting_is_not_a_deadline(anthropic_mock) -> None:
    router, client = anthropic_mock
    reached = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        reached.set()
        await asyncio.sleep(30)
        raise AssertionError("cancelled before")

    router.post(MESSAGES_PATH).mock(side_effect=slow)
    task = asyncio.create_task(collect(AnthropicProvider(client=client), make_request()))
    await asyncio.wait_for(reached.wait(), timeout=5)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task


# -- Anthropic: count_tokens, credentials, lifecycle ----------------------------------


async def test_count_tokens(anthropic_mock) -> None:
    router, client = anthropic_mock
    route = router.post(COUNT_TOKENS_PATH).mock(return_value=count_tokens_response(1234))

    assert await AnthropicProvider(client=client).count_tokens(make_request()) == 1234

    sent = sent_body(route)
    assert sent["model"] == MODEL
    assert sent["system"][0]["text"] == PACKAGE
    assert sent["messages"] == [{"role": "user", "content": "Please review my function"}]


async def test_count_tokens_errors_are_mapped(anthropic_mock) -> None:
    router, client = anthropic_mock
    router.post(COUNT_TOKENS_PATH).mock(return_value=rate_limit_response(retry_after=3))

    with pytest.raises(RateLimited) as info:
        await AnthropicProvider(client=client).count_tokens(make_request())

    assert info.value.retry_after == 3.0


@pytest.fixture
def no_anthropic_credentials(monkeypatch, tmp_path) -> None:
    """No key in the environment and no SDK profile on disk."""
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CONFIG_DIR",
        "ANTHROPIC_IDENTITY_TOKEN",
        "ANTHROPIC_IDENTITY_TOKEN_FILE",
        "ANTHROPIC_FEDERATION_RULE_ID",
        "ANTHROPIC_ORGANIZATION_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.mark.usefixtures("no_anthropic_credentials")
async def test_missing_credentials_fail_at_first_use() -> None:
    provider = AnthropicProvider()  # building one never fails

    with pytest.raises(ProviderMisconfigured, match="ANTHROPIC_API_KEY"):
        await collect(provider, make_request())
    with pytest.raises(ProviderMisconfigured):
        await provider.count_tokens(make_request())
    await provider.aclose()


@pytest.mark.usefixtures("no_anthropic_credentials")
async def test_a_profile_that_does_not_load_is_misconfigured(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "nowhere"))
    provider = AnthropicProvider()

    with pytest.raises(ProviderMisconfigured, match="could not be loaded"):
        await collect(provider, make_request())


@pytest.mark.usefixtures("no_anthropic_credentials")
async def test_api_key_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    provider = AnthropicProvider()
    client = await provider._ready_client()
    assert client.api_key == "sk-ant-from-env"
    await provider.aclose()


async def test_aclose_closes_only_the_client_it_made(anthropic_mock) -> None:
    _, client = anthropic_mock
    owned = AnthropicProvider(api_key="sk-ant-secret")
    made = await owned._ready_client()
    await owned.aclose()
    assert made.is_closed()
    with pytest.raises(RuntimeError):
        await collect(owned, make_request())

    borrowed = AnthropicProvider(client=client)
    await borrowed.aclose()
    assert not client.is_closed()


def test_repr_never_shows_the_key() -> None:
    assert "sk-ant-secret" not in repr(AnthropicProvider(api_key="sk-ant-secret"))


def test_client_and_api_key_together_are_refused() -> None:
    client = anthropic.AsyncAnthropic(api_key="x")
    with pytest.raises(ValueError, match="client"):
        AnthropicProvider(api_key="y", client=client)


# -- OfflineProvider ------------------------------------------------------------------


async def test_offline_is_deterministic_and_labelled() -> None:
    request = make_request()
    first = text_of(await collect(OfflineProvider(delay=0), request))
    second = text_of(await collect(OfflineProvider(delay=0), request))

    assert first == second
    assert first.startswith(OFFLINE_LABEL)
    assert '"Code reviewer"' in first
    assert "4 words" in first
    assert '"Please review my function"' in first
    assert 60 <= len(first.split()) <= 150
    assert first == OfflineProvider().response_text(request)


async def test_offline_text_depends_on_input_and_seed() -> None:
    base = OfflineProvider(delay=0).response_text(make_request())
    other_input = OfflineProvider(delay=0).response_text(
        make_request(messages=[Message("user", "Something else entirely")])
    )
    texts = {OfflineProvider(seed=str(n)).response_text(make_request()) for n in range(8)}

    assert base != other_input
    assert len(texts) > 1


def test_offline_quotes_the_title_after_front_matter() -> None:
    skill = "---\nname: reviewer\ndescription: Reviews code\n---\nIntro.\n\n# Strict reviewer\n"
    text = OfflineProvider().response_text(make_request(system=skill))
    assert '"Strict reviewer"' in text
    assert "name: reviewer" not in text


async def test_offline_baseline_without_a_package() -> None:
    text = text_of(await collect(OfflineProvider(delay=0), make_request(system=None)))
    assert "No package was used" in text


async def test_offline_usage_matches_what_was_streamed() -> None:
    request = make_request()
    events = await collect(OfflineProvider(delay=0), request)

    first, final = reports(events)
    assert events[0] is first
    assert events[-1] is final
    assert first.final is False
    assert first.usage.input_tokens == approx_request_tokens(request)
    assert final == UsageReport(
        Usage(
            input_tokens=approx_request_tokens(request),
            output_tokens=approx_tokens(text_of(events)),
        ),
        final=True,
        stop_reason="end_turn",
    )


async def test_offline_respects_max_tokens() -> None:
    provider = OfflineProvider(delay=0)
    request = make_request(max_tokens=10)
    events = await collect(provider, request)

    text = text_of(events)
    final = reports(events)[-1]
    assert provider.response_text(request).startswith(text)
    assert len(text) < len(provider.response_text(request))
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == approx_tokens(text) <= 10
    assert approx_tokens(text) >= 9  # cut at the limit, not well before it


async def test_offline_streams_in_word_chunks() -> None:
    provider = OfflineProvider(delay=0.001, chunk_words=3)
    request = make_request()
    deltas = [e for e in await collect(provider, request) if isinstance(e, TextDelta)]

    words = provider.response_text(request).split()
    assert len(deltas) == math.ceil(len(words) / 3)
    assert all(1 <= len(delta.text.split()) <= 3 for delta in deltas)


async def test_offline_pacing_runs_into_the_deadline() -> None:
    # About 40 chunks at 50 ms each cannot fit in 120 ms.
    received, error = await collect_until_error(
        OfflineProvider(delay=0.05), make_request(deadline=0.12)
    )

    assert type(error) is ModelUnavailable
    assert "deadline" in error.message
    assert reports(received)[-1].final is False


async def test_offline_emulates_the_prompt_cache() -> None:
    now = [1000.0]
    provider = OfflineProvider(delay=0, clock=lambda: now[0])
    long_package = "# Big package\n" + "Follow these rules carefully. " * 200
    request = make_request(system=long_package)
    package_tokens = approx_tokens(long_package)
    assert package_tokens >= 1024

    async def final_usage(req: CompletionRequest) -> Usage:
        return reports(await collect(provider, req))[-1].usage

    written = await final_usage(request)
    assert written.cache_creation_input_tokens == package_tokens
    assert written.cache_read_input_tokens == 0
    assert written.total_input_tokens == approx_request_tokens(request)

    now[0] += CACHE_TTL_SECONDS - 1
    read = await final_usage(request)
    assert read.cache_read_input_tokens == package_tokens
    assert read.cache_creation_input_tokens == 0
    assert read.input_tokens == written.input_tokens

    # A read refreshed the entry; it lapses 5 minutes after the last use.
    now[0] += CACHE_TTL_SECONDS - 1
    assert (await final_usage(request)).cache_read_input_tokens == package_tokens
    now[0] += CACHE_TTL_SECONDS
    assert (await final_usage(request)).cache_creation_input_tokens == package_tokens

    other_model = await final_usage(make_request(system=long_package, model="claude-opus-5-5"))
    assert other_model.cache_creation_input_tokens == package_tokens


async def test_offline_short_packages_are_not_cached() -> None:
    provider = OfflineProvider(delay=0)
    for _ in range(2):
        usage = reports(await collect(provider, make_request()))[-1].usage
        assert usage.cache_creation_input_tokens == usage.cache_read_input_tokens == 0


async def test_offline_count_tokens_is_the_approximation() -> None:
    request = make_request()
    assert await OfflineProvider().count_tokens(request) == approx_request_tokens(request)


async def test_offline_simulated_failures() -> None:
    refusing = OfflineProvider(delay=0, fail_with=RateLimited("slow down", retry_after=2))
    with pytest.raises(RateLimited):
        await collect(refusing, make_request())
    assert refusing.calls == 1

    breaking = OfflineProvider(delay=0, fail_with=ModelOverloaded("overloaded"), fail_after=2)
    received, error = await collect_until_error(breaking, make_request())
    assert type(error) is ModelOverloaded
    assert len([e for e in received if isinstance(e, TextDelta)]) == 2
    assert breaking.last_request == make_request()


async def test_offline_leaving_early_is_clean() -> None:
    async with OfflineProvider(delay=0).stream(make_request()) as events:
        async for event in events:
            if isinstance(event, TextDelta):
                break


def test_offline_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="delay"):
        OfflineProvider(delay=-1)
    with pytest.raises(ValueError, match="chunk_words"):
        OfflineProvider(chunk_words=0)


# -- the approximation and the package ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("abc", 1), ("abcd", 2), ("é", 1), ("日本語", 3), ("🙂", 2), ("x" * 3000, 1000)],
)
def test_approx_tokens(text: str, tokens: int) -> None:
    assert approx_tokens(text) == tokens


def test_approx_tokens_errs_high_for_english() -> None:
    # English averages about 4 characters per token; the approximation must not count fewer.
    prose = "The quick brown fox jumps over the lazy dog. " * 20
    assert approx_tokens(prose) >= len(prose) / 4


def test_approx_request_tokens() -> None:
    request = make_request(
        system="abcdef",
        messages=[Message("user", "abc"), Message("assistant", "abcd"), Message("user", "")],
    )
    # 3 per request + system 2 + (1 + 4) + (2 + 4) + (0 + 4)
    assert approx_request_tokens(request) == 3 + 2 + 5 + 6 + 4
    assert approx_request_tokens(make_request(system=None, messages=[])) == 3


def test_package_exports() -> None:
    for name in (
        "AnthropicProvider",
        "OfflineProvider",
        "approx_tokens",
        "approx_request_tokens",
        "CompletionRequest",
        "Message",
        "Provider",
        "ProviderEvent",
        "TextDelta",
        "UsageReport",
    ):
        assert name in providers.__all__
        assert getattr(providers, name) is not None
