"""Runs the packaged Alembic migrations on a connection."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from ...errors import SchemaMismatch

MIGRATIONS = Path(__file__).with_name("migrations")


def upgrade_hint(url: str) -> str:
    """The command that migrates the database at ``url`` (its password masked)."""
    return f"prpm-playground db upgrade --url '{url}'  (or: await storage.migrate())"


_ALEMBIC = threading.Lock()


@asynccontextmanager
async def one_at_a_time() -> AsyncIterator[None]:
    """Let one migration run in this process at a time, whatever its loop or thread.

    Alembic keeps the running migration in module globals (``alembic.context``,
    ``alembic.op``), so two at once, even of different databases, would run
    each other's steps. Migrating is rare: waiting by polling keeps the event
    loop free and needs no thread of its own.
    """
    # Not an asyncio.Event: the waiters may be on other loops, in other threads.
    while not _ALEMBIC.acquire(blocking=False):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        _ALEMBIC.release()


def _config(connection: Connection | None, prefix: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["table_prefix"] = prefix
    return config


def head_revision(prefix: str = "prpm_") -> str:
    """The newest revision this version of the library ships."""
    head = ScriptDirectory.from_config(_config(None, prefix)).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection, prefix: str) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    context = MigrationContext.configure(
        connection, opts={"version_table": f"{prefix}alembic_version"}
    )
    return context.get_current_revision()


def check_known(revision: str | None, prefix: str) -> None:
    """Refuse a database migrated by a newer version of the library."""
    if revision is None:
        return
    script = ScriptDirectory.from_config(_config(None, prefix))
    known = {rev.revision for rev in script.walk_revisions()}
    if revision not in known:
        raise SchemaMismatch(
            f"the database schema is at revision {revision!r}, which is newer than this "
            f"prpm_playground (head {head_revision(prefix)!r}); upgrade the library: "
            "pip install --upgrade prpm-playground"
        )


def upgrade(connection: Connection, prefix: str, revision: str = "head") -> None:
    """Create or upgrade the schema on ``connection`` (inside its transaction)."""
    check_known(current_revision(connection, prefix), prefix)
    command.upgrade(_config(connection, prefix), revision)
