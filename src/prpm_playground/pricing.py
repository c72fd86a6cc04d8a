"""Pricing: from tokens to credits, in ``Decimal``, rounded up once.

``TokenPricing`` (the default) charges what the tokens cost at the model's
list prices, plus the policy's margin, in credits of ``usd_per_credit``.
``TieredPricing`` reproduces the original PRPM+ formula for hosts who want
its numbers. Both charge nothing for a run that consumed no tokens, and at
least ``policy.min_charge`` for one that did.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Protocol

from .catalog import ModelInfo
from .config import CreditPolicy
from .errors import InvalidRequest
from .models import Usage

__all__ = ["Pricing", "TieredPricing", "TokenPricing", "usd_cost"]

_MILLION = Decimal(1_000_000)


class Pricing(Protocol):
    """Turns a model's usage into credits."""

    def credits(self, model: ModelInfo, usage: Usage, policy: CreditPolicy) -> int:
        """Credits to charge for ``usage`` on ``model`` (0 when no tokens were used)."""
        ...


def usd_cost(model: ModelInfo, usage: Usage) -> Decimal:
    """What ``usage`` costs at ``model``'s list prices, in USD, unrounded.

    Cache writes and reads are priced at their own rates, never at the base
    input rate and never twice.
    """
    return (
        usage.input_tokens * model.input_usd_per_mtok
        + usage.output_tokens * model.output_usd_per_mtok
        + usage.cache_creation_input_tokens * model.cache_write_usd_per_mtok
        + usage.cache_read_input_tokens * model.cache_read_usd_per_mtok
    ) / _MILLION


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _used_nothing(usage: Usage) -> bool:
    return usage.total_input_tokens == 0 and usage.output_tokens == 0


class TokenPricing:
    """``max(min_charge, ceil(usd × (1 + margin) / usd_per_credit))``.

    With the defaults (1 credit = $0.05, no margin), a Sonnet 5.5 run of 2,000
    input and 4,096 output tokens costs $0.04496, so 1 credit.
    """

    def credits(self, model: ModelInfo, usage: Usage, policy: CreditPolicy) -> int:
        if _used_nothing(usage):
            return 0
        usd = usd_cost(model, usage) * (1 + policy.margin)
        return max(policy.min_charge, _ceil(usd / policy.usd_per_credit))


DEFAULT_TIER_MULTIPLIERS: Mapping[str, Decimal] = {
    "claude-sonnet-5-5": Decimal(2),
    "claude-sonnet-4-6": Decimal(2),
    "claude-opus-5-5": Decimal(7),
    "claude-opus-4-6": Decimal(7),
    "claude-haiku-4-5": Decimal(1),
}


class TieredPricing:
    """The original PRPM+ formula: ``max(min_charge, ceil(ceil(tokens / 5000) × multiplier))``.

    ``tokens`` is every input and output token of the run; the multiplier is
    per model (the original: Sonnet 2, Opus 7). A model without a multiplier
    is refused rather than charged nothing.

    Args:
        multipliers: Model id → multiplier. Defaults to Sonnet 2, Opus 7, Haiku 1.
        tokens_per_tier: Tokens per tier (the original: 5,000).
    """

    def __init__(
        self,
        multipliers: Mapping[str, Decimal] | None = None,
        *,
        tokens_per_tier: int = 5_000,
    ) -> None:
        if tokens_per_tier <= 0:
            raise ValueError("tokens_per_tier must be positive")
        self._multipliers = dict(DEFAULT_TIER_MULTIPLIERS if multipliers is None else multipliers)
        for model_id, multiplier in self._multipliers.items():
            if not isinstance(multiplier, Decimal) or not multiplier.is_finite() or multiplier <= 0:
                raise ValueError(f"multiplier of {model_id!r} must be a positive Decimal")
        self._tier = tokens_per_tier

    def credits(self, model: ModelInfo, usage: Usage, policy: CreditPolicy) -> int:
        multiplier = self._multipliers.get(model.id)
        if multiplier is None:
            raise InvalidRequest(f"no tier multiplier for model {model.id!r}")
        if _used_nothing(usage):
            return 0
        tokens = usage.total_input_tokens + usage.output_tokens
        tiers = -(-tokens // self._tier)
        return max(policy.min_charge, _ceil(tiers * multiplier))
