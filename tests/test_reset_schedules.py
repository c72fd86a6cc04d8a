"""Schedule independence, on real storage: whether the reset job runs often,
rarely, twice at once or never, every spend gets the same answer and the
journal ends up the same, entry for entry."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prpm_playground import (
    CreditLedger,
    CreditPolicy,
    InsufficientCredits,
    ResetJob,
    SQLAlchemyStorage,
)
from prpm_playground.testing import ManualClock

from .conftest import Backend

ANCHOR = datetime(2027, 1, 31, 9, tzinfo=UTC)
HORIZON = 4 * 31 * 24 * 60  # minutes: four periods and a bit

events = st.lists(
    st.tuples(
        st.integers(0, HORIZON),
        st.one_of(
            st.tuples(st.just("spend"), st.integers(1, 60)),
            st.tuples(st.just("hold"), st.integers(1, 40), st.integers(1, 3 * 24 * 60)),
            st.tuples(
                st.just("grant"),
                st.integers(1, 50),
                st.sampled_from(["purchased", "bonus"]),
                st.one_of(st.none(), st.integers(1, 40 * 24 * 60)),
            ),
            st.tuples(st.just("job")),
            st.tuples(st.just("jobs")),  # two runs at once
            st.tuples(st.just("unsubscribe")),
        ),
    ),
    max_size=18,
)


@pytest.fixture(scope="module")
async def stores(backend: Backend) -> AsyncIterator[tuple[SQLAlchemyStorage, SQLAlchemyStorage]]:
    """Two databases: one where the job runs on the schedule, one where it never runs."""
    pair = [await backend.storage(), await backend.storage()]
    yield pair[0], pair[1]
    for storage in pair:
        await storage.close()


async def play(
    storage: SQLAlchemyStorage,
    policy: CreditPolicy,
    monthly: int,
    script: list[tuple[int, tuple[object, ...]]],
    *,
    with_job: bool,
) -> tuple[list[object], object, list[tuple[object, ...]]]:
    user = f"sched-{secrets.token_hex(6)}"
    clock = ManualClock(ANCHOR)
    ledger = CreditLedger(storage, policy=policy, clock=clock)
    job = ResetJob(storage, policy=policy, clock=clock)
    await ledger.subscribe(user, monthly_credits=monthly)
    answers: list[object] = []
    for n, (minute, op) in enumerate(sorted(script, key=lambda e: e[0])):
        clock.set(ANCHOR + timedelta(minutes=minute))
        name = op[0]
        if name in ("job", "jobs"):
            if with_job:
                runs = [job.run(batch_size=2) for _ in range(1 if name == "job" else 2)]
                await asyncio.gather(*runs)
            continue
        try:
            if name == "spend":
                entry = await ledger.spend(user, int(op[1]), idempotency_key=f"s{n}")  # type: ignore[call-overload]
                answers.append(("spent", [(d.kind, d.amount) for d in entry.draws]))
            elif name == "hold":
                ttl = timedelta(minutes=int(op[2]))  # type: ignore[call-overload]
                hold = await ledger.hold(user, int(op[1]), idempotency_key=f"h{n}", ttl=ttl)  # type: ignore[call-overload]
                answers.append(("held", hold.amount))
            elif name == "grant":
                minutes = op[3]
                expires = None if minutes is None else clock.now + timedelta(minutes=int(minutes))  # type: ignore[call-overload]
                await ledger.grant(
                    user,
                    int(op[1]),
                    kind=op[2],
                    idempotency_key=f"g{n}",
                    expires_at=expires,  # type: ignore[arg-type, call-overload]
                )
            else:
                await ledger.unsubscribe(user)
        except InsufficientCredits as exc:
            answers.append(("refused", exc.available))
    clock.set(ANCHOR + timedelta(minutes=HORIZON + 1))
    if with_job:
        await job.run()
    balance = await ledger.balance(user)
    await ledger.verify(user)
    audited = await storage.audit(user)
    assert audited is not None
    journal = sorted(
        (e.created_at, e.type, e.amount, e.balance_after, e.description) for e in audited[2]
    )
    return answers, (balance.available, balance.held, balance.breakdown), journal


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    script=events,
    monthly=st.integers(10, 120),
    cap=st.integers(0, 150),
)
async def test_job_schedule_never_changes_the_outcome(
    stores: tuple[SQLAlchemyStorage, SQLAlchemyStorage],
    script: list[tuple[int, tuple[object, ...]]],
    monthly: int,
    cap: int,
) -> None:
    policy = CreditPolicy(trial_credits=0, rollover_cap=cap)
    scheduled, lazy = stores
    with_job = await play(scheduled, policy, monthly, script, with_job=True)
    without = await play(lazy, policy, monthly, script, with_job=False)
    assert with_job == without
