"""Trend through gRPC equals the reference, over the real log and read model."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import filters_pb2, trend_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from ..reference_trend import RefSeries
from ..reference_trend import trend as reference_trend
from .conftest import TENANTS, MetricsUnderTest, auth

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
US = 1_000_000
INTERVALS = {
    "hour": trend_pb2.TREND_INTERVAL_HOUR,
    "day": trend_pb2.TREND_INTERVAL_DAY,
    "week": trend_pb2.TREND_INTERVAL_WEEK,
    "month": trend_pb2.TREND_INTERVAL_MONTH,
}
MEASURES = {
    "count": trend_pb2.TREND_MEASURE_EVENT_COUNT,
    "unique": trend_pb2.TREND_MEASURE_UNIQUE_USERS,
    "sum": trend_pb2.TREND_MEASURE_SUM,
    "avg": trend_pb2.TREND_MEASURE_AVERAGE,
    "min": trend_pb2.TREND_MEASURE_MIN,
    "max": trend_pb2.TREND_MEASURE_MAX,
}
KINDS = {
    trend_pb2.TREND_SERIES_KIND_ALL: "all",
    trend_pb2.TREND_SERIES_KIND_VALUE: "value",
    trend_pb2.TREND_SERIES_KIND_OTHER: "other",
    trend_pb2.TREND_SERIES_KIND_NONE: "none",
}


@pytest.fixture
def metrics(ad_hoc_metrics: MetricsUnderTest) -> MetricsUnderTest:
    """Every test here runs against the columnar copy and against PostgreSQL."""
    return ad_hoc_metrics


def answered_by_copy(m: MetricsUnderTest) -> int:
    """How many trends the service's columnar copy answered (0 without a copy)."""
    return m.copy.answers[("trend", "columnar")] if m.copy is not None else 0


def at(day: int, seconds: int = 0) -> int:
    """Microseconds of START + day days + seconds."""
    return int((START + timedelta(days=day, seconds=seconds)).timestamp()) * US


def day(n: int) -> date:
    """START + n days, as a date."""
    return (START + timedelta(days=n)).date()


def flat(answer: trend_pb2.TrendResponse) -> tuple[list[str], list[RefSeries]]:
    """A response in the reference's shape (checking each point names its bucket)."""
    labels = [b.start for b in answer.buckets]
    series = []
    for s in answer.series:
        assert [p.bucket for p in s.points] == labels
        series.append(
            RefSeries(
                KINDS[s.kind],
                s.breakdown_value,
                [p.value if p.HasField("value") else None for p in s.points],
                s.total if s.HasField("total") else None,
            )
        )
    return labels, series


async def settled(
    m: MetricsUnderTest, tenant: str, position: int, request: trend_pb2.TrendRequest
) -> trend_pb2.TrendResponse:
    """The answer once the read model has reached `position`."""

    async def caught_up() -> trend_pb2.TrendResponse:
        answer = await m.stub.Trend(request, metadata=auth(tenant), timeout=10)
        assert answer.log_position >= position
        return answer

    return await assert_eventually(caught_up, timeout=30)


def request_of(
    first: date,
    last: date,
    interval: str,
    measure: str,
    *,
    event: str = "",
    prop: str = "",
    breakdown: str = "",
    filters: tuple[filters_pb2.PropertyFilter, ...] = (),
) -> trend_pb2.TrendRequest:
    """A TrendRequest from the reference's words."""
    return trend_pb2.TrendRequest(
        from_date=first.isoformat(),
        to_date=last.isoformat(),
        interval=INTERVALS[interval],
        measure=MEASURES[measure],
        event=event,
        property=prop,
        breakdown_property=breakdown,
        filters=filters,
    )


PLANS: list[Any] = [f"p{i:02d}" for i in range(28)] + [1, 1.0, "1", True, None, 2.5, -0.0, 1e20]
AMOUNTS: list[Any] = [0, 3, -2, 0.1, 0.7, 2.5, True, "9", None, 10**15]

events_strategy = st.lists(
    st.builds(
        Ev,
        event_id=st.sampled_from([f"e{i}" for i in range(120)]),  # repeats: duplicates
        event=st.sampled_from(["purchase", "page.view"]),
        user_id=st.sampled_from(["", "u1", "u2", "u3", "u4"]),
        org_id=st.just(""),
        timestamp_us=st.builds(at, st.integers(-3, 45), st.integers(0, 86_399)),
        properties=st.builds(
            lambda plan, amount, keep_plan, keep_amount: json.dumps(
                {
                    **({"plan": plan} if keep_plan else {}),
                    **({"amount": amount} if keep_amount else {}),
                }
            ),
            st.sampled_from(PLANS),
            st.sampled_from(AMOUNTS),
            st.integers(0, 5).map(bool),
            st.integers(0, 3).map(bool),
        ),
    ),
    min_size=0,
    max_size=120,
)


def _filter(prop: str, op: int, *values: struct_pb2.Value) -> filters_pb2.PropertyFilter:
    return filters_pb2.PropertyFilter(property=prop, operator=op, values=values)


def _number(props: dict[str, Any], name: str) -> float | None:
    value = props.get(name)
    return value if type(value) in (int, float) else None


NUM = struct_pb2.Value
# Each filter with an independent reading of its rule over the decoded properties.
FILTERS: dict[str, tuple[tuple[filters_pb2.PropertyFilter, ...], Any]] = {
    "none": ((), lambda _: True),
    "amount>=1": (
        (
            _filter(
                "amount", filters_pb2.FILTER_OPERATOR_GREATER_THAN_OR_EQUAL, NUM(number_value=1)
            ),
        ),
        lambda p: (n := _number(p, "amount")) is not None and n >= 1,
    ),
    "amount<0.7": (
        (_filter("amount", filters_pb2.FILTER_OPERATOR_LESS_THAN, NUM(number_value=0.7)),),
        lambda p: (n := _number(p, "amount")) is not None and n < 0.7,
    ),
    "amount=3": (
        (_filter("amount", filters_pb2.FILTER_OPERATOR_EQUALS, NUM(number_value=3)),),
        lambda p: _number(p, "amount") == 3,
    ),
    "plan!=p01": (
        (_filter("plan", filters_pb2.FILTER_OPERATOR_NOT_EQUALS, NUM(string_value="p01")),),
        lambda p: p.get("plan", 0) != "p01",
    ),
    "plan in (p02, 1, true, null)": (
        (
            _filter(
                "plan",
                filters_pb2.FILTER_OPERATOR_IN,
                NUM(string_value="p02"),
                NUM(number_value=1),
                NUM(bool_value=True),
                NUM(null_value=struct_pb2.NULL_VALUE),
            ),
        ),
        lambda p: (
            "plan" in p
            and (p["plan"] in ("p02", None) or p["plan"] is True or _number(p, "plan") == 1)
        ),
    ),
}


async def test_generated_event_sets_match_the_reference(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS)
    seen: list[int] = []

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        events=events_strategy,
        interval=st.sampled_from(list(INTERVALS)),
        measure=st.sampled_from(list(MEASURES)),
        offset=st.integers(-1, 5),
        length=st.integers(0, 40),
        event=st.sampled_from(["", "purchase"]),
        breakdown=st.sampled_from(["", "plan", "amount"]),
        filter_name=st.sampled_from(list(FILTERS)),
        wide=st.booleans(),
    )
    def run(
        events: list[Ev],
        interval: str,
        measure: str,
        offset: int,
        length: int,
        event: str,
        breakdown: str,
        filter_name: str,
        wide: bool,
    ) -> None:
        tenant = next(tenants)
        if wide:
            # One more event per plan value, users and days spread: over 25 values.
            events = events + [
                Ev(f"w{i}", "purchase", f"u{i % 5}", "", at(i % 7, i), json.dumps({"plan": plan}))
                for i, plan in enumerate(PLANS)
            ]
            offset, length, breakdown, filter_name = -3, 50, "plan", "none"
        if interval == "hour":
            length = min(length, 2)
        first, last = day(offset), day(offset + length)
        prop = "amount" if measure in ("sum", "avg", "min", "max") else ""

        async def check() -> None:
            position = await metrics.append(tenant, events) if events else 0
            request = request_of(
                first,
                last,
                interval,
                measure,
                event=event,
                prop=prop,
                breakdown=breakdown,
                filters=FILTERS[filter_name][0],
            )
            answer = await settled(metrics, tenant, position, request)
            seen.append(len(answer.series))
            assert flat(answer) == reference_trend(
                events,
                first=first,
                last=last,
                interval=interval,
                measure=measure,
                event=event or None,
                prop=prop or None,
                breakdown=breakdown or None,
                keep=FILTERS[filter_name][1],
            )

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    # Hypothesis drives examples synchronously: it runs in a thread and hands
    # each example to the test's event loop, where the service lives.
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)
    assert len(seen) >= 20  # the examples really ran, each through the service
    assert any(series > 25 for series in seen)  # some reached `$other`
    if metrics.copy is not None:  # the counts and unique users came from the copy
        assert answered_by_copy(metrics) >= 5


async def test_breakdown_other_none_late_events_and_duplicates(metrics: MetricsUnderTest) -> None:
    tenant = "t150"
    events = [
        Ev(f"v{i}", "purchase", "u1", "", at(0), json.dumps({"plan": f"p{i:02d}"}))
        for i in range(26)
    ]
    events += [
        Ev("n1", "purchase", "u2", "", at(1), json.dumps({"amount": 3})),
        Ev("n2", "purchase", "u3", "", at(8), json.dumps({"plan": None})),
        Ev("w1", "page.view", "u1", "", at(1), json.dumps({"plan": "p00"})),  # other name
    ]
    position = await metrics.append(tenant, events)
    request = request_of(day(0), day(9), "week", "count", event="purchase", breakdown="plan")
    answer = await settled(metrics, tenant, position, request)
    assert answer.interval == trend_pb2.TREND_INTERVAL_WEEK
    assert answer.measure == trend_pb2.TREND_MEASURE_EVENT_COUNT
    assert [(b.start, b.from_date, b.to_date) for b in answer.buckets] == [
        ("2026-03-02", "2026-03-02", "2026-03-08"),
        ("2026-03-09", "2026-03-09", "2026-03-11"),
    ]
    _, series = flat(answer)
    # 26 values tie at 1: p00..p24 in string order, p25 is $other.
    assert [s.value for s in series] == [f"p{i:02d}" for i in range(25)] + ["$other", "$none"]
    assert series[-2] == RefSeries("other", "$other", [1.0, 0.0], 1.0)
    assert series[-1] == RefSeries("none", "$none", [1.0, 1.0], 2.0)

    # A late event for p25 and p24, and duplicates of v0 (another plan: the first stands).
    late = [
        Ev("late1", "purchase", "u4", "", at(9), json.dumps({"plan": "p25"})),
        Ev("late2", "purchase", "u4", "", at(2), json.dumps({"plan": "p25"})),
        Ev("v0", "purchase", "u1", "", at(0), json.dumps({"plan": "p25"})),
    ]
    position = await metrics.append(tenant, late)
    _, series = flat(await settled(metrics, tenant, position, request))
    assert [s.value for s in series[:2]] == ["p25", "p00"]
    assert series[0] == RefSeries("value", "p25", [2.0, 1.0], 3.0)
    assert series[-2] == RefSeries("other", "$other", [1.0, 0.0], 1.0)  # p24


async def test_absent_and_null_breakdown_values_are_one_none_series(
    metrics: MetricsUnderTest,
) -> None:
    # Hand-computed: an event without the property and one whose property is JSON null are
    # both $none, in one series (counted together, and their users counted once each).
    tenant = "t198"
    events = [
        Ev("a1", "purchase", "u1", "", at(0), json.dumps({"plan": "a"})),
        Ev("n1", "purchase", "u2", "", at(0), json.dumps({})),
        Ev("n2", "purchase", "u3", "", at(0, 60), json.dumps({"plan": None})),
        Ev("n3", "purchase", "u2", "", at(1), json.dumps({"plan": None})),
        Ev("n4", "purchase", "u4", "", at(1), json.dumps({"other": 1})),
    ]
    position = await metrics.append(tenant, events)
    count = request_of(day(0), day(1), "day", "count", event="purchase", breakdown="plan")
    _, series = flat(await settled(metrics, tenant, position, count))
    assert series == [
        RefSeries("value", "a", [1.0, 0.0], 1.0),
        RefSeries("none", "$none", [2.0, 2.0], 4.0),
    ]
    unique = request_of(day(0), day(1), "day", "unique", event="purchase", breakdown="plan")
    _, series = flat(await settled(metrics, tenant, position, unique))
    assert series == [
        RefSeries("value", "a", [1.0, 0.0], 1.0),
        # u2 (absent, then null), u3 (null), u4 (absent): three users over the range.
        RefSeries("none", "$none", [2.0, 2.0], 3.0),
    ]


async def test_unique_users_over_many_values_fold_into_other_exactly(
    metrics: MetricsUnderTest,
) -> None:
    # 28 values, more than the breakdown shows: the users of the values past the top ones
    # are counted once in $other across values and buckets; duplicates and a late event
    # (an earlier day, sent last) change nothing but what they should.
    tenant = "t156"
    events = [
        Ev(f"v{i}", "view", f"u{i % 5}", "", at(i % 3, i), json.dumps({"plan": f"p{i % 28:02d}"}))
        for i in range(84)
    ]
    events += [
        Ev("v3", "view", "u9", "", at(2), json.dumps({"plan": "p99"})),  # duplicate id
        Ev("n1", "view", "u7", "", at(1), json.dumps({"amount": 3})),
        Ev("n2", "view", "", "", at(1), json.dumps({"plan": "p01"})),  # anonymous
    ]
    late = [Ev("late", "view", "u8", "", at(0, 5), json.dumps({"plan": "p27"}))]
    request = request_of(day(0), day(2), "day", "unique", event="view", breakdown="plan")

    def expected(evs: list[Ev]) -> tuple[list[str], list[RefSeries]]:
        return reference_trend(
            evs,
            first=day(0),
            last=day(2),
            interval="day",
            measure="unique",
            event="view",
            breakdown="plan",
        )

    position = await metrics.append(tenant, events)
    before = flat(await settled(metrics, tenant, position, request))
    assert before == expected(events)
    assert [s.value for s in before[1]][-2:] == ["$other", "$none"]
    position = await metrics.append(tenant, late)
    got = flat(await settled(metrics, tenant, position, request))
    assert got == expected(events + late)
    assert got != before


async def test_numeric_measures_leave_empty_buckets_absent(metrics: MetricsUnderTest) -> None:
    tenant = "t151"
    events = [
        Ev("a", "purchase", "u1", "", at(0), json.dumps({"amount": 4})),
        Ev("b", "purchase", "u1", "", at(0, 60), json.dumps({"amount": 0.5})),
        Ev("c", "purchase", "u1", "", at(0, 120), json.dumps({"amount": True})),
        Ev("d", "purchase", "u1", "", at(2), json.dumps({"amount": "7"})),
    ]
    position = await metrics.append(tenant, events)
    expected = {
        "sum": ([4.5, 0.0, 0.0], 4.5),
        "avg": ([2.25, None, None], 2.25),
        "min": ([0.5, None, None], 0.5),
        "max": ([4.0, None, None], 4.0),
    }
    for measure, (points, total) in expected.items():
        request = request_of(day(0), day(2), "day", measure, prop="amount")
        _, series = flat(await settled(metrics, tenant, position, request))
        assert series == [RefSeries("all", "", points, total)], measure


async def test_invalid_requests_name_the_field(metrics: MetricsUnderTest) -> None:
    ok = {"from_date": "2026-03-01", "to_date": "2026-03-31"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**ok, "measure": trend_pb2.TREND_MEASURE_SUM}, "property"),
        ({**ok, "property": "amount"}, "property"),
        ({**ok, "interval": 99}, "interval"),
        ({**ok, "measure": 99}, "measure"),
        ({"from_date": "2026-03-05", "to_date": "2026-03-01"}, "to_date"),
        ({"from_date": "2025-01-01", "to_date": "2026-03-01", "interval": 1}, "to_date"),
        (
            {
                **ok,
                "filters": [
                    filters_pb2.PropertyFilter(
                        property="amount",
                        operator=filters_pb2.FILTER_OPERATOR_LESS_THAN,
                        values=[struct_pb2.Value(string_value="x")],
                    )
                ],
            },
            "filters[0].values[0]",
        ),
    ]
    for fields, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await metrics.stub.Trend(
                trend_pb2.TrendRequest(**fields), metadata=auth("t0"), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        status = rpc_status.from_call(caught.value)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert any(d.Unpack(bad) for d in status.details)
        assert [v.field for v in bad.field_violations] == [field], fields


async def test_defaults_are_day_buckets_of_event_counts(metrics: MetricsUnderTest) -> None:
    tenant = "t152"
    position = await metrics.append(tenant, [Ev("a", "x", "u1", "", at(1))])
    request = trend_pb2.TrendRequest(from_date=day(0).isoformat(), to_date=day(1).isoformat())
    answer = await settled(metrics, tenant, position, request)
    assert (answer.interval, answer.measure) == (
        trend_pb2.TREND_INTERVAL_DAY,
        trend_pb2.TREND_MEASURE_EVENT_COUNT,
    )
    assert flat(answer) == (
        ["2026-03-02", "2026-03-03"],
        [RefSeries("all", "", [0.0, 1.0], 1.0)],
    )
    other_tenant = await settled(metrics, "t153", position, request)
    assert flat(other_tenant)[1] == [RefSeries("all", "", [0.0, 0.0], 0.0)]


async def test_list_and_object_breakdown_values_match_the_reference(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t154"
    events = [
        Ev("a", "x", "u1", "", at(0), json.dumps({"plan": [1, "a"]})),
        Ev("b", "x", "u2", "", at(0), json.dumps({"plan": [1.0, "a"]})),
        Ev("c", "x", "u1", "", at(1), json.dumps({"plan": {"b": 2, "a": 0.5}})),
        Ev("d", "x", "u3", "", at(1), json.dumps({"plan": '[1,"a"]'})),
        Ev("e", "x", "u3", "", at(1), json.dumps({"plan": "p"})),
    ]
    position = await metrics.append(tenant, events)
    request = request_of(day(0), day(1), "day", "unique", breakdown="plan")
    labels, series = flat(await settled(metrics, tenant, position, request))
    expected = reference_trend(
        events, first=day(0), last=day(1), interval="day", measure="unique", breakdown="plan"
    )
    assert (labels, series) == expected
    assert [(s.value, s.total) for s in series] == [
        ('[1,"a"]', 3.0),
        ("p", 1.0),
        ('{"a":0.5,"b":2}', 1.0),
    ]
