"""Workflow statistics per period and the daily runs series equal the brute-force reference."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.workflows import (
    Granularity,
    WorkflowStats,
    daily_runs,
    periods,
    stats,
    tallies,
)

from ..reference import Ev, dedup
from ..reference_activation import daily_runs as reference_daily_runs
from ..reference_activation import workflows

START = datetime(2026, 1, 26, tzinfo=UTC)
US = 1_000_000


def at(day: int, seconds: int = 0) -> int:
    return int((START + timedelta(days=day, seconds=seconds)).timestamp()) * US


def rows_of(events: list[Ev]) -> list[EventRow]:
    return [
        EventRow(e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, json.loads(e.properties))
        for e in dedup(events)
    ]


def as_tuple(p: WorkflowStats) -> tuple:
    return (
        p.period_start.isoformat(),
        p.first.isoformat(),
        p.last.isoformat(),
        p.runs,
        p.successful_runs,
        p.failed_runs,
        p.error_rate,
        p.active_workflows,
        p.runs_per_active_workflow,
    )


RUN_PROPERTIES = st.sampled_from(
    [
        {"status": "success", "workflow_id": "w1"},
        {"status": "success", "workflow_id": "w2"},
        {"status": "failed", "workflow_id": "w1"},
        {"status": "failed", "workflow_id": "w3"},
        {"status": "success"},
        {"status": "failed", "workflow_id": ""},
        {"status": "success", "workflow_id": 7},
        {"status": "ok", "workflow_id": "w4"},
        {"status": None, "workflow_id": "w5"},
        {"workflow_id": "w6"},
    ]
)

events_strategy = st.lists(
    st.builds(
        Ev,
        event_id=st.sampled_from([f"e{i}" for i in range(50)]),
        event=st.sampled_from(["workflow.run", "workflow.run", "workflow.created", "page.view"]),
        user_id=st.sampled_from(["", "u1", "u2"]),
        org_id=st.sampled_from(["", "o1"]),
        timestamp_us=st.builds(at, st.integers(-3, 80), st.integers(0, 86_399)),
        properties=RUN_PROPERTIES.map(json.dumps),
    ),
    min_size=0,
    max_size=80,
)
RANGES = st.tuples(st.integers(0, 60), st.integers(0, 40)).map(
    lambda t: (START.date() + timedelta(days=t[0]), START.date() + timedelta(days=t[0] + t[1]))
)


@settings(max_examples=400, deadline=None)
@given(
    events=events_strategy,
    span=RANGES,
    granularity=st.sampled_from(list(Granularity)),
    shuffle=st.randoms(),
)
def test_periods_and_total_match_the_reference(
    events: list[Ev], span: tuple[date, date], granularity: Granularity, shuffle: random.Random
) -> None:
    first, last = span
    rows = rows_of(events)
    shuffle.shuffle(rows)
    counted = tallies(rows)
    expected_periods, expected_total = workflows(events, first, last, granularity.value)
    assert [as_tuple(p) for p in periods(counted, first, last, granularity)] == expected_periods
    assert as_tuple(stats(counted, first, first, last)) == expected_total


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, span=RANGES)
def test_daily_runs_match_the_reference(events: list[Ev], span: tuple[date, date]) -> None:
    first, last = span
    assert daily_runs(rows_of(events), first, last) == reference_daily_runs(events, first, last)


def test_runs_without_a_workflow_or_a_valid_status() -> None:
    events = [
        Ev("a", "workflow.run", "u1", "o1", at(0), json.dumps({"status": "success"})),
        Ev(
            "b",
            "workflow.run",
            "u1",
            "",
            at(0),
            json.dumps({"status": "failed", "workflow_id": "w"}),
        ),
        Ev(
            "c",
            "workflow.run",
            "",
            "o1",
            at(0),
            json.dumps({"status": "bogus", "workflow_id": "x"}),
        ),
    ]
    day = START.date()
    (only,) = periods(tallies(rows_of(events)), day, day, Granularity.DAY)
    assert as_tuple(only) == (
        day.isoformat(),
        day.isoformat(),
        day.isoformat(),
        2,
        1,
        1,
        0.5,
        1,
        2.0,
    )
    empty = stats([], day, day, day)
    assert (empty.runs, empty.error_rate, empty.runs_per_active_workflow) == (0, None, None)


def test_week_and_month_periods_are_clipped_to_the_range() -> None:
    first, last = date(2026, 1, 28), date(2026, 3, 3)  # a Wednesday to a Tuesday
    weeks = periods([], first, last, Granularity.WEEK)
    assert (weeks[0].period_start, weeks[0].first, weeks[0].last) == (
        date(2026, 1, 26),
        date(2026, 1, 28),
        date(2026, 2, 1),
    )
    assert (weeks[-1].period_start, weeks[-1].last) == (date(2026, 3, 2), date(2026, 3, 3))
    months = periods([], first, last, Granularity.MONTH)
    assert [(p.period_start, p.first, p.last) for p in months] == [
        (date(2026, 1, 1), date(2026, 1, 28), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 1), date(2026, 3, 3)),
    ]
    december = periods([], date(2025, 12, 30), date(2026, 1, 2), Granularity.MONTH)
    assert [p.period_start for p in december] == [date(2025, 12, 1), date(2026, 1, 1)]
