"""Model providers: where runs are sent (Anthropic, or offline for demos and tests)."""

import typing

from .. import _lazy
from .base import (
    CompletionRequest,
    Message,
    Provider,
    ProviderEvent,
    TextDelta,
    UsageReport,
)
from .offline import OfflineProvider
from .tokens import approx_request_tokens, approx_tokens

if typing.TYPE_CHECKING:
    from .anthropic import AnthropicProvider

# The Anthropic SDK loads when the provider is first asked for.
__getattr__, __dir__ = _lazy.lazy_exports(__name__, {".anthropic": ("AnthropicProvider",)})

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
