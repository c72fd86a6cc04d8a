"""Subscriptions: allowance terms on the account, the period on grants.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import context, op

from prpm_playground.storage.sql.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["table_prefix"]
    with op.batch_alter_table(f"{p}accounts") as batch:
        batch.add_column(sa.Column("sub_anchor", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("sub_credits", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("sub_last_period", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sub_ends_after", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sub_next_credits", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("sub_next_from", sa.Integer(), nullable=True))
    with op.batch_alter_table(f"{p}grants") as batch:
        batch.add_column(sa.Column("period", sa.Integer(), nullable=True))
    # One allowance and one rollover per (account, period), enforced here.
    op.create_index(
        f"{p}grants_period_uq",
        f"{p}grants",
        ["account_id", "kind", "period"],
        unique=True,
        postgresql_where=sa.text("period IS NOT NULL"),
        sqlite_where=sa.text("period IS NOT NULL"),
    )


def downgrade() -> None:
    p = context.config.attributes["table_prefix"]
    op.drop_index(f"{p}grants_period_uq", table_name=f"{p}grants")
    with op.batch_alter_table(f"{p}grants") as batch:
        batch.drop_column("period")
    with op.batch_alter_table(f"{p}accounts") as batch:
        for column in (
            "sub_next_from",
            "sub_next_credits",
            "sub_ends_after",
            "sub_last_period",
            "sub_credits",
            "sub_anchor",
        ):
            batch.drop_column(column)
