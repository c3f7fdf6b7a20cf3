"""Retention and RetentionTrend through gRPC equal the brute-force reference."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import retention_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from ..reference_retention import retention, retention_trend
from .conftest import TENANTS, MetricsUnderTest, auth

START = datetime(2026, 1, 20, tzinfo=UTC)
US = 1_000_000
GRANULARITY = {
    "day": retention_pb2.COHORT_GRANULARITY_DAY,
    "week": retention_pb2.COHORT_GRANULARITY_WEEK,
    "month": retention_pb2.COHORT_GRANULARITY_MONTH,
}
MODE = {
    "on_day": retention_pb2.RETENTION_MODE_ON_DAY,
    "on_or_after": retention_pb2.RETENTION_MODE_ON_OR_AFTER,
}
ATTRIBUTE = {
    "plan": retention_pb2.COHORT_ATTRIBUTE_PLAN,
    "channel": retention_pb2.COHORT_ATTRIBUTE_CHANNEL,
}
PROPERTIES = [
    json.dumps({"plan": "free", "channel": "seo"}),
    json.dumps({"plan": "pro", "channel": "referral"}),
    json.dumps({"plan": "free"}),
    json.dumps({"plan": 1, "channel": ["seo"]}),
    "{}",
]


def at(day: int, seconds: int = 0) -> int:
    return int((START + timedelta(days=day, seconds=seconds)).timestamp()) * US


def d(day: int) -> date:
    return (START + timedelta(days=day)).date()


def segment_of(segment: tuple[str, str] | None) -> retention_pb2.CohortSegment | None:
    if segment is None:
        return None
    return retention_pb2.CohortSegment(attribute=ATTRIBUTE[segment[0]], value=segment[1])


def cell_tuple(c: retention_pb2.RetentionCell) -> tuple:
    return (c.period, c.retained, c.cohort_size, c.retention if c.HasField("retention") else None)


def matrix_tuples(r: retention_pb2.RetentionResponse) -> tuple[list, list]:
    rows = [
        (row.cohort_start, row.cohort_end, row.size, [cell_tuple(c) for c in row.cells])
        for row in r.cohorts
    ]
    return rows, [cell_tuple(c) for c in r.combined]


def trend_tuples(r: retention_pb2.RetentionTrendResponse) -> tuple[list, tuple | None]:
    points = [
        (p.cohort_start, p.cohort_end, p.size, cell_tuple(p.cell) if p.HasField("cell") else None)
        for p in r.points
    ]
    return points, cell_tuple(r.combined) if r.HasField("combined") else None


async def matrix(
    m: MetricsUnderTest,
    tenant: str,
    *,
    granularity: str,
    first: date,
    last: date,
    periods: int,
    as_of: date,
    mode: str = "on_day",
    segment: tuple[str, str] | None = None,
    position: int = 0,
) -> retention_pb2.RetentionResponse:
    """The Retention answer once the read model has reached `position`."""
    request = retention_pb2.RetentionRequest(
        granularity=GRANULARITY[granularity],
        from_date=first.isoformat(),
        to_date=last.isoformat(),
        periods=periods,
        mode=MODE[mode],
        segment=segment_of(segment),
        as_of_date=as_of.isoformat(),
    )

    async def caught_up() -> retention_pb2.RetentionResponse:
        answer = await m.stub.Retention(request, metadata=auth(tenant), timeout=10)
        assert answer.log_position >= position
        return answer

    return await assert_eventually(caught_up, timeout=30)


async def trend(
    m: MetricsUnderTest,
    tenant: str,
    *,
    granularity: str,
    first: date,
    last: date,
    period: int,
    as_of: date,
    mode: str = "on_day",
    segment: tuple[str, str] | None = None,
) -> retention_pb2.RetentionTrendResponse:
    """The RetentionTrend answer (call after `matrix` has waited for the projection)."""
    request = retention_pb2.RetentionTrendRequest(
        granularity=GRANULARITY[granularity],
        from_date=first.isoformat(),
        to_date=last.isoformat(),
        period=period,
        mode=MODE[mode],
        segment=segment_of(segment),
        as_of_date=as_of.isoformat(),
    )
    return await m.stub.RetentionTrend(request, metadata=auth(tenant), timeout=10)


@st.composite
def event_sets(draw: st.DrawFn) -> list[Ev]:
    """Users who sign up (some twice, some at one instant) and come back; duplicates."""
    events: list[Ev] = []
    ids = iter(f"e{i}" for i in range(10_000))
    instant = st.sampled_from([0, 3600, 86_399])
    for user in ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"]:
        signup_day = draw(st.integers(0, 45))
        for _ in range(draw(st.integers(0, 2))):
            day = signup_day + draw(st.sampled_from([0, 0, 1, 35]))
            props = draw(st.sampled_from(PROPERTIES))
            events.append(Ev(next(ids), "user.signup", user, "", at(day, draw(instant)), props))
        for offset in draw(st.lists(st.integers(-3, 70), max_size=12)):
            events.append(
                Ev(next(ids), "page.view", user, "", at(signup_day + offset, draw(instant)))
            )
    for _ in range(draw(st.integers(0, 4))):
        if events:
            original = draw(st.sampled_from(events))
            other = draw(st.sampled_from(["u1", "u9"]))
            day = draw(st.integers(0, 70))
            events.append(Ev(original.event_id, "user.signup", other, "", at(day), PROPERTIES[1]))
    return draw(st.permutations(events))


QUERIES = [
    {"granularity": "day", "first": -2, "last": 40, "periods": 9, "as_of": 45},
    {
        "granularity": "day",
        "first": 3,
        "last": 30,
        "periods": 5,
        "as_of": 80,
        "mode": "on_or_after",
    },
    {"granularity": "week", "first": -8, "last": 50, "periods": 6, "as_of": 60},
    {
        "granularity": "week",
        "first": 0,
        "last": 50,
        "periods": 6,
        "as_of": 50,
        "mode": "on_or_after",
    },
    {"granularity": "month", "first": -30, "last": 100, "periods": 4, "as_of": 120},
    {
        "granularity": "month",
        "first": -30,
        "last": 40,
        "periods": 3,
        "as_of": 70,
        "mode": "on_or_after",
    },
    {
        "granularity": "day",
        "first": 0,
        "last": 45,
        "periods": 3,
        "as_of": 60,
        "segment": ("plan", "free"),
    },
    {
        "granularity": "week",
        "first": 0,
        "last": 45,
        "periods": 4,
        "as_of": 70,
        "segment": ("channel", "seo"),
    },
]


async def test_generated_event_sets_match_the_reference(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(events=event_sets(), n=st.integers(0, 8))
    def run(events: list[Ev], n: int) -> None:
        tenant = next(tenants)

        async def check() -> None:
            position = await metrics.append(tenant, events) if events else 0
            for q in QUERIES:
                args = {
                    "granularity": q["granularity"],
                    "first": d(q["first"]),
                    "last": d(q["last"]),
                    "as_of": d(q["as_of"]),
                    "mode": q.get("mode", "on_day"),
                    "segment": q.get("segment"),
                }
                answer = await matrix(
                    metrics, tenant, periods=q["periods"], position=position, **args
                )
                assert matrix_tuples(answer) == retention(events, periods=q["periods"], **args), q
                assert answer.as_of_date == args["as_of"].isoformat()
                points = await trend(metrics, tenant, period=n, **args)
                assert trend_tuples(points) == retention_trend(events, period=n, **args), q

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=180)

    # Hypothesis drives examples synchronously: it runs in a thread and hands
    # each example to the test's event loop, where the service lives.
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)


async def test_month_ends_late_signups_and_duplicates_by_hand(metrics: MetricsUnderTest) -> None:
    tenant = "t180"
    free = json.dumps({"plan": "free", "channel": "seo"})
    position = await metrics.append(
        tenant,
        [
            Ev("a-signup", "user.signup", "a", "", at(11, 60), free),  # 2026-01-31
            Ev("b-signup", "user.signup", "b", "", at(13), free),  # 2026-02-02
            Ev("a-view", "page.view", "a", "", at(39)),  # 2026-02-28: a's period 1
            Ev("b-view", "page.view", "b", "", at(40)),  # 2026-03-01
        ],
    )
    jan, feb = date(2026, 1, 1), date(2026, 2, 1)
    answer = await matrix(
        metrics,
        tenant,
        granularity="month",
        first=jan,
        last=feb,
        periods=3,
        as_of=date(2026, 3, 31),
        position=position,
    )
    assert matrix_tuples(answer) == (
        [
            ("2026-01-01", "2026-01-31", 1, [(0, 1, 1, 1.0), (1, 1, 1, 1.0), (2, 0, 1, 0.0)]),
            ("2026-02-01", "2026-02-28", 1, [(0, 1, 1, 1.0), (1, 1, 1, 1.0)]),
        ],
        [(0, 2, 2, 1.0), (1, 2, 2, 1.0), (2, 0, 1, 0.0)],
    )
    # A late, earlier signup of b moves it to January; a duplicate id changes nothing.
    position = await metrics.append(
        tenant,
        [
            Ev("b-early", "user.signup", "b", "", at(1), json.dumps({"plan": "pro"})),
            Ev("a-view", "page.view", "a", "", at(41)),
        ],
    )
    answer = await matrix(
        metrics,
        tenant,
        granularity="month",
        first=jan,
        last=feb,
        periods=3,
        as_of=date(2026, 3, 31),
        position=position,
    )
    assert matrix_tuples(answer) == (
        [
            ("2026-01-01", "2026-01-31", 2, [(0, 2, 2, 1.0), (1, 2, 2, 1.0), (2, 1, 2, 0.5)]),
            ("2026-02-01", "2026-02-28", 0, [(0, 0, 0, None), (1, 0, 0, None)]),
        ],
        [(0, 2, 2, 1.0), (1, 2, 2, 1.0), (2, 1, 2, 0.5)],
    )
    # b's plan is now its earliest signup's: pro.
    free_only = await matrix(
        metrics,
        tenant,
        granularity="month",
        first=jan,
        last=jan,
        periods=2,
        as_of=date(2026, 3, 31),
        segment=("plan", "free"),
    )
    assert [(r.cohort_start, r.size) for r in free_only.cohorts] == [("2026-01-01", 1)]
    # D28 by signup day: a (Jan 31) returned on day 28, but that day is after as_of; b
    # (Jan 21) did not return on day 28 (Feb 18). Empty cohorts have cells, no value.
    series = await trend(
        metrics,
        tenant,
        granularity="day",
        first=date(2026, 1, 20),
        last=date(2026, 1, 31),
        period=28,
        as_of=date(2026, 2, 27),
    )
    assert trend_tuples(series)[0][0] == ("2026-01-20", "2026-01-20", 0, (28, 0, 0, None))
    assert trend_tuples(series)[0][-1] == ("2026-01-31", "2026-01-31", 1, None)
    assert trend_tuples(series)[1] == (28, 0, 1, 0.0)  # b (Jan 21) + 28 = Feb 18: elapsed


async def test_default_end_date_is_today(metrics: MetricsUnderTest) -> None:
    today = datetime.now(UTC).date()
    answer = await metrics.stub.Retention(
        retention_pb2.RetentionRequest(
            from_date=(today - timedelta(days=3)).isoformat(), to_date=today.isoformat(), periods=2
        ),
        metadata=auth("t181"),
        timeout=10,
    )
    assert answer.as_of_date == today.isoformat()
    assert answer.granularity == retention_pb2.COHORT_GRANULARITY_DAY
    # Day cohorts up to today have period 0; period 1 has elapsed for all but today.
    assert [len(r.cells) for r in answer.cohorts] == [2, 2, 2, 1]


async def test_invalid_requests_name_their_fields(metrics: MetricsUnderTest) -> None:
    good = {"from_date": "2026-01-01", "to_date": "2026-01-31", "periods": 3}
    cases: list[tuple[dict, list[str]]] = [
        ({**good, "from_date": "2026-02-30"}, ["from_date"]),
        ({**good, "to_date": "2025-12-31"}, ["to_date"]),
        ({**good, "periods": 0}, ["periods"]),
        ({**good, "periods": 1001}, ["periods"]),
        ({**good, "granularity": 9}, ["granularity"]),
        ({**good, "mode": 7}, ["mode"]),
        ({**good, "as_of_date": "2026-1-5"}, ["as_of_date"]),
        (
            {**good, "segment": retention_pb2.CohortSegment(value="free")},
            ["segment.attribute"],
        ),
        (
            {**good, "segment": retention_pb2.CohortSegment(attribute=1), "periods": 0},
            ["segment.value", "periods"],
        ),
    ]
    for fields, expected in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await metrics.stub.Retention(
                retention_pb2.RetentionRequest(**fields), metadata=auth("t0"), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        status = rpc_status.from_call(caught.value)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert any(detail.Unpack(bad) for detail in status.details)
        assert [v.field for v in bad.field_violations] == expected, fields
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await metrics.stub.RetentionTrend(
            retention_pb2.RetentionTrendRequest(
                from_date="2026-01-01", to_date="2026-01-31", period=3661
            ),
            metadata=auth("t0"),
            timeout=10,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_tenants_never_see_each_other(metrics: MetricsUnderTest) -> None:
    position = await metrics.append("t190", [Ev("s", "user.signup", "u1", "", at(0))])
    args = {"granularity": "day", "first": d(0), "last": d(0), "periods": 1, "as_of": d(5)}
    mine = await matrix(metrics, "t190", position=position, **args)
    theirs = await matrix(metrics, "t191", position=position, **args)
    assert matrix_tuples(mine)[0] == [(d(0).isoformat(), d(0).isoformat(), 1, [(0, 1, 1, 1.0)])]
    assert matrix_tuples(theirs)[0] == [(d(0).isoformat(), d(0).isoformat(), 0, [(0, 0, 0, None)])]
