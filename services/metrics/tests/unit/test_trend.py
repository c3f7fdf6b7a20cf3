"""Trends equal the brute-force reference: buckets, measures, breakdown ranking, $other, $none."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any

import orjson
import pytest
from google.protobuf import struct_pb2
from hypothesis import event as hypothesis_event
from hypothesis import given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import filters_pb2
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.filters import PropertyFilter, filters_from_proto
from northstar_metrics.domain.trend import (
    Interval,
    Measure,
    SeriesKind,
    Trend,
    TrendQuery,
    buckets,
    trend,
)

from ..reference import Ev, dedup
from ..reference_trend import RefSeries
from ..reference_trend import trend as reference_trend

START = date(2026, 1, 20)
US = 1_000_000
INTERVALS = {
    "hour": Interval.HOUR,
    "day": Interval.DAY,
    "week": Interval.WEEK,
    "month": Interval.MONTH,
}
MEASURES = {
    "count": Measure.EVENT_COUNT,
    "unique": Measure.UNIQUE_USERS,
    "sum": Measure.SUM,
    "avg": Measure.AVERAGE,
    "min": Measure.MIN,
    "max": Measure.MAX,
}
_ids = iter(range(10**9))


def at(day: int, seconds: int = 0, micros: int = 0) -> int:
    """Microseconds of START + day days + seconds + micros, UTC."""
    moment = datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=day)
    return int(moment.timestamp()) * US + seconds * US + micros


def ev(day: int, seconds: int = 0, user: str = "u1", name: str = "purchase", **props: Any) -> Ev:
    """An event with a fresh id."""
    return Ev(f"x{next(_ids)}", name, user, "", at(day, seconds), json.dumps(props))


def rows_of(events: list[Ev]) -> list[EventRow]:
    """What the event store holds: the first event of each id, in any order."""
    return [
        EventRow(
            e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, orjson.loads(e.properties)
        )
        for e in dedup(events)
    ]


def flat(result: Trend) -> tuple[list[str], list[RefSeries]]:
    """The domain answer in the reference's shape."""
    kinds = {
        SeriesKind.ALL: "all",
        SeriesKind.VALUE: "value",
        SeriesKind.OTHER: "other",
        SeriesKind.NONE: "none",
    }
    return [b.label for b in result.buckets], [
        RefSeries(
            kinds[s.kind],
            s.value,
            [None if p is None else float(p) for p in s.points],
            None if s.total is None else float(s.total),
        )
        for s in result.series
    ]


def run(
    events: list[Ev],
    first: date,
    last: date,
    interval: str,
    measure: str,
    *,
    event: str | None = None,
    prop: str | None = None,
    breakdown: str | None = None,
    filters: tuple[PropertyFilter, ...] = (),
) -> tuple[list[str], list[RefSeries]]:
    """The domain trend of raw events, flattened."""
    query = TrendQuery(first, last, INTERVALS[interval], MEASURES[measure], event, prop, breakdown)
    return flat(trend(rows_of(events), query, filters))


# --- generated event sets against the reference ---------------------------------------------

BREAKDOWN_VALUES: list[Any] = [f"v{i:02d}" for i in range(30)] + [
    1,
    1.0,
    "1",
    2.5,
    True,
    False,
    None,
    [1, "a"],
    {"b": 1, "a": 2.0},
    "$none",
    "$other",
    "é",
    "Z",
]
AMOUNTS: list[Any] = [
    0,
    1,
    2,
    -3,
    7,
    0.1,
    0.2,
    2.5,
    -0.5,
    1e20,
    10**18,
    True,
    False,
    "12",
    None,
    [1],
]


@st.composite
def events_strategy(draw: st.DrawFn) -> list[Ev]:
    # Wide sets: many events, almost all with a breakdown value, so that over 25 values
    # survive the filters and `$other` appears.
    wide = draw(st.booleans())
    n = draw(st.integers(60, 160) if wide else st.integers(0, 60))
    out = []
    for _ in range(n):
        props: dict[str, Any] = {}
        if draw(st.integers(0, 9)) < (9 if wide else 5):
            props["plan"] = draw(st.sampled_from(BREAKDOWN_VALUES))
        if draw(st.integers(0, 3)):
            props["amount"] = draw(st.sampled_from(AMOUNTS))
        if draw(st.booleans()):
            props["tier"] = draw(st.sampled_from(["gold", "silver"]))
        out.append(
            Ev(
                event_id=f"e{draw(st.integers(0, 200))}",  # repeats: duplicates, first stands
                event=draw(st.sampled_from(["purchase", "page.view"])),
                user_id=draw(st.sampled_from(["", "u1", "u2", "u3", "u4", "u5", "u6"])),
                org_id="",
                timestamp_us=at(
                    draw(st.integers(-2, 64)),
                    draw(st.integers(0, 86_399)),
                    draw(st.sampled_from([0, 1, 999_999])),
                ),
                properties=json.dumps(props),
            )
        )
    return out


def event_(happened: bool, what: str) -> None:
    """Label generated examples so the statistics show the cases are covered."""
    hypothesis_event(what if happened else f"no {what}")


def amount_positive(props: dict[str, Any]) -> bool:
    amount = props.get("amount")
    return type(amount) in (int, float) and amount > 0


FILTERS: dict[str, tuple[Any, ...]] = {
    "none": ((), lambda _: True),
    "amount>0": (
        (
            filters_pb2.PropertyFilter(
                property="amount",
                operator=filters_pb2.FILTER_OPERATOR_GREATER_THAN,
                values=[struct_pb2.Value(number_value=0)],
            ),
        ),
        amount_positive,
    ),
    "tier=gold": (
        (
            filters_pb2.PropertyFilter(
                property="tier",
                operator=filters_pb2.FILTER_OPERATOR_EQUALS,
                values=[struct_pb2.Value(string_value="gold")],
            ),
        ),
        lambda p: p.get("tier") == "gold",
    ),
}


@settings(max_examples=300, deadline=None)
@given(
    events=events_strategy(),
    interval=st.sampled_from(list(INTERVALS)),
    measure=st.sampled_from(list(MEASURES)),
    offset=st.integers(-1, 10),
    length=st.integers(0, 50),
    event=st.sampled_from([None, "purchase"]),
    breakdown=st.sampled_from([None, "plan", "plan", "amount"]),
    filter_name=st.sampled_from(list(FILTERS)),
    seed=st.integers(0, 1000),
)
def test_trend_equals_reference(
    events: list[Ev],
    interval: str,
    measure: str,
    offset: int,
    length: int,
    event: str | None,
    breakdown: str | None,
    filter_name: str,
    seed: int,
) -> None:
    if interval == "hour":
        length = min(length, 2)
    first = START + timedelta(days=offset)
    last = first + timedelta(days=length)
    prop = "amount" if measure in ("sum", "avg", "min", "max") else None
    protos, keep = FILTERS[filter_name]
    arrival = list(events)
    random.Random(seed).shuffle(arrival)  # late events: arrival order must not matter
    expected = reference_trend(
        arrival,
        first=first,
        last=last,
        interval=interval,
        measure=measure,
        event=event,
        prop=prop,
        breakdown=breakdown,
        keep=keep,
    )
    # The store keeps the first arrival of each id; the domain reads its rows in any order.
    rows = rows_of(arrival)
    random.Random(seed + 1).shuffle(rows)
    query = TrendQuery(first, last, INTERVALS[interval], MEASURES[measure], event, prop, breakdown)
    assert flat(trend(rows, query, filters_from_proto(protos))) == expected
    kinds = {s.kind for s in expected[1]}
    event_("other" in kinds, "has $other")
    event_("none" in kinds, "has $none")


# --- the spec's cases, by hand ---------------------------------------------------------------


def test_ties_in_ranking_are_broken_by_value_in_string_order() -> None:
    events = [ev(0, plan="b"), ev(0, plan="a"), ev(1, plan="c"), ev(1, plan="B"), ev(2, plan="c")]
    _, series = run(events, START, START + timedelta(days=2), "day", "count", breakdown="plan")
    assert [(s.kind, s.value, s.points, s.total) for s in series] == [
        ("value", "c", [0.0, 1.0, 1.0], 2.0),
        ("value", "B", [0.0, 1.0, 0.0], 1.0),  # "B" < "a" in code point order
        ("value", "a", [1.0, 0.0, 0.0], 1.0),
        ("value", "b", [1.0, 0.0, 0.0], 1.0),
    ]


def test_values_beyond_the_top_25_are_other_and_missing_ones_none() -> None:
    events = [ev(0, plan=f"p{i:02d}") for i in range(27)]
    events += [ev(0, plan="p26"), ev(1, plan="p05"), ev(1), ev(1, plan=None), ev(1, user="u2")]
    _, series = run(events, START, START + timedelta(days=1), "day", "count", breakdown="plan")
    rest = [f"p{i:02d}" for i in range(25) if i != 5][:23]
    assert [s.value for s in series] == ["p05", "p26", *rest, "$other", "$none"]
    other = series[-2]
    assert (other.kind, other.points, other.total) == ("other", [2.0, 0.0], 2.0)  # p23, p24
    none = series[-1]
    assert (none.kind, none.points, none.total) == ("none", [0.0, 3.0], 3.0)


def test_none_never_takes_a_top_25_place() -> None:
    events = [ev(0, plan=f"p{i:02d}") for i in range(25)] + [ev(0) for _ in range(5)]
    _, series = run(events, START, START, "day", "count", breakdown="plan")
    assert len(series) == 26
    assert [s.kind for s in series[:25]] == ["value"] * 25
    assert (series[25].kind, series[25].total) == ("none", 5.0)


def test_unique_users_rank_and_total_over_the_range_not_a_sum_of_buckets() -> None:
    events = [ev(d, user="u1", plan="a") for d in range(4)]  # 4 bucket-users, 1 user
    events += [ev(0, user="u2", plan="b"), ev(0, user="u3", plan="b"), ev(0, user="", plan="b")]
    _, series = run(events, START, START + timedelta(days=3), "day", "unique", breakdown="plan")
    assert [(s.value, s.points, s.total) for s in series] == [
        ("b", [2.0, 0.0, 0.0, 0.0], 2.0),
        ("a", [1.0, 1.0, 1.0, 1.0], 1.0),
    ]


def test_empty_buckets_are_zero_for_sums_and_absent_for_average_min_max() -> None:
    events = [ev(0, amount=4), ev(0, amount=1), ev(2, amount=2.5)]
    last = START + timedelta(days=3)
    expected = {
        "count": [2.0, 0.0, 1.0, 0.0],
        "sum": [5.0, 0.0, 2.5, 0.0],
        "avg": [2.5, None, 2.5, None],
        "min": [1.0, None, 2.5, None],
        "max": [4.0, None, 2.5, None],
    }
    for measure, points in expected.items():
        prop = None if measure == "count" else "amount"
        _, series = run(events, START, last, "day", measure, prop=prop)
        assert series[0].points == points, measure


def test_bools_and_strings_are_not_numbers() -> None:
    events = [ev(0, amount=True), ev(0, amount="12"), ev(0, amount=3), ev(0, amount=None), ev(0)]
    for measure, total in [("sum", 3.0), ("avg", 3.0), ("min", 3.0), ("max", 3.0)]:
        _, series = run(events, START, START, "day", measure, prop="amount")
        assert series[0].total == total, measure
    only_bools = [ev(0, amount=True), ev(0, amount=False)]
    _, series = run(only_bools, START, START, "day", "avg", prop="amount")
    assert (series[0].points, series[0].total) == ([None], None)
    _, series = run(only_bools, START, START, "day", "sum", prop="amount")
    assert (series[0].points, series[0].total) == ([0.0], 0.0)


def test_sums_and_averages_are_exact() -> None:
    events = [ev(0, amount=0.1), ev(0, amount=0.2), ev(0, amount=0.3), ev(0, amount=10**17 + 1)]
    _, series = run(events, START, START, "day", "sum", prop="amount")
    # the decimals as written, summed exactly, rounded once: 0.1 + 0.2 is 0.3 here
    assert series[0].total == float(Fraction(10**17 + 1) + Fraction(6, 10))
    _, series = run(
        [ev(0, amount=0.1), ev(0, amount=0.2)], START, START, "day", "sum", prop="amount"
    )
    assert series[0].total == 0.3  # not 0.30000000000000004, the sum of the doubles
    events = [ev(0, amount=1), ev(0, amount=2), ev(0, amount=2)]
    _, series = run(events, START, START, "day", "avg", prop="amount")
    assert series[0].total == 5 / 3


def test_numbers_and_equal_spellings_share_one_breakdown_value() -> None:
    events = [ev(0, plan=1), ev(0, plan=1.0), ev(0, plan="1"), ev(0, plan=2.50), ev(0, plan=True)]
    _, series = run(events, START, START, "day", "count", breakdown="plan")
    assert [(s.value, s.total) for s in series] == [("1", 3.0), ("2.5", 1.0), ("true", 1.0)]


def test_min_max_average_rank_absent_values_last() -> None:
    events = [ev(0, plan="a", amount="x"), ev(0, plan="b", amount=-1), ev(0, plan="c", amount=5)]
    _, series = run(events, START, START, "day", "max", prop="amount", breakdown="plan")
    assert [(s.value, s.total) for s in series] == [("c", 5.0), ("b", -1.0), ("a", None)]


def test_week_and_month_buckets_are_calendar_periods_clipped_to_the_range() -> None:
    # 2026-01-20 is a Tuesday.
    weeks, _ = buckets(date(2026, 1, 20), date(2026, 2, 2), Interval.WEEK)
    assert [(b.label, b.first.isoformat(), b.last.isoformat()) for b in weeks] == [
        ("2026-01-19", "2026-01-20", "2026-01-25"),
        ("2026-01-26", "2026-01-26", "2026-02-01"),
        ("2026-02-02", "2026-02-02", "2026-02-02"),
    ]
    months, _ = buckets(date(2025, 12, 31), date(2026, 2, 1), Interval.MONTH)
    assert [(b.label, b.first.isoformat(), b.last.isoformat()) for b in months] == [
        ("2025-12", "2025-12-31", "2025-12-31"),
        ("2026-01", "2026-01-01", "2026-01-31"),
        ("2026-02", "2026-02-01", "2026-02-01"),
    ]


def test_hour_buckets_cover_whole_days_and_the_range_edges_are_exact() -> None:
    events = [
        Ev("a", "x", "u1", "", at(0) - 1),  # the microsecond before the range
        Ev("b", "x", "u1", "", at(0)),
        Ev("c", "x", "u1", "", at(0, 3599, 999_999)),
        Ev("d", "x", "u1", "", at(0, 3600)),
        Ev("e", "x", "u1", "", at(1) - 1),
        Ev("f", "x", "u1", "", at(1)),  # the microsecond after the range
    ]
    labels, series = run(events, START, START, "hour", "count")
    assert len(labels) == 24
    assert labels[0] == "2026-01-20T00:00:00Z" and labels[23] == "2026-01-20T23:00:00Z"
    assert series[0].points == [2.0, 1.0] + [0.0] * 21 + [1.0]
    assert series[0].total == 4.0


@pytest.mark.parametrize("interval", list(INTERVALS))
def test_no_events_is_one_all_series_of_zeros_or_no_breakdown_series(interval: str) -> None:
    labels, series = run([], START, START + timedelta(days=1), interval, "count")
    assert series == [RefSeries("all", "", [0.0] * len(labels), 0.0)]
    _, series = run([], START, START, interval, "count", breakdown="plan")
    assert series == []


@settings(max_examples=150, deadline=None)
@given(
    events=events_strategy(),
    interval=st.sampled_from(["day", "week", "month"]),
    measure=st.sampled_from(list(MEASURES)),
    seed=st.integers(0, 1000),
)
def test_wide_breakdowns_with_other_equal_reference(
    events: list[Ev], interval: str, measure: str, seed: int
) -> None:
    # The whole generated span, no filter: most wide sets have over 25 values.
    first, last = START - timedelta(days=2), START + timedelta(days=64)
    prop = "amount" if measure in ("sum", "avg", "min", "max") else None
    expected = reference_trend(
        events,
        first=first,
        last=last,
        interval=interval,
        measure=measure,
        prop=prop,
        breakdown="plan",
    )
    rows = rows_of(events)
    random.Random(seed).shuffle(rows)
    query = TrendQuery(first, last, INTERVALS[interval], MEASURES[measure], None, prop, "plan")
    assert flat(trend(rows, query, ())) == expected
    event_("other" in {s.kind for s in expected[1]}, "has $other")
