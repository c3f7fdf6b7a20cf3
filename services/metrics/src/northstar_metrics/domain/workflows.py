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
