"""The one mapping from errors to HTTP: status, JSON body and headers.

Every error answer is ``{"error": code, "message": text, …details}``:

- 400 ``invalid_request``: a well-formed request the services refused
  (unknown model, input over the limit, bad cursor, …).
- 401 ``unauthorized``: ``authenticate`` returned None or ``""``.
- 402 ``insufficient_credits``: with ``required``, ``available`` and
  ``purchase_url`` (null when none is configured).
- 404 ``not_found``: unknown objects and other users' objects alike.
- 405 ``method_not_allowed``: with an ``Allow`` header.
- 409 ``conflict``, ``idempotency_conflict``, ``run_in_progress``,
  ``run_failed``, ``hold_not_active``: the request contradicts the current
  state (``run_failed``: a retried run id whose run failed; retry with a new
  one).
- 413 ``payload_too_large``: the body is over the limit (``max_bytes``).
- 415 ``unsupported_media_type``: a body not sent as ``application/json``.
- 422 ``invalid_request`` with ``errors`` (``[{"loc", "msg", "type"}]``): the
  body or query does not match its schema (malformed JSON, unknown or
  missing fields, wrong types, out-of-range values).
- 429 ``rate_limited``: with ``Retry-After`` and ``retry_after`` (seconds);
  this API's limits and the model provider's alike.
- 502 ``model_unavailable``, ``provider_misconfigured``: the model provider
  failed or refused our credentials; nothing was charged beyond output produced.
- 503 ``model_overloaded``, ``package_source_unavailable``,
  ``schema_mismatch``: try again later (``schema_mismatch``: an operator
  must migrate). 503 ``storage_unavailable``: the database is locked,
  restarting or unreachable; with ``Retry-After`` and ``retry_after``;
  nothing was written.
- 500 ``internal_error``: anything else; nothing is revealed, the error is logged.

Errors that only an operator can fix (``provider_misconfigured``,
``package_source_unavailable``, ``schema_mismatch``) are logged with their
detail and answered with a fixed message, so no configuration leaks to users.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from ..errors import (
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    ModelOverloaded,
    ModelUnavailable,
    NotFound,
    PackageSourceUnavailable,
    PlaygroundError,
    ProviderMisconfigured,
    RateLimited,
    SchemaMismatch,
    StorageUnavailable,
)
from ..models import RunError

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "ErrorBody",
    "FieldError",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "RequestInvalid",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_body",
    "error_event",
    "error_response",
    "public_event",
    "retry_after_seconds",
    "status_for",
]

logger = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 5
"""``Retry-After`` seconds when a rate limit gave no hint of its own."""


class Unauthorized(PlaygroundError):
    """The host's ``authenticate`` recognised no user."""

    code: ClassVar[str] = "unauthorized"


class PayloadTooLarge(PlaygroundError):
    """The request body is larger than the app accepts.

    Attributes:
        max_bytes: The limit, in bytes.
    """

    code: ClassVar[str] = "payload_too_large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the request body is over the limit of {max_bytes:,} bytes")
        self.max_bytes = max_bytes

    def details(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes}


class UnsupportedMediaType(PlaygroundError):
    """A request body that is not JSON."""

    code: ClassVar[str] = "unsupported_media_type"


class MethodNotAllowed(PlaygroundError):
    """The path exists, but not with this method.

    Attributes:
        allow: The methods the path takes (the ``Allow`` header).
    """

    code: ClassVar[str] = "method_not_allowed"

    def __init__(self, allow: str) -> None:
        super().__init__("method not allowed")
        self.allow = allow


class RequestInvalid(InvalidRequest):
    """The body or query does not match its schema; ``errors`` says where.

    Attributes:
        errors: One ``{"loc": [...], "msg": ..., "type": ...}`` per problem.
    """

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        super().__init__(f"{where}: {first['msg']}" if where else str(first["msg"]))
        self.errors = errors

    def details(self) -> dict[str, Any]:
        return {"errors": self.errors}


class FieldError(BaseModel):
    """Where a request broke its schema.

    Attributes:
        loc: The path to the offending value, e.g. ``["body", "max_tokens"]``.
        msg: What is wrong.
        type: A machine-readable kind (pydantic's error type).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every error answer. Fields beyond ``error`` and ``message``
    appear with the errors that carry them.

    Attributes:
        error: A stable, machine-readable code.
        message: A human-readable explanation.
        required: ``insufficient_credits``: credits the request needed.
        available: ``insufficient_credits``: credits the user had.
        purchase_url: ``insufficient_credits``: where to buy credits, or null.
        retry_after: ``rate_limited``: seconds to wait.
        errors: Validation errors (422), one per problem.
        max_bytes: ``payload_too_large``: the limit.
        idempotency_key: ``idempotency_conflict``: the reused key.
        run_id: ``run_in_progress``: the run still going.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    error: str
    message: str
    required: int | None = None
    available: int | None = None
    purchase_url: str | None = None
    retry_after: float | None = None
    errors: list[FieldError] | None = None
    max_bytes: int | None = None
    idempotency_key: str | None = None
    run_id: str | None = None


# Most specific first: the first class in an error's MRO found here decides.
_STATUS: Mapping[type[PlaygroundError], int] = {
    RequestInvalid: 422,
    InvalidRequest: 400,
    Unauthorized: 401,
    InsufficientCredits: 402,
    NotFound: 404,
    MethodNotAllowed: 405,
    Conflict: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    RateLimited: 429,
    ModelOverloaded: 503,
    ModelUnavailable: 502,
    ProviderMisconfigured: 502,
    PackageSourceUnavailable: 503,
    SchemaMismatch: 503,
    StorageUnavailable: 503,
}

_OPERATOR_MESSAGES: Mapping[str, str] = {
    ProviderMisconfigured.code: "the model provider is not configured correctly; "
    "the operator has to fix it",
    PackageSourceUnavailable.code: "the package source is unavailable; try again later",
    SchemaMismatch.code: "the playground's database is not ready; the operator has to migrate it",
}

_INTERNAL = {"error": "internal_error", "message": "internal error"}


def status_for(exc: BaseException) -> int:
    """The HTTP status of an error: 500 for anything not in the table."""
    if isinstance(exc, PlaygroundError):
        for cls in type(exc).__mro__:
            status = _STATUS.get(cls)
            if status is not None:
                return status
    return 500


def error_body(exc: BaseException, *, purchase_url: str | None = None) -> dict[str, Any]:
    """The JSON body answering ``exc``; logs what must not be shown."""
    if status_for(exc) == 500:
        logger.error("internal error answering a playground request", exc_info=exc)
        return dict(_INTERNAL)
    assert isinstance(exc, PlaygroundError)
    hidden = _OPERATOR_MESSAGES.get(exc.code)
    if hidden is not None:
        logger.error("%s: %s", exc.code, exc.message)
        return {"error": exc.code, "message": hidden}
    body = exc.to_dict()
    if isinstance(exc, InsufficientCredits):
        body["purchase_url"] = purchase_url
    return body


def error_event(exc: BaseException, *, purchase_url: str | None = None) -> RunError:
    """The ``error`` event of a stream that ``exc`` ended, shaped like ``error_body``."""
    body = error_body(exc, purchase_url=purchase_url)
    code, message = body.pop("error"), body.pop("message")
    return RunError(error=code, message=message, details=body)


E = TypeVar("E", bound=RunError)


def public_event(event: E, *, purchase_url: str | None = None) -> E:
    """A runner's ``error`` event, with the same redaction and extras as ``error_body``.

    The event keeps its class (a comparison's error keeps its ``variant``).
    """
    hidden = _OPERATOR_MESSAGES.get(event.error)
    if hidden is not None:
        logger.error("%s: %s", event.error, event.message)
        return event.model_copy(update={"message": hidden, "details": {}})
    if event.error == InsufficientCredits.code:
        return event.model_copy(update={"details": {**event.details, "purchase_url": purchase_url}})
    return event


def retry_after_seconds(exc: RateLimited | StorageUnavailable) -> int:
    """Whole seconds for ``Retry-After``: rounded up, at least 1."""
    if exc.retry_after is None:
        return DEFAULT_RETRY_AFTER
    return max(1, math.ceil(exc.retry_after))


def error_response(
    exc: BaseException,
    *,
    purchase_url: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON error response for ``exc``, with ``Retry-After`` or ``Allow`` where due."""
    status = status_for(exc)
    body = error_body(exc, purchase_url=purchase_url)
    extra = {"Cache-Control": "no-store", **(headers or {})}
    if isinstance(exc, RateLimited | StorageUnavailable):
        seconds = retry_after_seconds(exc)
        extra["Retry-After"] = str(seconds)
        body["retry_after"] = seconds
    if isinstance(exc, MethodNotAllowed):
        extra["Allow"] = exc.allow
    return Response(
        ErrorBody.model_validate(body).model_dump_json(exclude_unset=True),
        status_code=status,
        media_type="application/json",
        headers=extra,
    )
