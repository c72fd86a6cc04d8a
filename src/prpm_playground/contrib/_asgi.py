"""ASGI plumbing the adapters share."""

from __future__ import annotations

from starlette.types import Scope

__all__ = ["mount_scope", "route_path"]


def route_path(scope: Scope) -> str:
    """The request's path below the app's ``root_path``, as routers match it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def mount_scope(scope: Scope, prefix: str) -> Scope:
    """A copy of ``scope`` for an app mounted at ``prefix`` (relative to ``root_path``).

    ``path`` stays whole and ``root_path`` grows by ``prefix``, as the ASGI
    spec and Starlette's ``Mount`` have it, so the mounted app routes on the
    rest and can still build absolute URLs.
    """
    root: str = scope.get("root_path", "")
    path: str = scope["path"]
    if root and not path.startswith(root):
        # A server that leaves root_path out of path: put it in, or the
        # mounted app would strip the prefix from the wrong place.
        path = root + path
    return {**scope, "root_path": root + prefix, "path": path}
