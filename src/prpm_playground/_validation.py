"""Argument checks shared by the services; each failure is an InvalidRequest."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .errors import InvalidRequest

MAX_ID_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 1000
# The widest integer either database stores (BIGINT, SQLite's INTEGER).
INT64_MAX = 2**63 - 1


def text_problem(value: str) -> str | None:
    """Why a database could not store ``value``, or None if both can.

    PostgreSQL refuses NUL in text; neither database can encode an unpaired
    surrogate (which Python strings, and JSON's ``\\ud800`` escapes, allow).
    Refused on the way in, never when a paid result is saved.
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired surrogates"
    return None


def check_storable(value: str, name: str) -> str:
    """``value``, if a database can store it (see ``text_problem``)."""
    problem = text_problem(value)
    if problem is not None:
        raise InvalidRequest(f"{name} {problem}")
    return value


def check_text_id(value: object, name: str) -> str:
    """A user id or idempotency key: a str of 1 to 255 characters."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidRequest(f"{name} must be 1 to {MAX_ID_LENGTH} characters, got {len(value)}")
    return check_storable(value, name)


def check_int(value: object, name: str, *, minimum: int, maximum: int | None = None) -> int:
    """A real int (bool refused) within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise InvalidRequest(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidRequest(f"{name} must be <= {maximum}, got {value}")
    return value


# Credits are stored in 64-bit columns; far below that keeps sums exact everywhere.
MAX_AMOUNT = 10**15


def check_amount(value: object, name: str = "amount", *, allow_zero: bool = False) -> int:
    """A credit amount: an int > 0 (or >= 0 when allowed)."""
    return check_int(value, name, minimum=0 if allow_zero else 1, maximum=MAX_AMOUNT)


def check_description(value: object) -> str | None:
    """Optional free text up to 1,000 characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest("description must be a string or None")
    if len(value) > MAX_DESCRIPTION_LENGTH:
        raise InvalidRequest(f"description must be at most {MAX_DESCRIPTION_LENGTH} characters")
    return check_storable(value, "description")


def fingerprint(operation: str, **arguments: Any) -> str:
    """A stable digest of an operation and its arguments, for idempotency checks."""
    payload = json.dumps([operation, arguments], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
