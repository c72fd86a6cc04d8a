"""The operator CLI: ``prpm-playground db upgrade|current`` and ``prpm-playground reset run``.

The database URL comes from ``--url``, else ``$PRPM_DATABASE_URL``, else the
default SQLite file. Exit codes: 0 success, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TextIO

from ._clock import utc_now
from .config import CreditPolicy
from .errors import PlaygroundError
from .reset import MAX_BATCH_SIZE, ResetJob, ResetReport
from .storage.sql import SQLAlchemyStorage
from .storage.sql.engine import DEFAULT_URL
from .storage.sql.migrate import head_revision

__all__ = ["main"]

_BAR_WIDTH = 30


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 instant: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; write e.g. 2027-03-01T00:00:00Z"
        )
    return value


def _batch_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_BATCH_SIZE}, got {value}")
    return value


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="database URL (default: $PRPM_DATABASE_URL or SQLite file)")
    parser.add_argument("--table-prefix", default="prpm_", help="table prefix (default: prpm_)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prpm-playground", description=__doc__)
    commands = parser.add_subparsers(dest="group", required=True)
    db = commands.add_parser("db", help="manage the database schema")
    db_commands = db.add_subparsers(dest="command", required=True)
    for name, text in (
        ("upgrade", "create or upgrade the schema to this version's head"),
        ("current", "print the schema revision of the database"),
    ):
        _connection_options(db_commands.add_parser(name, help=text))
    reset = commands.add_parser("reset", help="the reset job")
    reset_commands = reset.add_subparsers(dest="command", required=True)
    run = reset_commands.add_parser(
        "run",
        help="settle every due account: renew allowances, expire credits, sweep lapsed holds",
    )
    _connection_options(run)
    run.add_argument(
        "--now", type=_instant, help="settle as of this instant, with offset (default: now)"
    )
    run.add_argument(
        "--batch-size", type=_batch_size, default=1000, help="accounts per transaction"
    )
    run.add_argument(
        "--dry-run", action="store_true", help="report what would change; write nothing"
    )
    run.add_argument(
        "--policy",
        metavar="MODULE:NAME",
        help="the app's CreditPolicy, e.g. myapp.billing:POLICY (default: CreditPolicy())",
    )
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


def _load_policy(path: str | None) -> CreditPolicy:
    if path is None:
        return CreditPolicy()
    module_name, _, name = path.partition(":")
    if not module_name or not name:
        raise PlaygroundError(f"--policy must look like package.module:NAME, got {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would find the app's package
    policy = getattr(importlib.import_module(module_name), name, None)
    if not isinstance(policy, CreditPolicy):
        raise PlaygroundError(f"{path} is not a CreditPolicy")
    return policy


def _progress(stream: TextIO, total: int) -> Callable[[ResetReport], None]:
    def show(report: ResetReport) -> None:
        done = min(report.accounts_processed + report.accounts_failed, total)
        filled = _BAR_WIDTH * done // total if total else _BAR_WIDTH
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        stream.write(f"\r[{bar}] {done}/{total} accounts")
        stream.flush()

    return show


async def _reset(args: argparse.Namespace, url: str) -> ResetReport:
    policy = _load_policy(args.policy)
    storage = SQLAlchemyStorage(url, table_prefix=args.table_prefix)
    job = ResetJob(storage, policy=policy)
    try:
        now = args.now or utc_now()
        on_batch = None
        if sys.stderr.isatty():
            on_batch = _progress(sys.stderr, await storage.count_due(now))
        report = await job.run(now, args.batch_size, dry_run=args.dry_run, on_batch=on_batch)
        if on_batch is not None:
            sys.stderr.write("\n")
        return report
    finally:
        await storage.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    args = _parser().parse_args(argv)
    url = args.url or os.environ.get("PRPM_DATABASE_URL") or DEFAULT_URL
    try:
        if args.group == "db":
            print(asyncio.run(_db(args.command, url, args.table_prefix)))
            return 0
        report = asyncio.run(_reset(args, url))
    except PlaygroundError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:  # an operator needs one line, not a traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    if not report.ok:
        shown = ", ".join(report.failed_users)
        print(
            f"error: {report.accounts_failed} accounts failed to settle: {shown}", file=sys.stderr
        )
        return 1
    return 0
