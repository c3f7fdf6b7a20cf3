"""Trends (spec/metrics.md "Trends"): a measure per time bucket, optionally broken down.

Readings of the spec chosen here, where it is silent:

- Range and buckets: events with a timestamp in `[from 00:00, to + 1 day 00:00)` UTC count.
  Every bucket that overlaps the range is listed, empty ones included; a week or month
  that the range cuts is a partial bucket holding only the range's days (labelled by the
  period's start: the Monday for weeks, `YYYY-MM` for months). Hour buckets cover whole
  days: 24 per day of the range.
- Numeric values: a property is numeric when it is a JSON number (bools, numeric strings,
  null, lists and objects are not). Non-numeric values are ignored by SUM, AVERAGE, MIN
  and MAX: such an event neither adds to a sum nor counts in an average's denominator.
  Sums and averages are exact over the decimal numbers as stored (the JSON text: 0.1 is
  one tenth), rounded once to a double; min and max likewise.
- Unique users: distinct non-empty `user_id`; events without a user still count for the
  other measures.
- Breakdown value key (the funnels' breakdown label): a string property is its own key;
  any other JSON value becomes its compact JSON text with object keys sorted and numbers
  in plain decimal form without trailing zeros or exponent (1.0 -> "1", 2.50 -> "2.5",
  1e-7 -> "0.0000001"), bools "true" / "false". Values with the same key are one
  breakdown value (the string "1" and the number 1 are both "1"), so the key is what is
  ranked and tie-broken.
- `$none` is the events whose breakdown property is absent or JSON null. It never competes
  for the top 25 and is never folded into `$other`: it is always its own series (listed
  last), present when at least one matching event lacks the property.
- Ranking: the top 25 keys by the measure over the whole range (as the double reported),
  largest first; ties by key in string (code point) order. For AVERAGE, MIN and MAX a key
  whose range value is absent (no numeric value) ranks after every key with a value.
  `$other` (all remaining keys together) exists only when more than 25 keys occurred.
- Totals: the measure over the whole range per series (unique users: distinct users of the
  range; average: over all numeric values of the range, not a mean of bucket means).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.filters import PropertyFilter, all_match, breakdown_label
from northstar_metrics.domain.time import US_PER_DAY, epoch_day, range_us

US_PER_HOUR = 3_600_000_000
BREAKDOWN_LIMIT = 25
OTHER = "$other"
NONE = "$none"


class Interval(enum.Enum):
    """The width of a trend's buckets (UTC)."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Measure(enum.Enum):
    """What a trend computes per bucket."""

    EVENT_COUNT = "event_count"
    UNIQUE_USERS = "unique_users"
    SUM = "sum"
    AVERAGE = "average"
    MIN = "min"
    MAX = "max"

    @property
    def numeric(self) -> bool:
        """Whether the measure aggregates a numeric property."""
        return self in (Measure.SUM, Measure.AVERAGE, Measure.MIN, Measure.MAX)


class SeriesKind(enum.Enum):
    """Which events a series covers."""

    ALL = "all"
    VALUE = "value"
    OTHER = "other"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class TrendQuery:
    """A trend's range, bucket width, measure and breakdown (filters are applied apart)."""

    first: date
    last: date
    interval: Interval
    measure: Measure
    event: str | None = None
    property: str | None = None
    breakdown: str | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """One period of the range: its label and the range's days inside it."""

    label: str
    first: date
    last: date


@dataclass(frozen=True, slots=True)
class TrendSeries:
    """The measure per bucket (aligned with Trend.buckets) and over the range, for a group."""

    kind: SeriesKind
    value: str
    points: tuple[float | None, ...]
    total: float | None


@dataclass(frozen=True, slots=True)
class Trend:
    """The answer to a TrendQuery."""

    buckets: tuple[Bucket, ...]
    series: tuple[TrendSeries, ...]


def _period_start(d: date, interval: Interval) -> date:
    if interval is Interval.WEEK:
        return d - timedelta(days=d.weekday())
    if interval is Interval.MONTH:
        return d.replace(day=1)
    return d


def _label(start: date, interval: Interval) -> str:
    if interval is Interval.MONTH:
        return start.strftime("%Y-%m")
    return start.isoformat()


def buckets(first: date, last: date, interval: Interval) -> tuple[list[Bucket], list[int]]:
    """The buckets of `[first, last]`, and the bucket index of each day of the range.

    For hour buckets the day index is the day's first hour; add the hour of the day.
    """
    out: list[Bucket] = []
    day_index: list[int] = []
    d = first
    while d <= last:
        if interval is Interval.HOUR:
            day_index.append(len(out))
            out.extend(Bucket(f"{d.isoformat()}T{h:02d}:00:00Z", d, d) for h in range(24))
        else:
            start = _period_start(d, interval)
            if not out or out[-1].label != _label(start, interval):
                out.append(Bucket(_label(start, interval), d, d))
            else:
                out[-1] = Bucket(out[-1].label, out[-1].first, d)
            day_index.append(len(out) - 1)
        d += timedelta(days=1)
    return out, day_index


def breakdown_key(properties: dict[str, Any], name: str) -> str | None:
    """The breakdown key of an event's property; None (`$none`) when absent or null."""
    if properties.get(name) is None:
        return None
    # The funnels' breakdown label: one spelling of a value across the service.
    return breakdown_label(properties, name)


def numeric_value(value: Any) -> Decimal | None:
    """A JSON number (not a bool) as the decimal the client wrote; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # repr is the shortest text that reads back as the same double: the text stored.
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


@dataclass(frozen=True, slots=True)
class Aggregate:
    """What a measure needs from a set of events: counts, exact sum, extremes."""

    events: int = 0
    users: int = 0
    numbers: int = 0
    total: Fraction = Fraction(0)
    minimum: Decimal | None = None
    maximum: Decimal | None = None

    def value(self, measure: Measure) -> float | None:
        """The measure's value, rounded once to a double; None where the spec says absent."""
        if measure is Measure.EVENT_COUNT:
            return float(self.events)
        if measure is Measure.UNIQUE_USERS:
            return float(self.users)
        if measure is Measure.SUM:
            return float(self.total)
        if measure is Measure.MIN:
            return None if self.minimum is None else float(self.minimum)
        if measure is Measure.MAX:
            return None if self.maximum is None else float(self.maximum)
        return None if self.numbers == 0 else float(self.total / self.numbers)


@dataclass(frozen=True, slots=True)
class SeriesId:
    """A series: its kind and breakdown value."""

    kind: SeriesKind
    value: str


ALL = SeriesId(SeriesKind.ALL, "")
OTHER_SERIES = SeriesId(SeriesKind.OTHER, OTHER)
NONE_SERIES = SeriesId(SeriesKind.NONE, NONE)


def _rank_key(item: tuple[str, float | None]) -> tuple[bool, float, str]:
    key, value = item
    return (value is None, -value if value is not None else 0.0, key)


def top_keys(totals: dict[str, float | None], limit: int = BREAKDOWN_LIMIT) -> list[str]:
    """The `limit` keys with the largest value (absent last), ties in key string order."""
    return [key for key, _ in sorted(totals.items(), key=_rank_key)[:limit]]


def plan_series(
    key_totals: Mapping[str, Aggregate], has_none: bool, measure: Measure
) -> list[SeriesId]:
    """The series of a breakdown, in order: the top values, `$other`, `$none`."""
    # Rank by the double the client sees, so that equal-looking totals tie.
    top = top_keys({k: a.value(measure) for k, a in key_totals.items()})
    series = [SeriesId(SeriesKind.VALUE, k) for k in top]
    if len(key_totals) > len(top):
        series.append(OTHER_SERIES)
    if has_none:
        series.append(NONE_SERIES)
    return series


def assemble(
    query: TrendQuery,
    series: Sequence[SeriesId],
    cells: Mapping[tuple[SeriesId, int], Aggregate],
    totals: Mapping[SeriesId, Aggregate],
) -> Trend:
    """The trend from the aggregates of each series per bucket index and over the range."""
    bucket_list, _ = buckets(query.first, query.last, query.interval)
    empty = Aggregate()
    return Trend(
        buckets=tuple(bucket_list),
        series=tuple(
            TrendSeries(
                kind=s.kind,
                value=s.value,
                points=tuple(
                    cells.get((s, i), empty).value(query.measure) for i in range(len(bucket_list))
                ),
                total=totals.get(s, empty).value(query.measure),
            )
            for s in series
        ),
    )


class _Accumulator:
    """Running Aggregate of a set of events, in memory (the rows path)."""

    __slots__ = ("events", "maximum", "minimum", "numbers", "total", "users")

    def __init__(self) -> None:
        self.events = 0
        self.users: set[str] = set()
        self.numbers = 0
        self.total = Fraction(0)
        self.minimum: Decimal | None = None
        self.maximum: Decimal | None = None

    def add(self, user_id: str, number: Decimal | None) -> None:
        self.events += 1
        if user_id:
            self.users.add(user_id)
        if number is not None:
            self.numbers += 1
            self.total += Fraction(number)
            if self.minimum is None or number < self.minimum:
                self.minimum = number
            if self.maximum is None or number > self.maximum:
                self.maximum = number

    def aggregate(self) -> Aggregate:
        return Aggregate(
            self.events, len(self.users), self.numbers, self.total, self.minimum, self.maximum
        )


@dataclass(frozen=True, slots=True)
class _Observation:
    bucket: int
    key: str | None
    user_id: str
    number: Decimal | None


def _observations(
    rows: Iterable[EventRow],
    query: TrendQuery,
    filters: Sequence[PropertyFilter],
    day_index: list[int],
) -> list[_Observation]:
    since_us, until_us = range_us(query.first, query.last)
    first_day = epoch_day(query.first)
    out = []
    for row in rows:
        if not since_us <= row.ts_us < until_us:
            continue
        if query.event and row.event != query.event:
            continue
        if filters and not all_match(filters, row):
            continue
        index = day_index[row.ts_us // US_PER_DAY - first_day]
        if query.interval is Interval.HOUR:
            index += (row.ts_us % US_PER_DAY) // US_PER_HOUR
        key = breakdown_key(row.properties, query.breakdown) if query.breakdown else None
        number = numeric_value(row.properties.get(query.property)) if query.property else None
        out.append(_Observation(index, key, row.user_id, number))
    return out


def trend(rows: Iterable[EventRow], query: TrendQuery, filters: Sequence[PropertyFilter]) -> Trend:
    """The trend of one tenant's events, in memory: the definition the SQL path must equal."""
    _, day_index = buckets(query.first, query.last, query.interval)
    observations = _observations(rows, query, filters, day_index)
    series_of: dict[str | None, SeriesId] = {}
    if query.breakdown is None:
        series = [ALL]
    else:
        per_key: dict[str, _Accumulator] = {}
        for o in observations:
            if o.key is not None:
                per_key.setdefault(o.key, _Accumulator()).add(o.user_id, o.number)
        has_none = any(o.key is None for o in observations)
        key_totals = {k: a.aggregate() for k, a in per_key.items()}
        series = plan_series(key_totals, has_none, query.measure)
        series_of = {s.value: s for s in series if s.kind is SeriesKind.VALUE}
        series_of[None] = NONE_SERIES
    cells: dict[tuple[SeriesId, int], _Accumulator] = {}
    totals: dict[SeriesId, _Accumulator] = {}
    for o in observations:
        s = ALL if query.breakdown is None else series_of.get(o.key, OTHER_SERIES)
        cells.setdefault((s, o.bucket), _Accumulator()).add(o.user_id, o.number)
        totals.setdefault(s, _Accumulator()).add(o.user_id, o.number)
    return assemble(
        query,
        series,
        {k: a.aggregate() for k, a in cells.items()},
        {k: a.aggregate() for k, a in totals.items()},
    )
