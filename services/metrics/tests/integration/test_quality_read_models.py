"""DataQuality from the per-receive-day read models equals the reference on generated logs."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.metrics.v1 import quality_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from ..reference_series import Received, quality
from .conftest import TENANTS, MetricsUnderTest, auth
from .replay import rebuilt_tables, snapshot_tables
from .test_quality import HOUR, R1, append_received, at

_TABLES = {
    "quality_daily": "SELECT day, duplicates, id_conflicts, accepted, skewed FROM quality_daily"
    " WHERE tenant = $1 ORDER BY day",
    "user_received_days": "SELECT user_id, day, events FROM user_received_days"
    " WHERE tenant = $1 ORDER BY user_id, day",
    "received_spans": "SELECT orphan, kind, y, x, users FROM received_spans"
    " WHERE tenant = $1 ORDER BY orphan, kind, y, x",
    "missing_fields_days": "SELECT day, event, field, events FROM missing_fields_days"
    " WHERE tenant = $1 ORDER BY day, event, field",
}

PROPERTIES = [
    {},
    {"status": "success"},
    {"status": "ok"},
    {"mrr": 10},
    {"mrr": "10"},
    {"amount": 1.5},
]
received_strategy = st.lists(
    st.builds(
        lambda event_id, event, user, org, ts_day, props, day, skew: Received(
            Ev(event_id, event, user, org, at(R1 + timedelta(days=ts_day), 7), json.dumps(props)),
            at(R1 + timedelta(days=day), 100),
            0 if skew is None else at(R1 + timedelta(days=day), 100) + skew,
        ),
        event_id=st.sampled_from([f"e{i}" for i in range(40)]),  # repeats: duplicates
        event=st.sampled_from(
            [
                "user.signup",
                "user.signup",
                "page.view",
                "workflow.run",
                "subscription.started",
                "subscription.paused",
                "marketing.spend",
                "custom.thing",
            ]
        ),
        user=st.sampled_from(["", "u1", "u2", "u3", "u4"]),
        org=st.sampled_from(["", "o1"]),
        ts_day=st.integers(-5, 5),
        props=st.sampled_from(PROPERTIES),
        day=st.integers(0, 9),
        skew=st.sampled_from([None, None, 2 * HOUR, -HOUR - 1, HOUR]),
    ),
    min_size=1,
    max_size=60,
)
ranges = st.tuples(st.integers(-1, 9), st.integers(0, 6))


async def test_quality_counts_equal_the_reference_and_a_replay(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS[170:])
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=10,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        items=received_strategy,
        other=received_strategy,
        spans=st.lists(ranges, min_size=1, max_size=4),
    )
    def check_one(
        items: list[Received], other: list[Received], spans: list[tuple[int, int]]
    ) -> None:
        tenant, neighbour = next(tenants), next(tenants)

        async def check() -> None:
            await append_received(metrics, neighbour, other)
            position = await append_received(metrics, tenant, items)
            for start, length in spans:
                first = R1 + timedelta(days=start)
                last = first + timedelta(days=length)
                request = quality_pb2.DataQualityRequest(
                    from_date=first.isoformat(), to_date=last.isoformat()
                )

                async def caught_up(
                    request: quality_pb2.DataQualityRequest = request,
                ) -> quality_pb2.DataQualityResponse:
                    answer = await metrics.stub.DataQuality(
                        request, metadata=auth(tenant), timeout=20
                    )
                    assert answer.log_position >= position
                    return answer

                answer = await assert_eventually(caught_up, timeout=30)
                ref = quality(items, first, last)
                got = (
                    answer.accepted,
                    answer.duplicates,
                    answer.id_conflicts,
                    answer.missing_fields,
                    {m.event_name: m.events for m in answer.missing_fields_by_event},
                    answer.active_users,
                    answer.orphan_activity,
                    answer.clock_skew,
                )
                assert got == (
                    ref.accepted,
                    ref.duplicates,
                    ref.id_conflicts,
                    ref.missing_fields,
                    ref.missing_by_event,
                    ref.active_users,
                    ref.orphan_activity,
                    ref.clock_skew_accepted,
                ), (first, last)
            live = await snapshot_tables(metrics, tenant, _TABLES)
            assert await rebuilt_tables(metrics, tenant, position, _TABLES, batch=1) == live

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=120)

    await asyncio.to_thread(check_one)
