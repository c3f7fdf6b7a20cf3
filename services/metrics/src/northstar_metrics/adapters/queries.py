"""Read-model queries of the metrics service."""

from __future__ import annotations

from datetime import date

import asyncpg

from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.domain.active_users import ActiveUsersDay, series


class ReadModel:
    """Queries over the metrics schema, always scoped to one tenant."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def active_users(
        self, tenant: str, first: date, last: date
    ) -> tuple[list[ActiveUsersDay], int]:
        """Per-day DAU, WAU, MAU and MAO over [first, last], and the log position."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            rows = await conn.fetch(
                "SELECT day, dau, wau, mau, mao FROM active_deltas"
                " WHERE tenant = $1 AND day <= $2 ORDER BY day",
                tenant,
                last,
            )
            position = await activity_position(conn)
        values = [(r["day"], r["dau"], r["wau"], r["mau"], r["mao"]) for r in rows]
        return series(values, first, last), position
