"""Anchored monthly periods: ``anchor + N months``, clamped to the month's end.

Every period is computed from the original anchor, never from the previous
period, so a month-end anchor does not drift: Jan 31 → Feb 28 (29 in leap
years) → Mar 31 → Apr 30. Period ``n`` is ``[start(n), start(n + 1))``.
"""

from __future__ import annotations

import calendar
from datetime import datetime

from ._clock import as_utc
from .errors import InvalidRequest

__all__ = ["add_months", "month_number", "period_bounds", "period_index", "period_start"]


def add_months(anchor: datetime, months: int) -> datetime:
    """``anchor`` moved by ``months`` calendar months, the day clamped to the month's end.

    Args:
        anchor: An aware datetime; the result keeps its time of day, in UTC.
        months: Any int, negative included.
    """
    if isinstance(months, bool) or not isinstance(months, int):
        raise InvalidRequest("months must be an int")
    return _shift(as_utc(anchor, name="anchor"), months)


def _shift(anchor: datetime, months: int) -> datetime:
    """``add_months`` without checking its arguments: ``anchor`` must be aware UTC.

    For the money rules' inner loops, whose anchors come from storage or
    from a checked call.
    """
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    if not 1 <= year <= 9999:
        raise InvalidRequest("period out of the supported date range")
    day = anchor.day
    if day > 28:
        day = min(day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_start(anchor: datetime, n: int) -> datetime:
    """The instant period ``n`` (0 is the first) begins."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InvalidRequest("period number must be an int >= 0")
    return add_months(anchor, n)


def period_bounds(anchor: datetime, n: int) -> tuple[datetime, datetime]:
    """``(start, end)`` of period ``n``; the end is exclusive and starts period ``n + 1``."""
    return period_start(anchor, n), period_start(anchor, n + 1)


def period_index(anchor: datetime, at: datetime) -> int:
    """The number of the period containing ``at``, or -1 if ``at`` is before ``anchor``."""
    return _index_of(as_utc(anchor, name="anchor"), as_utc(at, name="at"))


def _index_of(anchor: datetime, at: datetime) -> int:
    """``period_index`` without checking its arguments (both aware UTC)."""
    if at < anchor:
        return -1
    # The calendar month difference is right or one too many (when ``at``
    # falls earlier in its month than the clamped anchor day and time).
    n = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    if _shift(anchor, n) > at:
        n -= 1
    return n


def month_number(instant: datetime) -> int:
    """The calendar month of ``instant`` (UTC) as one number: ``year * 12 + month - 1``.

    Period ``n`` of an anchor always starts in month ``month_number(anchor) + n``,
    so this names periods absolutely: two subscriptions of one account, one
    after the other, never number a period alike.
    """
    instant = as_utc(instant, name="instant")
    return instant.year * 12 + instant.month - 1
