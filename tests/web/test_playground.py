"""The Playground facade: wiring, start-up (eager, lazy, concurrent, lifespan),
closing only what it owns, and the app under a mount prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from prpm_playground import (
    CreditLedger,
    Estimator,
    InMemoryPackages,
    InvalidRequest,
    OfflineProvider,
    Playground,
    PlaygroundRunner,
    RateLimits,
    ResetJob,
    SessionService,
    SQLAlchemyStorage,
)
from prpm_playground.storage.sql.migrate import head_revision
from prpm_playground.testing import ManualClock

from ..conftest import Backend
from ..scripted_provider import ScriptedProvider
from .conftest import as_user, authenticate, client_for, make_playground

PACKAGES = InMemoryPackages({"pirate": "Answer like a pirate."})


def test_the_services_are_wired_together(tmp_path: Path) -> None:
    clock = ManualClock()
    playground = Playground(
        f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
        provider=OfflineProvider(),
        packages=PACKAGES,
        clock=clock,
        payments="stripe-stand-in",
    )
    assert isinstance(playground.storage, SQLAlchemyStorage)
    assert isinstance(playground.ledger, CreditLedger)
    assert isinstance(playground.estimator, Estimator)
    assert isinstance(playground.runner, PlaygroundRunner)
    assert isinstance(playground.sessions, SessionService)
    assert isinstance(playground.reset_job, ResetJob)
    assert playground.runner.ledger is playground.ledger
    assert playground.runner.estimator is playground.estimator
    assert playground.ledger.policy is playground.policy is playground.reset_job.policy
    assert playground.clock is clock
    assert playground.payments == "stripe-stand-in"
    assert playground.purchase_url is None
    assert playground.rate_limits == RateLimits()
    assert playground.started is False


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"packages": PACKAGES}, "provider is required"),
        ({"provider": OfflineProvider()}, "packages is required"),
        (
            {
                "provider": OfflineProvider(),
                "packages": PACKAGES,
                "storage": SQLAlchemyStorage("sqlite+aiosqlite://"),
                "table_prefix": "x_",
            },
            "not both",
        ),
        ({"provider": OfflineProvider(), "packages": PACKAGES, "purchase_url": 5}, "purchase_url"),
    ],
)
def test_construction_refuses_what_it_cannot_run(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        Playground(**arguments)


def test_the_default_database_is_a_local_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    playground = Playground(provider=OfflineProvider(), packages=PACKAGES)
    assert playground.storage.engine.url.database == "./prpm_playground.db"


async def test_async_with_migrates_and_closes_what_it_owns(tmp_path: Path) -> None:
    playground = Playground(
        f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", provider=OfflineProvider(), packages=PACKAGES
    )
    async with playground as started:
        assert started is playground
        assert playground.started
        assert await playground.storage.current_revision() == head_revision()
        await playground.ledger.open_account("u")
        assert playground.storage.engine.pool.checkedin() > 0
    assert not playground.started
    assert playground.storage.engine.pool.checkedin() == 0  # its own engine was disposed


async def test_aclose_leaves_the_hosts_storage_and_engine_open(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = await backend.storage()
    closed: list[bool] = []
    monkeypatch.setattr(storage, "close", lambda: closed.append(True))
    async with Playground(storage=storage, provider=OfflineProvider(), packages=PACKAGES) as p:
        await p.ledger.open_account("u")
    assert closed == []
    monkeypatch.undo()
    await storage.close()

    engine = await backend.make_engine()
    async with Playground(engine, provider=OfflineProvider(), packages=PACKAGES) as p:
        await p.ledger.open_account("u")
    assert engine.pool.checkedin() > 0  # not disposed: the host's pool is the host's


async def test_the_first_requests_start_it_once(
    backend: Backend, clock: ManualClock, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = SQLAlchemyStorage(await backend.make_engine())  # never migrated
    migrations = 0
    migrate = storage.migrate

    async def counting() -> None:
        nonlocal migrations
        migrations += 1
        await asyncio.sleep(0.05)  # long enough for every request to arrive first
        await migrate()

    monkeypatch.setattr(storage, "migrate", counting)
    playground = make_playground(storage, clock, ScriptedProvider())
    async with client_for(playground.asgi_app(authenticate=authenticate)) as client:
        responses = await asyncio.gather(
            *(client.get("/credits", headers=as_user(user)) for _ in range(10))
        )
    assert [r.status_code for r in responses] == [200] * 10
    assert migrations == 1
    assert playground.started
    await storage.close()


async def test_a_failed_start_is_retried(
    backend: Backend, clock: ManualClock, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = SQLAlchemyStorage(await backend.make_engine())
    migrate = storage.migrate
    attempts = 0

    async def flaky() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("database restarting")
        await migrate()

    monkeypatch.setattr(storage, "migrate", flaky)
    playground = make_playground(storage, clock, ScriptedProvider())
    async with client_for(playground.asgi_app(authenticate=authenticate)) as client:
        first = await client.get("/credits", headers=as_user(user))
        second = await client.get("/credits", headers=as_user(user))
    assert (first.status_code, second.status_code) == (500, 200)
    await storage.close()


async def test_mounted_under_a_prefix(
    storage: SQLAlchemyStorage, clock: ManualClock, user: str
) -> None:
    playground = make_playground(storage, clock, ScriptedProvider())
    host = Starlette(
        routes=[Mount("/api/v1/playground", app=playground.asgi_app(authenticate=authenticate))]
    )
    async with client_for(host) as client:
        balance = await client.get("/api/v1/playground/credits", headers=as_user(user))
        assert balance.status_code == 200
        assert balance.json()["available"] == 0
        shared = await client.get("/api/v1/playground/shared/nothing")
        assert shared.status_code == 404
        assert shared.json()["error"] == "not_found"
        document = await client.get("/api/v1/playground/openapi.json")
        assert document.json()["servers"] == [{"url": "/api/v1/playground"}]
        assert (await client.get("/credits", headers=as_user(user))).status_code == 404


async def _lifespan(
    app: Any,
) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]], list[str]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[str] = []
    answered = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message["type"])
        answered.set()

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send)
    )
    await answered.wait()
    return task, inbox, outbox


async def test_lifespan_composes_with_the_hosts(
    backend: Backend, clock: ManualClock, user: str
) -> None:
    storage = SQLAlchemyStorage(await backend.make_engine())  # never migrated
    playground = make_playground(storage, clock, ScriptedProvider())
    seen: list[str] = []

    @asynccontextmanager
    async def host_lifespan(app: Starlette) -> AsyncIterator[None]:
        seen.append("host up")
        async with playground.lifespan(app):
            seen.append(f"playground started: {playground.started}")
            yield
        seen.append(f"playground stopped: {not playground.started}")

    host = Starlette(
        routes=[Mount("/playground", app=playground.asgi_app(authenticate=authenticate))],
        lifespan=host_lifespan,
    )
    task, inbox, outbox = await _lifespan(host)
    assert outbox == ["lifespan.startup.complete"]
    assert await storage.current_revision() == head_revision()
    async with client_for(host) as client:
        assert (await client.get("/playground/credits", headers=as_user(user))).is_success
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    assert outbox[-1] == "lifespan.shutdown.complete"
    assert seen == ["host up", "playground started: True", "playground stopped: True"]
    await storage.close()


async def test_the_app_alone_runs_the_lifespan_itself(backend: Backend, clock: ManualClock) -> None:
    storage = SQLAlchemyStorage(await backend.make_engine())
    playground = make_playground(storage, clock, ScriptedProvider())
    task, inbox, outbox = await _lifespan(playground.asgi_app(authenticate=authenticate))
    assert outbox == ["lifespan.startup.complete"]
    assert playground.started
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    assert not playground.started
    await storage.close()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"authenticate": "nope"}, "authenticate"),
        ({"authenticate": authenticate, "max_body_bytes": 0}, "max_body_bytes"),
        ({"authenticate": authenticate, "keepalive": 0}, "keepalive"),
    ],
)
def test_asgi_app_checks_its_arguments(arguments: dict[str, Any], message: str) -> None:
    playground = Playground("sqlite+aiosqlite://", provider=OfflineProvider(), packages=PACKAGES)
    with pytest.raises(InvalidRequest, match=message):
        playground.asgi_app(**arguments)
