"""The Anthropic provider, on the official async SDK.

One call is one streamed ``messages.create``: the package text goes as a
system block marked for prompt caching, the usage Anthropic reports (cache
writes and reads included) is passed on as it arrives, and the whole call
runs under the request's overall deadline, because the SDK's own timeout only
bounds each read. SDK errors, whether raised when the request is sent or in
the middle of the stream, become ``PlaygroundError`` subclasses in one place,
:func:`_to_playground_error`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Collection, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import anthropic
import httpx2 as _http  # the transport of anthropic >= 2
from anthropic import types as atypes

from .._deadline import DeadlinePassed, StreamDeadline
from ..errors import (
    InvalidRequest,
    ModelOverloaded,
    ModelUnavailable,
    PlaygroundError,
    ProviderMisconfigured,
    RateLimited,
)
from ..models import Usage
from .base import CompletionRequest, Message, ProviderEvent, TextDelta, UsageReport

__all__ = ["AnthropicProvider"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_CACHED = atypes.CacheControlEphemeralParam(type="ephemeral")


class AnthropicProvider:
    """Runs completions on Anthropic's Messages API, streamed.

    Args:
        api_key: The API key. None lets the SDK find credentials as it
            always does (``ANTHROPIC_API_KEY`` first).
        base_url: Another API base URL (a proxy or gateway); None for the
            SDK's default (or ``ANTHROPIC_BASE_URL``).
        client: An ``anthropic.AsyncAnthropic`` to use instead of making one.
            It is never closed here: its owner closes it. ``api_key``,
            ``base_url``, ``max_retries`` and ``timeout`` do not apply to it.
        max_retries: SDK retries of the initial request (429, 5xx, 529,
            connection errors). A stream that breaks after it started is
            never retried, as that could bill the generation twice.
        timeout: Seconds the SDK waits for a connection or for the next bytes.
            The overall limit of a call is ``CompletionRequest.deadline``.
        sampling_models: Model ids to send ``CompletionRequest.temperature``
            to. Empty by default, so temperature is never sent: API version
            2026-10-21, which this SDK sends, refuses ``temperature`` on every
            model (a 400, even at its default). Only list models here if
            ``client`` pins ``anthropic-version: 2023-06-01`` and the model
            takes sampling parameters there.

    Credentials are resolved when the provider is first used, not when it is
    built, so an application (or the demo) can build one before a key is
    configured. If the SDK finds none, that first call raises
    ``ProviderMisconfigured``.

    Call :meth:`aclose` (or use ``async with``) to close the client the
    provider made.

    Example:
        ```python
        provider = AnthropicProvider()          # reads ANTHROPIC_API_KEY
        request = CompletionRequest(
            model="claude-sonnet-5-5",
            system=package_text,
            messages=[Message("user", "Review this function")],
            max_tokens=1024,
        )
        async with provider.stream(request) as events:
            async for event in events:
                ...
        await provider.aclose()
        ```
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        client: anthropic.AsyncAnthropic | None = None,
        max_retries: int = 2,
        timeout: float = 60.0,
        sampling_models: Collection[str] = (),
    ) -> None:
        if client is not None and (api_key is not None or base_url is not None):
            raise ValueError("give either client or api_key/base_url, not both")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not timeout > 0:
            raise ValueError("timeout must be > 0")
        self._api_key = api_key
        self._base_url = base_url
        self._max_retries = max_retries
        self._timeout = timeout
        self._client = client
        self._owns_client = client is None
        self._closed = False
        self._sampling_models = frozenset(sampling_models)

    def __repr__(self) -> str:
        # Never the key: reprs end up in logs and tracebacks.
        return f"{type(self).__name__}(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the SDK client this provider made; a client passed in stays open."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.close()

    @asynccontextmanager
    async def stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[AsyncIterator[ProviderEvent]]:
        """Open a streamed completion.

        The context yields an async iterator of events: a ``UsageReport``
        (not final) as soon as Anthropic starts the message, a ``TextDelta``
        per piece of text, and a final ``UsageReport`` with the stop reason.
        Thinking, tool and unknown events are skipped.

        Leaving the context, however it is left, closes the HTTP response, so
        Anthropic stops generating. Caller cancellation propagates unchanged.

        Args:
            request: What to send.

        Raises:
            RateLimited: Anthropic's rate limit, after the SDK's retries.
            ModelOverloaded: A 529, or an ``overloaded_error`` in the stream.
            ModelUnavailable: 5xx, connection failures, timeouts, the deadline
                passing, a broken stream, or a stream that ended before the
                final usage (the text received so far has been yielded).
            InvalidRequest: Anthropic refused the request (400, 404, 413).
            ProviderMisconfigured: No credentials, or Anthropic refused them.
        """
        client = await self._ready_client()
        deadline = _Deadline.start(request.deadline)
        sdk_stream = await deadline.run(
            client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=_messages(request.messages),
                system=_system_blocks(request.system),
                metadata=(
                    atypes.MetadataParam(user_id=request.user_hash)
                    if request.user_hash is not None
                    else anthropic.omit
                ),
                extra_body=self._sampling(request),
                stream=True,
            )
        )
        logger.debug("anthropic stream opened: model=%s", request.model)
        events = self._events(sdk_stream, deadline, request.model)
        try:
            yield events
        finally:
            deadline.close()
            try:
                await events.aclose()
            finally:
                await _close_quietly(sdk_stream)

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        """Count the input tokens of ``request`` with Anthropic's count endpoint.

        The endpoint is free but rate limited on its own, and gives an
        estimate. Errors are raised, mapped as for :meth:`stream` (a 404 for
        an unknown model is ``InvalidRequest``); callers that only want a
        better estimate treat any error as "unknown" and approximate.

        Args:
            request: The request whose input to count (system prompt included).

        Returns:
            The input tokens; never None from this provider.
        """
        client = await self._ready_client()
        deadline = _Deadline.start(request.deadline)
        result = await deadline.run(
            client.messages.count_tokens(
                model=request.model,
                messages=_messages(request.messages),
                system=_system_blocks(request.system),
            )
        )
        return result.input_tokens

    # -- internals ----------------------------------------------------------------

    async def _ready_client(self) -> anthropic.AsyncAnthropic:
        if self._closed:
            raise RuntimeError("this AnthropicProvider is closed")
        if self._client is not None:
            return self._client
        try:
            client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self._base_url,
                max_retries=self._max_retries,
                timeout=self._timeout,
            )
        except anthropic.CredentialsError as exc:
            # A configured profile (ANTHROPIC_PROFILE, ANTHROPIC_CONFIG_DIR) that
            # does not load.
            raise _credentials_failure(exc) from exc
        # The SDK only notices missing credentials when it builds the first
        # request, as a bare TypeError; say it plainly instead.
        credentials = (
            client.api_key,
            getattr(client, "auth_token", None),
            getattr(client, "credentials", None),
        )
        if all(credential is None for credential in credentials):
            await client.close()
            raise ProviderMisconfigured(
                "no Anthropic credentials: pass api_key or set ANTHROPIC_API_KEY"
            )
        self._client = client
        return client

    def _sampling(self, request: CompletionRequest) -> dict[str, Any] | None:
        if request.temperature is None:
            return None
        if request.model not in self._sampling_models:
            # Sending it would fail the whole run with a 400; the model's own
            # sampling is the documented fallback.
            logger.debug("temperature left out for %s", request.model)
            return None
        # The SDK no longer has a typed parameter for it (API 2026-10-21).
        return {"temperature": request.temperature}

    async def _events(
        self,
        sdk_stream: anthropic.AsyncStream[atypes.RawMessageStreamEvent],
        deadline: _Deadline,
        model: str,
    ) -> AsyncGenerator[ProviderEvent, None]:
        started: Usage | None = None
        finished = False
        while True:
            try:
                event = await deadline.next_event(sdk_stream)
            except StopAsyncIteration:
                break
            # Dispatch on the wire type, not the class: the SDK builds events it
            # does not know (new types may appear) as one of its known classes.
            kind = getattr(event, "type", None)
            if kind == "message_start":
                started = _start_usage(getattr(getattr(event, "message", None), "usage", None))
                yield UsageReport(started)
            elif kind == "content_block_delta":
                # Only visible text; thinking, signatures and tool input are not
                # part of the response (their tokens are in output_tokens).
                delta = getattr(event, "delta", None)
                text = getattr(delta, "text", None)
                if getattr(delta, "type", None) == "text_delta" and isinstance(text, str) and text:
                    yield TextDelta(text)
            elif kind == "message_delta":
                finished = True
                usage = _merge_usage(started, getattr(event, "usage", None))
                stop_reason = getattr(getattr(event, "delta", None), "stop_reason", None)
                stop_reason = stop_reason if isinstance(stop_reason, str) else None
                logger.debug(
                    "anthropic stream finished: model=%s stop_reason=%s usage=%s",
                    model,
                    stop_reason,
                    usage.model_dump(),
                )
                yield UsageReport(usage, final=True, stop_reason=stop_reason)
        if not finished:
            # The connection ended cleanly but early (a proxy cut it): the text
            # is incomplete and the real output count never came. Report it as
            # the failure it is; what arrived has been yielded and counts.
            logger.debug("anthropic stream ended before message_delta: model=%s", model)
            raise ModelUnavailable(
                "the stream from Anthropic ended before the response was complete"
            )


class _Deadline:
    """An absolute deadline on the event loop's clock, shared by every step of one call."""

    __slots__ = ("_stream",)

    def __init__(self, stream: StreamDeadline) -> None:
        self._stream = stream

    @classmethod
    def start(cls, seconds: float) -> _Deadline:
        return cls(StreamDeadline(seconds))

    async def run(self, awaitable: Awaitable[_T]) -> _T:
        """Await ``awaitable`` before the deadline, mapping SDK errors to ours.

        Each step gets its own timeout scope rather than one around the whole
        stream: a scope must not span the ``yield`` to the consumer, or the
        deadline would cancel the consumer's code instead of ours.
        """
        scope = asyncio.timeout_at(self._stream.at)
        try:
            async with scope:
                return await awaitable
        except Exception as exc:
            # Only our own scope's expiry is the deadline; a caller's
            # cancellation is a BaseException and passes through untouched.
            if isinstance(exc, TimeoutError) and scope.expired():
                raise self._passed() from exc
            mapped = _mapped(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def next_event(self, sdk_stream: anthropic.AsyncStream[_T]) -> _T:
        """The stream's next event before the deadline, as ``run`` would await it.

        One timer for all the stream's events (see ``StreamDeadline``).

        Raises:
            StopAsyncIteration: The stream ended.
        """
        try:
            return await self._stream.next(sdk_stream)
        except StopAsyncIteration:
            raise
        except DeadlinePassed as exc:
            raise self._passed() from exc
        except Exception as exc:
            mapped = _mapped(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def close(self) -> None:
        """Drop the stream's timer."""
        self._stream.close()

    def _passed(self) -> ModelUnavailable:
        seconds = self._stream.seconds
        logger.debug("anthropic call passed its deadline of %s s", seconds)
        return ModelUnavailable(f"the model call passed its deadline of {seconds:g} s")


def _mapped(exc: Exception) -> Exception:
    """``exc`` as a ``PlaygroundError`` where it maps to one, else unchanged."""
    mapped = _to_playground_error(exc)
    if mapped is None or mapped is exc:
        return exc
    logger.debug("anthropic error %s mapped to %s", type(exc).__name__, mapped.code)
    return mapped


def _to_playground_error(exc: BaseException) -> PlaygroundError | None:
    """Map an exception from the SDK or its HTTP client to a ``PlaygroundError``.

    The one place where Anthropic's errors get their meaning here, for errors
    when the request is sent and in the middle of a stream alike. Returns None
    for exceptions that are not about the call (bugs), to be re-raised as they are.
    """
    if isinstance(exc, PlaygroundError):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        return _from_status_error(exc)
    if isinstance(exc, anthropic.CredentialsError):
        return _credentials_failure(exc)
    if isinstance(exc, anthropic.APITimeoutError):
        return ModelUnavailable("the request to Anthropic timed out")
    if isinstance(exc, anthropic.APIConnectionError):
        return ModelUnavailable("could not connect to Anthropic")
    if isinstance(exc, anthropic.APIResponseValidationError | json.JSONDecodeError):
        return ModelUnavailable("Anthropic sent a response that could not be read")
    if isinstance(exc, _http.TimeoutException):
        return ModelUnavailable("the stream from Anthropic timed out")
    if isinstance(exc, _http.TransportError | _http.StreamError):
        # Mid-stream the SDK passes transport errors through unwrapped.
        return ModelUnavailable(f"the stream from Anthropic broke ({type(exc).__name__})")
    return None


def _credentials_failure(exc: anthropic.CredentialsError) -> ProviderMisconfigured:
    # The SDK found a credentials source (a profile, federation settings) but
    # could not load it; its message names files and settings, never secrets.
    return ProviderMisconfigured(f"Anthropic credentials could not be loaded: {exc}")


def _from_status_error(exc: anthropic.APIStatusError) -> PlaygroundError:
    status = exc.status_code
    kind = _error_field(exc.body, "type")
    detail = _error_field(exc.body, "message") or kind or f"HTTP {status}"
    # An `error` event inside a stream arrives as a status-200 APIStatusError:
    # its kind is only on the body, so check the kind as well as the class.
    if isinstance(exc, anthropic.RateLimitError) or kind == "rate_limit_error":
        return RateLimited(
            f"Anthropic's rate limit was reached: {detail}",
            retry_after=_retry_after(exc.response.headers),
        )
    if status == 529 or kind == "overloaded_error":
        return ModelOverloaded(f"Anthropic is overloaded: {detail}")
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        # A fixed message: whatever was sent as a key must never be echoed.
        return ProviderMisconfigured(
            f"Anthropic refused the credentials ({kind or status}): check the API key "
            "and its workspace permissions"
        )
    if status == 402 or kind == "billing_error":
        return ProviderMisconfigured(f"Anthropic refused to bill the account: {detail}")
    if status == 404 or kind == "not_found_error":
        return InvalidRequest(
            f"Anthropic does not know this model: {detail} (is the model catalog out of date?)"
        )
    if status in (400, 413, 422) or kind in ("invalid_request_error", "request_too_large"):
        return InvalidRequest(f"Anthropic refused the request: {detail}")
    # 5xx, `api_error` in a stream, 408/409 after retries, anything new.
    return ModelUnavailable(f"Anthropic failed ({kind or status}): {detail}")


def _error_field(body: object, name: str) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    value = error.get(name) if isinstance(error, dict) else None
    return value if isinstance(value, str) and value else None


def _retry_after(headers: _http.Headers) -> float | None:
    """Seconds from ``retry-after`` (what Anthropic sends), else ``retry-after-ms``."""
    for name, scale in (("retry-after", 1.0), ("retry-after-ms", 1000.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) / scale
        except ValueError:
            continue  # an HTTP date: rare enough to leave the wait unknown
        if seconds >= 0 and seconds != float("inf"):
            return seconds
    return None


def _messages(messages: Sequence[Message]) -> list[atypes.MessageParam]:
    return [
        atypes.UserMessageParam(role="user", content=message.content)
        if message.role == "user"
        else atypes.AssistantMessageParam(role="assistant", content=message.content)
        for message in messages
    ]


def _system_blocks(system: str | None) -> list[atypes.TextBlockParam] | anthropic.Omit:
    if not system:
        return anthropic.omit
    # The package text is the stable prefix of every run of that package:
    # mark it so repeated runs read it from the cache at a tenth of the price.
    return [atypes.TextBlockParam(type="text", text=system, cache_control=_CACHED)]


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _start_usage(usage: object) -> Usage:
    return Usage(
        input_tokens=_count(getattr(usage, "input_tokens", None)) or 0,
        # message_start's output count is a placeholder (usually 1).
        output_tokens=_count(getattr(usage, "output_tokens", None)) or 0,
        cache_creation_input_tokens=_count(getattr(usage, "cache_creation_input_tokens", None))
        or 0,
        cache_read_input_tokens=_count(getattr(usage, "cache_read_input_tokens", None)) or 0,
    )


def _merge_usage(started: Usage | None, delta: object) -> Usage:
    """Combine message_start's usage with message_delta's cumulative one.

    message_delta always carries the output count; newer API versions also
    repeat the input counts there (cumulative, so they win), older ones leave
    them out and message_start's stand.
    """
    base = started or Usage()
    fields = base.model_dump()
    for name in fields:
        value = _count(getattr(delta, name, None))
        if value is not None:
            fields[name] = value
    return Usage(**fields)


async def _close_quietly(
    sdk_stream: anthropic.AsyncStream[atypes.RawMessageStreamEvent],
) -> None:
    try:
        await sdk_stream.close()
    except Exception:
        # Closing is best effort; an error here must not hide the one (if any)
        # that ended the stream.
        logger.debug("closing the anthropic stream failed", exc_info=True)
