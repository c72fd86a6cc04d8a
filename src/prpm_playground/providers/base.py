"""The provider port: stream one completion, and optionally count its tokens.

Providers know nothing of credits. The runner holds credits before it opens a
stream, prices the usage a provider reports, and settles after the stream
closes, however it closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from ..models import Usage

__all__ = [
    "CompletionRequest",
    "Message",
    "Provider",
    "ProviderEvent",
    "TextDelta",
    "UsageReport",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation."""

    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What to send to the model.

    Attributes:
        model: The provider's model id (already resolved from an alias).
        system: The package text, sent as the system prompt (cacheable); None
            for a run without a prompt.
        messages: The conversation, oldest first, ending with the user's input.
        max_tokens: Most output tokens.
        temperature: Sampling temperature, or None to leave the model's default
            (providers also leave it out for models that take none).
        user_hash: An opaque, stable hash of the user, for the provider's abuse
            detection; never the user id itself.
        deadline: Seconds the whole call may take, first byte to last.
    """

    model: str
    system: str | None
    messages: Sequence[Message]
    max_tokens: int
    temperature: float | None = None
    user_hash: str | None = None
    deadline: float = 600.0


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of response text."""

    text: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Usage as the provider knows it so far.

    Attributes:
        usage: Cumulative token counts. Before ``final``, ``output_tokens`` may
            lag behind the text received (Anthropic's ``message_start``
            carries a placeholder).
        final: True once the provider reported its final count. It is the
            stream's last event that counts: the runner settles the run on it,
            while the stream closes.
        stop_reason: Why the model stopped, with the final report.
    """

    usage: Usage
    final: bool = False
    stop_reason: str | None = None


ProviderEvent = TextDelta | UsageReport
"""What a provider's stream yields."""


class Provider(Protocol):
    """Something that runs completions: Anthropic, or the offline provider.

    Errors are raised as ``PlaygroundError`` subclasses: ``RateLimited``,
    ``ModelOverloaded``, ``ModelUnavailable``, ``InvalidRequest`` and
    ``ProviderMisconfigured``, whether they happen before the first event or
    in the middle of a stream.
    """

    def stream(
        self, request: CompletionRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[ProviderEvent]]:
        """Open a streamed completion.

        Leaving the context closes the upstream connection at once, so a
        cancelled run stops generating (and billing) at the provider.
        """
        ...

    async def count_tokens(self, request: CompletionRequest) -> int | None:
        """Count the input tokens of ``request``, or return None if this provider cannot."""
        ...
