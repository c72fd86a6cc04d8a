"""The operator CLI: ``prpm-playground db upgrade|current``.

The database URL comes from ``--url``, else ``$PRPM_DATABASE_URL``, else the
default SQLite file. Exit codes: 0 success, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from .errors import PlaygroundError
from .storage.sql import SQLAlchemyStorage
from .storage.sql.engine import DEFAULT_URL
from .storage.sql.migrate import head_revision

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prpm-playground", description=__doc__)
    commands = parser.add_subparsers(dest="group", required=True)
    db = commands.add_parser("db", help="manage the database schema")
    db_commands = db.add_subparsers(dest="command", required=True)
    for name, text in (
        ("upgrade", "create or upgrade the schema to this version's head"),
        ("current", "print the schema revision of the database"),
    ):
        sub = db_commands.add_parser(name, help=text)
        sub.add_argument("--url", help="database URL (default: $PRPM_DATABASE_URL or SQLite file)")
        sub.add_argument("--table-prefix", default="prpm_", help="table prefix (default: prpm_)")
    return parser


async def _db(command: str, url: str, prefix: str) -> str:
    storage = SQLAlchemyStorage(url, table_prefix=prefix)
    try:
        if command == "upgrade":
            await storage.migrate()
            return f"schema at {head_revision(prefix)} (head)"
        revision = await storage.current_revision()
        head = head_revision(prefix)
        if revision is None:
            return f"not migrated (head is {head}); run: prpm-playground db upgrade"
        return f"{revision}{' (head)' if revision == head else f' (head is {head})'}"
    finally:
        await storage.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    args = _parser().parse_args(argv)
    url = args.url or os.environ.get("PRPM_DATABASE_URL") or DEFAULT_URL
    try:
        print(asyncio.run(_db(args.command, url, args.table_prefix)))
    except PlaygroundError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:  # an operator needs one line, not a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
