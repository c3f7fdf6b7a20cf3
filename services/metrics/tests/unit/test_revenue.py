"""Revenue: the one-pass domain functions equal the brute-force reference, and the edges."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.revenue import (
    MonthEnds,
    MonthRevenue,
    RevenueFacts,
    SubscriptionState,
    daily_revenue,
    daily_revenue_of_steps,
    month_summaries,
    month_summary,
    months_overlapping,
    movements,
    mrr_by_day,
    mrr_steps,
    org_month_ends,
    spend_by_month,
    subscription_states,
    summarize,
)
from northstar_metrics.domain.signups import signups

from ..reference import Ev, dedup
from ..reference_revenue import RefMonth, daily, day_start_us, end_of_day_us, months

FIRST, LAST = date(2026, 1, 20), date(2026, 4, 10)


def rows_of(events: list[Ev]) -> list[EventRow]:
    """The read model's view of events: duplicates removed, properties decoded."""
    return [
        EventRow(
            e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, orjson.loads(e.properties)
        )
        for e in dedup(events)
    ]


def as_ref(m: MonthRevenue) -> RefMonth:
    """A domain MonthRevenue in the reference's shape."""
    fields = {f.name: getattr(m, f.name) for f in dataclasses.fields(RefMonth)}
    fields["month"] = m.month.strftime("%Y-%m")
    fields["channels"] = tuple((c.channel, c.spend, c.new_orgs, c.cac) for c in m.channels)
    return RefMonth(**fields)


def domain_months(events: list[Ev], first: date, last: date) -> list[MonthRevenue]:
    rows = rows_of(events)
    return month_summaries(
        RevenueFacts.from_rows(rows, signups(rows)), months_overlapping(first, last)
    )


def domain_daily(
    events: list[Ev], first: date, last: date
) -> list[tuple[str, int, int, float | None]]:
    states = subscription_states(rows_of(events))
    return [
        (d.day.isoformat(), d.mrr, d.paying_orgs, d.arpu)
        for d in daily_revenue(states, first, last)
    ]


def at(day: date, seconds: float = 0) -> int:
    return day_start_us(day) + int(seconds * 1_000_000)


# Instants cluster on month and day boundaries (the last and first microsecond) and
# repeat, so ties and the "end of day" edge are met often.
BOUNDARIES = [date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1), date(2026, 3, 15)]
instants = st.one_of(
    st.builds(
        lambda d, s: at(FIRST + timedelta(days=d), s), st.integers(0, 80), st.integers(0, 86_399)
    ),
    st.builds(
        lambda d, o: day_start_us(d) + o, st.sampled_from(BOUNDARIES), st.sampled_from([-1, 0, 1])
    ),
)
MRRS = [0, 100, 250, 999, 100.0, -5, "100", True, None]


def props(mrr: object, amount: object, channel: object, plan: object) -> str:
    values = {"mrr": mrr, "amount": amount, "channel": channel, "plan": plan}
    return json.dumps({k: v for k, v in values.items() if v is not None})


events_strategy = st.lists(
    st.builds(
        Ev,
        event_id=st.sampled_from([f"e{i:02d}" for i in range(45)]),  # repeats: duplicates
        event=st.sampled_from(
            [
                "subscription.started",
                "subscription.changed",
                "subscription.changed",
                "subscription.canceled",
                "subscription.paused",
                "marketing.spend",
                "user.signup",
                "user.signup",
                "page.view",
            ]
        ),
        user_id=st.sampled_from(["", "u1", "u2", "u3", "u4", "u5"]),
        org_id=st.sampled_from(["", "o1", "o2", "o3", "o4"]),
        timestamp_us=instants,
        properties=st.builds(
            props,
            st.sampled_from(MRRS),
            st.sampled_from([0, 500, 1200, 3.5, "7", None]),
            st.sampled_from(["seo", "paid", "referral", None, 5]),
            st.sampled_from(["free", "pro", None]),
        ),
    ),
    max_size=70,
)


@settings(max_examples=300, deadline=None)
@given(events=events_strategy)
def test_daily_series_equals_the_reference(events: list[Ev]) -> None:
    assert domain_daily(events, FIRST, LAST) == daily(events, FIRST, LAST)
    expected = {date.fromisoformat(d): mrr for d, mrr, _, _ in daily(events, FIRST, LAST)}
    assert mrr_by_day(rows_of(events), FIRST, LAST) == expected


@settings(max_examples=300, deadline=None)
@given(events=events_strategy)
def test_months_equal_the_reference(events: list[Ev]) -> None:
    first, last = date(2026, 2, 10), date(2026, 4, 3)
    got = domain_months(events, first, last)
    assert [as_ref(m) for m in got] == months(events, first, last)
    rows = rows_of(events)
    for m in got:
        assert month_summary(rows, signups(rows), m.month) == m


@settings(max_examples=300, deadline=None)
@given(events=events_strategy)
def test_movements_reconcile_mrr_exactly(events: list[Ev]) -> None:
    days = {d: mrr for d, mrr, _, _ in domain_daily(events, FIRST, LAST)}
    for m in domain_months(events, date(2026, 2, 1), date(2026, 3, 31)):
        assert m.mrr_end - m.mrr_start == m.new + m.expansion - m.contraction - m.churned
        assert min(m.new, m.expansion, m.contraction, m.churned) >= 0
        assert m.mrr_start == days[(m.month - timedelta(days=1)).isoformat()]
        month_end = (m.month + timedelta(days=31)).replace(day=1) - timedelta(days=1)
        assert m.mrr_end == days[month_end.isoformat()]


def sub(event_id: str, event: str, org: str, ts: int, mrr: object = None) -> Ev:
    return Ev(event_id, event, "", org, ts, json.dumps({} if mrr is None else {"mrr": mrr}))


MARCH = date(2026, 3, 1)


def march(events: list[Ev]) -> MonthRevenue:
    rows = rows_of(events)
    return month_summary(rows, signups(rows), MARCH)


def test_cancel_and_restart_inside_the_month_compares_only_the_ends() -> None:
    events = [
        sub("a", "subscription.started", "o1", at(date(2026, 2, 10)), 100),
        sub("b", "subscription.canceled", "o1", at(date(2026, 3, 5))),
        sub("c", "subscription.started", "o1", at(date(2026, 3, 20)), 150),
    ]
    m = march(events)
    assert (m.mrr_start, m.mrr_end, m.new, m.expansion, m.churned) == (100, 150, 0, 50, 0)
    assert (m.expansion_orgs, m.new_orgs, m.churned_orgs, m.churn_rate) == (1, 0, 0, 0.0)
    assert m.ltv is None  # no churn: LTV's denominator is 0


def test_a_canceled_org_that_pays_again_at_the_end_is_new() -> None:
    events = [
        sub("a", "subscription.started", "o1", at(date(2026, 1, 10)), 100),
        sub("b", "subscription.canceled", "o1", at(date(2026, 2, 5))),
        sub("c", "subscription.started", "o1", at(date(2026, 3, 31), 86_399.999999), 300),
    ]
    m = march(events)
    assert (m.mrr_start, m.mrr_end, m.new, m.new_orgs, m.churned) == (0, 300, 300, 1, 0)
    assert m.churn_rate is None and m.mrr_growth is None


def test_events_at_one_timestamp_are_ordered_by_event_id() -> None:
    ts = at(date(2026, 3, 10))
    events = [
        sub("b", "subscription.changed", "o1", ts, 200),
        sub("a", "subscription.started", "o1", ts, 100),
        sub("c", "subscription.canceled", "o2", ts),
        sub("d", "subscription.started", "o2", ts, 50),
    ]
    assert mrr_by_day(rows_of(events), date(2026, 3, 10), date(2026, 3, 10)) == {
        date(2026, 3, 10): 250
    }


def test_skipped_events_leave_the_previous_state() -> None:
    events = [
        sub("a", "subscription.started", "o1", at(date(2026, 3, 1)), 100),
        sub("b", "subscription.changed", "o1", at(date(2026, 3, 2)), 120.5),
        sub("c", "subscription.changed", "o1", at(date(2026, 3, 3)), 100.0),  # a float
        sub("d", "subscription.changed", "o1", at(date(2026, 3, 4)), "500"),
        sub("e", "subscription.changed", "o1", at(date(2026, 3, 5)), -1),
        sub("f", "subscription.changed", "o1", at(date(2026, 3, 6))),  # no mrr
        sub("g", "subscription.canceled", "", at(date(2026, 3, 7))),  # no org
        sub("h", "subscription.changed", "o1", at(date(2026, 3, 8)), True),
    ]
    days = mrr_by_day(rows_of(events), date(2026, 2, 28), date(2026, 3, 9))
    assert set(days.values()) == {0, 100}
    assert days[date(2026, 2, 28)] == 0 and days[date(2026, 3, 9)] == 100


def test_mrr_zero_and_unknown_subscription_events_are_not_paying() -> None:
    events = [
        sub("a", "subscription.started", "o1", at(date(2026, 2, 1)), 100),
        sub("b", "subscription.started", "o2", at(date(2026, 2, 1)), 60),
        sub("c", "subscription.changed", "o1", at(date(2026, 3, 2)), 0),
        sub("d", "subscription.paused", "o2", at(date(2026, 3, 3))),
        sub("e", "subscription.started", "o3", at(date(2026, 3, 3)), 0),
    ]
    m = march(events)
    assert (m.mrr_start, m.mrr_end, m.churned, m.churned_orgs, m.paying_end) == (160, 0, 160, 2, 0)
    assert (m.churn_rate, m.arpu_end, m.ltv, m.mrr_growth) == (1.0, None, None, -1.0)


def test_the_end_of_a_month_is_its_last_microsecond() -> None:
    events = [
        sub("a", "subscription.started", "o1", day_start_us(MARCH) - 1, 100),
        sub("b", "subscription.started", "o2", day_start_us(date(2026, 4, 1)) - 1, 40),
        sub("c", "subscription.started", "o3", day_start_us(date(2026, 4, 1)), 70),
    ]
    m = march(events)
    assert (m.mrr_start, m.mrr_end, m.new, m.new_orgs) == (100, 140, 40, 1)
    assert end_of_day_us(date(2026, 3, 31)) == day_start_us(date(2026, 4, 1)) - 1


def test_cac_ltv_payback_and_channels() -> None:
    def signup(event_id: str, user: str, org: str, ts: int, channel: str | None) -> Ev:
        properties = {"plan": "free"} | ({} if channel is None else {"channel": channel})
        return Ev(event_id, "user.signup", user, org, ts, json.dumps(properties))

    def spend(event_id: str, ts: int, amount: object, channel: str | None) -> Ev:
        properties = {"amount": amount} | ({} if channel is None else {"channel": channel})
        return Ev(event_id, "marketing.spend", "", "", ts, json.dumps(properties))

    feb, mar = date(2026, 2, 3), date(2026, 3, 3)
    events = [
        # Four orgs pay at the start of March; o4 churns in March.
        *(sub(f"s{i}", "subscription.started", f"o{i}", at(feb), 100) for i in range(1, 5)),
        sub("x4", "subscription.canceled", "o4", at(mar)),
        # New in March: o5 (seo, by a second user's earlier signup), o6 (paid), o7 (no signup).
        sub("s5", "subscription.started", "o5", at(mar), 200),
        sub("s6", "subscription.started", "o6", at(mar), 300),
        sub("s7", "subscription.started", "o7", at(mar), 100),
        signup("g1", "u1", "o5", at(feb, 10), "paid"),
        signup("g2", "u2", "o5", at(feb, 5), "seo"),
        signup("g3", "u3", "o6", at(mar), "paid"),
        signup("g4", "u4", "", at(mar), "referral"),
        signup("g5", "u5", "", at(mar, 1), "referral"),
        signup("g6", "u1", "", at(mar), "referral"),  # u1's second signup: not a signup in March
        spend("m1", at(mar), 900, "seo"),
        spend("m2", at(mar), 600, "paid"),
        spend("m3", at(mar), 300, None),
        spend("m4", at(mar), 50.5, "seo"),  # not an integer: out of CAC
        spend("m5", at(feb), 1000, "tv"),  # February's
    ]
    m = march(events)
    assert (m.mrr_start, m.mrr_end, m.new, m.churned, m.new_orgs) == (400, 900, 600, 100, 3)
    assert m.churn_rate == 0.25
    assert m.arpu_end == 900 / 6
    assert m.ltv == (900 / 6) / 0.25
    assert m.spend == 1800 and m.cac == 600.0
    assert m.ltv_to_cac == ((900 / 6) / 0.25) / 600.0
    assert m.payback_months == 600.0 / (900 / 6)
    assert [(c.channel, c.spend, c.new_orgs, c.cac) for c in m.channels] == [
        ("paid", 600, 1, 600.0),
        ("seo", 900, 1, 900.0),
    ]
    assert (m.signups, m.previous_signups, m.referral_signups) == (3, 2, 2)
    assert (m.signup_growth, m.viral_coefficient) == (0.5, 1.0)
    assert m.mrr_growth == 500 / 400


def test_cac_without_spend_is_zero_and_without_new_orgs_absent() -> None:
    events = [sub("a", "subscription.started", "o1", at(date(2026, 3, 9)), 100)]
    m = march(events)
    assert (m.spend, m.cac, m.ltv_to_cac, m.payback_months) == (0, 0.0, None, 0.0)
    spend = Ev(
        "m", "marketing.spend", "", "", at(date(2026, 3, 9)), '{"amount": 10, "channel": "seo"}'
    )
    m = march([spend])
    assert (m.spend, m.cac, m.payback_months) == (10, None, None)
    assert [(c.channel, c.spend, c.new_orgs, c.cac) for c in m.channels] == [("seo", 10, 0, None)]


def test_months_overlapping_a_range() -> None:
    assert months_overlapping(date(2025, 12, 31), date(2026, 2, 1)) == [
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
    ]
    assert months_overlapping(date(2026, 3, 5), date(2026, 3, 5)) == [date(2026, 3, 1)]


def test_the_pass_is_linear_on_a_large_tenant() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    events = [
        Ev(
            f"e{i}",
            "subscription.changed",
            "",
            f"o{i % 20_000}",
            int((start + timedelta(minutes=5 * i)).timestamp()) * 1_000_000,
            json.dumps({"mrr": i % 500}),
        )
        for i in range(100_000)
    ]
    states = subscription_states(rows_of(events))
    days = daily_revenue(states, date(2025, 1, 1), date(2025, 12, 31))
    assert len(days) == 365 and days[-1].paying_orgs > 0


def summed_steps(events: list[Ev]) -> list[tuple[date, int, int]]:
    """Each org's `mrr_steps`, summed per day (what the `mrr_days` read model holds)."""
    by_org: dict[str, list[SubscriptionState]] = defaultdict(list)
    for s in subscription_states(rows_of(events)):
        by_org[s.org_id].append(s)
    total: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for states in by_org.values():
        for day, (mrr, paying) in mrr_steps(states).items():
            total[day][0] += mrr
            total[day][1] += paying
    return sorted((d, m, p) for d, (m, p) in total.items())


@settings(max_examples=300, deadline=None)
@given(events=events_strategy)
def test_summed_mrr_steps_give_the_daily_reference(events: list[Ev]) -> None:
    got = daily_revenue_of_steps(summed_steps(events), FIRST, LAST)
    assert [(d.day.isoformat(), d.mrr, d.paying_orgs, d.arpu) for d in got] == daily(
        events, FIRST, LAST
    )


@settings(max_examples=300, deadline=None)
@given(events=events_strategy)
def test_months_from_the_org_month_ends_and_the_steps_equal_the_reference(
    events: list[Ev],
) -> None:
    """What the read models hold (org_month_ends, summed steps) gives the same months."""
    first, last = date(2026, 2, 10), date(2026, 4, 3)
    wanted = months_overlapping(first, last)
    rows = rows_of(events)
    facts = RevenueFacts.from_rows(rows, signups(rows))
    by_org: dict[str, list[SubscriptionState]] = defaultdict(list)
    for s in facts.states:
        by_org[s.org_id].append(s)
    changed: dict[date, list[tuple[str, int, int]]] = defaultdict(list)
    for org, states in by_org.items():
        for month, (start, end) in org_month_ends(states).items():
            changed[month].append((org, start, end))
    steps = summed_steps(events)

    def level(bound: date) -> tuple[int, int]:
        return sum(m for d, m, _ in steps if d < bound), sum(p for d, _, p in steps if d < bound)

    spend = spend_by_month(facts.spend)
    got = []
    for m in wanted:
        after = (m + timedelta(days=31)).replace(day=1)
        # The orgs that changed, at both ends (0: not paying), as paying maps.
        start = {o: a for o, a, _ in changed[m] if a}
        end = {o: b for o, _, b in changed[m] if b}
        moves = movements(start, end, facts.acquisition)
        ends = MonthEnds(*level(m), *level(after))
        got.append(summarize(m, ends, moves, spend.get(m, []), facts.signups))
    assert [as_ref(m) for m in got] == months(events, first, last)
