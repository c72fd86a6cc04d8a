"""FastAPI: the playground's endpoints as an ``APIRouter``, listed in the host's OpenAPI.

Every endpoint of ``ROUTES`` becomes a route of the router, documented with
its response model, request body, query and path parameters and error
answers; the user comes from a FastAPI dependency of the host's. Requests
are served by the playground's own web app, so bodies are read, validated,
limited and answered (errors and event streams included) exactly as the
bare ``playground.asgi_app`` answers them.

Example:
    ```python
    from fastapi import FastAPI
    from prpm_playground.contrib.fastapi import create_router

    app = FastAPI(lifespan=playground.lifespan)
    app.include_router(
        create_router(playground, current_user=current_user_id), prefix="/api/v1/playground"
    )
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..web.errors import ErrorBody
from ..web.inputs import DEFAULT_MAX_BODY_BYTES
from ..web.openapi import REF_TEMPLATE, openapi_schema
from ..web.routes import ROUTES, Endpoint
from ..web.sse import DEFAULT_KEEPALIVE
from ._asgi import mount_scope, route_path

if TYPE_CHECKING:
    from ..playground import Playground

__all__ = ["create_router"]

_USER = "prpm_playground.user"
_REF = REF_TEMPLATE.removesuffix("{model}")


def create_router(
    playground: Playground,
    current_user: Callable[..., Any],
    *,
    tags: Sequence[str] = ("playground",),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    keepalive: float = DEFAULT_KEEPALIVE,
) -> APIRouter:
    """The playground's web API as a FastAPI router; include it under any prefix.

    Args:
        playground: The playground to serve.
        current_user: A FastAPI dependency (it may take its own dependencies,
            e.g. a security scheme, which then appear in the OpenAPI document)
            returning the signed-in user's id, or None for 401. It runs only
            for endpoints that need a user.
        tags: OpenAPI tags of every endpoint.
        max_body_bytes: Largest request body, in bytes (413 above it).
        keepalive: Seconds of silence before an event stream sends a
            keep-alive comment.

    Returns:
        The router: ``app.include_router(router, prefix="/api/v1/playground")``.
    """
    app = playground.asgi_app(
        authenticate=_forwarded_user, max_body_bytes=max_body_bytes, keepalive=keepalive
    )
    document = openapi_schema(ROUTES)
    components: dict[str, Any] = document["components"]["schemas"]
    router = APIRouter(tags=list(tags))
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        success = operation["responses"][str(route.status)]
        responses: dict[int | str, dict[str, Any]] = {
            int(status): {"model": ErrorBody, **{k: v for k, v in answer.items() if k != "content"}}
            for status, answer in operation["responses"].items()
            if status != str(route.status)
        }
        # FastAPI documents the JSON answer from response_model; add the alternatives.
        extra_content = {
            media: _inline(value, components)
            for media, value in success.get("content", {}).items()
            if media != "application/json"
        }
        if extra_content:
            responses[route.status] = {
                "description": success["description"],
                "content": extra_content,
            }
        router.add_api_route(
            route.path,
            _endpoint(app, route, current_user),
            methods=[route.method],
            name=route.name,
            summary=route.summary,
            description=route.description or None,
            status_code=route.status,
            response_model=route.response,
            response_class=Response if route.file_media_type else _JSONDocumented,
            responses=responses,
            openapi_extra=_inline(
                {k: operation[k] for k in ("parameters", "requestBody") if k in operation}
                | {"x-requires-user": route.auth},
                components,
            ),
        )
    return router


class _JSONDocumented(JSONResponse):
    """Tells FastAPI to document ``response_model`` as JSON; answers are the web app's."""


def _forwarded_user(request: Any) -> str | None:
    user: str | None = request.scope.get(_USER)
    return user


def _endpoint(
    app: ASGIApp, route: Endpoint, current_user: Callable[..., Any]
) -> Callable[..., Any]:
    depth = route.path.count("/")
    if not route.auth:

        async def public(request: Request) -> Response:
            return _Forward(app, depth, None)

        return public

    async def private(request: Request, user_id: str | None = Depends(current_user)) -> Response:
        return _Forward(app, depth, user_id)

    return private


class _Forward(Response):
    """Hands the request to the web app, as if it were mounted where the router is."""

    def __init__(self, app: ASGIApp, depth: int, user_id: str | None) -> None:
        self.app = app
        self.depth = depth
        self.user_id = user_id
        self.background: BackgroundTask | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Path parameters never contain "/", so the route's last segments are its own path.
        path = route_path(scope)
        own = "/" + "/".join(path.split("/")[-self.depth :])
        inner = mount_scope(scope, path[: len(path) - len(own)])
        inner[_USER] = self.user_id
        await self.app(inner, receive, send)
        if self.background is not None:
            await self.background()


def _inline(node: Any, components: dict[str, Any], seen: frozenset[str] = frozenset()) -> Any:
    """``node`` with every component reference replaced by the component itself.

    The host's document holds only the components FastAPI generates itself,
    so what the route table adds (bodies, parameters, event streams) must be
    self-contained.
    """
    if isinstance(node, list):
        return [_inline(item, components, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        name = ref.removeprefix(_REF)
        if name in seen:
            raise ValueError(f"cannot inline the recursive schema {name}")
        return _inline(components[name], components, seen | {name}) | _inline(
            {k: v for k, v in node.items() if k != "$ref"}, components, seen
        )
    if isinstance(node.get("discriminator"), dict):
        # Its mapping names components by reference; inlined, the "type"
        # constants of the variants still tell them apart.
        node = {k: v for k, v in node.items() if k != "discriminator"}
    return {key: _inline(value, components, seen) for key, value in node.items()}
