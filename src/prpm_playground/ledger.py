"""The CreditLedger: grants, spends, holds and the journal of one user's credits."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar, get_args

from ._book import Book
from ._clock import Clock, as_utc, read_clock, rfc3339, utc_now
from ._validation import (
    INT64_MAX,
    MAX_AMOUNT,
    check_amount,
    check_description,
    check_int,
    check_text_id,
    fingerprint,
)
from .config import GRANT_KINDS, CreditPolicy, GrantKind
from .errors import (
    HoldNotActive,
    IdempotencyConflict,
    InvalidRequest,
    LedgerInvariantError,
    NotFound,
)
from .models import Balance, Entry, EntryType, Grant, HistoryPage, Hold, MonthlyAllowance
from .storage.base import (
    AccountState,
    EntryRecord,
    GrantRecord,
    HoldRecord,
    LedgerStorage,
    LedgerUnit,
)

__all__ = ["CreditLedger"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[Book, AccountState, LedgerUnit], Awaitable[T]]

ENTRY_TYPES: frozenset[str] = frozenset(get_args(EntryType))
MAX_HISTORY_LIMIT = 200
_EXPORT_PAGE = 500


class CreditLedger:
    """Every credit a user has, where it came from, and where it went.

    The balance is derived from grants (buckets of credits) and holds; the
    journal of entries is append-only. Every write is idempotent, locks the
    account, and first records whatever time has made due (expired grants,
    lapsed holds), so results are right as of now whether or not a background
    job has run.

    Args:
        storage: Where accounts live, e.g. a ``SQLAlchemyStorage``.
        policy: Trial size, spend priorities, hold TTL and the rest.
        clock: Returns the current aware UTC datetime; tests pass their own.
    """

    def __init__(
        self,
        storage: LedgerStorage,
        policy: CreditPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._storage = storage
        self.policy = policy or CreditPolicy()
        self._clock = clock or utc_now

    @property
    def storage(self) -> LedgerStorage:
        """The storage this ledger reads and writes."""
        return self._storage

    # -- accounts and balances -------------------------------------------------

    async def open_account(self, user_id: str) -> Balance:
        """Open the account if it does not exist yet; return its balance.

        Idempotent: the trial grant (``policy.trial_credits``) is made once, by
        whichever call first touches the user. Every other method opens the
        account too, so a new user's first spend sees the trial credits.

        Args:
            user_id: The account, 1 to 255 characters.

        Returns:
            The balance right after opening (or as it stands, if already open).
        """
        check_text_id(user_id, "user_id")

        async def op(book: Book, state: AccountState, unit: LedgerUnit) -> Balance:
            return self._balance(book)

        return await self._write(user_id, op)

    async def balance(self, user_id: str) -> Balance:
        """Return the user's balance as of now.

        Expired grants and lapsed holds are recorded first if they are due, so
        the answer is right whether or not the reset job has run.

        Args:
            user_id: The account; opened (with its trial) if new.
        """
        check_text_id(user_id, "user_id")
        book = await self._settled_book(user_id)
        return self._balance(book)

    # -- writes ---------------------------------------------------------------

    async def grant(
        self,
        user_id: str,
        amount: int,
        *,
        kind: GrantKind = "bonus",
        idempotency_key: str,
        expires_at: datetime | None = None,
        priority: int | None = None,
        description: str | None = None,
    ) -> Grant:
        """Add a bucket of credits.

        Args:
            user_id: The account.
            amount: Credits, > 0.
            kind: One of ``trial``, ``monthly``, ``rollover``, ``purchased``,
                ``bonus``, ``admin``. Subscribers' allowances normally come from
                ``subscribe`` and the reset job, not from here.
            idempotency_key: Replays with the same arguments return the grant.
            expires_at: When the credits stop counting (exclusive); None never.
            priority: Spend priority (lower first); default per kind from the policy.
            description: Shown in history.

        Raises:
            InvalidRequest: Bad arguments, ``expires_at`` not in the future,
                or a total past ``MAX_AMOUNT`` (10**15) credits on the account.
            IdempotencyConflict: The key was used with other arguments.
        """
        check_text_id(user_id, "user_id")
        check_amount(amount)
        check_text_id(idempotency_key, "idempotency_key")
        if kind not in GRANT_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(GRANT_KINDS)}, got {kind!r}")
        expiry = None if expires_at is None else as_utc(expires_at, name="expires_at")
        if priority is not None:
            check_int(priority, "priority", minimum=-(2**31), maximum=2**31 - 1)
        check_description(description)
        digest = fingerprint(
            "grant",
            amount=amount,
            kind=kind,
            expires_at=expiry,
            priority=priority,
            description=description,
        )

        async def op(book: Book, state: AccountState, unit: LedgerUnit) -> Grant:
            replay = self._replayed_entry(state, idempotency_key, digest)
            if replay is not None:
                assert replay.grant_id is not None
                (record,) = await unit.get_grants([replay.grant_id])
                return _grant_model(book.grants.get(record.id, record))
            if expiry is not None and expiry <= book.now:
                raise InvalidRequest("expires_at must be in the future")
            total = book.available() + book.held()
            if total + amount > MAX_AMOUNT:
                # Far inside the 64-bit columns, so every sum over an
                # account (balance_after, SUMs in SQL) stays exact.
                raise InvalidRequest(
                    f"the account would hold more than {MAX_AMOUNT} credits ({total} + {amount})"
                )
            record = book.add_grant(
                kind,
                amount,
                priority=self.policy.priority_of(kind) if priority is None else priority,
                expires_at=expiry,
                description=description,
                idempotency_key=idempotency_key,
                request_hash=digest,
            )
            return _grant_model(record)

        return await self._write(user_id, op, idempotency_key=idempotency_key)

    async def spend(
        self,
        user_id: str,
        amount: int,
        *,
        idempotency_key: str,
        description: str | None = None,
    ) -> Entry:
        """Debit credits now, in spend order.

        Args:
            user_id: The account.
            amount: Credits, > 0.
            idempotency_key: Replays with the same arguments return the entry.
            description: Shown in history.

        Returns:
            The ``spend`` entry, with the draws that paid for it.

        Raises:
            InsufficientCredits: Not enough available; nothing was written.
            IdempotencyConflict: The key was used with other arguments.
            InvalidRequest: Bad arguments.
        """
        check_text_id(user_id, "user_id")
        check_amount(amount)
        check_text_id(idempotency_key, "idempotency_key")
        check_description(description)
        digest = fingerprint("spend", amount=amount, description=description)

        async def op(book: Book, state: AccountState, unit: LedgerUnit) -> Entry:
            replay = self._replayed_entry(state, idempotency_key, digest)
            if replay is not None:
                return _entry_model(replay)
            record = book.spend(
                amount,
                description=description,
                idempotency_key=idempotency_key,
                request_hash=digest,
            )
            return _entry_model(record)

        return await self._write(user_id, op, idempotency_key=idempotency_key)

    async def hold(
        self,
        user_id: str,
        amount: int,
        *,
        idempotency_key: str,
        ttl: timedelta | None = None,
    ) -> Hold:
        """Reserve credits before an operation whose cost is known only after it.

        The credits leave ``available`` at once. ``capture`` charges what was
        used (never more than held) and returns the rest; ``release`` returns
        all of it; a hold not settled within ``ttl`` (default
        ``policy.hold_ttl``) lapses and its credits return on their own.

        Args:
            user_id: The account.
            amount: Credits to reserve, > 0.
            idempotency_key: Replays with the same arguments return the hold.
            ttl: Lifetime of the hold, a positive ``timedelta`` up to 7 days.

        Raises:
            InsufficientCredits: Not enough available; nothing was written.
            IdempotencyConflict: The key was used with other arguments.
            InvalidRequest: Bad arguments.
        """
        hold, _, _ = await self._place_hold(
            user_id, amount, idempotency_key=idempotency_key, ttl=ttl
        )
        return hold

    async def _place_hold(
        self, user_id: str, amount: int, *, idempotency_key: str, ttl: timedelta | None
    ) -> tuple[Hold, bool, Balance]:
        """``hold``, also telling whether this call placed it, and the balance after."""
        check_text_id(user_id, "user_id")
        check_amount(amount)
        check_text_id(idempotency_key, "idempotency_key")
        if ttl is not None and (not isinstance(ttl, timedelta) or ttl <= timedelta(0)):
            raise InvalidRequest("ttl must be a positive timedelta")
        if ttl is not None and ttl > timedelta(days=7):
            raise InvalidRequest("ttl must be at most 7 days")
        lifetime = ttl or self.policy.hold_ttl
        digest = fingerprint("hold", amount=amount, ttl=ttl)

        async def op(
            book: Book, state: AccountState, unit: LedgerUnit
        ) -> tuple[Hold, bool, Balance]:
            if state.keyed_entry is not None:
                raise _conflict(idempotency_key)
            if state.keyed_hold is not None:
                if state.keyed_hold.request_hash != digest:
                    raise _conflict(idempotency_key)
                hold = book.holds.get(state.keyed_hold.id, state.keyed_hold)
                return _hold_model(hold), False, self._balance(book)
            record = book.hold(
                amount,
                expires_at=book.now + lifetime,
                idempotency_key=idempotency_key,
                request_hash=digest,
            )
            return _hold_model(record), True, self._balance(book)

        return await self._write(user_id, op, idempotency_key=idempotency_key)

    async def capture(self, hold_id: str, amount: int, *, description: str | None = None) -> Hold:
        """Charge ``amount`` of an active hold and return the rest at once.

        Capturing again with the same amount returns the captured hold and
        charges nothing more, so retries are safe.

        Args:
            hold_id: The hold's id.
            amount: Credits to charge, from 0 to the held amount.
            description: Shown in history on the ``spend`` entry.

        Raises:
            NotFound: No such hold.
            InvalidRequest: ``amount`` is negative or above the held amount.
            HoldNotActive: The hold was released, lapsed, or captured with
                another amount.
        """
        hold, _ = await self._capture(hold_id, amount, description=description)
        return hold

    async def _capture(
        self,
        hold_id: str,
        amount: int,
        *,
        description: str | None = None,
        user_id: str | None = None,
    ) -> tuple[Hold, Balance]:
        """``capture``, also returning the balance after it.

        A caller that knows the hold's user passes ``user_id`` and saves a
        lookup; the unit of work still refuses a hold of another account.
        """
        check_text_id(hold_id, "hold_id")
        check_amount(amount, allow_zero=True)
        check_description(description)
        after: list[Balance] = []

        async def op(book: Book, hold: HoldRecord) -> Hold:
            if amount > hold.amount:
                raise InvalidRequest(f"cannot capture {amount}: the hold is for {hold.amount}")
            if hold.status == "captured" and hold.captured == amount:
                after.append(self._balance(book))
                return _hold_model(hold)
            _require_active(hold)
            captured = book.capture(hold, amount, description=description)
            after.append(self._balance(book))
            return _hold_model(captured)

        hold = await self._on_hold(hold_id, op, user_id=user_id)
        return hold, after[-1]

    async def release(self, hold_id: str) -> Hold:
        """Return all of an active hold's credits.

        Releasing a released hold returns it unchanged.

        Args:
            hold_id: The hold's id.

        Raises:
            NotFound: No such hold.
            HoldNotActive: The hold was captured or lapsed.
        """
        check_text_id(hold_id, "hold_id")

        async def op(book: Book, hold: HoldRecord) -> Hold:
            if hold.status == "released":
                return _hold_model(hold)
            _require_active(hold)
            return _hold_model(book.release(hold))

        return await self._on_hold(hold_id, op)

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(
        self,
        user_id: str,
        *,
        monthly_credits: int | None = None,
        anchor: datetime | None = None,
    ) -> Balance:
        """Start (or change, or resume) a monthly allowance.

        A new subscription is anchored at ``anchor`` (default now); its
        periods are ``anchor + N months``, clamped to the month's end. The
        current period's allowance is granted at once and expires when the
        period ends; later ones come from the period rule (on any ledger
        call, and from the reset job), once per period each.

        On a running subscription: the same terms change nothing; another
        ``monthly_credits`` applies from the next period; a subscription
        cancelled during the current period resumes. Once a cancelled
        subscription has ended, a new one can start at once (with a new
        anchor), as long as its current period begins no earlier than the
        previous one ended.

        Args:
            user_id: The account.
            monthly_credits: Allowance per period; default ``policy.monthly_credits``.
            anchor: Start of the first period, not in the future; only for a
                new subscription.

        Raises:
            InvalidRequest: Bad arguments, an anchor in the future, an
                anchor for a subscription that is already running, or one
                whose current period would overlap the previous subscription.
        """
        check_text_id(user_id, "user_id")
        credits = self.policy.monthly_credits if monthly_credits is None else monthly_credits
        check_amount(credits, "monthly_credits")
        start = None if anchor is None else as_utc(anchor, name="anchor")

        async def op(book: Book, state: AccountState, unit: LedgerUnit) -> Balance:
            sub = book.subscription
            running = sub is not None and (
                sub.ends_after is None or book.current_period(sub) <= sub.ends_after
            )
            if sub is not None and running:
                if start is not None and start != sub.anchor:
                    raise InvalidRequest("the subscription is running; its anchor cannot change")
                book.change_subscription(credits)
                return self._balance(book)
            first = start or book.now
            if first > book.now:
                raise InvalidRequest("anchor must not be in the future")
            book.start_subscription(first, credits, priority=self.policy.priority_of("monthly"))
            return self._balance(book)

        return await self._write(user_id, op)

    async def unsubscribe(self, user_id: str) -> Balance:
        """Stop the monthly allowance.

        The current period's allowance stays until the period ends (it was
        granted for the period, as a paid-for month is), then no new
        allowance comes and nothing rolls over. Rollover and purchased credits
        stay until their own expiry (purchased never expire). Unsubscribing
        twice, or without a subscription, changes nothing.
        """
        check_text_id(user_id, "user_id")

        async def op(book: Book, state: AccountState, unit: LedgerUnit) -> Balance:
            book.end_subscription()
            return self._balance(book)

        return await self._write(user_id, op)

    # -- reading the journal ------------------------------------------------------

    async def history(
        self,
        user_id: str,
        *,
        types: Iterable[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> HistoryPage:
        """Return journal entries, newest first.

        Args:
            user_id: The account.
            types: Only entries of these types (see ``EntryType``); one type
                may be given as a plain string.
            limit: Page size, 1 to 200.
            cursor: ``next_cursor`` of the previous page.
        """
        check_text_id(user_id, "user_id")
        type_list = _check_types(types)
        check_int(limit, "limit", minimum=1, maximum=MAX_HISTORY_LIMIT)
        before = None if cursor is None else _decode_cursor(cursor)
        await self._settled_book(user_id)
        records = await self._storage.entries(
            user_id, types=type_list, limit=limit + 1, before_seq=before
        )
        page = records[:limit]
        more = len(records) > limit
        next_cursor = _encode_cursor(page[-1].seq) if more and page[-1].seq is not None else None
        return HistoryPage(entries=tuple(_entry_model(r) for r in page), next_cursor=next_cursor)

    async def export_csv(
        self, user_id: str, *, types: Iterable[str] | None = None
    ) -> AsyncIterator[str]:
        """Stream the whole journal as CSV lines, newest first, header included.

        Columns: ``created_at,type,amount,balance_after,description``. Text
        that a spreadsheet would run as a formula is quoted with a leading ``'``.

        Args:
            user_id: The account.
            types: Only entries of these types.

        Yields:
            One CSV line at a time (``\r\n``-terminated), header first.
        """
        check_text_id(user_id, "user_id")
        type_list = _check_types(types)
        await self._settled_book(user_id)
        yield _csv_line(["created_at", "type", "amount", "balance_after", "description"])
        before: int | None = None
        while True:
            records = await self._storage.entries(
                user_id, types=type_list, limit=_EXPORT_PAGE, before_seq=before
            )
            for r in records:
                yield _csv_line(
                    [
                        rfc3339(r.created_at),
                        r.type,
                        str(r.amount),
                        str(r.balance_after),
                        _safe_cell(r.description or ""),
                    ]
                )
            if len(records) < _EXPORT_PAGE:
                return
            before = records[-1].seq

    async def verify(self, user_id: str) -> None:
        """Check that the stored grants, holds and journal agree.

        Checks every grant's remaining against its credit, draws, holds and
        expiries; the journal's sum against grants plus holds; and that no
        entry left a negative balance. Reads only; an unknown user passes.

        Args:
            user_id: The account.

        Raises:
            LedgerInvariantError: With one line per broken invariant.
        """
        check_text_id(user_id, "user_id")
        data = await self._storage.audit(user_id)
        if data is None:
            return
        problems = _audit(*data)
        if problems:
            logger.error("ledger invariant broken for an account: %s", problems)
            raise LedgerInvariantError(user_id, problems)

    # -- internals ------------------------------------------------------------------

    async def _write(
        self, user_id: str, op: Operation[T], *, idempotency_key: str | None = None
    ) -> T:
        async with self._storage.account(
            user_id, write=True, idempotency_key=idempotency_key
        ) as unit:
            state = unit.state
            book = Book(state, read_clock(self._clock))
            if state.created:
                self._open(book)
            await self._settle(book, unit)
            result = await op(book, state, unit)
            changes = book.finish()
            if changes:
                await unit.apply(changes)
            return result

    async def _settled_book(self, user_id: str) -> Book:
        """A book as of now; writes only if something is due or the account is new."""
        try:
            async with self._storage.account(user_id, write=False) as unit:
                book = Book(unit.state, read_clock(self._clock))
                await self._settle(book, unit)
                if not book.changes:
                    return book
        except LookupError:
            pass

        async def op(book: Book, state: AccountState, unit: LedgerUnit) -> Book:
            return book

        return await self._write(user_id, op)

    async def _on_hold(
        self,
        hold_id: str,
        op: Callable[[Book, HoldRecord], Awaitable[Hold]],
        *,
        user_id: str | None = None,
    ) -> Hold:
        if user_id is None:
            user_id = await self._storage.user_of_hold(hold_id)
        if user_id is None:
            raise NotFound(f"no hold {hold_id!r}")

        async def unit_op(book: Book, state: AccountState, unit: LedgerUnit) -> Hold:
            hold = book.holds.get(hold_id) or await unit.get_hold(hold_id)
            if hold is None:  # holds are never deleted, but a bad backup could lose one
                raise NotFound(f"no hold {hold_id!r}")
            missing = book.missing_grants([hold]) if hold.status == "active" else set()
            if missing:
                book.load(await unit.get_grants(sorted(missing)))
            return await op(book, hold)

        return await self._write(user_id, unit_op)

    def _open(self, book: Book) -> None:
        logger.info("opened credit account")
        if self.policy.trial_credits:
            book.add_grant(
                "trial",
                self.policy.trial_credits,
                priority=self.policy.priority_of("trial"),
                expires_at=None,
                description="Trial credits",
            )

    async def _settle(self, book: Book, unit: LedgerUnit) -> None:
        missing = book.missing_grants()
        if missing:
            book.load(await unit.get_grants(sorted(missing)))
        book.settle(self.policy.rollover_cap, self.policy.priorities)

    @staticmethod
    def _replayed_entry(state: AccountState, key: str, digest: str) -> EntryRecord | None:
        if state.keyed_hold is not None:
            raise _conflict(key)
        entry = state.keyed_entry
        if entry is None:
            return None
        if entry.request_hash != digest:
            raise _conflict(key)
        return entry

    @staticmethod
    def _balance(book: Book) -> Balance:
        available, held = book.available(), book.held()
        monthly = None
        current = book.allowance()
        if current is not None:
            grant, resets_at = current
            allocated = grant.amount if grant else 0
            remaining = grant.remaining if grant else 0
            monthly = MonthlyAllowance(
                allocated=allocated,
                used=allocated - remaining,
                remaining=remaining,
                resets_at=resets_at,
            )
        return Balance(
            available=available,
            held=held,
            total=available + held,
            breakdown=book.breakdown(),
            monthly=monthly,
            rollover_expires_at=book.earliest_expiry("rollover"),
            as_of=book.now,
        )


# -- helpers ----------------------------------------------------------------------


def _conflict(key: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        "idempotency key already used with different arguments", idempotency_key=key
    )


def _require_active(hold: HoldRecord) -> None:
    if hold.status != "active":
        raise HoldNotActive(
            f"hold {hold.id} is {hold.status}, not active", hold_id=hold.id, status=hold.status
        )


def _check_types(types: Iterable[str] | None) -> list[str] | None:
    if types is None:
        return None
    result = [types] if isinstance(types, str) else list(types)
    unknown = sorted(set(result) - ENTRY_TYPES)
    if unknown:
        raise InvalidRequest(f"unknown entry types: {', '.join(map(str, unknown))}")
    return result


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    if not isinstance(cursor, str) or not cursor or len(cursor) > 64:
        raise InvalidRequest("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = raw.partition(":")
        if prefix != "seq" or not number.isdigit() or int(number) > INT64_MAX:
            raise ValueError(raw)
        return int(number)
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise InvalidRequest("invalid cursor") from exc


def _csv_line(cells: Sequence[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(cells)
    return out.getvalue()


def _safe_cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _grant_model(record: GrantRecord) -> Grant:
    return Grant.model_validate(record, from_attributes=True)


def _entry_model(record: EntryRecord) -> Entry:
    return Entry.model_validate(record, from_attributes=True)


def _hold_model(record: HoldRecord) -> Hold:
    return Hold.model_validate(record, from_attributes=True)


def _audit(
    grants: list[GrantRecord], holds: list[HoldRecord], entries: list[EntryRecord]
) -> list[str]:
    """Every invariant that stored data must satisfy, as a list of violations."""
    problems: list[str] = []
    by_id = {g.id: g for g in grants}
    consumed: dict[str, int] = dict.fromkeys(by_id, 0)

    def consume(grant_id: str, amount: int, what: str) -> None:
        if grant_id not in consumed:
            problems.append(f"{what} refers to unknown grant {grant_id}")
            return
        consumed[grant_id] += amount

    credits: dict[str, int] = {}
    for e in entries:
        if e.balance_after < 0:
            problems.append(f"entry {e.id} leaves a negative balance ({e.balance_after})")
        if e.type in GRANT_KINDS:
            if e.amount <= 0 or e.grant_id is None:
                problems.append(f"credit entry {e.id} has no grant or a non-positive amount")
            else:
                credits[e.grant_id] = credits.get(e.grant_id, 0) + 1
                grant = by_id.get(e.grant_id)
                if grant is None or grant.amount != e.amount or grant.kind != e.type:
                    problems.append(f"credit entry {e.id} does not match grant {e.grant_id}")
        elif e.type == "spend":
            drawn = sum(d.amount for d in e.draws)
            if e.amount >= 0 or drawn != -e.amount:
                problems.append(f"spend {e.id} of {e.amount} draws {drawn}")
            for d in e.draws:
                consume(d.grant_id, d.amount, f"spend {e.id}")
        elif e.type in ("expire", "clawback"):
            if e.amount >= 0 or e.grant_id is None:
                problems.append(f"{e.type} entry {e.id} must debit one grant")
            else:
                consume(e.grant_id, -e.amount, f"{e.type} {e.id}")
        elif e.type == "release" and (e.amount != 0 or e.hold_id is None):
            problems.append(f"release entry {e.id} must be of 0 credits and name its hold")
    for g in grants:
        if credits.get(g.id, 0) != 1:
            problems.append(f"grant {g.id} has {credits.get(g.id, 0)} credit entries, not 1")
    held = 0
    captures = {e.hold_id: e for e in entries if e.type == "spend" and e.hold_id is not None}
    releases: dict[str, int] = {}
    for e in entries:
        if e.type == "release" and e.hold_id is not None:
            releases[e.hold_id] = releases.get(e.hold_id, 0) + 1
    for h in holds:
        drawn = sum(d.amount for d in h.draws)
        if drawn != h.amount:
            problems.append(f"hold {h.id} of {h.amount} draws {drawn}")
        if not 0 <= h.captured <= h.amount:
            problems.append(f"hold {h.id} captured {h.captured} of {h.amount}")
        if h.status == "active":
            held += h.amount
            for d in h.draws:
                consume(d.grant_id, d.amount, f"hold {h.id}")
        capture = captures.get(h.id)
        charged = 0 if capture is None else -capture.amount
        if charged != (h.captured if h.status == "captured" else 0):
            problems.append(f"hold {h.id} ({h.status}, captured {h.captured}) charged {charged}")
        # At most one, and only for a hold that gave all its credits back.
        # (Holds settled before release entries existed have none.)
        gave_all_back = h.status in ("released", "expired") or (
            h.status == "captured" and h.captured == 0
        )
        if releases.get(h.id, 0) > gave_all_back:
            problems.append(f"hold {h.id} ({h.status}) has {releases.get(h.id, 0)} release entries")
    for g in grants:
        expected = g.amount - consumed[g.id]
        if g.remaining != expected or not 0 <= g.remaining <= g.amount:
            problems.append(
                f"grant {g.id} has {g.remaining} remaining; its journal says {expected}"
            )
    journal = sum(e.amount for e in entries)
    stored = sum(g.remaining for g in grants) + held
    if journal != stored:
        problems.append(f"journal sums to {journal} but grants and holds hold {stored}")
    return problems
