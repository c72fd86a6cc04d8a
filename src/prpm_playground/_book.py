"""The money rules, as plain code over plain data.

A ``Book`` is a working copy of one account's live rows at one instant. The
ledger (and, later, the reset job) loads rows into it, asks it to settle what
time has made due and to apply an operation, then writes back ``changes``.
Nothing here touches storage, so every caller gets exactly the same rules.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from ._ids import new_id
from .config import DEFAULT_PRIORITIES, GRANT_KINDS, GrantKind
from .errors import InsufficientCredits, InvalidRequest
from .models import Draw, EntryType
from .periods import _index_of, _shift
from .storage.base import (
    AccountRow,
    AccountState,
    Changes,
    EntryRecord,
    GrantRecord,
    HoldRecord,
    SubscriptionRecord,
)

_NEVER = datetime.max.replace(tzinfo=UTC)


def spend_order(grant: GrantRecord) -> tuple[int, bool, datetime, datetime, str]:
    """Sort key: priority, soonest expiry (never-expiring last), creation, id."""
    return (
        grant.priority,
        grant.expires_at is None,
        grant.expires_at or _NEVER,
        grant.created_at,
        grant.id,
    )


def _month(instant: datetime) -> int:
    """``periods.month_number`` of an aware UTC instant, unchecked."""
    return instant.year * 12 + instant.month - 1


def _start(sub: SubscriptionRecord, period: int) -> datetime:
    """When absolute period ``period`` of ``sub`` begins."""
    return _shift(sub.anchor, period - _month(sub.anchor))


def _with_remaining(grant: GrantRecord, remaining: int) -> GrantRecord:
    # dataclasses.replace costs several times this, on every spend.
    return GrantRecord(
        grant.id,
        grant.kind,
        grant.amount,
        remaining,
        grant.priority,
        grant.effective_at,
        grant.expires_at,
        grant.created_at,
        grant.description,
        grant.period,
    )


def is_live(grant: GrantRecord, at: datetime) -> bool:
    """True if the grant's credits count at ``at`` (expiry is exclusive)."""
    return grant.effective_at <= at and (grant.expires_at is None or at < grant.expires_at)


class Book:
    """One account's live grants and active holds, and the changes made to them."""

    def __init__(self, state: AccountState, now: datetime) -> None:
        self.now = now
        self.subscription = state.subscription
        self.grants: dict[str, GrantRecord] = {g.id: g for g in state.grants}
        self.holds: dict[str, HoldRecord] = {h.id: h for h in state.holds}
        self.due_at = state.due_at
        self.changes = Changes()
        self._created: set[str] = set()  # ids of grants in changes.new_grants
        self._subscription_changed = False

    def missing_grants(self, holds: list[HoldRecord] | None = None) -> set[str]:
        """Ids of grants that lapsed or given holds drew from but are not loaded.

        A hold can drain a grant to zero, and storage only loads grants with
        credits left, so returning a hold's credits may need them fetched.
        """
        if holds is None:
            holds = [
                h for h in self.holds.values() if h.status == "active" and h.expires_at <= self.now
            ]
        return {d.grant_id for h in holds for d in h.draws} - self.grants.keys()

    def load(self, grants: list[GrantRecord]) -> None:
        """Add grants fetched after the initial state."""
        for grant in grants:
            self.grants.setdefault(grant.id, grant)

    # -- reading ---------------------------------------------------------

    def available(self, at: datetime | None = None) -> int:
        """Credits spendable at ``at``: the remaining of grants live then."""
        at = at or self.now
        total = 0
        for g in self.grants.values():  # is_live, inlined: this runs for every entry
            if g.effective_at <= at and (g.expires_at is None or at < g.expires_at):
                total += g.remaining
        return total

    def held(self) -> int:
        """Credits parked in active holds."""
        return sum(h.amount for h in self.holds.values() if h.status == "active")

    def breakdown(self) -> dict[str, int]:
        """Available and held credits by the kind of grant they came from."""
        result: dict[str, int] = dict.fromkeys(GRANT_KINDS, 0)
        for grant in self.grants.values():
            if is_live(grant, self.now):
                result[grant.kind] += grant.remaining
        for hold in self.holds.values():
            if hold.status == "active":
                for draw in hold.draws:
                    result[draw.kind] += draw.amount
        return result

    def current_period(self, sub: SubscriptionRecord) -> int:
        """The absolute number of the period of ``sub`` containing now."""
        return _month(sub.anchor) + _index_of(sub.anchor, self.now)

    def allowance(self) -> tuple[GrantRecord | None, datetime] | None:
        """The current period's allowance grant (None if it granted nothing) and its end.

        None when there is no running subscription.
        """
        sub = self.subscription
        if sub is None:
            return None
        period = self.current_period(sub)
        if not sub.active_in(period):
            return None
        grant = next(
            (g for g in self.grants.values() if g.kind == "monthly" and g.period == period),
            None,
        )
        return grant, _start(sub, period + 1)

    def start_subscription(self, anchor: datetime, credits: int, *, priority: int) -> None:
        """Subscribe from ``anchor``; grant the current period's allowance now.

        A previous subscription must have ended: the new one's current period
        may begin the instant it ended, not before. A period starts in the
        month its number names, so no period is ever numbered twice either.
        """
        first = _month(anchor)
        index = _index_of(anchor, self.now)
        period = first + index
        previous = self.subscription
        if previous is not None:
            assert previous.ends_after is not None, "the previous subscription is running"
            ended = _start(previous, previous.ends_after + 1)
            if _shift(anchor, index) < ended:
                raise InvalidRequest(
                    "the new subscription's current period overlaps the previous one, which "
                    f"ended at {ended.isoformat()}; anchor it then or later"
                )
        self._set_subscription(
            SubscriptionRecord(anchor=anchor, monthly_credits=credits, last_period=period)
        )
        end = _shift(anchor, period - first + 1)
        self.add_grant(
            "monthly",
            credits,
            priority=priority,
            expires_at=end,
            description="Monthly allowance",
            period=period,
        )

    def change_subscription(self, credits: int) -> None:
        """Resume a cancelled subscription and/or change its allowance from next period."""
        sub = self.subscription
        assert sub is not None
        following = self.current_period(sub) + 1
        updated = replace(sub, ends_after=None)
        if credits != updated.credits_for(following):
            updated = replace(updated, next_credits=credits, next_from=following)
        if updated != sub:
            self._set_subscription(updated)

    def end_subscription(self) -> None:
        """No allowance after the current period."""
        sub = self.subscription
        if sub is None or sub.ends_after is not None:
            return
        self._set_subscription(replace(sub, ends_after=self.current_period(sub)))

    def earliest_expiry(self, kind: GrantKind) -> datetime | None:
        """The soonest expiry among live grants of ``kind`` with credits left."""
        times = [
            g.expires_at
            for g in self.grants.values()
            if g.kind == kind and g.remaining > 0 and g.expires_at and is_live(g, self.now)
        ]
        return min(times, default=None)

    # -- settling what time made due --------------------------------------

    def settle(
        self, rollover_cap: int = 0, priorities: Mapping[GrantKind, int] | None = None
    ) -> None:
        """Record, in time order, everything time has made due up to ``now``.

        Lapsed holds return their credits; at each ended period boundary of a
        subscription, the unused allowance rolls over (up to ``rollover_cap``)
        and the next allowance is granted; expired grants expire. At one
        instant, in that order: credits a lapsing hold returns count as
        unused allowance, and rollover is taken before the allowance expires.
        Grants created here that have already expired by ``now`` are expired
        in the same pass, so catching up many periods at once gives the same
        result as settling at every boundary.
        """
        events: list[tuple[datetime, int, int, str]] = []
        counter = itertools.count()

        def expiry_of(grant: GrantRecord) -> None:
            if grant.expires_at is not None and grant.expires_at <= self.now:
                heapq.heappush(events, (grant.expires_at, 2, next(counter), grant.id))

        for hold in self.holds.values():
            if hold.status == "active" and hold.expires_at <= self.now:
                heapq.heappush(events, (hold.expires_at, 0, next(counter), hold.id))
        for grant in self.grants.values():
            expiry_of(grant)
        sub = self.subscription
        if sub is not None:
            due = min(self.current_period(sub), _last_allowance(sub) + 1)
            for period in range(sub.last_period + 1, due + 1):
                start = _start(sub, period)
                heapq.heappush(events, (start, 1, next(counter), str(period)))
        while events:
            at, what, _, ident = heapq.heappop(events)
            if what == 0:
                hold = self.holds[ident]
                self._update_hold(replace(hold, status="expired", settled_at=at))
                self._give_back(hold.draws, at)
                self._released(hold, at, "Hold lapsed; credits returned")
            elif what == 1:
                for grant in self._renew(int(ident), rollover_cap, priorities or {}):
                    expiry_of(grant)
            else:
                self._expire_grant(self.grants[ident], at)

    def _renew(
        self, period: int, rollover_cap: int, priorities: Mapping[GrantKind, int]
    ) -> list[GrantRecord]:
        """Period ``period`` begins: roll the last allowance over, grant the next."""
        sub = self.subscription
        assert sub is not None
        start, end = _start(sub, period), _start(sub, period + 1)
        created: list[GrantRecord] = []
        if sub.active_in(period):
            previous = next(
                (g for g in self.grants.values() if g.kind == "monthly" and g.period == period - 1),
                None,
            )
            carried = min(previous.remaining if previous else 0, rollover_cap)
            kind: GrantKind
            for kind, amount, description in (
                ("rollover", carried, "Unused allowance carried over"),
                ("monthly", sub.credits_for(period), "Monthly allowance"),
            ):
                if amount:
                    created.append(
                        self.add_grant(
                            kind,
                            amount,
                            priority=priorities.get(kind, DEFAULT_PRIORITIES[kind]),
                            expires_at=end,
                            description=description,
                            at=start,
                            period=period,
                        )
                    )
        self._set_subscription(
            SubscriptionRecord(
                sub.anchor,
                sub.monthly_credits,
                period,
                sub.ends_after,
                sub.next_credits,
                sub.next_from,
            )
        )
        return created

    def _set_subscription(self, sub: SubscriptionRecord) -> None:
        self.subscription = sub
        self._subscription_changed = True

    # -- when the account next needs settling ----------------------------------

    def next_due(self) -> datetime | None:
        """The first instant after which ``settle`` would have something to do.

        The soonest of: expiry of a grant with credits left, expiry of an
        active hold, the next period boundary of the subscription. None if
        nothing will ever come due without another write.
        """
        times = [
            g.expires_at
            for g in self.grants.values()
            if g.remaining > 0 and g.expires_at is not None
        ]
        times.extend(h.expires_at for h in self.holds.values() if h.status == "active")
        sub = self.subscription
        if sub is not None and sub.last_period + 1 <= _last_allowance(sub) + 1:
            times.append(_start(sub, sub.last_period + 1))
        return min(times, default=None)

    def finish(self) -> Changes:
        """Decide the account row to write, and return every change.

        The stored ``due_at`` only ever errs early: a write that brings the
        next due instant forward (a hold, an expiring grant) records it, one
        that pushes it back (a spend draining a grant) leaves it, and the
        account is then settled and rescheduled exactly by whoever touches it
        once that instant has passed. So a plain spend never rewrites the
        account row, and the reset job never misses an account.
        """
        stored, due = self.due_at, self.next_due()
        keep = due == stored or (
            stored is not None and stored > self.now and (due is None or due >= stored)
        )
        if keep:
            due = stored
        if self._subscription_changed or due != stored:
            self.changes.account = AccountRow(subscription=self.subscription, due_at=due)
        return self.changes

    def _expire_grant(self, grant: GrantRecord, at: datetime) -> None:
        if grant.remaining <= 0:
            return
        amount = grant.remaining
        self._set_remaining(grant.id, 0)
        self.add_entry(
            "expire", -amount, at=at, grant_id=grant.id, description=f"{grant.kind} credits expired"
        )

    # -- operations ---------------------------------------------------------

    def add_grant(
        self,
        kind: GrantKind,
        amount: int,
        *,
        priority: int,
        expires_at: datetime | None,
        description: str | None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        at: datetime | None = None,
        period: int | None = None,
    ) -> GrantRecord:
        """Create a grant (effective ``at``, default now) and its credit entry."""
        at = at or self.now
        grant = GrantRecord(
            id=new_id("grt"),
            kind=kind,
            amount=amount,
            remaining=amount,
            priority=priority,
            effective_at=at,
            expires_at=expires_at,
            created_at=at,
            description=description,
            period=period,
        )
        self.grants[grant.id] = grant
        self.changes.new_grants.append(grant)
        self._created.add(grant.id)
        self.add_entry(
            kind,
            amount,
            at=at,
            grant_id=grant.id,
            description=description,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        return grant

    def draw(self, amount: int) -> tuple[Draw, ...]:
        """Take ``amount`` from live grants in spend order, or raise InsufficientCredits."""
        available = self.available()
        if amount > available:
            raise InsufficientCredits(required=amount, available=available)
        draws: list[Draw] = []
        left = amount
        live = sorted((g for g in self.grants.values() if is_live(g, self.now)), key=spend_order)
        for grant in live:
            if left == 0:
                break
            take = min(grant.remaining, left)
            if take <= 0:
                continue
            self._set_remaining(grant.id, grant.remaining - take)
            draws.append(Draw(grant_id=grant.id, kind=grant.kind, amount=take))
            left -= take
        return tuple(draws)

    def spend(
        self,
        amount: int,
        *,
        description: str | None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> EntryRecord:
        """Debit ``amount`` now."""
        draws = self.draw(amount)
        return self.add_entry(
            "spend",
            -amount,
            draws=draws,
            description=description,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )

    def hold(
        self, amount: int, *, expires_at: datetime, idempotency_key: str, request_hash: str
    ) -> HoldRecord:
        """Park ``amount`` from live grants until capture, release or expiry."""
        draws = self.draw(amount)
        hold = HoldRecord(
            id=new_id("hold"),
            amount=amount,
            captured=0,
            status="active",
            draws=draws,
            created_at=self.now,
            expires_at=expires_at,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        self.holds[hold.id] = hold
        self.changes.new_holds.append(hold)
        return hold

    def capture(self, hold: HoldRecord, amount: int, *, description: str | None) -> HoldRecord:
        """Charge ``amount`` (≤ held) from the hold's draws in order; return the rest."""
        charged: list[Draw] = []
        returned: list[Draw] = []
        left = amount
        for draw in hold.draws:
            take = min(draw.amount, left)
            left -= take
            if take:
                charged.append(draw.model_copy(update={"amount": take}))
            if draw.amount - take:
                returned.append(draw.model_copy(update={"amount": draw.amount - take}))
        updated = replace(hold, status="captured", captured=amount, settled_at=self.now)
        self._update_hold(updated)
        self._give_back(tuple(returned), self.now)
        if amount:
            self.add_entry(
                "spend", -amount, draws=tuple(charged), hold_id=hold.id, description=description
            )
        else:  # nothing charged: the journal still says where the credits went
            self._released(hold, self.now, "Hold captured at 0; credits returned")
        return updated

    def release(self, hold: HoldRecord) -> HoldRecord:
        """Return all of a hold's credits."""
        updated = replace(hold, status="released", settled_at=self.now)
        self._update_hold(updated)
        self._give_back(hold.draws, self.now)
        self._released(hold, self.now, "Hold released; credits returned")
        return updated

    def _released(self, hold: HoldRecord, at: datetime, description: str) -> None:
        """Journal a hold's credits going back: nothing spent, ``available`` rises."""
        self.add_entry(
            "release", 0, at=at, hold_id=hold.id, draws=hold.draws, description=description
        )

    # -- bookkeeping ---------------------------------------------------------

    def _give_back(self, draws: tuple[Draw, ...], at: datetime) -> None:
        """Return credits to the grants they came from; an expired grant expires them."""
        for draw in draws:
            grant = self.grants.get(draw.grant_id)
            if grant is None:
                raise KeyError(f"hold draws from grant {draw.grant_id} that was not loaded")
            self._set_remaining(grant.id, grant.remaining + draw.amount)
            if grant.expires_at is not None and grant.expires_at <= at:
                self._expire_grant(self.grants[grant.id], at)

    def _set_remaining(self, grant_id: str, remaining: int) -> None:
        grant = self.grants[grant_id]
        self.grants[grant_id] = _with_remaining(grant, remaining)
        if grant_id in self._created:
            self.changes.new_grants = [
                self.grants[g.id] if g.id == grant_id else g for g in self.changes.new_grants
            ]
        else:
            self.changes.grant_remaining[grant_id] = remaining

    def _update_hold(self, hold: HoldRecord) -> None:
        self.holds[hold.id] = hold
        if any(h.id == hold.id for h in self.changes.new_holds):
            self.changes.new_holds = [
                hold if h.id == hold.id else h for h in self.changes.new_holds
            ]
        else:
            self.changes.updated_holds = [
                h for h in self.changes.updated_holds if h.id != hold.id
            ] + [hold]

    def add_entry(
        self,
        type: EntryType,
        amount: int,
        *,
        at: datetime | None = None,
        grant_id: str | None = None,
        hold_id: str | None = None,
        draws: tuple[Draw, ...] = (),
        description: str | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> EntryRecord:
        """Append a journal entry; ``balance_after`` is what is available right after it."""
        at = at or self.now
        entry = EntryRecord(
            id=new_id("ent"),
            type=type,
            amount=amount,
            balance_after=self.available(at),
            created_at=at,
            description=description,
            grant_id=grant_id,
            hold_id=hold_id,
            draws=draws,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        self.changes.new_entries.append(entry)
        return entry


def _last_allowance(sub: SubscriptionRecord) -> int:
    """The last period that can still need a boundary (one past the final allowance)."""
    return sub.ends_after if sub.ends_after is not None else 2**31
