"""A Litestar host app with the playground mounted by a plugin.

    pip install -c requirements/constraints.txt -e ".[litestar,demo]"
    python examples/litestar_app.py           # http://127.0.0.1:8000/
    curl -H 'X-User: alice' http://127.0.0.1:8000/api/v1/playground/credits

The playground runs on SQLite with the offline provider (no API key, no
model) and the packages in examples/packages/.

DEMO ONLY: `demo_user` believes the X-User header, so any client can be
anyone. With Litestar's authentication middleware, return the id of
`request.scope["user"]` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, get
from starlette.requests import Request

import prpm_playground as pp
from prpm_playground.contrib.litestar import PlaygroundPlugin

PACKAGES = Path(__file__).parent / "packages"


def demo_user(request: Request) -> str | None:
    """DEMO ONLY: trusts a header any client can set."""
    return request.headers.get("x-user")


@get("/")
async def index() -> dict[str, str]:
    return {"app": "litestar host", "playground": "/api/v1/playground/"}


def create_app(playground: pp.Playground | None = None) -> Litestar:
    playground = playground or pp.Playground(
        os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./playground-example.db"),
        provider=pp.OfflineProvider(),
        packages=pp.LocalPackages(PACKAGES),
    )
    return Litestar(
        route_handlers=[index],
        plugins=[PlaygroundPlugin(playground, authenticate=demo_user, path="/api/v1/playground")],
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
