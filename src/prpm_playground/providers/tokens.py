"""A local, deliberately generous token approximation (public: a part of the provider port).

The estimator and the runner use it to price and charge runs whose provider
gave no count; providers without a tokenizer of their own report it.

No exact local tokenizer exists for current Claude models, and the provider's
count endpoint can be rate limited or down. The estimator falls back to this
approximation, and a run holds credits from it, so it must not under-count:
a hold that is too small cannot be captured in full (captures never exceed
what was held). Over-counting only holds a little more for the length of a
run, and the rest returns at capture.

The rule is one token per started 3 bytes of UTF-8. English prose averages
about 4 characters per token, so English is over-counted by roughly a third
(the original PRPM estimator used ``chars / 4 * 1.3``, which is about the
same). Counting bytes rather than characters keeps the rule safe for text
that tokenizes densely: code and punctuation run near 3 characters per token,
and non-Latin scripts use 2 to 4 bytes per character, near a token each.
"""

from __future__ import annotations

from .base import CompletionRequest

__all__ = [
    "BYTES_PER_TOKEN",
    "MESSAGE_OVERHEAD_TOKENS",
    "REQUEST_OVERHEAD_TOKENS",
    "approx_request_tokens",
    "approx_tokens",
]

BYTES_PER_TOKEN = 3
"""UTF-8 bytes per token assumed by :func:`approx_tokens`."""

MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens assumed for each message's role markers and separators."""

REQUEST_OVERHEAD_TOKENS = 3
"""Tokens assumed once per request (the start of the assistant's turn)."""


def approx_tokens(text: str) -> int:
    """Approximate the tokens of ``text``, erring high.

    Args:
        text: Any text.

    Returns:
        ``ceil(utf8_bytes / 3)``; 0 for the empty string.
    """
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def approx_request_tokens(request: CompletionRequest) -> int:
    """Approximate the input tokens of ``request``, erring high.

    The system prompt, each message plus ``MESSAGE_OVERHEAD_TOKENS``, and
    ``REQUEST_OVERHEAD_TOKENS`` once.

    Args:
        request: The completion request.

    Returns:
        The approximate input tokens, system prompt included.
    """
    total = REQUEST_OVERHEAD_TOKENS
    if request.system:
        total += approx_tokens(request.system)
    for message in request.messages:
        total += approx_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS
    return total
