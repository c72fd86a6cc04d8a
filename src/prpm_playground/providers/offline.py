"""The offline provider: a deterministic stand-in for a model, for demos and tests.

It calls nothing. Its response is labelled as offline, built from the package
and the user's input, streamed a few words at a time at a readable pace, and
its usage follows the same rules a real call would: input counted with the
local approximation, the package written to (then read from) an emulated
prompt cache, output counted from the text actually streamed, ``max_tokens``
respected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager

from ..errors import ModelUnavailable, PlaygroundError
from ..models import Usage
from .base import CompletionRequest, ProviderEvent, TextDelta, UsageReport
from .tokens import BYTES_PER_TOKEN, approx_request_tokens, approx_tokens

__all__ = ["OFFLINE_LABEL", "OfflineProvider"]

logger = logging.getLogger(__name__)

OFFLINE_LABEL = "[offline demo response — no model was called]"
"""The first line of every offline response."""

CACHE_MIN_TOKENS = 1024
"""Smallest system prompt the emulated cache stores, like Anthropic's smallest minimum."""

CACHE_TTL_SECONDS = 300.0
"""How long an emulated cache entry lives after its last write or read (5 minutes)."""

_CLOSERS = (
    "A real model would read everything above and answer your message in full.",
    "Connect a model provider to see how a package actually changes the answer.",
    "The text here is assembled locally, so it says nothing about the package's quality.",
    "Everything else in the playground, from credits to sessions, works as it would live.",
)
_SUGGESTIONS = (
    "Try a longer message to see the token counts grow.",
    "Run the same input without the package to compare the two.",
    "Continue the conversation to see the history counted as input.",
    "Share the session to see how others would view it.",
)
_WORD_AND_SPACE = re.compile(r"\S+\s*")


class OfflineProvider:
    """A provider that answers without a model, deterministically.

    The same request (and seed) always streams the same text. The response
    starts with ``OFFLINE_LABEL``, quotes the package's title (its first
    heading or line) and summarises the last user message, in about 80 to
    130 words.

    Args:
        delay: Seconds to wait before each chunk; 0 streams at once.
        chunk_words: Words per ``TextDelta``.
        seed: Mixed into the choice of wording, to vary responses between
            providers.
        clock: Monotonic seconds, for the emulated prompt cache's lifetime;
            defaults to ``time.monotonic``.
        fail_with: An error to raise instead of answering, to test how a
            host handles provider failures.
        fail_after: With ``fail_with``: 0 raises it when the stream opens
            (as a refused request); n > 0 raises it after n text chunks (a
            stream that breaks midway).

    Attributes:
        fail_with: As above; may be changed between calls.
        fail_after: As above; may be changed between calls.
        calls: Streams opened so far.
        last_request: The last request streamed, or None.

    Example:
        ```python
        provider = OfflineProvider(delay=0)
        async with provider.stream(request) as events:
            text = "".join([e.text async for e in events if isinstance(e, TextDelta)])
        ```
    """

    def __init__(
        self,
        *,
        delay: float = 0.02,
        chunk_words: int = 3,
        seed: str = "",
        clock: Callable[[], float] | None = None,
        fail_with: PlaygroundError | None = None,
        fail_after: int = 0,
    ) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        if chunk_words < 1:
            raise ValueError("chunk_words must be >= 1")
        if fail_after < 0:
            raise ValueError("fail_after must be >= 0")
        self._delay = delay
        self._chunk_words = chunk_words
        self._seed = seed
        self._clock = clock or time.monotonic
        # digest of (model, system) -> monotonic expiry of its cache entry
        self._cache: dict[str, float] = {}
        self.fail_with = fail_with
        self.fail_after = fail_after
        self.calls = 0
        self.last_request: CompletionRequest | None = None

    @asynccontextmanager
    async def stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[AsyncIterator[ProviderEvent]]:
        """Stream the offline response to ``request``.

        Yields a ``UsageReport`` (not final) first, then the text in chunks of
        ``chunk_words`` words, then the final ``UsageReport`` with stop reason
        ``end_turn``, or ``max_tokens`` if the response was cut to fit.

        Raises:
            ModelUnavailable: The request's deadline passed while streaming.
            PlaygroundError: ``fail_with``, when set.
        """
        self.calls += 1
        self.last_request = request
        failure, fail_after = self.fail_with, self.fail_after
        if failure is not None and fail_after == 0:
            raise failure
        deadline_at = asyncio.get_running_loop().time() + request.deadline
        text, stop_reason = self._response(request)
        usage = self._input_usage(request)
        logger.debug("offline stream opened: model=%s", request.model)
        events = self._events(request, text, stop_reason, usage, deadline_at, failure, fail_after)
        try:
            yield events
        finally:
            await events.aclose()

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        """Return the local approximation of the input tokens (what ``stream`` reports)."""
        return approx_request_tokens(request)

    def response_text(self, request: CompletionRequest) -> str:
        """The full text ``stream`` would send for ``request`` (before any ``max_tokens`` cut)."""
        return self._compose(request)

    # -- internals ----------------------------------------------------------------

    async def _events(
        self,
        request: CompletionRequest,
        text: str,
        stop_reason: str,
        usage: Usage,
        deadline_at: float,
        failure: PlaygroundError | None,
        fail_after: int,
    ) -> AsyncGenerator[ProviderEvent, None]:
        # Like Anthropic's message_start: input known, output a placeholder.
        yield UsageReport(usage.model_copy(update={"output_tokens": 1}))
        sent = 0
        for index, chunk in enumerate(self._chunks(text)):
            if failure is not None and index == fail_after:
                raise failure
            await self._pause(deadline_at, request.deadline)
            sent += len(chunk)
            yield TextDelta(chunk)
        final = usage.model_copy(update={"output_tokens": approx_tokens(text[:sent])})
        yield UsageReport(final, final=True, stop_reason=stop_reason)

    async def _pause(self, deadline_at: float, seconds: float) -> None:
        scope = asyncio.timeout_at(deadline_at)
        try:
            async with scope:
                # Even with no delay, yield to the loop as a network read would.
                await asyncio.sleep(self._delay)
        except TimeoutError as exc:
            if scope.expired():
                raise ModelUnavailable(
                    f"the model call passed its deadline of {seconds:g} s"
                ) from exc
            raise

    def _chunks(self, text: str) -> list[str]:
        words = _WORD_AND_SPACE.findall(text)
        size = self._chunk_words
        return ["".join(words[i : i + size]) for i in range(0, len(words), size)]

    def _response(self, request: CompletionRequest) -> tuple[str, str]:
        text = self._compose(request)
        if approx_tokens(text) <= request.max_tokens:
            return text, "end_turn"
        # Keep the longest prefix whose approximate count fits max_tokens; a
        # character cut in half at the byte budget is dropped whole.
        budget = request.max_tokens * BYTES_PER_TOKEN
        return text.encode()[:budget].decode(errors="ignore"), "max_tokens"

    def _compose(self, request: CompletionRequest) -> str:
        system = request.system or ""
        user_turns = [m.content for m in request.messages if m.role == "user"]
        last_input = user_turns[-1] if user_turns else ""
        digest = hashlib.sha256(
            "\0".join([self._seed, request.model, system, last_input]).encode("utf-8")
        ).digest()

        if system.strip():
            package = (
                f'The package "{_first_line(system)}" would shape a real answer with its '
                "instructions."
            )
        else:
            package = "No package was used: this is a baseline run without a system prompt."
        words = last_input.split()
        if words:
            opening = " ".join(words[:8]) + (" …" if len(words) > 8 else "")
            summary = (
                f"Your message has {len(words)} word{'s' if len(words) != 1 else ''} "
                f'and begins "{opening}".'
            )
        else:
            summary = "Your message is empty."
        sentences = [
            "This reply comes from the offline provider, which runs without an API key so "
            "the playground can be tried end to end.",
            package,
            summary,
            f"This is turn {max(len(user_turns), 1)} of the conversation, "
            f"asked of {request.model}.",
            _CLOSERS[digest[0] % len(_CLOSERS)],
            _SUGGESTIONS[digest[1] % len(_SUGGESTIONS)],
            f"Reference {digest.hex()[:8]}.",
        ]
        return OFFLINE_LABEL + "\n\n" + " ".join(sentences)

    def _input_usage(self, request: CompletionRequest) -> Usage:
        total = approx_request_tokens(request)
        system_tokens = approx_tokens(request.system) if request.system else 0
        if system_tokens < CACHE_MIN_TOKENS or request.system is None:
            return Usage(input_tokens=total)
        now = self._clock()
        # Forget lapsed entries so a long-running demo does not grow without bound.
        for key in [key for key, expires in self._cache.items() if expires <= now]:
            del self._cache[key]
        # Anthropic's cache is per model; the key is the cached prefix itself.
        key = hashlib.sha256(f"{request.model}\0{request.system}".encode()).hexdigest()
        hit = key in self._cache
        # A read refreshes the entry's lifetime, as Anthropic's does.
        self._cache[key] = now + CACHE_TTL_SECONDS
        if hit:
            return Usage(input_tokens=total - system_tokens, cache_read_input_tokens=system_tokens)
        return Usage(input_tokens=total - system_tokens, cache_creation_input_tokens=system_tokens)


def _first_line(text: str) -> str:
    """The package's title: its first Markdown heading, else its first line with
    words, skipping YAML front matter; at most 12 words."""
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":
        # Skills and agents open with front matter; the title comes after it.
        closing = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), 0)
        lines = lines[closing + 1 :] or lines
    candidates = [line.strip() for line in lines]
    headings = [line for line in candidates if line.startswith("#")]
    for line in headings + candidates:
        title = line.lstrip("#").strip()
        if any(char.isalnum() for char in title):
            words = title.split()
            return " ".join(words[:12]) + (" …" if len(words) > 12 else "")
    return ""
