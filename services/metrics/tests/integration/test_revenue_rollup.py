"""The revenue read models: late events, duplicates, tenants, and a rebuild from the log."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date

from northstar_metrics.adapters.projection import ActivityProjection
from northstar_runtime.codec import encode_batch
from northstar_runtime.projector import LogEntry

from ..reference import Ev
from .conftest import TENANTS, MetricsUnderTest, stored
from .replay import applied, check_replays, rebuilt_tables, snapshot_tables
from .test_revenue import at, events_strategy, sub

_TABLES = {
    "subscription_states": "SELECT ts_us, event_id, org_id, mrr FROM subscription_states"
    " WHERE tenant = $1 ORDER BY ts_us, event_id",
    "mrr_days": "SELECT day, mrr, paying FROM mrr_days WHERE tenant = $1 ORDER BY day",
    "org_acquisition": "SELECT org_id, ts_us, event_id, channel FROM org_acquisition"
    " WHERE tenant = $1 ORDER BY org_id",
    "org_months": "SELECT month, org_id, mrr_start, mrr_end FROM org_months"
    " WHERE tenant = $1 ORDER BY month, org_id",
    "signup_days": "SELECT day, referral, users FROM signup_days"
    " WHERE tenant = $1 ORDER BY day, referral",
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
    assert tables["signup_days"] == [(feb, False, 1), (mar, False, 1)]
    assert [r[1] for r in tables["subscription_states"]] == ["a", "d", "b"]
    assert tables["org_months"] == [
        (date(2026, 2, 1), "o1", 0, 100),
        (date(2026, 3, 1), "o1", 100, 0),
        (date(2026, 4, 1), "o1", 0, 300),
    ]
    assert await rebuilt_tables(metrics, tenant, position, _TABLES) == tables


async def test_a_replay_of_the_log_rebuilds_the_live_tables(metrics: MetricsUnderTest) -> None:
    loop = asyncio.get_running_loop()
    tenants = iter(TENANTS[100:])
    await asyncio.to_thread(
        check_replays, metrics, loop, tenants, _TABLES, events_strategy, max_examples=12
    )


def entry(seq: int, tenant: str, partition: int, events: list[Ev]) -> LogEntry:
    payload, headers = encode_batch(tenant, partition, [stored(e) for e in events])
    return LogEntry(seq, f"events.{tenant}.{partition}", payload, headers)


async def test_two_replicas_writing_one_org_wait_for_each_other(
    metrics: MetricsUnderTest,
) -> None:
    """An org's states in two partitions, applied by two overlapping transactions."""
    tenant = "t174"
    pool = metrics.host.resources.pool
    assert pool is not None
    feb, mar = date(2026, 2, 10), date(2026, 3, 10)
    # With a user_id each event goes to its user's partition: one org, two partitions.
    first = sub("a", "subscription.started", "o1", at(feb), 100)
    second = sub("b", "subscription.canceled", "o1", at(mar))
    one = entry(1, tenant, 0, [dataclasses.replace(first, user_id="u1")])
    two = entry(2, tenant, 1, [dataclasses.replace(second, user_id="u2")])
    async with pool.acquire() as a, pool.acquire() as b:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await ActivityProjection().apply(a, [one])
        await tb.start()
        later = asyncio.create_task(ActivityProjection().apply(b, [two]))
        await asyncio.sleep(0.3)  # time for `later` to run ahead, were it not held back
        await ta.commit()
        await later
        await tb.commit()
    (days,) = (await snapshot_tables(metrics, tenant, {"d": _TABLES["mrr_days"]})).values()
    assert days == [(feb, 100, 1), (mar, -100, -1)]
