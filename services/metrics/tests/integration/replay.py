"""Read-model tables as the live projection keeps them and as a replay of the log rebuilds them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar_harness.eventually import assert_eventually
from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.adapters.projection import ActivityProjection
from northstar_runtime.projector import LogEntry

from ..reference import Ev
from .conftest import MetricsUnderTest

Tables = dict[str, str]  # name -> a SELECT of its rows for tenant $1, in a fixed order


async def snapshot_tables(m: MetricsUnderTest, tenant: str, tables: Tables) -> dict[str, list]:
    """The tenant's rows of each table, as the running projection left them."""
    pool = m.host.resources.pool
    assert pool is not None
    async with pool.acquire() as conn:
        return {t: [tuple(r) for r in await conn.fetch(q, tenant)] for t, q in tables.items()}


async def rebuilt_tables(
    m: MetricsUnderTest, tenant: str, position: int, tables: Tables, *, batch: int = 3
) -> dict[str, list]:
    """The tables as a replay of the whole log from an empty state makes them (rolled back)."""
    pool = m.host.resources.pool
    assert pool is not None
    stream = m.log.topology.events_stream
    entries = []
    for seq in range(1, position + 1):
        msg = await m.log.js.get_msg(stream, seq)
        entries.append(LogEntry(seq, msg.subject, msg.data or b"", dict(msg.headers or {})))
    projection = ActivityProjection()
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await projection.reset(conn)
            for i in range(0, len(entries), batch):
                await projection.apply(conn, entries[i : i + batch])
            return {t: [tuple(r) for r in await conn.fetch(q, tenant)] for t, q in tables.items()}
        finally:
            await tx.rollback()


def check_replays(
    m: MetricsUnderTest,
    loop: asyncio.AbstractEventLoop,
    tenants: Iterator[str],
    tables: Tables,
    events: st.SearchStrategy[list[Ev]],
    *,
    max_examples: int = 10,
) -> None:
    """Hypothesis: two tenants' events in small messages; each tenant's live rows equal a
    replay's in other batch sizes (late events and duplicates land in other batches).

    Runs in a thread (Hypothesis drives examples synchronously) and hands each example
    to `loop`, where the service lives.
    """

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(mine=events, other=events, per_message=st.integers(1, 9), batch=st.integers(1, 5))
    def check_one(mine: list[Ev], other: list[Ev], per_message: int, batch: int) -> None:
        a, b = next(tenants), next(tenants)

        async def check() -> None:
            await m.append(b, other, per_message=per_message)
            position = await m.append(a, mine, per_message=per_message)
            await applied(m, position)
            for tenant in (a, b):
                live = await snapshot_tables(m, tenant, tables)
                assert await rebuilt_tables(m, tenant, position, tables, batch=batch) == live

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=90)

    check_one()


async def applied(m: MetricsUnderTest, position: int) -> None:
    """Wait until the activity projection has applied the log up to `position`."""
    pool = m.host.resources.pool
    assert pool is not None

    async def caught_up() -> bool:
        async with pool.acquire() as conn:
            return await activity_position(conn) >= position

    await assert_eventually(caught_up, timeout=30)
