"""UTC days and microsecond timestamps, and the ISO form of a day."""

from __future__ import annotations

from datetime import date, timedelta

EPOCH = date(1970, 1, 1)
_EPOCH_ORDINAL = EPOCH.toordinal()
US_PER_DAY = 86_400_000_000


def day_of(timestamp_us: int) -> date:
    """The UTC calendar date of a timestamp in microseconds since the epoch."""
    return date.fromordinal(_EPOCH_ORDINAL + timestamp_us // US_PER_DAY)


def epoch_day(d: date) -> int:
    """Days since 1970-01-01 of a date."""
    return (d - EPOCH).days


def day_of_epoch_day(days: int) -> date:
    """The date `days` days after 1970-01-01: the inverse of `epoch_day`."""
    return EPOCH + timedelta(days=days)


def day_start_us(day: date) -> int:
    """The first microsecond of a UTC day."""
    return epoch_day(day) * US_PER_DAY


def range_us(first: date, last: date) -> tuple[int, int]:
    """`[since, until)` in microseconds covering the days `[first, last]`."""
    return epoch_day(first) * US_PER_DAY, (epoch_day(last) + 1) * US_PER_DAY


# The days a query may name. Queries step a few weeks, months or periods past the days
# they are given (a week cohort's end, the month before a KPI window, a forecast's
# horizon); inside these bounds every such step stays within Python's dates.
FIRST_DAY = date(100, 1, 1)
LAST_DAY = date(9900, 12, 31)
DAY_FORMAT = f"a date YYYY-MM-DD from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"


def iso_day(text: str) -> date:
    """The day written exactly `YYYY-MM-DD`, within [FIRST_DAY, LAST_DAY]; ValueError
    for anything else."""
    if len(text) != 10:
        raise ValueError(text)
    day = date.fromisoformat(text)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(text)
    return day
