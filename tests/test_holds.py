"""Holds: two-phase reservations that capture the actual cost and return the rest."""

from __future__ import annotations

from datetime import timedelta

import pytest

from prpm_playground import (
    CreditLedger,
    HoldNotActive,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
)
from prpm_playground.testing import ManualClock


async def funded(ledger: CreditLedger, user: str, amount: int = 100) -> None:
    await ledger.grant(user, amount, kind="purchased", idempotency_key="fund")


async def test_hold_moves_credits_out_of_available(bare: CreditLedger, user: str) -> None:
    await funded(bare, user)
    hold = await bare.hold(user, 30, idempotency_key="run-1")
    assert (hold.amount, hold.captured, hold.status) == (30, 0, "active")
    balance = await bare.balance(user)
    assert (balance.available, balance.held, balance.total) == (70, 30, 100)
    assert balance.breakdown["purchased"] == 100
    with pytest.raises(InsufficientCredits) as caught:
        await bare.spend(user, 71, idempotency_key="s")
    assert caught.value.available == 70


async def test_capture_charges_actual_and_returns_rest(bare: CreditLedger, user: str) -> None:
    await funded(bare, user)
    hold = await bare.hold(user, 30, idempotency_key="run-1")
    captured = await bare.capture(hold.id, 12)
    assert (captured.status, captured.captured, captured.settled_at is not None) == (
        "captured",
        12,
        True,
    )
    balance = await bare.balance(user)
    assert (balance.available, balance.held) == (88, 0)
    (spend,) = (await bare.history(user, types=["spend"])).entries
    assert (spend.amount, spend.hold_id, spend.balance_after) == (-12, hold.id, 88)
    await bare.verify(user)


async def test_capture_is_idempotent(bare: CreditLedger, user: str) -> None:
    await funded(bare, user)
    hold = await bare.hold(user, 10, idempotency_key="run")
    first = await bare.capture(hold.id, 4)
    assert await bare.capture(hold.id, 4) == first
    assert (await bare.balance(user)).available == 96
    with pytest.raises(HoldNotActive) as caught:
        await bare.capture(hold.id, 5)
    assert caught.value.status == "captured"
    with pytest.raises(HoldNotActive):
        await bare.release(hold.id)


async def test_capture_zero_charges_nothing(bare: CreditLedger, user: str) -> None:
    await funded(bare, user)
    hold = await bare.hold(user, 10, idempotency_key="run")
    assert (await bare.capture(hold.id, 0)).status == "captured"
    assert (await bare.balance(user)).available == 100
    assert (await bare.history(user, types=["spend"])).entries == ()
    (entry,) = (await bare.history(user, types=["release"])).entries  # where the 10 went
    assert (entry.hold_id, entry.amount, entry.balance_after) == (hold.id, 0, 100)
    await bare.capture(hold.id, 0)  # a replay writes nothing more
    assert len((await bare.history(user, types=["release"])).entries) == 1
    await bare.verify(user)


async def test_capture_bounds(bare: CreditLedger, user: str) -> None:
    await funded(bare, user)
    hold = await bare.hold(user, 10, idempotency_key="run")
    with pytest.raises(InvalidRequest):
        await bare.capture(hold.id, 11)
    with pytest.raises(InvalidRequest):
        await bare.capture(hold.id, -1)
    with pytest.raises(InvalidRequest):
        await bare.capture(hold.id, True)
    assert (await bare.balance(user)).held == 10


async def test_release_returns_everything(bare: CreditLedger, user: str) -> None:
    await funded(bare, user)
    hold = await bare.hold(user, 10, idempotency_key="run")
    released = await bare.release(hold.id)
    assert released.status == "released"
    assert await bare.release(hold.id) == released
    assert (await bare.balance(user)).available == 100
    with pytest.raises(HoldNotActive) as caught:
        await bare.capture(hold.id, 1)
    assert caught.value.code == "hold_not_active"
    (entry,) = (await bare.history(user, types=["release"])).entries
    assert (entry.amount, entry.balance_after, entry.hold_id) == (0, 100, hold.id)
    assert sum(d.amount for d in entry.draws) == 10
    await bare.verify(user)


async def test_unknown_hold(bare: CreditLedger) -> None:
    with pytest.raises(NotFound):
        await bare.capture("hold_missing", 1)
    with pytest.raises(NotFound):
        await bare.release("hold_missing")


async def test_hold_replay_and_conflict(bare: CreditLedger, user: str) -> None:
    await funded(bare, user)
    hold = await bare.hold(user, 10, idempotency_key="run")
    assert await bare.hold(user, 10, idempotency_key="run") == hold
    assert (await bare.balance(user)).held == 10
    with pytest.raises(IdempotencyConflict):
        await bare.hold(user, 11, idempotency_key="run")
    with pytest.raises(IdempotencyConflict):
        await bare.hold(user, 10, idempotency_key="run", ttl=timedelta(minutes=3))
    await bare.capture(hold.id, 2)
    replay = await bare.hold(user, 10, idempotency_key="run")
    assert (replay.id, replay.status, replay.captured) == (hold.id, "captured", 2)


async def test_lapsed_hold_returns_credits(
    bare: CreditLedger, user: str, clock: ManualClock
) -> None:
    await funded(bare, user)
    hold = await bare.hold(user, 10, idempotency_key="run", ttl=timedelta(minutes=5))
    clock.advance(timedelta(minutes=5) - timedelta(microseconds=1))
    assert (await bare.balance(user)).held == 10
    clock.advance(timedelta(microseconds=1))
    balance = await bare.balance(user)
    assert (balance.available, balance.held) == (100, 0)
    with pytest.raises(HoldNotActive) as caught:
        await bare.capture(hold.id, 1)
    assert caught.value.status == "expired"
    # The journal explains the credits coming back, at the instant the hold lapsed.
    (entry,) = (await bare.history(user, types=["release"])).entries
    assert (entry.amount, entry.balance_after, entry.hold_id) == (0, 100, hold.id)
    assert entry.created_at == hold.expires_at
    await bare.verify(user)


async def test_default_ttl_is_policy(make_ledger: object, user: str, clock: ManualClock) -> None:
    ledger = make_ledger(hold_ttl=timedelta(minutes=2))  # type: ignore[operator]
    hold = await ledger.hold(user, 1, idempotency_key="run")
    assert hold.expires_at == clock.now + timedelta(minutes=2)


async def test_hold_drawing_a_grant_to_zero(bare: CreditLedger, user: str) -> None:
    # The grant has nothing left outside the hold; capture and release still find it.
    await bare.grant(user, 5, kind="monthly", idempotency_key="m")
    await bare.grant(user, 5, kind="purchased", idempotency_key="p")
    first = await bare.hold(user, 7, idempotency_key="a")
    await bare.capture(first.id, 6)
    breakdown = (await bare.balance(user)).breakdown
    assert (breakdown["monthly"], breakdown["purchased"]) == (0, 4)
    second = await bare.hold(user, 4, idempotency_key="b")
    await bare.release(second.id)
    assert (await bare.balance(user)).breakdown["purchased"] == 4
    await bare.verify(user)


async def test_grant_expiring_during_hold(
    bare: CreditLedger, user: str, clock: ManualClock
) -> None:
    monthly_end = clock.now + timedelta(minutes=10)
    await bare.grant(user, 8, kind="monthly", idempotency_key="m", expires_at=monthly_end)
    await bare.grant(user, 10, kind="purchased", idempotency_key="p")
    hold = await bare.hold(user, 12, idempotency_key="run", ttl=timedelta(minutes=30))
    clock.set(monthly_end + timedelta(minutes=1))
    # Held credits stay held; nothing is double counted or lost.
    balance = await bare.balance(user)
    assert (balance.available, balance.held, balance.total) == (6, 12, 18)
    await bare.capture(hold.id, 5)  # paid from the monthly draw; its other 3 expire
    balance = await bare.balance(user)
    assert (balance.available, balance.held, balance.breakdown["monthly"]) == (10, 0, 0)
    expired = (await bare.history(user, types=["expire"])).entries
    assert sorted(e.amount for e in expired) == [-3]
    await bare.verify(user)


async def test_lapsed_hold_on_expired_grant(
    bare: CreditLedger, user: str, clock: ManualClock
) -> None:
    end = clock.now + timedelta(minutes=5)
    await bare.grant(user, 8, kind="bonus", idempotency_key="b", expires_at=end)
    await bare.hold(user, 6, idempotency_key="run", ttl=timedelta(minutes=10))
    clock.advance(timedelta(hours=1))
    balance = await bare.balance(user)
    assert (balance.available, balance.held, balance.total) == (0, 0, 0)
    expired = (await bare.history(user, types=["expire"])).entries
    # 2 expired at the grant's end, the 6 when the hold lapsed onto the dead grant.
    assert [(e.amount, e.created_at) for e in reversed(expired)] == [
        (-2, end),
        (-6, end + timedelta(minutes=5)),
    ]
    await bare.verify(user)
