"""The clock every service reads, so tests can move time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import TypeAdapter

from .errors import InvalidRequest

Clock = Callable[[], datetime]

LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""Every instant the library takes is before this (exclusive).

Both databases store later ones, but PostgreSQL's driver cannot read the
last instants of year 9999 back as aware datetimes, and a period or a hold's
lifetime added to one would overflow Python's ``datetime``.
"""


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime, *, name: str = "datetime") -> datetime:
    """Return ``value`` in UTC, refusing naive datetimes.

    A naive datetime has no defined instant, and money rules depend on
    instants (expiry is exclusive), so guessing a zone is never safe.
    """
    if not isinstance(value, datetime):
        raise InvalidRequest(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequest(f"{name} must be timezone-aware")
    try:
        instant = value.astimezone(UTC)
    except OverflowError:  # an offset that moves it past year 1 or 9999
        raise InvalidRequest(f"{name} is out of range") from None
    if instant >= LATEST:
        raise InvalidRequest(f"{name} must be before {LATEST.isoformat()}")
    return instant


def read_clock(clock: Clock) -> datetime:
    """Call ``clock`` and check that it returned an aware datetime."""
    return as_utc(clock(), name="clock()")


_INSTANT = TypeAdapter(datetime)


def rfc3339(instant: datetime) -> str:
    """``instant`` as every answer of the library writes it: RFC 3339, UTC, with ``Z``.

    The same serializer as the JSON models', so a CSV export and the JSON
    API spell one instant the same way (``2027-01-31T09:30:00.250000Z``).
    """
    return str(_INSTANT.dump_python(as_utc(instant, name="instant"), mode="json"))
