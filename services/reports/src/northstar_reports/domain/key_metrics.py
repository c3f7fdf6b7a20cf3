"""The key metrics of a report: each number for the period, the one before and a sparkline.

Pure: the metrics service's daily and per-period answers go in, the numbers come out.
Readings (docs/spec-readings.md, "Reports: sections"):

- A report's days are the metrics service's UTC days with the same dates: the schedule's
  time zone chooses which dates a period covers, metrics counts those dates.
- The sparkline is the 14 days (a DAY period) or 8 ISO weeks (a WEEK period) ending with
  the period; `previous` is its second-to-last point, so one read of each metrics query
  over the whole span answers value, previous and sparkline.
- `dau` is the mean of the period's daily DAU; `wau`, `mau`, `mrr` and `paying_orgs` are
  taken on the period's last day (MRR at the end of it); `stickiness` is the mean of the
  daily DAU/MAU over the days that have one (absent when none has); `signups` counts the
  users whose signup (their first `user.signup`) falls in the period; `workflow_runs` and
  `workflow_error_rate` (failed / runs, absent without runs) are over the period.
- A number the metrics answer lacks (a day missing from it) is absent, never 0.
- `change = (value - previous) / previous`, absent when either is absent or previous is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

DAY_SPARKLINE = 14
WEEK_SPARKLINE = 8


@dataclass(frozen=True, slots=True)
class Span:
    """Calendar dates [first, last], both inclusive."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"span ends {self.last} before it starts {self.first}")

    @property
    def dates(self) -> list[date]:
        """Every date of the span, in order."""
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


def spark_periods(period: Span, *, weekly: bool) -> list[Span]:
    """The sparkline's periods, oldest first, the last being `period` itself.

    Each earlier period has the same length as `period` and ends the day before the next
    one starts: 14 of them for a day, 8 for an ISO week.
    """
    count = WEEK_SPARKLINE if weekly else DAY_SPARKLINE
    length = (period.last - period.first).days + 1
    return [
        Span(
            period.first - timedelta(days=length * back),
            period.last - timedelta(days=length * back),
        )
        for back in range(count - 1, -1, -1)
    ]


def change(value: float | None, previous: float | None) -> float | None:
    """(value - previous) / previous; absent when either is absent or previous is 0."""
    if value is None or previous is None or previous == 0:
        return None
    return (value - previous) / previous


@dataclass(frozen=True, slots=True)
class ActiveDay:
    """The active-users numbers of one day."""

    dau: int
    wau: int
    mau: int
    stickiness: float | None


@dataclass(frozen=True, slots=True)
class RunCounts:
    """Workflow runs of one period and how many of them failed."""

    runs: int
    failed: int


@dataclass(frozen=True, slots=True)
class RevenueDay:
    """MRR and paying organizations at the end of one day."""

    mrr: int
    paying_orgs: int


@dataclass(frozen=True, slots=True)
class MetricsReadings:
    """What metrics answered over the sparkline's span.

    `active` and `revenue` are by day; `signups` and `workflows` by the first day of each
    sparkline period.
    """

    active: Mapping[date, ActiveDay]
    signups: Mapping[date, int]
    workflows: Mapping[date, RunCounts]
    revenue: Mapping[date, RevenueDay]


@dataclass(frozen=True, slots=True)
class KeyMetricValues:
    """One key metric over the sparkline: its description and one value per period."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    points: tuple[tuple[date, float | None], ...]

    @property
    def value(self) -> float | None:
        """The period's value."""
        return self.points[-1][1]

    @property
    def previous(self) -> float | None:
        """The previous period's value."""
        return self.points[-2][1] if len(self.points) > 1 else None

    @property
    def change(self) -> float | None:
        """Relative change against the previous period."""
        return change(self.value, self.previous)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


@dataclass(frozen=True, slots=True)
class _Definition:
    name: str
    label: str
    unit: str
    higher_is_better: bool
    of: Callable[[Span, MetricsReadings], float | None]


def _dau(span: Span, r: MetricsReadings) -> float | None:
    days = [r.active.get(d) for d in span.dates]
    if any(d is None for d in days):
        return None  # a day missing from the answer: no honest mean
    return _mean([float(d.dau) for d in days if d is not None])


def _on_last_day(
    pick: Callable[[ActiveDay], int],
) -> Callable[[Span, MetricsReadings], float | None]:
    def of(span: Span, r: MetricsReadings) -> float | None:
        day = r.active.get(span.last)
        return None if day is None else float(pick(day))

    return of


def _stickiness(span: Span, r: MetricsReadings) -> float | None:
    return _mean([d.stickiness for d in (r.active.get(x) for x in span.dates) if d is not None])


def _signups(span: Span, r: MetricsReadings) -> float | None:
    n = r.signups.get(span.first)
    return None if n is None else float(n)


def _runs(span: Span, r: MetricsReadings) -> float | None:
    counts = r.workflows.get(span.first)
    return None if counts is None else float(counts.runs)


def _error_rate(span: Span, r: MetricsReadings) -> float | None:
    counts = r.workflows.get(span.first)
    if counts is None or counts.runs == 0:
        return None
    return counts.failed / counts.runs


def _revenue(pick: Callable[[RevenueDay], int]) -> Callable[[Span, MetricsReadings], float | None]:
    def of(span: Span, r: MetricsReadings) -> float | None:
        day = r.revenue.get(span.last)
        return None if day is None else float(pick(day))

    return of


KEY_METRICS: tuple[_Definition, ...] = (
    _Definition("dau", "Daily active users (average)", "count", True, _dau),
    _Definition("wau", "Weekly active users", "count", True, _on_last_day(lambda d: d.wau)),
    _Definition("mau", "Monthly active users", "count", True, _on_last_day(lambda d: d.mau)),
    _Definition("stickiness", "Stickiness (DAU/MAU, average)", "ratio", True, _stickiness),
    _Definition("signups", "Signups", "count", True, _signups),
    _Definition("workflow_runs", "Workflow runs", "count", True, _runs),
    _Definition("workflow_error_rate", "Workflow error rate", "ratio", False, _error_rate),
    _Definition("mrr", "MRR", "money", True, _revenue(lambda d: d.mrr)),
    _Definition(
        "paying_orgs", "Paying organizations", "count", True, _revenue(lambda d: d.paying_orgs)
    ),
)
KEY_METRIC_NAMES = tuple(d.name for d in KEY_METRICS)


def key_metrics(periods: Sequence[Span], readings: MetricsReadings) -> list[KeyMetricValues]:
    """Every key metric, in the fixed order, over the sparkline's periods (oldest first)."""
    return [
        KeyMetricValues(
            d.name,
            d.label,
            d.unit,
            d.higher_is_better,
            tuple((p.first, d.of(p, readings)) for p in periods),
        )
        for d in KEY_METRICS
    ]
