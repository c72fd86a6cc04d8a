"""One behaviour suite, run against every way of hosting the web API.

Each host is built by the matching example app (``examples/``): the bare
app in a Starlette ``Mount``, the FastAPI router, the Litestar plugin and the
Django dispatcher, all under ``/api/v1/playground``, on SQLite and PostgreSQL.
``httpx.ASGITransport`` sends no lifespan events, so every test also proves
the playground starts on its first request.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp

from prpm_playground import OfflineProvider, Playground
from prpm_playground.providers.offline import OFFLINE_LABEL
from prpm_playground.sources import LocalPackages
from prpm_playground.web import ROUTES

from .conftest import Backend
from .web.conftest import sse_events

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PREFIX = "/api/v1/playground"
PURCHASE_URL = "/billing/credits"
HOSTS = ["starlette", "fastapi", "litestar", "django"]
FRAMEWORK = {
    "starlette": "starlette",
    "fastapi": "fastapi",
    "litestar": "litestar",
    "django": "django",
}


def _example(name: str) -> ModuleType:
    """Import an example module (``examples/`` is not a package)."""
    pytest.importorskip(name)  # each host is named after its framework
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    module = {"django": "django_app.asgi"}.get(name, f"{name}_app")
    return importlib.import_module(module)


def build_host(name: str, playground: Playground) -> ASGIApp:
    """The example host app ``name``, serving ``playground``."""
    example = _example(name)
    if name == "django":
        app: ASGIApp = example.create_application(playground)
        return app
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    app = example.create_app(playground)
    # Litestar configures the root logger by default; keep the test run's logging as it was.
    root.handlers[:], root.level = handlers, level
    return app


@dataclass
class Host:
    name: str
    app: ASGIApp
    playground: Playground
    client: httpx.AsyncClient

    def as_user(self, user: str | None) -> dict[str, str]:
        return {} if user is None else {"X-User": user}


@asynccontextmanager
async def hosted(name: str, backend: Backend) -> AsyncIterator[Host]:
    engine = await backend.make_engine()
    playground = Playground(
        engine,
        provider=OfflineProvider(delay=0),
        packages=LocalPackages(EXAMPLES / "packages"),
        purchase_url=PURCHASE_URL,
    )
    app = build_host(name, playground)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Host(name, app, playground, client)
    finally:
        await playground.aclose()
        await engine.dispose()


@pytest.fixture(params=HOSTS)
async def host(request: pytest.FixtureRequest, backend: Backend) -> AsyncIterator[Host]:
    async with hosted(request.param, backend) as value:
        yield value


@pytest.fixture
def alice(user: str) -> str:
    return user


@pytest.fixture
def bob() -> str:
    import secrets

    return f"bob-{secrets.token_hex(8)}"


RUN = {"package_id": "code-review", "input": "def add(a, b): return a - b", "max_tokens": 300}


async def run_once(host: Host, user: str) -> dict[str, Any]:
    answer = await host.client.post(f"{PREFIX}/run", json=RUN, headers=host.as_user(user))
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


# -- the behaviour --------------------------------------------------------------------


async def test_first_request_starts_the_playground(host: Host, alice: str) -> None:
    assert not host.playground.started
    answer = await host.client.get(f"{PREFIX}/credits", headers=host.as_user(alice))
    assert answer.status_code == 200, answer.text
    assert host.playground.started


async def test_balance(host: Host, alice: str) -> None:
    answer = await host.client.get(f"{PREFIX}/credits", headers=host.as_user(alice))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    balance = answer.json()
    assert (balance["available"], balance["held"], balance["total"]) == (5, 0, 5)
    assert balance["breakdown"]["trial"] == 5


async def test_estimate(host: Host, alice: str) -> None:
    answer = await host.client.post(
        f"{PREFIX}/estimate",
        json={"package_id": "typescript-strict", "input": "Type this reducer"},
        headers=host.as_user(alice),
    )
    assert answer.status_code == 200, answer.text
    estimate = answer.json()
    assert estimate["can_afford"] is True
    assert estimate["available"] == 5
    assert 1 <= estimate["credits"] <= estimate["max_credits"]
    assert estimate["input_tokens"] > 0


async def test_run_json(host: Host, alice: str) -> None:
    result = await run_once(host, alice)
    assert result["response"].startswith(OFFLINE_LABEL)
    assert result["credits_spent"] >= 1
    assert result["credits_remaining"] == 5 - result["credits_spent"]
    answer = await host.client.get(f"{PREFIX}/credits", headers=host.as_user(alice))
    assert answer.json()["available"] == result["credits_remaining"]


async def test_run_streams_events(host: Host, alice: str) -> None:
    answer = await host.client.post(
        f"{PREFIX}/run",
        json=RUN,
        headers={**host.as_user(alice), "Accept": "text/event-stream"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.headers["x-accel-buffering"] == "no"
    events = sse_events(answer.text)
    names = [name for name, _ in events]
    assert names[0] == "started"
    assert names[-1] == "done"
    assert {"delta", "usage"} <= set(names)
    assert all(data["type"] == name for name, data in events)
    done = events[-1][1]["result"]
    assert "".join(data["text"] for name, data in events if name == "delta") == done["response"]
    balance = await host.client.get(f"{PREFIX}/credits", headers=host.as_user(alice))
    assert balance.json()["available"] == 5 - done["credits_spent"]


async def test_compare_streams_events(host: Host, alice: str) -> None:
    body = {
        "input": "Summarise: the build is red because the cache expired.",
        "max_tokens": 200,
        "variants": [{"package_id": "plain-english"}, {"no_prompt": True}],
        "stream": True,
    }
    answer = await host.client.post(f"{PREFIX}/compare", json=body, headers=host.as_user(alice))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text)
    assert {data["variant"] for _, data in events} == {0, 1}
    done = sorted(
        (data["variant"], data["result"]["response"]) for name, data in events if name == "done"
    )
    assert [v for v, _ in done] == [0, 1]
    assert all(response.startswith(OFFLINE_LABEL) for _, response in done)


async def test_sessions_and_sharing(host: Host, alice: str) -> None:
    result = await run_once(host, alice)
    headers = host.as_user(alice)
    listed = await host.client.get(f"{PREFIX}/sessions", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [s["id"] for s in listed.json()["sessions"]] == [result["session_id"]]

    session = await host.client.get(f"{PREFIX}/sessions/{result['session_id']}", headers=headers)
    assert session.status_code == 200, session.text
    assert session.json()["exchanges"][0]["response"] == result["response"]

    shared = await host.client.post(
        f"{PREFIX}/sessions/{result['session_id']}/share", headers=headers
    )
    assert shared.status_code == 200, shared.text
    token = shared.json()["token"]

    view = await host.client.get(f"{PREFIX}/shared/{token}")  # no user needed
    assert view.status_code == 200, view.text
    assert view.headers["x-robots-tag"] == "noindex"
    assert view.headers["referrer-policy"] == "no-referrer"
    assert view.json()["exchanges"][0]["response"] == result["response"]
    assert alice not in view.text
    assert result["session_id"] not in view.text

    revoked = await host.client.delete(
        f"{PREFIX}/sessions/{result['session_id']}/share", headers=headers
    )
    assert revoked.status_code == 204
    gone = await host.client.get(f"{PREFIX}/shared/{token}")
    assert gone.status_code == 404
    assert gone.json()["error"] == "not_found"


async def test_no_user_is_401(host: Host) -> None:
    answer = await host.client.get(f"{PREFIX}/credits")
    assert answer.status_code == 401
    assert answer.json() == {"error": "unauthorized", "message": "sign in to use the playground"}
    models = await host.client.get(f"{PREFIX}/models")  # public: no user needed
    assert models.status_code == 200, models.text
    assert models.json()["models"]


async def test_insufficient_credits_is_402(host: Host, alice: str) -> None:
    answer = await host.client.post(
        f"{PREFIX}/run",
        json={**RUN, "max_tokens": 100_000, "model": "opus"},
        headers={**host.as_user(alice), "Accept": "text/event-stream"},
    )
    assert answer.status_code == 402, answer.text
    body = answer.json()
    assert body["error"] == "insufficient_credits"
    assert body["available"] == 5
    assert body["required"] > 5
    assert body["purchase_url"] == PURCHASE_URL
    balance = await host.client.get(f"{PREFIX}/credits", headers=host.as_user(alice))
    assert balance.json()["available"] == 5  # nothing held, nothing spent


async def test_another_users_session_is_404(host: Host, alice: str, bob: str) -> None:
    result = await run_once(host, alice)
    session = f"{PREFIX}/sessions/{result['session_id']}"
    for method, path in [("GET", session), ("POST", f"{session}/share"), ("DELETE", session)]:
        answer = await host.client.request(method, path, headers=host.as_user(bob))
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"] == "not_found"
    still = await host.client.get(session, headers=host.as_user(alice))
    assert still.status_code == 200


async def test_unknown_body_field_is_422(host: Host, alice: str) -> None:
    answer = await host.client.post(
        f"{PREFIX}/estimate",
        json={"package_id": "code-review", "input": "hi", "temprature": 0.5},
        headers=host.as_user(alice),
    )
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"] == "invalid_request"
    assert [error["loc"] for error in body["errors"]] == [["body", "temprature"]]


async def test_host_keeps_its_own_routes(host: Host) -> None:
    answer = await host.client.get("/")
    assert answer.status_code == 200, answer.text
    assert answer.json()["playground"] == f"{PREFIX}/"


# Requests whose answers are fully determined (no ids, no times): every host
# must answer them byte for byte as the bare app does.
DETERMINED: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/credits", {}),
    ("GET", "/credits?limit=3", {"user": True}),
    ("GET", "/credits/history?limit=0", {"user": True}),
    ("GET", "/sessions/ses_missing", {"user": True}),
    ("POST", "/estimate", {"user": True, "json": {"package_id": "nope", "input": "x"}}),
    ("POST", "/estimate", {"user": True, "json": {"input": "x", "package_id": 3}}),
    ("POST", "/estimate", {"user": True, "content": b"{", "type": "application/json"}),
    ("POST", "/estimate", {"user": True, "content": b"input=x", "type": "text/plain"}),
    ("POST", "/run", {"user": True, "json": {**RUN, "max_tokens": 100_000, "model": "opus"}}),
    ("POST", "/run", {"user": True, "json": {**RUN, "model": "gpt-5"}}),
    ("GET", "/shared/not-a-token", {}),
    ("POST", "/estimate", {"user": True, "content": b"[" * 300_000, "type": "application/json"}),
]


async def test_answers_match_the_bare_app(host: Host, alice: str) -> None:
    bare = Starlette(routes=[Mount(PREFIX, app=host.playground.asgi_app(authenticate=_header))])
    transport = httpx.ASGITransport(app=bare)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as reference:
        for method, path, options in DETERMINED:
            headers = host.as_user(alice) if options.get("user") else {}
            if "type" in options:
                headers["Content-Type"] = options["type"]
            kwargs = {k: options[k] for k in ("json", "content") if k in options}
            expected = await reference.request(method, PREFIX + path, headers=headers, **kwargs)
            got = await host.client.request(method, PREFIX + path, headers=headers, **kwargs)
            assert expected.status_code >= 400, (path, expected.text)
            assert (got.status_code, got.content) == (expected.status_code, expected.content), path
            assert got.headers.get("retry-after") == expected.headers.get("retry-after")


def _header(request: Any) -> str | None:
    value: str | None = request.headers.get("x-user")
    return value


async def test_lifespan_starts_and_stops_the_playground(host: Host) -> None:
    sent: list[dict[str, Any]] = []
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    states: list[bool] = []

    async def receive() -> dict[str, Any]:
        if sent:  # record the state once startup was answered
            states.append(host.playground.started)
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await host.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert states == [True]
    assert not host.playground.started


# -- FastAPI: the host's OpenAPI document -----------------------------------------------


@pytest.fixture
async def fastapi_host(backend: Backend) -> AsyncIterator[Host]:
    async with hosted("fastapi", backend) as value:
        yield value


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


async def test_fastapi_openapi_lists_the_playground(fastapi_host: Host) -> None:
    answer = await fastapi_host.client.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    playground_paths = {p for p in document["paths"] if p.startswith(PREFIX)}
    assert playground_paths == {PREFIX + route.path for route in ROUTES}
    schemas = document["components"]["schemas"]
    for ref in set(_refs(document)):  # nothing dangles, inlined or not
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for route in ROUTES:
        operation = document["paths"][PREFIX + route.path][route.method.lower()]
        assert operation["summary"] == route.summary
        assert operation["x-requires-user"] is route.auth
        success = operation["responses"][str(route.status)]
        if route.response is not None:
            schema = success["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{route.response.__name__}"}
        if route.events is not None:
            stream = success["content"]["text/event-stream"]["schema"]
            assert "oneOf" in stream["properties"]["data"]["contentSchema"]
        if route.file_media_type is not None:
            assert list(success["content"]) == [route.file_media_type]
        parameters = {(p["in"], p["name"]) for p in operation.get("parameters", [])}
        for name in route.query.model_fields if route.query else ():
            assert ("query", name) in parameters, (route.name, name)
        for name in [part[1:-1] for part in route.path.split("/") if part.startswith("{")]:
            assert ("path", name) in parameters, (route.name, name)
        if route.body is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert set(body["properties"]) == set(route.body.model_fields)
            assert body["additionalProperties"] is False
        else:
            assert "requestBody" not in operation
        if route.auth:
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}
    run = document["paths"][f"{PREFIX}/run"]["post"]["responses"]
    assert {"402", "422", "429"} <= set(run)


# -- Django: what goes where --------------------------------------------------------------


async def test_django_dispatches_on_whole_segments(backend: Backend) -> None:
    async with hosted("django", backend) as host:
        outside = await host.client.get("/api/v1/playgroundish/credits")
        assert outside.status_code == 404
        assert outside.headers["content-type"].startswith("text/html")  # Django's 404
        inside = await host.client.get(f"{PREFIX}/nowhere")
        assert inside.status_code == 404
        assert inside.json()["error"] == "not_found"  # the playground's


@pytest.mark.parametrize("name", HOSTS)
async def test_behind_a_root_path(name: str, backend: Backend, alice: str) -> None:
    async with hosted(name, backend) as host:
        transport = httpx.ASGITransport(app=host.app, root_path="/proxy")
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answer = await client.get(f"/proxy{PREFIX}/credits", headers={"X-User": alice})
            assert answer.status_code == 200, answer.text
            assert answer.json()["available"] == 5


async def test_examples_packages_load() -> None:
    source = LocalPackages(EXAMPLES / "packages")
    found = {
        pid: await source.get(pid)
        for pid in ["code-review", "typescript-strict", "@demo/release-notes", "plain-english"]
    }
    assert {pid: p.type for pid, p in found.items()} == {
        "code-review": "claude-skill",
        "typescript-strict": "cursor-rule",
        "@demo/release-notes": "claude-agent",
        "plain-english": "prompt",
    }
    assert all(not p.warnings for p in found.values())


def test_the_demo_offers_the_example_packages() -> None:
    from prpm_playground._demo import PACKAGES

    assert PACKAGES.resolve() == (EXAMPLES / "packages").resolve()


def test_the_wheel_ships_the_example_packages(tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    root = EXAMPLES.parent
    subprocess.run(  # the wheel as a user installs it, built from this checkout
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        str(path.relative_to(EXAMPLES / "packages"))
        for path in (EXAMPLES / "packages").rglob("*")
        if path.is_file()
    }
    assert len(shipped) >= 4
    assert {f"prpm_playground/_demo/packages/{name}" for name in shipped} <= names


def test_mount_points_are_checked() -> None:
    from prpm_playground import InvalidRequest

    pytest.importorskip("litestar")
    from prpm_playground.contrib.django import PlaygroundDispatcher
    from prpm_playground.contrib.litestar import PlaygroundPlugin

    playground = Playground(
        "sqlite+aiosqlite:///:memory:",
        provider=OfflineProvider(delay=0),
        packages=LocalPackages(EXAMPLES / "packages"),
    )
    app = playground.asgi_app(authenticate=_header)
    for bad in ("api", "/api/"):
        with pytest.raises(InvalidRequest):
            PlaygroundDispatcher(app, app, prefix=bad)
        with pytest.raises(InvalidRequest):
            PlaygroundPlugin(playground, authenticate=_header, path=bad)
