"""When each account next needs settling, for the reset job to find it by index;
room for in-place updates of grants on PostgreSQL.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import context, op

from prpm_playground.storage.sql.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["table_prefix"]
    with op.batch_alter_table(f"{p}accounts") as batch:
        batch.add_column(sa.Column("due_at", UTCDateTime(), nullable=True))
    # Due already: the first reset job (or ledger call) settles every existing
    # account once and stores its exact next instant.
    accounts = sa.table(f"{p}accounts", sa.column("due_at"), sa.column("created_at"))
    op.execute(accounts.update().values(due_at=accounts.c.created_at))
    op.create_index(f"{p}accounts_due_at_id_ix", f"{p}accounts", ["due_at", "id"])
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page for a grant's new version: every spend and every
        # renewal updates `remaining`, which no index covers, so with free
        # space the update stays on the page (HOT) and touches no index.
        op.execute(f"ALTER TABLE {p}grants SET (fillfactor = 80)")


def downgrade() -> None:
    p = context.config.attributes["table_prefix"]
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {p}grants RESET (fillfactor)")
    op.drop_index(f"{p}accounts_due_at_id_ix", table_name=f"{p}accounts")
    with op.batch_alter_table(f"{p}accounts") as batch:
        batch.drop_column("due_at")
