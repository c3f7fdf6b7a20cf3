"""The workflow spans rollup: late runs, duplicates, tenants, and a rebuild from the log."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from ..unit.test_workflows import events_strategy
from .conftest import TENANTS, MetricsUnderTest
from .replay import applied, check_replays, rebuilt_tables, snapshot_tables
from .test_daily_counts import START, run

_TABLES = {
    "workflow_spans": "SELECT kind, y, x, workflows FROM workflow_spans"
    " WHERE tenant = $1 ORDER BY kind, y, x",
}


async def test_a_late_run_day_splits_a_gap(metrics: MetricsUnderTest) -> None:
    tenant = "t173"
    day = {n: START.date() + timedelta(days=n) for n in (0, 3, 6, 9)}
    position = await metrics.append(
        tenant, [run("a", 0, "success", "w1"), run("b", 9, "failed", "w1")]
    )
    await applied(metrics, position)
    (spans,) = (await snapshot_tables(metrics, tenant, _TABLES)).values()
    assert spans == [
        (0, day[0], day[0], 1),
        (1, day[9], day[9], 1),
        (2, day[9], day[0], 1),
        (3, day[0], day[0], 1),
        (3, day[9], day[9], 1),
    ]
    late = [run("c", 6, "success", "w1"), run("d", 3, "success", ""), run("a", 3, "failed", "w1")]
    position = await metrics.append(tenant, late)  # "d" names no workflow, "a" is a duplicate
    await applied(metrics, position)
    tables = await snapshot_tables(metrics, tenant, _TABLES)
    assert tables["workflow_spans"] == [
        (0, day[0], day[0], 1),
        (1, day[9], day[9], 1),
        (2, day[6], day[0], 1),
        (2, day[9], day[6], 1),
        (3, day[0], day[0], 1),
        (3, day[6], day[6], 1),
        (3, day[9], day[9], 1),
    ]
    assert await rebuilt_tables(metrics, tenant, position, _TABLES) == tables


async def test_a_replay_of_the_log_rebuilds_the_live_spans(metrics: MetricsUnderTest) -> None:
    loop = asyncio.get_running_loop()
    tenants = iter(TENANTS[120:])
    strategy = events_strategy.filter(bool)
    await asyncio.to_thread(check_replays, metrics, loop, tenants, _TABLES, strategy)
