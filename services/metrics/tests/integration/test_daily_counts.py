"""The per-day run and event rollups: late events, duplicates, and rebuild from the log."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings

from northstar_harness.eventually import assert_eventually
from northstar_metrics.adapters.activation_store import ActivationStore
from northstar_metrics.domain.workflows import RunTally

from ..reference import Ev
from ..unit.test_workflows import START, at, events_strategy
from .conftest import TENANTS, MetricsUnderTest
from .replay import rebuilt_tables, snapshot_tables

_TABLES = {
    "run_days": "SELECT day, workflow_id, successful, failed FROM run_days"
    " WHERE tenant = $1 ORDER BY day, workflow_id",
    "run_day_totals": "SELECT day, successful, failed FROM run_day_totals"
    " WHERE tenant = $1 ORDER BY day",
    "event_days": "SELECT event, day, n FROM event_days WHERE tenant = $1 ORDER BY event, day",
}


def run(event_id: str, day: int, status: object, workflow: object = None) -> Ev:
    props = {"status": status} | ({} if workflow is None else {"workflow_id": workflow})
    return Ev(event_id, "workflow.run", "u1", "o1", at(day), json.dumps(props))


async def snapshot(m: MetricsUnderTest, tenant: str) -> dict[str, list[tuple]]:
    return await snapshot_tables(m, tenant, _TABLES)


async def applied(m: MetricsUnderTest, position: int) -> None:
    pool = m.host.resources.pool
    assert pool is not None
    store = ActivationStore(pool)

    async def caught_up() -> bool:
        _, seen = await store.run_tallies("none", date(2026, 1, 1), date(2026, 1, 1))
        return seen >= position

    await assert_eventually(caught_up, timeout=30)


async def rebuilt(m: MetricsUnderTest, tenant: str, position: int) -> dict[str, list[tuple]]:
    """The tables as a replay of the whole log from an empty state makes them (rolled back)."""
    return await rebuilt_tables(m, tenant, position, _TABLES)


async def test_late_runs_duplicates_and_odd_properties(metrics: MetricsUnderTest) -> None:
    tenant = "t171"
    pool = metrics.host.resources.pool
    assert pool is not None
    first = [
        run("a", 0, "success", "w1"),
        run("b", 0, "failed", "w1"),
        run("c", 0, "success", ""),  # empty id: a run of no workflow
        run("d", 1, "success", 7),  # not a string: a run of no workflow
        run("e", 1, "Success", "w1"),  # not a valid status: no run
        run("f", 1, ["success"], "w1"),  # not a string status: no run
        Ev("g", "page.viewed", "u1", "", at(1), "{}"),
    ]
    position = await metrics.append(tenant, first)
    await applied(metrics, position)
    late = [run("h", -3, "failed", "w2"), run("a", 1, "failed", "w9")]  # "a": duplicate
    position = await metrics.append(tenant, late)
    await applied(metrics, position)
    day = {n: START.date() + timedelta(days=n) for n in (0, 1, -3)}
    tallies, _ = await ActivationStore(pool).run_tallies(tenant, day[-3], day[1])
    assert sorted(tallies, key=lambda t: (t.day, t.workflow_id or "")) == [
        RunTally(day[-3], "w2", 0, 1),
        RunTally(day[0], None, 1, 0),
        RunTally(day[0], "w1", 1, 1),
        RunTally(day[1], None, 1, 0),
    ]
    tables = await snapshot(metrics, tenant)
    assert tables["run_day_totals"] == [(day[-3], 0, 1), (day[0], 2, 1), (day[1], 1, 0)]
    assert tables["event_days"] == [
        ("page.viewed", day[1], 1),
        ("workflow.run", day[-3], 1),
        ("workflow.run", day[0], 3),
        ("workflow.run", day[1], 3),
    ]
    assert await rebuilt(metrics, tenant, position) == tables


async def test_a_replay_of_the_log_rebuilds_the_live_tables(metrics: MetricsUnderTest) -> None:
    tenants = iter(TENANTS)
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=10,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(events=events_strategy.filter(bool))
    def check_one(events: list[Ev]) -> None:
        tenant = next(tenants)

        async def check() -> None:
            position = await metrics.append(tenant, events)
            await applied(metrics, position)
            assert await rebuilt(metrics, tenant, position) == await snapshot(metrics, tenant)

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    await asyncio.to_thread(check_one)
