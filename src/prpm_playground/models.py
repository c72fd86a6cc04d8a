"""Public data models returned by the services. Frozen, snake_case."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from .config import GrantKind

__all__ = [
    "Balance",
    "Draw",
    "Entry",
    "EntryType",
    "Grant",
    "HistoryPage",
    "Hold",
    "HoldStatus",
    "MonthlyAllowance",
]

EntryType = Literal[
    "trial",
    "monthly",
    "rollover",
    "purchased",
    "bonus",
    "admin",
    "spend",
    "expire",
    "clawback",
    "release",
]
"""Journal entry types: a grant kind for credits; ``spend``, ``expire``, ``clawback`` for
debits; ``release`` (amount 0) when a hold returns all its credits (released,
captured at 0, or lapsed)."""

HoldStatus = Literal["active", "captured", "released", "expired"]
"""A hold's lifecycle: ``active`` until captured, released, or lapsed (``expired``)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Draw(_Model):
    """Credits one debit (or hold) took from one grant.

    Attributes:
        grant_id: The grant the credits came from.
        kind: That grant's kind, so history can say which credits paid.
        amount: Credits taken, > 0.
    """

    grant_id: str
    kind: GrantKind
    amount: int


class Grant(_Model):
    """A bucket of credits.

    Attributes:
        id: Grant id.
        kind: Grant kind.
        amount: Credits granted.
        remaining: Credits neither spent, held, nor expired.
        priority: Spend priority; lower spends first.
        effective_at: When the credits became spendable.
        expires_at: When they stop counting (exclusive), or None for never.
        created_at: When the grant was recorded.
        description: Free text shown in history.
    """

    id: str
    kind: GrantKind
    amount: int
    remaining: int
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    created_at: datetime
    description: str | None


class Entry(_Model):
    """One line of an account's append-only journal.

    Attributes:
        id: Entry id.
        type: A grant kind for credits; ``spend``, ``expire`` or ``clawback`` for debits.
        amount: Signed change to the account's total (credits positive).
        balance_after: Credits available right after this entry.
        created_at: When it was recorded.
        description: Free text.
        grant_id: The grant this entry created or expired, if any.
        hold_id: The hold a capture or a ``release`` entry settled, if any.
        draws: For debits, which grants paid and how much; for ``release``,
            the credits returned to each grant.
    """

    id: str
    type: EntryType
    amount: int
    balance_after: int
    created_at: datetime
    description: str | None = None
    grant_id: str | None = None
    hold_id: str | None = None
    draws: tuple[Draw, ...] = ()


class Hold(_Model):
    """Credits reserved for an operation whose final cost is not known yet.

    Attributes:
        id: Hold id; pass it to ``capture`` or ``release``.
        amount: Credits reserved.
        captured: Credits charged at capture (0 until then).
        status: ``active``, ``captured``, ``released`` or ``expired``.
        created_at: When the hold was placed.
        expires_at: When an active hold lapses and its credits return.
        settled_at: When it was captured, released or swept as expired.
    """

    id: str
    amount: int
    captured: int
    status: HoldStatus
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None = None


class MonthlyAllowance(_Model):
    """A subscriber's allowance for the current period.

    Attributes:
        allocated: Credits granted for the period.
        used: Credits of it spent or held.
        remaining: Credits of it still available.
        resets_at: When the period ends and the next allowance begins.
    """

    allocated: int
    used: int
    remaining: int
    resets_at: datetime


class Balance(_Model):
    """An account's credits as of ``as_of``.

    Attributes:
        available: Credits that can be spent or held now.
        held: Credits reserved by active holds.
        total: ``available + held``.
        breakdown: ``total`` split by the kind of grant the credits came from.
        monthly: The current allowance, or None when not subscribed.
        rollover_expires_at: When the live rollover credits expire, if any.
        as_of: The instant the balance describes.
    """

    available: int
    held: int
    total: int
    breakdown: dict[str, int]
    monthly: MonthlyAllowance | None = None
    rollover_expires_at: datetime | None = None
    as_of: datetime


class HistoryPage(_Model):
    """A page of journal entries, newest first.

    Attributes:
        entries: The entries on this page.
        next_cursor: Pass it back as ``cursor`` for the next page; None at the end.
    """

    entries: tuple[Entry, ...]
    next_cursor: str | None
