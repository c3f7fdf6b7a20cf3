"""Data-quality rules equal the brute-force reference; the score is the documented table."""

from __future__ import annotations

import json
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain import quality
from northstar_metrics.domain.events import EventRow

from ..reference import Ev
from ..reference_series import bot_peak, lacking

NAMES = [
    "user.signup",
    "integration.connected",
    "workflow.created",
    "workflow.run",
    "subscription.started",
    "subscription.changed",
    "subscription.canceled",
    "subscription.paused",
    "marketing.spend",
    "experiment.exposure",
    "page.view",
]
PROPERTY_VALUES = [None, "success", "failed", "SUCCESS", 0, 5, -3, 2.5, 7.0, True, "12", [1]]


@st.composite
def events(draw: st.DrawFn) -> Ev:
    props = {}
    for key in ("status", "mrr", "amount"):
        if draw(st.booleans()):
            props[key] = draw(st.sampled_from(PROPERTY_VALUES))
    return Ev(
        event_id="e",
        event=draw(st.sampled_from(NAMES)),
        user_id=draw(st.sampled_from(["", "u1"])),
        org_id=draw(st.sampled_from(["", "o1"])),
        timestamp_us=0,
        properties=json.dumps(props),
    )


def row(e: Ev) -> EventRow:
    return EventRow(
        e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, json.loads(e.properties)
    )


@settings(max_examples=800, deadline=None)
@given(e=events())
def test_missing_fields_equal_the_reference(e: Ev) -> None:
    assert bool(quality.missing_fields(row(e))) == lacking(e)


def test_missing_fields_names_each_lacking_field() -> None:
    run = EventRow("1", "workflow.run", "", "", 0, {"status": "done"})
    assert quality.missing_fields(run) == ["user_id", "org_id", "properties.status"]
    sub = EventRow("2", "subscription.changed", "", "o", 0, {"mrr": 1.5})
    assert quality.missing_fields(sub) == ["properties.mrr"]
    spend = EventRow("3", "marketing.spend", "", "", 0, {"amount": -4})
    assert quality.missing_fields(spend) == []
    assert quality.missing_fields(EventRow("4", "page.view", "", "", 0, {})) == []
    # org_id is required for every subscription.*, not only the names the table lists.
    assert quality.missing_fields(EventRow("5", "subscription.renewed", "", "", 0, {})) == [
        "org_id"
    ]
    assert quality.missing_fields(EventRow("6", "subscription.renewed", "", "o", 0, {})) == []
    tallies = quality.tally_missing_fields([run, sub, spend, run])
    assert tallies == [
        quality.MissingFields("subscription.changed", 1, {"properties.mrr": 1}),
        quality.MissingFields(
            "workflow.run", 2, {"org_id": 2, "properties.status": 2, "user_id": 2}
        ),
    ]


@settings(max_examples=300, deadline=None)
@given(
    stamps=st.lists(
        st.one_of(
            st.integers(0, 200_000_000),
            st.sampled_from([0, 60_000_000, 60_000_001, 59_999_999, 120_000_000]),
        ),
        max_size=120,
    ),
    window=st.sampled_from([0, 1, 1_000_000, 60_000_000]),
)
def test_max_events_within_equals_brute_force(stamps: list[int], window: int) -> None:
    expected = max((sum(1 for u in stamps if t <= u <= t + window) for t in stamps), default=0)
    assert quality.max_events_within(stamps, window) == expected


def test_bots_need_more_than_600_within_60_seconds_inclusive() -> None:
    exactly_600 = [i * 100_000 for i in range(600)]  # 600 events within 59.9 s
    assert quality.suspected_bots({"u": exactly_600}) == []
    edge = [*exactly_600, 60_000_000]  # 601st exactly 60 s after the first
    assert bot_peak(edge) == 601
    assert quality.suspected_bots({"u": edge, "v": exactly_600}) == [quality.SuspectedBot("u", 601)]
    late = [*exactly_600, 60_000_001]
    assert quality.suspected_bots({"u": late}) == []


def test_rejections_by_reason_and_skewed_requests() -> None:
    hour = 3_600_000_000
    requests = [
        quality.RequestTally(10 * hour, 0, [("timestamp", "out_of_window", 2)]),
        quality.RequestTally(10 * hour, 9 * hour, [("event", "required", 1)]),  # exactly 1 h
        quality.RequestTally(10 * hour, 9 * hour - 1, [("event", "required", 3)]),
        quality.RequestTally(10 * hour, 11 * hour + 1, [("timestamp", "out_of_window", 4)]),
        quality.RequestTally(10 * hour, 20 * hour, []),
    ]
    tally = quality.tally_rejections(requests)
    assert tally.total == 10
    assert tally.skewed == 7
    assert tally.reasons() == [
        ("timestamp", "out_of_window", 6),
        ("event", "required", 4),
    ]


def counts(**changes: int) -> quality.QualityCounts:
    base = {
        "accepted": 0,
        "duplicates": 0,
        "rejected": 0,
        "id_conflicts": 0,
        "missing_fields": 0,
        "active_users": 0,
        "orphan_activity": 0,
        "clock_skew": 0,
        "suspected_bots": 0,
    }
    base.update(changes)
    return quality.QualityCounts(**base)


def test_score_follows_the_penalty_table() -> None:
    assert quality.score(counts()) is None
    assert quality.score(counts(accepted=100, active_users=10)) == 100.0
    # 5 % rejected of 100 received: half of 25. 1 orphan of 10 users: half of 15.
    c = counts(accepted=95, rejected=5, active_users=10, orphan_activity=1)
    assert quality.score(c) == 80.0
    # 3 of 30 accepted lack a field (the whole 20), 2 of 30 skewed (2/3 of 10): 220/3,
    # rounded once (adding the penalties as doubles gave 73.33333333333334).
    c = counts(accepted=30, missing_fields=3, clock_skew=2, active_users=10)
    assert quality.score(c) == float(Fraction(220, 3))
    worst = counts(
        accepted=10,
        rejected=90,
        duplicates=50,
        id_conflicts=50,
        missing_fields=10,
        active_users=1,
        orphan_activity=1,
        clock_skew=100,
        suspected_bots=1,
    )
    assert quality.score(worst) == 0.0
    assert [p.issue for p in quality.penalties(worst)] == list(quality.Issue)


@settings(max_examples=300, deadline=None)
@given(
    accepted=st.integers(1, 1000),
    issue=st.sampled_from(
        ["id_conflicts", "missing_fields", "orphan_activity", "suspected_bots", "clock_skew"]
    ),
    a=st.integers(0, 1000),
    b=st.integers(0, 1000),
)
def test_score_never_rises_as_an_issue_grows(accepted: int, issue: str, a: int, b: int) -> None:
    low, high = sorted((a, b))
    limit = accepted
    low, high = min(low, limit), min(high, limit)
    s_low = quality.score(counts(accepted=accepted, active_users=accepted, **{issue: low}))
    s_high = quality.score(counts(accepted=accepted, active_users=accepted, **{issue: high}))
    assert s_low is not None and s_high is not None
    assert s_high <= s_low
