"""Recorded-shape Anthropic responses, and a respx bridge for the real SDK.

The bodies follow what the Messages API sends when ``stream=True``: one
``event:``/``data:`` pair per Server-Sent Event, a blank line after each,
``ping`` events in between, and ``error`` events that can arrive at any time.

``anthropic`` 2.x talks HTTP through ``httpx2``, which respx does not patch.
:class:`RespxTransport` closes the gap: an ``httpx2`` transport that hands each
request to a respx router (so routes, side effects and recorded calls work as
usual) and streams the router's ``httpx`` response back chunk by chunk,
translating ``httpx`` exceptions to their ``httpx2`` twins. Use
:func:`mocked_anthropic` to get a router and a real ``AsyncAnthropic`` wired to it::

    async with mocked_anthropic() as (router, client):
        router.post(MESSAGES_PATH).mock(return_value=sse_response(text_stream(["Hi"])))
        provider = AnthropicProvider(client=client)
        ...
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import httpx
import httpx2
import respx

__all__ = [
    "API_BASE",
    "COUNT_TOKENS_PATH",
    "MESSAGES_PATH",
    "SSE_HEADERS",
    "ChunkedBody",
    "RespxTransport",
    "count_tokens_response",
    "cut_stream",
    "error_event_stream",
    "error_response",
    "mocked_anthropic",
    "overloaded_response",
    "rate_limit_response",
    "sse_event",
    "sse_response",
    "text_stream",
]

API_BASE = "https://api.anthropic.com"
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}

DEFAULT_MODEL = "claude-haiku-4-5"


# -- SSE bodies -----------------------------------------------------------------------


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event as Anthropic writes it: ``event:``, ``data:``, a blank line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _message_start(*, model: str, input_tokens: int, cache_creation: int, cache_read: int) -> bytes:
    return sse_event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_creation_input_tokens": cache_creation,
                    "cache_read_input_tokens": cache_read,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": cache_creation,
                        "ephemeral_1h_input_tokens": 0,
                    },
                    # The placeholder output count message_start always carries.
                    "output_tokens": 1,
                    "service_tier": "standard",
                },
            },
        },
    )


def _text_block(index: int, chunks: Sequence[str]) -> list[bytes]:
    events = [
        sse_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            },
        )
    ]
    for n, chunk in enumerate(chunks):
        events.append(
            sse_event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "text_delta", "text": chunk},
                },
            )
        )
        if n == 0:
            events.append(sse_event("ping", {"type": "ping"}))
    events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def _thinking_block(index: int, thinking: str) -> list[bytes]:
    return [
        sse_event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        sse_event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "thinking_delta", "thinking": thinking},
            },
        ),
        sse_event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"},
            },
        ),
        sse_event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def text_stream(
    chunks: Sequence[str],
    *,
    model: str = DEFAULT_MODEL,
    input_tokens: int = 25,
    output_tokens: int = 15,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    stop_reason: str = "end_turn",
    delta_has_input_usage: bool = True,
    thinking: str | None = None,
    extra_events: Iterable[bytes] = (),
) -> list[bytes]:
    """A complete streamed message whose text is ``"".join(chunks)``.

    Args:
        chunks: The text deltas, in order.
        model: The model id echoed in ``message_start``.
        input_tokens: Base input tokens (``message_start`` and, by default,
            ``message_delta``).
        output_tokens: The final output count, in ``message_delta``.
        cache_creation_input_tokens: Tokens written to the prompt cache.
        cache_read_input_tokens: Tokens read from the prompt cache (a cache hit).
        stop_reason: ``message_delta``'s stop reason.
        delta_has_input_usage: True for current API versions, which repeat the
            cumulative input counts in ``message_delta``; False for the older
            shape that carries only ``output_tokens`` there.
        thinking: If given, a thinking block (with a signature) comes first.
        extra_events: Events inserted right after ``message_start`` (for
            example an unknown event type).

    Returns:
        The body as a list of SSE events (bytes), one chunk per event.
    """
    events = [
        _message_start(
            model=model,
            input_tokens=input_tokens,
            cache_creation=cache_creation_input_tokens,
            cache_read=cache_read_input_tokens,
        ),
        *extra_events,
    ]
    index = 0
    if thinking is not None:
        events += _thinking_block(index, thinking)
        index += 1
    events += _text_block(index, chunks)
    usage: dict[str, Any] = {"output_tokens": output_tokens}
    if delta_has_input_usage:
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
            **usage,
        }
    events.append(
        sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        )
    )
    events.append(sse_event("message_stop", {"type": "message_stop"}))
    return events


def error_event_stream(
    chunks: Sequence[str],
    *,
    error_type: str = "overloaded_error",
    message: str = "Overloaded",
    model: str = DEFAULT_MODEL,
    input_tokens: int = 25,
) -> list[bytes]:
    """A stream that starts, sends ``chunks`` as text, then an ``error`` event.

    The HTTP status stays 200 (the error arrives after the headers), as when
    Anthropic overloads in the middle of a response.
    """
    events = [
        _message_start(model=model, input_tokens=input_tokens, cache_creation=0, cache_read=0)
    ]
    events += _text_block(0, chunks)[:-1]  # the block never stops
    events.append(
        sse_event("error", {"type": "error", "error": {"type": error_type, "message": message}})
    )
    return events


def cut_stream(
    chunks: Sequence[str], *, model: str = DEFAULT_MODEL, input_tokens: int = 25
) -> list[bytes]:
    """A stream cut off after ``chunks``: no ``content_block_stop``, no
    ``message_delta`` (so the real output count never arrives), no ``message_stop``."""
    events = [
        _message_start(model=model, input_tokens=input_tokens, cache_creation=0, cache_read=0)
    ]
    events += _text_block(0, chunks)[:-1]
    return events


# -- responses ------------------------------------------------------------------------


class ChunkedBody(httpx.AsyncByteStream):
    """A response body sent chunk by chunk, that records being closed.

    Args:
        chunks: The body's chunks (for SSE, one event each).
        delay: Seconds to wait before each chunk (a slow model).
        raise_at_end: An exception raised after the last chunk (a broken
            connection: ``httpx.RemoteProtocolError``, ``httpx.ReadTimeout``).
        hang: Never end after the last chunk (a stream that stalls).

    Attributes:
        closed: True once the client closed the response.
        sent: Chunks handed out so far.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        delay: float = 0.0,
        raise_at_end: Exception | None = None,
        hang: bool = False,
    ) -> None:
        self.chunks = list(chunks)
        self.delay = delay
        self.raise_at_end = raise_at_end
        self.hang = hang
        self.closed = False
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            if self.delay:
                await asyncio.sleep(self.delay)
            self.sent += 1
            yield chunk
        if self.raise_at_end is not None:
            raise self.raise_at_end
        if self.hang:
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


def sse_response(
    body: Sequence[bytes] | ChunkedBody, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A 200 ``text/event-stream`` response streaming ``body`` (events or a ``ChunkedBody``)."""
    stream = body if isinstance(body, ChunkedBody) else ChunkedBody(body)
    return httpx.Response(
        200,
        headers={**SSE_HEADERS, "request-id": "req_011CTestStream", **(headers or {})},
        stream=stream,
    )


def error_response(
    status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A JSON error response as Anthropic sends it: ``{"type": "error", "error": {...}}``."""
    return httpx.Response(
        status,
        headers={"request-id": "req_011CTestError", **(headers or {})},
        json={
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": "req_011CTestError",
        },
    )


def rate_limit_response(*, retry_after: int = 20, retry_after_ms: int | None = 1) -> httpx.Response:
    """A 429 ``rate_limit_error`` with ``retry-after`` (seconds).

    ``retry-after-ms`` (default 1 ms) is what the SDK reads first to time its
    own retry, so tests that let the SDK retry do not sleep; pass None to
    leave it out.
    """
    headers = {"retry-after": str(retry_after)}
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    return error_response(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        headers=headers,
    )


def overloaded_response() -> httpx.Response:
    """A 529 ``overloaded_error`` (with ``retry-after-ms: 1`` so SDK retries do not sleep)."""
    return error_response(529, "overloaded_error", "Overloaded", headers={"retry-after-ms": "1"})


def count_tokens_response(input_tokens: int) -> httpx.Response:
    """The count-tokens endpoint's answer."""
    return httpx.Response(200, json={"input_tokens": input_tokens})


# -- the bridge -----------------------------------------------------------------------


def _to_httpx2_error(exc: httpx.HTTPError, request: httpx2.Request) -> Exception:
    twin = getattr(httpx2, type(exc).__name__, None)
    if isinstance(twin, type) and issubclass(twin, httpx2.RequestError):
        return twin(str(exc), request=request)
    if isinstance(twin, type) and issubclass(twin, httpx2.HTTPError):
        return twin(str(exc))
    return httpx2.TransportError(str(exc), request=request)


class _BridgedBody(httpx2.AsyncByteStream):
    def __init__(self, response: httpx.Response, request: httpx2.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            raise _to_httpx2_error(exc, self._request) from exc

    async def aclose(self) -> None:
        await self._response.aclose()


class RespxTransport(httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport that answers from a respx router.

    Requests are copied to ``httpx.Request`` objects and resolved by
    ``router`` (recorded in ``router.calls`` and each route's ``calls``);
    the response streams lazily, so slow, cut or failing bodies behave as on
    a real connection, and closing the ``httpx2`` response closes the mock's.
    """

    def __init__(self, router: respx.Router) -> None:
        self.router = router

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        content = await request.aread()
        mirrored = httpx.Request(
            request.method, str(request.url), headers=list(request.headers.raw), content=content
        )
        try:
            response = await self.router.async_handler(mirrored)
        except httpx.HTTPError as exc:
            raise _to_httpx2_error(exc, request) from exc
        try:
            # respx reads plain (non-streamed) bodies, such as JSON errors, itself.
            content = response.content
        except httpx.ResponseNotRead:
            return httpx2.Response(
                response.status_code,
                headers=list(response.headers.raw),
                stream=_BridgedBody(response, request),
            )
        return httpx2.Response(
            response.status_code, headers=list(response.headers.raw), content=content
        )


@asynccontextmanager
async def mocked_anthropic(
    *, max_retries: int = 0, read_timeout: float = 10.0
) -> AsyncIterator[tuple[respx.Router, anthropic.AsyncAnthropic]]:
    """A respx router and a real ``AsyncAnthropic`` that sends to it.

    The client has the key ``"test-key"``, base URL ``API_BASE``, and is
    closed on exit. Unmatched requests fail the test (``assert_all_mocked``).

    Args:
        max_retries: The SDK's retries (0 by default, so every response counts).
        read_timeout: The SDK's per-read timeout (seconds).
    """
    router = respx.Router(base_url=API_BASE, assert_all_called=False)
    http_client = httpx2.AsyncClient(transport=RespxTransport(router))
    client = anthropic.AsyncAnthropic(
        api_key="test-key",
        base_url=API_BASE,
        http_client=http_client,
        max_retries=max_retries,
        timeout=read_timeout,
    )
    try:
        yield router, client
    finally:
        await client.close()
        await http_client.aclose()
