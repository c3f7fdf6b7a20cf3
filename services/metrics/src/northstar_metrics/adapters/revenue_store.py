"""The counted revenue facts of a tenant, read from the `events` table.

It reads only the facts revenue counts, in one snapshot: the properties it needs
rather than whole events, and the signup counts and acquisition channels aggregated
in PostgreSQL, so that a tenant's ~200k signups never leave the database. The rules
stay in domain/revenue.py (the same `counted_state` / `counted_spend` decisions the
row-based functions use); the integration tests hold this path to the brute-force
reference.
"""

from __future__ import annotations

from datetime import date

import asyncpg
import orjson

from northstar_metrics.adapters.event_store import EVENT_NAMES_SQL, activity_position
from northstar_metrics.domain.revenue import (
    SUBSCRIPTION_PREFIX,
    RevenueFacts,
    SubscriptionState,
    counted_spend,
    counted_state,
    new_paying_orgs,
    next_month,
    previous_month,
    signups_by_month_of_days,
    text_value,
)
from northstar_metrics.domain.time import day_of, day_start_us
from northstar_runtime.db import Connection

_SUBSCRIPTIONS = """
SELECT event, org_id, ts_us, event_id, (properties -> 'mrr')::text
FROM events
WHERE tenant = $1 AND event = ANY($2::text[]) AND org_id <> '' AND ts_us < $3
ORDER BY ts_us, event_id COLLATE "C"
"""
_SPEND = """
SELECT ts_us, (properties -> 'channel')::text, (properties -> 'amount')::text
FROM events
WHERE tenant = $1 AND event = 'marketing.spend' AND ts_us >= $2 AND ts_us < $3
"""
# Users' signups (earliest `user.signup` by timestamp, then event_id in code-point
# order: `COLLATE "C"` compares UTF-8 bytes, which orders like code points) per day.
_SIGNUPS = """
SELECT date '1970-01-01' + (ts_us / 86400000000)::int AS day, count(*),
       count(*) FILTER (WHERE channel = '"referral"'::jsonb)
FROM (
  SELECT DISTINCT ON (user_id) ts_us, properties -> 'channel' AS channel
  FROM events
  WHERE tenant = $1 AND event = 'user.signup' AND user_id <> ''
  ORDER BY user_id, ts_us, event_id COLLATE "C"
) first_signups
WHERE ts_us >= $2 AND ts_us < $3
GROUP BY 1
"""
# The channel of each org's earliest `user.signup` (any user's) carrying its org_id.
_ACQUISITION = """
SELECT o.org_id, first.channel
FROM unnest($2::text[]) AS o(org_id)
CROSS JOIN LATERAL (
  SELECT (e.properties -> 'channel')::text AS channel
  FROM events e
  WHERE e.tenant = $1 AND e.event = 'user.signup' AND e.org_id = o.org_id AND e.org_id <> ''
  ORDER BY e.ts_us, e.event_id COLLATE "C"
  LIMIT 1
) AS first
"""
# Sorting a large tenant's signups by user needs more than the default.
_WORK_MEM = "SET LOCAL work_mem = '64MB'"


def _decoded(text: str | None) -> object:
    """A property value as stored JSON text, decoded; None when the key is absent."""
    return None if text is None else orjson.loads(text)


class RevenueStore:
    """The counted revenue facts of a tenant, each answer read in one snapshot."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def facts(self, tenant: str, months: list[date]) -> tuple[RevenueFacts, int]:
        """The facts `months` need, and the log position they reflect."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            reader = _SnapshotReader(conn)
            position = await activity_position(conn)
            facts = await reader.facts(tenant, months)
        return facts, position


class _SnapshotReader:
    """The reads of one answer, on a connection inside its repeatable-read snapshot."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def states(self, tenant: str, until_us: int) -> list[SubscriptionState]:
        """The counted `subscription.*` events before `until_us`, in the order rule."""
        names = [
            r[0]
            for r in await self._conn.fetch(EVENT_NAMES_SQL, tenant)
            if r[0].startswith(SUBSCRIPTION_PREFIX)
        ]
        if not names:
            return []
        rows = await self._conn.fetch(_SUBSCRIPTIONS, tenant, names, until_us)
        states = [
            s
            for r in rows
            if (s := counted_state(r[0], r[1], r[2], r[3], _decoded(r[4]))) is not None
        ]
        # Already in order from SQL, where sorting is cheaper; Python's sort of sorted data
        # is one linear pass that keeps the order rule independent of the collation.
        states.sort(key=lambda s: (s.ts_us, s.event_id))
        return states

    async def facts(self, tenant: str, months: list[date]) -> RevenueFacts:
        """Everything the months need (signups from the month before the first one on)."""
        await self._conn.execute(_WORK_MEM)
        since, until = day_start_us(months[0]), day_start_us(next_month(months[-1]))
        states = await self.states(tenant, until)
        spend = [
            s
            for r in await self._conn.fetch(_SPEND, tenant, since, until)
            if (s := counted_spend(day_of(r[0]), _decoded(r[1]), _decoded(r[2]))) is not None
        ]
        signup_days = await self._conn.fetch(
            _SIGNUPS, tenant, day_start_us(previous_month(months[0])), until
        )
        candidates = sorted(new_paying_orgs(states, months))
        acquisition = await self._conn.fetch(_ACQUISITION, tenant, candidates)
        return RevenueFacts(
            states=tuple(states),
            spend=tuple(spend),
            acquisition={r[0]: text_value(_decoded(r[1])) for r in acquisition},
            signups=signups_by_month_of_days((r[0], r[1], r[2]) for r in signup_days),
        )
