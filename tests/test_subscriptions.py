"""Subscriptions through the ledger, on SQLite and PostgreSQL: allowances,
rollover and expiry materialised lazily by any call, once per period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prpm_playground import CreditLedger, InvalidRequest
from prpm_playground.periods import period_start
from prpm_playground.testing import ManualClock

ANCHOR = datetime(2027, 1, 31, 9, tzinfo=UTC)


@pytest.fixture
def sub_clock(clock: ManualClock) -> ManualClock:
    clock.set(ANCHOR)
    return clock


def P(n: int) -> datetime:
    return period_start(ANCHOR, n)


async def test_subscribe_grants_current_allowance_once(
    make_ledger: object, user: str, sub_clock: ManualClock
) -> None:
    ledger: CreditLedger = make_ledger(trial_credits=0)  # type: ignore[operator]
    balance = await ledger.subscribe(user, monthly_credits=100)
    assert balance.available == 100
    assert balance.monthly is not None
    assert (balance.monthly.allocated, balance.monthly.used, balance.monthly.remaining) == (
        100,
        0,
        100,
    )
    assert balance.monthly.resets_at == P(1)
    again = await ledger.subscribe(user, monthly_credits=100)
    assert again.available == 100
    assert len((await ledger.history(user, types=["monthly"])).entries) == 1
    await ledger.verify(user)


async def test_acceptance_renewal(make_ledger: object, user: str, sub_clock: ManualClock) -> None:
    # Allowance 100, 60 used, old rollover 15, purchased 20.
    ledger: CreditLedger = make_ledger(trial_credits=0)  # type: ignore[operator]
    await ledger.subscribe(user, monthly_credits=100)
    await ledger.grant(user, 15, kind="rollover", idempotency_key="r", expires_at=P(1))
    await ledger.grant(user, 20, kind="purchased", idempotency_key="p")
    await ledger.spend(user, 75, idempotency_key="s")  # rollover 15, then monthly 60
    sub_clock.set(P(1) + timedelta(minutes=1))  # the job has not run
    balance = await ledger.balance(user)
    assert balance.breakdown["monthly"] == 100
    assert balance.breakdown["rollover"] == 40
    assert balance.breakdown["purchased"] == 20
    assert balance.available == 160
    assert balance.rollover_expires_at == P(2)
    assert balance.monthly is not None
    assert (balance.monthly.allocated, balance.monthly.resets_at) == (100, P(2))
    expired = (await ledger.history(user, types=["expire"])).entries
    assert sorted(e.amount for e in expired) == [-40]  # the unused allowance; rolled over
    # Touching the account again changes nothing.
    for _ in range(2):
        assert (await ledger.balance(user)).available == 160
    assert len((await ledger.history(user, types=["monthly"])).entries) == 2
    await ledger.verify(user)


async def test_rollover_capped(make_ledger: object, user: str, sub_clock: ManualClock) -> None:
    ledger: CreditLedger = make_ledger(trial_credits=0, rollover_cap=200)  # type: ignore[operator]
    await ledger.subscribe(user, monthly_credits=250)
    sub_clock.set(P(1))
    balance = await ledger.balance(user)
    assert (balance.breakdown["rollover"], balance.breakdown["monthly"]) == (200, 250)
    assert balance.total == 450  # 50 of the first allowance expired


async def test_unsubscribed_keeps_purchased_only(
    make_ledger: object, user: str, sub_clock: ManualClock
) -> None:
    ledger: CreditLedger = make_ledger(trial_credits=0)  # type: ignore[operator]
    await ledger.subscribe(user, monthly_credits=100)
    await ledger.grant(user, 10, kind="rollover", idempotency_key="r", expires_at=P(1))
    await ledger.grant(user, 50, kind="purchased", idempotency_key="p")
    await ledger.spend(user, 80, idempotency_key="s")  # rollover 10, monthly 70 → 30 left
    balance = await ledger.unsubscribe(user)
    assert balance.breakdown["monthly"] == 30  # the current allowance stays
    sub_clock.set(P(1) + timedelta(days=3))
    balance = await ledger.balance(user)
    assert balance.available == 50
    assert balance.breakdown["purchased"] == 50
    assert balance.monthly is None
    await ledger.verify(user)


async def test_catch_up_three_periods(
    make_ledger: object, user: str, sub_clock: ManualClock
) -> None:
    ledger: CreditLedger = make_ledger(trial_credits=0)  # type: ignore[operator]
    other = user + "-stepwise"
    for u in (user, other):
        await ledger.subscribe(u, monthly_credits=100)
        await ledger.spend(u, 30, idempotency_key="s")
    for n in (1, 2, 3):
        sub_clock.set(P(n))
        await ledger.balance(other)  # touched at every boundary
    sub_clock.set(P(3) + timedelta(hours=2))
    late, stepwise = await ledger.balance(user), await ledger.balance(other)
    assert (late.available, late.breakdown) == (stepwise.available, stepwise.breakdown)
    assert late.breakdown["monthly"] == 100
    assert late.breakdown["rollover"] == 100
    history = [(e.type, e.amount, e.created_at) for e in (await ledger.history(user)).entries]
    assert history == [
        (e.type, e.amount, e.created_at) for e in (await ledger.history(other)).entries
    ]
    await ledger.verify(user)


async def test_change_of_terms_applies_next_period(
    make_ledger: object, user: str, sub_clock: ManualClock
) -> None:
    ledger: CreditLedger = make_ledger(trial_credits=0, rollover_cap=0)  # type: ignore[operator]
    await ledger.subscribe(user, monthly_credits=100)
    balance = await ledger.subscribe(user, monthly_credits=300)
    assert balance.available == 100
    sub_clock.set(P(1))
    assert (await ledger.balance(user)).available == 300


async def test_resume_and_resubscribe(
    make_ledger: object, user: str, sub_clock: ManualClock
) -> None:
    ledger: CreditLedger = make_ledger(trial_credits=0, rollover_cap=0)  # type: ignore[operator]
    await ledger.subscribe(user, monthly_credits=100)
    await ledger.unsubscribe(user)
    await ledger.subscribe(user, monthly_credits=100)  # resumed within the period
    sub_clock.set(P(1))
    assert (await ledger.balance(user)).available == 100
    await ledger.unsubscribe(user)
    sub_clock.set(P(2) + timedelta(days=5))
    assert (await ledger.balance(user)).available == 0
    restarted = await ledger.subscribe(user, monthly_credits=40)  # a new anchor: now
    assert restarted.available == 40
    assert restarted.monthly is not None
    assert sub_clock.now == datetime(2027, 4, 5, 9, tzinfo=UTC)  # the new anchor
    assert restarted.monthly.resets_at == datetime(2027, 5, 5, 9, tzinfo=UTC)
    await ledger.verify(user)


@pytest.mark.parametrize("after_end", [timedelta(seconds=1), timedelta(days=20)])
async def test_subscribe_again_as_soon_as_the_previous_one_ended(
    make_ledger: object, user: str, sub_clock: ManualClock, after_end: timedelta
) -> None:
    # Cancelled in its second period (Feb 28 - Mar 31): it ends on Mar 31,
    # and a new one may start in the same calendar month (a Stripe-driven
    # plan re-subscribes the moment the old one lapses).
    ledger: CreditLedger = make_ledger(trial_credits=0, rollover_cap=50)  # type: ignore[operator]
    await ledger.subscribe(user, monthly_credits=100)
    sub_clock.set(P(1))
    await ledger.unsubscribe(user)
    sub_clock.set(P(2) + after_end)
    assert (await ledger.balance(user)).monthly is None
    restarted = await ledger.subscribe(user, monthly_credits=60)
    assert restarted.available == 60  # the old allowance and rollover expired at P(2)
    assert restarted.monthly is not None
    assert restarted.monthly.resets_at == period_start(sub_clock.now, 1)
    # Its next periods renew as any subscription's do.
    sub_clock.set(period_start(sub_clock.now, 1))
    assert (await ledger.balance(user)).breakdown["monthly"] == 60
    await ledger.verify(user)


async def test_a_new_subscription_may_not_overlap_the_previous_one(
    make_ledger: object, user: str, sub_clock: ManualClock
) -> None:
    ledger: CreditLedger = make_ledger(trial_credits=0)  # type: ignore[operator]
    await ledger.subscribe(user, monthly_credits=100)
    await ledger.unsubscribe(user)
    sub_clock.set(P(1) + timedelta(days=3))
    with pytest.raises(InvalidRequest, match="overlaps"):
        await ledger.subscribe(user, anchor=P(1) - timedelta(days=1))
    assert (await ledger.subscribe(user, anchor=P(1))).available == 200
    await ledger.verify(user)


async def test_used_up_allowance_still_reported(
    make_ledger: object, user: str, sub_clock: ManualClock
) -> None:
    ledger: CreditLedger = make_ledger(trial_credits=0)  # type: ignore[operator]
    await ledger.subscribe(user, monthly_credits=10)
    await ledger.spend(user, 10, idempotency_key="all")
    monthly = (await ledger.balance(user)).monthly
    assert monthly is not None
    assert (monthly.allocated, monthly.used, monthly.remaining) == (10, 10, 0)


async def test_bad_subscriptions(make_ledger: object, user: str, sub_clock: ManualClock) -> None:
    ledger: CreditLedger = make_ledger()  # type: ignore[operator]
    with pytest.raises(InvalidRequest):
        await ledger.subscribe(user, monthly_credits=0)
    with pytest.raises(InvalidRequest):
        await ledger.subscribe(user, anchor=sub_clock.now + timedelta(days=1))
    with pytest.raises(InvalidRequest):
        await ledger.subscribe(user, anchor=datetime(2027, 1, 1))
    await ledger.subscribe(user)
    assert (await ledger.balance(user)).monthly.allocated == 200  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest):
        await ledger.subscribe(user, anchor=ANCHOR - timedelta(days=3))
