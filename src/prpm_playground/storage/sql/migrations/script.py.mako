"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""

from alembic import context, op
import sqlalchemy as sa

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["table_prefix"]
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    p = context.config.attributes["table_prefix"]
    ${downgrades if downgrades else "pass"}
