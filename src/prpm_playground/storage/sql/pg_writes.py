"""PostgreSQL: every row a unit of work writes, in one statement.

The statement has a fixed shape: each kind of change is a data-modifying CTE
over ``unnest()`` of parameter arrays, and an empty array is a no-op. One
prepared statement therefore serves every unit of work, however many rows
of each kind it writes, in one round trip. Foreign keys are checked at the
end of the statement, so entries may reference grants and holds inserted by
the same statement; rows are never both inserted and updated by it (the
services fold such changes into the insert). An update with nothing to do
is gated by a parameter-only condition, which PostgreSQL evaluates once,
before touching the table, so a spend never reads the holds table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import TextClause, text

from ..base import Changes
from .records import dump_draws, key_rows
from .tables import Tables


def build_write_all(t: Tables) -> TextClause:
    """The one statement that writes a whole ``Changes``."""
    # Only table names are interpolated, and they come from a prefix that
    # SQLAlchemyStorage validated against ^[a-z][a-z0-9_]*$.
    g, h, e, k = t.grants.name, t.holds.name, t.entries.name, t.keys.name
    return text(
        f"""
WITH new_grants AS (
    INSERT INTO {g} (id, account_id, kind, amount, remaining, priority,
                     effective_at, expires_at, created_at, description)
    SELECT x.id, :account_id, x.kind, x.amount, x.remaining, x.priority,
           x.effective_at, x.expires_at, x.created_at, x.description
    FROM unnest(CAST(:g_id AS varchar[]), CAST(:g_kind AS varchar[]),
                CAST(:g_amount AS bigint[]), CAST(:g_remaining AS bigint[]),
                CAST(:g_priority AS integer[]), CAST(:g_effective_at AS timestamptz[]),
                CAST(:g_expires_at AS timestamptz[]), CAST(:g_created_at AS timestamptz[]),
                CAST(:g_description AS text[]))
         AS x(id, kind, amount, remaining, priority, effective_at, expires_at,
              created_at, description)
    RETURNING 1
), remaining AS (
    UPDATE {g} AS target SET remaining = x.remaining
    FROM unnest(CAST(:r_id AS varchar[]), CAST(:r_remaining AS bigint[])) AS x(id, remaining)
    WHERE target.id = x.id AND cardinality(CAST(:r_id AS varchar[])) > 0
    RETURNING 1
), new_holds AS (
    INSERT INTO {h} (id, account_id, amount, captured, status, draws, created_at,
                     expires_at, settled_at)
    SELECT x.id, :account_id, x.amount, x.captured, x.status, x.draws, x.created_at,
           x.expires_at, x.settled_at
    FROM unnest(CAST(:h_id AS varchar[]), CAST(:h_amount AS bigint[]),
                CAST(:h_captured AS bigint[]), CAST(:h_status AS varchar[]),
                CAST(:h_draws AS text[]), CAST(:h_created_at AS timestamptz[]),
                CAST(:h_expires_at AS timestamptz[]), CAST(:h_settled_at AS timestamptz[]))
         AS x(id, amount, captured, status, draws, created_at, expires_at, settled_at)
    RETURNING 1
), settled AS (
    UPDATE {h} AS target
    SET status = x.status, captured = x.captured, settled_at = x.settled_at
    FROM unnest(CAST(:s_id AS varchar[]), CAST(:s_status AS varchar[]),
                CAST(:s_captured AS bigint[]), CAST(:s_settled_at AS timestamptz[]))
         AS x(id, status, captured, settled_at)
    WHERE target.id = x.id AND cardinality(CAST(:s_id AS varchar[])) > 0
    RETURNING 1
), new_entries AS (
    INSERT INTO {e} (id, account_id, type, amount, balance_after, created_at, description,
                     grant_id, hold_id, draws)
    SELECT x.id, :account_id, x.type, x.amount, x.balance_after, x.created_at,
           x.description, x.grant_id, x.hold_id, x.draws
    FROM unnest(CAST(:e_id AS varchar[]), CAST(:e_type AS varchar[]),
                CAST(:e_amount AS bigint[]), CAST(:e_balance_after AS bigint[]),
                CAST(:e_created_at AS timestamptz[]), CAST(:e_description AS text[]),
                CAST(:e_grant_id AS varchar[]), CAST(:e_hold_id AS varchar[]),
                CAST(:e_draws AS text[]))
         WITH ORDINALITY
         AS x(id, type, amount, balance_after, created_at, description, grant_id, hold_id,
              draws, n)
    ORDER BY x.n
    RETURNING 1
), new_keys AS (
    INSERT INTO {k} (account_id, key, request_hash, entry_id, hold_id, created_at)
    SELECT :account_id, x.key, x.request_hash, x.entry_id, x.hold_id, x.created_at
    FROM unnest(CAST(:k_key AS varchar[]), CAST(:k_request_hash AS varchar[]),
                CAST(:k_entry_id AS varchar[]), CAST(:k_hold_id AS varchar[]),
                CAST(:k_created_at AS timestamptz[]))
         AS x(key, request_hash, entry_id, hold_id, created_at)
    RETURNING 1
)
SELECT (SELECT count(*) FROM new_grants)
     + (SELECT count(*) FROM remaining) + (SELECT count(*) FROM new_holds)
     + (SELECT count(*) FROM settled)
     + (SELECT count(*) FROM new_entries) + (SELECT count(*) FROM new_keys)
"""
    )


def write_all_params(changes: Changes, account_id: int) -> dict[str, Any]:
    """Column arrays for ``build_write_all``; the count of rows it must touch."""
    keys = key_rows(changes, account_id)
    grants, holds, settled, entries = (
        changes.new_grants,
        changes.new_holds,
        changes.updated_holds,
        changes.new_entries,
    )
    return {
        "account_id": account_id,
        "g_id": [x.id for x in grants],
        "g_kind": [x.kind for x in grants],
        "g_amount": [x.amount for x in grants],
        "g_remaining": [x.remaining for x in grants],
        "g_priority": [x.priority for x in grants],
        "g_effective_at": [x.effective_at for x in grants],
        "g_expires_at": [x.expires_at for x in grants],
        "g_created_at": [x.created_at for x in grants],
        "g_description": [x.description for x in grants],
        "r_id": list(changes.grant_remaining),
        "r_remaining": list(changes.grant_remaining.values()),
        "h_id": [x.id for x in holds],
        "h_amount": [x.amount for x in holds],
        "h_captured": [x.captured for x in holds],
        "h_status": [x.status for x in holds],
        "h_draws": [dump_draws(x.draws) for x in holds],
        "h_created_at": [x.created_at for x in holds],
        "h_expires_at": [x.expires_at for x in holds],
        "h_settled_at": [x.settled_at for x in holds],
        "s_id": [x.id for x in settled],
        "s_status": [x.status for x in settled],
        "s_captured": [x.captured for x in settled],
        "s_settled_at": [x.settled_at for x in settled],
        "e_id": [x.id for x in entries],
        "e_type": [x.type for x in entries],
        "e_amount": [x.amount for x in entries],
        "e_balance_after": [x.balance_after for x in entries],
        "e_created_at": [x.created_at for x in entries],
        "e_description": [x.description for x in entries],
        "e_grant_id": [x.grant_id for x in entries],
        "e_hold_id": [x.hold_id for x in entries],
        "e_draws": [dump_draws(x.draws) if x.draws else None for x in entries],
        "k_key": [x["key"] for x in keys],
        "k_request_hash": [x["request_hash"] for x in keys],
        "k_entry_id": [x["entry_id"] for x in keys],
        "k_hold_id": [x["hold_id"] for x in keys],
        "k_created_at": [x["created_at"] for x in keys],
    }


def expected_rows(changes: Changes) -> int:
    """How many rows ``build_write_all`` must insert or update for ``changes``."""
    return (
        len(changes.new_grants)
        + len(changes.grant_remaining)
        + len(changes.new_holds)
        + len(changes.updated_holds)
        + len(changes.new_entries)
        + len(key_rows(changes, 0))
    )
