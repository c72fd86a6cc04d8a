"""Alembic environment: runs on the connection the storage hands over."""

from alembic import context

config = context.config
connection = config.attributes["connection"]
prefix = config.attributes["table_prefix"]

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=f"{prefix}alembic_version",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
