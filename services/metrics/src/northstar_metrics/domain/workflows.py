"""Workflow statistics per period (spec/metrics.md, Workflows).

Readings of the spec where it is silent, chosen as an analyst would expect:

- A run is a `workflow.run` whose `status` is the string `success` or `failed`; any other
  run (no status, another value, a non-string) is left out of every number here, as
  events.md says for workflow statistics. `org_id` and `user_id` are not needed.
- A run without a `workflow_id` (absent, empty, or not a string) still counts in runs,
  successful and failed runs and the error rate, but adds no active workflow; so
  `runs_per_active_workflow` is runs / active workflows as the spec writes it, and is
  absent when no run names a workflow.
- A query's periods are the days, ISO weeks (Monday first) or calendar months that overlap
  `[first, last]`; each counts only the days of the range, so the first and last may be
  partial, and each says which days it covers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.ratios import ratio

WORKFLOW_RUN = "workflow.run"
SUCCESS = "success"
FAILED = "failed"


class Granularity(Enum):
    """The length of a workflows period."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class RunTally:
    """The runs of one day and one workflow (None: runs naming no workflow)."""

    day: date
    workflow_id: str | None
    successful: int
    failed: int


@dataclass(frozen=True, slots=True)
class WorkflowStats:
    """The workflow statistics of the days [first, last] of the period at `period_start`."""

    period_start: date
    first: date
    last: date
    runs: int
    successful_runs: int
    failed_runs: int
    error_rate: float | None
    active_workflows: int
    runs_per_active_workflow: float | None


def run_status(row: EventRow) -> str | None:
    """`success` or `failed` for a run with a valid status; None for anything else."""
    if row.event != WORKFLOW_RUN:
        return None
    status = row.properties.get("status")
    return status if status in (SUCCESS, FAILED) and isinstance(status, str) else None


def workflow_id_of(row: EventRow) -> str | None:
    """The run's `workflow_id` when it is a non-empty string."""
    value = row.properties.get("workflow_id")
    return value if isinstance(value, str) and value else None


def tallies(rows: Iterable[EventRow]) -> list[RunTally]:
    """The valid-status runs of rows, counted per day and workflow."""
    counts: dict[tuple[date, str | None], list[int]] = {}
    for r in rows:
        status = run_status(r)
        if status is None:
            continue
        c = counts.setdefault((r.day, workflow_id_of(r)), [0, 0])
        c[0 if status == SUCCESS else 1] += 1
    return [RunTally(day, wf, s, f) for (day, wf), (s, f) in counts.items()]


def period_start(day: date, granularity: Granularity) -> date:
    """The first day of the period holding `day`."""
    if granularity is Granularity.WEEK:
        return day - timedelta(days=day.weekday())
    if granularity is Granularity.MONTH:
        return day.replace(day=1)
    return day


def next_period(start: date, granularity: Granularity) -> date:
    """The first day of the period after the one starting at `start`."""
    if granularity is Granularity.WEEK:
        return start + timedelta(days=7)
    if granularity is Granularity.MONTH:
        return date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return start + timedelta(days=1)


def stats(tallies: Iterable[RunTally], start: date, first: date, last: date) -> WorkflowStats:
    """The statistics of the tallies whose day is in [first, last]."""
    successful = failed = 0
    workflows: set[str] = set()
    for t in tallies:
        if first <= t.day <= last:
            successful += t.successful
            failed += t.failed
            if t.workflow_id is not None and t.successful + t.failed:
                workflows.add(t.workflow_id)
    return counted_stats(
        start, first, last, successful=successful, failed=failed, active=len(workflows)
    )


def counted_stats(
    start: date, first: date, last: date, *, successful: int, failed: int, active: int
) -> WorkflowStats:
    """The statistics of the days [first, last] from their counts."""
    runs = successful + failed
    return WorkflowStats(
        period_start=start,
        first=first,
        last=last,
        runs=runs,
        successful_runs=successful,
        failed_runs=failed,
        error_rate=ratio(failed, runs),
        active_workflows=active,
        runs_per_active_workflow=ratio(runs, active),
    )


def clipped_periods(
    first: date, last: date, granularity: Granularity
) -> list[tuple[date, date, date]]:
    """(period start, first day, last day) of every period overlapping [first, last], clipped."""
    out = []
    start = period_start(first, granularity)
    while start <= last:
        following = next_period(start, granularity)
        out.append((start, max(start, first), min(following - timedelta(days=1), last)))
        start = following
    return out


# The rows one workflow adds to the `workflow_spans` read model (kind, x, y): its first
# and its last run day, each gap between consecutive run days that has a day inside,
# and each run day. Summed over workflows they answer "workflows with a run in [s, e]"
# for any range: see `active_workflows`.
FIRST_DAY, LAST_DAY, GAP, RUN_DAY = 0, 1, 2, 3


def span_rows(days: Sequence[date]) -> dict[tuple[int, date, date], int]:
    """What one workflow with these (sorted, distinct) run days adds to `workflow_spans`."""
    if not days:
        return {}
    rows = {(FIRST_DAY, days[0], days[0]): 1, (LAST_DAY, days[-1], days[-1]): 1}
    for a, b in itertools.pairwise(days):
        if (b - a).days >= 2:
            rows[(GAP, a, b)] = 1
    for d in days:
        rows[(RUN_DAY, d, d)] = 1
    return rows


def active_workflows(first_by_e: int, last_before_s: int, gaps_over: int) -> int:
    """Workflows with a run in [s, e], from the summed `span_rows`.

    `first_by_e`: workflows whose first run day is <= e; `last_before_s`: those whose
    last run day is < s; `gaps_over`: gaps (x, y) with x < s and y > e. A workflow that
    started by e and has no run in [s, e] either ended before s or has exactly one gap
    over [s, e].
    """
    return first_by_e - last_before_s - gaps_over


def periods(
    tallies: Sequence[RunTally], first: date, last: date, granularity: Granularity
) -> list[WorkflowStats]:
    """The statistics of every period overlapping [first, last], clipped to it, in order."""
    by_period: dict[date, list[RunTally]] = {}
    for t in tallies:
        if first <= t.day <= last:
            by_period.setdefault(period_start(t.day, granularity), []).append(t)
    return [
        stats(by_period.get(start, ()), start, a, b)
        for start, a, b in clipped_periods(first, last, granularity)
    ]


def daily_runs(rows: list[EventRow], first: date, last: date) -> dict[date, tuple[int, int]]:
    """(runs, failed runs) for every day of [first, last], 0 on days without runs.

    Only runs with a valid status count, as in the Workflows statistics.
    """
    out = {first + timedelta(days=i): (0, 0) for i in range((last - first).days + 1)}
    for r in rows:
        status = run_status(r)
        if status is None or r.day not in out:
            continue
        runs, failed = out[r.day]
        out[r.day] = (runs + 1, failed + (status == FAILED))
    return out
