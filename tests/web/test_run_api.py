"""POST /run, /estimate and /compare over HTTP: JSON and Server-Sent Events, the
money rules seen from outside, and what a client that goes away pays."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from prpm_playground import RateLimits
from prpm_playground.errors import (
    ModelOverloaded,
    ModelUnavailable,
    ProviderMisconfigured,
    RateLimited,
)
from prpm_playground.models import RunRequest, Usage
from prpm_playground.providers import approx_tokens
from prpm_playground.providers.base import TextDelta, UsageReport

from ..scripted_provider import normal
from .conftest import PURCHASE_URL, RawExchange, Web, as_user, raw_call, run_body, sse_events

STREAM = {"Accept": "text/event-stream"}


def start_usage(input_tokens: int = 1000) -> UsageReport:
    return UsageReport(Usage(input_tokens=input_tokens, output_tokens=1))


async def hold_of(web: Web, **fields: Any) -> int:
    request = RunRequest(**run_body(**fields))
    prepared = await web.playground.estimator.prepare("anyone", request, ask_provider=False)
    return prepared.max_credits


def cost_of(text: str) -> int:
    # 1,000 input tokens at $2/M and the output at $10/M, in credits of $0.001.
    return math.ceil((1000 * 2 + approx_tokens(text) * 10) / 1000)


# -- JSON -------------------------------------------------------------------------------


async def test_run_returns_the_result_and_charges_actual_usage(web: Web, user: str) -> None:
    await web.fund(user, 100)
    response = await web.client.post("/run", json=run_body(), headers=as_user(user))
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    result = response.json()
    assert result["response"] == "Hello from the model."
    assert (result["credits_spent"], result["credits_remaining"]) == (7, 93)
    assert result["usage"]["input_tokens"] == 1000
    assert await web.available(user) == 93
    await web.playground.ledger.verify(user)


async def test_estimate_prices_the_run_without_holding(web: Web, user: str) -> None:
    await web.fund(user, 10)
    response = await web.client.post("/estimate", json=run_body(), headers=as_user(user))
    assert response.status_code == 200
    assert response.json() == {
        "credits": 12,
        "max_credits": 13,
        "input_tokens": 1000,
        "input_tokens_exact": True,
        "max_output_tokens": 1000,
        "expected_output_tokens": 1000,
        "model": "claude-sonnet-5-5",
        "can_afford": False,
        "available": 10,
    }
    assert await web.holds(user) == []


async def test_insufficient_credits_is_402_with_the_numbers_and_nothing_held(
    web: Web, user: str
) -> None:
    await web.fund(user, 3)
    response = await web.client.post("/run", json=run_body(), headers=as_user(user))
    assert response.status_code == 402
    assert response.json() == {
        "error": "insufficient_credits",
        "message": f"insufficient credits: {await hold_of(web)} required, 3 available",
        "required": await hold_of(web),
        "available": 3,
        "purchase_url": PURCHASE_URL,
    }
    assert web.provider.requests == []
    assert await web.holds(user) == []


async def test_purchase_url_is_null_when_not_configured(
    make_web: Callable[..., Web], user: str
) -> None:
    web = make_web(purchase_url=None)
    response = await web.client.post("/run", json=run_body(), headers=as_user(user))
    assert response.status_code == 402
    assert response.json()["purchase_url"] is None


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (ModelUnavailable("upstream down"), 502, "model_unavailable"),
        (ModelOverloaded("overloaded"), 503, "model_overloaded"),
        (ProviderMisconfigured("Anthropic refused the credentials (sk-secret)"), 502, None),
    ],
)
async def test_model_failures_map_to_502_503_and_charge_nothing(
    make_web: Callable[..., Web], user: str, failure: Exception, status: int, code: str | None
) -> None:
    web = make_web([start_usage(), failure])
    await web.fund(user, 100)
    response = await web.client.post("/run", json=run_body(), headers=as_user(user))
    assert response.status_code == status
    body = response.json()
    if code is None:  # an operator's problem: logged, never shown
        assert body["error"] == "provider_misconfigured"
        assert "secret" not in body["message"]
    else:
        assert body == {"error": code, "message": str(failure)}
    assert await web.available(user) == 100
    assert await web.holds(user) == [(await hold_of(web), 0, "released")]
    await web.playground.ledger.verify(user)


async def test_a_provider_rate_limit_is_429_with_retry_after(
    make_web: Callable[..., Web], user: str
) -> None:
    web = make_web([RateLimited("slow down", retry_after=19.2)])
    await web.fund(user, 100)
    response = await web.client.post("/run", json=run_body(), headers=as_user(user))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "20"
    assert response.json()["retry_after"] == 20
    assert await web.available(user) == 100


async def test_another_users_session_cannot_be_continued(web: Web, user: str) -> None:
    intruder = "intruder-" + user
    await web.fund(user, 100)
    await web.fund(intruder, 100)
    first = (await web.client.post("/run", json=run_body(), headers=as_user(user))).json()
    response = await web.client.post(
        "/run",
        json={"session_id": first["session_id"], "input": "mine now"},
        headers=as_user(intruder),
    )
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert len(web.provider.requests) == 1
    assert await web.holds(intruder) == []
    session = await web.playground.sessions.get(user, first["session_id"])
    assert [e.input for e in session.exchanges] == ["Check my code"]


async def test_a_run_id_still_running_is_409(make_web: Callable[..., Web], user: str) -> None:
    gate = asyncio.Event()
    web = make_web([start_usage(), TextDelta("slow "), gate, *normal()[-1:]])
    await web.fund(user, 100)
    first = asyncio.create_task(
        web.client.post("/run", json=run_body(run_id="r-1"), headers=as_user(user))
    )
    await web.provider.reached.wait()
    again = await web.client.post("/run", json=run_body(run_id="r-1"), headers=as_user(user))
    assert again.status_code == 409
    assert again.json() == {
        "error": "run_in_progress",
        "message": "run 'r-1' is still in progress",
        "run_id": "r-1",
    }
    other = await web.client.post(
        "/run", json=run_body(run_id="r-1", max_tokens=500), headers=as_user(user)
    )
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_conflict"
    gate.set()
    assert (await first).status_code == 200
    replay = await web.client.post("/run", json=run_body(run_id="r-1"), headers=as_user(user))
    assert replay.status_code == 200
    assert replay.json()["credits_spent"] == 7
    assert len(web.provider.requests) == 1


async def test_unknown_package_and_model(web: Web, user: str) -> None:
    await web.fund(user, 100)
    missing = await web.client.post(
        "/run", json=run_body(package_id="missing"), headers=as_user(user)
    )
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    unknown = await web.client.post("/run", json=run_body(model="gpt-5"), headers=as_user(user))
    assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_request")
    assert "unknown model 'gpt-5'" in unknown.json()["message"]
    assert await web.holds(user) == []


# -- Server-Sent Events ---------------------------------------------------------------


async def test_a_streamed_run_sends_every_event(web: Web, user: str) -> None:
    await web.fund(user, 100)
    response = await web.client.post("/run", json=run_body(), headers={**as_user(user), **STREAM})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.text.startswith(": ok\n\n")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "started"
    assert names[-1] == "done"
    assert set(names) == {"started", "delta", "usage", "done"}
    assert all(data["type"] == name for name, data in events)
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == "Hello from the model."
    done = events[-1][1]["result"]
    assert done["credits_spent"] == 7
    assert events[0][1]["session_id"] == done["session_id"]
    assert await web.available(user) == 93


async def test_stream_true_in_the_body_streams_too(web: Web, user: str) -> None:
    await web.fund(user, 100)
    response = await web.client.post("/run", json=run_body(stream=True), headers=as_user(user))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert sse_events(response.text)[-1][0] == "done"


async def test_errors_before_a_stream_starts_are_json(web: Web, user: str) -> None:
    response = await web.client.post("/run", json=run_body(), headers={**as_user(user), **STREAM})
    assert response.status_code == 402
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "insufficient_credits"


async def test_a_failure_after_the_stream_started_is_an_error_event(
    make_web: Callable[..., Web], user: str
) -> None:
    web = make_web([start_usage(), ModelOverloaded("overloaded")])
    await web.fund(user, 100)
    response = await web.client.post("/run", json=run_body(), headers={**as_user(user), **STREAM})
    assert response.status_code == 200
    events = sse_events(response.text)
    assert events[-1] == (
        "error",
        {"type": "error", "error": "model_overloaded", "message": "overloaded", "details": {}},
    )
    assert await web.available(user) == 100


async def test_keepalive_comments_flow_while_the_model_is_silent(
    make_web: Callable[..., Web], user: str
) -> None:
    gate = asyncio.Event()
    web = make_web([start_usage(), TextDelta("a "), gate, *normal()[-1:]], keepalive=0.02)
    await web.fund(user, 100)

    def on_send(exchange: RawExchange, message: dict[str, Any]) -> None:
        if b": keep-alive" in message.get("body", b""):
            gate.set()

    exchange = await raw_call(
        web.app,
        "POST",
        "/run",
        headers={**as_user(user), **STREAM, "Content-Type": "application/json"},
        body=json.dumps(run_body()).encode(),
        on_send=on_send,
    )
    assert exchange.status == 200
    assert exchange.messages[1]["body"].startswith(b": ok\n\nevent: started\n")
    assert b": keep-alive\n\n" in exchange.body
    assert exchange.messages[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert sse_events(exchange.body.decode())[-1][0] == "done"


@pytest.mark.parametrize("how", ["disconnect", "failing send"])
async def test_a_client_that_goes_away_pays_only_for_what_was_produced(
    make_web: Callable[..., Web], user: str, how: str
) -> None:
    never = asyncio.Event()  # the model would go on forever
    web = make_web([start_usage(), TextDelta("one two three "), never, TextDelta("never")])
    await web.fund(user, 100)
    gone = asyncio.Event()

    def on_send(exchange: RawExchange, message: dict[str, Any]) -> None:
        if b"event: delta" in message.get("body", b""):
            if how == "failing send":
                raise OSError("connection reset by peer")
            gone.set()

    exchange = await raw_call(
        web.app,
        "POST",
        "/run",
        headers={**as_user(user), **STREAM, "Content-Type": "application/json"},
        body=json.dumps(run_body()).encode(),
        on_send=on_send,
        disconnect=gone,
    )
    assert exchange.status == 200
    assert web.provider.closed == 1  # the upstream stream was closed
    cost = cost_of("one two three ")
    assert await web.holds(user) == [(await hold_of(web), cost, "captured")]
    assert await web.available(user) == 100 - cost
    await web.playground.ledger.verify(user)
    [summary] = (await web.playground.sessions.list(user)).sessions
    session = await web.playground.storage.get_session(summary.id)
    assert session is not None
    assert [(e.response, e.stop_reason) for e in session.exchanges] == [
        ("one two three ", "cancelled")
    ]


async def test_a_client_gone_before_the_first_byte_gets_its_hold_back(web: Web, user: str) -> None:
    await web.fund(user, 100)

    def on_send(exchange: RawExchange, message: dict[str, Any]) -> None:
        raise OSError("connection reset by peer")

    await raw_call(
        web.app,
        "POST",
        "/run",
        headers={**as_user(user), **STREAM, "Content-Type": "application/json"},
        body=json.dumps(run_body()).encode(),
        on_send=on_send,
    )
    assert web.provider.requests == []  # the model was never called
    assert await web.holds(user) == [(await hold_of(web), 0, "released")]
    assert await web.available(user) == 100
    await web.playground.ledger.verify(user)


async def test_open_streams_per_user_are_capped(make_web: Callable[..., Web], user: str) -> None:
    never = asyncio.Event()
    web = make_web(
        [start_usage(), TextDelta("a "), never],
        rate_limits=RateLimits(max_concurrent_streams=1, stream_retry_after=7),
    )
    await web.fund(user, 100)
    gone = asyncio.Event()
    first = asyncio.create_task(
        raw_call(
            web.app,
            "POST",
            "/run",
            headers={**as_user(user), **STREAM, "Content-Type": "application/json"},
            body=json.dumps(run_body()).encode(),
            disconnect=gone,
        )
    )
    await web.provider.reached.wait()
    refused = await web.client.post("/run", json=run_body(), headers={**as_user(user), **STREAM})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert refused.json()["error"] == "rate_limited"
    assert len(await web.holds(user)) == 1  # the refused run held nothing
    other = "other-" + user  # the cap is per user
    await web.fund(other, 100)
    web.provider.script = normal()
    allowed = await web.client.post("/run", json=run_body(), headers={**as_user(other), **STREAM})
    assert sse_events(allowed.text)[-1][0] == "done"
    gone.set()
    await first
    again = await web.client.post("/run", json=run_body(), headers={**as_user(user), **STREAM})
    assert again.status_code == 200  # the slot came back when the first stream ended


# -- compare ---------------------------------------------------------------------------


def compare_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "input": "Review this",
        "max_tokens": 1000,
        "variants": [{"package_id": "reviewer"}, {"no_prompt": True}],
    }
    body.update(fields)
    return body


async def test_compare_runs_every_variant(web: Web, user: str) -> None:
    await web.fund(user, 100)
    response = await web.client.post("/compare", json=compare_body(), headers=as_user(user))
    assert response.status_code == 200
    comparison = response.json()
    assert [o["index"] for o in comparison["outcomes"]] == [0, 1]
    assert [o["result"]["credits_spent"] for o in comparison["outcomes"]] == [7, 7]
    assert await web.available(user) == 86
    page = await web.playground.sessions.list(user)
    assert {s.comparison_id for s in page.sessions} == {comparison["id"]}


async def test_a_streamed_compare_sends_each_variants_events(web: Web, user: str) -> None:
    await web.fund(user, 100)
    response = await web.client.post(
        "/compare", json=compare_body(), headers={**as_user(user), **STREAM}
    )
    assert response.status_code == 200
    events = sse_events(response.text)
    assert all(data["type"] == name for name, data in events)
    by_variant: dict[int, list[str]] = {0: [], 1: []}
    for name, data in events:
        by_variant[data["variant"]].append(name)
    for names in by_variant.values():
        assert names[0] == "started"
        assert names[-1] == "done"
        assert "delta" in names
    [comparison_id] = {data["comparison_id"] for _, data in events}
    done = [data["result"] for name, data in events if name == "done"]
    assert [d["credits_spent"] for d in done] == [7, 7]
    for index in (0, 1):
        text = "".join(d["text"] for n, d in events if n == "delta" and d["variant"] == index)
        [result] = [d["result"] for n, d in events if n == "done" and d["variant"] == index]
        assert text == result["response"]
    assert await web.available(user) == 86
    page = await web.playground.sessions.list(user)
    assert {s.comparison_id for s in page.sessions} == {comparison_id}


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unaffordable_compare_is_402_and_runs_nothing(
    web: Web, user: str, stream: bool
) -> None:
    with_package = await hold_of(web, input="Review this")
    without = await hold_of(web, input="Review this", package_id=None, no_prompt=True)
    await web.fund(user, with_package + without - 1)
    response = await web.client.post(
        "/compare", json=compare_body(stream=stream), headers=as_user(user)
    )
    assert response.status_code == 402
    body = response.json()
    assert (body["required"], body["available"]) == (with_package + without, body["available"])
    assert body["available"] == with_package + without - 1
    assert web.provider.requests == []
    assert await web.available(user) == with_package + without - 1


async def test_a_streamed_compare_refuses_an_unknown_package_as_json(web: Web, user: str) -> None:
    await web.fund(user, 100)
    body = compare_body(variants=[{"package_id": "reviewer"}, {"package_id": "missing"}])
    response = await web.client.post("/compare", json=body, headers={**as_user(user), **STREAM})
    assert response.status_code == 404
    assert await web.holds(user) == []


async def test_a_streamed_compare_cut_short_charges_only_what_was_produced(
    make_web: Callable[..., Web], user: str
) -> None:
    never = asyncio.Event()
    web = make_web([start_usage(), TextDelta("one two three "), never])
    await web.fund(user, 100)
    gone = asyncio.Event()
    task = asyncio.create_task(
        raw_call(
            web.app,
            "POST",
            "/compare",
            headers={**as_user(user), **STREAM, "Content-Type": "application/json"},
            body=json.dumps(compare_body()).encode(),
            disconnect=gone,
        )
    )
    await web.provider.opened(2)
    for _ in range(50):  # let both variants stream their first words
        await asyncio.sleep(0)
    gone.set()
    exchange = await task
    assert sse_events(exchange.body.decode())[0][0] == "started"
    assert web.provider.closed == 2
    holds = await web.holds(user)
    assert [status for _, _, status in holds] == ["captured", "captured"]
    assert sum(captured for _, captured, _ in holds) == 100 - await web.available(user)
    assert all(captured <= cost_of("one two three ") for _, captured, _ in holds)
    await web.playground.ledger.verify(user)
