"""``prpm-playground demo`` and ``prpm-playground openapi``, run as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from prpm_playground.cli import main
from prpm_playground.web import ROUTES

PREFIX = "/api/v1/playground"


def test_openapi_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {route.path for route in ROUTES}
    assert "servers" not in document
    assert main(["openapi", "--server-url", PREFIX]) == 0
    assert json.loads(capsys.readouterr().out)["servers"] == [{"url": PREFIX}]


def test_demo_without_uvicorn_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail
    assert main(["demo"]) == 1
    assert "pip install 'prpm-playground[demo]'" in capsys.readouterr().err


async def _lines(stream: asyncio.StreamReader, until: str) -> list[str]:
    lines: list[str] = []
    while not lines or until not in lines[-1]:
        raw = await stream.readline()
        if not raw:
            raise AssertionError("the demo exited early:\n" + "".join(lines))
        lines.append(raw.decode())
    return lines


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """A running ``prpm-playground demo`` on a free port: its URL and what it printed."""
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "prpm_playground",
        "demo",
        "--port",
        "0",
        "--db",
        f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            printed = await _lines(process.stdout, "Press Ctrl+C")
        match = re.search(r"http://127\.0\.0\.1:\d+", printed[0])
        assert match, printed
        yield match.group(0), printed
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_demo_serves_the_playground(demo: tuple[str, list[str]]) -> None:
    base, printed = demo
    shown = "".join(printed)
    assert "OfflineProvider" in shown
    curls = [line.strip() for line in printed if line.strip().startswith("curl ")]
    assert 3 <= len(curls) <= 5
    assert any("-N" in line and f"{PREFIX}/run" in line for line in curls)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        balance = await client.get(f"{PREFIX}/credits", headers={"X-User": "alice"})
        assert balance.status_code == 200, balance.text
        assert balance.json()["available"] == 5

        page = await client.get("/")
        assert page.status_code == 200
        assert "code-review" in page.text
        assert "typescript-strict" in page.text

        async with client.stream(
            "POST",
            f"{PREFIX}/run",
            json={"package_id": "code-review", "input": "def f(): pass"},
            headers={"X-User": "alice", "Accept": "text/event-stream"},
        ) as answer:
            assert answer.status_code == 200
            names = [
                line.removeprefix("event: ")
                async for line in answer.aiter_lines()
                if line.startswith("event: ")
            ]
        assert names[0] == "started"
        assert names[-1] == "done"

        spent = await client.get(f"{PREFIX}/credits", headers={"X-User": "alice"})
        assert spent.json()["available"] < 5
        # ?user= names the user too, and is not passed on as a query parameter.
        bob = await client.get(f"{PREFIX}/credits?user=bob")
        assert bob.status_code == 200, bob.text
        assert bob.json()["available"] == 5
        anonymous = await client.get(f"{PREFIX}/sessions")
        assert anonymous.status_code == 200  # the demo's default user
        assert anonymous.json()["sessions"] == []
        # Out of credits: the answer links to no page that sells nothing.
        broke = await client.post(
            f"{PREFIX}/run",
            json={"package_id": "code-review", "input": "x", "max_tokens": 100_000},
            headers={"X-User": "carol"},
        )
        assert broke.status_code == 402, broke.text
        assert broke.json()["purchase_url"] is None
