"""The PlaygroundRunner: a prompt package run against a model, held then charged.

Money flow of one run (DESIGN.md §4, rules 5 and 6):

1. ``Estimator.prepare`` checks everything (model, package, session, limits,
   context window) and prices the worst case; nothing is held yet.
2. The run holds that worst case under the key ``run:{run_id}``. A user who
   cannot afford it gets ``InsufficientCredits`` before any model call.
3. The model streams, until the run's deadline at the latest. Settlement
   starts when the provider's final usage report arrives (or, if the stream
   ends without one, in a ``finally``), in a task shielded from
   cancellation: the actual cost (never more than held) is captured and the
   rest returns at once; a failure before any output releases everything.
4. The exchange is appended to the session: in the capture's transaction
   where the storage allows, else saved just before the capture, so a run
   is never charged without its exchange saved. A session deleted while the
   run went on stays deleted; the run is still charged.
5. A settlement that meets a passing storage failure is retried with
   backoff; if the database stays down, it goes on in the background for
   ``settle_window``, and a run it finally could not settle is logged and
   kept in ``unsettled``. The hold outlives the whole window, so it is never
   swept from under a run that is still settling.

The run id is the idempotency key: a retry with the same id returns the
first run's result and is never charged again; a run that failed (before
any output or during it) answers ``run_failed``, one whose session was
deleted ``not_found``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, aclosing, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ._clock import Clock, read_clock, utc_now
from ._deadline import DeadlinePassed, StreamDeadline
from ._ids import new_id
from ._validation import check_text_id
from .errors import (
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    ModelUnavailable,
    NotFound,
    PlaygroundError,
    RunFailed,
    RunInProgress,
    StorageUnavailable,
)
from .estimator import Estimator, PreparedRun
from .ledger import CreditLedger
from .models import (
    Balance,
    CompareEvent,
    CompareRequest,
    Comparison,
    Hold,
    RunDelta,
    RunDone,
    RunError,
    RunEvent,
    RunRequest,
    RunResult,
    RunStarted,
    RunUsage,
    Usage,
    VariantDelta,
    VariantDone,
    VariantError,
    VariantOutcome,
    VariantStarted,
    VariantUsage,
)
from .providers.base import Provider, TextDelta
from .providers.tokens import approx_tokens
from .sessions import _title
from .storage.base import ExchangeRecord, SessionRecord, SessionStorage, SharedCommit

__all__ = ["PlaygroundRunner", "UnsettledRun"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# A hold must outlive the model call it pays for and the settlement's
# retries, or it would lapse (and its credits return) while the run is still
# streaming or settling.
_HOLD_MARGIN = timedelta(minutes=1)
_MAX_HOLD_TTL = timedelta(days=7)
DEFAULT_SETTLE_WAIT = timedelta(seconds=5)
DEFAULT_SETTLE_WINDOW = timedelta(minutes=10)
# Backoff between a settlement's attempts: the first wait, and the longest.
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 2.0


@dataclass(frozen=True, slots=True)
class UnsettledRun:
    """A run whose settlement gave up: what it consumed was never recorded.

    Attributes:
        user_id: The user.
        run_id: The run.
        credits: What it should have been charged (0 for a release).
        hold_id: Its hold, which lapses on its own and returns its credits.
    """

    user_id: str
    run_id: str
    credits: int
    hold_id: str


@dataclass(slots=True)
class _Run:
    """A run that holds its credits and has not been settled yet."""

    prepared: PreparedRun
    run_id: str
    session_id: str
    hold: Hold
    available_before: int
    comparison_id: str | None = None
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    final: bool = False
    stop_reason: str | None = None


class PlaygroundRunner:
    """Runs prompt packages against a model for users who pay in credits.

    Args:
        ledger: The credit ledger runs are held and charged on.
        estimator: Prepares and prices runs (and holds the catalog and pricing).
        provider: The model provider.
        sessions: Where conversations are saved.
        clock: Returns the current aware UTC datetime; tests pass their own.
        settle_wait: How long a settlement that meets a database outage
            retries before its run answers (``StorageUnavailable``); it then
            goes on in the background.
        settle_window: How long it goes on in the background before the run
            is given up as unsettled (logged, and kept in ``unsettled``).
            Holds outlive their run's deadline by both, so a hold is never
            swept from under a run that is still settling.

    Attributes:
        unsettled: Runs whose settlement gave up, oldest first: the database
            stayed unavailable for the whole ``settle_window``.
    """

    def __init__(
        self,
        ledger: CreditLedger,
        estimator: Estimator,
        provider: Provider,
        sessions: SessionStorage,
        *,
        clock: Clock | None = None,
        settle_wait: timedelta = DEFAULT_SETTLE_WAIT,
        settle_window: timedelta = DEFAULT_SETTLE_WINDOW,
    ) -> None:
        for name, value in (("settle_wait", settle_wait), ("settle_window", settle_window)):
            if not isinstance(value, timedelta) or not timedelta(0) <= value <= timedelta(days=1):
                raise InvalidRequest(f"{name} must be a timedelta from 0 to 1 day")
        self.ledger = ledger
        self.estimator = estimator
        self.provider = provider
        self.sessions = sessions
        self.settle_wait = settle_wait
        self.settle_window = settle_window
        self.unsettled: list[UnsettledRun] = []
        self._clock = clock or utc_now
        # Settlements that outlive a cancelled caller, and those retrying in
        # the background; kept so they are not garbage-collected half-way.
        self._settling: set[asyncio.Task[Any]] = set()

    async def aclose(self) -> None:
        """Stop the settlements still retrying in the background.

        Each one stopped is logged and recorded in ``unsettled``; its hold
        lapses on its own. Settlements of runs still being answered finish.
        """
        background = [task for task in self._settling if task.get_name().startswith("settle-later")]
        for task in background:
            task.cancel()
        if background:
            await asyncio.wait(background)

    async def run(self, user_id: str, request: RunRequest) -> RunResult:
        """Run ``request`` for ``user_id`` and return the result when it is complete.

        Raises:
            InsufficientCredits: The user cannot afford the run's hold; the
                model was not called.
            InvalidRequest: Bad request, unknown model, over a limit or the
                context window; nothing was held.
            NotFound: Unknown package, or a session the user does not own.
            RunInProgress: A run with this ``run_id`` is still running.
            RateLimited, ModelOverloaded, ModelUnavailable, ProviderMisconfigured:
                The model failed; only output already produced was charged.
        """
        started = await self._start(user_id, request)
        if isinstance(started, RunResult):
            return started
        return await self._complete(started)

    async def stream(self, user_id: str, request: RunRequest) -> AsyncGenerator[RunEvent, None]:
        """Run ``request`` for ``user_id``, yielding events as they happen.

        Errors found before anything is held (those ``run`` raises before
        calling the model, including ``InsufficientCredits``) are raised
        before the first event, so a web layer can answer with an HTTP
        status. After ``started``, a failure is a final ``error`` event.

        Stop iterating (or cancel the task) to abandon the run: the upstream
        stream is closed and the user is charged only for what was produced.
        Close the iterator (``contextlib.aclosing``) rather than dropping it,
        so that happens at once.

        Yields:
            ``started`` (run id, session id, hold, estimate), then ``delta``
            and ``usage`` events, then ``done`` with the ``RunResult`` or ``error``.
        """
        started = await self._start(user_id, request)
        if isinstance(started, RunResult):
            yield RunDone(result=started)
            return
        async with aclosing(self._execute(started)) as events:
            try:
                async for event in events:
                    yield event
            except PlaygroundError as exc:
                yield _error_event(exc)

    async def compare(self, user_id: str, request: CompareRequest) -> Comparison:
        """Run one input on 2 to 4 variants in parallel.

        Every variant is held before any runs; if the user cannot afford all
        of them, none runs and ``InsufficientCredits`` reports the total.
        Each variant is charged separately and saved to its own session, the
        sessions linked by the comparison's id.

        Raises:
            InsufficientCredits: The user cannot afford every variant.
            InvalidRequest, NotFound: As for ``run``, for any variant.
        """
        compare_id, started = await self._hold_variants(user_id, request)
        tasks = [
            asyncio.ensure_future(self._outcome(index, one)) for index, one in enumerate(started)
        ]
        try:
            outcomes = await asyncio.gather(*tasks)
        finally:
            await _settled(tasks)
        return Comparison(id=compare_id, outcomes=tuple(outcomes))

    async def compare_stream(
        self, user_id: str, request: CompareRequest
    ) -> AsyncGenerator[CompareEvent, None]:
        """Like ``compare``, as the variants' events, interleaved as they happen.

        Every variant is held before the first event, so errors before that
        (``InsufficientCredits`` for the total, an unknown package) are raised,
        not sent. Each event is a run event with the variant's index; each
        variant ends with ``done`` or ``error`` and the others go on. Closing
        the stream early cancels the variants still running, each charged
        for what it produced, and returns once all are settled.

        Raises:
            InsufficientCredits: The user cannot afford every variant.
            InvalidRequest, NotFound: As for ``run``, for any variant.
        """
        compare_id, started = await self._hold_variants(user_id, request)
        queue: asyncio.Queue[tuple[int, RunEvent] | None] = asyncio.Queue()

        async def relay(index: int, one: _Run | RunResult) -> None:
            try:
                if isinstance(one, RunResult):  # replayed: no second run
                    await queue.put((index, RunDone(result=one)))
                    return
                try:
                    async with aclosing(self._execute(one)) as events:
                        async for event in events:
                            await queue.put((index, event))
                except PlaygroundError as exc:
                    await queue.put((index, _error_event(exc)))
            finally:
                queue.put_nowait(None)

        tasks = [asyncio.ensure_future(relay(i, one)) for i, one in enumerate(started)]
        try:
            running = len(tasks)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                    continue
                index, event = item
                yield _of_variant(event, index, compare_id)
        finally:
            await _settled(tasks)
        for task in tasks:  # a relay ends by exception only through a bug: surface it
            task.result()

    async def _hold_variants(
        self, user_id: str, request: CompareRequest
    ) -> tuple[str, list[_Run | RunResult]]:
        """Check and hold every variant, or none: the comparison's id and its runs."""
        check_text_id(user_id, "user_id")
        if not isinstance(request, CompareRequest):
            raise InvalidRequest("request must be a CompareRequest")
        compare_id = request.compare_id or new_id("cmp")
        runs = [
            RunRequest(
                package_id=variant.package_id,
                package_version=variant.package_version,
                no_prompt=variant.no_prompt,
                model=variant.model,
                input=request.input,
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                run_id=f"{compare_id}:{index}",
            )
            for index, variant in enumerate(request.variants)
        ]
        prepared = [await self.estimator.prepare(user_id, run, ask_provider=False) for run in runs]
        started: list[_Run | RunResult] = []
        try:
            for one in prepared:
                started.append(await self._hold(one, comparison_id=compare_id))
        except InsufficientCredits as exc:
            await self._release_all(started)
            required = sum(one.max_credits for one in prepared)
            raise InsufficientCredits(required, exc.available + _held(started)) from exc
        except BaseException:
            await self._release_all(started)
            raise
        return compare_id, started

    # -- starting -----------------------------------------------------------------------

    async def _start(self, user_id: str, request: RunRequest) -> _Run | RunResult:
        prepared = await self.estimator.prepare(user_id, request, ask_provider=False)
        return await self._hold(prepared)

    async def _hold(
        self, prepared: PreparedRun, *, comparison_id: str | None = None
    ) -> _Run | RunResult:
        user_id, request = prepared.user_id, prepared.request
        run_id = request.run_id or new_id("run")
        ttl = min(
            max(
                self.ledger.policy.hold_ttl,
                timedelta(seconds=prepared.completion.deadline)
                + _HOLD_MARGIN
                + self.settle_wait
                + self.settle_window,
            ),
            _MAX_HOLD_TTL,
        )
        hold, placed, after = await self.ledger._place_hold(
            user_id, prepared.max_credits, idempotency_key=f"run:{run_id}", ttl=ttl
        )
        if not placed:
            return await self._replay(user_id, run_id, hold)
        session_id = prepared.session.id if prepared.session else new_id("ses")
        return _Run(
            prepared=prepared,
            run_id=run_id,
            session_id=session_id,
            hold=hold,
            available_before=after.available + hold.amount,
            comparison_id=comparison_id,
        )

    async def _replay(self, user_id: str, run_id: str, hold: Hold) -> RunResult:
        """The answer to a run id seen before: its result, or why there is none.

        Every run that has ended gets a final answer: its saved result (a
        run the client stopped included), ``RunFailed`` for one the model or
        the database ended (with output or without), ``NotFound`` for one
        whose session was deleted. Only a run still streaming or settling
        answers ``RunInProgress``.
        """
        saved = await self.sessions.exchange_by_run(user_id, run_id)
        if saved is not None:
            session, exchange = saved
            if exchange.stop_reason == "error":
                raise RunFailed(run_id, session_id=session.id)
            balance = await self.ledger.balance(user_id)
            return _result(run_id, session.id, exchange, balance.available, ())
        if hold.status == "active":
            raise RunInProgress(run_id)
        if hold.status == "captured":
            # Charged with no exchange: its session was deleted while it ran.
            raise NotFound(f"the session of run {run_id!r} was deleted")
        raise RunFailed(run_id)

    async def _release_all(self, started: list[_Run | RunResult]) -> None:
        for one in started:
            if isinstance(one, _Run):
                await _shielded(self.ledger.release(one.hold.id))

    # -- running ------------------------------------------------------------------------

    async def _execute(self, run: _Run) -> AsyncGenerator[RunEvent, None]:
        prepared = run.prepared
        began = time.monotonic()
        failure: BaseException | None = None
        settling: asyncio.Task[RunResult | None] | None = None
        try:
            # Inside the try: a consumer that stops right after ``started``
            # still gets its hold back.
            yield RunStarted(
                run_id=run.run_id,
                session_id=run.session_id,
                hold_id=run.hold.id,
                held=run.hold.amount,
                estimate=self.estimator.estimate_of(prepared, run.available_before),
            )
            # The run's own deadline, whatever the provider does: a stream
            # that goes on past it is cut there and charged what it delivered.
            deadline = StreamDeadline(prepared.completion.deadline)
            try:
                async with self.provider.stream(prepared.completion) as events:
                    while True:
                        try:
                            event = await deadline.next(events)
                        except StopAsyncIteration:
                            break
                        except DeadlinePassed:
                            raise ModelUnavailable(
                                f"the run passed its deadline of {deadline.seconds:g} s"
                            ) from None
                        if isinstance(event, TextDelta):
                            if event.text:
                                run.parts.append(event.text)
                                yield RunDelta(text=event.text)
                            continue
                        run.usage, run.final = event.usage, event.final
                        run.stop_reason = event.stop_reason or run.stop_reason
                        if run.final and settling is None:
                            # All the run is charged for is known: settle while
                            # the provider's stream winds down (sleep(0) lets the
                            # settlement send its first statement before that).
                            settling = self._start_settling(run, None, _since(began))
                            await asyncio.sleep(0)
                        yield RunUsage(usage=event.usage)
            finally:
                deadline.close()
        except BaseException as exc:
            if settling is None or not isinstance(exc, Exception):
                failure = exc
                raise
            # The final report had come: the run is complete, and settled as such.
            logger.debug("provider failed after its final report: %r", exc)
        finally:
            if settling is None:
                settling = self._start_settling(run, failure, _since(began))
            result = await asyncio.shield(settling)
        if result is not None:
            yield RunDone(result=result)

    def _start_settling(
        self, run: _Run, failure: BaseException | None, duration_ms: int
    ) -> asyncio.Task[RunResult | None]:
        """Settle in a task of its own, which a cancelled caller cannot stop half-way."""
        task = asyncio.ensure_future(self._settle(run, failure, duration_ms))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return task

    async def _settle(
        self, run: _Run, failure: BaseException | None, duration_ms: int
    ) -> RunResult | None:
        """Charge what the run consumed, return the rest, save what it produced."""
        prepared = run.prepared
        # PostgreSQL cannot store NUL; a model that sends one must not make a
        # paid result unsaveable.
        text = "".join(run.parts).replace("\x00", "\ufffd")
        error = failure is not None and not isinstance(
            failure, asyncio.CancelledError | GeneratorExit
        )
        if failure is None:
            usage = run.usage or _approx_usage(prepared, text)
            stop_reason = run.stop_reason
        else:
            usage = _so_far(run, prepared, text)
            stop_reason = "error" if error else "cancelled"
        if (error and not text) or (failure is not None and not text and run.usage is None):
            # Nothing came back (or nothing is known to have been consumed):
            # the user pays nothing.
            await self._persist(run, 0, lambda: self.ledger.release(run.hold.id))
            logger.info("run released in full (%s)", type(failure).__name__)
            return None
        cost = min(self.estimator.credits_for(prepared.model, usage), run.hold.amount)
        now = read_clock(self._clock)
        record, exchange = self._records(run, text, usage, cost, duration_ms, stop_reason, now)
        saved, balance = await self._persist(
            run, cost, lambda: self._charge_and_save(run, cost, record, exchange)
        )
        if saved is None:
            raise NotFound(
                f"session {run.session_id!r} was deleted while the run went on; "
                f"the run was charged {cost} credits for what it produced"
            )
        if failure is not None:
            return None
        warnings = prepared.package.warnings if prepared.package else ()
        return _result(run.run_id, run.session_id, saved, balance.available, warnings)

    async def _charge_and_save(
        self, run: _Run, cost: int, record: SessionRecord, exchange: ExchangeRecord
    ) -> tuple[ExchangeRecord | None, Balance]:
        """Capture ``cost`` and append the exchange: None for it if the session is gone.

        Both steps are idempotent, so the whole may be tried again. Joined in
        one commit where the storage can (capture first: a refused save
        still commits the charge); else the exchange is saved first, so a
        run is never charged without its exchange (a failure between the
        two is retried; a run saved but never charged is logged unsettled).
        """

        async def capture() -> Balance:
            _, balance = await self.ledger._capture(
                run.hold.id, cost, description=_describe(run.prepared), user_id=record.user_id
            )
            return balance

        async with self._together() as joined:
            if joined:
                balance = await capture()
                saved = await self._save(run, record, exchange)
            else:
                saved = await self._save(run, record, exchange)
                balance = await capture()
        return saved, balance

    def _together(self) -> AbstractAsyncContextManager[bool]:
        storage: object = self.sessions
        if storage is self.ledger.storage and isinstance(storage, SharedCommit):
            return storage.together()
        return nullcontext(False)

    def _records(
        self,
        run: _Run,
        text: str,
        usage: Usage,
        cost: int,
        duration_ms: int,
        stop_reason: str | None,
        now: datetime,
    ) -> tuple[SessionRecord, ExchangeRecord]:
        """The session to append to (count 0: a new one) and the exchange to append."""
        prepared = run.prepared
        session = prepared.session
        count = session.exchange_count if session else 0
        record = SessionRecord(
            id=run.session_id,
            user_id=prepared.user_id,
            package_id=prepared.package_id,
            package_version=prepared.package_version,
            no_prompt=prepared.package is None,
            created_at=session.created_at if session else now,
            updated_at=now,
            title=session.title if session else _title(prepared.request.input),
            exchange_count=count,
            comparison_id=session.comparison_id if session else run.comparison_id,
        )
        exchange = ExchangeRecord(
            index=count,
            input=prepared.request.input,
            response=text,
            model=prepared.model.id,
            usage=usage,
            credits_spent=cost,
            run_id=run.run_id,
            created_at=now,
            duration_ms=duration_ms,
            stop_reason=stop_reason,
        )
        return record, exchange

    async def _save(
        self, run: _Run, record: SessionRecord, exchange: ExchangeRecord
    ) -> ExchangeRecord | None:
        """Append the exchange at the session's next index; None if the session was deleted."""
        try:
            index = await self.sessions.save_exchange(record, exchange)
        except NotFound:
            logger.info("a run's session was deleted while it ran; its exchange is dropped")
            return None
        except Conflict:
            # Saved by an earlier attempt whose answer was lost (the
            # connection died after the commit): the run id says so.
            found = await self.sessions.exchange_by_run(record.user_id, run.run_id)
            if found is None:
                raise
            return found[1]
        return replace(exchange, index=index)

    async def _persist(self, run: _Run, credits: int, step: Callable[[], Awaitable[_T]]) -> _T:
        """Run a settlement step, retrying while the database is unavailable.

        Retries with backoff for a few seconds; then the run answers
        ``StorageUnavailable`` and the step goes on in the background (see
        ``_settle_later``). The hold outlives both, so it is still there to
        capture or release.
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.settle_wait.total_seconds()
        delay = _FIRST_BACKOFF_S
        while True:
            try:
                return await step()
            except StorageUnavailable:
                if loop.time() + delay > give_up:
                    self._settle_later(run, credits, step)
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)

    def _settle_later(self, run: _Run, credits: int, step: Callable[[], Awaitable[Any]]) -> None:
        """Go on with a settlement step in the background until ``settle_window`` ends."""
        user_id = run.prepared.user_id

        async def retry() -> None:
            loop = asyncio.get_running_loop()
            give_up = loop.time() + self.settle_window.total_seconds()
            delay = _FIRST_BACKOFF_S
            try:
                while True:
                    await asyncio.sleep(delay)
                    try:
                        await step()
                    except StorageUnavailable:
                        if loop.time() + delay > give_up:
                            break
                        delay = min(delay * 2, _MAX_BACKOFF_S)
                        continue
                    logger.info("a run's settlement succeeded in the background")
                    return
            except asyncio.CancelledError:
                self._give_up(run, credits, "the runner was closed")
                raise
            except Exception as exc:
                self._give_up(run, credits, f"{type(exc).__name__}")
                return
            self._give_up(run, credits, "the database stayed unavailable")

        task = asyncio.get_running_loop().create_task(retry(), name=f"settle-later:{run.run_id}")
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        logger.warning("settlement of a run for %s deferred: the database is unavailable", user_id)

    def _give_up(self, run: _Run, credits: int, why: str) -> None:
        gone = UnsettledRun(run.prepared.user_id, run.run_id, credits, run.hold.id)
        self.unsettled.append(gone)
        logger.error(
            "run left unsettled (%s): user=%s run=%s credits=%s hold=%s",
            why,
            gone.user_id,
            gone.run_id,
            gone.credits,
            gone.hold_id,
        )

    async def _complete(self, run: _Run) -> RunResult:
        """Run to the end; the result, or the error that ended the run."""
        result: RunResult | None = None
        async with aclosing(self._execute(run)) as events:
            async for event in events:
                if isinstance(event, RunDone):
                    result = event.result
        assert result is not None  # _execute ends with done or raises
        return result

    async def _outcome(self, index: int, started: _Run | RunResult) -> VariantOutcome:
        if isinstance(started, RunResult):
            return VariantOutcome(index=index, result=started)
        try:
            return VariantOutcome(index=index, result=await self._complete(started))
        except PlaygroundError as exc:
            return VariantOutcome(index=index, error=_error_event(exc))


def _since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)


def _error_event(exc: PlaygroundError) -> RunError:
    return RunError(error=exc.code, message=exc.message, details=exc.details())


async def _settled(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait until every variant has ended and settled, cancelling those still running.

    gather gives up at the first variant that ends by cancellation, and a
    consumer may stop reading early; either way every variant must settle
    before the comparison ends. A variant already being cancelled is not
    cancelled again: that would abandon its settlement.
    """
    for task in tasks:
        if not task.done() and not (isinstance(task, asyncio.Task) and task.cancelling()):
            task.cancel()
    if tasks:
        await asyncio.wait(tasks)


_VARIANT_EVENTS: dict[type[Any], type[Any]] = {
    RunStarted: VariantStarted,
    RunDelta: VariantDelta,
    RunUsage: VariantUsage,
    RunDone: VariantDone,
    RunError: VariantError,
}


def _of_variant(event: RunEvent, index: int, comparison_id: str) -> CompareEvent:
    kind = _VARIANT_EVENTS[type(event)]
    fields = {**event.model_dump(), "variant": index, "comparison_id": comparison_id}
    return kind.model_validate(fields)  # type: ignore[no-any-return]


def _held(started: list[_Run | RunResult]) -> int:
    return sum(one.hold.amount for one in started if isinstance(one, _Run))


async def _shielded(operation: Awaitable[object]) -> None:
    await asyncio.shield(asyncio.ensure_future(operation))


def _approx_usage(prepared: PreparedRun, text: str) -> Usage:
    return Usage(input_tokens=prepared.input_tokens, output_tokens=approx_tokens(text))


def _so_far(run: _Run, prepared: PreparedRun, text: str) -> Usage:
    """Usage of a run cut short: the last report, with output at least what was received."""
    if run.usage is None:
        return _approx_usage(prepared, text)
    if run.final:
        return run.usage
    # Before message_delta the reported output count is a placeholder.
    output = max(run.usage.output_tokens, approx_tokens(text))
    return run.usage.model_copy(update={"output_tokens": output})


def _describe(prepared: PreparedRun) -> str:
    what = prepared.package_id or "no prompt"
    return f"Playground run: {what} on {prepared.model.id}"[:1000]


def _result(
    run_id: str,
    session_id: str,
    exchange: ExchangeRecord,
    remaining: int,
    warnings: tuple[str, ...],
) -> RunResult:
    return RunResult(
        run_id=run_id,
        session_id=session_id,
        exchange_index=exchange.index,
        response=exchange.response,
        credits_spent=exchange.credits_spent,
        credits_remaining=remaining,
        usage=exchange.usage,
        duration_ms=exchange.duration_ms,
        model=exchange.model,
        stop_reason=exchange.stop_reason,
        warnings=warnings,
    )
