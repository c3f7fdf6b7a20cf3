"""The funnel domain equals the brute-force reference, on hand-made traps and generated ties."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.filters import EventMatcher, Operator, PropertyFilter
from northstar_metrics.domain.funnel import (
    Exclusion,
    FunnelAnswer,
    FunnelQuery,
    FunnelResult,
    HistogramSpec,
    funnel,
    plain_greedy,
)

from ..reference import Ev, dedup
from ..reference_funnel import US, RefFilter, RefFunnel, RefStep, day_start_us
from ..reference_funnel import funnel as reference_funnel

DAY0 = date(2026, 3, 1)
_OPS = {
    "eq": Operator.EQUALS,
    "ne": Operator.NOT_EQUALS,
    "in": Operator.IN,
    "<": Operator.LESS_THAN,
    "<=": Operator.LESS_THAN_OR_EQUAL,
    ">": Operator.GREATER_THAN,
    ">=": Operator.GREATER_THAN_OR_EQUAL,
}


def matcher(step: RefStep) -> EventMatcher:
    return EventMatcher(
        step.event, tuple(PropertyFilter(f.prop, _OPS[f.op], f.values) for f in step.filters)
    )


def query(q: RefFunnel) -> FunnelQuery:
    histogram = None
    if q.histogram is not None:
        histogram = HistogramSpec(
            q.histogram[0],
            q.histogram[1],
            tuple(round(x * US) for x in q.edges_seconds),
            q.bucket_count,
        )
    return FunnelQuery(
        steps=tuple(matcher(s) for s in q.steps),
        entry_from=q.first_day,
        entry_to=q.last_day,
        window_us=q.window_us,
        breakdown_property=q.breakdown,
        exclusions=tuple(Exclusion(matcher(s), a, b) for s, a, b in q.exclusions),
        histogram=histogram,
    )


def rows(events: list[Ev]) -> list[EventRow]:
    return [
        EventRow(e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, json.loads(e.properties))
        for e in dedup(events)
    ]


def shape(result: FunnelResult) -> tuple[Any, Any]:
    steps = [
        (
            s.users,
            s.conversion_from_previous,
            s.conversion_from_first,
            s.median_seconds_from_first,
        )
        for s in result.steps
    ]
    hist = None
    if result.histogram is not None:
        h = result.histogram
        hist = (
            [(b.start_us / US, b.end_us / US, b.users) for b in h.buckets],
            h.below,
            h.above,
            h.users,
        )
    return steps, hist


def as_reference(a: FunnelAnswer) -> dict[str, Any]:
    return {
        "overall": shape(a.overall),
        "breakdowns": [(b.value, b.property_missing, *shape(b.result)) for b in a.breakdowns],
    }


def check(q: RefFunnel, events: list[Ev]) -> dict[str, Any]:
    got = as_reference(funnel(rows(events), query(q)))
    assert got == reference_funnel(q, events)
    return got


def at(day: int, seconds: float) -> int:
    return day_start_us(DAY0) + day * 86_400 * US + round(seconds * US)


A, B, C, X = RefStep("a"), RefStep("b"), RefStep("c"), RefStep("x")


def users_per_step(got: dict[str, Any]) -> list[int]:
    return [row[0] for row in got["overall"][0]]


def medians(got: dict[str, Any]) -> list[float | None]:
    return [row[3] for row in got["overall"][0]]


def test_a_repeated_first_step_is_searched_from_every_start() -> None:
    q = RefFunnel((A, B), DAY0, DAY0, window_us=5 * US)
    events = [
        Ev("1", "a", "u", "", at(0, 0)),
        Ev("2", "a", "u", "", at(0, 5)),
        Ev("3", "b", "u", "", at(0, 8)),
    ]
    got = check(q, events)
    assert users_per_step(got) == [1, 1]
    assert medians(got) == [0.0, 3.0]  # measured from the second a, the first one giving depth 2


def test_equal_timestamps_chain_in_either_event_id_order() -> None:
    q = RefFunnel((A, B, C), DAY0, DAY0)
    events = [
        Ev("z", "a", "u", "", at(0, 1)),
        Ev("b", "b", "u", "", at(0, 1)),
        Ev("a", "c", "u", "", at(0, 1)),
    ]
    got = check(q, events)
    assert users_per_step(got) == [1, 1, 1]
    assert medians(got) == [0.0, 0.0, 0.0]


def test_one_event_serves_one_step_of_a_chain() -> None:
    q = RefFunnel((A, A), DAY0, DAY0)
    assert users_per_step(check(q, [Ev("1", "a", "u", "", at(0, 1))])) == [1, 0]
    got = check(q, [Ev("1", "a", "u", "", at(0, 1)), Ev("0", "a", "u", "", at(0, 1))])
    assert users_per_step(got) == [1, 1]


def test_overlapping_steps_at_one_instant_where_plain_greedy_stops_short() -> None:
    # Step 2 is any b, step 3 a b with p = 1. Plain greedy would give step 2 the earlier "m"
    # (p = 1) and find nothing for step 3; the chain a, n, m reaches step 3.
    p1 = RefStep("b", (RefFilter("p", "eq", (1,)),))
    q = RefFunnel((A, B, p1), DAY0, DAY0)
    events = [
        Ev("a", "a", "u", "", at(0, 0)),
        Ev("m", "b", "u", "", at(0, 1), '{"p": 1.0}'),
        Ev("n", "b", "u", "", at(0, 1)),
    ]
    got = check(q, events)
    assert users_per_step(got) == [1, 1, 1]
    assert medians(got) == [0.0, 1.0, 1.0]


def test_exclusion_between_steps_moves_the_measured_chain() -> None:
    q = RefFunnel((A, B, C), DAY0, DAY0, exclusions=((X, 2, 3),))
    events = [
        Ev("1", "a", "u", "", at(0, 0)),
        Ev("2", "b", "u", "", at(0, 1)),
        Ev("3", "x", "u", "", at(0, 2)),
        Ev("4", "b", "u", "", at(0, 3)),
        Ev("5", "c", "u", "", at(0, 4)),
    ]
    got = check(q, events)
    assert users_per_step(got) == [1, 1, 1]
    assert medians(got) == [0.0, 3.0, 4.0]
    # Without the second b, the user stops at step 2; an x at the same instant as a step
    # does not disqualify.
    assert users_per_step(check(q, [e for e in events if e.event_id != "4"])) == [1, 1, 0]
    same_instant = [events[0], events[1], Ev("3", "x", "u", "", at(0, 1)), events[4]]
    assert users_per_step(check(q, same_instant)) == [1, 1, 1]
    same_instant = [events[0], events[1], Ev("3", "x", "u", "", at(0, 4)), events[4]]
    assert users_per_step(check(q, same_instant)) == [1, 1, 1]


def test_window_and_entry_days_are_exact() -> None:
    q = RefFunnel((A, B), date(2026, 3, 2), date(2026, 3, 2), window_us=10 * US)
    events = [
        Ev("1", "a", "in-time", "", at(1, 86_395)),
        Ev("2", "b", "in-time", "", at(2, 5)),  # exactly W later, on the next day
        Ev("3", "a", "late", "", at(1, 0)),
        Ev("4", "b", "late", "", at(1, 10) + 1),  # 1 µs over W
        Ev("5", "a", "early", "", at(0, 86_399)),  # entry before the range
        Ev("6", "b", "early", "", at(1, 0)),
        Ev("7", "b", "nobody", "", at(1, 1)),
        Ev("8", "a", "", "", at(1, 1)),  # no user: not in funnels
    ]
    got = check(q, events)
    assert users_per_step(got) == [2, 1]
    assert got["overall"][0][1] == (1, 0.5, 0.5, 10.0)


def test_breakdown_uses_the_measured_first_event() -> None:
    q = RefFunnel((A, B), DAY0, DAY0, window_us=5 * US, breakdown="plan")
    events = [
        Ev("1", "a", "u", "", at(0, 0), '{"plan": "free"}'),
        Ev("2", "a", "u", "", at(0, 5), '{"plan": "pro"}'),
        Ev("3", "b", "u", "", at(0, 8)),
        Ev("4", "a", "v", "", at(0, 0), '{"plan": "free"}'),
        Ev("5", "a", "w", "", at(0, 0)),
        Ev("6", "a", "y", "", at(0, 0), '{"plan": 1.0}'),
    ]
    got = check(q, events)
    assert [(b[0], b[1], b[2][0][0], b[2][1][0]) for b in got["breakdowns"]] == [
        ("1", False, 1, 0),
        ("free", False, 1, 0),
        ("pro", False, 1, 1),
        ("$none", True, 1, 0),
    ]


def test_plain_greedy_needs_distinct_step_names_and_no_exclusions() -> None:
    def query(steps: tuple[str, ...], exclusions: tuple[Exclusion, ...] = ()) -> FunnelQuery:
        return FunnelQuery(
            steps=tuple(EventMatcher(s) for s in steps),
            entry_from=DAY0,
            entry_to=DAY0,
            exclusions=exclusions,
        )

    assert plain_greedy(query(("a", "b", "c")))
    assert not plain_greedy(query(("a", "b", "a")))  # one event could serve two steps
    assert not plain_greedy(query(("a", "b"), (Exclusion(EventMatcher("x"), 1, 2),)))


def test_histogram_buckets() -> None:
    events = [Ev(f"a{i}", "a", f"u{i}", "", at(0, 0)) for i in range(4)] + [
        Ev(f"b{i}", "b", f"u{i}", "", at(0, s)) for i, s in enumerate([0, 1.5, 2.5, 30])
    ]
    explicit = RefFunnel((A, B), DAY0, DAY0, histogram=(1, 2), edges_seconds=(0.5, 2.5, 10))
    assert check(explicit, events)["overall"][1] == (
        [(0.5, 2.5, 1), (2.5, 10.0, 1)],
        1,
        1,
        4,
    )
    automatic = RefFunnel((A, B), DAY0, DAY0, histogram=(1, 2), bucket_count=3)
    assert check(automatic, events)["overall"][1] == (
        [(0.0, 11.0, 3), (11.0, 22.0, 0), (22.0, 33.0, 1)],
        0,
        0,
        4,
    )


def test_nobody_entering_gives_absent_rates() -> None:
    got = check(RefFunnel((A, B), DAY0, DAY0, histogram=(1, 2)), [Ev("1", "b", "u", "", at(0, 0))])
    assert got["overall"] == ([(0, None, None, None), (0, None, None, None)], ([], 0, 0, 0))


# Generated: few names, few instants (many ties), overlapping steps, filters, duplicates.
_VALUES = [1, 1.0, "1", True, 2, 2.5, None]
_filters = st.sampled_from(
    [
        (),
        (),
        (),
        (RefFilter("p", "eq", (1,)),),
        (RefFilter("p", "ne", (1,)),),
        (RefFilter("p", "in", ("1", 2)),),
        (RefFilter("p", ">=", (1.5,)),),
        (RefFilter("p", "<", (2,)),),
    ]
)
_steps = st.builds(RefStep, st.sampled_from(["a", "b", "c"]), _filters)
_props = st.one_of(st.just("{}"), st.sampled_from(_VALUES).map(lambda v: json.dumps({"p": v})))
_instants = st.builds(
    at,
    st.sampled_from([0, 0, 0, 0, 0, 1, 2]),
    st.sampled_from([0, 0, 1, 1, 2, 3, 5, 86_399]),
)
_events = st.lists(
    st.builds(
        Ev,
        event_id=st.sampled_from([f"e{i:02d}" for i in range(60)]),  # some repeat: duplicates
        event=st.sampled_from(["a", "a", "b", "b", "c", "x"]),
        user_id=st.sampled_from(["", "u1", "u1", "u1", "u2"]),
        org_id=st.just(""),
        timestamp_us=_instants,
        properties=_props,
    ),
    min_size=8,
    max_size=22,
)


@st.composite
def _funnels(draw: st.DrawFn) -> RefFunnel:
    steps = tuple(draw(st.lists(_steps, min_size=2, max_size=4)))
    n = len(steps)
    first = draw(st.sampled_from([0, 0, 1]))
    exclusions = []
    for _ in range(draw(st.integers(0, 2))):
        a = draw(st.integers(1, n - 1))
        b = draw(st.integers(a + 1, n))
        exclusions.append((draw(st.builds(RefStep, st.sampled_from(["x", "b"]), _filters)), a, b))
    histogram = None
    edges: tuple[float, ...] = ()
    if draw(st.booleans()):
        a = draw(st.integers(1, n - 1))
        histogram = (a, draw(st.integers(a + 1, n)))
        if draw(st.booleans()):
            edges = tuple(
                sorted(set(draw(st.lists(st.sampled_from([0, 0.5, 1, 2.5, 4, 7]), min_size=2))))
            )
    return RefFunnel(
        steps=steps,
        first_day=date.fromordinal(DAY0.toordinal() + first),
        last_day=date.fromordinal(DAY0.toordinal() + first + draw(st.integers(0, 1))),
        window_us=draw(st.sampled_from([0, 2, 5, 86_400, 172_800, 604_800])) * US,
        breakdown=draw(st.sampled_from(["", "p"])),
        exclusions=tuple(exclusions),
        histogram=histogram if histogram and (len(edges) != 1) else None,
        edges_seconds=edges if len(edges) >= 2 else (),
        bucket_count=draw(st.integers(1, 4)),
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=_funnels(), events=_events)
def test_generated_funnels_match_the_reference(q: RefFunnel, events: list[Ev]) -> None:
    got = check(q, events)
    without = RefFunnel(q.steps, q.first_day, q.last_day, q.window_us)
    reached = users_per_step(got)
    event(f"depth>=2: {reached[1] > 0}")
    event(f"exclusion changed: {reached != users_per_step(check(without, events))}")


@settings(max_examples=200, deadline=None)
@given(q=_funnels(), events=_events, late=_events)
def test_arrival_order_and_late_events_do_not_matter(
    q: RefFunnel, events: list[Ev], late: list[Ev]
) -> None:
    everything = events + late
    in_time_order = sorted(dedup(everything), key=lambda e: e.timestamp_us)
    assert as_reference(funnel(rows(everything), query(q))) == as_reference(
        funnel(list(reversed(rows(in_time_order))), query(q))
    )


# Dense: one or two users, two names and an excluded one over five instants, so that chains,
# ties, overlapping steps and exclusions meet in most examples.
_dense_events = st.lists(
    st.builds(
        Ev,
        event_id=st.sampled_from([f"d{i:02d}" for i in range(30)]),
        event=st.sampled_from(["a", "b", "b", "x"]),
        user_id=st.sampled_from(["u1", "u1", "u2"]),
        org_id=st.just(""),
        timestamp_us=st.builds(at, st.just(0), st.integers(0, 4)),
        properties=_props,
    ),
    min_size=6,
    max_size=14,
)


@st.composite
def _dense_funnels(draw: st.DrawFn) -> RefFunnel:
    steps = tuple(
        draw(
            st.lists(
                st.builds(RefStep, st.sampled_from(["a", "b"]), _filters | st.just(())),
                min_size=2,
                max_size=4,
            )
        )
    )
    n = len(steps)
    exclusions = []
    for _ in range(draw(st.integers(0, 2))):
        a = draw(st.integers(1, n - 1))
        exclusions.append(
            (
                draw(st.builds(RefStep, st.sampled_from(["x", "x", "b"]), _filters)),
                a,
                draw(st.integers(a + 1, n)),
            )
        )
    return RefFunnel(
        steps=steps,
        first_day=DAY0,
        last_day=DAY0,
        window_us=draw(st.sampled_from([0, 2, 3, 4])) * US,
        breakdown="p",
        exclusions=tuple(exclusions),
        histogram=(1, n),
        bucket_count=draw(st.integers(1, 3)),
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=_dense_funnels(), events=_dense_events)
def test_generated_dense_chains_match_the_reference(q: RefFunnel, events: list[Ev]) -> None:
    got = check(q, events)
    without = RefFunnel(q.steps, q.first_day, q.last_day, q.window_us)
    reached = users_per_step(got)
    event(f"depth>=2: {reached[1] > 0}")
    event(f"exclusion changed: {reached != users_per_step(check(without, events))}")
