"""What the runner adds to a model call: time to first token, and total.

A fake Anthropic Messages API runs in a separate process (Starlette under
uvicorn, real HTTP on 127.0.0.1) and streams a fixed response. In one run,
alternating call by call, this measures:

- the bare SDK: ``client.messages.create(..., stream=True)`` with the same
  system block, iterated to the end;
- the same call through ``PlaygroundRunner.stream``: validation, package,
  hold, stream, capture, the exchange saved, the balance read; on SQLite
  (a temp file), and on PostgreSQL for information.

Time to first token is from the call to the first text delta; total is to
the end of the stream (the bare call) or to the ``done`` event (the runner,
which has then settled and saved the run). Both use one ``AsyncAnthropic``
client, so connection reuse is the same.

Run:  python benchmarks/runner.py [--calls N] [--deltas N] [--only sqlite|pg]

The last lines are ``result:`` lines (DESIGN.md §7): per backend, the
runner's median time to first token and total, each against the bare SDK's
in the same run; the target is at most 5 ms added at the median on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic

import prpm_playground as pp
from prpm_playground.estimator import Estimator
from prpm_playground.models import RunDelta, RunDone, RunRequest
from prpm_playground.providers import AnthropicProvider
from prpm_playground.runner import PlaygroundRunner
from prpm_playground.sources import InMemoryPackages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger import scratch_database

ADDED_TARGET_MS = 5.0
MODEL = "claude-sonnet-5-5"
PACKAGE = "# Code reviewer\n\n" + "Review the code for correctness, clarity and tests. " * 40


# -- the fake Anthropic server (its own process) -------------------------------------


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _stream_body(deltas: int) -> list[bytes]:
    usage = {
        "input_tokens": 40,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 600,
    }
    chunks = [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                },
            },
        ),
        _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _sse("ping", {"type": "ping"}),
    ]
    for i in range(deltas):
        chunks.append(
            _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"word{i} "},
                },
            )
        )
    chunks += [
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": deltas * 2},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return chunks


def _serve(port: int, deltas: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    body = _stream_body(deltas)

    async def messages(request: Request) -> StreamingResponse:
        await request.body()

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in body:
                yield chunk

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def count(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"input_tokens": 640})

    app = Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count, methods=["POST"]),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_for(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("the fake Anthropic server did not start")


# -- the measurements ----------------------------------------------------------------


async def bare_call(client: anthropic.AsyncAnthropic, text: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = 0.0
    stream = await client.messages.create(
        model=MODEL,
        max_tokens=1024,
        system=[{"type": "text", "text": PACKAGE, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": text}],
        metadata={"user_id": "bench"},
        stream=True,
    )
    async with stream:
        async for event in stream:
            if not first and event.type == "content_block_delta":
                first = time.perf_counter()
    return first - started, time.perf_counter() - started


async def runner_call(runner: PlaygroundRunner, user: str, text: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = 0.0
    done = False
    request = RunRequest(package_id="reviewer", input=text, max_tokens=1024)
    async with aclosing(runner.stream(user, request)) as events:
        async for event in events:
            if not first and isinstance(event, RunDelta):
                first = time.perf_counter()
            elif isinstance(event, RunDone):
                done = True
    assert done
    assert first
    return first - started, time.perf_counter() - started


async def measure(
    backend: str, url: str, port: int, calls: int, log: Any
) -> dict[str, list[float]]:
    client = anthropic.AsyncAnthropic(
        api_key="bench-key", base_url=f"http://127.0.0.1:{port}", max_retries=0
    )
    storage = pp.SQLAlchemyStorage(url)
    await storage.migrate()
    ledger = pp.CreditLedger(storage, policy=pp.CreditPolicy(usd_per_credit=Decimal("0.0001")))
    provider = AnthropicProvider(client=client)
    packages = InMemoryPackages({"reviewer": PACKAGE})
    estimator = Estimator(ledger, packages, provider, storage)
    runner = PlaygroundRunner(ledger, estimator, provider, storage)
    user = f"bench-{os.getpid()}-{backend}"
    await ledger.grant(user, 10**9, kind="purchased", idempotency_key=f"fund-{user}")

    times: dict[str, list[float]] = {
        name: [] for name in ("bare_ttft", "bare_total", "run_ttft", "run_total")
    }
    warmup = min(20, calls)
    for i in range(warmup + calls):
        text = f"Please review snippet {i}: def f(x): return x * 2"
        # Alternate which goes first so drift in the machine hits both alike.
        if i % 2:
            bare = await bare_call(client, text)
            run = await runner_call(runner, user, text)
        else:
            run = await runner_call(runner, user, text)
            bare = await bare_call(client, text)
        if i >= warmup:
            times["bare_ttft"].append(bare[0])
            times["bare_total"].append(bare[1])
            times["run_ttft"].append(run[0])
            times["run_total"].append(run[1])
    await ledger.verify(user)
    await client.close()
    await storage.close()
    log(f"{backend}: {calls} calls each, ledger verified")
    return times


def result_lines(backend: str, times: dict[str, list[float]]) -> list[str]:
    lines = []
    for what in ("ttft", "total"):
        bare = statistics.median(times[f"bare_{what}"]) * 1000
        run = statistics.median(times[f"run_{what}"]) * 1000
        added = run - bare
        if backend == "sqlite":
            verdict = "pass" if added <= ADDED_TARGET_MS else "fail"
            target = f"added<={ADDED_TARGET_MS:g}ms"
        else:
            verdict, target = "info", "none"
        lines.append(
            f"result: runner_{backend}_{what}_median_ms value={run:.2f} baseline={bare:.2f} "
            f"ratio={run / bare:.2f} target={target} added={added:.2f}ms {verdict}"
        )
    return lines


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="timed calls of each kind")
    parser.add_argument("--deltas", type=int, default=50, help="text deltas per response")
    parser.add_argument("--only", choices=("sqlite", "pg"), help="run one backend")
    args = parser.parse_args()

    def log(msg: str) -> None:
        print(msg, flush=True)

    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(port, args.deltas), daemon=True
    )
    server.start()
    results: list[tuple[str, dict[str, list[float]]]] = []
    try:
        await _wait_for(port)
        log(f"fake Anthropic API on port {port}; {args.deltas} deltas per response")
        if args.only in (None, "sqlite"):
            with tempfile.TemporaryDirectory(prefix="prpm_bench_") as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'runner.db'}"
                results.append(("sqlite", await measure("sqlite", url, port, args.calls, log)))
        if args.only in (None, "pg"):
            async with scratch_database(f"prpm_bench_runner_{os.getpid()}") as url:
                results.append(("pg", await measure("pg", url, port, args.calls, log)))
    finally:
        server.terminate()
        server.join()

    print()
    print(f"{'backend':8} {'what':6} {'bare p50 ms':>12} {'runner p50 ms':>14} {'added ms':>9}")
    for backend, times in results:
        for what in ("ttft", "total"):
            bare = statistics.median(times[f"bare_{what}"]) * 1000
            run = statistics.median(times[f"run_{what}"]) * 1000
            print(f"{backend:8} {what:6} {bare:>12.2f} {run:>14.2f} {run - bare:>9.2f}")
    print()
    for backend, times in results:
        for line in result_lines(backend, times):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
