"""Helpers for host applications' own tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ._clock import as_utc

__all__ = ["ManualClock"]


class ManualClock:
    """A clock that moves only when told; pass it as ``clock=`` to any service.

    Args:
        start: The initial instant (aware); defaults to 2026-01-01 00:00 UTC.

    Example:
        ```python
        clock = ManualClock()
        ledger = CreditLedger(storage, clock=clock)
        clock.advance(timedelta(minutes=16))   # holds with a 15-minute TTL lapse
        ```
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.now = as_utc(start or datetime(2026, 1, 1, tzinfo=UTC), name="start")

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta``; return the new instant."""
        if delta < timedelta(0):
            raise ValueError("a ManualClock only moves forward")
        self.now += delta
        return self.now

    def set(self, instant: datetime) -> datetime:
        """Jump to ``instant`` (aware, not earlier than now)."""
        instant = as_utc(instant, name="instant")
        if instant < self.now:
            raise ValueError("a ManualClock only moves forward")
        self.now = instant
        return self.now
