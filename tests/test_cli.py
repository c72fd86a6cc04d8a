"""The operator CLI and the quickstart, run as a user would."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prpm_playground.cli import main
from prpm_playground.storage.sql.migrate import head_revision

from .conftest import PG_URL, Backend


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
    assert main(["db", "upgrade", "--table-prefix", "env_"]) == 0
    assert (tmp_path / "env.db").exists()


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
            for table in (
                "idempotency_keys",
                "entries",
                "holds",
                "grants",
                "accounts",
                "alembic_version",
            ):
                await conn.exec_driver_sql(f"DROP TABLE {prefix}{table}")
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
