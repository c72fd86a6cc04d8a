"""A schemathesis run against the served ``/openapi.json``, as a signed-in user.

Every operation gets generated requests, valid and invalid; no answer may
be a 5xx, and every answer must match what the document declares (status,
content type, body schema). The app runs under a real uvicorn server in a
thread with its own event loop, because schemathesis sends requests
synchronously; the number of examples per operation bounds the run.
"""

from __future__ import annotations

import asyncio
import base64
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
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from sqlalchemy.ext.asyncio import create_async_engine

from prpm_playground import CreditPolicy, InMemoryPackages, OfflineProvider, Playground

from ..conftest import BACKENDS, PG_URL, library_tables
from .conftest import PACKAGES, authenticate

EXAMPLES = 30
PER_OPERATION = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


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

        @PER_OPERATION
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


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# Values at the edges of what the API and its databases take: int64 and int32
# edges, datetime edges (inside the opaque cursors too), maximum lengths and
# one past them, NUL, lone surrogates, non-BMP characters.
BOUNDARY_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "x" * 198,
    "x" * 199,
    "x" * 200,
    "x" * 255,
    "x" * 256,
    "x" * 10_001,
    "é" * 1000,
    "🎉" * 300,
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    _b64(f"seq:{2**63}"),
    _b64(f"seq:{2**63 - 1}"),
    _b64("seq:-1"),
    _b64('["9999-12-31T23:59:59-14:00","ses_x"]'),
    _b64('["0001-01-01T00:00:00+14:00","ses_x"]'),
    _b64('["2026-01-01T00:00:00Z","' + "s" * 300 + '"]'),
    "../../etc/passwd",
    "%00",
    "line\nbreak",
]
# Only in JSON bodies: a URL cannot carry them, a JSON escape can.
BOUNDARY_JSON_ONLY = ["\ud800", "a\udfffb", "\udbff\udfff"]
BOUNDARY_NUMBERS = [0, -1, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]


def _hostile(draw: Any, value: Any, *, in_json: bool) -> Any:
    """``value`` with some of its leaves replaced by boundary values."""
    if isinstance(value, dict):
        return {k: _hostile(draw, v, in_json=in_json) for k, v in value.items()}
    if isinstance(value, list):
        return [_hostile(draw, v, in_json=in_json) for v in value]
    if isinstance(value, bool) or not draw(st.booleans()):
        return value
    if isinstance(value, int | float):
        return draw(st.sampled_from(BOUNDARY_NUMBERS))
    if isinstance(value, str):
        return draw(st.sampled_from(BOUNDARY_TEXT + (BOUNDARY_JSON_ONLY if in_json else [])))
    return value


def test_boundary_values_never_answer_5xx(served: str) -> None:
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    answered: list[int] = []

    for operation in operations:

        @PER_OPERATION
        @given(case=operation.as_strategy(), data=st.data())
        def check(case: Any, data: Any) -> None:
            draw = data.draw
            if isinstance(case.body, dict | list):
                case.body = _hostile(draw, case.body, in_json=True)
            if case.query:
                case.query = _hostile(draw, dict(case.query), in_json=False)
            if case.path_parameters:
                case.path_parameters = _hostile(draw, dict(case.path_parameters), in_json=False)
            response = case.call(base_url=served, headers={"X-User": "alice"})
            answered.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}: "
                f"{response.status_code} {response.text[:300]}"
            )

        check()
    # Refusals and successes alike were seen: the values reached the handlers.
    assert any(400 <= status < 500 for status in answered)
    assert any(status < 300 for status in answered)
