"""What the web API adds, and 200 concurrent streamed runs through a real server.

1. ``GET /credits`` through the ASGI app (called directly, in-process: no
   HTTP client or server in the way) against ``ledger.balance`` for the same
   user, alternating call by call in one run. Reported: the medians and the
   latency the app adds.
2. 200 concurrent ``POST /run`` requests asking for ``text/event-stream``,
   each from its own user, against a real uvicorn server (a subprocess) on
   the ``OfflineProvider`` (which streams at a realistic pace). Every stream
   must end with a ``done`` event; every user must have been charged
   exactly the credits its ``done`` event reports, no more, and
   ``ledger.verify()`` must pass for each. The server's peak RSS is printed.

Run:  python benchmarks/web.py [--calls N] [--streams N] [--backend sqlite|pg]

The last lines are ``result:`` lines (DESIGN.md §7).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

import prpm_playground as pp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger import scratch_database

PACKAGE = "# Code reviewer\n\nReview the code for correctness, clarity and tests.\n"
FUNDS = 10_000


def build(url: str) -> pp.Playground:
    """The playground both the server and the checks use (same database)."""
    return pp.Playground(
        url,
        provider=pp.OfflineProvider(),
        packages=pp.InMemoryPackages({"reviewer": PACKAGE}),
    )


def authenticate(request: Any) -> str | None:
    user: str | None = request.headers.get("x-user")
    return user


# -- part 1: GET /credits in-process ---------------------------------------------------


async def asgi_get(app: Any, path: str, user: str) -> int:
    """One GET straight through the ASGI callable; returns the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"x-user", user.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def credits_latency(url: str, calls: int) -> tuple[float, float]:
    async with build(url) as playground:
        app = playground.asgi_app(authenticate=authenticate)
        user = "bench-credits"
        await playground.ledger.grant(user, FUNDS, kind="purchased", idempotency_key="fund")
        direct: list[float] = []
        through: list[float] = []
        for i in range(50 + calls):
            # Alternate which goes first so drift in the machine hits both alike.
            order = (0, 1) if i % 2 else (1, 0)
            for which in order:
                started = time.perf_counter()
                if which == 0:
                    await playground.ledger.balance(user)
                else:
                    assert await asgi_get(app, "/credits", user) == 200
                elapsed = time.perf_counter() - started
                if i >= 50:
                    (direct if which == 0 else through).append(elapsed)
    return statistics.median(direct) * 1e6, statistics.median(through) * 1e6


# -- part 2: concurrent streams through uvicorn -------------------------------------------


def serve(url: str, port: int) -> None:
    """The server process: the playground mounted in a Starlette host app."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    playground = build(url)
    app = Starlette(
        routes=[Mount("/api", app=playground.asgi_app(authenticate=authenticate))],
        lifespan=playground.lifespan,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def server(url: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", url, "--port", str(port)
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(400):
                try:
                    await client.get(f"{base}/models", timeout=1)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the server did not start")
        yield base, process
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one_stream(client: httpx.AsyncClient, base: str, user: str) -> dict[str, Any]:
    """Run once with SSE; return the ``done`` event's result."""
    body = {"package_id": "reviewer", "input": f"Review this for {user}", "max_tokens": 256}
    headers = {"x-user": user, "accept": "text/event-stream"}
    event = None
    spent: dict[str, Any] | None = None
    async with client.stream("POST", f"{base}/run", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "done":
                spent = json.loads(line.split(":", 1)[1])["result"]
            elif line.startswith("data:") and event == "error":
                raise RuntimeError(f"run failed for {user}: {line}")
    if spent is None:
        raise RuntimeError(f"no done event for {user}")
    return spent


async def concurrent_streams(url: str, streams: int) -> dict[str, Any]:
    users = [f"bench-sse-{i}" for i in range(streams)]
    before: dict[str, int] = {}
    async with build(url) as playground:
        for user in users:
            await playground.ledger.grant(user, FUNDS, kind="purchased", idempotency_key="fund")
            # Trial credits come with the account, on top of the funds.
            before[user] = (await playground.ledger.balance(user)).available
    async with server(url) as (base, process):
        idle_rss = peak_rss_mb(process.pid)
        limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            started = time.perf_counter()
            results = await asyncio.gather(
                *(one_stream(client, base, u) for u in users), return_exceptions=True
            )
            elapsed = time.perf_counter() - started
        rss = peak_rss_mb(process.pid)
    failures = [r for r in results if isinstance(r, BaseException)]
    exact = 0
    async with build(url) as playground:
        estimator = playground.estimator
        for user, result in zip(users, results, strict=True):
            if isinstance(result, BaseException):
                continue
            # The price of the usage the run reported, computed afresh.
            usage = pp.Usage.model_validate(result["usage"])
            price = estimator.credits_for(estimator.catalog.resolve(result["model"]), usage)
            spent = result["credits_spent"]
            balance = await playground.ledger.balance(user)
            await playground.ledger.verify(user)
            if (
                spent == price > 0
                and balance.available == before[user] - spent == (result["credits_remaining"])
            ):
                exact += 1
    return {
        "completed": streams - len(failures),
        "exact": exact,
        "failures": failures[:3],
        "seconds": elapsed,
        "rss": rss,
        "idle_rss": idle_rss,
    }


async def run_all(args: argparse.Namespace) -> int:
    @asynccontextmanager
    async def database(name: str) -> AsyncIterator[str]:
        if args.backend == "pg":
            async with scratch_database(f"prpm_bench_web_{name}_{os.getpid()}") as url:
                yield url
        else:
            with tempfile.TemporaryDirectory(prefix="prpm_bench_") as tmp:
                yield f"sqlite+aiosqlite:///{Path(tmp) / 'web.db'}"

    async with database("credits") as url:
        direct_us, app_us = await credits_latency(url, args.calls)
    print(f"GET /credits: ledger.balance {direct_us:.0f} us, through the app {app_us:.0f} us")
    async with database("sse") as url:
        sse = await concurrent_streams(url, args.streams)
    print(
        f"{args.streams} concurrent SSE runs: {sse['completed']} completed, "
        f"{sse['exact']} charged exactly, in {sse['seconds']:.2f} s; "
        f"server peak RSS {sse['rss']:.1f} MiB (idle {sse['idle_rss']:.1f} MiB)"
    )
    for failure in sse["failures"]:
        print(f"  failure: {failure!r}")
    ok = sse["completed"] == sse["exact"] == args.streams
    b = args.backend
    print()
    print(
        f"result: web_{b}_credits_median_us value={app_us:.0f} baseline={direct_us:.0f} "
        f"ratio={app_us / direct_us:.2f} target=none added={app_us - direct_us:.0f}us info"
    )
    print(
        f"result: web_{b}_sse_{args.streams}_concurrent_exact value={sse['exact']} "
        f"baseline={args.streams} ratio={sse['exact'] / args.streams:.2f} "
        f"target=all_complete_and_exact {'pass' if ok else 'fail'}"
    )
    print(
        f"result: web_{b}_sse_peak_rss_mib value={sse['rss']:.1f} baseline={sse['idle_rss']:.1f} "
        f"ratio={sse['rss'] / sse['idle_rss']:.2f} target=none info"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed GET /credits calls")
    parser.add_argument("--streams", type=int, default=200, help="concurrent streamed runs")
    parser.add_argument("--backend", choices=("sqlite", "pg"), default="sqlite")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0
    return asyncio.run(run_all(args))


if __name__ == "__main__":
    sys.exit(main())
