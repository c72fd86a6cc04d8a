"""Fixtures for the web API: a Playground on the shared test storage, an httpx
client over ASGI, and a raw ASGI driver for what httpx cannot do (disconnects)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from prpm_playground import (
    CreditPolicy,
    InMemoryPackages,
    Playground,
    SQLAlchemyStorage,
)
from prpm_playground.testing import ManualClock

from ..conftest import PG_URL, Backend
from ..scripted_provider import ScriptedProvider, Step, normal

PACKAGES = {"reviewer": "# Reviewer\nYou review code carefully.", "other": "Be brief."}
PURCHASE_URL = "https://example.test/credits"


def authenticate(request: Any) -> str | None:
    """The test host's authentication: the user id is the ``X-User`` header."""
    user = request.headers.get("x-user")
    return None if user is None else str(user)


def as_user(user: str) -> dict[str, str]:
    return {"X-User": user}


@dataclass
class Web:
    """A playground, its web app and a client for it."""

    playground: Playground
    provider: ScriptedProvider
    app: Any
    client: httpx.AsyncClient

    async def fund(self, user: str, credits: int) -> None:
        await self.playground.ledger.grant(
            user, credits, kind="purchased", idempotency_key=f"fund-{user}-{credits}"
        )

    async def available(self, user: str) -> int:
        return (await self.playground.ledger.balance(user)).available

    async def holds(self, user: str) -> list[tuple[int, int, str]]:
        audit = await self.playground.storage.audit(user)
        assert audit is not None
        return sorted((h.amount, h.captured, h.status) for h in audit[1])


def make_playground(
    storage: SQLAlchemyStorage,
    clock: ManualClock,
    provider: ScriptedProvider,
    **options: Any,
) -> Playground:
    """Prices as in the runner tests: 1 credit = $0.001, no trial credits."""
    options.setdefault("policy", CreditPolicy(trial_credits=0, usd_per_credit=Decimal("0.001")))
    options.setdefault("purchase_url", PURCHASE_URL)
    return Playground(
        storage=storage,
        provider=provider,
        packages=InMemoryPackages(PACKAGES),
        clock=clock,
        **options,
    )


def client_for(app: Any, base_url: str = "http://test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def make_web(
    storage: SQLAlchemyStorage, clock: ManualClock
) -> AsyncIterator[Callable[..., Web]]:
    clients: list[httpx.AsyncClient] = []

    def build(
        script: list[Step] | None = None,
        *,
        count: int | None = 1000,
        keepalive: float = 15.0,
        max_body_bytes: int = 256 * 1024,
        **options: Any,
    ) -> Web:
        provider = ScriptedProvider(script if script is not None else normal(), count=count)
        playground = make_playground(storage, clock, provider, **options)
        app = playground.asgi_app(
            authenticate=authenticate, keepalive=keepalive, max_body_bytes=max_body_bytes
        )
        client = client_for(app)
        clients.append(client)
        return Web(playground, provider, app, client)

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()


def run_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"package_id": "reviewer", "input": "Check my code", "max_tokens": 1000}
    body.update(fields)
    return body


# -- two engines on one database ----------------------------------------------------


async def twin_engine(backend: Backend, engine: AsyncEngine) -> AsyncEngine:
    """A second, independent engine on the same database (and schema) as ``engine``."""
    if backend.name == "sqlite":
        return create_async_engine(engine.url)
    async with engine.connect() as conn:
        schema = (await conn.exec_driver_sql("SELECT current_schema()")).scalar_one()
    return create_async_engine(PG_URL, connect_args={"server_settings": {"search_path": schema}})


# -- raw ASGI ---------------------------------------------------------------------------


@dataclass
class RawExchange:
    """What a raw ASGI call sent back."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.messages[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def raw_call(
    app: Any,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str],
    body: bytes = b"",
    on_send: Callable[[RawExchange, dict[str, Any]], None] | None = None,
    disconnect: asyncio.Event | None = None,
) -> RawExchange:
    """Call ``app`` as a server would; ``disconnect`` set means the client went away.

    ``on_send`` sees every message before it is recorded and may raise (a
    failing send) or set ``disconnect``.
    """
    gone = disconnect or asyncio.Event()
    exchange = RawExchange()
    body_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if on_send is not None:
            on_send(exchange, message)
        exchange.messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("test", 80),
    }
    async with asyncio.timeout(10):
        await app(scope, receive, send)
    return exchange


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The events of an event-stream body, comments left out."""
    import json

    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next(line[7:] for line in lines if line.startswith("event: "))
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        events.append((name, json.loads(data)))
    return events


# -- schema checks ----------------------------------------------------------------------


def validate(document: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate ``instance`` against ``schema``, a part of the OpenAPI ``document``."""
    root = {**schema, "components": document["components"]}
    Draft202012Validator(root).validate(instance)
