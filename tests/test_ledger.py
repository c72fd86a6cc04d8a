"""CreditLedger: accounts, grants, spends, spend order, idempotency, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from prpm_playground import (
    CreditLedger,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    SQLAlchemyStorage,
)
from prpm_playground.testing import ManualClock


async def test_open_account_grants_trial_once(ledger: CreditLedger, user: str) -> None:
    first = await ledger.open_account(user)
    again = await ledger.open_account(user)
    assert first.available == again.available == 5
    assert first.breakdown["trial"] == 5
    page = await ledger.history(user)
    assert [e.type for e in page.entries] == ["trial"]
    await ledger.verify(user)


async def test_first_touch_is_a_spend(ledger: CreditLedger, user: str) -> None:
    # The original answered "Need 2 but have 5" to a brand-new user's first run.
    entry = await ledger.spend(user, 2, idempotency_key="first-run")
    assert entry.amount == -2
    assert entry.balance_after == 3
    assert (await ledger.balance(user)).available == 3


async def test_zero_trial_policy_opens_empty_account(bare: CreditLedger, user: str) -> None:
    balance = await bare.open_account(user)
    assert (balance.available, balance.held, balance.total) == (0, 0, 0)
    assert (await bare.history(user)).entries == ()


async def test_balance_shape(ledger: CreditLedger, user: str) -> None:
    await ledger.grant(user, 10, kind="purchased", idempotency_key="p")
    balance = await ledger.balance(user)
    assert balance.total == balance.available + balance.held == 15
    assert set(balance.breakdown) == {"trial", "monthly", "rollover", "purchased", "bonus", "admin"}
    assert sum(balance.breakdown.values()) == balance.total
    assert balance.monthly is None
    assert balance.as_of.tzinfo is not None


async def test_spend_order_monthly_before_purchased(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 3, kind="monthly", idempotency_key="m")
    await bare.grant(user, 5, kind="purchased", idempotency_key="p")
    entry = await bare.spend(user, 4, idempotency_key="s")
    balance = await bare.balance(user)
    assert balance.breakdown["monthly"] == 0
    assert balance.breakdown["purchased"] == 4
    assert [(d.kind, d.amount) for d in entry.draws] == [("monthly", 3), ("purchased", 1)]


async def test_spend_order_rollover_first(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 20, kind="purchased", idempotency_key="p")
    await bare.grant(user, 5, kind="monthly", idempotency_key="m")
    await bare.grant(user, 10, kind="rollover", idempotency_key="r")
    await bare.spend(user, 8, idempotency_key="s")
    breakdown = (await bare.balance(user)).breakdown
    assert (breakdown["rollover"], breakdown["monthly"], breakdown["purchased"]) == (2, 5, 20)


async def test_spend_order_within_priority(
    bare: CreditLedger, user: str, clock: ManualClock
) -> None:
    never = await bare.grant(user, 5, kind="bonus", idempotency_key="never")
    later = await bare.grant(
        user, 5, kind="bonus", idempotency_key="later", expires_at=clock.now + timedelta(days=9)
    )
    soon = await bare.grant(
        user, 5, kind="bonus", idempotency_key="soon", expires_at=clock.now + timedelta(days=1)
    )
    older = await bare.grant(user, 5, kind="admin", idempotency_key="older")
    entry = await bare.spend(user, 17, idempotency_key="s")
    # Soonest expiry first, never-expiring last, then creation order (same priority 30).
    assert [(d.grant_id, d.amount) for d in entry.draws] == [
        (soon.id, 5),
        (later.id, 5),
        (never.id, 5),
        (older.id, 2),
    ]


async def test_explicit_priority_overrides_kind(bare: CreditLedger, user: str) -> None:
    purchased = await bare.grant(user, 5, kind="purchased", idempotency_key="p", priority=1)
    await bare.grant(user, 5, kind="rollover", idempotency_key="r")
    entry = await bare.spend(user, 3, idempotency_key="s")
    assert entry.draws[0].grant_id == purchased.id


async def test_policy_priorities_apply(make_ledger: object, user: str) -> None:
    ledger = make_ledger(trial_credits=0, priorities={"purchased": 0})  # type: ignore[operator]
    await ledger.grant(user, 5, kind="monthly", idempotency_key="m")
    await ledger.grant(user, 5, kind="purchased", idempotency_key="p")
    entry = await ledger.spend(user, 1, idempotency_key="s")
    assert entry.draws[0].kind == "purchased"


async def test_insufficient_credits_writes_nothing(ledger: CreditLedger, user: str) -> None:
    await ledger.open_account(user)
    with pytest.raises(InsufficientCredits) as caught:
        await ledger.spend(user, 6, idempotency_key="too-much")
    assert (caught.value.required, caught.value.available) == (6, 5)
    assert caught.value.code == "insufficient_credits"
    with pytest.raises(InsufficientCredits):
        await ledger.hold(user, 6, idempotency_key="too-much-hold")
    assert (await ledger.balance(user)).available == 5
    assert len((await ledger.history(user)).entries) == 1
    # The failed key was not consumed: it can be used once credits arrive.
    await ledger.grant(user, 1, idempotency_key="top-up")
    assert (await ledger.spend(user, 6, idempotency_key="too-much")).amount == -6


async def test_spend_replay_returns_original(ledger: CreditLedger, user: str) -> None:
    first = await ledger.spend(user, 2, idempotency_key="k", description="run")
    again = await ledger.spend(user, 2, idempotency_key="k", description="run")
    assert again == first
    assert (await ledger.balance(user)).available == 3
    with pytest.raises(IdempotencyConflict) as caught:
        await ledger.spend(user, 3, idempotency_key="k", description="run")
    assert caught.value.idempotency_key == "k"
    with pytest.raises(IdempotencyConflict):
        await ledger.spend(user, 2, idempotency_key="k", description="other")


async def test_replay_after_balance_drops_still_returns_original(
    bare: CreditLedger, user: str
) -> None:
    await bare.grant(user, 4, idempotency_key="g")
    first = await bare.spend(user, 4, idempotency_key="k")
    assert await bare.spend(user, 4, idempotency_key="k") == first


async def test_grant_replay_and_conflict(bare: CreditLedger, user: str) -> None:
    grant = await bare.grant(user, 100, kind="purchased", idempotency_key="pi_1")
    again = await bare.grant(user, 100, kind="purchased", idempotency_key="pi_1")
    assert again.id == grant.id
    assert (await bare.balance(user)).available == 100
    with pytest.raises(IdempotencyConflict):
        await bare.grant(user, 250, kind="purchased", idempotency_key="pi_1")
    with pytest.raises(IdempotencyConflict):
        await bare.grant(user, 100, kind="bonus", idempotency_key="pi_1")


async def test_keys_are_shared_across_operations(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 10, idempotency_key="g")
    await bare.spend(user, 1, idempotency_key="same")
    with pytest.raises(IdempotencyConflict):
        await bare.hold(user, 1, idempotency_key="same")
    await bare.hold(user, 1, idempotency_key="other")
    with pytest.raises(IdempotencyConflict):
        await bare.spend(user, 1, idempotency_key="other")
    with pytest.raises(IdempotencyConflict):
        await bare.grant(user, 1, idempotency_key="other")


async def test_keys_are_per_account(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 5, idempotency_key="shared")
    await bare.grant(user + "-b", 7, idempotency_key="shared")
    assert (await bare.balance(user + "-b")).available == 7


async def test_grant_expiry_is_exclusive(bare: CreditLedger, user: str, clock: ManualClock) -> None:
    expires = clock.now + timedelta(hours=1)
    await bare.grant(user, 10, kind="bonus", idempotency_key="b", expires_at=expires)
    await bare.grant(user, 3, kind="purchased", idempotency_key="p")
    clock.set(expires - timedelta(microseconds=1))
    assert (await bare.balance(user)).available == 13
    clock.set(expires)
    balance = await bare.balance(user)
    assert balance.available == 3
    assert balance.breakdown["bonus"] == 0
    with pytest.raises(InsufficientCredits):
        await bare.spend(user, 4, idempotency_key="s")
    expire = (await bare.history(user, types=["expire"])).entries
    assert [(e.amount, e.created_at, e.balance_after) for e in expire] == [(-10, expires, 3)]
    await bare.verify(user)


async def test_expiry_is_recorded_once(bare: CreditLedger, user: str, clock: ManualClock) -> None:
    await bare.grant(user, 10, idempotency_key="b", expires_at=clock.now + timedelta(minutes=1))
    clock.advance(timedelta(minutes=2))
    for _ in range(3):
        await bare.balance(user)
    assert len((await bare.history(user, types=["expire"])).entries) == 1


async def test_rollover_expiry_shown(bare: CreditLedger, user: str, clock: ManualClock) -> None:
    first = clock.now + timedelta(days=30)
    await bare.grant(user, 4, kind="rollover", idempotency_key="r1", expires_at=first)
    await bare.grant(
        user, 4, kind="rollover", idempotency_key="r2", expires_at=first + timedelta(1)
    )
    assert (await bare.balance(user)).rollover_expires_at == first


async def test_expires_at_must_be_future(bare: CreditLedger, user: str, clock: ManualClock) -> None:
    with pytest.raises(InvalidRequest):
        await bare.grant(user, 1, idempotency_key="g", expires_at=clock.now)
    with pytest.raises(InvalidRequest):
        await bare.grant(user, 1, idempotency_key="g", expires_at=datetime(2030, 1, 1))


LONG = "x" * 256


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("spend", {"amount": 0}),
        ("spend", {"amount": -1}),
        ("spend", {"amount": True}),
        ("spend", {"amount": 1.0}),
        ("spend", {"amount": "1"}),
        ("spend", {"idempotency_key": ""}),
        ("spend", {"idempotency_key": LONG}),
        ("spend", {"idempotency_key": 5}),
        ("spend", {"user_id": ""}),
        ("spend", {"user_id": LONG}),
        ("spend", {"description": "d" * 1001}),
        ("grant", {"amount": 0}),
        ("grant", {"kind": "gift"}),
        ("grant", {"priority": True}),
        ("hold", {"amount": False}),
        ("hold", {"ttl": timedelta(0)}),
        ("hold", {"ttl": 60}),
        # What a database cannot store is refused before it is sent.
        ("spend", {"description": "a\x00b"}),
        ("grant", {"description": "a\x00b"}),
        ("spend", {"description": "lone \ud800"}),
        ("grant", {"description": "lone \udfff"}),
        ("grant", {"idempotency_key": "k\ud800"}),
        ("hold", {"idempotency_key": "k\x00"}),
        ("hold", {"user_id": "u\udc00"}),
        ("spend", {"user_id": "u\x00"}),
        ("grant", {"expires_at": datetime(9999, 1, 1, tzinfo=UTC)}),
        ("grant", {"expires_at": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)}),
        # Aware, in range as written, out of range in UTC.
        (
            "grant",
            {"expires_at": datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=14)))},
        ),
        ("grant", {"amount": 10**15 + 1}),
        ("grant", {"amount": 2**63}),
        ("spend", {"amount": 2**63 - 1}),
        ("hold", {"amount": 2**64}),
    ],
)
async def test_bad_input_is_refused_and_writes_nothing(
    ledger: CreditLedger,
    storage: SQLAlchemyStorage,
    user: str,
    call: str,
    kwargs: dict[str, object],
) -> None:
    args: dict[str, object] = {"user_id": user, "amount": 1, "idempotency_key": "k", **kwargs}
    method = getattr(ledger, call)
    with pytest.raises(InvalidRequest):
        await method(args.pop("user_id"), args.pop("amount"), **args)
    assert await storage.audit(user) is None  # not even opened


async def test_bad_input_is_a_value_error_with_a_code(ledger: CreditLedger, user: str) -> None:
    with pytest.raises(ValueError, match="surrogates") as info:
        await ledger.grant(user, 1, idempotency_key="k", description="\ud800")
    assert isinstance(info.value, InvalidRequest)
    assert info.value.code == "invalid_request"


async def test_the_latest_expiry_allowed_is_stored_and_read_back(
    bare: CreditLedger, user: str
) -> None:
    last = datetime(9998, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    grant = await bare.grant(user, 3, idempotency_key="g", expires_at=last)
    assert grant.expires_at == last
    balance = await bare.balance(user)
    assert balance.available == 3
    await bare.hold(user, 2, idempotency_key="h")
    assert [e.amount for e in (await bare.history(user)).entries] == [3]
    await bare.verify(user)


async def test_an_account_holds_at_most_max_amount(bare: CreditLedger, user: str) -> None:
    await bare.grant(user, 10**15 - 5, idempotency_key="big")
    hold = await bare.hold(user, 10, idempotency_key="h")  # held credits count too
    with pytest.raises(InvalidRequest, match="more than"):
        await bare.grant(user, 6, idempotency_key="over")
    await bare.grant(user, 5, idempotency_key="to the limit")
    await bare.capture(hold.id, 4)
    assert (await bare.balance(user)).available == 10**15 - 4
    await bare.grant(user, 4, idempotency_key="room again")
    await bare.verify(user)


async def test_max_length_ids_are_fine(bare: CreditLedger) -> None:
    user, key = "u" * 255, "k" * 255
    await bare.grant(user, 3, idempotency_key=key)
    assert (await bare.spend(user, 3, idempotency_key="s")).balance_after == 0


async def test_naive_clock_is_refused(storage: object, user: str) -> None:
    ledger = CreditLedger(storage, clock=lambda: datetime(2026, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        await ledger.balance(user)


async def test_entries_are_in_utc(ledger: CreditLedger, user: str, storage: object) -> None:
    tokyo = datetime(2026, 5, 1, 9, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Tokyo")
    )
    clocked = CreditLedger(storage, clock=lambda: tokyo)  # type: ignore[arg-type]
    entry = await clocked.spend(user, 1, idempotency_key="s")
    assert entry.created_at == datetime(2026, 5, 1, 9, tzinfo=UTC)
    assert entry.created_at.utcoffset() == timedelta(0)
