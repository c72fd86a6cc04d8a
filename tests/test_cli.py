"""The operator CLI and the quickstart, run as a user would."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from prpm_playground import CreditLedger, CreditPolicy, ResetReport, SQLAlchemyStorage
from prpm_playground.cli import _progress, main
from prpm_playground.storage.sql.migrate import head_revision
from prpm_playground.testing import ManualClock

from .conftest import PG_URL, Backend, library_tables


def test_db_upgrade_and_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert main(["db", "current", "--url", url]) == 0
    assert "not migrated" in capsys.readouterr().out
    assert main(["db", "upgrade", "--url", url]) == 0
    assert main(["db", "current", "--url", url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{head_revision()} (head)"


def test_url_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRPM_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'env.db'}")
    assert main(["db", "current", "--table-prefix", "env_"]) == 0
    hint = capsys.readouterr().out
    assert hint.endswith("run: prpm-playground db upgrade (with $PRPM_DATABASE_URL set)\n")
    assert main(["db", "upgrade", "--table-prefix", "env_"]) == 0
    assert (tmp_path / "env.db").exists()


def test_the_upgrade_hint_repeats_the_url_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bare sqlite:// URL, as a platform would write it, is taken too.
    url = f"sqlite:///{tmp_path / 'hint.db'}"
    assert main(["db", "current", "--url", url]) == 0
    assert capsys.readouterr().out.endswith(f"run: prpm-playground db upgrade --url '{url}'\n")
    assert main(["db", "upgrade", "--url", url]) == 0
    assert (tmp_path / "hint.db").exists()


def test_a_password_in_the_url_is_never_shown(capsys: pytest.CaptureFixture[str]) -> None:
    url = PG_URL.replace("postgres@", "postgres:s3cret@", 1) + "?sslmode=disable"
    main(["db", "current", "--url", url, "--table-prefix", "nopw_"])
    shown = capsys.readouterr()
    assert "s3cret" not in shown.out + shown.err


def test_failures_exit_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "current", "--url", "mysql://localhost/x"]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(SystemExit) as caught:
        main(["db"])
    assert caught.value.code == 2


async def test_cli_on_each_backend(backend: Backend, tmp_path: Path) -> None:
    # A separate process, as an operator runs it; a prefix keeps it apart from other tests.
    prefix = f"cli{os.getpid()}_"
    env = {**os.environ, "PRPM_DATABASE_URL": backend.url}
    command = [sys.executable, "-m", "prpm_playground", "db"]

    async def run(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            "--table-prefix",
            prefix,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, _, err = await run("upgrade")
    assert code == 0, err
    code, out, err = await run("current")
    assert (code, out.strip()) == (0, f"{head_revision()} (head)"), err
    if backend.name == "postgres":
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(PG_URL)
        async with engine.begin() as conn:
            for table in library_tables(prefix):
                await conn.exec_driver_sql(f"DROP TABLE {table}")
        await engine.dispose()


def test_quickstart_runs(tmp_path: Path, repo_root: Path) -> None:
    script = repo_root / "examples" / "quickstart.py"
    for _ in range(2):  # a second run replays every write
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "available=98 held=0 total=98" in done.stdout
        assert "verify(): ledger consistent" in done.stdout


def _subscribed_database(path: Path, users: int, policy: CreditPolicy | None = None) -> str:
    """A migrated SQLite file with ``users`` subscribers anchored at ANCHOR."""
    url = f"sqlite+aiosqlite:///{path}"

    async def seed() -> None:
        storage = SQLAlchemyStorage(url)
        await storage.migrate()
        ledger = CreditLedger(storage, policy=policy, clock=ManualClock(ANCHOR))
        for i in range(users):
            await ledger.subscribe(f"u{i}", monthly_credits=100)
        await storage.close()

    asyncio.run(seed())
    return url


ANCHOR = datetime(2026, 3, 1, tzinfo=UTC)
AFTER = "2026-04-01T00:30:00+00:00"


def test_reset_run_dry_then_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _subscribed_database(tmp_path / "r.db", 3)
    args = ["reset", "run", "--url", url, "--now", AFTER, "--batch-size", "2"]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("dry run: would settle 3 accounts as of 2026-04-01T00:30:00+00:00")
    assert "3 renewed (3 periods), 300 monthly credits granted" in out
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("settled 3 accounts")  # the dry run wrote nothing
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("settled 0 accounts")


def test_reset_run_uses_the_apps_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hostapp.py").write_text(
        "from prpm_playground import CreditPolicy\nPOLICY = CreditPolicy(rollover_cap=7)\n"
    )
    monkeypatch.chdir(tmp_path)
    url = _subscribed_database(tmp_path / "p.db", 1)
    assert main(["reset", "run", "--url", url, "--now", AFTER, "--policy", "hostapp:POLICY"]) == 0
    assert "7 rolled over" in capsys.readouterr().out
    assert main(["reset", "run", "--url", url, "--policy", "hostapp:MISSING"]) == 1
    assert "is not a CreditPolicy" in capsys.readouterr().err


def test_reset_run_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    assert main(["reset", "run", "--url", url]) == 1  # not migrated
    assert "prpm-playground db upgrade" in capsys.readouterr().err
    for bad in (["--now", "2026-04-01T00:00:00"], ["--now", "soon"], ["--batch-size", "0"]):
        with pytest.raises(SystemExit) as caught:
            main(["reset", "run", "--url", url, *bad])
        assert caught.value.code == 2
    future = _subscribed_database(tmp_path / "f.db", 1)
    assert main(["reset", "run", "--url", future, "--now", "2999-01-01T00:00:00Z"]) == 1
    assert "future" in capsys.readouterr().err


def test_progress_bar_on_a_terminal() -> None:
    stream = io.StringIO()
    show = _progress(stream, 4)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    show(ResetReport(now=now, dry_run=False, accounts_processed=2))
    show(ResetReport(now=now, dry_run=False, accounts_processed=4))
    assert stream.getvalue() == (
        "\r[" + "#" * 15 + "." * 15 + "] 2/4 accounts\r[" + "#" * 30 + "] 4/4 accounts"
    )


def test_reset_run_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    import pty

    url = _subscribed_database(tmp_path / "tty.db", 5)
    primary, secondary = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "prpm_playground", "reset", "run", "--url", url, "--now", AFTER,
         "--batch-size", "2"],
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
    )  # fmt: skip
    os.close(secondary)
    shown = os.read(primary, 4096).decode()
    os.close(primary)
    assert done.returncode == 0
    assert done.stdout.startswith("settled 5 accounts")
    assert "] 5/5 accounts" in shown


def test_the_cli_module_loads_no_heavy_dependency() -> None:
    # --help must answer at once: SQLAlchemy, the web stack and the Anthropic
    # SDK load only in the subcommands that use them.
    code = (
        "import sys, prpm_playground.cli\n"
        "print(sorted(m for m in ('anthropic', 'sqlalchemy', 'starlette', 'alembic', 'httpx')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_demo_default_database_is_the_demos_own() -> None:
    from prpm_playground._demo import DEFAULT_DATABASE_URL
    from prpm_playground.cli import DEMO_DATABASE_URL

    assert DEMO_DATABASE_URL == DEFAULT_DATABASE_URL


def test_the_package_still_exports_every_name() -> None:
    code = (
        "import prpm_playground as pp\n"
        "missing = [n for n in pp.__all__ if not hasattr(pp, n)]\n"
        "print(missing, sorted(set(pp.__all__) - set(dir(pp))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[] []"


@pytest.mark.parametrize(
    "command",
    [[], ["db"], ["db", "upgrade"], ["db", "current"], ["reset", "run"], ["openapi"], ["demo"]],
)
def test_help_is_plain_text(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert "usage: prpm-playground" in shown
    assert "``" not in shown
