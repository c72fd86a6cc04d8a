"""A Starlette host app with the playground mounted under /api/v1/playground.

    pip install -c requirements/constraints.txt -e ".[demo]"
    python examples/starlette_app.py          # http://127.0.0.1:8000/
    curl -H 'X-User: alice' http://127.0.0.1:8000/api/v1/playground/credits

The playground runs on SQLite with the offline provider (no API key, no
model) and the packages in examples/packages/.

DEMO ONLY: `demo_user` believes the X-User header, so any client can be
anyone. A real host returns the user its own session or token proves.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import prpm_playground as pp

PACKAGES = Path(__file__).parent / "packages"


def demo_user(request: Request) -> str | None:
    """DEMO ONLY: trusts a header any client can set."""
    return request.headers.get("x-user")


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"app": "starlette host", "playground": "/api/v1/playground/"})


def create_app(playground: pp.Playground | None = None) -> Starlette:
    playground = playground or pp.Playground(
        os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./playground-example.db"),
        provider=pp.OfflineProvider(),
        packages=pp.LocalPackages(PACKAGES),
    )
    return Starlette(
        routes=[
            Route("/", index),
            Mount("/api/v1/playground", app=playground.asgi_app(authenticate=demo_user)),
        ],
        # Mounted apps get no lifespan events: the host's lifespan starts the playground.
        lifespan=playground.lifespan,
    )


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
