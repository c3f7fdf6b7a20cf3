"""Read-model tables as the live projection keeps them and as a replay of the log rebuilds them."""

from __future__ import annotations

from northstar_metrics.adapters.projection import ActivityProjection
from northstar_runtime.projector import LogEntry

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
