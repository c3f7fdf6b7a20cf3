"""The counted revenue facts of a tenant, read from the revenue read models.

One snapshot, sized by the range rather than the history: MRR and paying orgs at any
day from the summed `mrr_days` steps; the month movements summed in SQL over the orgs
whose MRR differs between the month's ends (`org_months`, kept by
adapters/revenue_rollup.py from the states `counted_state` keeps), new orgs per
acquisition channel from `org_acquisition`; signups per day from `signup_days`, spend
from the few `marketing.spend` events of the months. The rules stay in domain/revenue.py; the
integration tests hold this path to the brute-force reference.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import asyncpg
import orjson

from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.domain.revenue import (
    MonthEnds,
    MonthRevenue,
    Movements,
    RevenueDay,
    counted_spend,
    daily_revenue_of_steps,
    next_month,
    previous_month,
    signups_by_month_of_days,
    spend_by_month,
    summarize,
)
from northstar_metrics.domain.time import day_of, day_start_us
from northstar_runtime.db import Connection

# Per month of $2: the movements summed over the orgs whose MRR differs between its
# two ends (`org_months`: start 0 is a new org, end 0 a churned one).
_MOVEMENTS = """
SELECT month,
  coalesce(sum(mrr_end) FILTER (WHERE mrr_start = 0), 0) AS new,
  count(*) FILTER (WHERE mrr_start = 0) AS new_orgs,
  coalesce(sum(mrr_end - mrr_start) FILTER (WHERE mrr_start > 0 AND mrr_end > mrr_start), 0)
    AS expansion,
  count(*) FILTER (WHERE mrr_start > 0 AND mrr_end > mrr_start) AS expansion_orgs,
  coalesce(sum(mrr_start - mrr_end) FILTER (WHERE mrr_end > 0 AND mrr_end < mrr_start), 0)
    AS contraction,
  count(*) FILTER (WHERE mrr_end > 0 AND mrr_end < mrr_start) AS contraction_orgs,
  coalesce(sum(mrr_start) FILTER (WHERE mrr_end = 0), 0) AS churned,
  count(*) FILTER (WHERE mrr_end = 0) AS churned_orgs
FROM org_months WHERE tenant = $1 AND month = ANY($2::date[])
GROUP BY month
"""
# The new paying orgs of each month of $2 per acquisition channel (`org_acquisition`).
_NEW_BY_CHANNEL = """
SELECT m.month, a.channel, count(*)
FROM org_months m JOIN org_acquisition a ON a.tenant = m.tenant AND a.org_id = m.org_id
WHERE m.tenant = $1 AND m.month = ANY($2::date[]) AND m.mrr_start = 0
  AND a.channel IS NOT NULL
GROUP BY m.month, a.channel
"""
# The (MRR, paying orgs) steps of the days before $2.
_STEPS = "SELECT day, mrr, paying FROM mrr_days WHERE tenant = $1 AND day < $2 ORDER BY day"
_SPEND = """
SELECT ts_us, (properties -> 'channel')::text, (properties -> 'amount')::text
FROM events
WHERE tenant = $1 AND event = 'marketing.spend' AND ts_us >= $2 AND ts_us < $3
"""
# Users' signups per day (signup_days: each user's earliest `user.signup`, by channel).
_SIGNUPS = """
SELECT day, sum(users)::bigint, coalesce(sum(users) FILTER (WHERE referral), 0)::bigint
FROM signup_days
WHERE tenant = $1 AND day >= $2 AND day < $3
GROUP BY day
"""


def _decoded(text: str | None) -> object:
    """A property value as stored JSON text, decoded; None when the key is absent."""
    return None if text is None else orjson.loads(text)


class RevenueStore:
    """The counted revenue facts of a tenant, each answer read in one snapshot."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def months(
        self, tenant: str, months: list[date], days: tuple[date, date] | None = None
    ) -> tuple[list[MonthRevenue], list[RevenueDay], int]:
        """Each of `months`, the RevenueDays of `days`, and the log position."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            reader = _SnapshotReader(conn)
            position = await activity_position(conn)
            summaries = await reader.months(tenant, months)
            series = [] if days is None else await reader.days(tenant, *days)
        return summaries, series, position

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

    async def months(self, tenant: str, months: list[date]) -> list[MonthRevenue]:
        """Each month's summary (signups from the month before the first one on)."""
        since, until = day_start_us(months[0]), day_start_us(next_month(months[-1]))
        steps = _steps(await self._conn.fetch(_STEPS, tenant, next_month(months[-1])))
        # (MRR, paying orgs) at the start of each month and of the one after the last.
        levels: dict[date, tuple[int, int]] = {}
        mrr = paying = i = 0
        for bound in [*months, next_month(months[-1])]:
            while i < len(steps) and steps[i][0] < bound:
                mrr += steps[i][1]
                paying += steps[i][2]
                i += 1
            levels[bound] = (mrr, paying)
        by_channel: dict[date, dict[str, int]] = defaultdict(dict)
        for r in await self._conn.fetch(_NEW_BY_CHANNEL, tenant, months):
            by_channel[r[0]][r[1]] = int(r[2])
        moves = {
            r["month"]: Movements(
                **{k: int(r[k]) for k in _MOVEMENT_COLUMNS}, new_by_channel=by_channel[r["month"]]
            )
            for r in await self._conn.fetch(_MOVEMENTS, tenant, months)
        }
        spend = spend_by_month(
            s
            for r in await self._conn.fetch(_SPEND, tenant, since, until)
            if (s := counted_spend(day_of(r[0]), _decoded(r[1]), _decoded(r[2]))) is not None
        )
        signup_days = await self._conn.fetch(
            _SIGNUPS, tenant, previous_month(months[0]), next_month(months[-1])
        )
        signups = signups_by_month_of_days((r[0], r[1], r[2]) for r in signup_days)
        return [
            summarize(
                m,
                MonthEnds(*levels[m], *levels[next_month(m)]),
                moves.get(m, Movements()),
                spend.get(m, []),
                signups,
            )
            for m in months
        ]


_MOVEMENT_COLUMNS = (
    "new",
    "new_orgs",
    "expansion",
    "expansion_orgs",
    "contraction",
    "contraction_orgs",
    "churned",
    "churned_orgs",
)
