"""The period rule in isolation: what ended periods do to an account's grants.

These run the pure ``Book`` over plain records (no storage), the single rule
that both the lazy per-account path and the reset job call.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from prpm_playground._book import Book
from prpm_playground.periods import month_number, period_start
from prpm_playground.storage.base import AccountState, GrantRecord, SubscriptionRecord

ANCHOR = datetime(2027, 1, 31, 9, tzinfo=UTC)
P = [period_start(ANCHOR, n) for n in range(8)]
B = month_number(ANCHOR)  # the absolute number of period 0


def grant(
    gid: str, kind: str, amount: int, remaining: int, expires: datetime | None, **kw: object
) -> GrantRecord:
    return GrantRecord(
        id=gid,
        kind=kind,  # type: ignore[arg-type]
        amount=amount,
        remaining=remaining,
        priority={"rollover": 10, "monthly": 20, "purchased": 40}[kind],
        effective_at=P[0],
        expires_at=expires,
        created_at=P[0],
        **kw,  # type: ignore[arg-type]
    )


def state(grants: list[GrantRecord], sub: SubscriptionRecord | None) -> AccountState:
    return AccountState(
        user_id="u", created=False, grants=tuple(grants), holds=(), subscription=sub
    )


def after(book: Book) -> AccountState:
    """The state storage would hand back after writing the book's changes."""
    return state([g for g in book.grants.values() if g.remaining > 0], book.subscription)


def live(book: Book) -> dict[str, int]:
    return {k: v for k, v in book.breakdown().items() if v}


SUB = SubscriptionRecord(anchor=ANCHOR, monthly_credits=100, last_period=B)


def test_renewal_with_rollover_and_expiry() -> None:
    # Allowance 100 with 60 used, an old rollover of 15, 20 purchased.
    start = state(
        [
            grant("m0", "monthly", 100, 40, P[1], period=B),
            grant("r0", "rollover", 15, 15, P[1], period=B),
            grant("p", "purchased", 20, 20, None),
        ],
        SUB,
    )
    book = Book(start, P[1] + timedelta(hours=3))
    book.settle(rollover_cap=200)
    assert live(book) == {"monthly": 100, "rollover": 40, "purchased": 20}
    assert book.available() == 160
    rollover = next(g for g in book.grants.values() if g.kind == "rollover" and g.period == B + 1)
    assert (rollover.effective_at, rollover.expires_at) == (P[1], P[2])
    entries = [(e.type, e.amount, e.created_at) for e in book.changes.new_entries]
    assert sorted(entries) == sorted(
        [
            ("rollover", 40, P[1]),
            ("monthly", 100, P[1]),
            ("expire", -40, P[1]),
            ("expire", -15, P[1]),
        ]
    )
    assert book.subscription is not None
    assert book.subscription.last_period == B + 1
    # Settling again changes nothing.
    again = Book(after(book), P[1] + timedelta(days=2))
    again.settle(rollover_cap=200)
    assert not again.changes


def test_rollover_is_capped() -> None:
    book = Book(state([grant("m0", "monthly", 250, 250, P[1], period=B)], SUB), P[1])
    book.settle(rollover_cap=200)
    assert live(book) == {"monthly": 100, "rollover": 200}
    # The total fell by exactly what did not roll over.
    assert sum(e.amount for e in book.changes.new_entries) == 200 + 100 - 250


def test_unsubscribed_account_gets_nothing_new() -> None:
    sub = replace(SUB, ends_after=B)
    start = state(
        [
            grant("m0", "monthly", 100, 30, P[1], period=B),
            grant("r0", "rollover", 10, 10, P[1], period=B),
            grant("p", "purchased", 50, 50, None),
        ],
        sub,
    )
    book = Book(start, P[1] + timedelta(days=1))
    book.settle(rollover_cap=200)
    assert live(book) == {"purchased": 50}


def test_held_allowance_is_not_unused() -> None:
    # 30 of the allowance sit in an active hold at the boundary: not rolled over.
    from prpm_playground.models import Draw
    from prpm_playground.storage.base import HoldRecord

    hold = HoldRecord(
        id="h",
        amount=30,
        captured=0,
        status="active",
        draws=(Draw(grant_id="m0", kind="monthly", amount=30),),
        created_at=P[1] - timedelta(minutes=1),
        expires_at=P[1] + timedelta(minutes=14),
    )
    start = replace(state([grant("m0", "monthly", 100, 50, P[1], period=B)], SUB), holds=(hold,))
    book = Book(start, P[1] + timedelta(minutes=1))
    book.settle(rollover_cap=200)
    assert live(book) == {"monthly": 130, "rollover": 50}  # 30 held under "monthly"


def test_terms_change_from_next_period() -> None:
    sub = replace(SUB, next_credits=300, next_from=B + 2)
    book = Book(state([grant("m0", "monthly", 100, 0 + 1, P[1], period=B)], sub), P[2])
    book.settle(rollover_cap=200)
    allowances = sorted((g.period, g.amount) for g in book.grants.values() if g.kind == "monthly")
    assert allowances == [(B, 100), (B + 1, 100), (B + 2, 300)]


def test_catch_up_equals_every_boundary() -> None:
    start = state(
        [grant("m0", "monthly", 100, 70, P[1], period=B), grant("p", "purchased", 5, 5, None)],
        SUB,
    )
    late = Book(start, P[3] + timedelta(hours=1))
    late.settle(rollover_cap=200)
    step = start
    for n in (1, 2, 3):
        book = Book(step, P[n])
        book.settle(rollover_cap=200)
        step = after(book)
    final = Book(step, P[3] + timedelta(hours=1))
    final.settle(rollover_cap=200)
    assert live(late) == live(final) == {"monthly": 100, "rollover": 100, "purchased": 5}


spends = st.lists(st.tuples(st.integers(0, 24 * 200), st.integers(1, 60)), max_size=25)
schedules = st.lists(st.integers(0, 24 * 200), max_size=12)


@settings(max_examples=150, deadline=None)
@given(spends=spends, schedule=schedules, cap=st.integers(0, 150))
def test_schedule_independence(
    spends: list[tuple[int, int]], schedule: list[int], cap: int
) -> None:
    """Settling at random extra moments never changes what spends see or the end state."""

    def run(extra: list[int]) -> tuple[list[bool], dict[str, int], int]:
        current = state([grant("m0", "monthly", 100, 100, P[1], period=B)], SUB)
        outcomes = []
        moments = sorted([(h, "spend", a) for h, a in spends] + [(h, "job", 0) for h in extra])
        for hours, what, amount in moments:
            book = Book(current, P[0] + timedelta(hours=hours))
            book.settle(rollover_cap=cap)
            if what == "spend":
                ok = amount <= book.available()
                if ok:
                    book.draw(amount)
                outcomes.append(ok)
            current = after(book)
        end = Book(current, P[7])
        end.settle(rollover_cap=cap)
        return outcomes, live(end), end.available()

    assert run([]) == run(schedule)
