"""Model providers: where runs are sent (Anthropic, or offline for demos and tests)."""

from .base import (
    CompletionRequest,
    Message,
    Provider,
    ProviderEvent,
    TextDelta,
    UsageReport,
)

__all__ = [
    "CompletionRequest",
    "Message",
    "Provider",
    "ProviderEvent",
    "TextDelta",
    "UsageReport",
]
