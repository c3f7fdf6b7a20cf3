"""Cohort counts for retention, summed from the `cohort_counts` read model.

`cohort_counts` (kept by adapters/user_facts.py) holds per signup day and segment how
many users were active on each day, ISO week and month, and the gaps between each
user's consecutive activity days. A query reads the rows of its signup days only
(index range on (tenant, attr, value, kind, signup_day)) and sums them per cohort in
Python, so its cost follows the cohorts of the range, not the users or the history:

- cohort size: the users' gaps ending at +infinity (one per user);
- ON_DAY, period n: the users with an activity day (DAY), week (WEEK) or month
  (MONTH) row in period n. A user has one row per day / week / month, so the sum over
  the cohort's signup days counts distinct users;
- ON_OR_AFTER, period n: the cohort size minus the users with no activity in
  [start of period n, as_of], which are exactly the users with a gap (x, y) such that
  x < start of period n and y > as_of (a user has at most one: gaps are disjoint).

domain/retention.py `count_cohorts` is the same computation in plain Python over
signups and activity days; the tests hold the two to the same answers.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

import asyncpg

from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.adapters.user_facts import DAY, MONTH, WEEK
from northstar_metrics.domain.retention import (
    CohortCounts,
    CohortGranularity,
    CohortQuery,
    RetentionMode,
    cohort_start,
    cohort_starts,
    period_end,
    period_of,
    period_start,
)

_KIND = {CohortGranularity.DAY: DAY, CohortGranularity.WEEK: WEEK, CohortGranularity.MONTH: MONTH}
# The latest date PostgreSQL stores below `infinity` (which asyncpg writes for date.max).
_LAST_DATE = date.max - timedelta(days=1)

# $1 tenant, $2/$3 segment ('' / '' for everyone), $4/$5 first/last signup day.
_SIZES = """
SELECT signup_day, sum(users)::bigint AS users FROM cohort_counts
WHERE tenant = $1 AND attr = $2 AND value = $3 AND kind = 0 AND y = 'infinity'::date
  AND signup_day BETWEEN $4::date AND $5::date
GROUP BY signup_day
"""

# Users active per signup day and period row (x) in [$7, $8], and within [$9, $10]
# days of the signup day (a superset of the periods wanted of the user's cohort).
_ACTIVE = """
SELECT signup_day, x, sum(users)::bigint AS users FROM cohort_counts
WHERE tenant = $1 AND attr = $2 AND value = $3 AND kind = $6
  AND signup_day BETWEEN $4::date AND $5::date AND x BETWEEN $7::date AND $8::date
  AND x - signup_day BETWEEN $9::int AND $10::int
GROUP BY signup_day, x
"""


def _offsets(periods: list[int], granularity: CohortGranularity) -> tuple[int, int]:
    """Day offsets from the signup day that hold the rows of `periods`, loosely bounded.

    A cohort starts at most 6 (WEEK) or 30 (MONTH) days before a signup day, and a
    period row's x is its period's first day; months last 28 to 31 days.
    """
    lo, hi = periods[0], periods[-1]
    if granularity is CohortGranularity.DAY:
        return lo, hi
    if granularity is CohortGranularity.WEEK:
        return 7 * lo - 6, 7 * hi
    return 28 * lo - 30, 31 * hi


# Gaps still open after as_of ($6) that start before the last period start wanted
# ($7), by signup day and gap start.
_OPEN_GAPS = """
SELECT signup_day, x, sum(users)::bigint AS users FROM cohort_counts
WHERE tenant = $1 AND attr = $2 AND value = $3 AND kind = 0 AND y > $6::date
  AND signup_day BETWEEN $4::date AND $5::date AND x < $7::date
GROUP BY signup_day, x
"""


def _bounded_start(cohort: date, n: int, granularity: CohortGranularity) -> date:
    try:
        return min(period_start(cohort, n, granularity), _LAST_DATE)
    except OverflowError:
        return _LAST_DATE


def _bounded_end(cohort: date, n: int, granularity: CohortGranularity) -> date:
    try:
        return min(period_end(cohort, n, granularity), _LAST_DATE)
    except OverflowError:
        return _LAST_DATE


class RetentionStore:
    """Per-cohort sizes and per-period user counts of a tenant, in one consistent snapshot."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def cohort_counts(
        self, tenant: str, query: CohortQuery, periods: range
    ) -> tuple[CohortCounts, int]:
        """The counts of `query` for `periods` (period 0 is the size), and the log position."""
        g = query.granularity
        starts = cohort_starts(query.first, query.last, g)
        wanted = [n for n in periods if n >= 1]
        segment = query.segment
        attr = segment.attribute.value if segment else ""
        value = segment.value if segment else ""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            position = await activity_position(conn)
            if not starts:
                return CohortCounts(query.mode, {}, {}), position
            args = [tenant, attr, value, starts[0], period_end(starts[-1], 0, g)]
            size_rows = await conn.fetch(_SIZES, *args)
            rows: list[asyncpg.Record] = []
            if wanted and query.mode is RetentionMode.ON_DAY:
                lo = _bounded_start(starts[0], wanted[0], g)
                hi = _bounded_end(starts[-1], wanted[-1], g)
                rows = await conn.fetch(_ACTIVE, *args, _KIND[g], lo, hi, *_offsets(wanted, g))
            elif wanted:
                as_of = min(query.as_of, _LAST_DATE)
                before = _bounded_start(starts[-1], wanted[-1], g)
                rows = await conn.fetch(_OPEN_GAPS, *args, as_of, before)
        sizes: dict[date, int] = defaultdict(int)
        for r in size_rows:
            sizes[cohort_start(r["signup_day"], g)] += r["users"]
        tally: dict[tuple[date, int], int] = defaultdict(int)
        if query.mode is RetentionMode.ON_DAY:
            members = set(wanted)
            for r in rows:
                cohort = cohort_start(r["signup_day"], g)
                p = period_of(cohort, r["x"], g)
                if p in members:
                    tally[(cohort, p)] += r["users"]
            return CohortCounts(query.mode, dict(sizes), dict(tally)), position
        # ON_OR_AFTER: users without activity in [start of period n, as_of], by the
        # period of their open gap's start (-1: before the cohort, or -infinity).
        missing: dict[date, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for r in rows:
            cohort = cohort_start(r["signup_day"], g)
            x = r["x"]
            p = -1 if x < cohort else min(period_of(cohort, x, g), wanted[-1])
            missing[cohort][p] += r["users"]
        if not wanted:
            return CohortCounts(query.mode, dict(sizes), {}), position
        for cohort, size in sizes.items():
            by_period = missing[cohort]
            absent = by_period.get(-1, 0) + sum(by_period.get(p, 0) for p in range(wanted[0]))
            retained = []
            for i, n in enumerate(wanted):
                # absent: the open gaps starting in a period < n (wanted is ascending).
                if i:
                    absent += sum(by_period.get(p, 0) for p in range(wanted[i - 1], n))
                retained.append(size - absent)
            # CohortCounts sums an ON_OR_AFTER tally over periods >= n: store differences.
            for i, n in enumerate(wanted):
                later = retained[i + 1] if i + 1 < len(retained) else 0
                tally[(cohort, n)] = retained[i] - later
        return CohortCounts(query.mode, dict(sizes), dict(tally)), position

    async def day_retention(self, tenant: str, first: date, last: date, n: int) -> tuple[int, int]:
        """(retained, signups): D-n ON_DAY over the signups of [first, last], n >= 1.

        domain/retention.py `day_retention_over_signups` over the read model: the daily
        cohorts of the range, their users active on signup day + n, summed.
        """
        query = CohortQuery(CohortGranularity.DAY, first, last, as_of=last + timedelta(days=n))
        counts, _ = await self.cohort_counts(tenant, query, range(n, n + 1))
        retained = sum(counts.tally.get((c, n), 0) for c in counts.sizes)
        return retained, sum(counts.sizes.values())
