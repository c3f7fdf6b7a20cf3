"""A user's erasure in the results read model: its exposures and values leave the sums."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from northstar.experiments.v1 import experiments_pb2 as pb
from northstar.log.v1 import log_pb2
from northstar_experiments.adapters import aggregates
from northstar_experiments.adapters.read_model import ReadModel
from northstar_experiments.adapters.results_sql import Population
from northstar_harness.eventually import assert_eventually
from northstar_runtime.codec import encode_erasure

from .conftest import ExperimentsUnderTest
from .test_aggregates import KEY, _exposure, _fast_equals_exact, _order, _pool, _state
from .test_experiments import ADMIN, _feed, definition

ERASED = "erased-user-x91"


async def _erase(service: ExperimentsUnderTest, user: str, erased_at_us: int) -> None:
    payload, headers = encode_erasure(
        log_pb2.UserErased(
            tenant="acme", user_id=user, erasure_id=f"erasure-{user}", erased_at_us=erased_at_us
        )
    )
    await service.log.append(
        service.log.topology.events_subject("acme", 0), payload, headers=headers
    )


async def _rows(conn: asyncpg.Connection) -> list[Any]:
    """The per-user rows and sums, and the aggregate counts (not the latest timestamp,
    which only ever grows: an erasure leaves it, so reads it bounds take the exact path)."""
    out: list[Any] = []
    for query in (
        "SELECT experiment, params, multiple_exposures, unknown_variant_exposures"
        " FROM experiment_aggregates ORDER BY experiment",
        "SELECT * FROM experiment_users ORDER BY experiment, user_id",
        "SELECT * FROM experiment_user_metrics ORDER BY experiment, metric, user_id",
        "SELECT * FROM experiment_sums ORDER BY experiment, metric, variant",
    ):
        out.append([tuple(r.values()) for r in await conn.fetch(query)])
    return out


async def _holding(conn: asyncpg.Connection, text: str) -> dict[str, int]:
    names = [
        r[0]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    ]
    found = {}
    for name in names:
        n = await conn.fetchval(
            f'SELECT count(*) FROM "{name}" t WHERE strpos(t::text, $1) > 0'
            " OR strpos(t::text, $2) > 0",
            text,
            text.encode().hex(),
        )
        if n:
            found[name] = n
    return found


async def test_an_erased_user_leaves_the_sums_as_if_never_exposed(
    service: ExperimentsUnderTest,
) -> None:
    t = time.time_ns() // 1000 - 3_600_000_000
    await service.stub.CreateExperiment(
        pb.CreateExperimentRequest(key=KEY, definition=definition(analysis_start_us=t)),
        metadata=ADMIN,
    )
    now = time.time_ns() // 1000
    await _feed(
        service,
        [
            # The erased user: exposed to both variants (multiple), once to an unknown
            # one, with an order; the two others stay.
            _exposure("x1", ERASED, t + 100, "control"),
            _exposure("x1b", ERASED, t + 110, "green"),
            _exposure("x1c", ERASED, t + 120, "blue"),
            _order("o1", ERASED, t + 150, 10),
            _exposure("x2", "u2", t + 100, "green"),
            _order("o2", "u2", t + 120, 7),
            _exposure("x3", "u3", t + 100, "control"),
        ],
    )

    async def before() -> bool:
        fast = await _fast_equals_exact(service, now)
        assert fast.population == Population({"control": 1, "green": 1}, 1, 1)
        return True

    await assert_eventually(before, timeout=30)
    erased_at = time.time_ns() // 1000
    await _erase(service, ERASED, erased_at)

    async def after() -> bool:
        fast = await _fast_equals_exact(service, erased_at)
        assert fast.population == Population({"control": 1, "green": 1}, 0, 0)
        assert fast.moments[1]["green"].post.total == 7.0
        return True

    await assert_eventually(after, timeout=30)
    rm = ReadModel(_pool(service))
    async with _pool(service).acquire() as conn:
        assert await _holding(conn, ERASED) == {}
        # The rows equal a rebuild of the experiment from what is stored (rolled back).
        live = await _rows(conn)
        tx = conn.transaction()
        await tx.start()
        try:
            await aggregates.lock(conn)
            await aggregates.rebuild(conn, "acme", await _state(rm))
            assert await _rows(conn) == live
        finally:
            await tx.rollback()

    # A late retry of its history is dropped; an exposure after the erasure counts anew.
    await _feed(
        service,
        [
            _exposure("x1", ERASED, t + 100, "control"),
            _order("o1-late", ERASED, erased_at, 3),
            _exposure("x1-new", ERASED, erased_at + 1, "control"),
        ],
    )

    async def came_back() -> bool:
        fast = await _fast_equals_exact(service, erased_at + 1)
        assert fast.population == Population({"control": 2, "green": 1}, 0, 0)
        assert fast.moments[1]["control"].post.total == 0.0  # the late order stays dropped
        return True

    await assert_eventually(came_back, timeout=30)
    async with _pool(service).acquire() as conn:
        assert await _holding(conn, ERASED) == {
            "exposures": 1,
            "user_events": 1,
            "experiment_users": 1,
            "experiment_user_metrics": 3,
        }
