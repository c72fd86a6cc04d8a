"""The ResetJob: settle every account that time has made due, in batches.

Renewals, expiries and lapsed holds are recorded by the ledger itself on the
first call that touches an account, so balances are right whether or not the
job runs. The job is housekeeping at scale: it brings the journal up to date
for accounts nobody touched, with the same rules (``Book.settle``), batch by
batch, each batch one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from ._book import Book
from ._clock import Clock, as_utc, read_clock, utc_now
from ._validation import check_int
from .config import CreditPolicy
from .errors import InvalidRequest
from .storage.base import AccountState, Changes, DueBatch, ResetStorage

__all__ = ["ResetJob", "ResetReport"]

logger = logging.getLogger(__name__)

MAX_BATCH_SIZE = 10_000
_PIPELINE = 2  # batches in flight
_FAILED_SHOWN = 100


class ResetReport(BaseModel):
    """What one run of the reset job did (or, for a dry run, would do).

    Attributes:
        now: The instant the accounts were settled as of.
        dry_run: True if nothing was written.
        accounts_processed: Due accounts settled.
        accounts_renewed: Of those, accounts that entered at least one new period.
        periods_processed: Period boundaries processed, over all accounts
            (an account three periods behind counts three).
        monthly_credits_granted: Credits in new ``monthly`` grants.
        rollover_credits_created: Credits in new ``rollover`` grants.
        credits_expired: Credits lost to expiry: the ``expire`` entries less the
            part of them that carried over as rollover.
        holds_released: Lapsed holds whose credits were returned.
        accounts_failed: Accounts skipped because settling them raised; they
            stay due and are retried by the next run.
        failed_users: The first 100 of those user ids.
        batches: Batches committed (or, dry, read).
        duration_s: Wall time of the run, in seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    now: datetime
    dry_run: bool
    accounts_processed: int = 0
    accounts_renewed: int = 0
    periods_processed: int = 0
    monthly_credits_granted: int = 0
    rollover_credits_created: int = 0
    credits_expired: int = 0
    holds_released: int = 0
    accounts_failed: int = 0
    failed_users: tuple[str, ...] = ()
    batches: int = 0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True if no account failed."""
        return self.accounts_failed == 0

    def summary(self) -> str:
        """One line for logs and the CLI."""
        return (
            f"{'dry run: would settle' if self.dry_run else 'settled'} "
            f"{self.accounts_processed} accounts as of {self.now.isoformat()}: "
            f"{self.accounts_renewed} renewed ({self.periods_processed} periods), "
            f"{self.monthly_credits_granted} monthly credits granted, "
            f"{self.rollover_credits_created} rolled over, {self.credits_expired} expired, "
            f"{self.holds_released} holds released, {self.accounts_failed} failed; "
            f"{self.batches} batches in {self.duration_s:.2f} s"
        )


class ResetJob:
    """Renews allowances, expires credits and sweeps lapsed holds for all due accounts.

    Run it from your scheduler (cron, a Kubernetes CronJob, Celery beat…), as
    often as you like: every ``(account, period)`` is processed once (a
    unique index enforces it), so running it twice, late, or in several
    workers at once gives the state of one run at the right moments. Give it
    the same ``CreditPolicy`` as your ledger: renewals apply
    ``policy.rollover_cap`` and the spend priorities.

    Args:
        storage: The ledger's storage, e.g. a ``SQLAlchemyStorage``.
        policy: The ledger's policy.
        clock: Returns the current aware UTC datetime; tests pass their own.
    """

    def __init__(
        self,
        storage: ResetStorage,
        policy: CreditPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._storage = storage
        self.policy = policy or CreditPolicy()
        self._clock = clock or utc_now

    async def run(
        self,
        now: datetime | None = None,
        batch_size: int = 1000,
        *,
        dry_run: bool = False,
        on_batch: Callable[[ResetReport], None] | None = None,
    ) -> ResetReport:
        """Settle every account due at ``now``, ``batch_size`` accounts per transaction.

        Each batch commits on its own: if the run stops half-way, what was
        committed stays, and the next run picks up the rest. On PostgreSQL,
        concurrent runs share the work (each skips accounts another holds).
        An account whose settling raises is logged and skipped, the rest go on.

        Args:
            now: Settle as of this aware instant; default the clock. It may
                not be later than the clock, except for a dry run.
            batch_size: Accounts per batch, 1 to 10,000. Ledger calls on an
                account wait while a batch holding it commits (on SQLite, every
                write waits: the database has one writer).
            dry_run: Compute and report everything, write nothing.
            on_batch: Called after each batch with the totals so far.

        Returns:
            The totals of this run.

        Raises:
            InvalidRequest: A naive or future ``now``, or a bad ``batch_size``.
        """
        clock_now = read_clock(self._clock)
        at = clock_now if now is None else as_utc(now, name="now")
        if at > clock_now and not dry_run:
            raise InvalidRequest("now may not be in the future, except for a dry run")
        check_int(batch_size, "batch_size", minimum=1, maximum=MAX_BATCH_SIZE)
        started = time.perf_counter()
        totals = _Tally()
        # Batches go through a small pipeline: while one batch's rows are
        # written and committed, the next is read and computed, so the
        # database and Python work at the same time. Batches are opened one
        # at a time, each after the previous one's last account.
        after: object | None = None
        finished = False
        opening = asyncio.Lock()

        async def worker() -> None:
            nonlocal after, finished
            while True:
                async with contextlib.AsyncExitStack() as stack:
                    async with opening:
                        if finished:
                            return
                        batch = await stack.enter_async_context(
                            self._storage.due(at, limit=batch_size, after=after, write=not dry_run)
                        )
                        if not batch.states:
                            finished = True
                            return
                        after = batch.cursor
                    tally = await self._settle_batch(batch, at)
                    if not dry_run:
                        await batch.apply(tally.changes)
                # Counted only once the batch has committed.
                totals.merge(tally)
                if on_batch is not None:
                    on_batch(totals.report(at, dry_run, time.perf_counter() - started))

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(_PIPELINE):
                    group.create_task(worker())
        except BaseExceptionGroup as failure:
            # Callers get the error itself, as from any other call.
            raise failure.exceptions[0] from None
        report = totals.report(at, dry_run, time.perf_counter() - started)
        logger.info("reset job: %s", report.summary())
        return report

    def run_sync(
        self, now: datetime | None = None, batch_size: int = 1000, *, dry_run: bool = False
    ) -> ResetReport:
        """``run()`` for synchronous schedulers (cron scripts, Celery, APScheduler).

        Runs its own event loop, then releases the storage's pooled
        connections (they belong to that loop); the storage stays usable.
        Inside an async application, ``await run()`` instead.

        Raises:
            RuntimeError: Called from inside a running event loop.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("run_sync() inside an event loop; use `await job.run()` instead")

        async def run_and_release() -> ResetReport:
            try:
                return await self.run(now, batch_size, dry_run=dry_run)
            finally:
                await self._storage.close()

        return asyncio.run(run_and_release())

    async def _settle_batch(self, batch: DueBatch, at: datetime) -> _Tally:
        """Settle every account of a batch as of ``at``; the changes are in the tally.

        The same steps as the ledger's own settling of one account, with the
        grants that lapsed holds need fetched for the whole batch at once. An
        account whose settling raises is logged and left as it is.
        """
        books = [Book(state, at) for state in batch.states]
        wanted = [book.missing_grants() for book in books]
        missing = sorted(set().union(*wanted))
        if missing:
            fetched = {g.id: g for g in await batch.get_grants(missing)}
            for book, ids in zip(books, wanted, strict=True):
                book.load([fetched[i] for i in ids if i in fetched])
        tally = _Tally()
        for state, book in zip(batch.states, books, strict=True):
            try:
                book.settle(self.policy.rollover_cap, self.policy.priorities)
            except Exception:
                logger.exception("reset job: could not settle the account of %r", state.user_id)
                tally.fail(state.user_id)
            else:
                tally.add(state, book)
        return tally


# The report's counters, in the order it declares them.
_COUNTS = tuple(name for name, field in ResetReport.model_fields.items() if field.annotation is int)


class _Tally:
    """Running totals of a run."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_COUNTS, 0)
        self.failed: list[str] = []
        self.changes: list[Changes | None] = []  # one per account, None if it failed

    def add(self, state: AccountState, book: Book) -> None:
        changes = book.finish()
        self.changes.append(changes)
        c = self.counts
        c["accounts_processed"] += 1
        before, after = state.subscription, book.subscription
        periods = after.last_period - before.last_period if before and after else 0
        c["accounts_renewed"] += periods > 0
        c["periods_processed"] += periods
        for grant in changes.new_grants:
            if grant.kind == "monthly":
                c["monthly_credits_granted"] += grant.amount
            elif grant.kind == "rollover":
                c["rollover_credits_created"] += grant.amount
        # Credits lost: an allowance expires whole in the journal, and the
        # part that rolls over comes back as the new rollover grant.
        expired = -sum(e.amount for e in changes.new_entries if e.type == "expire")
        carried = sum(g.amount for g in changes.new_grants if g.kind == "rollover")
        c["credits_expired"] += expired - carried
        c["holds_released"] += sum(h.status == "expired" for h in changes.updated_holds)

    def fail(self, user_id: str) -> None:
        self.changes.append(None)
        self.counts["accounts_failed"] += 1
        self.failed.append(user_id)

    def merge(self, other: _Tally) -> None:
        for name, value in other.counts.items():
            self.counts[name] += value
        self.counts["batches"] += 1
        self.failed.extend(other.failed[: _FAILED_SHOWN - len(self.failed)])

    def report(self, now: datetime, dry_run: bool, duration: float) -> ResetReport:
        return ResetReport(
            now=now,
            dry_run=dry_run,
            failed_users=tuple(self.failed),
            duration_s=duration,
            **self.counts,
        )
