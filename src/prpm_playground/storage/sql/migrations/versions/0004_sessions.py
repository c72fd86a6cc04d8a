"""Sessions, their exchanges, share links and feedback.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import context, op

from prpm_playground.storage.sql.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["table_prefix"]
    op.create_table(
        f"{p}sessions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("package_id", sa.String(255), nullable=True),
        sa.Column("package_version", sa.String(64), nullable=True),
        sa.Column("no_prompt", sa.Boolean(), nullable=False),
        sa.Column("comparison_id", sa.String(255), nullable=True),
        sa.Column("title", sa.String(80), nullable=False),
        sa.Column("exchange_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"{p}sessions_pk"),
    )
    # A user's sessions, most recently updated first, paged by keyset.
    op.create_index(f"{p}sessions_user_updated_ix", f"{p}sessions", ["user_id", "updated_at", "id"])
    op.create_index(f"{p}sessions_comparison_ix", f"{p}sessions", ["comparison_id"])
    op.create_table(
        f"{p}exchanges",
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=True),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_creation_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("credits_spent", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=False),
        sa.Column("stop_reason", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "idx", name=f"{p}exchanges_pk"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            [f"{p}sessions.id"],
            name=f"{p}exchanges_session_id_fk",
            ondelete="CASCADE",
        ),
        # Unique per user; NULL (a forked copy) as often as needed.
        sa.UniqueConstraint("user_id", "run_id", name=f"{p}exchanges_user_id_run_id_uq"),
    )
    op.create_table(
        f"{p}shares",
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("package_id", sa.String(255), nullable=True),
        sa.Column("package_version", sa.String(64), nullable=True),
        sa.Column("no_prompt", sa.Boolean(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("token", name=f"{p}shares_pk"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            [f"{p}sessions.id"],
            name=f"{p}shares_session_id_fk",
            ondelete="CASCADE",
        ),
    )
    op.create_index(f"{p}shares_session_ix", f"{p}shares", ["session_id"])
    # At most one live share per session, enforced here.
    op.create_index(
        f"{p}shares_live_uq",
        f"{p}shares",
        ["session_id"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
        sqlite_where=sa.text("revoked_at IS NULL"),
    )
    op.create_table(
        f"{p}feedback",
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("exchange_idx", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("helpful", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "exchange_idx", name=f"{p}feedback_pk"),
        sa.ForeignKeyConstraint(
            ["session_id", "exchange_idx"],
            [f"{p}exchanges.session_id", f"{p}exchanges.idx"],
            name=f"{p}feedback_session_id_fk",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    p = context.config.attributes["table_prefix"]
    op.drop_table(f"{p}feedback")
    op.drop_table(f"{p}shares")
    op.drop_table(f"{p}exchanges")
    op.drop_table(f"{p}sessions")
