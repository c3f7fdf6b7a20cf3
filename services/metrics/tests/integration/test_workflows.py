"""Workflows through gRPC equals the reference on generated and hand-made event sets."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import activation_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from ..reference_activation import workflows
from ..unit.test_workflows import RANGES, at, events_strategy
from .conftest import TENANTS, MetricsUnderTest, auth

GRANULARITIES = {
    "day": activation_pb2.WORKFLOWS_GRANULARITY_DAY,
    "week": activation_pb2.WORKFLOWS_GRANULARITY_WEEK,
    "month": activation_pb2.WORKFLOWS_GRANULARITY_MONTH,
}


def as_tuple(p: activation_pb2.WorkflowsPeriod) -> tuple:
    return (
        p.period_start,
        p.from_date,
        p.to_date,
        p.runs,
        p.successful_runs,
        p.failed_runs,
        p.error_rate if p.HasField("error_rate") else None,
        p.active_workflows,
        p.runs_per_active_workflow if p.HasField("runs_per_active_workflow") else None,
    )


async def settled(
    m: MetricsUnderTest, tenant: str, position: int, first: date, last: date, granularity: str
) -> tuple[list[tuple], tuple]:
    async def caught_up() -> activation_pb2.WorkflowsResponse:
        answer = await m.stub.Workflows(
            activation_pb2.WorkflowsRequest(
                from_date=first.isoformat(),
                to_date=last.isoformat(),
                granularity=GRANULARITIES[granularity],
            ),
            metadata=auth(tenant),
            timeout=10,
        )
        assert answer.log_position >= position
        return answer

    answer = await assert_eventually(caught_up, timeout=30)
    return [as_tuple(p) for p in answer.periods], as_tuple(answer.total)


async def test_generated_event_sets_match_the_reference(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        events=events_strategy.filter(bool),
        span=RANGES,
        granularity=st.sampled_from(sorted(GRANULARITIES)),
    )
    def run(events: list[Ev], span: tuple[date, date], granularity: str) -> None:
        tenant = next(tenants)
        first, last = span

        async def check() -> None:
            position = await metrics.append(tenant, events)
            got = await settled(metrics, tenant, position, first, last, granularity)
            assert got == workflows(events, first, last, granularity)

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    # Hypothesis drives examples synchronously: it runs in a thread and hands
    # each example to the test's event loop, where the service lives.
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)


async def test_weeks_by_hand_with_a_late_run_and_a_duplicate(metrics: MetricsUnderTest) -> None:
    tenant = "t191"

    def run(event_id: str, day: int, status: str, workflow: str | None) -> Ev:
        props = {"status": status} | ({"workflow_id": workflow} if workflow else {})
        return Ev(event_id, "workflow.run", "u1", "o1", at(day), json.dumps(props))

    # Day 0 is Monday 2026-01-26.
    events = [
        run("a", 0, "success", "w1"),
        run("b", 1, "failed", "w1"),
        run("c", 2, "success", "w2"),
        run("d", 3, "success", None),
        run("e", 8, "success", "w3"),
        run("f", 8, "skipped", "w4"),
    ]
    position = await metrics.append(tenant, events)
    first, last = date(2026, 1, 27), date(2026, 2, 8)  # Tuesday to Sunday
    periods, total = await settled(metrics, tenant, position, first, last, "week")
    assert periods == [
        ("2026-01-26", "2026-01-27", "2026-02-01", 3, 2, 1, 1 / 3, 2, 1.5),
        ("2026-02-02", "2026-02-02", "2026-02-08", 1, 1, 0, 0.0, 1, 1.0),
    ]
    assert total == ("2026-01-27", "2026-01-27", "2026-02-08", 4, 3, 1, 0.25, 3, 4 / 3)
    late = [run("g", 9, "failed", "w3"), run("a", 9, "failed", "w9")]  # "a": a duplicate
    position = await metrics.append(tenant, late)
    periods, total = await settled(metrics, tenant, position, first, last, "week")
    assert periods[1] == ("2026-02-02", "2026-02-02", "2026-02-08", 2, 1, 1, 0.5, 1, 2.0)
    assert total == ("2026-01-27", "2026-01-27", "2026-02-08", 5, 3, 2, 0.4, 3, 5 / 3)


async def test_a_range_without_runs_has_absent_ratios(metrics: MetricsUnderTest) -> None:
    answer = await metrics.stub.Workflows(
        activation_pb2.WorkflowsRequest(from_date="2026-02-27", to_date="2026-03-02"),
        metadata=auth("t2"),
        timeout=10,
    )
    assert [as_tuple(p) for p in answer.periods] == [
        (d, d, d, 0, 0, 0, None, 0, None)
        for d in ("2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02")
    ]


async def test_an_unknown_granularity_is_rejected(metrics: MetricsUnderTest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await metrics.stub.Workflows(
            activation_pb2.WorkflowsRequest(
                from_date="2026-02-27", to_date="2026-03-02", granularity=42
            ),
            metadata=auth("t2"),
            timeout=10,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
