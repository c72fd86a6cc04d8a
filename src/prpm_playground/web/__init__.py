"""The web API: a Starlette app (a plain ASGI callable) over the playground's services.

Build it with ``playground.asgi_app(authenticate=...)`` and mount it anywhere.
``ROUTES`` declares every endpoint once; the app and ``openapi_schema()`` are
both generated from it.
"""

from .app import Authenticate, create_app
from .errors import ErrorBody, FieldError
from .openapi import openapi_schema
from .routes import ROUTES, Call, Endpoint, FileStream
from .schemas import CompareBody, HistoryExportQuery, RunBody
from .sse import EventStream, EventStreamResponse, ServerSentEvent

__all__ = [
    "ROUTES",
    "Authenticate",
    "Call",
    "CompareBody",
    "Endpoint",
    "ErrorBody",
    "EventStream",
    "EventStreamResponse",
    "FieldError",
    "FileStream",
    "HistoryExportQuery",
    "RunBody",
    "ServerSentEvent",
    "create_app",
    "openapi_schema",
]
