"""Activation, TTFV, fast activation and paid conversion equal the brute-force reference."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.activation import (
    ActivationSummary,
    CohortAttribute,
    TimeToValue,
    activation_counts,
    breakdown,
    fast_activation_counts,
    percentile,
    progress,
    summarize,
)
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.signups import signups

from ..reference import Ev, dedup
from ..reference_activation import activation, close

START = datetime(2026, 3, 2, tzinfo=UTC)
US = 1_000_000


def at(day: int, seconds: int = 0, micros: int = 0) -> int:
    return int((START + timedelta(days=day, seconds=seconds)).timestamp()) * US + micros


def rows_of(events: list[Ev]) -> list[EventRow]:
    """What the projection stores: the first event of each id."""
    return [
        EventRow(e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, json.loads(e.properties))
        for e in dedup(events)
    ]


def as_tuple(s: ActivationSummary) -> tuple:
    def stage(t: TimeToValue) -> tuple:
        return (t.reached, t.median_seconds, t.p90_seconds)

    return (
        s.signups,
        s.activated,
        s.activation_rate,
        [
            stage(s.integration_connected),
            stage(s.workflow_created),
            stage(s.workflow_run_succeeded),
        ],
        s.fast_activated,
        s.signup_to_value_30m,
        s.free_signups_with_org,
        s.paid_conversions,
        s.paid_conversion_rate,
    )


PROPERTIES = {
    "user.signup": st.sampled_from(
        [
            {"plan": "free", "channel": "seo"},
            {"plan": "free", "channel": "referral"},
            {"plan": "pro", "channel": "seo"},
            {"plan": "free"},
            {"channel": "paid"},
            {"plan": 3, "channel": None},
            {},
        ]
    ),
    "workflow.run": st.sampled_from(
        [
            {"status": "success", "workflow_id": "w1"},
            {"status": "success"},
            {"status": "success"},
            {"status": "success"},
            {"status": "failed", "workflow_id": "w2"},
            {"status": "SUCCESS"},
            {"status": ["success"]},
            {},
        ]
    ),
    "workflow.created": st.sampled_from([{"workflow_id": "w1"}, {}]),
    "integration.connected": st.sampled_from([{"integration": "gmail"}, {}]),
    "subscription.started": st.sampled_from([{"plan": "pro", "mrr": 100}, {"mrr": "x"}, {}]),
}

# Offsets from a signup that land exactly on, one microsecond inside and outside of,
# every window edge (1,800 s, 7 days, 30 days), and before the signup.
OFFSETS = st.sampled_from(
    [
        -1,
        0,
        0,
        1,
        60 * US,
        1800 * US - 1,
        1800 * US,
        1800 * US + 1,
        86_400 * US,
        7 * 86_400 * US,
        7 * 86_400 * US + 1,
        30 * 86_400 * US,
        30 * 86_400 * US + 1,
        45 * 86_400 * US,
    ]
)
USERS = ["u1", "u2", "u3", "u4", "u5", "u6"]
ORGS = ["", "o1", "o2", "o3"]
ANCHORS = st.builds(at, st.sampled_from([0, 1, 9, 10, 30, 38]), st.sampled_from([0, 1800, 86_399]))


@st.composite
def events_of_journeys(draw: st.DrawFn) -> list[Ev]:
    """Signups, then events at window-edge offsets from some signup (ties included)."""
    ids = iter(f"e{i}" for i in range(1000))
    signup_times = {u: draw(ANCHORS) for u in USERS}
    events = []
    for _ in range(draw(st.integers(1, 60))):
        name = draw(st.sampled_from(sorted(PROPERTIES)))
        user = draw(st.sampled_from(["", *USERS]))
        base = signup_times[draw(st.sampled_from(USERS))]
        ts = base if name == "user.signup" and draw(st.booleans()) else base + draw(OFFSETS)
        # A reused id is a duplicate (the first stands) or an id conflict.
        event_id = draw(st.sampled_from(["e0", "e1", next(ids), next(ids), next(ids)]))
        events.append(
            Ev(
                event_id=event_id,
                event=name,
                user_id=user,
                org_id=draw(st.sampled_from(ORGS)),
                timestamp_us=ts,
                properties=json.dumps(draw(PROPERTIES[name])),
            )
        )
    return events


events_strategy = events_of_journeys()
RANGES = [
    (date(2026, 3, 2), date(2026, 3, 2)),
    (date(2026, 3, 2), date(2026, 3, 12)),
    (date(2026, 3, 3), date(2026, 4, 30)),
    (date(2026, 2, 1), date(2026, 2, 28)),
]


@settings(max_examples=400, deadline=None)
@given(events=events_strategy, span=st.sampled_from(RANGES), shuffle=st.randoms())
def test_summaries_and_breakdowns_match_the_reference(
    events: list[Ev], span: tuple[date, date], shuffle: random.Random
) -> None:
    first, last = span
    rows = rows_of(events)
    shuffle.shuffle(rows)  # arrival order must not matter
    cohort = progress(signups(rows), rows, first, last)
    overall, by_plan = activation(events, first, last, "plan")
    assert close(as_tuple(summarize(cohort)), overall)
    got = [(s.value, as_tuple(s.summary)) for s in breakdown(cohort, CohortAttribute.PLAN)]
    assert close(got, by_plan)
    _, by_channel = activation(events, first, last, "channel")
    got = [(s.value, as_tuple(s.summary)) for s in breakdown(cohort, CohortAttribute.CHANNEL)]
    assert close(got, by_channel)


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, span=st.sampled_from(RANGES))
def test_kpi_counts_match_the_reference(events: list[Ev], span: tuple[date, date]) -> None:
    first, last = span
    rows = rows_of(events)
    overall, _ = activation(events, first, last)
    assert activation_counts(signups(rows), rows, first, last) == (overall[1], overall[0])
    assert fast_activation_counts(signups(rows), rows, first, last) == (overall[4], overall[0])


def test_windows_are_inclusive_to_the_microsecond() -> None:
    signup = json.dumps({"plan": "free"})
    ok = json.dumps({"status": "success"})
    events = [
        # u1: everything exactly on the edge: counts.
        Ev("s1", "user.signup", "u1", "o1", at(0), signup),
        Ev("c1", "workflow.created", "u1", "", at(7)),
        Ev("r1", "workflow.run", "u1", "o1", at(0, 1800), ok),
        Ev("p1", "subscription.started", "", "o1", at(30)),
        # u2: everything one microsecond late: does not count (but reaches the stages).
        Ev("s2", "user.signup", "u2", "o2", at(0), signup),
        Ev("c2", "workflow.created", "u2", "", at(7, 0, 1)),
        Ev("r2", "workflow.run", "u2", "o2", at(0, 1800, 1), ok),
        Ev("p2", "subscription.started", "", "o2", at(30, 0, 1)),
        # u3: before signup: nothing counts, no stage reached; its later duplicate signup
        # (another id) does not move its signup.
        Ev("c3", "workflow.created", "u3", "", at(1, 0, -1)),
        Ev("s3", "user.signup", "u3", "", at(1)),
        Ev("s3b", "user.signup", "u3", "", at(2)),
        Ev("r3", "workflow.run", "u3", "o3", at(1, 5), json.dumps({"status": "Success"})),
    ]
    rows = rows_of(events)
    cohort = progress(signups(rows), rows, date(2026, 3, 2), date(2026, 3, 3))
    s = summarize(cohort)
    assert (s.signups, s.activated, s.fast_activated) == (3, 1, 1)
    assert (s.free_signups_with_org, s.paid_conversions, s.paid_conversion_rate) == (2, 1, 0.5)
    assert s.workflow_created == TimeToValue(2, 7 * 86_400 + 0.0000005, 7 * 86_400 + 0.0000009)
    assert s.workflow_run_succeeded.reached == 2
    assert s.integration_connected == TimeToValue(0, None, None)
    assert s.activation_rate == 1 / 3


def test_no_signups_make_every_rate_absent() -> None:
    s = summarize([])
    assert s.activation_rate is None
    assert s.signup_to_value_30m is None
    assert s.paid_conversion_rate is None
    assert s.workflow_created == TimeToValue(0, None, None)


@settings(deadline=None)
@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=50), st.sampled_from([0.5, 0.9]))
def test_percentile_is_numpy_linear_to_the_last_bit(values: list[int], q: float) -> None:
    np = pytest.importorskip("numpy")
    seconds = [v / US for v in values]
    assert percentile(seconds, q) == float(np.quantile(np.array(seconds), q))
