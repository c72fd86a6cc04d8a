"""Hit counters of the web API's rate limits.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import context, op

from prpm_playground.storage.sql.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["table_prefix"]
    op.create_table(
        f"{p}rate_limits",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name=f"{p}rate_limits_pk"),
    )
    # Pruning deletes whole past windows at once.
    op.create_index(f"{p}rate_limits_window_start_ix", f"{p}rate_limits", ["window_start"])


def downgrade() -> None:
    p = context.config.attributes["table_prefix"]
    op.drop_table(f"{p}rate_limits")
