"""Retention's pure rules equal the brute-force reference, and its edges hold by hand."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.retention import (
    CohortAttribute,
    CohortCounts,
    CohortGranularity,
    CohortQuery,
    CohortSegment,
    RetentionCell,
    RetentionMatrix,
    RetentionMode,
    RetentionTrend,
    cohort_start,
    cohort_starts,
    count_cohorts,
    day_retention_over_signups,
    elapsed,
    period_end,
    period_of,
    period_start,
    retention_matrix,
    retention_trend,
)
from northstar_metrics.domain.signups import signups

from ..reference import Ev
from ..reference_retention import day_retention, retention
from ..reference_retention import retention_trend as reference_trend

START = datetime(2026, 1, 20, tzinfo=UTC)
US = 1_000_000
DAY = CohortGranularity.DAY
WEEK = CohortGranularity.WEEK
MONTH = CohortGranularity.MONTH


def at(day: int, seconds: int = 0) -> int:
    return int((START + timedelta(days=day, seconds=seconds)).timestamp()) * US


def d(day: int) -> date:
    return (START + timedelta(days=day)).date()


def inputs(events: list[Ev]) -> tuple[dict, dict[str, list[date]]]:
    """What the read model hands the domain: first-stored events, signups, activity days."""
    kept: dict[str, Ev] = {}
    for e in events:
        kept.setdefault(e.event_id, e)
    rows = [
        EventRow(e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, json.loads(e.properties))
        for e in kept.values()
    ]
    days: dict[str, set[date]] = {}
    for r in rows:
        if r.user_id:
            days.setdefault(r.user_id, set()).add(r.day)
    return signups(rows), {u: sorted(s) for u, s in days.items()}


def matrix_tuples(m: RetentionMatrix) -> tuple[list, list]:
    def cell(c: RetentionCell) -> tuple:
        return (c.period, c.retained, c.cohort_size, c.retention)

    rows = [
        (r.start.isoformat(), r.end.isoformat(), r.size, [cell(c) for c in r.cells])
        for r in m.cohorts
    ]
    return rows, [cell(c) for c in m.combined]


def trend_tuples(t: RetentionTrend) -> tuple[list, tuple | None]:
    def cell(c: RetentionCell | None) -> tuple | None:
        return None if c is None else (c.period, c.retained, c.cohort_size, c.retention)

    points = [(p.start.isoformat(), p.end.isoformat(), p.size, cell(p.cell)) for p in t.points]
    return points, cell(t.combined)


PROPERTIES = [
    json.dumps({"plan": "free", "channel": "seo"}),
    json.dumps({"plan": "pro", "channel": "referral"}),
    json.dumps({"plan": "free"}),
    json.dumps({"plan": 1, "channel": ["seo"]}),  # non-string attributes: in no segment
    "{}",
]


@st.composite
def event_sets(draw: st.DrawFn) -> list[Ev]:
    """Users who sign up (some twice, some at one instant) and come back around then."""
    events: list[Ev] = []
    ids = iter(f"e{i}" for i in range(10_000))
    instant = st.sampled_from([0, 0, 3600, 86_399])
    for user in ["u1", "u2", "u3", "u4", "u5", "u6"]:
        signup_day = draw(st.integers(0, 30))
        for _ in range(draw(st.integers(0, 2))):  # 0: no cohort; 2: the earliest stands
            day = signup_day + draw(st.sampled_from([0, 0, 1, 35]))
            props = draw(st.sampled_from(PROPERTIES))
            events.append(Ev(next(ids), "user.signup", user, "", at(day, draw(instant)), props))
        for offset in draw(st.lists(st.integers(-3, 70), max_size=12)):
            name = draw(st.sampled_from(["page.view", "workflow.run"]))
            events.append(Ev(next(ids), name, user, "", at(signup_day + offset, draw(instant))))
    events += draw(
        st.lists(
            st.builds(
                Ev,
                st.just("noise"),
                st.just("marketing.spend"),
                st.just(""),
                st.just(""),
                st.builds(at, st.integers(0, 70)),
            ),
            max_size=2,
        )
    )
    # Duplicates: an id seen before, maybe with other content (the first stands).
    for _ in range(draw(st.integers(0, 4))):
        if events:
            original = draw(st.sampled_from(events))
            other = draw(st.sampled_from(["u1", "u2", "u7"]))
            day = draw(st.integers(0, 70))
            events.append(Ev(original.event_id, "user.signup", other, "", at(day), PROPERTIES[0]))
    return draw(st.permutations(events))  # arrival order: late events anywhere


events_strategy = event_sets()

query_strategy = st.fixed_dictionaries(
    {
        "granularity": st.sampled_from(["day", "week", "month"]),
        "first": st.integers(-5, 25),
        "span": st.integers(0, 40),
        "periods": st.integers(1, 8),
        "as_of": st.integers(10, 130),
        "mode": st.sampled_from(["on_day", "on_or_after"]),
        "segment": st.sampled_from(
            [None, None, None, ("plan", "free"), ("plan", "pro"), ("channel", "seo"), ("plan", "1")]
        ),
    }
)


def domain_query(q: dict) -> CohortQuery:
    segment = None
    if q["segment"] is not None:
        segment = CohortSegment(CohortAttribute(q["segment"][0]), q["segment"][1])
    return CohortQuery(
        CohortGranularity(q["granularity"]),
        d(q["first"]),
        d(q["first"] + q["span"]),
        RetentionMode(q["mode"]),
        segment,
        d(q["as_of"]),
    )


@settings(max_examples=400, deadline=None)
@given(events=events_strategy, q=query_strategy, limit_periods=st.booleans())
def test_matrix_equals_the_reference(events: list[Ev], q: dict, limit_periods: bool) -> None:
    signups_by_user, user_days = inputs(events)
    query = domain_query(q)
    wanted = range(q["periods"]) if limit_periods else None
    counts = count_cohorts(signups_by_user, user_days, query, periods=wanted)
    got = matrix_tuples(retention_matrix(query, q["periods"], counts))
    assert got == retention(
        events,
        granularity=q["granularity"],
        first=query.first,
        last=query.last,
        periods=q["periods"],
        as_of=query.as_of,
        mode=q["mode"],
        segment=q["segment"],
    )


@settings(max_examples=300, deadline=None)
@given(events=events_strategy, q=query_strategy, n=st.integers(0, 9))
def test_trend_equals_the_reference(events: list[Ev], q: dict, n: int) -> None:
    signups_by_user, user_days = inputs(events)
    query = domain_query(q)
    counts = count_cohorts(signups_by_user, user_days, query, periods=range(n, n + 1))
    assert trend_tuples(retention_trend(query, n, counts)) == reference_trend(
        events,
        granularity=q["granularity"],
        first=query.first,
        last=query.last,
        period=n,
        as_of=query.as_of,
        mode=q["mode"],
        segment=q["segment"],
    )


@settings(max_examples=300, deadline=None)
@given(
    events=events_strategy, first=st.integers(-3, 60), span=st.integers(0, 40), n=st.integers(0, 9)
)
def test_day_retention_over_signups_equals_the_reference(
    events: list[Ev], first: int, span: int, n: int
) -> None:
    signups_by_user, user_days = inputs(events)
    got = day_retention_over_signups(signups_by_user, user_days, d(first), d(first + span), n)
    assert got == day_retention(events, d(first), d(first + span), n)


@settings(max_examples=200, deadline=None)
@given(events=events_strategy, q=query_strategy, order=st.randoms())
def test_arrival_order_only_matters_through_first_stored(
    events: list[Ev], q: dict, order: object
) -> None:
    """Late events: distinct ids in any arrival order give one matrix."""
    unique = list({e.event_id: e for e in events}.values())
    shuffled = list(unique)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    query = domain_query(q)
    answers = []
    for arrival in (unique, shuffled):
        signups_by_user, user_days = inputs(arrival)
        counts = count_cohorts(signups_by_user, user_days, query)
        answers.append(matrix_tuples(retention_matrix(query, q["periods"], counts)))
    assert answers[0] == answers[1]


def test_period_arithmetic_by_hand() -> None:
    jan = date(2026, 1, 1)
    assert period_start(jan, 1, MONTH) == date(2026, 2, 1)
    assert period_end(jan, 1, MONTH) == date(2026, 2, 28)
    assert period_end(jan, 13, MONTH) == date(2027, 2, 28)
    assert period_end(date(2024, 1, 1), 1, MONTH) == date(2024, 2, 29)
    assert period_start(date(2025, 12, 1), 1, MONTH) == date(2026, 1, 1)
    # A user who signed up on Jan 31 is in the January cohort; Feb 28 is its period 1.
    assert cohort_start(date(2026, 1, 31), MONTH) == jan
    assert period_of(jan, date(2026, 2, 28), MONTH) == 1
    assert period_of(jan, date(2026, 3, 1), MONTH) == 2
    # ISO weeks: 2026-01-01 is a Thursday; its week starts Monday 2025-12-29.
    assert cohort_start(date(2026, 1, 1), WEEK) == date(2025, 12, 29)
    assert period_of(date(2025, 12, 29), date(2026, 1, 4), WEEK) == 0
    assert period_of(date(2025, 12, 29), date(2026, 1, 5), WEEK) == 1
    assert period_of(date(2026, 1, 5), date(2026, 1, 4), WEEK) == -1
    assert period_end(date(2025, 12, 29), 1, WEEK) == date(2026, 1, 11)
    # Cohort range: periods whose FIRST day is in it.
    assert cohort_starts(date(2026, 1, 1), date(2026, 1, 12), WEEK) == [
        date(2026, 1, 5),
        date(2026, 1, 12),
    ]
    assert cohort_starts(date(2026, 1, 2), date(2026, 3, 1), MONTH) == [
        date(2026, 2, 1),
        date(2026, 3, 1),
    ]
    assert cohort_starts(date(2026, 1, 2), date(2026, 1, 1), DAY) == []
    # Mature when the period's last day is on or before the end date.
    assert elapsed(jan, 1, MONTH, date(2026, 2, 28))
    assert not elapsed(jan, 1, MONTH, date(2026, 2, 27))
    assert not elapsed(date(9999, 12, 1), 1, MONTH, date.max)
    assert cohort_starts(date(9999, 12, 1), date.max, MONTH) == [date(9999, 12, 1)]


def test_month_cohorts_across_month_ends_by_hand() -> None:
    events = [
        Ev("s1", "user.signup", "a", "", at(11)),  # 2026-01-31
        Ev("s2", "user.signup", "b", "", at(0)),  # 2026-01-20
        Ev("v1", "page.view", "a", "", at(39)),  # 2026-02-28: a's period 1
        Ev("v2", "page.view", "b", "", at(40)),  # 2026-03-01: b's period 2
    ]
    s, days = inputs(events)
    query = CohortQuery(MONTH, date(2026, 1, 1), date(2026, 1, 1), as_of=date(2026, 3, 31))
    matrix = retention_matrix(query, 4, count_cohorts(s, days, query))
    assert matrix_tuples(matrix)[0] == [
        ("2026-01-01", "2026-01-31", 2, [(0, 2, 2, 1.0), (1, 1, 2, 0.5), (2, 1, 2, 0.5)])
    ]
    after = CohortQuery(
        MONTH,
        date(2026, 1, 1),
        date(2026, 1, 1),
        RetentionMode.ON_OR_AFTER,
        None,
        date(2026, 3, 31),
    )
    matrix = retention_matrix(after, 4, count_cohorts(s, days, after))
    assert [(c.period, c.retained) for c in matrix.cohorts[0].cells] == [(0, 2), (1, 2), (2, 1)]


def test_activity_before_signup_and_only_the_signup_by_hand() -> None:
    events = [
        Ev("p0", "page.view", "a", "", at(1)),  # before a's signup: period -1
        Ev("s1", "user.signup", "a", "", at(2)),
        Ev("s2", "user.signup", "b", "", at(2)),  # b: only the signup
        Ev("s3", "user.signup", "b", "", at(5)),  # a later signup of b changes nothing
        Ev("p1", "page.view", "a", "", at(3)),
    ]
    s, days = inputs(events)
    query = CohortQuery(DAY, d(1), d(2), as_of=d(10))
    counts = count_cohorts(s, days, query)
    rows, combined = matrix_tuples(retention_matrix(query, 3, counts))
    assert rows == [
        (
            d(1).isoformat(),
            d(1).isoformat(),
            0,
            [(0, 0, 0, None), (1, 0, 0, None), (2, 0, 0, None)],
        ),
        (d(2).isoformat(), d(2).isoformat(), 2, [(0, 2, 2, 1.0), (1, 1, 2, 0.5), (2, 0, 2, 0.0)]),
    ]
    assert combined == [(0, 2, 2, 1.0), (1, 1, 2, 0.5), (2, 0, 2, 0.0)]
    assert day_retention_over_signups(s, days, d(0), d(9), 1) == (1, 2)
    assert day_retention_over_signups(s, days, d(0), d(9), 0) == (2, 2)
    assert day_retention_over_signups(s, days, d(3), d(9), 0) == (0, 0)


def test_unelapsed_periods_are_absent_by_hand() -> None:
    events = [Ev("s1", "user.signup", "a", "", at(0)), Ev("p", "page.view", "a", "", at(8))]
    s, days = inputs(events)
    # d(-1) is Monday 2026-01-19; its period 1 ends on Sunday 2026-02-01, d(12).
    query = CohortQuery(WEEK, d(-1), d(-1), as_of=d(11))
    rows, _ = matrix_tuples(retention_matrix(query, 5, count_cohorts(s, days, query)))
    assert rows == [("2026-01-19", "2026-01-25", 1, [(0, 1, 1, 1.0)])]
    query = CohortQuery(WEEK, d(-1), d(-1), as_of=d(12))
    rows, _ = matrix_tuples(retention_matrix(query, 5, count_cohorts(s, days, query)))
    assert rows == [("2026-01-19", "2026-01-25", 1, [(0, 1, 1, 1.0), (1, 1, 1, 1.0)])]
    # Period 0 of a week still in progress is absent too.
    query = CohortQuery(WEEK, d(-1), d(-1), as_of=d(4))
    rows, combined = matrix_tuples(retention_matrix(query, 5, count_cohorts(s, days, query)))
    assert rows == [("2026-01-19", "2026-01-25", 1, [])]
    assert combined == []
    trend = retention_trend(query, 0, count_cohorts(s, days, query))
    assert trend_tuples(trend) == ([("2026-01-19", "2026-01-25", 1, None)], None)


def test_on_or_after_counts_only_up_to_the_end_date() -> None:
    counts = CohortCounts(
        RetentionMode.ON_OR_AFTER, {d(0): 4}, {(d(0), 0): 1, (d(0), 2): 2, (d(0), 5): 1}
    )
    assert [counts.retained(d(0), n) for n in range(7)] == [4, 3, 3, 1, 1, 1, 0]
    assert counts.retained(d(1), 1) == 0
