"""Activation through gRPC equals the reference on generated and hand-made event sets."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import activation_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from ..reference_activation import activation, close
from ..unit.test_activation import at, events_of_journeys
from .conftest import TENANTS, MetricsUnderTest, auth

BREAKDOWNS = {
    None: activation_pb2.ACTIVATION_BREAKDOWN_UNSPECIFIED,
    "plan": activation_pb2.ACTIVATION_BREAKDOWN_PLAN,
    "channel": activation_pb2.ACTIVATION_BREAKDOWN_CHANNEL,
}


def optional(message: object, field: str) -> float | None:
    return getattr(message, field) if message.HasField(field) else None  # type: ignore[attr-defined]


def as_tuple(s: activation_pb2.ActivationSummary) -> tuple:
    def stage(t: activation_pb2.TimeToValueStage) -> tuple:
        return (t.reached, optional(t, "median_seconds"), optional(t, "p90_seconds"))

    return (
        s.signups,
        s.activated,
        optional(s, "activation_rate"),
        [
            stage(s.integration_connected),
            stage(s.workflow_created),
            stage(s.workflow_run_succeeded),
        ],
        s.fast_activated,
        optional(s, "signup_to_value_30m"),
        s.free_signups_with_org,
        s.paid_conversions,
        optional(s, "paid_conversion_rate"),
    )


async def settled(
    m: MetricsUnderTest,
    tenant: str,
    position: int,
    first: date,
    last: date,
    attribute: str | None = None,
) -> tuple[tuple, list[tuple]]:
    async def caught_up() -> activation_pb2.ActivationResponse:
        answer = await m.stub.Activation(
            activation_pb2.ActivationRequest(
                from_date=first.isoformat(),
                to_date=last.isoformat(),
                breakdown=BREAKDOWNS[attribute],
            ),
            metadata=auth(tenant),
            timeout=10,
        )
        assert answer.log_position >= position
        return answer

    answer = await assert_eventually(caught_up, timeout=30)
    segments = [
        (s.value if s.HasField("value") else None, as_tuple(s.summary)) for s in answer.segments
    ]
    return as_tuple(answer.overall), segments


async def test_generated_event_sets_match_the_reference(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        events=events_of_journeys(),
        span=st.sampled_from(
            [
                (date(2026, 3, 2), date(2026, 3, 2)),
                (date(2026, 3, 2), date(2026, 3, 12)),
                (date(2026, 3, 3), date(2026, 4, 30)),
            ]
        ),
        attribute=st.sampled_from([None, "plan", "channel"]),
    )
    def run(events: list[Ev], span: tuple[date, date], attribute: str | None) -> None:
        tenant = next(tenants)
        first, last = span

        async def check() -> None:
            position = await metrics.append(tenant, events)
            got = await settled(metrics, tenant, position, first, last, attribute)
            assert close(got, activation(events, first, last, attribute))

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    # Hypothesis drives examples synchronously: it runs in a thread and hands
    # each example to the test's event loop, where the service lives.
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)


async def test_a_cohort_by_hand_with_late_events_and_duplicates(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t190"
    free = json.dumps({"plan": "free", "channel": "seo"})
    pro = json.dumps({"plan": "pro", "channel": "paid"})
    ok = json.dumps({"status": "success", "workflow_id": "w1"})
    events = [
        Ev("s1", "user.signup", "u1", "o1", at(0), free),
        Ev("i1", "integration.connected", "u1", "", at(0, 600)),
        Ev("c1", "workflow.created", "u1", "", at(0, 900)),
        Ev("r1", "workflow.run", "u1", "o1", at(0, 1800), ok),
        Ev("p1", "subscription.started", "", "o1", at(30)),
        Ev("s2", "user.signup", "u2", "o2", at(1), pro),
        Ev("c2", "workflow.created", "u2", "", at(8, 1)),  # 7 days and 1 s: not activated
        Ev("r2", "workflow.run", "u2", "o2", at(1, 60), json.dumps({"status": "done"})),
        Ev("r2b", "workflow.run", "u2", "o2", at(1, 3600), ok),
    ]
    position = await metrics.append(tenant, events)
    first, last = date(2026, 3, 2), date(2026, 3, 8)
    overall, by_plan = await settled(metrics, tenant, position, first, last, "plan")
    created = [900.0, 7 * 86_400 + 1.0]  # u2's first workflow.created, late but reached
    assert close(
        overall,
        (
            2,
            1,
            0.5,
            [
                (1, 600.0, 600.0),
                (2, sum(created) / 2, created[0] + (created[1] - created[0]) * 0.9),
                (2, 2700.0, 3420.0),
            ],
            1,
            0.5,
            1,
            1,
            1.0,
        ),
    )
    assert [v for v, _ in by_plan] == ["free", "pro"]
    # A late earlier signup of u2 moves its signup out of the range; a duplicate of
    # "c1" naming another user changes nothing.
    late = [
        Ev("s0", "user.signup", "u2", "o2", at(-1), pro),
        Ev("c1", "workflow.created", "u2", "", at(2)),
    ]
    position = await metrics.append(tenant, [*events, *late])
    overall, _ = await settled(metrics, tenant, position, first, last)
    assert overall[:3] == (1, 1, 1.0)
    assert overall == activation([*events, *late], first, last)[0]


async def test_invalid_requests_name_the_field(metrics: MetricsUnderTest) -> None:
    for request, field in [
        (activation_pb2.ActivationRequest(from_date="2026-03-02", to_date="2026-02-01"), "to_date"),
        (
            activation_pb2.ActivationRequest(from_date="03/02/2026", to_date="2026-03-02"),
            "from_date",
        ),
        (
            activation_pb2.ActivationRequest(
                from_date="2026-03-02", to_date="2026-03-02", breakdown=9
            ),
            "breakdown",
        ),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await metrics.stub.Activation(request, metadata=auth("t0"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        status = rpc_status.from_call(caught.value)
        assert status is not None
        bad = error_details_pb2.BadRequest()
        assert any(d.Unpack(bad) for d in status.details)
        assert [v.field for v in bad.field_violations] == [field]


async def test_an_empty_range_has_absent_rates(metrics: MetricsUnderTest) -> None:
    answer = await metrics.stub.Activation(
        activation_pb2.ActivationRequest(
            from_date="2026-03-02",
            to_date="2026-03-02",
            breakdown=activation_pb2.ACTIVATION_BREAKDOWN_CHANNEL,
        ),
        metadata=auth("t1"),
        timeout=10,
    )
    assert as_tuple(answer.overall) == (
        0,
        0,
        None,
        [(0, None, None)] * 3,
        0,
        None,
        0,
        0,
        None,
    )
    assert list(answer.segments) == []
