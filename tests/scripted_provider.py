"""A provider that plays a script, for runner tests that need exact control.

It implements the provider port the way a real provider does (an async
context manager around an async iterator, closed on exit), and records what
it was asked and whether its stream was closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from prpm_playground.models import Usage
from prpm_playground.providers.base import (
    CompletionRequest,
    ProviderEvent,
    TextDelta,
    UsageReport,
)

Step = ProviderEvent | BaseException | asyncio.Event


def normal(
    text: str = "Hello from the model.",
    *,
    input_tokens: int = 1000,
    output_tokens: int = 500,
    cache_write: int = 0,
    cache_read: int = 0,
) -> list[Step]:
    """A complete stream: start usage, text in words, final usage."""
    start = Usage(
        input_tokens=input_tokens,
        output_tokens=1,
        cache_creation_input_tokens=cache_write,
        cache_read_input_tokens=cache_read,
    )
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip()
    return [
        UsageReport(start),
        *(TextDelta(w) for w in words),
        UsageReport(
            start.model_copy(update={"output_tokens": output_tokens}),
            final=True,
            stop_reason="end_turn",
        ),
    ]


@dataclass
class ScriptedProvider:
    """Plays ``script`` (a list of steps) for every call; see ``Step``.

    A step that is an exception is raised; an ``asyncio.Event`` is waited for.
    With ``scripts``, the calls play them in turn instead (then ``script``).
    """

    script: Sequence[Step] = field(default_factory=normal)
    scripts: list[Sequence[Step]] = field(default_factory=list)
    count: int | None = None
    count_error: BaseException | None = None
    count_delay: float = 0.0
    requests: list[CompletionRequest] = field(default_factory=list)
    count_calls: int = 0
    closed: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    _opened: asyncio.Event = field(default_factory=asyncio.Event)

    @asynccontextmanager
    async def stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[AsyncIterator[ProviderEvent]]:
        self.requests.append(request)
        self.reached.set()
        self._opened.set()
        script = self.scripts.pop(0) if self.scripts else self.script
        try:
            yield self._events(script)
        finally:
            self.closed += 1

    async def opened(self, streams: int) -> None:
        """Wait until ``streams`` streams have been opened."""
        while len(self.requests) < streams:
            self._opened.clear()
            await self._opened.wait()

    async def _events(self, script: Sequence[Step]) -> AsyncIterator[ProviderEvent]:
        for step in script:
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, asyncio.Event):
                await step.wait()
                continue
            await asyncio.sleep(0)
            yield step

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        self.count_calls += 1
        if self.count_delay:
            await asyncio.sleep(self.count_delay)
        if self.count_error is not None:
            raise self.count_error
        return self.count
