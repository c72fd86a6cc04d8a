"""CreditPolicy and CreditPack: PRPM defaults, validation."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from prpm_playground import CreditPack, CreditPolicy


def test_prpm_defaults() -> None:
    policy = CreditPolicy()
    assert (policy.trial_credits, policy.monthly_credits, policy.rollover_cap) == (5, 200, 200)
    assert policy.hold_ttl == timedelta(minutes=15)
    assert [(p.id, p.credits, p.price_cents, p.currency) for p in policy.packs] == [
        ("small", 100, 500, "usd"),
        ("medium", 250, 1000, "usd"),
        ("large", 600, 2000, "usd"),
    ]
    assert policy.usd_per_credit == Decimal("0.05")
    assert (policy.margin, policy.min_charge) == (Decimal(0), 1)
    p = policy.priorities
    assert p["rollover"] < p["monthly"] < p["trial"] == p["bonus"] == p["admin"] < p["purchased"]
    assert policy.pack("medium") == CreditPack(id="medium", credits=250, price_cents=1000)
    assert policy.pack("nope") is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trial_credits": -1},
        {"trial_credits": True},
        {"trial_credits": 1.5},
        {"monthly_credits": -5},
        {"rollover_cap": -1},
        {"hold_ttl": timedelta(0)},
        {"hold_ttl": timedelta(days=8)},
        {"usd_per_credit": Decimal(0)},
        {"usd_per_credit": Decimal("NaN")},
        {"margin": Decimal("-0.1")},
        {"min_charge": -1},
        {"priorities": {"purchased": "high"}},
        {"priorities": {"gift": 1}},
        {"packs": [CreditPack(id="a", credits=1, price_cents=1)] * 2},
        {"unknown_field": 1},
    ],
)
def test_policy_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CreditPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"id": "", "credits": 1, "price_cents": 1},
        {"id": "Big Pack", "credits": 1, "price_cents": 1},
        {"id": "x", "credits": 0, "price_cents": 1},
        {"id": "x", "credits": 1, "price_cents": 0},
        {"id": "x", "credits": 1, "price_cents": 1, "currency": "USD"},
    ],
)
def test_pack_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CreditPack(**kwargs)


def test_priorities_merge_with_defaults() -> None:
    policy = CreditPolicy(priorities={"purchased": 0})
    assert policy.priorities["purchased"] == 0
    assert policy.priorities["rollover"] == 10


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        CreditPolicy().trial_credits = 3  # type: ignore[misc]
