"""Anchored monthly periods: no drift, month-end clamping, exact boundaries."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prpm_playground import InvalidRequest
from prpm_playground.periods import add_months, period_bounds, period_index, period_start


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_month_end_anchor_never_drifts() -> None:
    anchor = utc(2027, 1, 31, 9, 30)
    assert [period_start(anchor, n) for n in range(5)] == [
        utc(2027, 1, 31, 9, 30),
        utc(2027, 2, 28, 9, 30),
        utc(2027, 3, 31, 9, 30),
        utc(2027, 4, 30, 9, 30),
        utc(2027, 5, 31, 9, 30),
    ]


def test_leap_years() -> None:
    assert period_start(utc(2028, 1, 31), 1) == utc(2028, 2, 29)
    leap_day = utc(2028, 2, 29)
    assert [period_start(leap_day, n) for n in (1, 12, 48)] == [
        utc(2028, 3, 29),
        utc(2029, 2, 28),
        utc(2032, 2, 29),
    ]


def test_bounds_are_half_open() -> None:
    anchor = utc(2027, 1, 31)
    start, end = period_bounds(anchor, 1)
    assert (start, end) == (utc(2027, 2, 28), utc(2027, 3, 31))
    assert period_index(anchor, start) == 1
    assert period_index(anchor, end - timedelta(microseconds=1)) == 1
    assert period_index(anchor, end) == 2


def test_index_before_and_across_years() -> None:
    anchor = utc(2026, 11, 30, 12)
    assert period_index(anchor, anchor - timedelta(microseconds=1)) == -1
    assert period_index(anchor, anchor) == 0
    assert period_index(anchor, utc(2026, 12, 30, 11, 59)) == 0
    assert period_index(anchor, utc(2026, 12, 30, 12)) == 1
    assert period_index(anchor, utc(2027, 2, 28, 12)) == 3  # clamped Feb 28
    assert period_index(anchor, utc(2027, 11, 30, 12)) == 12


def test_other_zones_are_converted_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    anchor = datetime(2027, 3, 1, 8, tzinfo=tokyo)  # Feb 28 23:00 UTC
    assert period_start(anchor, 1) == utc(2027, 3, 28, 23)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        (period_start, (utc(2027, 1, 1), -1)),
        (period_start, (utc(2027, 1, 1), True)),
        (period_start, (datetime(2027, 1, 1), 1)),
        (period_index, (utc(2027, 1, 1), datetime(2027, 2, 1))),
        (add_months, (utc(9999, 12, 1), 1)),
    ],
)
def test_bad_input(call: object, args: tuple[object, ...]) -> None:
    with pytest.raises(InvalidRequest):
        call(*args)  # type: ignore[operator]


anchors = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@given(anchor=anchors, n=st.integers(0, 600))
def test_periods_follow_the_anchor(anchor: datetime, n: int) -> None:
    start, end = period_bounds(anchor, n)
    assert start < end
    # Computed from the anchor, never from the previous period: the day is
    # the anchor's, clamped to the length of the month.
    months = anchor.month - 1 + n
    assert (start.year, start.month) == (anchor.year + months // 12, months % 12 + 1)
    assert start.day == min(anchor.day, calendar.monthrange(start.year, start.month)[1])
    assert start.time() == anchor.time()
    assert period_index(anchor, start) == n
    assert period_index(anchor, end - timedelta(microseconds=1)) == n


@given(
    anchor=anchors, offset=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20000))
)
def test_index_locates_any_instant(anchor: datetime, offset: timedelta) -> None:
    at = anchor + offset
    n = period_index(anchor, at)
    start, end = period_bounds(anchor, n)
    assert start <= at < end
