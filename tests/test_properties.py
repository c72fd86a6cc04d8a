"""Property tests: random sequences of ledger operations keep every invariant."""

from __future__ import annotations

import secrets
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prpm_playground import (
    CreditLedger,
    CreditPolicy,
    HoldNotActive,
    InsufficientCredits,
    SQLAlchemyStorage,
)
from prpm_playground._book import is_live
from prpm_playground.testing import ManualClock

kinds = st.sampled_from(["trial", "monthly", "rollover", "purchased", "bonus", "admin"])
ops = st.one_of(
    st.tuples(
        st.just("grant"),
        st.integers(1, 40),
        kinds,
        st.one_of(st.none(), st.integers(1, 180)),
    ),
    st.tuples(st.just("spend"), st.integers(1, 30)),
    st.tuples(st.just("hold"), st.integers(1, 30), st.integers(1, 60)),
    st.tuples(st.just("capture"), st.integers(0, 10), st.integers(0, 30)),
    st.tuples(st.just("release"), st.integers(0, 10)),
    st.tuples(st.just("advance"), st.integers(1, 90)),
)


async def check_invariants(ledger: CreditLedger, storage: SQLAlchemyStorage, user: str) -> None:
    balance = await ledger.balance(user)
    assert balance.available >= 0
    assert balance.held >= 0
    assert balance.total == balance.available + balance.held
    assert sum(balance.breakdown.values()) == balance.total
    # Available is exactly the remaining of live grants; held, the active holds.
    data = await storage.audit(user)
    assert data is not None
    grants, holds, entries = data
    assert balance.available == sum(g.remaining for g in grants if is_live(g, balance.as_of))
    assert balance.held == sum(h.amount for h in holds if h.status == "active")
    # The journal replays to the balance.
    assert sum(e.amount for e in entries) == balance.total
    history = []
    cursor = None
    while True:
        page = await ledger.history(user, limit=200, cursor=cursor)
        history.extend(page.entries)
        if (cursor := page.next_cursor) is None:
            break
    assert sum(e.amount for e in history) == balance.total
    assert all(e.balance_after >= 0 for e in history)
    await ledger.verify(user)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(ops, min_size=1, max_size=25))
async def test_random_sequences_keep_invariants(
    storage: SQLAlchemyStorage, sequence: list[tuple[object, ...]]
) -> None:
    clock = ManualClock()
    ledger = CreditLedger(storage, policy=CreditPolicy(trial_credits=3), clock=clock)
    user = f"prop-{secrets.token_hex(8)}"
    holds: list[str] = []
    for n, op in enumerate(sequence):
        before = await ledger.balance(user)
        name = op[0]
        if name == "grant":
            _, amount, kind, minutes = op
            expires = None if minutes is None else clock.now + timedelta(minutes=int(minutes))  # type: ignore[call-overload]
            await ledger.grant(
                user,
                amount,
                kind=kind,
                idempotency_key=f"g{n}",
                expires_at=expires,  # type: ignore[arg-type]
            )
            assert (await ledger.balance(user)).available == before.available + amount
        elif name in ("spend", "hold"):
            amount = int(op[1])  # type: ignore[call-overload]
            try:
                if name == "spend":
                    await ledger.spend(user, amount, idempotency_key=f"s{n}")
                else:
                    ttl = timedelta(minutes=int(op[2]))  # type: ignore[call-overload]
                    holds.append(
                        (await ledger.hold(user, amount, idempotency_key=f"h{n}", ttl=ttl)).id
                    )
            except InsufficientCredits as exc:
                # Refused exactly when it does not fit, and then nothing changed.
                assert amount > before.available == exc.available
                assert await ledger.balance(user) == before
            else:
                assert amount <= before.available
                after = await ledger.balance(user)
                assert after.available == before.available - amount
                assert after.held == before.held + (amount if name == "hold" else 0)
        elif name in ("capture", "release") and holds:
            hold_id = holds[int(op[1]) % len(holds)]  # type: ignore[call-overload]
            try:
                if name == "capture":
                    captured = await ledger.capture(hold_id, 0)
                    wanted = min(int(op[2]), captured.amount)  # type: ignore[call-overload]
                    # Captured with 0 above; a different amount is refused.
                    if wanted:
                        try:
                            await ledger.capture(hold_id, wanted)
                        except HoldNotActive:
                            pass
                        else:
                            raise AssertionError("re-capture with another amount succeeded")
                else:
                    await ledger.release(hold_id)
            except HoldNotActive:
                pass
            after = await ledger.balance(user)
            assert after.total <= before.total
        elif name == "advance":
            clock.advance(timedelta(minutes=int(op[1])))  # type: ignore[call-overload]
        await check_invariants(ledger, storage, user)
