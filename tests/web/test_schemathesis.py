"""A schemathesis run against the served ``/openapi.json``, as a signed-in user.

Every operation gets generated requests, valid and invalid; no answer may
be a 5xx, and every answer must match what the document declares (status,
content type, body schema). The app runs under a real uvicorn server in a
thread with its own event loop, because schemathesis sends requests
synchronously; the number of examples per operation bounds the run.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from sqlalchemy.ext.asyncio import create_async_engine

from prpm_playground import CreditPolicy, InMemoryPackages, OfflineProvider, Playground

from ..conftest import BACKENDS, PG_URL, library_tables
from .conftest import PACKAGES, authenticate

EXAMPLES = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _drop(prefix: str) -> None:
    engine = create_async_engine(PG_URL)
    async with engine.begin() as conn:
        for table in library_tables(prefix):
            await conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The playground's app, served on a free port."""
    prefix = f"st{secrets.token_hex(4)}_"
    url = PG_URL if request.param == "postgres" else f"sqlite+aiosqlite:///{tmp_path}/st.db"
    playground = Playground(
        url,
        table_prefix=prefix,
        provider=OfflineProvider(delay=0),
        packages=InMemoryPackages(PACKAGES),
        policy=CreditPolicy(trial_credits=50),
        purchase_url="https://example.test/credits",
    )
    # Served bare: a host's own router (Starlette's Mount does not match a
    # path with a newline, say) would answer some generated paths itself.
    app = playground.asgi_app(authenticate=authenticate)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        if request.param == "postgres":
            asyncio.run(_drop(prefix))


def test_every_operation_answers_as_documented(served: str) -> None:
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # every route, not an empty document

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=served,
                headers={"X-User": "alice"},
                # Whether a schema-valid request succeeds depends on what
                # the schema cannot say: the user's credits (402), the
                # catalog (400 for an unknown model), an opaque cursor (400).
                # Every answer must still be a documented one, and no 5xx.
                excluded_checks=[positive_data_acceptance],
            )

        check()
