"""Adapters for web frameworks: FastAPI, Litestar and Django.

Each lives in its own module and imports its framework, which is an optional
dependency (``pip install "prpm-playground[fastapi]"``, ``[litestar]``,
``[django]``); importing this package imports none of them.

- ``prpm_playground.contrib.fastapi.create_router``: the endpoints as an
  ``APIRouter``, listed in the host's OpenAPI document.
- ``prpm_playground.contrib.litestar.PlaygroundPlugin``: mounts the web API
  and starts the playground with the app.
- ``prpm_playground.contrib.django.PlaygroundDispatcher``: an ASGI app that
  sends the playground's paths to it and everything else to Django.
"""

__all__: list[str] = []
