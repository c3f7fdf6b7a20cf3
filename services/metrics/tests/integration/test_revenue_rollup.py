"""The revenue read models: late events, duplicates, tenants, and a rebuild from the log."""

from __future__ import annotations

import asyncio
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..reference import Ev
from .conftest import TENANTS, MetricsUnderTest
from .replay import rebuilt_tables, snapshot_tables
from .test_daily_counts import applied
from .test_revenue import at, events_strategy, sub

_TABLES = {
    "subscription_states": "SELECT ts_us, event_id, org_id, mrr FROM subscription_states"
    " WHERE tenant = $1 ORDER BY ts_us, event_id",
    "mrr_days": "SELECT day, mrr, paying FROM mrr_days WHERE tenant = $1 ORDER BY day",
    "org_acquisition": "SELECT org_id, ts_us, event_id, channel FROM org_acquisition"
    " WHERE tenant = $1 ORDER BY org_id",
}


async def test_a_late_state_moves_the_steps_and_a_replay_agrees(metrics: MetricsUnderTest) -> None:
    tenant = "t172"
    feb, mar, apr = date(2026, 2, 10), date(2026, 3, 10), date(2026, 4, 10)
    first = [
        sub("a", "subscription.started", "o1", at(feb), 100),
        sub("b", "subscription.changed", "o1", at(apr), 300),
        sub("c", "subscription.changed", "o1", at(mar), 7.5),  # not an integer: skipped
        Ev("s1", "user.signup", "u1", "o1", at(mar), '{"channel": "seo"}'),
    ]
    position = await metrics.append(tenant, first)
    await applied(metrics, position)
    tables = await snapshot_tables(metrics, tenant, _TABLES)
    assert tables["mrr_days"] == [(feb, 100, 1), (apr, 200, 0)]
    # Late: a cancel between the two states, a duplicate of "a" with another mrr (the
    # first stands), an earlier signup of another user naming the org.
    late = [
        sub("d", "subscription.canceled", "o1", at(mar)),
        sub("a", "subscription.started", "o1", at(feb), 999),
        Ev("s0", "user.signup", "u2", "o1", at(feb), '{"channel": "paid"}'),
    ]
    position = await metrics.append(tenant, late)
    await applied(metrics, position)
    tables = await snapshot_tables(metrics, tenant, _TABLES)
    assert tables["mrr_days"] == [(feb, 100, 1), (mar, -100, -1), (apr, 300, 1)]
    assert tables["org_acquisition"] == [("o1", at(feb), "s0", "paid")]
    assert [r[1] for r in tables["subscription_states"]] == ["a", "d", "b"]
    assert await rebuilt_tables(metrics, tenant, position, _TABLES) == tables


async def test_a_replay_of_the_log_rebuilds_the_live_tables(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS[100:])
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        events=events_strategy,
        other=events_strategy,
        per_message=st.integers(1, 9),
        batch=st.integers(1, 5),
    )
    def check_one(events: list[Ev], other: list[Ev], per_message: int, batch: int) -> None:
        a, b = next(tenants), next(tenants)

        async def check() -> None:
            # Two tenants in one log, in small messages replayed in other batch sizes:
            # late events and duplicates land in other batches than the events they follow.
            await metrics.append(b, other, per_message=per_message)
            position = await metrics.append(a, events, per_message=per_message)
            await applied(metrics, position)
            for tenant in (a, b):
                live = await snapshot_tables(metrics, tenant, _TABLES)
                assert await rebuilt_tables(metrics, tenant, position, _TABLES, batch=batch) == live

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    await asyncio.to_thread(check_one)
