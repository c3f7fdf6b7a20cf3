"""Cohort counts for retention, aggregated in PostgreSQL from `user_facts` and `user_days`.

One statement per query: the users whose signup day is in the cohorts' range (read by
index from `user_facts`, which keeps each user's earliest `user.signup`), their cohorts,
and the users counted per (cohort, period) from one bounded index probe per user into
`user_days`, so that only cohort-by-period counts leave the database.
domain/retention.py `count_cohorts` is the same computation in plain Python; the tests
hold the two to the same answers.
"""

from __future__ import annotations

import contextlib
from datetime import date

import asyncpg

from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.domain.retention import (
    CohortCounts,
    CohortGranularity,
    CohortQuery,
    RetentionMode,
    cohort_starts,
    period_end,
)

# Sorting and hashing a tenant's signups and activity days needs more than the default.
_WORK_MEM = "SET LOCAL work_mem = '256MB'"

# The first day of the cohort period of `signup_day`. Casting to `timestamp` (no time
# zone) keeps the session's time zone out of date_trunc.
_COHORT = {
    CohortGranularity.DAY: "signup_day",
    CohortGranularity.WEEK: "date_trunc('week', signup_day::timestamp)::date",
    CohortGranularity.MONTH: "date_trunc('month', signup_day::timestamp)::date",
}


def _months(column: str) -> str:
    return f"(extract(year FROM {column})::int * 12 + extract(month FROM {column})::int)"


# The period of the cohort `cohort` holding the activity day `{day}` (>= cohort).
_PERIOD = {
    CohortGranularity.DAY: "({day} - cohort)",
    CohortGranularity.WEEK: "(({day} - cohort) / 7)",
    CohortGranularity.MONTH: f"({_months('{day}')} - {_months('cohort')})",
}

# $1 tenant, $2 last signup day, $3 segment column ('plan' / 'channel') or NULL,
# $4 segment value, $5/$6 first/last cohort start. The users of the cohorts come from
# `user_facts` by its (tenant, signup_day) index: only the signups of the range are read.
_COHORTS = """
WITH cohorts AS MATERIALIZED (
  SELECT user_id, cohort FROM (
    SELECT user_id, {cohort} AS cohort FROM user_facts
    WHERE tenant = $1 AND signup_day BETWEEN $5::date AND $2::date
      AND ($3::text IS NULL
           OR (CASE $3::text WHEN 'plan' THEN plan ELSE channel END) = $4::text)
  ) s
  WHERE cohort BETWEEN $5::date AND $6::date
)
SELECT cohort, NULL::int AS period, count(*) AS users FROM cohorts GROUP BY cohort
UNION ALL
{tally}
"""

# The first day of period `{n}` of the cohort `cohort`.
_PERIOD_START = {
    CohortGranularity.DAY: "(cohort + {n})",
    CohortGranularity.WEEK: "(cohort + 7 * {n})",
    CohortGranularity.MONTH: "(cohort + make_interval(months => {n}))::date",
}

# ON_DAY: users with activity in each period. $7 last activity day; $8/$9 first and
# last period wanted, turned into day bounds per cohort so that the primary key index
# (tenant, user_id, day) reads only the days that can count. A user has one row per
# day, so for DAY cohorts (one day per period) count(*) counts users; longer periods
# first keep one row per (user, period).
_ON_DAY = """
SELECT cohort, period, count(*) AS users FROM (
  SELECT {distinct} c.cohort, c.user_id, {period} AS period
  FROM (SELECT cohort, user_id, {since} AS since, {until} AS until FROM cohorts) c
  JOIN user_days u ON u.tenant = $1 AND u.user_id = c.user_id
  WHERE u.day >= c.since AND u.day < c.until AND u.day <= $7::date
) a
GROUP BY cohort, period
"""

# ON_OR_AFTER: users by the period of their latest activity day on or before $7 (as_of),
# one backward index probe per user.
_ON_OR_AFTER = """
SELECT cohort, {period} AS period, count(*) AS users FROM (
  SELECT c.cohort, (
    SELECT max(u.day) FROM user_days u
    WHERE u.tenant = $1 AND u.user_id = c.user_id AND u.day >= c.cohort AND u.day <= $7::date
  ) AS last_day
  FROM cohorts c
) a
WHERE last_day IS NOT NULL
GROUP BY 1, 2
"""


def _sql(granularity: CohortGranularity, mode: RetentionMode) -> str:
    if mode is RetentionMode.ON_DAY:
        distinct = "" if granularity is CohortGranularity.DAY else "DISTINCT"
        period = _PERIOD[granularity].format(day="u.day")
        since = _PERIOD_START[granularity].format(n="$8::int")
        until = _PERIOD_START[granularity].format(n="($9::int + 1)")
        tally = _ON_DAY.format(distinct=distinct, period=period, since=since, until=until)
    else:
        tally = _ON_OR_AFTER.format(period=_PERIOD[granularity].format(day="last_day"))
    return _COHORTS.format(cohort=_COHORT[granularity], tally=tally)


class RetentionStore:
    """Per-cohort sizes and per-period user counts of a tenant, in one consistent snapshot."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def cohort_counts(
        self, tenant: str, query: CohortQuery, periods: range
    ) -> tuple[CohortCounts, int]:
        """The counts of `query` (ON_DAY: only `periods`), and the log position they reflect."""
        starts = cohort_starts(query.first, query.last, query.granularity)
        if not starts:
            return CohortCounts(query.mode, {}, {}), await self._position()
        last_signup_day = period_end(starts[-1], 0, query.granularity)
        last_day = query.as_of
        if query.mode is RetentionMode.ON_DAY:
            # Days after the last wanted period of the last cohort cannot count.
            with contextlib.suppress(OverflowError):
                last_day = min(
                    last_day, period_end(starts[-1], periods.stop - 1, query.granularity)
                )
        segment = query.segment
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            args: list[object] = [
                tenant,
                last_signup_day,
                segment.attribute.value if segment else None,
                segment.value if segment else None,
                starts[0],
                starts[-1],
                last_day,
            ]
            if query.mode is RetentionMode.ON_DAY:
                args += [periods.start, periods.stop - 1]
            await conn.execute(_WORK_MEM)
            rows = await conn.fetch(_sql(query.granularity, query.mode), *args)
            position = await activity_position(conn)
        sizes: dict[date, int] = {}
        tally: dict[tuple[date, int], int] = {}
        for r in rows:
            if r["period"] is None:
                sizes[r["cohort"]] = r["users"]
            else:
                tally[(r["cohort"], r["period"])] = r["users"]
        return CohortCounts(query.mode, sizes, tally), position

    async def _position(self) -> int:
        async with self._pool.acquire() as conn:
            return await activity_position(conn)
