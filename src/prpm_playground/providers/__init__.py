"""Model providers: where runs are sent (Anthropic, or offline for demos and tests)."""

from ._approx import approx_request_tokens, approx_tokens
from .anthropic import AnthropicProvider
from .base import (
    CompletionRequest,
    Message,
    Provider,
    ProviderEvent,
    TextDelta,
    UsageReport,
)
from .offline import OfflineProvider

__all__ = [
    "AnthropicProvider",
    "CompletionRequest",
    "Message",
    "OfflineProvider",
    "Provider",
    "ProviderEvent",
    "TextDelta",
    "UsageReport",
    "approx_request_tokens",
    "approx_tokens",
]
