"""A FastAPI host app with the playground's endpoints in its own OpenAPI document.

    pip install -c requirements/constraints.txt -e ".[fastapi,demo]"
    python examples/fastapi_app.py            # http://127.0.0.1:8000/docs
    curl -H 'X-User: alice' http://127.0.0.1:8000/api/v1/playground/credits

The playground runs on SQLite with the offline provider (no API key, no
model) and the packages in examples/packages/.

DEMO ONLY: `current_user` believes the X-User header, so any client can be
anyone. A real host's dependency returns the user its own session or token
proves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header

import prpm_playground as pp
from prpm_playground.contrib.fastapi import create_router

PACKAGES = Path(__file__).parent / "packages"


def current_user(x_user: Annotated[str | None, Header()] = None) -> str | None:
    """DEMO ONLY: trusts a header any client can set."""
    return x_user


def create_app(playground: pp.Playground | None = None) -> FastAPI:
    playground = playground or pp.Playground(
        os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./playground-example.db"),
        provider=pp.OfflineProvider(),
        packages=pp.LocalPackages(PACKAGES),
    )
    app = FastAPI(title="Example host", lifespan=playground.lifespan)

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"app": "fastapi host", "playground": "/api/v1/playground/"}

    app.include_router(
        create_router(playground, current_user=current_user), prefix="/api/v1/playground"
    )
    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)
