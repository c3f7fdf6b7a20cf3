"""The results read model: running sums equal the exact path through every kind of change."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from northstar.experiments.v1 import experiments_pb2 as pb
from northstar.log.v1 import log_pb2
from northstar_experiments.adapters import aggregates
from northstar_experiments.adapters.aggregates import Aggregated
from northstar_experiments.adapters.read_model import ReadModel
from northstar_experiments.adapters.results_sql import Population
from northstar_experiments.domain.experiment import Experiment
from northstar_experiments.domain.stats import CupedMoments
from northstar_harness.eventually import assert_eventually

from .conftest import ExperimentsUnderTest
from .test_experiments import ADMIN, _event, _feed, definition

KEY = "agg"


def _pool(service: ExperimentsUnderTest) -> asyncpg.Pool:
    pool = service.host.resources.pool
    assert pool is not None
    return pool


async def _state(rm: ReadModel) -> Experiment:
    found = await rm.get("acme", KEY)
    assert found is not None
    return found[0]


async def _exact(rm: ReadModel, state: Experiment, end: int) -> Aggregated:
    start = state.analysis_start_us
    d = state.definition
    population = await rm.population("acme", state, start, end)
    moments: list[dict[str, CupedMoments]] = [
        await rm.metric_moments("acme", state, m, start, end)
        for m in [*d.goal_metrics, *d.guardrail_metrics]
    ]
    return Aggregated(population, moments)


async def _fast_equals_exact(service: ExperimentsUnderTest, end: int) -> Aggregated:
    """The running sums answer and equal the exact path (integer values: exact in floats)."""
    rm = ReadModel(_pool(service))
    state = await _state(rm)
    fast = await rm.aggregated("acme", state, end)
    assert fast is not None
    assert fast == await _exact(rm, state, end)
    return fast


async def _snapshot(conn: asyncpg.Connection) -> list[Any]:
    out: list[Any] = []
    for table, order in (
        ("experiment_aggregates", "experiment"),
        ("experiment_users", "experiment, user_id"),
        ("experiment_user_metrics", "experiment, metric, user_id"),
        ("experiment_sums", "experiment, metric, variant"),
    ):
        rows = await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")
        out.append([tuple(r.values()) for r in rows])
    return out


def _exposure(eid: str, user: str, ts: int, variant: str) -> log_pb2.StoredEvent:
    return _event(eid, "experiment.exposure", user, ts, {"experiment": KEY, "variant": variant})


def _order(eid: str, user: str, ts: int, amount: int) -> log_pb2.StoredEvent:
    return _event(eid, "order.completed", user, ts, {"amount": amount})


async def test_sums_follow_late_exposures_multiple_exposure_definition_and_rebuild(
    service: ExperimentsUnderTest,
) -> None:
    s = service.stub
    t = time.time_ns() // 1000 - 3_600_000_000
    created = await s.CreateExperiment(
        pb.CreateExperimentRequest(key=KEY, definition=definition(analysis_start_us=t)),
        metadata=ADMIN,
    )
    version = created.experiment.version
    now = time.time_ns() // 1000
    await _feed(
        service,
        [
            _exposure("x1", "u1", t + 100, "control"),
            _order("o1-pre", "u1", t + 50, 5),
            _order("o1", "u1", t + 150, 10),
            _exposure("x2", "u2", t + 100, "green"),
            _order("o2", "u2", t + 120, 7),
            _exposure("x3", "u3", t + 100, "blue"),  # unknown variant: ignored and counted
            _exposure("x4", "u4", t - 10, "green"),  # before the analysis start
        ],
    )

    async def first() -> Aggregated:
        fast = await _fast_equals_exact(service, now)
        assert fast.population == Population({"control": 1, "green": 1}, 0, 1)
        return fast

    fast = await assert_eventually(first, timeout=30)
    revenue = fast.moments[1]
    assert (revenue["control"].post.total, revenue["control"].pre.total) == (10.0, 5.0)

    # A late exposure earlier than the first moves u1's window start: the order at t+50 is
    # now after exposure, and nothing is before it.
    await _feed(service, [_exposure("x1-early", "u1", t + 40, "control")])

    async def moved() -> bool:
        fast = await _fast_equals_exact(service, now)
        control = fast.moments[1]["control"]
        assert (control.post.total, control.pre.total) == (15.0, 0.0)
        return True

    await assert_eventually(moved, timeout=30)

    # u2 sees control too: it leaves green's sums and is counted as multiple exposure. The
    # redelivered order (same event_id, other amount) changes nothing.
    await _feed(
        service,
        [_exposure("x2-other", "u2", t + 200, "control"), _order("o1", "u1", t + 150, 999)],
    )

    async def multiple() -> bool:
        fast = await _fast_equals_exact(service, now)
        assert fast.population == Population({"control": 1, "green": 0}, 1, 1)
        assert fast.moments[1]["green"].post.n == 0
        assert fast.moments[1]["control"].post.total == 15.0
        return True

    await assert_eventually(multiple, timeout=30)

    # A definition change while DRAFT (one more guardrail) rebuilds the experiment's sums.
    d = definition(analysis_start_us=t)
    d.guardrail_metrics.add(
        name="big", kind=pb.METRIC_KIND_BINOMIAL, event="order.completed", inverse=True
    )
    updated = await s.UpdateExperiment(
        pb.UpdateExperimentRequest(key=KEY, expected_version=version, definition=d),
        metadata=ADMIN,
    )
    version = updated.experiment.version

    async def rebuilt() -> bool:
        fast = await _fast_equals_exact(service, now)
        assert len(fast.moments) == 4
        assert fast.moments[3]["control"].post.total == 1.0
        return True

    await assert_eventually(rebuilt, timeout=30)

    # Started and stopped: the analysis start comes from the definition, and the stop is
    # after every counted timestamp, so the rows stand and answer at the stop.
    started = await s.StartExperiment(
        pb.StartExperimentRequest(key=KEY, expected_version=version), metadata=ADMIN
    )
    stopped = await s.StopExperiment(
        pb.StopExperimentRequest(key=KEY, expected_version=started.experiment.version),
        metadata=ADMIN,
    )
    stop_us = stopped.experiment.stopped_at_us

    async def at_stop() -> bool:
        rm = ReadModel(_pool(service))
        assert (await _state(rm)).stopped_at_us == stop_us
        await _fast_equals_exact(service, stop_us)
        return True

    await assert_eventually(at_stop, timeout=30)

    # An as_of before the latest counted timestamp cannot come from the sums.
    rm = ReadModel(_pool(service))
    assert await rm.aggregated("acme", await _state(rm), t + 150) is None

    # Rebuilding from the stored rows gives exactly the live rows.
    async with _pool(service).acquire() as conn:
        live = await _snapshot(conn)
        async with conn.transaction():
            await aggregates.lock(conn)
            await aggregates.rebuild(conn, "acme", await _state(rm))
        assert await _snapshot(conn) == live
        assert live[0][0][3:] == (1, 1, t + 200)  # multiple, unknown, latest timestamp
