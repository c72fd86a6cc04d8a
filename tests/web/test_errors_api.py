"""The error mapping over HTTP: 401, 400, 404, 405, 413, 415, 422 and 500, each
with its body, and nothing written when a request is refused."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from prpm_playground import InvalidRequest, NotFound, RateLimited
from prpm_playground.errors import (
    IdempotencyConflict,
    LedgerInvariantError,
    ModelOverloaded,
    ModelUnavailable,
    PackageSourceUnavailable,
    ProviderMisconfigured,
    RunInProgress,
    SchemaMismatch,
)
from prpm_playground.web.errors import PayloadTooLarge, RequestInvalid, status_for

from .conftest import Web, as_user, client_for, run_body


async def test_no_user_is_401(web: Web) -> None:
    response = await web.client.get("/credits")
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": "sign in to use the playground"}
    run = await web.client.post("/run", json=run_body())
    assert run.status_code == 401
    assert web.provider.requests == []


async def test_an_async_authenticate_works(web: Web, user: str) -> None:
    async def authenticate(request: Any) -> str | None:
        return user if request.headers.get("authorization") == "Bearer good" else None

    app = web.playground.asgi_app(authenticate=authenticate)
    async with client_for(app) as client:
        ok = await client.get("/credits", headers={"Authorization": "Bearer good"})
        refused = await client.get("/credits", headers={"Authorization": "Bearer bad"})
    assert (ok.status_code, refused.status_code) == (200, 401)


@pytest.mark.parametrize("nobody", [None, ""])
async def test_no_user_from_the_host_is_401(web: Web, nobody: str | None) -> None:
    app = web.playground.asgi_app(authenticate=lambda request: nobody)
    async with client_for(app) as client:
        response = await client.get("/credits")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def host_authenticate_returning(value: Any) -> Callable[[Any], Any]:
    def host_authenticate(request: Any) -> Any:
        return value

    return host_authenticate


@pytest.mark.parametrize(
    ("bad", "kind"),
    [("x" * 256, "str"), (42, "int"), ("nul\x00byte", "str"), (b"alice", "bytes")],
)
async def test_an_invalid_user_id_from_the_host_is_a_500(
    web: Web, bad: Any, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.playground.asgi_app(authenticate=host_authenticate_returning(bad))
    async with client_for(app) as client:
        response = await client.get("/credits")
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "internal error"}
    assert "host_authenticate_returning.<locals>.host_authenticate returned " + kind in caplog.text


async def test_an_authenticate_that_raises_is_a_500(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    class SessionAuth:
        def __call__(self, request: Any) -> str:
            raise LookupError("session store down: password=hunter2")

    app = web.playground.asgi_app(authenticate=SessionAuth())
    async with client_for(app) as client:
        response = await client.get("/credits")
    assert response.status_code == 500
    assert "hunter2" not in response.text
    assert "authenticate hook" in caplog.text
    assert "SessionAuth" in caplog.text
    assert "raised LookupError" in caplog.text


async def test_an_unexpected_error_is_a_500_that_reveals_nothing(
    web: Web, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def get(self, package_id: str, version: str | None = None) -> Any:
            raise ZeroDivisionError("secret internals")

    web.playground.estimator.packages = Broken()  # type: ignore[assignment]
    await web.fund(user, 100)
    with caplog.at_level(logging.ERROR, logger="prpm_playground.web.errors"):
        response = await web.client.post("/run", json=run_body(), headers=as_user(user))
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "internal error"}
    assert "secret" not in response.text
    assert "ZeroDivisionError" in caplog.text
    assert await web.holds(user) == []


async def test_unknown_paths_and_methods(web: Web, user: str) -> None:
    missing = await web.client.get("/nowhere", headers=as_user(user))
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = await web.client.put("/credits", headers=as_user(user))
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    assert "GET" in wrong.headers["allow"]


async def test_a_body_over_the_limit_is_413(make_web: Callable[..., Web], user: str) -> None:
    web = make_web(max_body_bytes=1000)
    await web.fund(user, 100)
    declared = await web.client.post("/run", json=run_body(input="x" * 2000), headers=as_user(user))
    assert declared.status_code == 413
    assert declared.json() == {
        "error": "payload_too_large",
        "message": "the request body is over the limit of 1,000 bytes",
        "max_bytes": 1000,
    }

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        yield b'{"package_id": "reviewer", "input": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    chunked = await web.client.post(
        "/run",
        content=chunks(),
        headers={**as_user(user), "Content-Type": "application/json"},
    )
    assert chunked.status_code == 413
    lying = await web.client.post(
        "/run",
        content=chunks(),
        headers={**as_user(user), "Content-Type": "application/json", "Content-Length": "10"},
    )
    assert lying.status_code == 413  # a small Content-Length is not trusted
    assert web.provider.requests == []
    assert await web.holds(user) == []


async def test_a_body_that_is_not_json_is_415(web: Web, user: str) -> None:
    response = await web.client.post(
        "/run",
        content=b'{"package_id": "reviewer", "input": "hi"}',
        headers={**as_user(user), "Content-Type": "text/plain"},
    )
    assert (response.status_code, response.json()["error"]) == (415, "unsupported_media_type")
    vendor = await web.client.post(
        "/estimate",
        content=b'{"package_id": "reviewer", "input": "hi"}',
        headers={**as_user(user), "Content-Type": "application/vnd.api+json; charset=utf-8"},
    )
    assert vendor.status_code == 200


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (b"{not json", ["body"], "json_invalid"),
        (b"", ["body"], "json_invalid"),
        (b"[1, 2]", ["body"], "model_type"),
        (b'{"package_id": "reviewer", "input": "hi", "colour": "red"}', ["body", "colour"], None),
        (b'{"package_id": "reviewer", "input": "hi", "max_tokens": "100"}', None, "int_type"),
        (b'{"package_id": "reviewer", "input": "hi", "max_tokens": -1}', None, None),
        (b'{"package_id": "reviewer", "input": "hi", "stream": "yes"}', None, "bool_type"),
        (b'{"package_id": "reviewer"}', ["body", "input"], "missing"),
        (b'{"input": "hi"}', None, "value_error"),
    ],
)
async def test_bodies_that_break_the_schema_are_422(
    web: Web, user: str, body: bytes, loc: list[Any] | None, kind: str | None
) -> None:
    await web.fund(user, 100)
    response = await web.client.post(
        "/run", content=body, headers={**as_user(user), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == "invalid_request"
    [problem] = answer["errors"]
    assert problem["loc"][0] == "body"
    if loc is not None:
        assert problem["loc"] == loc
    if kind is not None:
        assert problem["type"] == kind
    assert set(problem) == {"loc", "msg", "type"}  # the input is never echoed
    assert web.provider.requests == []
    assert await web.holds(user) == []


NUL = "a\x00b"
COMPARE_BASELINE = {"no_prompt": True}
COMPARE = {"input": "Review this", "variants": [{"package_id": "reviewer"}, COMPARE_BASELINE]}


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        *(
            ("/run", run_body(**{name: NUL}), ["body", name])
            for name in ("package_id", "package_version", "input", "model", "session_id", "run_id")
        ),
        ("/estimate", run_body(session_id=NUL), ["body", "session_id"]),
        ("/compare", {**COMPARE, "input": NUL}, ["body", "input"]),
        ("/compare", {**COMPARE, "compare_id": NUL}, ["body", "compare_id"]),
        (
            "/compare",
            {
                **COMPARE,
                "variants": [{"package_id": "reviewer", "model": NUL}, {"no_prompt": True}],
            },
            ["body", "variants", 0, "model"],
        ),
    ],
)
@pytest.mark.parametrize(
    ("escape", "named"), [("\\u0000", "NUL"), ("\\ud800", "surrogates"), ("\\udfff", "surrogates")]
)
async def test_text_a_database_cannot_store_is_refused_before_anything_is_held(
    web: Web, user: str, path: str, body: dict[str, Any], loc: list[Any], escape: str, named: str
) -> None:
    # PostgreSQL cannot store NUL, and neither database a lone surrogate
    # (valid as a JSON escape): found in a run's input only when its paid
    # result was saved, either would have been a 500 after the charge.
    await web.fund(user, 100)
    content = json.dumps(body).replace("\\u0000", escape)
    response = await web.client.post(
        path, content=content, headers={**as_user(user), "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    [problem] = response.json()["errors"]
    if named == "NUL":
        assert problem["loc"] == loc
        assert named in problem["msg"]
    else:
        # The JSON parser itself refuses a lone surrogate escape.
        assert problem["loc"] == ["body"]
    assert web.provider.requests == []
    assert await web.holds(user) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sessions/a%00b"),
        ("DELETE", "/sessions/a%00b"),
        ("POST", "/sessions/a%00b/share"),
        ("GET", "/shared/a%00b"),
        ("POST", "/shared/a%00b/fork"),
        ("GET", "/sessions?cursor=a%00b"),
        ("GET", "/credits/history?cursor=a%00b"),
        # A surrogate encoded as UTF-8 would be: not valid UTF-8.
        ("GET", "/sessions/a%ED%A0%80b"),
        ("POST", "/sessions/a%ED%A0%80b/share"),
        ("GET", "/shared/a%ED%A0%80b"),
        ("GET", "/sessions?cursor=a%ED%A0%80b"),
    ],
)
async def test_nul_characters_in_paths_and_queries_are_refused(
    web: Web, user: str, method: str, path: str
) -> None:
    response = await web.client.request(method, path, headers=as_user(user))
    assert response.status_code in (400, 404, 422)
    assert response.json()["error"] in ("invalid_request", "not_found")


async def test_a_float_temperature_may_be_written_as_an_integer(web: Web, user: str) -> None:
    await web.fund(user, 100)
    response = await web.client.post("/run", json=run_body(temperature=1), headers=as_user(user))
    assert response.status_code == 200
    assert web.provider.requests[0].temperature == 1.0


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/credits/history?limit=0", "greater_than_equal"),
        ("/credits/history?limit=-5", "greater_than_equal"),
        ("/credits/history?limit=201", "less_than_equal"),
        ("/credits/history?limit=ten", "int_parsing"),
        ("/credits/history?limit=1&limit=2", "duplicate"),
        ("/credits/history?type=bogus", "literal_error"),
        ("/credits/history?colour=red", "extra_forbidden"),
        ("/credits/history?cursor=", "string_too_short"),
        ("/credits/history.csv?limit=5", "extra_forbidden"),
        ("/sessions?limit=0", "greater_than_equal"),
        ("/sessions?limit=101", "less_than_equal"),
        ("/credits?page=2", "extra"),
    ],
)
async def test_bad_queries_are_422(web: Web, user: str, path: str, kind: str) -> None:
    response = await web.client.get(path, headers=as_user(user))
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == kind
    assert response.json()["errors"][0]["loc"][0] == "query"


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", ["/credits/history", "/sessions"])
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "AAAA",
        "eyJ4IjoxfQ",
        # Well-formed for one endpoint or the other, but out of what the database stores.
        _b64(f"seq:{2**63}"),
        _b64("seq:99999999999999999999"),
        _b64('["9999-12-31T23:59:59-14:00","ses_x"]'),
        _b64('["0001-01-01T00:00:00+14:00","ses_x"]'),
    ],
)
async def test_bad_cursors_are_400(web: Web, user: str, path: str, cursor: str) -> None:
    response = await web.client.get(path, params={"cursor": cursor}, headers=as_user(user))
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "message": "invalid cursor"}


@pytest.mark.parametrize(
    "cursor", [_b64(f"seq:{2**63 - 1}"), _b64('["0001-01-01T00:00:00+00:00","ses_x"]')]
)
async def test_cursors_at_the_edges_of_what_is_stored_answer(
    web: Web, user: str, cursor: str
) -> None:
    path = (
        "/credits/history"
        if "seq" in base64.urlsafe_b64decode(cursor + "==").decode()
        else "/sessions"
    )
    response = await web.client.get(path, params={"cursor": cursor}, headers=as_user(user))
    assert response.status_code == 200


@pytest.mark.parametrize("length", [198, 199, 200])
async def test_compare_ids_leave_room_for_the_variant_suffix(
    web: Web, user: str, length: int
) -> None:
    await web.fund(user, 100_000)
    body = {
        "input": "hi",
        "compare_id": "c" * length,
        "max_tokens": 100,
        "variants": [{"package_id": "reviewer"}, {"package_id": "other"}],
    }
    response = await web.client.post("/compare", json=body, headers=as_user(user))
    if length <= 198:
        assert response.status_code == 200
        assert response.json()["outcomes"][1]["result"]["run_id"] == "c" * length + ":1"
    else:
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "compare_id"]
        assert await web.holds(user) == []


async def test_feedback_bodies_are_validated(web: Web, user: str) -> None:
    response = await web.client.post(
        "/sessions/ses_x/feedback",
        json={"exchange_index": -1, "helpful": "yes", "comment": "x" * 1001},
        headers=as_user(user),
    )
    assert response.status_code == 422
    assert {tuple(e["loc"]) for e in response.json()["errors"]} == {
        ("body", "exchange_index"),
        ("body", "helpful"),
        ("body", "comment"),
    }


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidRequest("x"), 400),
        (RequestInvalid([{"loc": ["body"], "msg": "x", "type": "t"}]), 422),
        (NotFound("x"), 404),
        (IdempotencyConflict("x", idempotency_key="k"), 409),
        (RunInProgress("r"), 409),
        (PayloadTooLarge(1), 413),
        (RateLimited("x"), 429),
        (ModelUnavailable("x"), 502),
        (ModelOverloaded("x"), 503),
        (ProviderMisconfigured("x"), 502),
        (PackageSourceUnavailable("x"), 503),
        (SchemaMismatch("x"), 503),
        (LedgerInvariantError("u", ["p"]), 500),
        (KeyError("x"), 500),
    ],
)
def test_one_status_per_error(error: Exception, status: int) -> None:
    assert status_for(error) == status


async def test_a_client_gone_while_sending_its_body_runs_nothing(web: Web, user: str) -> None:
    await web.fund(user, 100)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/run",
        "raw_path": b"/run",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"x-user", user.encode()), (b"content-type", b"application/json")],
    }
    await web.app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert web.provider.requests == []
    assert await web.holds(user) == []
