"""Django: an ASGI app that serves the playground beside a Django project.

Requests under the prefix go to the playground's web app, which sees paths
relative to the prefix (``root_path`` carries the prefix); everything else
goes to Django unchanged. Django's ASGI handler refuses lifespan events, so
they go to the playground's app instead, which starts the playground with the
server and closes it on shutdown.

Example (``asgi.py``):
    ```python
    from django.core.asgi import get_asgi_application

    django_app = get_asgi_application()  # before importing anything that uses models
    from prpm_playground.contrib.django import PlaygroundDispatcher

    application = PlaygroundDispatcher(
        django_app, playground.asgi_app(authenticate=current_user_id), "/api/v1/playground"
    )
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InvalidRequest
from ._asgi import mount_scope, route_path

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["PlaygroundDispatcher"]


class PlaygroundDispatcher:
    """Sends ``prefix`` and the paths below it to the playground, the rest to Django.

    Lifespan events go to the playground's app: the playground starts with
    the server and closes on shutdown (and, under a server that sends no
    lifespan events, starts on its first request).

    Args:
        django_app: Django's ASGI application (``get_asgi_application()``).
        playground_app: The playground's web app (``playground.asgi_app(...)``).
        prefix: Where the playground lives, e.g. ``/api/v1/playground``.

    Raises:
        InvalidRequest: ``prefix`` does not start with ``/`` or ends with one.
    """

    def __init__(
        self,
        django_app: ASGIApp,
        playground_app: ASGIApp,
        prefix: str = "/api/v1/playground",
    ) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise InvalidRequest("prefix must start with '/' and not end with one")
        self.django_app = django_app
        self.playground_app = playground_app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI connection."""
        if scope["type"] == "lifespan":
            await self.playground_app(scope, receive, send)
            return
        path = route_path(scope)
        if path == self.prefix or path.startswith(self.prefix + "/"):
            await self.playground_app(mount_scope(scope, self.prefix), receive, send)
        else:
            await self.django_app(scope, receive, send)
