"""The OpenAPI document: generated from the route table, and every real answer of
every route validates against it (JSON bodies, event data, error bodies)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from prpm_playground.web import ROUTES, openapi_schema

from .conftest import Web, as_user, run_body, sse_events, validate


def test_the_document_lists_every_route() -> None:
    document = openapi_schema()
    Draft202012Validator.check_schema({"$defs": document["components"]["schemas"]})
    assert document["openapi"] == "3.1.0"
    assert "servers" not in document
    listed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert listed == {(route.method, route.path) for route in ROUTES}
    names = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(names) == len(set(names)) == len(ROUTES)
    schemas = document["components"]["schemas"]
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        answers = operation["responses"]
        assert str(route.status) in answers
        assert "500" in answers
        assert ("401" in answers) == route.auth == operation["x-requires-user"]
        if route.response is not None:
            ref = answers[str(route.status)]["content"]["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{route.response.__name__}"
            assert ref.rsplit("/", 1)[1] in schemas
        if route.body is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["$ref"].endswith(route.body.__name__)
            assert "422" in answers
        if route.events is not None:
            assert "text/event-stream" in answers[str(route.status)]["content"]
        for status, answer in answers.items():
            if status.startswith(("4", "5")):
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert "Retry-After" in document["paths"]["/run"]["post"]["responses"]["429"]["headers"]
    history = document["paths"]["/credits/history"]["get"]["parameters"]
    assert {p["name"] for p in history} == {"type", "limit", "cursor"}
    limit = next(p for p in history if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 200)


def test_snake_case_fields_as_the_handlers_send_them() -> None:
    schemas = openapi_schema()["components"]["schemas"]
    assert set(schemas["Estimate"]["properties"]) == {
        "credits",
        "max_credits",
        "input_tokens",
        "input_tokens_exact",
        "max_output_tokens",
        "expected_output_tokens",
        "model",
        "can_afford",
        "available",
    }
    assert schemas["RunBody"]["additionalProperties"] is False


class Checker:
    """Validates answers against the document, remembering which routes it saw."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: set[tuple[str, str, int]] = set()

    def check(self, method: str, path: str, response: httpx.Response) -> None:
        operation = self.document["paths"][path][method.lower()]
        answer = operation["responses"][str(response.status_code)]
        self.seen.add((method, path, response.status_code))
        if response.status_code == 204:
            assert response.content == b""
            return
        media = response.headers["content-type"].split(";")[0]
        schema = answer["content"][media]["schema"]
        if media == "application/json":
            validate(self.document, schema, response.json())
        elif media == "text/event-stream":
            payload = schema["properties"]["data"]["contentSchema"]
            for event, data in sse_events(response.text):
                validate(self.document, schema, {"event": event, "data": json.dumps(data)})
                validate(self.document, payload, data)
        else:
            assert isinstance(response.text, str)


async def test_every_answer_matches_the_document(web: Web, user: str) -> None:
    document = (await web.client.get("/openapi.json")).json()
    assert document["servers"] == [{"url": "/"}]
    checker = Checker(document)
    me = as_user(user)
    stream = {**me, "Accept": "text/event-stream"}

    async def call(method: str, template: str, path: str | None = None, **kwargs: Any) -> Any:
        response = await web.client.request(method, path or template, **kwargs)
        checker.check(method, template, response)
        return response

    await call("POST", "/run", json=run_body(), headers=me)  # 402 first
    await web.fund(user, 500)
    await call("GET", "/credits", headers=me)
    await call("GET", "/models")
    await call("POST", "/estimate", json=run_body(), headers=me)
    result = (await call("POST", "/run", json=run_body(), headers=me)).json()
    await call("POST", "/run", json=run_body(), headers=stream)
    compare = {"input": "hi", "max_tokens": 1000, "variants": [{"package_id": "reviewer"}] * 2}
    await call("POST", "/compare", json=compare, headers=me)
    await call("POST", "/compare", json=compare, headers=stream)
    await call("GET", "/credits/history", params={"limit": 2}, headers=me)
    await call("GET", "/credits/history.csv", headers=me)
    await call("GET", "/sessions", headers=me)
    session = f"/sessions/{result['session_id']}"
    await call("GET", "/sessions/{session_id}", session, headers=me)
    await call(
        "POST",
        "/sessions/{session_id}/feedback",
        f"{session}/feedback",
        json={"exchange_index": 0, "helpful": True},
        headers=me,
    )
    link = (
        await call("POST", "/sessions/{session_id}/share", f"{session}/share", headers=me)
    ).json()
    await call("GET", "/shared/{token}", f"/shared/{link['token']}")
    await call("POST", "/shared/{token}/fork", f"/shared/{link['token']}/fork", headers=me)
    await call("DELETE", "/sessions/{session_id}/share", f"{session}/share", headers=me)
    await call("DELETE", "/sessions/{session_id}", session, headers=me)
    # Errors, each in the shape the document gives.
    await call("GET", "/sessions/{session_id}", session, headers=me)  # 404
    await call("GET", "/credits")  # 401
    await call("GET", "/sessions", params={"limit": 0}, headers=me)  # 422
    await call("GET", "/credits/history", params={"cursor": "bad"}, headers=me)  # 400
    await call("POST", "/run", content=b"{", headers={**me, "content-type": "application/json"})

    covered = {(method, path) for method, path, status in checker.seen if status < 300}
    assert covered == {(route.method, route.path) for route in ROUTES}
    assert {status for *_, status in checker.seen} >= {200, 201, 204, 400, 401, 402, 404, 422}


def test_the_document_is_plain_json() -> None:
    text = json.dumps(openapi_schema(server_url="/api"))
    assert json.loads(text)["servers"] == [{"url": "/api"}]
