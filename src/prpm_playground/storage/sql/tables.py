"""Table definitions. Every name carries the configurable prefix.

The migrations under ``migrations/versions`` create exactly this schema; a
test compares the two, so change both together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "%(table_name)s_%(column_0_N_name)s_ix",
    "uq": "%(table_name)s_%(column_0_N_name)s_uq",
    "ck": "%(table_name)s_%(constraint_name)s_ck",
    "fk": "%(table_name)s_%(column_0_name)s_fk",
    "pk": "%(table_name)s_pk",
}

Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text in one
    fixed format, so comparisons in SQL order correctly.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(DateTime(timezone=dialect.name == "postgresql"))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached storage")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Tables:
    """The library's tables under one prefix."""

    prefix: str
    metadata: MetaData
    accounts: Table
    grants: Table
    holds: Table
    entries: Table
    keys: Table
    sessions: Table
    exchanges: Table
    shares: Table
    feedback: Table
    rate_limits: Table

    @property
    def version_table(self) -> str:
        """Name of the Alembic version table."""
        return f"{self.prefix}alembic_version"


def is_active(holds: Table) -> ColumnElement[bool]:
    """``status = 'active'`` with the value in the SQL text, as in the partial index.

    Bound as a parameter, the value decides whether the partial index can
    serve the query, so SQLite prepares the statement again on every
    execution (about ten times the cost of the ledger's state read) and
    PostgreSQL's generic plans cannot use the index.
    """
    return holds.c.status == literal_column("'active'")


def build_tables(prefix: str) -> Tables:
    """Define the tables under ``prefix`` in a fresh ``MetaData``."""
    md = MetaData(naming_convention=NAMING_CONVENTION)
    p = prefix
    accounts = Table(
        f"{p}accounts",
        md,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("user_id", String(255), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        # Subscription terms and progress (see SubscriptionRecord); NULL anchor
        # means the account never subscribed.
        Column("sub_anchor", UTCDateTime(), nullable=True),
        Column("sub_credits", BigInteger(), nullable=True),
        Column("sub_last_period", Integer(), nullable=True),
        Column("sub_ends_after", Integer(), nullable=True),
        Column("sub_next_credits", BigInteger(), nullable=True),
        Column("sub_next_from", Integer(), nullable=True),
        # When the account next needs settling (see Book.finish): never later
        # than the truth, so the reset job finds every due account by index.
        Column("due_at", UTCDateTime(), nullable=True),
        UniqueConstraint("user_id"),
    )
    # Ordered by (due_at, id) so the job pages through due accounts by keyset.
    Index(f"{p}accounts_due_at_id_ix", accounts.c.due_at, accounts.c.id)
    grants = Table(
        f"{p}grants",
        md,
        Column("id", String(40), primary_key=True),
        Column("account_id", Id, ForeignKey(f"{p}accounts.id"), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("amount", BigInteger(), nullable=False),
        Column("remaining", BigInteger(), nullable=False),
        Column("priority", Integer(), nullable=False),
        Column("effective_at", UTCDateTime(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=True),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("description", Text(), nullable=True),
        Column("period", Integer(), nullable=True),
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
    )
    # One allowance and one rollover per (account, period), enforced here.
    Index(
        f"{p}grants_period_uq",
        grants.c.account_id,
        grants.c.kind,
        grants.c.period,
        unique=True,
        postgresql_where=grants.c.period.isnot(None),
        sqlite_where=grants.c.period.isnot(None),
    )
    # Deliberately not partial on ``remaining > 0``: an index over the column
    # every spend changes would rule out PostgreSQL's in-place (HOT) updates.
    Index(f"{p}grants_account_ix", grants.c.account_id)
    holds = Table(
        f"{p}holds",
        md,
        Column("id", String(40), primary_key=True),
        Column("account_id", Id, ForeignKey(f"{p}accounts.id"), nullable=False),
        Column("amount", BigInteger(), nullable=False),
        Column("captured", BigInteger(), nullable=False),
        Column("status", String(16), nullable=False),
        Column("draws", Text(), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False),
        Column("settled_at", UTCDateTime(), nullable=True),
        CheckConstraint("amount > 0", name="amount"),
        CheckConstraint("captured >= 0 AND captured <= amount", name="captured"),
        CheckConstraint("status IN ('active', 'captured', 'released', 'expired')", name="status"),
    )
    Index(
        f"{p}holds_active_ix",
        holds.c.account_id,
        postgresql_where=holds.c.status == "active",
        sqlite_where=holds.c.status == "active",
    )
    entries = Table(
        f"{p}entries",
        md,
        Column("seq", Id, primary_key=True, autoincrement=True),
        Column("id", String(40), nullable=False),
        Column("account_id", Id, ForeignKey(f"{p}accounts.id"), nullable=False),
        Column("type", String(16), nullable=False),
        Column("amount", BigInteger(), nullable=False),
        Column("balance_after", BigInteger(), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("description", Text(), nullable=True),
        Column("grant_id", String(40), ForeignKey(f"{p}grants.id"), nullable=True),
        Column("hold_id", String(40), ForeignKey(f"{p}holds.id"), nullable=True),
        Column("draws", Text(), nullable=True),
        UniqueConstraint("id"),
        CheckConstraint("balance_after >= 0", name="balance_after"),
    )
    Index(f"{p}entries_account_ix", entries.c.account_id, entries.c.seq)
    # Keys live apart from entries and holds so that every hot lookup has
    # exactly one usable index: a plan cached while the tables were small can
    # then never settle on scanning an account's whole journal.
    keys = Table(
        f"{p}idempotency_keys",
        md,
        Column("account_id", Id, ForeignKey(f"{p}accounts.id"), primary_key=True),
        Column("key", String(255), primary_key=True),
        Column("request_hash", String(64), nullable=False),
        Column("entry_id", String(40), nullable=True),
        Column("hold_id", String(40), nullable=True),
        Column("created_at", UTCDateTime(), nullable=False),
        CheckConstraint("(entry_id IS NULL) <> (hold_id IS NULL)", name="target"),
    )
    sessions, exchanges, shares, feedback = _session_tables(md, p)
    return Tables(
        p,
        md,
        accounts,
        grants,
        holds,
        entries,
        keys,
        sessions,
        exchanges,
        shares,
        feedback,
        _rate_limit_table(md, p),
    )


def _session_tables(md: MetaData, p: str) -> tuple[Table, Table, Table, Table]:
    """Sessions, their exchanges, share links and feedback.

    Deleting a session cascades to everything below it (SQLite enforces
    foreign keys: ``engine.configure`` turns them on per connection).
    """
    sessions = Table(
        f"{p}sessions",
        md,
        Column("id", String(40), primary_key=True),
        Column("user_id", String(255), nullable=False),
        Column("package_id", String(255), nullable=True),
        Column("package_version", String(64), nullable=True),
        Column("no_prompt", Boolean(), nullable=False),
        Column("comparison_id", String(255), nullable=True),
        Column("title", String(80), nullable=False),
        Column("exchange_count", Integer(), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    )
    # A user's sessions, most recently updated first, paged by keyset.
    Index(
        f"{p}sessions_user_updated_ix",
        sessions.c.user_id,
        sessions.c.updated_at,
        sessions.c.id,
    )
    Index(f"{p}sessions_comparison_ix", sessions.c.comparison_id)
    exchanges = Table(
        f"{p}exchanges",
        md,
        Column(
            "session_id",
            String(40),
            ForeignKey(f"{p}sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("idx", Integer(), primary_key=True, autoincrement=False),
        Column("user_id", String(255), nullable=False),
        # Unique per user; NULL (a forked copy) as often as needed.
        Column("run_id", String(255), nullable=True),
        Column("input", Text(), nullable=False),
        Column("response", Text(), nullable=False),
        Column("model", String(128), nullable=False),
        Column("input_tokens", BigInteger(), nullable=False),
        Column("output_tokens", BigInteger(), nullable=False),
        Column("cache_creation_input_tokens", BigInteger(), nullable=False),
        Column("cache_read_input_tokens", BigInteger(), nullable=False),
        Column("credits_spent", BigInteger(), nullable=False),
        Column("duration_ms", BigInteger(), nullable=False),
        Column("stop_reason", String(64), nullable=True),
        Column("created_at", UTCDateTime(), nullable=False),
        UniqueConstraint("user_id", "run_id"),
    )
    shares = Table(
        f"{p}shares",
        md,
        Column("token", String(64), primary_key=True),
        Column(
            "session_id",
            String(40),
            ForeignKey(f"{p}sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("user_id", String(255), nullable=False),
        Column("package_id", String(255), nullable=True),
        Column("package_version", String(64), nullable=True),
        Column("no_prompt", Boolean(), nullable=False),
        # JSON: [{"index", "input", "response", "model"}, ...] as of created_at.
        Column("snapshot", Text(), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("revoked_at", UTCDateTime(), nullable=True),
    )
    # Every share of a session, revoked ones too: serves the cascade from sessions.
    Index(f"{p}shares_session_ix", shares.c.session_id)
    # At most one live share per session, enforced here.
    Index(
        f"{p}shares_live_uq",
        shares.c.session_id,
        unique=True,
        postgresql_where=shares.c.revoked_at.is_(None),
        sqlite_where=shares.c.revoked_at.is_(None),
    )
    feedback = Table(
        f"{p}feedback",
        md,
        Column("session_id", String(40), primary_key=True),
        Column("exchange_idx", Integer(), primary_key=True, autoincrement=False),
        Column("user_id", String(255), nullable=False),
        Column("helpful", Boolean(), nullable=False),
        Column("comment", Text(), nullable=True),
        Column("created_at", UTCDateTime(), nullable=False),
        ForeignKeyConstraint(
            ["session_id", "exchange_idx"],
            [exchanges.c.session_id, exchanges.c.idx],
            ondelete="CASCADE",
        ),
    )
    return sessions, exchanges, shares, feedback


def _rate_limit_table(md: MetaData, p: str) -> Table:
    """Hit counters of the web API's rate limits: one row per key and fixed window."""
    rate_limits = Table(
        f"{p}rate_limits",
        md,
        Column("key", String(300), primary_key=True),
        Column("window_start", UTCDateTime(), primary_key=True),
        Column("hits", BigInteger(), nullable=False),
    )
    # Pruning deletes whole past windows at once.
    Index(f"{p}rate_limits_window_start_ix", rate_limits.c.window_start)
    return rate_limits
