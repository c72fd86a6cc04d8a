"""The ResetJob on SQLite and PostgreSQL: the issue's acceptance scenarios,
idempotency, batching, dry runs, failures, and agreement with lazy settling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from prpm_playground import (
    CreditLedger,
    CreditPolicy,
    InvalidRequest,
    ResetJob,
    ResetReport,
    SQLAlchemyStorage,
)
from prpm_playground._book import Book
from prpm_playground.errors import StorageUnavailable
from prpm_playground.periods import period_start
from prpm_playground.storage.sql.due import SQLDueBatch
from prpm_playground.testing import ManualClock

from .conftest import INTEGRITY_ERRORS, Backend

ANCHOR = datetime(2027, 1, 31, 9, tzinfo=UTC)


def P(n: int) -> datetime:
    return period_start(ANCHOR, n)


@pytest.fixture
async def own(backend: Backend) -> AsyncIterator[SQLAlchemyStorage]:
    """A database of the test's own: the job settles every due account in it."""
    store = await backend.storage()
    yield store
    await store.close()


@pytest.fixture
def sub_clock() -> ManualClock:
    return ManualClock(ANCHOR)


Maker = Callable[..., tuple[CreditLedger, ResetJob]]


@pytest.fixture
def make(own: SQLAlchemyStorage, sub_clock: ManualClock) -> Maker:
    def build(**policy: object) -> tuple[CreditLedger, ResetJob]:
        settings = CreditPolicy(**{"trial_credits": 0, **policy})  # type: ignore[arg-type]
        return (
            CreditLedger(own, policy=settings, clock=sub_clock),
            ResetJob(own, policy=settings, clock=sub_clock),
        )

    return build


async def journal(storage: SQLAlchemyStorage, user: str) -> list[tuple[str, int]]:
    """The journal, oldest first, read without settling anything."""
    audited = await storage.audit(user)
    assert audited is not None
    return [(e.type, e.amount) for e in audited[2]]


async def test_acceptance_renewal(
    make: Maker, own: SQLAlchemyStorage, sub_clock: ManualClock
) -> None:
    # Allowance 100, 60 used, old rollover 15, purchased 20. Monthly credits
    # are spent first here, so the old rollover is still whole.
    ledger, job = make(priorities={"monthly": 5})
    await ledger.subscribe("u", monthly_credits=100)
    await ledger.spend("u", 85, idempotency_key="p0")  # period 0 leaves 15 → rollover 15
    sub_clock.set(P(1))
    await ledger.grant("u", 20, kind="purchased", idempotency_key="buy")
    await ledger.spend("u", 60, idempotency_key="p1")
    before = await journal(own, "u")

    sub_clock.set(P(2) + timedelta(hours=3))  # the job runs at 03:00, three hours late
    report = await job.run()
    assert (report.accounts_processed, report.accounts_renewed, report.periods_processed) == (
        1,
        1,
        1,
    )
    assert (report.monthly_credits_granted, report.rollover_credits_created) == (100, 40)
    assert report.credits_expired == 15  # the old rollover; the allowance's 40 carried over
    added = (await journal(own, "u"))[len(before) :]
    assert sorted(added) == sorted(
        [("expire", -15), ("expire", -40), ("rollover", 40), ("monthly", 100)]
    )

    balance = await ledger.balance("u")
    assert balance.breakdown["monthly"] == 100
    assert balance.breakdown["rollover"] == 40
    assert balance.breakdown["purchased"] == 20
    assert balance.available == 160
    assert balance.rollover_expires_at == P(3)
    # A second run changes nothing.
    again = await job.run()
    assert (again.accounts_processed, again.batches) == (0, 0)
    assert await journal(own, "u") == before + added
    await ledger.verify("u")


async def test_rollover_capped(make: Maker, sub_clock: ManualClock) -> None:
    ledger, job = make(rollover_cap=200)
    await ledger.subscribe("u", monthly_credits=250)
    sub_clock.set(P(1))
    report = await job.run()
    assert (report.rollover_credits_created, report.credits_expired) == (200, 50)
    balance = await ledger.balance("u")
    assert (balance.breakdown["rollover"], balance.breakdown["monthly"]) == (200, 250)
    assert balance.total == 450


async def test_unsubscribed_account(make: Maker, sub_clock: ManualClock) -> None:
    ledger, job = make(priorities={"monthly": 5})
    await ledger.subscribe("u", monthly_credits=100)
    await ledger.spend("u", 90, idempotency_key="p0")  # rollover 10 in period 1
    sub_clock.set(P(1))
    await ledger.grant("u", 50, kind="purchased", idempotency_key="buy")
    await ledger.spend("u", 70, idempotency_key="p1")  # monthly 30 left
    await ledger.unsubscribe("u")
    sub_clock.set(P(2) + timedelta(days=1))
    report = await job.run()
    assert (report.monthly_credits_granted, report.rollover_credits_created) == (0, 0)
    assert report.credits_expired == 40
    balance = await ledger.balance("u")
    assert (balance.available, balance.breakdown["purchased"], balance.monthly) == (50, 50, None)
    # Nothing is scheduled any more: later runs never visit the account.
    sub_clock.set(P(6))
    assert (await job.run()).accounts_processed == 0
    await ledger.verify("u")


async def snapshot(ledger: CreditLedger, user: str) -> tuple[object, ...]:
    balance = await ledger.balance(user)
    totals: dict[str, int] = {}
    async for line in ledger.export_csv(user):
        if line.startswith("created_at"):
            continue
        _, kind, amount, _ = line.split(",", 3)
        totals[kind] = totals.get(kind, 0) + int(amount)
    return balance.available, balance.held, balance.breakdown, totals


async def test_three_periods_late_equals_every_boundary(
    backend: Backend, sub_clock: ManualClock
) -> None:
    async def scenario(run_at: list[datetime]) -> tuple[object, ...]:
        storage = await backend.storage()
        clock = ManualClock(ANCHOR)
        policy = CreditPolicy(trial_credits=0)
        ledger = CreditLedger(storage, policy=policy, clock=clock)
        job = ResetJob(storage, policy=policy, clock=clock)
        await ledger.subscribe("u", monthly_credits=100)
        await ledger.grant(
            "u", 30, kind="bonus", idempotency_key="b", expires_at=P(1) + timedelta(days=9)
        )
        await ledger.spend("u", 30, idempotency_key="s")
        await ledger.hold("u", 20, idempotency_key="h", ttl=timedelta(days=7))  # lapses
        for at in run_at:
            clock.set(at)
            await job.run()
        clock.set(P(3) + timedelta(hours=5))
        await job.run()
        result = await snapshot(ledger, "u")
        await ledger.verify("u")
        await storage.close()
        return result

    every = await scenario([P(0) + timedelta(days=7), P(1), P(1) + timedelta(days=9), P(2), P(3)])
    once = await scenario([])
    assert once == every
    assert once[2]["monthly"] == 100  # type: ignore[index]


async def test_batches_dry_run_and_lazy_agree(
    make: Maker, own: SQLAlchemyStorage, sub_clock: ManualClock
) -> None:
    ledger, job = make()
    users = [f"u{i:02d}" for i in range(23)]
    for i, user in enumerate(users):
        await ledger.subscribe(user, monthly_credits=10 + i)
        if i % 7:
            await ledger.spend(user, i % 7, idempotency_key="s")
    sub_clock.set(P(1) + timedelta(minutes=1))
    assert await own.count_due(sub_clock.now) == len(users)

    dry = await job.run(batch_size=5, dry_run=True)
    assert (dry.dry_run, dry.accounts_processed, dry.batches) == (True, len(users), 5)
    assert await own.count_due(sub_clock.now) == len(users)  # nothing was written

    lazily = await ledger.balance(users[3])  # the ledger settles this one itself
    seen: list[ResetReport] = []
    report = await job.run(batch_size=5, on_batch=seen.append)
    assert report.accounts_processed == len(users) - 1
    # Running totals, batch by batch (batches may commit in either order of two).
    assert len(seen) == 5
    assert [r.accounts_processed for r in seen] == sorted(r.accounts_processed for r in seen)
    assert seen[-1].accounts_processed == 22
    assert report.monthly_credits_granted == dry.monthly_credits_granted - (10 + 3)
    assert await own.count_due(sub_clock.now) == 0
    assert (await ledger.balance(users[3])) == lazily
    for i, user in enumerate(users):
        balance = await ledger.balance(user)
        assert balance.breakdown["monthly"] == 10 + i
        assert balance.breakdown["rollover"] == 10 + i - i % 7
        await ledger.verify(user)


async def test_lapsed_holds_are_swept_with_an_entry(make: Maker, sub_clock: ManualClock) -> None:
    ledger, job = make()
    await ledger.grant("u", 10, kind="purchased", idempotency_key="buy")
    hold = await ledger.hold("u", 4, idempotency_key="h", ttl=timedelta(minutes=15))
    sub_clock.advance(timedelta(minutes=14))
    assert (await job.run()).accounts_processed == 0  # not due yet
    sub_clock.advance(timedelta(minutes=2))
    report = await job.run()
    assert (report.accounts_processed, report.holds_released) == (1, 1)
    (entry,) = (await ledger.history("u", types=["release"])).entries
    assert (entry.hold_id, entry.amount, entry.balance_after) == (hold.id, 0, 10)


async def test_spends_between_runs_are_kept(make: Maker, sub_clock: ManualClock) -> None:
    ledger, job = make(rollover_cap=0)
    await ledger.subscribe("u", monthly_credits=50)
    sub_clock.set(P(1) + timedelta(seconds=1))
    await ledger.spend("u", 7, idempotency_key="after-midnight")  # before the job ran
    sub_clock.set(P(1) + timedelta(hours=3))
    assert (await job.run()).accounts_processed == 0  # the ledger already renewed it
    assert (await ledger.balance("u")).available == 43


async def test_failing_account_is_skipped_and_stays_due(
    make: Maker, own: SQLAlchemyStorage, sub_clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, job = make()
    for user in ("a", "b", "c"):
        await ledger.subscribe(user, monthly_credits=10)
    await ledger.grant("b", 1, kind="bonus", idempotency_key="x", description="poison")
    real = Book.settle

    def settle(self: Book, *args: object, **kwargs: object) -> None:
        if any(g.description == "poison" for g in self.grants.values()):
            raise RuntimeError("corrupt account")
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    sub_clock.set(P(1))
    monkeypatch.setattr(Book, "settle", settle)
    report = await job.run(batch_size=2)
    assert (report.accounts_processed, report.accounts_failed) == (2, 1)
    assert (report.failed_users, report.ok) == (("b",), False)
    assert await own.count_due(sub_clock.now) == 1
    monkeypatch.setattr(Book, "settle", real)
    assert (await job.run()).accounts_processed == 1


async def test_bad_arguments(make: Maker, sub_clock: ManualClock) -> None:
    _, job = make()
    with pytest.raises(InvalidRequest):
        await job.run(now=datetime(2027, 1, 1))  # naive
    with pytest.raises(InvalidRequest):
        await job.run(now=sub_clock.now + timedelta(seconds=1))
    for size in (0, 10_001, True, 2.0):
        with pytest.raises(InvalidRequest):
            await job.run(batch_size=size)  # type: ignore[arg-type]
    future = await job.run(now=sub_clock.now + timedelta(days=400), dry_run=True)
    assert future.dry_run
    with pytest.raises(RuntimeError, match="event loop"):
        job.run_sync()


def test_run_sync_twice_in_fresh_loops(tmp_path: object) -> None:
    storage = SQLAlchemyStorage(f"sqlite+aiosqlite:///{tmp_path}/sync.db")
    clock = ManualClock(ANCHOR)
    ledger = CreditLedger(storage, clock=clock)

    async def setup() -> None:
        await storage.migrate()
        await ledger.subscribe("u", monthly_credits=10)
        await storage.close()

    asyncio.run(setup())
    job = ResetJob(storage, clock=clock)
    clock.set(P(1))
    assert job.run_sync().accounts_renewed == 1
    clock.set(P(2))
    assert job.run_sync().accounts_renewed == 1
    assert job.run_sync().accounts_processed == 0


async def test_a_run_that_dies_half_way_loses_nothing(
    make: Maker, own: SQLAlchemyStorage, sub_clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, job = make()
    users = [f"u{i}" for i in range(12)]
    for user in users:
        await ledger.subscribe(user, monthly_credits=20)
    sub_clock.set(P(1))
    real = SQLDueBatch.apply
    calls = 0

    async def dies_on_the_third_batch(self: SQLDueBatch, changes: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConnectionError("database went away")
        await real(self, changes)  # type: ignore[arg-type]

    monkeypatch.setattr(SQLDueBatch, "apply", dies_on_the_third_batch)
    with pytest.raises(StorageUnavailable):  # a passing failure: the caller may retry
        await job.run(batch_size=3)
    left = await own.count_due(sub_clock.now)
    assert 0 < left < len(users)  # some batches committed whole, the rest stayed due
    monkeypatch.setattr(SQLDueBatch, "apply", real)
    report = await job.run(batch_size=3)
    assert report.accounts_processed == left
    for user in users:  # every account renewed exactly once
        balance = await ledger.balance(user)
        assert (balance.breakdown["monthly"], balance.breakdown["rollover"]) == (20, 20)
        assert len((await ledger.history(user, types=["monthly"])).entries) == 2
        await ledger.verify(user)


async def test_ledger_calls_during_a_run(
    make: Maker, own: SQLAlchemyStorage, sub_clock: ManualClock
) -> None:
    """Spends on due accounts while the job settles them: each renewal happens once."""
    ledger, job = make(rollover_cap=0)
    users = [f"u{i}" for i in range(30)]
    for user in users:
        await ledger.subscribe(user, monthly_credits=10)
    sub_clock.set(P(1) + timedelta(hours=1))

    async def spend_all() -> None:
        for user in reversed(users):  # meets the job's batches from the other end
            await ledger.spend(user, 3, idempotency_key="during")

    report, _ = await asyncio.gather(job.run(batch_size=4), spend_all())
    assert report.accounts_processed <= len(users)
    assert await own.count_due(sub_clock.now) == 0
    for user in users:
        balance = await ledger.balance(user)
        assert balance.available == 7  # the new allowance, less the spend
        assert len((await ledger.history(user, types=["monthly"])).entries) == 2
        await ledger.verify(user)


async def test_one_allowance_per_period_is_enforced_by_the_database(
    make: Maker, own: SQLAlchemyStorage, sub_clock: ManualClock
) -> None:
    """A writer deciding from a stale read cannot grant a period twice."""
    ledger, job = make()
    await ledger.subscribe("u", monthly_credits=10)
    async with own.account("u", write=False) as unit:
        stale = unit.state  # read before the renewal
    sub_clock.set(P(1))
    assert (await job.run()).accounts_renewed == 1

    async def renew_again() -> None:
        async with own.account("u", write=True) as unit:
            book = Book(stale, sub_clock.now)
            book.settle(200)
            await unit.apply(book.finish())  # a second monthly grant for period 1

    with pytest.raises(INTEGRITY_ERRORS):
        await renew_again()
    assert len((await ledger.history("u", types=["monthly"])).entries) == 2
    await ledger.verify("u")


async def test_lapsed_hold_on_a_drained_grant(make: Maker, sub_clock: ManualClock) -> None:
    """The hold took all of a grant, so the batch must fetch that grant to return it."""
    ledger, job = make()
    await ledger.grant("u", 6, kind="purchased", idempotency_key="buy")
    await ledger.grant(
        "u", 4, kind="bonus", idempotency_key="gift", expires_at=P(0) + timedelta(days=1)
    )
    await ledger.hold("u", 10, idempotency_key="h", ttl=timedelta(hours=2))  # drains both
    sub_clock.advance(timedelta(days=2))  # the hold lapses, then the bonus expires
    report = await job.run()
    assert (report.holds_released, report.credits_expired) == (1, 4)
    balance = await ledger.balance("u")
    assert (balance.available, balance.held) == (6, 0)
    await ledger.verify("u")
