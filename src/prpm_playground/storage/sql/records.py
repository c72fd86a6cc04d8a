"""Conversions between rows and the port's records."""

from __future__ import annotations

import json
from typing import Any

from ...models import Draw
from ..base import EntryRecord, GrantRecord, HoldRecord


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
        "idempotency_key": h.idempotency_key,
        "request_hash": h.request_hash,
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
        "idempotency_key": e.idempotency_key,
        "request_hash": e.request_hash,
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
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
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
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        seq=row.seq,
    )
