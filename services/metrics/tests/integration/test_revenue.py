"""Revenue through gRPC equals the brute-force reference, with late events and duplicates."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import revenue_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from ..reference_revenue import RefMonth, daily, day_start_us, months
from .conftest import TENANTS, MetricsUnderTest, auth

Day = tuple[str, int, int, float | None]


def at(day: date, seconds: int = 0) -> int:
    return day_start_us(day) + seconds * 1_000_000


async def query(
    m: MetricsUnderTest, tenant: str, first: date, last: date
) -> revenue_pb2.RevenueResponse:
    return await m.stub.Revenue(
        revenue_pb2.RevenueRequest(from_date=first.isoformat(), to_date=last.isoformat()),
        metadata=auth(tenant),
        timeout=10,
    )


def opt(message: object, name: str) -> float | None:
    return getattr(message, name) if message.HasField(name) else None  # type: ignore[attr-defined]


def as_ref(m: revenue_pb2.RevenueMonth) -> RefMonth:
    """A response month in the reference's shape."""
    return RefMonth(
        month=m.month,
        mrr_start=m.mrr_start,
        mrr_end=m.mrr_end,
        paying_start=m.paying_orgs_start,
        paying_end=m.paying_orgs_end,
        new=m.new_mrr,
        new_orgs=m.new_orgs,
        expansion=m.expansion_mrr,
        expansion_orgs=m.expansion_orgs,
        contraction=m.contraction_mrr,
        contraction_orgs=m.contraction_orgs,
        churned=m.churned_mrr,
        churned_orgs=m.churned_orgs,
        churn_rate=opt(m, "churn_rate"),
        arpu_end=opt(m, "arpu_end"),
        ltv=opt(m, "ltv"),
        spend=m.marketing_spend,
        cac=opt(m, "cac"),
        ltv_to_cac=opt(m, "ltv_to_cac"),
        payback_months=opt(m, "payback_months"),
        mrr_growth=opt(m, "mrr_growth"),
        signups=m.signups,
        previous_signups=m.previous_signups,
        referral_signups=m.referral_signups,
        signup_growth=opt(m, "signup_growth"),
        viral_coefficient=opt(m, "viral_coefficient"),
        channels=tuple(
            (c.channel, c.marketing_spend, c.new_orgs, opt(c, "cac")) for c in m.channels
        ),
    )


async def settled(
    m: MetricsUnderTest, tenant: str, position: int, first: date, last: date
) -> tuple[list[Day], list[RefMonth]]:
    async def caught_up() -> revenue_pb2.RevenueResponse:
        answer = await query(m, tenant, first, last)
        assert answer.log_position >= position
        return answer

    answer = await assert_eventually(caught_up, timeout=30)
    days = [(d.date, d.mrr, d.paying_orgs, opt(d, "arpu")) for d in answer.days]
    return days, [as_ref(x) for x in answer.months]


BOUNDS = [date(2026, 2, 1), date(2026, 3, 1), date(2026, 4, 1)]
instants = st.one_of(
    st.builds(
        lambda d, s: at(date(2026, 1, 25) + timedelta(days=d), s),
        st.integers(0, 75),
        st.integers(0, 86_399),
    ),
    st.builds(lambda d, o: day_start_us(d) + o, st.sampled_from(BOUNDS), st.sampled_from([-1, 0])),
)


def props(mrr: object, amount: object, channel: object) -> str:
    values = {"mrr": mrr, "amount": amount, "channel": channel}
    return json.dumps({k: v for k, v in values.items() if v is not None})


events_strategy = st.lists(
    st.builds(
        Ev,
        event_id=st.sampled_from([f"e{i:02d}" for i in range(40)]),  # repeats: duplicates
        event=st.sampled_from(
            [
                "subscription.started",
                "subscription.started",
                "subscription.changed",
                "subscription.canceled",
                "marketing.spend",
                "user.signup",
                "user.signup",
                "page.view",
            ]
        ),
        user_id=st.sampled_from(["", "u1", "u2", "u3", "u4"]),
        org_id=st.sampled_from(["", "o1", "o2", "o3"]),
        timestamp_us=instants,
        properties=st.builds(
            props,
            st.sampled_from([0, 100, 250, 100.0, -5, "100", None]),
            st.sampled_from([0, 500, 7.5, None]),
            st.sampled_from(["seo", "referral", None]),
        ),
    ),
    min_size=1,
    max_size=50,
)


async def test_generated_event_sets_match_the_reference(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS)
    # The range cuts February and April: both are still computed as whole months.
    first, last = date(2026, 2, 20), date(2026, 4, 2)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(events=events_strategy)
    def run(events: list[Ev]) -> None:
        tenant = next(tenants)

        async def check() -> None:
            position = await metrics.append(tenant, events)
            days, got = await settled(metrics, tenant, position, first, last)
            assert days == daily(events, first, last)
            assert got == months(events, first, last)

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    # Hypothesis drives examples synchronously: it runs in a thread and hands
    # each example to the test's event loop, where the service lives.
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)


def sub(event_id: str, event: str, org: str, ts: int, mrr: object = None) -> Ev:
    return Ev(event_id, event, "", org, ts, json.dumps({} if mrr is None else {"mrr": mrr}))


async def test_late_events_duplicates_and_skipped_changes_by_hand(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t170"
    march = date(2026, 3, 1)
    on_time = [
        sub("a", "subscription.started", "o1", at(date(2026, 2, 10)), 100),
        sub("b", "subscription.started", "o2", at(date(2026, 2, 11)), 50),
        sub("c", "subscription.changed", "o1", at(date(2026, 3, 5)), 180.0),  # a float: skipped
        sub("d", "subscription.changed", "o2", at(date(2026, 3, 6)), 80),
        Ev("s1", "marketing.spend", "", "", at(date(2026, 3, 7)), '{"amount": 400}'),
    ]
    position = await metrics.append(tenant, on_time)
    days, got = await settled(metrics, tenant, position, march, date(2026, 3, 31))
    assert days[0] == ("2026-03-01", 150, 2, 75.0)
    assert days[-1] == ("2026-03-31", 180, 2, 90.0)
    (m,) = got
    assert (m.mrr_start, m.mrr_end, m.expansion, m.expansion_orgs, m.new_orgs) == (
        150,
        180,
        30,
        1,
        0,
    )
    assert (m.spend, m.cac, m.churn_rate, m.ltv) == (400, None, 0.0, None)

    # Late: o1 canceled in February (so it is new in March if it pays again), a
    # duplicate of "d" with another mrr (the first stands), o3 new in March, same instant
    # as its cancel with a higher event_id winning.
    late = [
        sub("a2", "subscription.canceled", "o1", at(date(2026, 2, 20))),
        sub("a3", "subscription.started", "o1", at(date(2026, 3, 20)), 120),
        sub("d", "subscription.changed", "o2", at(date(2026, 3, 6)), 999),
        sub("f1", "subscription.canceled", "o3", at(date(2026, 3, 21))),
        sub("f2", "subscription.started", "o3", at(date(2026, 3, 21)), 30),
    ]
    position = await metrics.append(tenant, late, per_message=2)
    days, got = await settled(metrics, tenant, position, march, date(2026, 3, 31))
    assert days[-1] == ("2026-03-31", 230, 3, 230 / 3)
    (m,) = got
    assert (m.mrr_start, m.mrr_end, m.new, m.new_orgs, m.expansion) == (50, 230, 150, 2, 30)
    assert m.mrr_end - m.mrr_start == m.new + m.expansion - m.contraction - m.churned
    assert (m.cac, m.mrr_growth) == (200.0, 180 / 50)


async def test_invalid_ranges_are_rejected_with_field_violations(
    metrics: MetricsUnderTest,
) -> None:
    for from_date, to_date, field in [
        ("2026-02-30", "2026-03-01", "from_date"),
        ("2026-03-05", "2026-03-01", "to_date"),
        ("2026-03-01", "", "to_date"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await metrics.stub.Revenue(
                revenue_pb2.RevenueRequest(from_date=from_date, to_date=to_date),
                metadata=auth("t0"),
                timeout=5,
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(caught.value)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert any(d.Unpack(bad) for d in status.details)
        assert [v.field for v in bad.field_violations] == [field]


async def test_tenants_never_see_each_other(metrics: MetricsUnderTest) -> None:
    day = date(2026, 3, 3)
    position = await metrics.append("t180", [sub("x", "subscription.started", "o1", at(day), 70)])
    days, _ = await settled(metrics, "t180", position, day, day)
    assert days == [("2026-03-03", 70, 1, 70.0)]
    days, _ = await settled(metrics, "t181", position, day, day)
    assert days == [("2026-03-03", 0, 0, None)]


async def test_cac_by_acquisition_channel_and_signups_by_hand(metrics: MetricsUnderTest) -> None:
    tenant = "t175"

    def signup(event_id: str, user: str, org: str, ts: int, channel: str | None) -> Ev:
        properties = {} if channel is None else {"channel": channel}
        return Ev(event_id, "user.signup", user, org, ts, json.dumps(properties))

    def spend(event_id: str, ts: int, amount: object, channel: str) -> Ev:
        properties = {"amount": amount, "channel": channel}
        return Ev(event_id, "marketing.spend", "", "", ts, json.dumps(properties))

    feb, mar, apr = date(2026, 2, 5), date(2026, 3, 5), date(2026, 4, 5)
    events = [
        # o1's earliest signup is u2's (seo), not u1's (paid), nor the later one (referral),
        # nor the user-less one before them (paid).
        signup("g1", "u1", "o1", at(feb, 20), "paid"),
        # The earliest of all, but of no user: it lacks the field its KPIs need (events.md).
        signup("g0", "", "o1", at(feb, 1), "paid"),
        signup("g2", "u2", "o1", at(feb, 10), "seo"),
        signup("g3", "u3", "o1", at(mar), "referral"),
        signup("g4", "u4", "o2", at(mar), None),  # o2 has no acquisition channel
        signup("g5", "u5", "", at(mar, 5), "referral"),
        signup("g6", "u2", "", at(mar, 6), "referral"),  # u2's second: not a March signup
        sub("s1", "subscription.started", "o1", at(mar, 30), 100),
        sub("s2", "subscription.started", "o2", at(mar, 40), 300),
        spend("m1", at(mar), 1000, "seo"),
        spend("m2", at(mar), 500, "paid"),
        spend("m3", at(apr), 70, "seo"),  # April's: the range cuts April, it is still whole
    ]
    position = await metrics.append(tenant, events)
    _, got = await settled(metrics, tenant, position, date(2026, 3, 31), date(2026, 4, 1))
    march, april = got
    assert (march.month, april.month) == ("2026-03", "2026-04")
    assert (march.new, march.new_orgs, march.spend, march.cac) == (400, 2, 1500, 750.0)
    assert march.channels == (("paid", 500, 0, None), ("seo", 1000, 1, 1000.0))
    assert (march.signups, march.previous_signups, march.referral_signups) == (3, 2, 2)
    assert (march.signup_growth, march.viral_coefficient) == (0.5, 1.0)
    assert march.payback_months == 750.0 / 200.0
    assert (april.spend, april.cac, april.mrr_start, april.mrr_end) == (70, None, 400, 400)
    assert (april.signups, april.previous_signups, april.viral_coefficient) == (0, 3, 0.0)
