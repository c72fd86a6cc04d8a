"""Configuration: the credit policy and the packs users can buy."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_PRIORITIES",
    "GRANT_KINDS",
    "CreditPack",
    "CreditPolicy",
    "GrantKind",
    "Limits",
    "RateLimits",
]

GrantKind = Literal["trial", "monthly", "rollover", "purchased", "bonus", "admin"]
"""The kinds of credit grants."""

GRANT_KINDS: tuple[GrantKind, ...] = get_args(GrantKind)

DEFAULT_PRIORITIES: dict[GrantKind, int] = {
    # Lower spends first: what would be lost first goes first.
    "rollover": 10,
    "monthly": 20,
    "trial": 30,
    "bonus": 30,
    "admin": 30,
    "purchased": 40,
}


class CreditPack(BaseModel):
    """A pack of credits users can buy.

    Attributes:
        id: Stable identifier, e.g. ``"small"``.
        credits: Credits granted by one purchase.
        price_cents: Price in the currency's minor unit.
        currency: ISO 4217 code, lower case.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    credits: int = Field(gt=0, strict=True)
    price_cents: int = Field(gt=0, strict=True)
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$")


class Limits(BaseModel):
    """Size limits on what a run may send, checked before anything is held.

    Attributes:
        max_input_chars: Longest user input, in characters.
        max_package_bytes: Largest package text, in UTF-8 bytes.
        max_session_messages: Most messages (inputs and responses) in a session.
        expected_output_tokens: Output assumed by an estimate's expected
            ``credits`` (the hold always covers ``max_tokens``).
        token_count_timeout: Seconds to wait for the provider's token counter
            before falling back to the local approximation.
        run_deadline: Overall seconds a model call may take, first byte to last.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_input_chars: int = Field(default=50_000, gt=0, strict=True)
    max_package_bytes: int = Field(default=100_000, gt=0, strict=True)
    max_session_messages: int = Field(default=100, ge=2, strict=True)
    expected_output_tokens: int = Field(default=1_024, gt=0, strict=True)
    token_count_timeout: float = Field(default=2.0, gt=0)
    run_deadline: float = Field(default=600.0, gt=0)


class RateLimits(BaseModel):
    """How often one user may call the web API's costly endpoints.

    Counts are kept per user in fixed one-minute windows in the database, so
    they hold across every app instance that shares it. The cap on open
    streams is counted in memory, per ASGI app (one process). ``None``
    switches a limit off.

    Attributes:
        runs_per_minute: Model runs per user per minute (``POST /run``; a
            comparison counts one run per variant). The original's tier for
            signed-in users was 20.
        estimates_per_minute: ``POST /estimate`` calls per user per minute
            (each may count tokens at the provider).
        max_concurrent_streams: Server-Sent Event streams one user may have
            open at once in one app instance.
        stream_retry_after: Seconds a client refused by
            ``max_concurrent_streams`` is told to wait (``Retry-After``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    runs_per_minute: int | None = Field(default=20, ge=1, strict=True)
    estimates_per_minute: int | None = Field(default=120, ge=1, strict=True)
    max_concurrent_streams: int | None = Field(default=3, ge=1, strict=True)
    stream_retry_after: int = Field(default=5, ge=1, strict=True)


def _default_packs() -> tuple[CreditPack, ...]:
    return (
        CreditPack(id="small", credits=100, price_cents=500),
        CreditPack(id="medium", credits=250, price_cents=1000),
        CreditPack(id="large", credits=600, price_cents=2000),
    )


class CreditPolicy(BaseModel):
    """How credits are granted, held and priced. Defaults are PRPM's.

    Attributes:
        trial_credits: Granted once when an account opens; never expire. 0 disables it.
        monthly_credits: A subscriber's allowance per period.
        rollover_cap: Most unused allowance carried into the next period.
        hold_ttl: How long a hold lives before its credits return on their own.
        packs: Credit packs for sale; ids are unique.
        usd_per_credit: What one credit is worth, in USD.
        margin: Markup on model cost, as a fraction (``Decimal("0.2")`` is 20%).
        min_charge: Smallest charge for a run that produced anything.
        priorities: Spend priority per grant kind (lower spends first); kinds
            you leave out keep their default.
        limits: Size limits on runs and sessions.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    trial_credits: int = Field(default=5, ge=0, strict=True)
    monthly_credits: int = Field(default=200, ge=0, strict=True)
    rollover_cap: int = Field(default=200, ge=0, strict=True)
    hold_ttl: timedelta = timedelta(minutes=15)
    packs: tuple[CreditPack, ...] = Field(default_factory=_default_packs)
    usd_per_credit: Decimal = Decimal("0.05")
    margin: Decimal = Decimal(0)
    min_charge: int = Field(default=1, ge=0, strict=True)
    priorities: dict[GrantKind, int] = Field(default_factory=lambda: dict(DEFAULT_PRIORITIES))
    limits: Limits = Field(default_factory=Limits)

    @field_validator("hold_ttl")
    @classmethod
    def _positive_ttl(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("hold_ttl must be positive")
        if value > timedelta(days=7):
            raise ValueError("hold_ttl must be at most 7 days")
        return value

    @field_validator("usd_per_credit")
    @classmethod
    def _positive_price(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value <= 0:
            raise ValueError("usd_per_credit must be a positive, finite decimal")
        return value

    @field_validator("margin")
    @classmethod
    def _margin(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError("margin must be a finite decimal >= 0")
        return value

    @field_validator("priorities", mode="before")
    @classmethod
    def _merge_priorities(cls, value: object) -> object:
        if isinstance(value, dict):
            return {**DEFAULT_PRIORITIES, **value}
        return value

    @field_validator("priorities")
    @classmethod
    def _strict_priorities(cls, value: dict[GrantKind, int]) -> dict[GrantKind, int]:
        for kind, priority in value.items():
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise ValueError(f"priority of {kind!r} must be an int")
        return value

    @model_validator(mode="after")
    def _unique_packs(self) -> CreditPolicy:
        ids = [pack.id for pack in self.packs]
        if len(ids) != len(set(ids)):
            raise ValueError("pack ids must be unique")
        return self

    def priority_of(self, kind: GrantKind) -> int:
        """Return the spend priority of a grant kind."""
        return self.priorities[kind]

    def pack(self, pack_id: str) -> CreditPack | None:
        """Return the pack with this id, or None."""
        return next((pack for pack in self.packs if pack.id == pack_id), None)
