"""Which database failures pass, and how they reach callers: ``StorageUnavailable``.

A SQLite file locked by another process past the busy timeout, a PostgreSQL
connection killed by a restart or failover, a server refusing connections:
the transaction was rolled back and trying again later can succeed. Those
become ``StorageUnavailable`` (a 503 over HTTP) in the few places where the
adapter opens transactions; any other error passes unchanged, as it is a bug
or a refusal that retrying would not change.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import NoReturn

from sqlalchemy import exc as sa_exc

from ...errors import StorageUnavailable

__all__ = ["raise_if_transient", "transient_reason"]

logger = logging.getLogger(__name__)

# sqlite3's primary result codes (the extended ones keep them in the low byte).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6

# SQLSTATE classes and codes of failures that pass: connection exceptions,
# operator intervention (shutdown, crash recovery, starting up), insufficient
# resources (too many connections), and the conflicts PostgreSQL asks clients
# to retry (serialization failure, deadlock, lock not available).
_TRANSIENT_CLASSES = ("08", "57P", "53")
_TRANSIENT_CODES = frozenset({"40001", "40P01", "55P03"})

# asyncpg's errors for a connection that is closed or left unusable; they
# carry no SQLSTATE. Matched by name so SQLite-only installs need no asyncpg.
_ASYNCPG_CONNECTION_ERRORS = frozenset({"InterfaceError", "InternalClientError"})


def transient_reason(exc: BaseException) -> str | None:
    """A short reason if ``exc`` (or what it wraps) is a passing database failure, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = _reason(current)
        if reason is not None:
            return reason
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def raise_if_transient(exc: BaseException, *, retry_after: float = 1.0) -> None:
    """Raise ``StorageUnavailable`` from ``exc`` if it is a passing failure; else return."""
    if isinstance(exc, StorageUnavailable):
        return
    reason = transient_reason(exc)
    if reason is not None:
        _unavailable(reason, exc, retry_after)


def _unavailable(reason: str, exc: BaseException, retry_after: float) -> NoReturn:
    logger.warning("database unavailable: %s (%s)", reason, type(exc).__name__)
    raise StorageUnavailable(
        f"the database is unavailable ({reason}); nothing was written, try again shortly",
        retry_after=retry_after,
    ) from exc


def _reason(exc: BaseException) -> str | None:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "connection lost"
    if isinstance(exc, sa_exc.TimeoutError):
        return "no connection free in the pool"
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return "database is locked"
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (
        sqlstate.startswith(_TRANSIENT_CLASSES) or sqlstate in _TRANSIENT_CODES
    ):
        return f"SQLSTATE {sqlstate}"
    if any(
        cls.__module__.startswith("asyncpg") and cls.__name__ in _ASYNCPG_CONNECTION_ERRORS
        for cls in type(exc).__mro__
    ):
        return "connection closed"
    if isinstance(exc, OSError):  # refused, reset, unreachable, timed out
        return f"cannot reach the server ({type(exc).__name__})"
    return None
