"""The counted revenue facts of a tenant, read from the revenue read models.

One snapshot, sized by the range rather than the history: MRR and paying orgs at any
day from the summed `mrr_days` steps; the month movements from the states of only the
orgs whose state changes in the months (`subscription_states`, kept by
adapters/revenue_rollup.py with the same `counted_state` decision); signups per day
from `user_facts`, acquisition channels from `org_acquisition`, spend from the few
`marketing.spend` events of the months. The rules stay in domain/revenue.py; the
integration tests hold this path to the brute-force reference.
"""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg
import orjson

from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.domain.revenue import (
    RevenueDay,
    RevenueFacts,
    SubscriptionState,
    counted_spend,
    daily_revenue_of_steps,
    new_paying_orgs,
    next_month,
    previous_month,
    signups_by_month_of_days,
)
from northstar_metrics.domain.time import day_of, day_start_us
from northstar_runtime.db import Connection

# The states of the orgs whose state changes in [$2, $3): each one's latest state
# before $2 and its states in the range (every other org keeps one state throughout).
_CHANGED_STATES = """
WITH changed AS (
  SELECT DISTINCT org_id FROM subscription_states
  WHERE tenant = $1 AND ts_us >= $2 AND ts_us < $3
)
SELECT s.org_id, s.ts_us, s.event_id, s.mrr
FROM changed c CROSS JOIN LATERAL (
  (SELECT b.org_id, b.ts_us, b.event_id, b.mrr FROM subscription_states b
   WHERE b.tenant = $1 AND b.org_id = c.org_id AND b.ts_us < $2
   ORDER BY b.ts_us DESC, b.event_id DESC LIMIT 1)
  UNION ALL
  SELECT r.org_id, r.ts_us, r.event_id, r.mrr FROM subscription_states r
  WHERE r.tenant = $1 AND r.org_id = c.org_id AND r.ts_us >= $2 AND r.ts_us < $3
) s
ORDER BY s.ts_us, s.event_id
"""
# The (MRR, paying orgs) steps of the days before $2.
_STEPS = "SELECT day, mrr, paying FROM mrr_days WHERE tenant = $1 AND day < $2 ORDER BY day"
_SPEND = """
SELECT ts_us, (properties -> 'channel')::text, (properties -> 'amount')::text
FROM events
WHERE tenant = $1 AND event = 'marketing.spend' AND ts_us >= $2 AND ts_us < $3
"""
# Users' signups (user_facts: each user's earliest `user.signup`) per day.
_SIGNUPS = """
SELECT signup_day, count(*), count(*) FILTER (WHERE channel = 'referral')
FROM user_facts
WHERE tenant = $1 AND signup_day >= $2 AND signup_day < $3
GROUP BY 1
"""
# The acquisition channel of each org (org_acquisition: its earliest `user.signup`).
_ACQUISITION = """
SELECT org_id, channel FROM org_acquisition WHERE tenant = $1 AND org_id = ANY($2::text[])
"""


def _decoded(text: str | None) -> object:
    """A property value as stored JSON text, decoded; None when the key is absent."""
    return None if text is None else orjson.loads(text)


class RevenueStore:
    """The counted revenue facts of a tenant, each answer read in one snapshot."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def facts(
        self, tenant: str, months: list[date], days: tuple[date, date] | None = None
    ) -> tuple[RevenueFacts, list[RevenueDay], int]:
        """The facts `months` need, the RevenueDays of `days`, and the log position."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            reader = _SnapshotReader(conn)
            position = await activity_position(conn)
            facts = await reader.facts(tenant, months)
            series = [] if days is None else await reader.days(tenant, *days)
        return facts, series, position

    async def days(self, tenant: str, first: date, last: date) -> list[RevenueDay]:
        """MRR, paying orgs and ARPU at the end of each day of [first, last]."""
        async with self._pool.acquire() as conn:
            return await _SnapshotReader(conn).days(tenant, first, last)


def _steps(rows: list[asyncpg.Record]) -> list[tuple[date, int, int]]:
    return [(r[0], int(r[1]), r[2]) for r in rows]


class _SnapshotReader:
    """The reads of one answer, on a connection inside its repeatable-read snapshot."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def days(self, tenant: str, first: date, last: date) -> list[RevenueDay]:
        """MRR, paying orgs and ARPU at the end of each day of [first, last]."""
        rows = await self._conn.fetch(_STEPS, tenant, last + timedelta(days=1))
        return daily_revenue_of_steps(_steps(rows), first, last)

    async def facts(self, tenant: str, months: list[date]) -> RevenueFacts:
        """Everything the months need (signups from the month before the first one on)."""
        since, until = day_start_us(months[0]), day_start_us(next_month(months[-1]))
        rows = await self._conn.fetch(_CHANGED_STATES, tenant, since, until)
        states = [SubscriptionState(r[0], r[1], r[2], int(r[3])) for r in rows]
        # Already in order from SQL (event_id in the "C" collation, code point order);
        # Python's sort of sorted data is one linear pass that keeps the order rule
        # independent of the collation.
        states.sort(key=lambda s: (s.ts_us, s.event_id))
        bounds = [m for month in months for m in (month, next_month(month))]
        steps = _steps(await self._conn.fetch(_STEPS, tenant, bounds[-1]))
        totals: dict[int, tuple[int, int]] = {}
        mrr = paying = i = 0
        for bound in sorted(set(bounds)):
            while i < len(steps) and steps[i][0] < bound:
                mrr += steps[i][1]
                paying += steps[i][2]
                i += 1
            totals[day_start_us(bound)] = (mrr, paying)
        spend = [
            s
            for r in await self._conn.fetch(_SPEND, tenant, since, until)
            if (s := counted_spend(day_of(r[0]), _decoded(r[1]), _decoded(r[2]))) is not None
        ]
        signup_days = await self._conn.fetch(
            _SIGNUPS, tenant, previous_month(months[0]), next_month(months[-1])
        )
        candidates = sorted(new_paying_orgs(states, months))
        acquisition = await self._conn.fetch(_ACQUISITION, tenant, candidates)
        return RevenueFacts(
            states=tuple(states),
            spend=tuple(spend),
            acquisition={r[0]: r[1] for r in acquisition},
            signups=signups_by_month_of_days((r[0], r[1], r[2]) for r in signup_days),
            totals=totals,
        )
