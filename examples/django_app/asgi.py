"""ASGI entry point of the example Django project: Django, with the playground beside it.

    pip install -c requirements/constraints.txt -e ".[django,demo]"
    python examples/django_app/asgi.py        # http://127.0.0.1:8000/
    curl -H 'X-User: alice' http://127.0.0.1:8000/api/v1/playground/credits

or, from examples/: `uvicorn django_app.asgi:application`. Paths under
/api/v1/playground go to the playground (SQLite, the offline provider, the
packages in examples/packages/); everything else goes to Django. Lifespan
events start and stop the playground (Django itself takes none).

DEMO ONLY: `demo_user` believes the X-User header, so any client can be
anyone. A real host resolves its own session cookie or token to a user id
(see docs/guides/authentication.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script: make the project importable as the `django_app` package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_app.settings")

from django.core.asgi import get_asgi_application

# Django sets itself up here, before anything else imports it.
django_app = get_asgi_application()

from starlette.requests import Request  # noqa: E402

import prpm_playground as pp  # noqa: E402
from prpm_playground.contrib.django import PlaygroundDispatcher  # noqa: E402

PACKAGES = Path(__file__).resolve().parents[1] / "packages"


def demo_user(request: Request) -> str | None:
    """DEMO ONLY: trusts a header any client can set."""
    return request.headers.get("x-user")


def create_application(playground: pp.Playground | None = None) -> PlaygroundDispatcher:
    playground = playground or pp.Playground(
        os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./playground-example.db"),
        provider=pp.OfflineProvider(),
        packages=pp.LocalPackages(PACKAGES),
    )
    return PlaygroundDispatcher(
        django_app, playground.asgi_app(authenticate=demo_user), prefix="/api/v1/playground"
    )


application = create_application()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(application, host="127.0.0.1", port=8000)
