"""UTC days from microsecond timestamps."""

from __future__ import annotations

from datetime import date

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
US_PER_DAY = 86_400_000_000


def day_of(timestamp_us: int) -> date:
    """The UTC calendar date of a timestamp in microseconds since the epoch."""
    return date.fromordinal(_EPOCH_ORDINAL + timestamp_us // US_PER_DAY)
