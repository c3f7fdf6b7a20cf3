"""Kpis through gRPC on a scenario computed by hand from spec/metrics.md."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from northstar.metrics.v1 import kpis_pb2
from northstar_harness.eventually import assert_eventually

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
