"""Retention cohorts (spec/metrics.md "Retention"): period arithmetic and the matrix.

A cohort is the users whose `signup_day` falls in one cohort period (a day, an ISO week
starting Monday, or a calendar month); period N of a cohort is its start shifted by N
periods of the granularity (calendar months for MONTH, so the January cohort's period 1
is all of February). The read model counts users per cohort and period
(`CohortCounts`); this module turns those counts into cells with the spec's rules.

Readings chosen where the spec is silent (what an analyst expects):

- The query's end date is `as_of` (default: today, UTC; chosen by the caller). A period,
  period 0 included, is answered only once it has fully elapsed: its last day <= as_of.
  So a cohort period still in progress (this week, this month) has no cells yet.
- ON_DAY counts activity on the days of period N. ON_OR_AFTER counts activity on any day
  in [first day of period N, as_of]; activity after as_of never counts.
- Period 0 is the cohort size, by the spec's rule (the signup is itself activity), not
  counted from activity days.
- Activity before a user's cohort start (before its signup) falls in periods < 0 and
  counts for nothing; a user's only periods are N >= 0 of its own cohort.
- The cohort size counts every user whose signup_day is in the cohort period, including
  signups after as_of (possible only while period 0 itself has not elapsed, and then
  the cohort has no cell that depends on it).
- A segment keeps users whose signup `plan` (or `channel`) property is a JSON string equal
  to the value; users whose signup lacks it, or carries a non-string, are in no segment.
- A request's `periods` counts period 0: periods = 8 answers periods 0 .. 7.
- An empty cohort (size 0) still has its elapsed cells: retained 0, denominator 0, no value.
- `combined` cell of period N: the sum of the cells of every cohort whose period N has
  elapsed (retained over their summed sizes), as the KPIs' "D7 over a signup range".
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum
from functools import cached_property
from itertools import accumulate

from northstar_metrics.domain.ratios import ratio
from northstar_metrics.domain.signups import Signup


class CohortGranularity(Enum):
    """The length of a cohort period and of each retention period after it."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class RetentionMode(Enum):
    """What counts as retained in period N."""

    ON_DAY = "on_day"
    ON_OR_AFTER = "on_or_after"


class CohortAttribute(Enum):
    """A signup attribute a cohort can be segmented by (the signup property's name)."""

    PLAN = "plan"
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class CohortSegment:
    """Only the users whose signup attribute equals `value`."""

    attribute: CohortAttribute
    value: str

    def admits(self, signup: Signup) -> bool:
        """Whether the user of this signup is in the segment."""
        actual = signup.plan if self.attribute is CohortAttribute.PLAN else signup.channel
        return actual == self.value


def cohort_start(day: date, granularity: CohortGranularity) -> date:
    """The first day of the cohort period holding `day`."""
    if granularity is CohortGranularity.DAY:
        return day
    if granularity is CohortGranularity.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_start(cohort: date, n: int, granularity: CohortGranularity) -> date:
    """The first day of period `n` of the cohort starting on `cohort`."""
    if granularity is CohortGranularity.DAY:
        return cohort + timedelta(days=n)
    if granularity is CohortGranularity.WEEK:
        return cohort + timedelta(weeks=n)
    year, month = divmod(cohort.year * 12 + cohort.month - 1 + n, 12)
    if year > date.max.year:
        raise OverflowError("date value out of range")
    return date(year, month + 1, 1)


def period_end(cohort: date, n: int, granularity: CohortGranularity) -> date:
    """The last day of period `n` of the cohort starting on `cohort`."""
    if granularity is CohortGranularity.DAY:
        return cohort + timedelta(days=n)
    if granularity is CohortGranularity.WEEK:
        return cohort + timedelta(weeks=n, days=6)
    start = period_start(cohort, n, granularity)
    year, month = divmod(start.year * 12 + start.month, 12)
    if year > date.max.year:
        return date.max
    return date(year, month + 1, 1) - timedelta(days=1)


def period_of(cohort: date, day: date, granularity: CohortGranularity) -> int:
    """The period of the cohort starting on `cohort` that holds `day` (< 0 before it)."""
    if granularity is CohortGranularity.DAY:
        return (day - cohort).days
    if granularity is CohortGranularity.WEEK:
        return (day - cohort).days // 7
    return (day.year * 12 + day.month) - (cohort.year * 12 + cohort.month)


def elapsed(cohort: date, n: int, granularity: CohortGranularity, as_of: date) -> bool:
    """Whether period `n` of the cohort has fully elapsed by `as_of` (its last day <= as_of)."""
    try:
        return period_end(cohort, n, granularity) <= as_of
    except OverflowError:
        return False


def cohort_starts(first: date, last: date, granularity: CohortGranularity) -> list[date]:
    """The cohort periods whose first day is in [first, last], by their first day."""
    starts = []
    start = cohort_start(first, granularity)
    if start < first:
        start = period_start(start, 1, granularity)
    while start <= last:
        starts.append(start)
        try:
            start = period_start(start, 1, granularity)
        except OverflowError:
            break
    return starts


@dataclass(frozen=True, slots=True)
class CohortQuery:
    """Which cohorts, which users, what counts as retained, and the query's end date."""

    granularity: CohortGranularity
    first: date
    last: date
    mode: RetentionMode = RetentionMode.ON_DAY
    segment: CohortSegment | None = None
    as_of: date = date.max

    def admits(self, signup: Signup) -> bool:
        """Whether the signup's user belongs to one of the query's cohorts and segment."""
        start = cohort_start(signup.day, self.granularity)
        in_range = self.first <= start <= self.last
        return in_range and (self.segment is None or self.segment.admits(signup))


@dataclass(frozen=True)
class CohortCounts:
    """What the read model counts for a query, by cohort start.

    `tally[(cohort, p)]` is, in ON_DAY mode, the users with activity in period p (on a day
    <= as_of); in ON_OR_AFTER mode, the users whose latest activity on or before as_of
    falls in period p. Only p >= 0 is counted.
    """

    mode: RetentionMode
    sizes: Mapping[date, int]
    tally: Mapping[tuple[date, int], int]

    def retained(self, cohort: date, n: int) -> int:
        """Users of the cohort retained in period n, by the mode's rule."""
        if n == 0:
            # The signup is itself activity (spec): period 0 is the whole cohort.
            return self.sizes.get(cohort, 0)
        if self.mode is RetentionMode.ON_DAY:
            return self.tally.get((cohort, n), 0)
        periods, at_or_after = self._latest_periods.get(cohort, ((), ()))
        i = bisect_left(periods, n)
        return at_or_after[i] if i < len(at_or_after) else 0

    @cached_property
    def _latest_periods(self) -> dict[date, tuple[tuple[int, ...], tuple[int, ...]]]:
        """Per cohort: its latest-activity periods ascending, and the users at or after each."""
        by_cohort: dict[date, list[tuple[int, int]]] = defaultdict(list)
        for (cohort, p), users in self.tally.items():
            by_cohort[cohort].append((p, users))
        table = {}
        for cohort, pairs in by_cohort.items():
            pairs.sort()
            suffix = list(accumulate(reversed([u for _, u in pairs])))[::-1]
            table[cohort] = (tuple(p for p, _ in pairs), tuple(suffix))
        return table


@dataclass(frozen=True, slots=True)
class RetentionCell:
    """Retention of one period: retained users over the denominator."""

    period: int
    retained: int
    cohort_size: int

    @property
    def retention(self) -> float | None:
        """retained / cohort_size; None (absent) when the denominator is 0."""
        return ratio(self.retained, self.cohort_size)


@dataclass(frozen=True, slots=True)
class CohortRow:
    """One cohort of the matrix and the cells of its elapsed periods, in period order."""

    start: date
    end: date
    size: int
    cells: tuple[RetentionCell, ...]


@dataclass(frozen=True, slots=True)
class RetentionMatrix:
    """The rows of every cohort in range, and per period the cells summed over cohorts."""

    cohorts: tuple[CohortRow, ...]
    combined: tuple[RetentionCell, ...]


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """retention(cohort, N) of one cohort; `cell` is None while period N has not elapsed."""

    start: date
    end: date
    size: int
    cell: RetentionCell | None


@dataclass(frozen=True, slots=True)
class RetentionTrend:
    """retention(cohort, N) for a fixed N across cohorts, and its sum over them."""

    period: int
    points: tuple[TrendPoint, ...]
    combined: RetentionCell | None


def _combine(period: int, cells: Iterable[RetentionCell]) -> RetentionCell | None:
    found = list(cells)
    if not found:
        return None
    return RetentionCell(period, sum(c.retained for c in found), sum(c.cohort_size for c in found))


def _cell(query: CohortQuery, counts: CohortCounts, cohort: date, n: int) -> RetentionCell | None:
    if not elapsed(cohort, n, query.granularity, query.as_of):
        return None
    return RetentionCell(n, counts.retained(cohort, n), counts.sizes.get(cohort, 0))


def retention_matrix(query: CohortQuery, periods: int, counts: CohortCounts) -> RetentionMatrix:
    """The matrix of periods 0 .. periods-1 of every cohort of the query."""
    rows = []
    by_period: dict[int, list[RetentionCell]] = defaultdict(list)
    for start in cohort_starts(query.first, query.last, query.granularity):
        cells = []
        for n in range(periods):
            cell = _cell(query, counts, start, n)
            if cell is None:
                break  # later periods end later: none of them has elapsed either
            cells.append(cell)
            by_period[n].append(cell)
        end = period_end(start, 0, query.granularity)
        rows.append(CohortRow(start, end, counts.sizes.get(start, 0), tuple(cells)))
    combined = [_combine(n, by_period[n]) for n in range(periods) if by_period[n]]
    return RetentionMatrix(tuple(rows), tuple(c for c in combined if c is not None))


def retention_trend(query: CohortQuery, n: int, counts: CohortCounts) -> RetentionTrend:
    """retention(cohort, n) for every cohort of the query, in cohort order."""
    points = []
    for start in cohort_starts(query.first, query.last, query.granularity):
        end = period_end(start, 0, query.granularity)
        cell = _cell(query, counts, start, n)
        points.append(TrendPoint(start, end, counts.sizes.get(start, 0), cell))
    combined = _combine(n, (p.cell for p in points if p.cell is not None))
    return RetentionTrend(n, tuple(points), combined)


def count_cohorts(
    signups: Mapping[str, Signup],
    user_days: Mapping[str, Sequence[date]],
    query: CohortQuery,
    *,
    periods: range | None = None,
) -> CohortCounts:
    """The counts of `query` from signups and activity days (what the read model's SQL does).

    `periods` limits the ON_DAY tally to the periods wanted (None: all); ON_OR_AFTER
    needs every later period, so it is not limited.
    """
    sizes: dict[date, int] = defaultdict(int)
    tally: dict[tuple[date, int], int] = defaultdict(int)
    for user, signup in signups.items():
        if not query.admits(signup):
            continue
        start = cohort_start(signup.day, query.granularity)
        sizes[start] += 1
        active = {
            period_of(start, d, query.granularity)
            for d in user_days.get(user, ())
            if start <= d <= query.as_of
        }
        if query.mode is RetentionMode.ON_OR_AFTER:
            if active:
                tally[(start, max(active))] += 1
            continue
        for p in active:
            if periods is None or p in periods:
                tally[(start, p)] += 1
    return CohortCounts(query.mode, dict(sizes), dict(tally))


def day_retention_over_signups(
    signups: Mapping[str, Signup],
    user_days: Mapping[str, Sequence[date]],
    first: date,
    last: date,
    n: int,
) -> tuple[int, int]:
    """D-n ON_DAY retention over the signups with signup_day in [first, last].

    Returns (retained users, signups): the users active on signup_day + n, over all
    signups of the range (spec "D7 / D30 over a signup range"). The caller picks a range
    whose day n has elapsed (the KPI windows do); a zero denominator is the caller's
    absent value.
    """
    retained = 0
    total = 0
    for user, signup in signups.items():
        if not first <= signup.day <= last:
            continue
        total += 1
        # n == 0: the signup is itself activity, whatever the activity days say.
        if n == 0 or signup.day + timedelta(days=n) in user_days.get(user, ()):
            retained += 1
    return retained, total
