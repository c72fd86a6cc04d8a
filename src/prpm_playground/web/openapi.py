"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Bodies and queries are described as pydantic validates them, answers as it
serialises them, and every error answer by ``ErrorBody``. No server is
needed: ``openapi_schema()`` returns the document as a dict.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from pydantic_core import CoreSchema

from .._version import __version__
from .errors import ErrorBody
from .routes import ROUTES, Endpoint

__all__ = ["REF_TEMPLATE", "openapi_schema"]

REF_TEMPLATE = "#/components/schemas/{model}"
"""Where a model's schema lives in the document; ``{model}`` is its name."""

_PATH_PARAMETER = re.compile(r"{(\w+)}")

_ERROR_DESCRIPTIONS = {
    400: "The request was refused (`invalid_request`).",
    401: "No signed-in user (`unauthorized`).",
    402: "Not enough credits (`insufficient_credits`, with `required`, `available`, "
    "`purchase_url`).",
    404: "Not found, or not the user's (`not_found`).",
    409: "Conflicts with the current state (`conflict`, `idempotency_conflict`, "
    "`run_in_progress`, `run_failed`).",
    413: "The body is too large (`payload_too_large`).",
    415: "The body is not JSON (`unsupported_media_type`).",
    422: "The body or query does not match its schema (`invalid_request`, with `errors`).",
    429: "Too many requests (`rate_limited`); wait `Retry-After` seconds.",
    500: "Internal error (`internal_error`).",
    502: "The model provider failed (`model_unavailable`, `provider_misconfigured`); "
    "nothing was charged beyond output produced.",
    503: "Try again later (`model_overloaded`, `package_source_unavailable`, `schema_mismatch`; "
    "`storage_unavailable` with `Retry-After`: the database is busy or unreachable, "
    "nothing was written).",
}


def openapi_schema(
    routes: Sequence[Endpoint] = ROUTES,
    *,
    server_url: str | None = None,
    title: str = "PRPM+ Playground API",
    version: str | None = None,
) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document of ``routes``.

    Args:
        routes: The endpoints; defaults to the whole API.
        server_url: Where the app is mounted (e.g. ``/api/v1/playground``),
            listed as the document's server; None lists none.
        title: The document's title.
        version: The API's version; defaults to the library's.

    Returns:
        The document, ready for ``json.dumps``.
    """
    if version is None:
        version = __version__
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Run prompt packages against a model and pay in credits. "
            "Authentication is the host application's; errors are "
            '`{"error": code, "message": text, …}`.',
        },
        "paths": paths,
        "components": {"schemas": schemas.definitions()},
    }
    if server_url is not None:
        document["servers"] = [{"url": server_url or "/"}]
    return document


class _Schemas:
    """Collects every type the document refers to, then generates them together."""

    def __init__(self) -> None:
        self._inputs: list[tuple[Hashable, JsonSchemaMode, CoreSchema]] = []
        self._results: dict[tuple[Hashable, JsonSchemaMode], dict[str, Any]] | None = None
        self._defs: dict[str, Any] = {}
        self._placeholders: list[tuple[dict[str, Any], Hashable, JsonSchemaMode]] = []

    def ref(self, kind: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        """A schema for ``kind`` (a model or any type), filled in by ``definitions``."""
        key: Hashable = (id(kind), repr(kind))
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            core = kind.__pydantic_core_schema__
        else:
            core = TypeAdapter(kind).core_schema
        if not any(k == key and m == mode for k, m, _ in self._inputs):
            self._inputs.append((key, mode, core))
        placeholder: dict[str, Any] = {}
        self._placeholders.append((placeholder, key, mode))
        return placeholder

    def definitions(self) -> dict[str, Any]:
        """Generate every schema, fill in the placeholders, return the components."""
        generator = GenerateJsonSchema(ref_template=REF_TEMPLATE)
        results, defs = generator.generate_definitions(self._inputs)
        for placeholder, key, mode in self._placeholders:
            placeholder.update(results[(key, mode)])
        return dict(sorted(defs.items()))


def _operation(route: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.name, "summary": route.summary}
    if route.description:
        operation["description"] = route.description
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }
        for name in _PATH_PARAMETER.findall(route.path)
    ]
    if route.query is not None:
        parameters.extend(_query_parameters(route.query))
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(route.body, "validation")}},
        }
    operation["responses"] = {
        str(route.status): _success(route, schemas),
        **{str(status): _error(status, schemas) for status in _error_statuses(route)},
    }
    # Authentication is the host's, so no security scheme can be named; say
    # at least which operations need a signed-in user.
    operation["x-requires-user"] = route.auth
    return operation


def _success(route: Endpoint, schemas: _Schemas) -> dict[str, Any]:
    if route.file_media_type is not None:
        return {
            "description": "The file.",
            "headers": {
                "Content-Disposition": {
                    "schema": {"type": "string"},
                    "description": "`attachment; filename=…`",
                }
            },
            "content": {route.file_media_type: {"schema": {"type": "string"}}},
        }
    if route.response is None:
        return {"description": "Done; no content."}
    content: dict[str, Any] = {
        "application/json": {"schema": schemas.ref(route.response, "serialization")}
    }
    if route.events is not None:
        # Each message of the stream, as OpenAPI 3.2's itemSchema describes
        # Server-Sent Events: fields as strings, ``data`` holding the JSON.
        content["text/event-stream"] = {
            "schema": {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"type": "string", "description": "The model's `type`."},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": schemas.ref(route.events, "serialization"),
                    },
                },
            },
            "description": "One event per message: `event:` is the model's `type`, "
            "`data:` its JSON. Comments (`: …`) keep the connection alive.",
        }
    return {"description": "Success.", "content": content}


def _error(status: int, schemas: _Schemas) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": _ERROR_DESCRIPTIONS.get(status, "Error."),
        "content": {"application/json": {"schema": schemas.ref(ErrorBody, "serialization")}},
    }
    if status in (429, 503):
        answer["headers"] = {
            "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}
        }
    return answer


def _error_statuses(route: Endpoint) -> list[int]:
    statuses = set(route.errors) | {500}
    if route.storage:
        statuses.add(503)
    if route.auth:
        statuses.add(401)
    if route.body is not None:
        statuses |= {413, 415, 422}
    if route.query is not None:
        statuses.add(422)
    return sorted(statuses)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation", ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        field_schema = {k: v for k, v in field_schema.items() if k != "title"}
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": field_schema,
        }
        if _has_array(field_schema):
            parameter.update(
                style="form",
                explode=True,
                description="Repeat the parameter, or separate values with commas.",
            )
        parameters.append(parameter)
    return parameters


def _has_array(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "array":
        return True
    return any(_has_array(option) for option in schema.get("anyOf", ()))
