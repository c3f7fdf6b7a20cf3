"""Daily series for anomalies and forecasts (spec/metrics.md, "Anomalies").

A series starts on the tenant's first day with any event: days before it
are absent, not 0. From then on a count (DAU, signups, workflow runs, event
count of a name) is 0 on a day without events, a level (MRR) is its
end-of-day value, and a ratio (error rate) is absent on a day whose
denominator is 0. Values are exact `Fraction`s so that the rules built on
them (z >= 3, a line continued exactly) are decided without rounding.

Readings where the spec is silent:

- Days after the last event are not cut off: up to the requested day they
  are 0 (counts) or the carried level (MRR), as "later days without events
  are 0" says.
- Signups on day d are the users whose *first* `user.signup` falls on d
  (`domain/signups.py`); the tie rule on `event_id` cannot move a day.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction

from northstar_metrics.domain.time import day_of


class SeriesKind(enum.Enum):
    """The daily series anomalies and forecasts are computed on."""

    DAU = "dau"
    SIGNUPS = "signups"
    WORKFLOW_RUNS = "workflow_runs"
    ERROR_RATE = "error_rate"
    MRR = "mrr"
    EVENT_COUNT = "event_count"


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """Which series: a kind, and the event name for EVENT_COUNT."""

    kind: SeriesKind
    event_name: str = ""


@dataclass(frozen=True, slots=True)
class DailySeries:
    """The values of a daily series over [first, last]; a day without a value is absent."""

    first: date
    last: date
    values: Mapping[date, Fraction] = field(default_factory=dict)

    def value(self, day: date) -> Fraction | None:
        """The day's value, or None when absent (or outside [first, last])."""
        return self.values.get(day)

    def days(self) -> Iterator[date]:
        """Every day of [first, last], in order."""
        return days_between(self.first, self.last)


def days_between(first: date, last: date) -> Iterator[date]:
    """The days of [first, last], in order."""
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def count_series(
    counts: Mapping[date, int], *, start: date | None, first: date, last: date
) -> DailySeries:
    """A count (or level) per day from `start` on; 0 where `counts` has no entry."""
    if start is None:
        return DailySeries(first, last, {})
    return DailySeries(
        first,
        last,
        {d: Fraction(counts.get(d, 0)) for d in days_between(max(first, start), last)},
    )


def ratio_series(
    numerators: Mapping[date, int],
    denominators: Mapping[date, int],
    *,
    start: date | None,
    first: date,
    last: date,
) -> DailySeries:
    """numerator / denominator per day from `start` on; absent where the denominator is 0."""
    if start is None:
        return DailySeries(first, last, {})
    values: dict[date, Fraction] = {}
    for d in days_between(max(first, start), last):
        denominator = denominators.get(d, 0)
        if denominator:
            values[d] = Fraction(numerators.get(d, 0), denominator)
    return DailySeries(first, last, values)


def signup_days(first_signup_ts_us: Iterable[int]) -> dict[date, int]:
    """Signups per day from each user's earliest `user.signup` timestamp."""
    return dict(Counter(day_of(ts) for ts in first_signup_ts_us))
