"""The events a funnel reads, narrowed in PostgreSQL to what domain/funnel.py can use.

domain/funnel.py stays the one definition of the semantics; this store only leaves out
events that cannot change its answer, and decodes properties only where they are read:

- A user without a step-1 event (by name) whose day is in the entry range enters no
  chain, so only the events of users with one are fetched (a semi-join). The name alone
  is a superset of the users whose step-1 filters match: the domain still decides.
- Properties are read by step and exclusion filters, and by the breakdown (on step-1
  events only). Events of a name with neither get empty properties instead of decoded
  JSON: their masks are fixed by the name, and the breakdown never reads them.
"""

from __future__ import annotations

import asyncpg
import orjson

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.filters import compile_filters
from northstar_metrics.domain.funnel import FunnelQuery

_SQL = """SELECT event_id, event, user_id, ts_us,
  CASE WHEN event = ANY($6::text[]) THEN properties::text END
FROM events
WHERE tenant = $1 AND event = ANY($2::text[]) AND ts_us >= $3 AND ts_us < $4
  AND user_id <> ''
  AND user_id IN (
    SELECT user_id FROM events
    WHERE tenant = $1 AND event = $5 AND ts_us >= $3 AND ts_us < $7 AND user_id <> ''
  )"""


def property_names(query: FunnelQuery) -> list[str]:
    """The event names whose properties the funnel reads (filters, or the breakdown)."""
    names = {
        m.event
        for m in (*query.steps, *(x.matcher for x in query.exclusions))
        if compile_filters(m.filters) is not None
    }
    if query.breakdown_property:
        names.add(query.steps[0].event)
    return sorted(names)


class FunnelStore:
    """A tenant's events that can take part in a funnel, per query."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def events(self, tenant: str, query: FunnelQuery) -> list[EventRow]:
        """The events of entering users with a step or exclusion name, in the query's span."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                _SQL,
                tenant,
                query.event_names,
                query.since_us,
                query.until_us,
                query.steps[0].event,
                property_names(query),
                query.entry_until_us,
            )
        return [
            EventRow(
                event_id=r[0],
                event=r[1],
                user_id=r[2],
                org_id="",
                ts_us=r[3],
                properties=orjson.loads(r[4]) if r[4] is not None else {},
            )
            for r in rows
        ]
