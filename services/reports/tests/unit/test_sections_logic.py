"""The pure parts of a report's sections: spans, windows, key metrics, alerts, experiments."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from northstar.reports.v1 import reports_pb2
from northstar_reports.adapters.sections import ReportPeriod
from northstar_reports.domain.key_metrics import (
    KEY_METRIC_NAMES,
    ActiveDay,
    MetricsReadings,
    RevenueDay,
    RunCounts,
    Span,
    change,
    key_metrics,
    spark_periods,
)
from northstar_reports.domain.period_activity import (
    FIRING,
    RESOLVED,
    AlertTransition,
    ExperimentChange,
    Window,
    concluded_in,
    firing_at,
    local_midnight_us,
    period_window,
    status_at,
    transitions_in,
)

D = dt.date
UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def _us(when: dt.datetime) -> int:
    return int(when.timestamp()) * 1_000_000


# --- spans and windows ----------------------------------------------------------------


def test_a_day_sparkline_is_the_14_days_ending_with_it() -> None:
    periods = spark_periods(Span(D(2026, 3, 1), D(2026, 3, 1)), weekly=False)
    assert len(periods) == 14
    assert periods[0] == Span(D(2026, 2, 16), D(2026, 2, 16))
    assert periods[-1] == Span(D(2026, 3, 1), D(2026, 3, 1))


def test_a_week_sparkline_is_the_8_iso_weeks_ending_with_it() -> None:
    periods = spark_periods(Span(D(2026, 11, 30), D(2026, 12, 6)), weekly=True)
    assert [p.first for p in periods][:2] == [D(2026, 10, 12), D(2026, 10, 19)]
    assert all(p.first.weekday() == 0 and (p.last - p.first).days == 6 for p in periods)
    assert periods[-1] == Span(D(2026, 11, 30), D(2026, 12, 6))


@given(st.dates(D(1990, 1, 1), D(2100, 1, 1)), st.booleans())
def test_sparkline_periods_tile_the_span_without_gap(day: dt.date, weekly: bool) -> None:
    monday = day - dt.timedelta(days=day.weekday())
    period = Span(monday, monday + dt.timedelta(days=6)) if weekly else Span(day, day)
    periods = spark_periods(period, weekly=weekly)
    assert periods[-1] == period
    for before, after in itertools.pairwise(periods):
        assert after.first == before.last + dt.timedelta(days=1)
        assert len(after.dates) == len(period.dates)


def test_a_span_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        Span(D(2026, 1, 2), D(2026, 1, 1))


def test_a_paris_day_is_its_local_midnights() -> None:
    window = period_window(D(2026, 7, 1), D(2026, 7, 1), PARIS)
    assert window.start_us == _us(dt.datetime(2026, 6, 30, 22, tzinfo=dt.UTC))
    assert window.end_us == _us(dt.datetime(2026, 7, 1, 22, tzinfo=dt.UTC))


def test_a_daylight_saving_day_is_23_or_25_hours_long() -> None:
    spring = period_window(D(2026, 3, 29), D(2026, 3, 29), PARIS)
    autumn = period_window(D(2026, 10, 25), D(2026, 10, 25), PARIS)
    assert spring.end_us - spring.start_us == 23 * 3600 * 1_000_000
    assert autumn.end_us - autumn.start_us == 25 * 3600 * 1_000_000


def test_a_skipped_local_midnight_is_the_days_first_instant() -> None:
    # Santiago jumps from 24:00 to 01:00 on 2026-09-06: the day starts at 04:00 UTC.
    start = local_midnight_us(D(2026, 9, 6), ZoneInfo("America/Santiago"))
    assert start == _us(dt.datetime(2026, 9, 6, 4, tzinfo=dt.UTC))


@given(
    st.dates(D(2000, 1, 1), D(2040, 1, 1)),
    st.integers(0, 6),
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Apia"]),
)
def test_consecutive_periods_share_their_boundary(day: dt.date, length: int, zone: str) -> None:
    tz = ZoneInfo(zone)
    last = day + dt.timedelta(days=length)
    this = period_window(day, last, tz)
    following = period_window(last + dt.timedelta(days=1), last + dt.timedelta(days=1), tz)
    assert this.end_us == following.start_us
    assert this.start_us < this.end_us


def test_a_report_period_reads_the_periods_zone_else_the_schedules() -> None:
    schedule = reports_pb2.Schedule(time_zone="Europe/Paris")
    period = reports_pb2.Period(
        unit=reports_pb2.PERIOD_UNIT_WEEK, start_date="2026-11-30", end_date="2026-12-06"
    )
    at = ReportPeriod.of(schedule, period)
    assert at.weekly
    assert at.window == period_window(D(2026, 11, 30), D(2026, 12, 6), PARIS)
    period.time_zone = "UTC"
    assert ReportPeriod.of(schedule, period).window.start_us == _us(
        dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    )
    with pytest.raises(ValueError, match="malformed period"):
        ReportPeriod.of(schedule, reports_pb2.Period(start_date="2026-13-01", end_date="x"))
    with pytest.raises(ValueError, match="malformed period"):
        ReportPeriod.of(
            reports_pb2.Schedule(time_zone="Mars/Olympus"),
            reports_pb2.Period(start_date="2026-01-01", end_date="2026-01-01"),
        )


# --- key metrics ----------------------------------------------------------------------


def test_change_is_relative_and_absent_without_a_nonzero_previous() -> None:
    assert change(3.0, 2.0) == 0.5
    assert change(0.0, 4.0) == -1.0
    assert change(3.0, 0.0) is None
    assert change(None, 2.0) is None
    assert change(2.0, None) is None


def _week_readings(first: dt.date) -> MetricsReadings:
    days = [first + dt.timedelta(days=i) for i in range(14)]
    active = {
        d: ActiveDay(dau=i, wau=10 + i, mau=20 + i, stickiness=None if i % 2 else i / (20 + i))
        for i, d in enumerate(days)
    }
    return MetricsReadings(
        active=active,
        signups={days[0]: 4, days[7]: 6},
        workflows={days[0]: RunCounts(10, 1), days[7]: RunCounts(0, 0)},
        revenue={d: RevenueDay(mrr=100 * i, paying_orgs=i) for i, d in enumerate(days)},
    )


def test_weekly_key_metrics_by_hand() -> None:
    first = D(2026, 11, 23)
    periods = [Span(first, first + dt.timedelta(days=6)), Span(D(2026, 11, 30), D(2026, 12, 6))]
    metrics = {m.name: m for m in key_metrics(periods, _week_readings(first))}
    assert tuple(metrics) == KEY_METRIC_NAMES
    dau = metrics["dau"]
    assert (dau.previous, dau.value) == (3.0, 10.0)  # mean of 0..6, of 7..13
    assert dau.change == pytest.approx(7 / 3)
    assert [d for d, _ in dau.points] == [first, D(2026, 11, 30)]
    assert (metrics["wau"].value, metrics["wau"].previous) == (23.0, 16.0)
    assert (metrics["mau"].value, metrics["mau"].previous) == (33.0, 26.0)
    # Days 7..13 with a stickiness: 8, 10, 12 (the odd ones have none).
    assert metrics["stickiness"].value == pytest.approx((8 / 28 + 10 / 30 + 12 / 32) / 3)
    assert (metrics["signups"].value, metrics["signups"].previous) == (6.0, 4.0)
    assert (metrics["workflow_runs"].value, metrics["workflow_runs"].previous) == (0.0, 10.0)
    error_rate = metrics["workflow_error_rate"]
    assert (error_rate.value, error_rate.previous, error_rate.change) == (None, 0.1, None)
    assert not error_rate.higher_is_better
    assert (metrics["mrr"].value, metrics["mrr"].previous, metrics["mrr"].unit) == (
        1300.0,
        600.0,
        "money",
    )
    assert (metrics["paying_orgs"].value, metrics["paying_orgs"].previous) == (13.0, 6.0)


def test_a_day_missing_from_metrics_answers_is_absent_not_zero() -> None:
    day = D(2026, 12, 1)
    periods = [Span(day, day)]
    empty = MetricsReadings(active={}, signups={}, workflows={}, revenue={})
    for metric in key_metrics(periods, empty):
        assert metric.value is None
        assert metric.previous is None
        assert metric.points == ((day, None),)


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=7, max_size=7))
def test_weekly_dau_is_the_mean_and_stickiness_skips_days_without_one(
    rows: list[tuple[int, int]],
) -> None:
    first = D(2026, 11, 30)
    days = [first + dt.timedelta(days=i) for i in range(7)]
    active = {
        d: ActiveDay(
            dau=min(dau, mau), wau=mau, mau=mau, stickiness=min(dau, mau) / mau if mau else None
        )
        for d, (dau, mau) in zip(days, rows, strict=True)
    }
    readings = MetricsReadings(active=active, signups={}, workflows={}, revenue={})
    metrics = {m.name: m for m in key_metrics([Span(days[0], days[-1])], readings)}
    assert metrics["dau"].value == pytest.approx(sum(a.dau for a in active.values()) / 7)
    ratios = [a.stickiness for a in active.values() if a.stickiness is not None]
    expected = sum(ratios) / len(ratios) if ratios else None
    assert metrics["stickiness"].value == (pytest.approx(expected) if ratios else None)
    assert metrics["mau"].value == float(rows[-1][1])


# --- alerts ---------------------------------------------------------------------------

W = Window(1_000, 2_000)


def test_entries_are_the_windows_fired_and_resolved_oldest_first() -> None:
    ts = [
        AlertTransition("b", 2, FIRING, 1_500),
        AlertTransition("a", 1, "pending", 1_100),
        AlertTransition("a", 1, FIRING, 1_200),
        AlertTransition("a", 1, RESOLVED, 1_999),
        AlertTransition("c", 1, FIRING, 999),
        AlertTransition("c", 1, RESOLVED, 2_000),
    ]
    inside = transitions_in(ts, W)
    assert [(t.rule_id, t.to_status, t.at_us) for t in inside] == [
        ("a", FIRING, 1_200),
        ("b", FIRING, 1_500),
        ("a", RESOLVED, 1_999),
    ]


def test_firing_at_the_end_is_the_latest_transition_before_it() -> None:
    ts = [
        AlertTransition("a", 1, FIRING, 100),  # fired before the window, never resolved
        AlertTransition("b", 1, FIRING, 1_200),
        AlertTransition("b", 1, RESOLVED, 1_300),
        AlertTransition("c", 2, FIRING, 1_500),
        AlertTransition("c", 1, FIRING, 1_500),
        AlertTransition("c", 1, RESOLVED, 1_500),  # same instant: log order decides
        AlertTransition("d", 1, FIRING, 2_000),  # at the end: the next period's
    ]
    assert firing_at(ts, W.end_us) == {("a", 1), ("c", 2)}


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"),
            st.sampled_from([1, 2]),
            st.sampled_from([FIRING, RESOLVED]),
            st.integers(0, 3_000),
        ),
        max_size=30,
    )
)
def test_firing_at_the_end_is_the_start_plus_the_windows_changes(
    raw: list[tuple[str, int, str, int]],
) -> None:
    ts = sorted((AlertTransition(*r) for r in raw), key=lambda t: t.at_us)
    state = firing_at(ts, W.start_us)
    for t in transitions_in(ts, W):
        if t.to_status == FIRING:
            state.add((t.rule_id, t.severity))
        else:
            state.discard((t.rule_id, t.severity))
    assert state == firing_at(ts, W.end_us)


# --- experiments ----------------------------------------------------------------------

HISTORY = [
    ExperimentChange("ExperimentCreated", 100),
    ExperimentChange("ExperimentUpdated", 150),
    ExperimentChange("ExperimentStarted", 200),
    ExperimentChange("ExperimentUpdated", 250),
    ExperimentChange("ExperimentStopped", 300),
    ExperimentChange("ExperimentConcluded", 400),
    ExperimentChange("ExperimentArchived", 500),
]


@pytest.mark.parametrize(
    ("at", "status"),
    [
        (100, None),
        (101, "draft"),
        (200, "draft"),
        (201, "running"),
        (260, "running"),
        (301, "stopped"),
        (401, "concluded"),
        (10_000, "archived"),
    ],
)
def test_an_experiments_status_at_an_instant(at: int, status: str | None) -> None:
    assert status_at(HISTORY, at) == status


def test_concluded_in_a_window_is_its_conclusion_inside_it() -> None:
    assert concluded_in(HISTORY, Window(400, 401))
    assert not concluded_in(HISTORY, Window(300, 400))
    assert not concluded_in(HISTORY, Window(401, 10_000))


@given(
    st.lists(st.sampled_from(["Created", "Updated", "Started", "Stopped"]), max_size=8),
    st.integers(0, 10),
)
def test_status_at_folds_the_history_before_the_instant(types: list[str], cut: int) -> None:
    history = [ExperimentChange(f"Experiment{t}", i) for i, t in enumerate(types)]
    expected = None
    for t in types[:cut]:
        expected = {"Created": "draft", "Started": "running", "Stopped": "stopped"}.get(t, expected)
    assert status_at(history, cut) == expected
