"""Accounts, grants, holds and the journal.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import context, op

from prpm_playground.storage.sql.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    p = context.config.attributes["table_prefix"]
    op.create_table(
        f"{p}accounts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"{p}accounts_pk"),
        sa.UniqueConstraint("user_id", name=f"{p}accounts_user_id_uq"),
    )
    op.create_table(
        f"{p}grants",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"{p}grants_pk"),
        sa.ForeignKeyConstraint(
            ["account_id"], [f"{p}accounts.id"], name=f"{p}grants_account_id_fk"
        ),
        sa.CheckConstraint("amount > 0", name=f"{p}grants_amount_ck"),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name=f"{p}grants_remaining_ck"
        ),
    )
    op.create_index(f"{p}grants_account_ix", f"{p}grants", ["account_id"])
    if op.get_bind().dialect.name == "postgresql":
        # Spends rewrite one grant row each; free space on the page keeps the
        # update in place (HOT) instead of bloating the table and its indexes.
        op.execute(f"ALTER TABLE {p}grants SET (fillfactor = 70)")
    op.create_table(
        f"{p}holds",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("captured", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("draws", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"{p}holds_pk"),
        sa.ForeignKeyConstraint(
            ["account_id"], [f"{p}accounts.id"], name=f"{p}holds_account_id_fk"
        ),
        sa.CheckConstraint("amount > 0", name=f"{p}holds_amount_ck"),
        sa.CheckConstraint("captured >= 0 AND captured <= amount", name=f"{p}holds_captured_ck"),
        sa.CheckConstraint(
            "status IN ('active', 'captured', 'released', 'expired')", name=f"{p}holds_status_ck"
        ),
    )
    op.create_index(
        f"{p}holds_active_ix",
        f"{p}holds",
        ["account_id"],
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        f"{p}entries",
        sa.Column("seq", Id, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("account_id", Id, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("grant_id", sa.String(40), nullable=True),
        sa.Column("hold_id", sa.String(40), nullable=True),
        sa.Column("draws", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=f"{p}entries_pk"),
        sa.ForeignKeyConstraint(
            ["account_id"], [f"{p}accounts.id"], name=f"{p}entries_account_id_fk"
        ),
        sa.ForeignKeyConstraint(["grant_id"], [f"{p}grants.id"], name=f"{p}entries_grant_id_fk"),
        sa.ForeignKeyConstraint(["hold_id"], [f"{p}holds.id"], name=f"{p}entries_hold_id_fk"),
        sa.UniqueConstraint("id", name=f"{p}entries_id_uq"),
        sa.CheckConstraint("balance_after >= 0", name=f"{p}entries_balance_after_ck"),
    )
    op.create_index(f"{p}entries_account_ix", f"{p}entries", ["account_id", "seq"])
    op.create_table(
        f"{p}idempotency_keys",
        sa.Column("account_id", Id, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("entry_id", sa.String(40), nullable=True),
        sa.Column("hold_id", sa.String(40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "key", name=f"{p}idempotency_keys_pk"),
        sa.ForeignKeyConstraint(
            ["account_id"], [f"{p}accounts.id"], name=f"{p}idempotency_keys_account_id_fk"
        ),
        sa.CheckConstraint(
            "(entry_id IS NULL) <> (hold_id IS NULL)", name=f"{p}idempotency_keys_target_ck"
        ),
    )


def downgrade() -> None:
    p = context.config.attributes["table_prefix"]
    op.drop_table(f"{p}idempotency_keys")
    op.drop_table(f"{p}entries")
    op.drop_table(f"{p}holds")
    op.drop_table(f"{p}grants")
    op.drop_table(f"{p}accounts")
