"""Conversions between rows and the port's records."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ...models import Draw
from ..base import (
    AccountRow,
    Changes,
    EntryRecord,
    GrantRecord,
    HoldRecord,
    SubscriptionRecord,
)


def dump_draws(draws: tuple[Draw, ...]) -> str:
    """Compact JSON: ``[[grant_id, kind, amount], ...]``."""
    return json.dumps([[d.grant_id, d.kind, d.amount] for d in draws], separators=(",", ":"))


def load_draws(text: str | None) -> tuple[Draw, ...]:
    """Inverse of ``dump_draws``."""
    if not text:
        return ()
    return tuple(Draw(grant_id=g, kind=k, amount=a) for g, k, a in json.loads(text))


def grant_row(g: GrantRecord, account_id: int) -> dict[str, Any]:
    return {
        "id": g.id,
        "account_id": account_id,
        "kind": g.kind,
        "amount": g.amount,
        "remaining": g.remaining,
        "priority": g.priority,
        "effective_at": g.effective_at,
        "expires_at": g.expires_at,
        "created_at": g.created_at,
        "description": g.description,
        "period": g.period,
    }


def hold_row(h: HoldRecord, account_id: int) -> dict[str, Any]:
    return {
        "id": h.id,
        "account_id": account_id,
        "amount": h.amount,
        "captured": h.captured,
        "status": h.status,
        "draws": dump_draws(h.draws),
        "created_at": h.created_at,
        "expires_at": h.expires_at,
        "settled_at": h.settled_at,
    }


def entry_row(e: EntryRecord, account_id: int) -> dict[str, Any]:
    return {
        "id": e.id,
        "account_id": account_id,
        "type": e.type,
        "amount": e.amount,
        "balance_after": e.balance_after,
        "created_at": e.created_at,
        "description": e.description,
        "grant_id": e.grant_id,
        "hold_id": e.hold_id,
        "draws": dump_draws(e.draws) if e.draws else None,
    }


def key_rows(changes: Changes, account_id: int) -> list[dict[str, Any]]:
    """Rows for the idempotency-key table: one per keyed entry or hold created."""
    rows: list[dict[str, Any]] = []
    for e in changes.new_entries:
        if e.idempotency_key is not None:
            rows.append(_key_row(account_id, e.idempotency_key, e.request_hash, e.created_at))
            rows[-1]["entry_id"] = e.id
    for h in changes.new_holds:
        if h.idempotency_key is not None:
            rows.append(_key_row(account_id, h.idempotency_key, h.request_hash, h.created_at))
            rows[-1]["hold_id"] = h.id
    return rows


def _key_row(
    account_id: int, key: str, request_hash: str | None, created_at: datetime
) -> dict[str, Any]:
    if request_hash is None:
        raise ValueError("a keyed row needs its request hash")
    return {
        "account_id": account_id,
        "key": key,
        "request_hash": request_hash,
        "entry_id": None,
        "hold_id": None,
        "created_at": created_at,
    }


def to_grant(row: Any) -> GrantRecord:
    return GrantRecord(
        id=row.id,
        kind=row.kind,
        amount=row.amount,
        remaining=row.remaining,
        priority=row.priority,
        effective_at=row.effective_at,
        expires_at=row.expires_at,
        created_at=row.created_at,
        description=row.description,
        period=row.period,
    )


def account_row(row: AccountRow) -> dict[str, Any]:
    """The account columns a unit rewrites: the subscription's (NULL if none) and ``due_at``."""
    sub = row.subscription
    columns: dict[str, Any] = dict.fromkeys(_SUBSCRIPTION_COLUMNS)
    if sub is not None:
        columns.update(
            sub_anchor=sub.anchor,
            sub_credits=sub.monthly_credits,
            sub_last_period=sub.last_period,
            sub_ends_after=sub.ends_after,
            sub_next_credits=sub.next_credits,
            sub_next_from=sub.next_from,
        )
    columns["due_at"] = row.due_at
    return columns


_SUBSCRIPTION_COLUMNS = (
    "sub_anchor",
    "sub_credits",
    "sub_last_period",
    "sub_ends_after",
    "sub_next_credits",
    "sub_next_from",
)


def to_subscription(
    anchor: datetime | None,
    credits: int,
    last_period: int,
    ends_after: int | None,
    next_credits: int | None,
    next_from: int | None,
) -> SubscriptionRecord | None:
    """The subscription stored in an account's columns; None if it never subscribed."""
    if anchor is None:
        return None
    return SubscriptionRecord(
        anchor=anchor,
        monthly_credits=credits,
        last_period=last_period,
        ends_after=ends_after,
        next_credits=next_credits,
        next_from=next_from,
    )


def to_hold(row: Any) -> HoldRecord:
    return HoldRecord(
        id=row.id,
        amount=row.amount,
        captured=row.captured,
        status=row.status,
        draws=load_draws(row.draws),
        created_at=row.created_at,
        expires_at=row.expires_at,
        settled_at=row.settled_at,
    )


def to_entry(row: Any) -> EntryRecord:
    return EntryRecord(
        id=row.id,
        type=row.type,
        amount=row.amount,
        balance_after=row.balance_after,
        created_at=row.created_at,
        description=row.description,
        grant_id=row.grant_id,
        hold_id=row.hold_id,
        draws=load_draws(row.draws),
        seq=row.seq,
    )
