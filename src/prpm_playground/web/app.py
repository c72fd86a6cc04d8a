"""The Starlette app built from the route table.

Paths are relative: mount the app anywhere (``Mount("/api/v1/playground",
app=...)``, FastAPI's ``app.mount``) and it routes from there. The app
initialises the playground on its first request (mounted apps get no
lifespan events), once, however many requests arrive together.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._validation import check_text_id
from ..errors import InvalidRequest, NotFound
from .errors import MethodNotAllowed, Unauthorized, error_response
from .inputs import DEFAULT_MAX_BODY_BYTES, parse_body, parse_query
from .openapi import openapi_schema
from .ratelimit import Guard
from .routes import ROUTES, Call, Endpoint, FileStream, Reply
from .sse import DEFAULT_KEEPALIVE, EventStream, EventStreamResponse

if TYPE_CHECKING:
    from ..playground import Playground

__all__ = ["Authenticate", "create_app"]

logger = logging.getLogger(__name__)

Authenticate = Callable[[Request], str | Awaitable[str | None] | None]
"""The host's authentication: the signed-in user's id, or None. Sync or async."""


def create_app(
    playground: Playground,
    *,
    authenticate: Authenticate,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    keepalive: float = DEFAULT_KEEPALIVE,
    routes: Sequence[Endpoint] = ROUTES,
) -> Starlette:
    """Build the web API of ``playground`` (``playground.asgi_app`` calls this).

    Args:
        playground: The services.
        authenticate: Returns the signed-in user's id (1 to 255 characters)
            for a request, or None or ``""`` (answered with 401). It may be
            async. Anything else (another type, an id too long or with a
            NUL) or an exception is a bug in the host: answered with 500 and
            logged with the hook's name.
        max_body_bytes: Largest request body, in bytes (413 above it).
        keepalive: Seconds of silence before an event stream sends a
            keep-alive comment.
        routes: The endpoints; defaults to the whole API.

    Raises:
        InvalidRequest: A bad argument.
    """
    if not callable(authenticate):
        raise InvalidRequest("authenticate must be a callable: request -> user id or None")
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or max_body_bytes < 1
    ):
        raise InvalidRequest("max_body_bytes must be a positive int")
    if not keepalive > 0:
        raise InvalidRequest("keepalive must be a positive number of seconds")
    web = _Web(playground, authenticate, max_body_bytes, keepalive)
    table = [
        Route(route.path, web.endpoint(route), methods=[route.method], name=route.name)
        for route in routes
    ]
    documents: dict[str, dict[str, Any]] = {}

    async def openapi(request: Request) -> Response:
        root = str(request.scope.get("root_path", ""))
        if root not in documents:
            documents[root] = openapi_schema(routes, server_url=root or "/")
        return JSONResponse(documents[root])

    table.append(Route("/openapi.json", openapi, methods=["GET"], name="openapi"))
    return Starlette(
        routes=table,
        exception_handlers={HTTPException: _http_error},
        lifespan=playground.lifespan,
    )


class _Web:
    """What every endpoint of one app shares."""

    def __init__(
        self,
        playground: Playground,
        authenticate: Authenticate,
        max_body_bytes: int,
        keepalive: float,
    ) -> None:
        self.playground = playground
        self.authenticate = authenticate
        self.max_body_bytes = max_body_bytes
        self.keepalive = keepalive
        self.guard = Guard(playground.storage, playground.rate_limits, playground.clock)

    def endpoint(self, route: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        """The Starlette endpoint serving ``route``."""
        headers = dict(route.headers or {})

        async def endpoint(request: Request) -> Response:
            purchase_url = self.playground.purchase_url
            try:
                user_id = await self.user_of(request) if route.auth else None
                query = parse_query(route.query, request.query_params)
                body = (
                    await parse_body(route.body, request, self.max_body_bytes)
                    if route.body is not None
                    else None
                )
                await self.playground.startup()
                call = Call(
                    playground=self.playground,
                    guard=self.guard,
                    user_id=user_id,
                    path=dict(request.path_params),
                    query=query,
                    body=body,
                    wants_stream="text/event-stream" in request.headers.get("accept", ""),
                    purchase_url=purchase_url,
                )
                reply = await route.handler(call)
                return self.render(route, reply, headers)
            except ClientDisconnect:
                # The client left while sending its body: nobody is there to answer.
                return Response(status_code=400)
            except Exception as exc:
                return error_response(exc, purchase_url=purchase_url, headers=headers)

        return endpoint

    async def user_of(self, request: Request) -> str:
        """The signed-in user, from the host's ``authenticate``.

        None or ``""`` is nobody (401). Anything else that is not a valid
        user id, or an exception, is the host's bug, not the user's (no 4xx
        would let them fix it): a 500 whose log names the hook.
        """
        try:
            result = self.authenticate(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise RuntimeError(
                f"the authenticate hook {_name_of(self.authenticate)} raised {type(exc).__name__}"
            ) from exc
        if result is None or result == "":
            raise Unauthorized("sign in to use the playground")
        try:
            return check_text_id(result, "user id")
        except InvalidRequest as exc:
            raise RuntimeError(
                f"the authenticate hook {_name_of(self.authenticate)} returned "
                f"{type(result).__name__}, not a user id: {exc.message}"
            ) from None

    def render(self, route: Endpoint, reply: Reply, headers: Mapping[str, str]) -> Response:
        """The response for a handler's reply, checked against the route's declaration."""
        if isinstance(reply, EventStream) and route.events is not None:
            return EventStreamResponse(reply, keepalive=self.keepalive, headers=headers)
        if isinstance(reply, FileStream) and route.file_media_type is not None:
            return StreamingResponse(
                _file(reply),
                media_type=reply.media_type,
                headers={
                    **headers,
                    "Cache-Control": "no-store",
                    "Content-Disposition": f'attachment; filename="{reply.filename}"',
                },
            )
        if reply is None and route.response is None and route.file_media_type is None:
            return Response(status_code=route.status, headers=headers)
        if route.response is not None and type(reply) is route.response:
            return Response(
                route.response.model_validate(reply).model_dump_json(),
                status_code=route.status,
                media_type="application/json",
                headers={"Cache-Control": "no-store", **headers},
            )
        raise TypeError(f"{route.name} returned {type(reply).__name__}, not what it declares")


async def _file(reply: FileStream) -> AsyncIterator[str]:
    yield reply.first
    try:
        async for piece in reply.rest:
            yield piece
    finally:
        close = getattr(reply.rest, "aclose", None)
        if close is not None:
            await close()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return error_response(MethodNotAllowed(allow))
    if exc.status_code == 404:
        return error_response(NotFound("no such endpoint"))
    return Response(
        JSONResponse({"error": "http_error", "message": exc.detail}).body,
        status_code=exc.status_code,
        media_type="application/json",
        headers=exc.headers,
    )


def _name_of(hook: object) -> str:
    """``module.qualname`` of a function, or the repr of another callable."""
    name = getattr(hook, "__qualname__", None)
    module = getattr(hook, "__module__", None)
    if isinstance(name, str):
        return f"{module}.{name}" if isinstance(module, str) else name
    return repr(hook)[:200]
