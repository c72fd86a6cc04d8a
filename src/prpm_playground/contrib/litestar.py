"""Litestar: a plugin that mounts the playground's web API and starts it with the app.

Example:
    ```python
    from litestar import Litestar
    from prpm_playground.contrib.litestar import PlaygroundPlugin

    app = Litestar(
        route_handlers=[...],
        plugins=[PlaygroundPlugin(playground, authenticate=current_user_id)],
    )
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.handlers import asgi
from litestar.plugins import InitPluginProtocol
from starlette.types import Receive, Scope, Send

from ..errors import InvalidRequest
from ..web.app import Authenticate
from ..web.inputs import DEFAULT_MAX_BODY_BYTES
from ..web.sse import DEFAULT_KEEPALIVE

if TYPE_CHECKING:
    from litestar.config.app import AppConfig

    from ..playground import Playground

__all__ = ["PlaygroundPlugin"]


class PlaygroundPlugin(InitPluginProtocol):
    """Mounts ``playground.asgi_app`` under ``path`` and adds ``playground.lifespan``.

    The playground starts (migrates) with the Litestar app and closes with
    it; started without lifespan events (as in most test clients), it
    starts on its first request instead. The mounted endpoints are served by
    the playground's own app and left out of Litestar's OpenAPI document
    (``openapi_schema()`` describes them).

    Args:
        playground: The playground to serve.
        authenticate: ``authenticate(request) -> user id | None``, sync or async,
            given a ``starlette.requests.Request`` over Litestar's scope: what
            Litestar's authentication middleware stored is in ``request.scope``
            (e.g. ``request.scope["user"]``).
        path: Where to mount the API.
        max_body_bytes: Largest request body, in bytes (413 above it).
        keepalive: Seconds of silence before an event stream sends a
            keep-alive comment.

    Raises:
        InvalidRequest: ``path`` does not start with ``/`` or ends with one.
    """

    __slots__ = ("_app", "_path", "_playground")

    def __init__(
        self,
        playground: Playground,
        *,
        authenticate: Authenticate,
        path: str = "/api/v1/playground",
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        keepalive: float = DEFAULT_KEEPALIVE,
    ) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise InvalidRequest("path must start with '/' and not end with one")
        self._playground = playground
        self._path = path
        self._app = playground.asgi_app(
            authenticate, max_body_bytes=max_body_bytes, keepalive=keepalive
        )

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the mount and the lifespan to the app being built."""
        app, path = self._app, self._path

        async def playground(scope: Scope, receive: Receive, send: Send) -> None:
            # Litestar hands a mount the rest of the path with a "/" added at
            # the end; give the app the path as it was requested.
            rest: str = scope["path"]
            if not scope.get("raw_path", b"").split(b"?", 1)[0].endswith(b"/"):
                rest = rest.removesuffix("/")
            mounted = scope.get("root_path", "") + path
            await app({**scope, "root_path": mounted, "path": mounted + rest}, receive, send)

        handler = asgi(path, is_mount=True, copy_scope=True)(playground)
        app_config.route_handlers.append(handler)
        app_config.lifespan.append(self._playground.lifespan)
        return app_config
