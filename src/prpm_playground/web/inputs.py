"""Reading requests: the body within its size limit, JSON bodies and queries into models.

Bodies are validated strictly (a JSON string is not a number, unknown fields
are refused); queries, whose values are all strings, are converted, and
refused when they name unknown parameters. Nothing is silently dropped.
"""

from __future__ import annotations

import types
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams
from starlette.requests import Request

from .errors import PayloadTooLarge, RequestInvalid, UnsupportedMediaType

__all__ = ["DEFAULT_MAX_BODY_BYTES", "parse_body", "parse_query", "read_body"]

DEFAULT_MAX_BODY_BYTES = 256 * 1024
"""Largest request body accepted, in bytes."""

_M = TypeVar("_M", bound=BaseModel)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Read the body, refusing it as soon as it passes ``max_bytes``.

    A ``Content-Length`` over the limit is refused before reading; one under
    it is not trusted, the count is kept while reading.

    Raises:
        PayloadTooLarge: The body is over the limit.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(model: type[_M], request: Request, max_bytes: int) -> _M:
    """Read and validate a JSON body.

    Raises:
        UnsupportedMediaType: The body is not declared as JSON.
        PayloadTooLarge: The body is over ``max_bytes``.
        RequestInvalid: Malformed JSON, or JSON that does not match ``model``.
    """
    if not _is_json(request.headers.get("content-type", "")):
        # Also what keeps a cross-site HTML form from posting here unnoticed:
        # a JSON content type needs a CORS preflight.
        raise UnsupportedMediaType("the request body must be JSON (Content-Type: application/json)")
    raw = await read_body(request, max_bytes)
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise RequestInvalid(_errors(exc, "body")) from None


def parse_query(model: type[_M] | None, params: QueryParams) -> _M | None:
    """Validate the query string against ``model`` (None: no parameters allowed).

    A list parameter may be repeated (``?type=a&type=b``) or comma-separated
    (``?type=a,b``); any other parameter may be given once.

    Raises:
        RequestInvalid: Unknown, repeated or invalid parameters.
    """
    if model is None:
        if params:
            raise RequestInvalid(
                [
                    {"loc": ["query", name], "msg": "unknown query parameter", "type": "extra"}
                    for name in dict.fromkeys(params.keys())
                ]
            )
        return None
    data: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    for name in dict.fromkeys(params.keys()):
        values = params.getlist(name)
        field = model.model_fields.get(name)
        if field is not None and _is_list(field.annotation):
            data[name] = [part for value in values for part in value.split(",") if part]
        elif len(values) > 1:
            problems.append(
                {"loc": ["query", name], "msg": "given more than once", "type": "duplicate"}
            )
        else:
            data[name] = values[0]
    if problems:
        raise RequestInvalid(problems)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalid(_errors(exc, "query")) from None


def _errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    # No "input": echoing what was sent could repeat a secret or megabytes of it.
    return [
        {"loc": [where, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _is_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_list(arg) for arg in get_args(annotation))
    return origin in (list, tuple)
