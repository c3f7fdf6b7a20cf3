"""Reading events back from the `events` read model, always for one tenant."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg
import orjson

from northstar_metrics.domain.events import EventRow
from northstar_runtime.db import Connection

# The position of the activity projection (all its partition-range replicas): the
# one every event-based answer depends on. Other projections (the DOMAIN stream's)
# count positions in another stream, so they are not mixed in.
ACTIVITY_POSITION_SQL = (
    "SELECT coalesce(max(position), 0) FROM projection_checkpoints"
    " WHERE projection = 'activity' OR projection LIKE 'activity\\_p%'"
)

# A loose index scan over (tenant, event, ts_us): one index probe per distinct name,
# so listing a tenant's event names costs a few dozen probes, not a scan.
EVENT_NAMES_CTE = """names(event) AS (
  (SELECT event FROM events WHERE tenant = $1 ORDER BY event LIMIT 1)
  UNION ALL
  SELECT (SELECT e.event FROM events e WHERE e.tenant = $1 AND e.event > n.event
          ORDER BY e.event LIMIT 1)
  FROM names n WHERE n.event IS NOT NULL
)"""
EVENT_NAMES_SQL = (
    f"WITH RECURSIVE {EVENT_NAMES_CTE} SELECT event FROM names WHERE event IS NOT NULL"  # noqa: S608 - fixed fragment
)

# The columns `event_row` decodes, in its order (quality_store selects the same).
EVENT_COLUMNS = (
    "event_id, event, user_id, org_id, ts_us, properties::text, received_at_us, sent_at_us"
)


async def activity_position(conn: Connection) -> int:
    """The activity projection's position, read on `conn` (inside its snapshot, if any)."""
    return int(await conn.fetchval(ACTIVITY_POSITION_SQL))


def event_row(r: asyncpg.Record) -> EventRow:
    """An event selected as EVENT_COLUMNS, decoded for the domain."""
    return EventRow(
        event_id=r[0],
        event=r[1],
        user_id=r[2],
        org_id=r[3],
        ts_us=r[4],
        properties=orjson.loads(r[5]),
        received_at_us=r[6],
        sent_at_us=r[7],
    )


class EventStore:
    """Events of a tenant, filtered in SQL by name and time; decoded for the domain."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def events(
        self,
        tenant: str,
        *,
        names: Sequence[str] | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        with_user: bool = False,
    ) -> list[EventRow]:
        """Events with a name in `names` (None: any), `since_us <= ts_us < until_us`."""
        clauses = ["tenant = $1"]
        args: list[object] = [tenant]
        if names is not None:
            args.append(list(names))
            clauses.append(f"event = ANY(${len(args)}::text[])")
        if since_us is not None:
            args.append(since_us)
            clauses.append(f"ts_us >= ${len(args)}")
        if until_us is not None:
            args.append(until_us)
            clauses.append(f"ts_us < ${len(args)}")
        if with_user:
            clauses.append("user_id <> ''")
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)}"  # noqa: S608 - fixed fragments, values bound
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
        return [event_row(r) for r in rows]

    async def user_days(
        self, tenant: str, users: Sequence[str] | None = None
    ) -> dict[str, list[date]]:
        """Days with activity per user (all users, or those given)."""
        async with self._pool.acquire() as conn:
            if users is None:
                rows = await conn.fetch(
                    "SELECT user_id, array_agg(day ORDER BY day) FROM user_days"
                    " WHERE tenant = $1 GROUP BY user_id",
                    tenant,
                )
            else:
                rows = await conn.fetch(
                    "SELECT user_id, array_agg(day ORDER BY day) FROM user_days"
                    " WHERE tenant = $1 AND user_id = ANY($2::text[]) GROUP BY user_id",
                    tenant,
                    list(users),
                )
        return {r[0]: list(r[1]) for r in rows}

    async def event_names(self, tenant: str, *, prefix: str = "") -> list[str]:
        """The tenant's distinct event names (starting with `prefix`), in string order."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(EVENT_NAMES_SQL, tenant)
        return [r[0] for r in rows if r[0].startswith(prefix)]

    async def position(self) -> int:
        """The log position the read model has reached."""
        async with self._pool.acquire() as conn:
            return await activity_position(conn)
