"""Funnel through gRPC equals the brute-force reference; malformed requests name their fields."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import filters_pb2, funnel_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from ..reference_funnel import US, RefFilter, RefFunnel, RefStep, day_start_us
from ..reference_funnel import funnel as reference_funnel
from .conftest import MetricsUnderTest, auth

DAY0 = date(2026, 3, 2)


@pytest.fixture
def metrics(ad_hoc_metrics: MetricsUnderTest) -> MetricsUnderTest:
    """Every test here runs against the columnar copy and against PostgreSQL."""
    return ad_hoc_metrics


_OPERATORS = {
    "eq": filters_pb2.FILTER_OPERATOR_EQUALS,
    "ne": filters_pb2.FILTER_OPERATOR_NOT_EQUALS,
    "in": filters_pb2.FILTER_OPERATOR_IN,
    "<": filters_pb2.FILTER_OPERATOR_LESS_THAN,
    "<=": filters_pb2.FILTER_OPERATOR_LESS_THAN_OR_EQUAL,
    ">": filters_pb2.FILTER_OPERATOR_GREATER_THAN,
    ">=": filters_pb2.FILTER_OPERATOR_GREATER_THAN_OR_EQUAL,
}


def at(day: int, seconds: float) -> int:
    return day_start_us(DAY0) + day * 86_400 * US + round(seconds * US)


def _value(v: Any) -> struct_pb2.Value:
    if v is None:
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(v, bool):
        return struct_pb2.Value(bool_value=v)
    if isinstance(v, int | float):
        return struct_pb2.Value(number_value=v)
    return struct_pb2.Value(string_value=v)


def _matcher(step: RefStep) -> filters_pb2.EventMatcher:
    return filters_pb2.EventMatcher(
        event=step.event,
        filters=[
            filters_pb2.PropertyFilter(
                property=f.prop, operator=_OPERATORS[f.op], values=[_value(v) for v in f.values]
            )
            for f in step.filters
        ],
    )


def request(q: RefFunnel) -> funnel_pb2.FunnelRequest:
    r = funnel_pb2.FunnelRequest(
        steps=[_matcher(s) for s in q.steps],
        from_date=q.first_day.isoformat(),
        to_date=q.last_day.isoformat(),
        window_seconds=q.window_us // US,
        breakdown_property=q.breakdown,
        exclusions=[
            funnel_pb2.FunnelExclusion(event=_matcher(s), from_step=a, to_step=b)
            for s, a, b in q.exclusions
        ],
    )
    if q.histogram is not None:
        r.histogram.CopyFrom(
            funnel_pb2.FunnelHistogramRequest(
                from_step=q.histogram[0],
                to_step=q.histogram[1],
                bucket_edges_seconds=list(q.edges_seconds),
                bucket_count=0 if q.edges_seconds else q.bucket_count,
            )
        )
    return r


def _optional(message: Any, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def shape(result: funnel_pb2.FunnelResult, histogram: bool) -> tuple[Any, Any]:
    steps = [
        (
            s.users,
            _optional(s, "conversion_from_previous"),
            _optional(s, "conversion_from_first"),
            _optional(s, "median_seconds_from_first"),
        )
        for s in result.steps
    ]
    assert [s.step for s in result.steps] == list(range(1, len(steps) + 1))
    assert result.HasField("histogram") is histogram
    hist = None
    if histogram:
        h = result.histogram
        hist = (
            [(b.start_seconds, b.end_seconds, b.users) for b in h.buckets],
            h.below_count,
            h.above_count,
            h.users,
        )
    return steps, hist


def as_reference(answer: funnel_pb2.FunnelResponse, q: RefFunnel) -> dict[str, Any]:
    histogram = q.histogram is not None
    return {
        "overall": shape(answer.overall, histogram),
        "breakdowns": [
            (b.breakdown_value, b.property_missing, *shape(b.result, histogram))
            for b in answer.breakdowns
        ],
    }


async def settled(
    m: MetricsUnderTest, tenant: str, position: int, q: RefFunnel
) -> funnel_pb2.FunnelResponse:
    async def caught_up() -> funnel_pb2.FunnelResponse:
        answer = await m.stub.Funnel(request(q), metadata=auth(tenant), timeout=10)
        assert answer.log_position >= position
        return answer

    return await assert_eventually(caught_up, timeout=30)


_filters = st.sampled_from(
    [
        (),
        (),
        (RefFilter("p", "eq", (1,)),),
        (RefFilter("p", "ne", (1,)),),
        (RefFilter("p", "in", ("1", 2)),),
        (RefFilter("p", ">=", (1.5,)),),
    ]
)


def _event_lists(days: list[int], seconds: list[int]) -> st.SearchStrategy[list[Ev]]:
    return st.lists(
        st.builds(
            Ev,
            event_id=st.sampled_from([f"e{i:02d}" for i in range(40)]),  # repeats: duplicates
            event=st.sampled_from(["a", "b", "b", "x", "other"]),
            user_id=st.sampled_from(["", "u1", "u1", "u2", "u3"]),
            org_id=st.just(""),
            timestamp_us=st.builds(at, st.sampled_from(days), st.sampled_from(seconds)),
            properties=st.sampled_from(
                [
                    "{}",
                    '{"p": 1}',
                    '{"p": 1.0}',
                    '{"p": "1"}',
                    '{"p": true}',
                    '{"p": 2}',
                    '{"p": null}',
                    '{"p": 2.5}',
                ]
            ),
        ),
        min_size=4,
        max_size=30,
    )


_events = _event_lists([-1, 0, 0, 0, 1, 2], [0, 0, 1, 2, 3, 86_399])
# Most events of a user at a few instants: ties between steps everywhere.
_tied_events = _event_lists([0, 0, 1], [0, 0, 1, 2])


@st.composite
def _funnels(draw: st.DrawFn) -> RefFunnel:
    steps = tuple(
        draw(
            st.lists(
                st.builds(RefStep, st.sampled_from(["a", "b"]), _filters), min_size=2, max_size=3
            )
        )
    )
    n = len(steps)
    exclusions = []
    if draw(st.booleans()):
        a = draw(st.integers(1, n - 1))
        exclusions.append((RefStep("x"), a, draw(st.integers(a + 1, n))))
    return RefFunnel(
        steps=steps,
        first_day=DAY0,
        last_day=date.fromordinal(DAY0.toordinal() + draw(st.integers(0, 1))),
        window_us=draw(st.sampled_from([0, 2, 86_400])) * US,
        breakdown=draw(st.sampled_from(["", "p"])),
        exclusions=tuple(exclusions),
        histogram=(1, n),
        bucket_count=draw(st.integers(1, 3)),
    )


async def match_generated(
    metrics: MetricsUnderTest,
    funnels: st.SearchStrategy[RefFunnel],
    event_lists: st.SearchStrategy[list[Ev]],
) -> None:
    """Generated funnels over generated events equal the reference, one tenant each."""
    tenants = iter(f"t{i}" for i in range(100, 199))

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(q=funnels, events=event_lists)
    def run(q: RefFunnel, events: list[Ev]) -> None:
        tenant = next(tenants)

        async def check() -> None:
            position = await metrics.append(tenant, events)
            answer = await settled(metrics, tenant, position, q)
            assert as_reference(answer, q) == reference_funnel(q, events)

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    # Hypothesis drives examples synchronously: it runs in a thread and hands
    # each example to the test's event loop, where the service lives.
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)


async def test_generated_funnels_match_the_reference(metrics: MetricsUnderTest) -> None:
    await match_generated(metrics, _funnels(), _events)
    if metrics.copy is not None:  # the users' events were read from the copy
        assert metrics.copy.answers[("funnel", "columnar")] >= 10


@st.composite
def _greedy_funnels(draw: st.DrawFn) -> RefFunnel:
    """Funnels whose steps name distinct events and exclude nothing: the copy's chains."""
    names = draw(st.permutations(["a", "b", "x"]))[: draw(st.integers(2, 3))]
    steps = tuple(RefStep(name, draw(_filters)) for name in names)
    return RefFunnel(
        steps=steps,
        first_day=DAY0,
        last_day=date.fromordinal(DAY0.toordinal() + draw(st.integers(0, 1))),
        window_us=draw(st.sampled_from([0, 2, 86_400])) * US,
        breakdown=draw(st.sampled_from(["", "p"])),
        histogram=(1, len(steps)),
        bucket_count=draw(st.integers(1, 3)),
    )


async def test_generated_greedy_funnels_match_the_reference(metrics: MetricsUnderTest) -> None:
    await match_generated(metrics, _greedy_funnels(), st.one_of(_events, _tied_events))
    if metrics.copy is not None:  # the copy computed the chains itself
        assert metrics.copy.answers[("funnel", "columnar_chains")] >= 10


async def test_late_events_duplicates_breakdown_exclusion_and_histogram(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t7"
    q = RefFunnel(
        steps=(RefStep("user.signup"), RefStep("workflow.created"), RefStep("workflow.run")),
        first_day=DAY0,
        last_day=DAY0,
        window_us=3600 * US,
        breakdown="plan",
        exclusions=((RefStep("support.ticket"), 1, 2),),
        histogram=(1, 3),
        edges_seconds=(0, 60, 600),
    )
    on_time = [
        Ev("s1", "user.signup", "u1", "", at(0, 100), '{"plan": "pro"}'),
        Ev("c1", "workflow.created", "u1", "", at(0, 130)),
        Ev("r1", "workflow.run", "u1", "", at(0, 160)),
        Ev("s2", "user.signup", "u2", "", at(0, 100), '{"plan": "free"}'),
        Ev("t2", "support.ticket", "u2", "", at(0, 110)),
        Ev("c2", "workflow.created", "u2", "", at(0, 120)),
        Ev("s3", "user.signup", "u3", "", at(0, 200)),
        Ev("c3", "workflow.created", "u3", "", at(0, 200)),
        Ev("r3", "workflow.run", "u3", "", at(0, 3800)),  # exactly the window
    ]
    position = await metrics.append(tenant, on_time)
    answer = await settled(metrics, tenant, position, q)
    got = as_reference(answer, q)
    assert got == reference_funnel(q, on_time)
    assert got["overall"] == (
        [(3, 1.0, 1.0, 0.0), (2, 2 / 3, 2 / 3, 15.0), (2, 1.0, 2 / 3, 1830.0)],
        ([(0.0, 60.0, 0), (60.0, 600.0, 1)], 0, 1, 2),  # 60 s and 3,600 s
    )
    assert [(b[0], b[1]) for b in got["breakdowns"]] == [
        ("free", False),
        ("pro", False),
        ("$none", True),
    ]
    assert answer.window_seconds == 3600
    # A late run for u2, a duplicate of c1 (moved: the first stands) and a late created for u1.
    late = [
        Ev("r2", "workflow.run", "u2", "", at(0, 125)),
        Ev("c1", "workflow.created", "u1", "", at(0, 101)),
        Ev("c1b", "workflow.created", "u1", "", at(0, 100)),
        Ev("c2b", "workflow.created", "u2", "", at(0, 111)),
    ]
    position = await metrics.append(tenant, late)
    answer = await settled(metrics, tenant, position, q)
    got = as_reference(answer, q)
    assert got == reference_funnel(q, on_time + late)
    # u2: the ticket at 110 s disqualifies created at 111 s and 120 s; no other chain.
    assert [row[0] for row in got["overall"][0]] == [3, 2, 2]
    assert got["overall"][0][1][3] == 0.0  # u1 now created at 100 s (c1b), u3 at 0 s: median 0


async def test_greedy_chains_take_ties_and_the_earliest_deepest_first_step(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t8"
    q = RefFunnel(
        steps=(RefStep("a"), RefStep("b"), RefStep("x")),
        first_day=DAY0,
        last_day=DAY0,
        window_us=60 * US,
        breakdown="p",
    )
    events = [
        # u1: every step at one instant, a chain of three.
        Ev("u1a", "a", "u1", "", at(0, 100), '{"p": "1"}'),
        Ev("u1b", "b", "u1", "", at(0, 100)),
        Ev("u1x", "x", "u1", "", at(0, 100)),
        # u2: two e1 at 100 s (k1 before k2 by id) reach b only, x is past the window;
        # the e1 at 170 s reaches x and is measured.
        Ev("k2", "a", "u2", "", at(0, 100), '{"p": 2}'),
        Ev("k1", "a", "u2", "", at(0, 100), '{"p": 1}'),
        Ev("u2b", "b", "u2", "", at(0, 150)),
        Ev("k3", "a", "u2", "", at(0, 170), '{"p": 3}'),
        Ev("u2b2", "b", "u2", "", at(0, 180)),
        Ev("u2x", "x", "u2", "", at(0, 200)),
        # u3: b before a does not count.
        Ev("u3b", "b", "u3", "", at(0, 50)),
        Ev("u3a", "a", "u3", "", at(0, 100)),
        # u4: two e1 at one instant, neither going further: m1 is measured (by event_id).
        Ev("m2", "a", "u4", "", at(0, 300), '{"p": 4}'),
        Ev("m1", "a", "u4", "", at(0, 300), '{"p": 5}'),
    ]
    position = await metrics.append(tenant, events)
    got = as_reference(await settled(metrics, tenant, position, q), q)
    assert got == reference_funnel(q, events)
    assert got["overall"][0] == [(4, 1.0, 1.0, 0.0), (2, 0.5, 0.5, 5.0), (2, 1.0, 0.5, 15.0)]
    assert [(b[0], b[1], b[2][2][0]) for b in got["breakdowns"]] == [
        ("1", False, 1),
        ("3", False, 1),
        ("5", False, 0),
        ("$none", True, 0),
    ]
    if metrics.copy is not None:
        assert metrics.copy.answers[("funnel", "columnar_chains")] >= 1


@pytest.mark.parametrize(("tenant", "exclusions"), [("t11", 63), ("t12", 64)])
async def test_as_many_exclusions_as_a_mask_holds_and_more_match_the_reference(
    metrics: MetricsUnderTest, tenant: str, exclusions: int
) -> None:
    # 63 exclusions fill the SQL bit mask (the last one on its top bit); past it, the events
    # are matched row by row. Either way the same answer.
    q = RefFunnel(
        steps=(RefStep("a"), RefStep("b"), RefStep("c")),
        first_day=DAY0,
        last_day=DAY0,
        breakdown="p",
        exclusions=(
            *((RefStep("x", (RefFilter("p", "eq", (k,)),)), 1, 2) for k in range(exclusions - 1)),
            (RefStep("y"), 2, 3),
        ),
    )
    events = [
        Ev("a1", "a", "u1", "", at(0, 0), '{"p": 1}'),
        Ev("x1", "x", "u1", "", at(0, 5), f'{{"p": {exclusions - 2}}}'),  # u1 stops at a
        Ev("b1", "b", "u1", "", at(0, 10)),
        Ev("a2", "a", "u2", "", at(0, 0), '{"p": 2}'),
        Ev("x2", "x", "u2", "", at(0, 5), f'{{"p": {exclusions}}}'),  # matches no exclusion
        Ev("b2", "b", "u2", "", at(0, 10)),
        Ev("y2", "y", "u2", "", at(0, 15)),  # the last exclusion: u2 stops at b
        Ev("c2", "c", "u2", "", at(0, 20)),
        Ev("a3", "a", "u3", "", at(0, 0)),
        Ev("b3", "b", "u3", "", at(0, 10)),
        Ev("c3", "c", "u3", "", at(0, 20)),
    ]
    position = await metrics.append(tenant, events)
    answer = await settled(metrics, tenant, position, q)
    assert [s.users for s in answer.overall.steps] == [3, 2, 1]
    assert as_reference(answer, q) == reference_funnel(q, events)


async def test_only_users_entering_in_range_count_and_step_one_filters_still_decide(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t9"
    events = [
        # u1 enters on day 0 and converts; its e1's property is the breakdown value.
        Ev("a1", "a", "u1", "", at(0, 0), '{"p": 1}'),
        Ev("b1", "b", "u1", "", at(0, 10), '{"p": 5}'),
        # u2's step 1 is the day before the entry range, u3's the day after.
        Ev("a2", "a", "u2", "", at(-1, 86_399), '{"p": 1}'),
        Ev("b2", "b", "u2", "", at(0, 5)),
        Ev("a3", "a", "u3", "", at(1, 0), '{"p": 1}'),
        Ev("b3", "b", "u3", "", at(1, 5)),
        # u4 has an event named like step 1 in range, but the step's filter rejects it.
        Ev("a4", "a", "u4", "", at(0, 0), '{"p": 2}'),
        Ev("b4", "b", "u4", "", at(0, 5)),
    ]
    q = RefFunnel(
        steps=(RefStep("a", (RefFilter("p", "eq", (1,)),)), RefStep("b")),
        first_day=DAY0,
        last_day=DAY0,
        breakdown="p",
    )
    position = await metrics.append(tenant, events)
    answer = await settled(metrics, tenant, position, q)
    assert [(s.users, s.median_seconds_from_first) for s in answer.overall.steps] == [
        (1, 0.0),
        (1, 10.0),
    ]
    assert [(b.breakdown_value, b.property_missing) for b in answer.breakdowns] == [("1", False)]
    assert as_reference(answer, q) == reference_funnel(q, events)


async def test_default_window_is_seven_days_and_rates_are_absent_without_entries(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t8"
    events = [
        Ev("a", "a", "u1", "", at(0, 0)),
        Ev("b", "b", "u1", "", at(7, 0)),  # exactly 7 days later
        Ev("a2", "a", "u2", "", at(0, 0)),
        Ev("b2", "b", "u2", "", at(7, 0) + 1),
    ]
    position = await metrics.append(tenant, events)
    r = funnel_pb2.FunnelRequest(
        steps=[filters_pb2.EventMatcher(event="a"), filters_pb2.EventMatcher(event="b")],
        from_date=DAY0.isoformat(),
        to_date=DAY0.isoformat(),
    )

    async def caught_up() -> funnel_pb2.FunnelResponse:
        answer = await metrics.stub.Funnel(r, metadata=auth(tenant), timeout=10)
        assert answer.log_position >= position
        return answer

    answer = await assert_eventually(caught_up, timeout=30)
    assert answer.window_seconds == 604_800
    assert [(s.users, s.median_seconds_from_first) for s in answer.overall.steps] == [
        (2, 0.0),
        (1, 604_800.0),
    ]
    assert not answer.overall.HasField("histogram")
    assert list(answer.breakdowns) == []
    r.from_date = r.to_date = "2026-01-01"
    empty = await metrics.stub.Funnel(r, metadata=auth(tenant), timeout=10)
    for s in empty.overall.steps:
        assert s.users == 0
        assert not s.HasField("conversion_from_previous")
        assert not s.HasField("conversion_from_first")
        assert not s.HasField("median_seconds_from_first")


def _bad(**changes: Any) -> funnel_pb2.FunnelRequest:
    r = funnel_pb2.FunnelRequest(
        steps=[filters_pb2.EventMatcher(event="a"), filters_pb2.EventMatcher(event="b")],
        from_date="2026-03-01",
        to_date="2026-03-02",
    )
    for name, value in changes.items():
        if name == "histogram":
            r.histogram.CopyFrom(value)
        elif name in {"steps", "exclusions"}:
            del getattr(r, name)[:]
            getattr(r, name).extend(value)
        else:
            setattr(r, name, value)
    return r


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        (_bad(steps=[filters_pb2.EventMatcher(event="a")]), ["steps"]),
        (_bad(steps=[filters_pb2.EventMatcher(event=f"e{i}") for i in range(11)]), ["steps"]),
        (
            _bad(steps=[filters_pb2.EventMatcher(event="a"), filters_pb2.EventMatcher()]),
            ["steps[1].event"],
        ),
        (_bad(to_date="2026-02-01"), ["to_date"]),
        (_bad(window_seconds=-1), ["window_seconds"]),
        (
            _bad(
                exclusions=[
                    funnel_pb2.FunnelExclusion(
                        event=filters_pb2.EventMatcher(event="x"), from_step=2, to_step=2
                    )
                ]
            ),
            ["exclusions[0].to_step"],
        ),
        (
            _bad(histogram=funnel_pb2.FunnelHistogramRequest(from_step=1, to_step=3)),
            ["histogram.to_step"],
        ),
        (
            _bad(
                histogram=funnel_pb2.FunnelHistogramRequest(
                    from_step=1, to_step=2, bucket_edges_seconds=[5, 1]
                )
            ),
            ["histogram.bucket_edges_seconds"],
        ),
        (
            _bad(
                steps=[
                    filters_pb2.EventMatcher(event="a"),
                    filters_pb2.EventMatcher(
                        event="b",
                        filters=[
                            filters_pb2.PropertyFilter(
                                property="n",
                                operator=filters_pb2.FILTER_OPERATOR_LESS_THAN,
                                values=[struct_pb2.Value(string_value="3")],
                            )
                        ],
                    ),
                ]
            ),
            ["steps[1].filters[0].values[0]"],
        ),
    ],
)
async def test_malformed_requests_are_rejected_with_field_violations(
    metrics: MetricsUnderTest, request_: funnel_pb2.FunnelRequest, fields: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await metrics.stub.Funnel(request_, metadata=auth("t0"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad) for d in status.details)
    assert [v.field for v in bad.field_violations] == fields
