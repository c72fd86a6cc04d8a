"""The operator CLI: ``prpm-playground db upgrade|current``, ``reset run``, ``openapi``, ``demo``.

The database URL comes from ``--url``, else ``$PRPM_DATABASE_URL``, else the
default SQLite file (``demo`` takes its own ``--db``). Exit codes: 0 success,
1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ._clock import utc_now
from .config import CreditPolicy
from .errors import PlaygroundError
from .reset import MAX_BATCH_SIZE

if TYPE_CHECKING:
    from .reset import ResetReport

# SQLAlchemy, the web stack and the Anthropic SDK are imported by the
# subcommands that use them, so that --help answers at once.

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


def _plain(text: str) -> str:
    """Docstring markup (``literal``) as the plain text a terminal shows."""
    return text.replace("``", "")


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="database URL (default: $PRPM_DATABASE_URL or SQLite file)")
    parser.add_argument("--table-prefix", default="prpm_", help="table prefix (default: prpm_)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prpm-playground", description=_plain(__doc__ or ""))
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
    openapi = commands.add_parser("openapi", help="print the web API's OpenAPI document (JSON)")
    openapi.add_argument(
        "--server-url", help="where the API is mounted, e.g. /api/v1/playground (default: none)"
    )
    _demo_parser(commands)
    return parser


# The demo's own default (``_demo.DEFAULT_DATABASE_URL``, which a test keeps
# equal), written here so that building the parser imports no web stack.
DEMO_DATABASE_URL = "sqlite+aiosqlite:///./playground-demo.db"


def _demo_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="serve a demo host app with the playground mounted (needs uvicorn: the demo extra)",
        description="Serve a small demo host app with the playground under /api/v1/playground: "
        "SQLite, the bundled example packages, and Claude if ANTHROPIC_API_KEY is set, else "
        "the offline provider. Demo only: the user is whoever the X-User header or ?user= "
        "says (default demo-user).",
    )
    demo.add_argument("--host", default="127.0.0.1", help="interface (default: 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    demo.add_argument(
        "--db", default=DEMO_DATABASE_URL, help=f"database URL (default: {DEMO_DATABASE_URL})"
    )
    demo.add_argument(
        "--packages", type=Path, help="folder of packages (default: the bundled examples)"
    )


def _demo(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("error: the demo needs uvicorn: pip install 'prpm-playground[demo]'", file=sys.stderr)
        return 1
    from ._demo import PACKAGES, build_demo, package_ids, try_lines

    packages: Path = args.packages or PACKAGES
    app, playground = build_demo(args.db, packages=packages)
    banner = [
        f"  provider: {type(playground.provider).__name__}"
        + ("" if os.environ.get("ANTHROPIC_API_KEY") else " (set ANTHROPIC_API_KEY for Claude)"),
        f"  database: {args.db}",
        f"  packages: {', '.join(package_ids(packages))}",
        "Demo only: the user is whoever X-User or ?user= says (default demo-user).",
    ]

    class DemoServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.started:
                return
            port = self.servers[0].sockets[0].getsockname()[1] if self.servers else args.port
            host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
            base = f"http://{host}:{port}"
            print(f"PRPM+ Playground demo: {base}/", *banner, "", "Try:", sep="\n")
            print(*(f"  {line}" for line in try_lines(base)), sep="\n")
            print("Press Ctrl+C to stop.", flush=True)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    # uvicorn re-raises Ctrl+C once it has shut down cleanly: that is a normal stop here.
    with contextlib.suppress(KeyboardInterrupt):
        DemoServer(config).run()
    print("demo stopped")
    return 0


async def _db(command: str, url: str, prefix: str, *, from_env: bool) -> str:
    from .storage.sql import SQLAlchemyStorage
    from .storage.sql.engine import shown_url
    from .storage.sql.migrate import head_revision

    storage = SQLAlchemyStorage(url, table_prefix=prefix)
    try:
        if command == "upgrade":
            await storage.migrate()
            return f"schema at {head_revision(prefix)} (head)"
        revision = await storage.current_revision()
        head = head_revision(prefix)
        if revision is None:
            # The same database again: the --url given, or the variable that set it.
            where = " (with $PRPM_DATABASE_URL set)" if from_env else f" --url '{shown_url(url)}'"
            return f"not migrated (head is {head}); run: prpm-playground db upgrade{where}"
        return f"{revision}{' (head)' if revision == head else f' (head is {head})'}"
    finally:
        await storage.close()


def _default_url() -> str:
    from .storage.sql.engine import DEFAULT_URL

    return DEFAULT_URL


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
    from .reset import ResetJob
    from .storage.sql import SQLAlchemyStorage

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
    if args.group == "openapi":
        from .web.openapi import openapi_schema

        print(json.dumps(openapi_schema(server_url=args.server_url), indent=2))
        return 0
    given = getattr(args, "url", None)
    from_env = not given and bool(os.environ.get("PRPM_DATABASE_URL"))
    url = given or os.environ.get("PRPM_DATABASE_URL") or _default_url()
    try:
        if args.group == "demo":
            return _demo(args)
        if args.group == "db":
            print(asyncio.run(_db(args.command, url, args.table_prefix, from_env=from_env)))
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
