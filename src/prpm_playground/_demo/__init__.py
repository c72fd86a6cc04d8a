"""The demo host behind ``prpm-playground demo``: a Starlette app with the playground mounted.

Demo only. Its authenticator believes whatever user the client names (an
``X-User`` header or a ``?user=`` parameter, else ``demo-user``): fine on your
own machine, never in production, where ``authenticate`` must read the
host's own signed-in session.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..playground import Playground
from ..providers import AnthropicProvider, OfflineProvider
from ..providers.base import Provider
from ..sources import LocalPackages

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_USER",
    "MOUNT",
    "PACKAGES",
    "build_demo",
    "demo_provider",
    "demo_user",
    "package_ids",
    "try_lines",
]


def _packages() -> Path:
    # A wheel carries the repository's examples/packages here (see
    # pyproject.toml); a checkout installed in place reads them where they are.
    bundled = Path(__file__).parent / "packages"
    if bundled.is_dir():
        return bundled
    return Path(__file__).resolve().parents[3] / "examples" / "packages"


PACKAGES = _packages()
"""The example packages: the repository's ``examples/packages``, shipped in the wheel."""

_PAGE = Path(__file__).parent / "index.html"

MOUNT = "/api/v1/playground"
DEFAULT_USER = "demo-user"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./playground-demo.db"

_QUERY_USER = "prpm_demo.user"
_TEXT_SUFFIXES = (".md", ".mdc", ".txt")


def demo_user(request: Request) -> str:
    """DEMO ONLY: the user the client claims to be (``X-User``, ``?user=``), else ``demo-user``.

    Any client can claim to be anyone here. A real host returns the id of the
    user its own session or token proves, and None when there is none.
    """
    claimed = request.headers.get("x-user") or request.scope.get(_QUERY_USER)
    return str(claimed) if claimed else DEFAULT_USER


def demo_provider() -> Provider:
    """Claude when ``ANTHROPIC_API_KEY`` is set, else the offline stand-in (no model, no key)."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        return AnthropicProvider()
    return OfflineProvider()


def package_ids(directory: Path) -> list[str]:
    """The ids of the packages in ``directory``, as ``LocalPackages`` finds them."""
    ids: set[str] = set()
    for entry in directory.iterdir():
        if entry.name.startswith("@") and entry.is_dir():
            ids.update(f"{entry.name}/{child.name}" for child in entry.iterdir() if child.is_dir())
        elif entry.is_dir():
            ids.add(entry.name)
        elif entry.suffix in _TEXT_SUFFIXES:
            ids.add(entry.stem)
    return sorted(ids)


def build_demo(
    database_url: str = DEFAULT_DATABASE_URL,
    *,
    provider: Provider | None = None,
    packages: Path = PACKAGES,
) -> tuple[ASGIApp, Playground]:
    """The demo host app and its playground.

    Args:
        database_url: Where the demo keeps its data.
        provider: The model provider; defaults to ``demo_provider()``.
        packages: The folder of packages to offer.

    Returns:
        The ASGI app (landing page at ``/``, the API under ``MOUNT``) and the playground.
    """
    provider = provider or demo_provider()
    playground = Playground(
        database_url,
        provider=provider,
        packages=LocalPackages(packages),
        # Nothing is sold here yet: a 402 answer carries no purchase link
        # rather than one to a page that sells nothing.
        purchase_url=None,
    )
    ids = package_ids(packages)

    async def index(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return HTMLResponse(_page(base, ids, type(provider).__name__))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with playground.lifespan(app):
            yield
        close = getattr(provider, "aclose", None)
        if close is not None:
            await close()

    app = Starlette(
        routes=[
            Route("/", index),
            # Browsers ask for one; answer without a 404 in their console.
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Mount(MOUNT, app=playground.asgi_app(authenticate=demo_user)),
        ],
        lifespan=lifespan,
    )
    return _UserFromQuery(app), playground


class _UserFromQuery:
    """Moves ``?user=`` out of the query (the API refuses unknown parameters) into the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"user=" in scope.get("query_string", b""):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            users = [value for name, value in pairs if name == "user"]
            if users:
                rest = urlencode([(name, value) for name, value in pairs if name != "user"])
                scope = {**scope, "query_string": rest.encode("latin-1"), _QUERY_USER: users[-1]}
        await self.app(scope, receive, send)


def try_lines(base_url: str, package_id: str = "code-review") -> list[str]:
    """curl commands that try the demo's API at ``base_url``."""
    api = f"{base_url}{MOUNT}"
    user = "-H 'X-User: alice'"
    run = json.dumps({"package_id": package_id, "input": "def add(a, b): return a - b"})
    return [
        f"curl -s {user} {api}/credits",
        f"curl -s {user} -H 'Content-Type: application/json' "
        f"-d '{json.dumps({'package_id': package_id, 'input': 'Review this'})}' {api}/estimate",
        f"curl -N {user} -H 'Content-Type: application/json' "
        f"-H 'Accept: text/event-stream' -d '{run}' {api}/run",
        f"curl -s {user} {api}/sessions",
        f"curl -s {api}/openapi.json",
    ]


def _page(base_url: str, ids: list[str], provider: str) -> str:
    values = {
        # The input the page starts with is code, so the code reviewer is picked.
        "options": "".join(
            f"<option{' selected' if pid == 'code-review' else ''}>{html.escape(pid)}</option>"
            for pid in ids
        ),
        "curls": html.escape("\n".join(try_lines(base_url))),
        "provider": html.escape(provider),
        "api": MOUNT,
    }
    page = _PAGE.read_text(encoding="utf-8")
    for name, value in values.items():
        page = page.replace("{{" + name + "}}", value)
    return page
