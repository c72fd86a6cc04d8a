"""The storage port: plain records and the unit of work the services need.

Storage holds no money rules. It locks an account, hands its live rows to
the services as plain data, and writes back the rows the services decided on.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..config import GrantKind
from ..models import Draw, EntryType, HoldStatus, SharedExchange, Usage

__all__ = [
    "AccountRow",
    "AccountState",
    "Changes",
    "DueBatch",
    "EntryRecord",
    "ExchangeRecord",
    "FeedbackRecord",
    "GrantRecord",
    "HoldRecord",
    "LedgerStorage",
    "LedgerUnit",
    "RateLimitStorage",
    "ResetStorage",
    "SessionRecord",
    "SessionStorage",
    "ShareRecord",
    "SharedCommit",
    "SubscriptionRecord",
]


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A stored grant."""

    id: str
    kind: GrantKind
    amount: int
    remaining: int
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    created_at: datetime
    description: str | None = None
    period: int | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A monthly allowance's terms and progress.

    Attributes:
        anchor: Period ``n`` starts at ``anchor + n months`` (see ``periods``).
        monthly_credits: Allowance per period.
        last_period: Allowances are granted up to and including this period.
        ends_after: No allowance (and no rollover) for periods after this one;
            None while the subscription runs.
        next_credits: New allowance from period ``next_from`` on, if changed.
        next_from: First period of ``next_credits``.
    """

    anchor: datetime
    monthly_credits: int
    last_period: int
    ends_after: int | None = None
    next_credits: int | None = None
    next_from: int | None = None

    def credits_for(self, period: int) -> int:
        """The allowance of ``period`` under these terms."""
        changed = self.next_credits is not None and self.next_from is not None
        if changed and period >= (self.next_from or 0):
            return self.next_credits or 0
        return self.monthly_credits

    def active_in(self, period: int) -> bool:
        """True if ``period`` gets an allowance."""
        return self.ends_after is None or period <= self.ends_after


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """A stored hold; ``draws`` are the credits it took from each grant."""

    id: str
    amount: int
    captured: int
    status: HoldStatus
    draws: tuple[Draw, ...]
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """A stored journal entry. ``seq`` orders the journal; storage assigns it."""

    id: str
    type: EntryType
    amount: int
    balance_after: int
    created_at: datetime
    description: str | None = None
    grant_id: str | None = None
    hold_id: str | None = None
    draws: tuple[Draw, ...] = ()
    idempotency_key: str | None = None
    request_hash: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the services need to decide a write on one account.

    Attributes:
        user_id: The account's user.
        created: True if this unit of work created the account.
        grants: Grants with credits left (live, future or expired-but-not-yet-recorded).
        holds: Holds whose status is still ``active`` (including lapsed ones).
        keyed_entry: The entry recorded under the requested idempotency key, if any.
        keyed_hold: The hold recorded under the requested idempotency key, if any.
        subscription: The monthly allowance, if the account ever subscribed.
        due_at: When the account next needs settling, as last stored (never
            later than the truth; None if nothing is scheduled).
    """

    user_id: str
    created: bool
    grants: tuple[GrantRecord, ...]
    holds: tuple[HoldRecord, ...]
    keyed_entry: EntryRecord | None = None
    keyed_hold: HoldRecord | None = None
    subscription: SubscriptionRecord | None = None
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccountRow:
    """The account's own columns a unit of work rewrites, all together."""

    subscription: SubscriptionRecord | None
    due_at: datetime | None


@dataclass(slots=True)
class Changes:
    """Rows a unit of work writes back, in this order: grants, holds, entries."""

    new_grants: list[GrantRecord] = field(default_factory=list)
    grant_remaining: dict[str, int] = field(default_factory=dict)
    new_holds: list[HoldRecord] = field(default_factory=list)
    updated_holds: list[HoldRecord] = field(default_factory=list)
    new_entries: list[EntryRecord] = field(default_factory=list)
    account: AccountRow | None = None

    def __bool__(self) -> bool:
        return bool(
            self.account is not None
            or self.new_grants
            or self.grant_remaining
            or self.new_holds
            or self.updated_holds
            or self.new_entries
        )


class LedgerUnit(Protocol):
    """One transaction on one account; writes hold the account's lock.

    ``state`` is read when the unit opens, after the lock is taken.
    """

    state: AccountState

    async def get_grants(self, grant_ids: Sequence[str]) -> list[GrantRecord]:
        """Read grants of this account by id, whatever their remaining."""
        ...

    async def get_hold(self, hold_id: str) -> HoldRecord | None:
        """Read one hold of this account."""
        ...

    async def apply(self, changes: Changes) -> None:
        """Write the rows; only valid in a write unit."""
        ...


class LedgerStorage(Protocol):
    """What the CreditLedger needs from storage."""

    def account(
        self, user_id: str, *, write: bool, idempotency_key: str | None = None
    ) -> AbstractAsyncContextManager[LedgerUnit]:
        """Open a unit of work on ``user_id``'s account and read its state.

        A write unit locks the account (creating it if missing) until it exits;
        it commits on normal exit and rolls back on an exception. A read unit
        raises ``LookupError`` when the account does not exist. The state
        includes the entry or hold recorded under ``idempotency_key``, if any.
        """
        ...

    async def user_of_hold(self, hold_id: str) -> str | None:
        """Return the user id owning a hold, or None."""
        ...

    async def entries(
        self,
        user_id: str,
        *,
        types: Sequence[str] | None,
        limit: int,
        before_seq: int | None,
    ) -> list[EntryRecord]:
        """Return up to ``limit`` entries, newest first, with ``seq`` below ``before_seq``."""
        ...

    async def audit(
        self, user_id: str
    ) -> tuple[list[GrantRecord], list[HoldRecord], list[EntryRecord]] | None:
        """Return every grant, hold and entry of an account (None if it does not exist)."""
        ...


class DueBatch(Protocol):
    """Accounts due for settling, read together in one transaction.

    In a write batch every account is locked until the batch exits (on
    PostgreSQL, accounts another batch has locked are skipped, not waited
    for); it commits on normal exit and rolls back on an exception.
    """

    states: Sequence[AccountState]
    """Each account's state, as a ledger unit of work would read it."""

    cursor: object | None
    """Where the next batch starts: after this one's last account (None if empty)."""

    async def get_grants(self, grant_ids: Sequence[str]) -> list[GrantRecord]:
        """Read grants of these accounts by id, whatever their remaining."""
        ...

    async def apply(self, changes: Sequence[Changes | None]) -> None:
        """Write each account's changes (aligned with ``states``; None skips one)."""
        ...


class ResetStorage(Protocol):
    """What the ResetJob needs from storage."""

    def due(
        self, now: datetime, *, limit: int, after: object | None, write: bool
    ) -> AbstractAsyncContextManager[DueBatch]:
        """Open a batch of up to ``limit`` accounts whose ``due_at`` is at or before ``now``.

        Accounts come in ``(due_at, account)`` order, starting after the
        ``cursor`` of a previous batch of the same run when ``after`` is given.
        """
        ...

    async def count_due(self, now: datetime) -> int:
        """How many accounts are due at ``now``."""
        ...

    async def close(self) -> None:
        """Release pooled connections; the storage opens new ones if used again."""
        ...


# -- sessions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    """A stored exchange: one input, its response, and what it cost.

    ``run_id`` is unique per user (None for exchanges copied by a fork).
    """

    index: int
    input: str
    response: str
    model: str
    usage: Usage
    credits_spent: int
    run_id: str | None
    created_at: datetime
    duration_ms: int = 0
    stop_reason: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A stored session; ``exchanges`` is filled only where documented."""

    id: str
    user_id: str
    package_id: str | None
    package_version: str | None
    no_prompt: bool
    created_at: datetime
    updated_at: datetime
    title: str
    exchange_count: int = 0
    comparison_id: str | None = None
    exchanges: tuple[ExchangeRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """A share link and its frozen snapshot. A session has at most one live share."""

    token: str
    session_id: str
    user_id: str
    package_id: str | None
    package_version: str | None
    no_prompt: bool
    created_at: datetime
    exchanges: tuple[SharedExchange, ...]
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One vote on one exchange; at most one per ``(session, exchange_index)``."""

    session_id: str
    exchange_index: int
    user_id: str
    helpful: bool
    comment: str | None
    created_at: datetime


class SessionStorage(Protocol):
    """What sessions, sharing and the runner need from storage.

    Storage checks no ownership: the services do, and answer ``NotFound`` for
    anyone but the owner.
    """

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """Return the session with all its exchanges, oldest first, or None."""
        ...

    async def list_sessions(
        self, user_id: str, *, limit: int, before: tuple[datetime, str] | None
    ) -> list[SessionRecord]:
        """Return up to ``limit`` of a user's sessions without exchanges.

        Ordered by ``(updated_at, id)`` descending, strictly after ``before``
        in that order when it is given.
        """
        ...

    async def save_exchange(self, session: SessionRecord, exchange: ExchangeRecord) -> int:
        """Append ``exchange`` at the session's next index and return that index.

        A ``session`` with ``exchange_count`` 0 is a new one, created here;
        any other is continued, and only if it still exists: a session deleted
        while a run was going stays deleted (``NotFound``). The session row
        takes ``session.updated_at`` and a count one higher. Concurrent
        appends to one session never conflict: each gets the next index
        (``exchange.index`` is not used). Raises ``Conflict`` if the user
        already has an exchange with ``exchange.run_id`` or a new session's
        id is another user's; nothing is written then.
        """
        ...

    async def create_session(self, session: SessionRecord) -> None:
        """Store a new session together with ``session.exchanges`` (for forks)."""
        ...

    async def exchange_by_run(
        self, user_id: str, run_id: str
    ) -> tuple[SessionRecord, ExchangeRecord] | None:
        """Return the session (without exchanges) and exchange a run saved, or None."""
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session with its exchanges, feedback and shares; False if missing."""
        ...

    async def create_share(self, share: ShareRecord) -> ShareRecord:
        """Store ``share`` unless the session has a live share; return the live one."""
        ...

    async def revoke_share(self, session_id: str, at: datetime) -> bool:
        """Revoke the session's live share; False if it had none."""
        ...

    async def get_share(self, token: str) -> ShareRecord | None:
        """Return the live share with this token, or None (unknown or revoked)."""
        ...

    async def live_share(self, session_id: str) -> ShareRecord | None:
        """Return the session's live share, or None."""
        ...

    async def add_feedback(self, feedback: FeedbackRecord) -> None:
        """Store a vote; ``Conflict`` if the exchange already has one."""
        ...


@runtime_checkable
class SharedCommit(Protocol):
    """A storage that can write a run's settlement in one transaction (optional).

    The runner uses it when its ledger and its sessions are one storage object.
    """

    def together(self) -> AbstractAsyncContextManager[bool]:
        """A block whose ledger writes and ``save_exchange`` share one commit.

        Where the storage supports it, a ``save_exchange`` inside commits the
        ledger writes before it together with it; if the save is refused
        (``Conflict``, ``NotFound``), those writes are still committed. If the
        block raises first, its ledger writes are rolled back. A storage may
        treat the block as an ordinary sequence of transactions. The block
        gets True when its writes share one commit, False otherwise.
        """
        ...


# -- rate limits ------------------------------------------------------------------------


class RateLimitStorage(Protocol):
    """Fixed-window hit counters, shared by every process that uses the same database."""

    async def rate_limit_hit(self, key: str, window_start: datetime, amount: int = 1) -> int:
        """Add ``amount`` to the counter of ``(key, window_start)``; return its new value.

        Atomic: concurrent hits from any number of processes are all counted.
        """
        ...

    async def rate_limit_prune(self, before: datetime) -> int:
        """Delete the counters of windows that started before ``before``; return how many."""
        ...
