"""Kpis through gRPC on a scenario computed by hand from spec/metrics.md."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from northstar.metrics.v1 import kpis_pb2, revenue_pb2
from northstar_harness.eventually import assert_eventually
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.kpi_values import kpi_values

from ..reference import Ev
from .conftest import MetricsUnderTest, auth


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


def ev(event_id: str, name: str, when: str, user: str = "", org: str = "", **props: object) -> Ev:
    return Ev(event_id, name, user, org, at(when), json.dumps(props))


SCENARIO = [
    # A: signs up 03-01 (referral), creates a workflow the next day, a successful run 10
    # minutes after signup, active on day 7 and day 30.
    ev("a1", "user.signup", "2026-03-01T10:00:00", "A", channel="referral", plan="free"),
    ev("a2", "workflow.created", "2026-03-02T09:00:00", "A", workflow_id="w1"),
    ev("a3", "workflow.run", "2026-03-01T10:10:00", "A", status="success", workflow_id="w1"),
    ev("a4", "page.view", "2026-03-08T12:00:00", "A"),
    ev("a5", "page.view", "2026-03-31T12:00:00", "A"),
    # B: signs up 03-10 (seo) and never comes back.
    ev("b1", "user.signup", "2026-03-10T08:00:00", "B", channel="seo", plan="free"),
    # C: signs up 02-10, active on day 30 (03-12).
    ev("c1", "user.signup", "2026-02-10T08:00:00", "C", channel="seo", plan="pro"),
    ev("c2", "page.view", "2026-03-12T08:00:00", "C"),
    # Revenue: o1 pays through March; o2 is new in March; o3 churns in March.
    ev("o1", "subscription.started", "2026-02-15T00:00:00", org="o1", plan="starter", mrr=1000),
    ev("o2", "subscription.started", "2026-03-05T00:00:00", org="o2", plan="pro", mrr=3000),
    ev("o3", "subscription.started", "2026-01-10T00:00:00", org="o3", plan="pro", mrr=2000),
    ev("o4", "subscription.canceled", "2026-03-20T00:00:00", org="o3"),
    ev("s1", "marketing.spend", "2026-03-03T00:00:00", channel="paid", amount=6000),
]

EXPECTED = {
    "d7_retention": 0.5,
    "activation_rate": 0.5,
    "d30_retention": 1.0,
    "ltv_to_cac": 4000 / 6000,
    "signup_to_value_30m": 0.5,
    "mrr_growth_mom": 1 / 3,
    "churn_rate": 0.5,
    "viral_coefficient": 1.0,
}


async def test_kpis_alignment_and_actions_by_hand(metrics: MetricsUnderTest) -> None:
    position = await metrics.append("t20", SCENARIO)

    async def settled() -> kpis_pb2.KpisResponse:
        answer = await metrics.stub.Kpis(
            kpis_pb2.KpisRequest(as_of_date="2026-04-01"), metadata=auth("t20"), timeout=10
        )
        assert answer.log_position >= position
        return answer

    answer = await assert_eventually(settled, timeout=30)
    values = {k.name: k.value for k in answer.kpis}
    assert values == pytest.approx(EXPECTED)
    states = {k.name: k.state for k in answer.kpis}
    assert states["ltv_to_cac"] == kpis_pb2.KPI_STATE_CRITICAL
    assert states["churn_rate"] == kpis_pb2.KPI_STATE_CRITICAL
    assert states["d7_retention"] == kpis_pb2.KPI_STATE_OK
    weighted = 20 + 15 + 15 + 15 * (4000 / 6000) / 4 + 10 * 0.5 / 0.6 + 10 + 10 * 0.1 + 5
    assert answer.alignment_score == pytest.approx(weighted)
    assert answer.status == kpis_pb2.ALIGNMENT_STATUS_AT_RISK
    assert list(answer.missing) == []
    top = [(a.kpi, round(a.impact, 4)) for a in answer.priority_actions[:3]]
    assert top == [("ltv_to_cac", 12.5), ("churn_rate", 9.0), ("signup_to_value_30m", 1.6667)]
    d7 = next(k for k in answer.kpis if k.name == "d7_retention")
    assert (d7.numerator, d7.denominator, d7.window) == (1, 2, "signups 2026-02-23..2026-03-24")


async def test_kpis_without_data_are_missing_not_zero(metrics: MetricsUnderTest) -> None:
    answer = await metrics.stub.Kpis(
        kpis_pb2.KpisRequest(as_of_date="2026-04-01"), metadata=auth("t21"), timeout=10
    )
    assert not answer.HasField("alignment_score")
    assert answer.status == kpis_pb2.ALIGNMENT_STATUS_NO_DATA
    assert len(answer.missing) == 8
    assert all(not k.HasField("value") for k in answer.kpis)


def _at_the_boundaries() -> tuple[list[Ev], list[Ev]]:
    """Two tenants whose numbers sit exactly on a boundary by hand (spec: "a dashboard
    number that nobody can recompute by hand is a bug")."""
    # 21 signups in April, one a day: 2 active on day 7, 7 activated, 3 fast. The
    # attainments 8/21, 5/6 and 5/21 weigh 20, 15 and 10: a score of 50 exactly.
    score: list[Ev] = []
    for i in range(21):
        day = f"2026-04-{i + 1:02d}"
        score.append(ev(f"s{i}", "user.signup", f"{day}T10:00:00", f"U{i}", plan="free"))
        if i < 2:
            seventh = f"2026-04-{i + 8:02d}T10:00:00"
            score.append(ev(f"v{i}", "page.view", seventh, f"U{i}"))
        if i < 7:
            score.append(ev(f"c{i}", "workflow.created", f"{day}T11:00:00", f"U{i}"))
        if i < 3:
            run = f"{day}T10:10:00"
            score.append(ev(f"r{i}", "workflow.run", run, f"U{i}", status="success"))
    # April: 5 orgs paying 100 at its start, 2 of them cancel, 3 new pay 700 and cost
    # 625: LTV:CAC = (1000/6) / (2/5) / (625/3) = 2, payback = (625/3) / (1000/6) = 1.25.
    ltv: list[Ev] = [
        ev(f"p{o}", "subscription.started", "2026-03-05T00:00:00", org=o, mrr=100) for o in "ABCDE"
    ]
    ltv += [
        ev("xD", "subscription.canceled", "2026-04-10T00:00:00", org="D"),
        ev("xE", "subscription.canceled", "2026-04-11T00:00:00", org="E"),
        ev("pF", "subscription.started", "2026-04-12T00:00:00", org="F", mrr=200),
        ev("pG", "subscription.started", "2026-04-12T00:00:00", org="G", mrr=200),
        ev("pH", "subscription.started", "2026-04-12T00:00:00", org="H", mrr=300),
        ev("m1", "marketing.spend", "2026-04-02T00:00:00", channel="paid", amount=625),
    ]
    return score, ltv


async def test_values_exactly_on_a_boundary_decide_as_by_hand(metrics: MetricsUnderTest) -> None:
    score_events, ltv_events = _at_the_boundaries()
    position = max(
        [await metrics.append("t22", score_events), await metrics.append("t23", ltv_events)]
    )

    async def kpis(tenant: str) -> kpis_pb2.KpisResponse:
        answer = await metrics.stub.Kpis(
            kpis_pb2.KpisRequest(as_of_date="2026-05-01"), metadata=auth(tenant), timeout=10
        )
        assert answer.log_position >= position
        return answer

    scored = await assert_eventually(lambda: kpis("t22"), timeout=30)
    assert scored.alignment_score == 50.0  # not 49.99999999999999
    assert scored.status == kpis_pb2.ALIGNMENT_STATUS_AT_RISK
    ltv = next(k for k in (await kpis("t23")).kpis if k.name == "ltv_to_cac")
    assert ltv.value == 2.0  # not 1.9999999999999998: critical is "< 2.0"
    assert ltv.state == kpis_pb2.KPI_STATE_WARNING
    assert ltv.attainment == 0.5
    churn = next(k for k in (await kpis("t23")).kpis if k.name == "churn_rate")
    assert (churn.value, churn.numerator, churn.denominator) == (0.4, 2, 5)
    revenue = await metrics.stub.Revenue(
        revenue_pb2.RevenueRequest(from_date="2026-04-01", to_date="2026-04-30"),
        metadata=auth("t23"),
        timeout=10,
    )
    (april,) = revenue.months
    assert (april.ltv_to_cac, april.payback_months) == (2.0, 1.25)


def _generated(seed: int) -> list[Ev]:
    """A random tenant over 120 days: signups, stages, activity, billing, spend."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out: list[Ev] = []

    def t(day: float) -> int:
        return int((start.timestamp() + day * 86_400) * 1_000_000)

    for u in range(60):
        user = f"u{u}"
        day = rng.uniform(0, 110)
        org = f"o{u % 15}"
        channel = rng.choice(["seo", "referral", "paid"])
        out.append(
            Ev(
                f"{user}-s",
                "user.signup",
                user,
                org,
                t(day),
                json.dumps({"channel": channel, "plan": "free"}),
            )
        )
        for k in range(rng.randrange(0, 6)):
            out.append(Ev(f"{user}-a{k}", "page.view", user, "", t(day + rng.uniform(0, 40))))
        if rng.random() < 0.6:
            out.append(Ev(f"{user}-c", "workflow.created", user, org, t(day + rng.uniform(0, 10))))
        if rng.random() < 0.6:
            status = rng.choice(["success", "success", "failed"])
            out.append(
                Ev(
                    f"{user}-r",
                    "workflow.run",
                    user,
                    org,
                    t(day + rng.uniform(0, 0.05)),
                    json.dumps({"status": status}),
                )
            )
    for o in range(15):
        day = rng.uniform(0, 100)
        out.append(
            Ev(
                f"o{o}-b1",
                "subscription.started",
                "",
                f"o{o}",
                t(day),
                json.dumps({"mrr": rng.choice([1000, 2000, 5000])}),
            )
        )
        if rng.random() < 0.4:
            out.append(
                Ev(f"o{o}-b2", "subscription.canceled", "", f"o{o}", t(day + rng.uniform(5, 40)))
            )
        elif rng.random() < 0.4:
            out.append(
                Ev(
                    f"o{o}-b2",
                    "subscription.changed",
                    "",
                    f"o{o}",
                    t(day + rng.uniform(5, 40)),
                    json.dumps({"mrr": 7000}),
                )
            )
    for d in range(0, 120, 3):
        out.append(
            Ev(
                f"sp{d}",
                "marketing.spend",
                "",
                "",
                t(d + 0.5),
                json.dumps({"channel": "paid", "amount": 1500}),
            )
        )
    rng.shuffle(out)
    return out


async def test_kpis_read_only_their_windows_yet_equal_the_whole_history(
    metrics: MetricsUnderTest,
) -> None:
    events = _generated(7)
    position = await metrics.append("t22", events)
    rows = [
        EventRow(e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, json.loads(e.properties))
        for e in events
    ]
    user_days: dict[str, set] = defaultdict(set)
    for r in rows:
        if r.user_id:
            user_days[r.user_id].add(r.day)
    full_days = {u: sorted(d) for u, d in user_days.items()}
    for as_of in ["2026-03-15", "2026-04-01", "2026-04-20"]:

        async def settled(as_of: str = as_of) -> kpis_pb2.KpisResponse:
            answer = await metrics.stub.Kpis(
                kpis_pb2.KpisRequest(as_of_date=as_of), metadata=auth("t22"), timeout=10
            )
            assert answer.log_position >= position
            return answer

        answer = await assert_eventually(settled, timeout=30)
        expected = kpi_values(datetime.fromisoformat(as_of).date(), rows, full_days)
        got = {k.name: (k.value if k.HasField("value") else None) for k in answer.kpis}
        assert got == pytest.approx({n: v.value for n, v in expected.items()}), as_of
