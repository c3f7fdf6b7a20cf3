"""ActiveUsers through gRPC equals the reference on generated event sets."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import metrics_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev, active_users
from .conftest import TENANTS, MetricsUnderTest, auth

START = datetime(2026, 3, 1, tzinfo=UTC)
US = 1_000_000


def at(day: int, seconds: int = 0) -> int:
    return int((START + timedelta(days=day, seconds=seconds)).timestamp()) * US


events_strategy = st.lists(
    st.builds(
        Ev,
        event_id=st.sampled_from([f"e{i}" for i in range(40)]),  # repeats: duplicates
        event=st.sampled_from(["page.view", "workflow.run", "user.signup"]),
        user_id=st.sampled_from(["", "u1", "u2", "u3", "u4", "u5"]),
        org_id=st.sampled_from(["", "o1", "o2"]),
        timestamp_us=st.builds(at, st.integers(0, 70), st.integers(0, 86_399)),
        properties=st.sampled_from(
            [json.dumps({"status": "success"}), json.dumps({"status": "failed"}), "{}"]
        ),
    ),
    min_size=1,
    max_size=60,
)


async def query(
    m: MetricsUnderTest, tenant: str, first: date, last: date
) -> metrics_pb2.ActiveUsersResponse:
    return await m.stub.ActiveUsers(
        metrics_pb2.ActiveUsersRequest(from_date=first.isoformat(), to_date=last.isoformat()),
        metadata=auth(tenant),
        timeout=5,
    )


async def settled(
    m: MetricsUnderTest, tenant: str, position: int, first: date, last: date
) -> list[tuple]:
    async def caught_up() -> metrics_pb2.ActiveUsersResponse:
        answer = await query(m, tenant, first, last)
        assert answer.log_position >= position
        return answer

    answer = await assert_eventually(caught_up, timeout=20)
    return [(d.date, d.dau, d.wau, d.mau, d.mao) for d in answer.days]


async def test_generated_event_sets_match_the_reference(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS)
    first, last = date(2026, 2, 27), date(2026, 5, 15)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(events=events_strategy)
    def run(events: list[Ev]) -> None:
        tenant = next(tenants)

        async def check() -> None:
            position = await metrics.append(tenant, events)
            assert await settled(metrics, tenant, position, first, last) == active_users(
                events, first, last
            )

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=60)

    # Hypothesis drives examples synchronously: it runs in a thread and hands
    # each example to the test's event loop, where the service lives.
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)


async def test_late_events_and_duplicates_by_hand(metrics: MetricsUnderTest) -> None:
    tenant = "t150"
    on_time = [
        Ev("a", "page.view", "u1", "", at(10)),
        Ev("b", "page.view", "u2", "", at(10)),
        Ev("c", "workflow.run", "u1", "o1", at(10), json.dumps({"status": "success"})),
    ]
    position = await metrics.append(tenant, on_time)
    day10 = (START + timedelta(days=10)).date()
    assert await settled(metrics, tenant, position, day10, day10) == [
        (day10.isoformat(), 2, 2, 2, 1)
    ]
    # A late event for day 4, a duplicate of "a" with another user (conflict: the first stands),
    # and a failed run (no MAO).
    late = [
        Ev("d", "page.view", "u3", "", at(3)),
        Ev("a", "page.view", "u9", "", at(10)),
        Ev("e", "workflow.run", "u2", "o2", at(10), json.dumps({"status": "failed"})),
    ]
    position = await metrics.append(tenant, late)
    day3 = (START + timedelta(days=3)).date()
    rows = await settled(metrics, tenant, position, day3, day10)
    assert rows[0] == (day3.isoformat(), 1, 1, 1, 0)
    assert rows[-1] == (day10.isoformat(), 2, 2, 3, 1)  # u3 is within [d-29, d], not [d-6, d]


async def test_invalid_ranges_are_rejected_with_field_violations(metrics: MetricsUnderTest) -> None:
    for from_date, to_date, field in [
        ("2026-13-01", "2026-01-02", "from_date"),
        ("2026-01-05", "2026-01-01", "to_date"),
        ("2026-01-01", "2046-01-01", "to_date"),
        ("", "2026-01-01", "from_date"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await metrics.stub.ActiveUsers(
                metrics_pb2.ActiveUsersRequest(from_date=from_date, to_date=to_date),
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
    position = await metrics.append("t160", [Ev("x1", "page.view", "u1", "", at(3))])
    day = (START + timedelta(days=3)).date()
    assert (await settled(metrics, "t160", position, day, day))[0][1] == 1
    assert (await settled(metrics, "t161", position, day, day))[0][1] == 0
