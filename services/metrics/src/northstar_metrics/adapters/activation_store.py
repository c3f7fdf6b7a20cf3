"""The activation and workflow facts of a tenant, from `user_facts` and `events`."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg

from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.domain.activation import (
    ACTIVATION_WINDOW_US,
    FAST_ACTIVATION_US,
    PAID_CONVERSION_WINDOW_US,
    US_PER_SECOND,
    ActivationSegment,
    ActivationSummary,
    CohortAttribute,
    TimeToValue,
    interpolate,
)
from northstar_metrics.domain.ratios import ratio
from northstar_metrics.domain.time import day_start_us
from northstar_metrics.domain.workflows import (
    Granularity,
    RunTally,
    WorkflowStats,
    clipped_periods,
    counted_stats,
)

# The activation numbers of the signups of [$2, $3], overall and per value of the
# breakdown column ($4: 'plan', 'channel' or NULL for none), in one pass over their
# `user_facts` rows: integer counts, and per stage the number of durations (us) and
# the two order statistics around each percentile's index ((n - 1) * q, in float8 as
# Python computes it), interpolated as domain/activation.py `percentile` does.
# A signup converts when its org started a subscription within 30 days of it (the
# subscriptions of the range are few: hashed on org_id, joined once).
_SUMMARY_SQL = """
WITH c AS MATERIALIZED (
  SELECT user_id, signup_ts_us AS ts, org_id,
    -- Grouped bytewise (the segments' order is set in Python): faster than a locale.
    (CASE $4::text WHEN 'plan' THEN plan WHEN 'channel' THEN channel END) COLLATE "C" AS seg,
    (plan = 'free' AND org_id <> '') AS eligible,
    integration_connected_us - signup_ts_us AS d0,
    workflow_created_us - signup_ts_us AS d1,
    workflow_run_succeeded_us - signup_ts_us AS d2
  FROM user_facts WHERE tenant = $1 AND signup_day BETWEEN $2::date AND $3::date
), subs AS MATERIALIZED (
  SELECT org_id, ts_us FROM events
  WHERE tenant = $1 AND event = 'subscription.started' AND org_id <> ''
    AND ts_us >= $5 AND ts_us < $6
), converted AS (
  SELECT DISTINCT c.user_id FROM c JOIN subs s ON s.org_id = c.org_id
  WHERE c.eligible AND s.ts_us >= c.ts AND s.ts_us <= c.ts + $7
)
SELECT overall, seg, signups, activated, fast, eligible, paid, n0, n1, n2{ranks} FROM (
SELECT GROUPING(seg) AS overall, seg, count(*) AS signups,
  count(*) FILTER (WHERE d1 <= $8) AS activated,
  count(*) FILTER (WHERE d2 <= $9) AS fast,
  count(*) FILTER (WHERE eligible) AS eligible,
  count(*) FILTER (WHERE eligible AND user_id IN (SELECT user_id FROM converted)) AS paid,
  count(d0) AS n0, array_agg(d0 ORDER BY d0) FILTER (WHERE d0 IS NOT NULL) AS s0,
  count(d1) AS n1, array_agg(d1 ORDER BY d1) FILTER (WHERE d1 IS NOT NULL) AS s1,
  count(d2) AS n2, array_agg(d2 ORDER BY d2) FILTER (WHERE d2 IS NOT NULL) AS s2
FROM c
GROUP BY GROUPING SETS ((), (seg))
) g
"""
# Per stage k and percentile (m: 0.5, p: 0.9), the order statistics at the ranks of
# domain/activation.py `percentile_ranks` (1-based in SQL arrays).
_RANK = (
    ", s{k}[floor((n{k} - 1) * {q}::float8)::int + 1] AS {name}{k}a"
    ", s{k}[least(floor((n{k} - 1) * {q}::float8)::int + 1, n{k} - 1) + 1] AS {name}{k}b"
)
_SUMMARY_SQL = _SUMMARY_SQL.format(
    ranks="".join(
        _RANK.format(k=k, q=q, name=name) for k in range(3) for name, q in (("m", 0.5), ("p", 0.9))
    )
)


def _time_to_value(r: asyncpg.Record, stage: int) -> TimeToValue:
    n = r[f"n{stage}"]
    if not n:
        return TimeToValue(0, None, None)
    median, p90 = (
        interpolate(
            n, q, r[f"{name}{stage}a"] / US_PER_SECOND, r[f"{name}{stage}b"] / US_PER_SECOND
        )
        for name, q in (("m", 0.5), ("p", 0.9))
    )
    return TimeToValue(n, median, p90)


def _summary(r: asyncpg.Record) -> ActivationSummary:
    signups, activated, fast, eligible, paid = (
        r["signups"],
        r["activated"],
        r["fast"],
        r["eligible"],
        r["paid"],
    )
    return ActivationSummary(
        signups=signups,
        activated=activated,
        activation_rate=ratio(activated, signups),
        integration_connected=_time_to_value(r, 0),
        workflow_created=_time_to_value(r, 1),
        workflow_run_succeeded=_time_to_value(r, 2),
        fast_activated=fast,
        signup_to_value_30m=ratio(fast, signups),
        free_signups_with_org=eligible,
        paid_conversions=paid,
        paid_conversion_rate=ratio(paid, eligible),
    )


_EMPTY = ActivationSummary(
    0,
    0,
    None,
    TimeToValue(0, None, None),
    TimeToValue(0, None, None),
    TimeToValue(0, None, None),
    0,
    None,
    0,
    0,
    None,
)

# Signups of [$2, $3], those activated (a workflow.created within $4 us) and those fast
# activated (a successful run within $5 us): the stage firsts are at or after signup.
_COUNTS_SQL = """
SELECT count(*) AS signups,
  count(*) FILTER (WHERE workflow_created_us - signup_ts_us <= $4) AS activated,
  count(*) FILTER (WHERE workflow_run_succeeded_us - signup_ts_us <= $5) AS fast
FROM user_facts WHERE tenant = $1 AND signup_day BETWEEN $2::date AND $3::date
"""

# Valid-status runs per day and workflow, from the per-day rollup: a run without a
# string workflow_id (or with an empty one) is kept under '' and read as NULL,
# counted as a run but as no workflow.
_RUN_TALLIES_SQL = """
SELECT day, NULLIF(workflow_id, '') AS workflow_id, successful, failed
FROM run_days
WHERE tenant = $1 AND day >= $2 AND day <= $3
"""


# Per range [s, e] ($2 / $3, by ordinal): its runs from `run_day_totals` and its active
# workflows from the summed `workflow_spans` rows (domain/spans.py
# `active_in`); a one-day range reads that day's run-day row instead.
_PERIODS_SQL = """
SELECT r.ord,
  (SELECT coalesce(sum(t.successful), 0) FROM run_day_totals t
   WHERE t.tenant = $1 AND t.day BETWEEN r.s AND r.e) AS successful,
  (SELECT coalesce(sum(t.failed), 0) FROM run_day_totals t
   WHERE t.tenant = $1 AND t.day BETWEEN r.s AND r.e) AS failed,
  CASE WHEN r.s = r.e THEN
    (SELECT coalesce(sum(w.workflows), 0) FROM workflow_spans w
     WHERE w.tenant = $1 AND w.kind = 3 AND w.y = r.e AND w.x = r.e)
  ELSE
    (SELECT coalesce(sum(w.workflows), 0) FROM workflow_spans w
     WHERE w.tenant = $1 AND w.kind = 0 AND w.y <= r.e)
    - (SELECT coalesce(sum(w.workflows), 0) FROM workflow_spans w
       WHERE w.tenant = $1 AND w.kind = 1 AND w.y < r.s)
    - (SELECT coalesce(sum(w.workflows), 0) FROM workflow_spans w
       WHERE w.tenant = $1 AND w.kind = 2 AND w.y > r.e AND w.x < r.s)
  END AS active
FROM unnest($2::date[], $3::date[]) WITH ORDINALITY AS r(s, e, ord)
ORDER BY r.ord
"""


class ActivationStore:
    """The activation and workflow facts of one tenant, read from the `events` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def summaries(
        self, tenant: str, first: date, last: date, attribute: CohortAttribute | None
    ) -> tuple[ActivationSummary, list[ActivationSegment], int]:
        """The overall summary of [first, last], its breakdown by `attribute`; position.

        The same numbers as domain/activation.py `summarize` and `breakdown` over
        `cohort(...)`, aggregated in PostgreSQL: segments in string order of their
        value, then the signups without one.
        """
        lo, hi = day_start_us(first), day_start_us(last + timedelta(days=1))
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            position = await activity_position(conn)
            # Sorting a quarter's signups per segment needs more than the default.
            await conn.execute("SET LOCAL work_mem = '64MB'")
            # Joining the signups to the range's subscriptions by nested loop costs
            # signups x subscriptions comparisons (seconds on a large tenant); the
            # planner picks it whenever its row estimates of a freshly loaded
            # `user_facts` are low, so the hash join is not left to statistics.
            await conn.execute("SET LOCAL enable_nestloop = off")
            rows = await conn.fetch(
                _SUMMARY_SQL,
                tenant,
                first,
                last,
                attribute.value if attribute else None,
                lo,
                hi + PAID_CONVERSION_WINDOW_US,
                PAID_CONVERSION_WINDOW_US,
                ACTIVATION_WINDOW_US,
                FAST_ACTIVATION_US,
            )
        overall = next((_summary(r) for r in rows if r["overall"]), _EMPTY)
        if attribute is None:
            return overall, [], position
        groups = {r["seg"]: _summary(r) for r in rows if not r["overall"]}
        values: list[str | None] = [*sorted(v for v in groups if v is not None)]
        if None in groups:
            values.append(None)
        return overall, [ActivationSegment(v, groups[v]) for v in values], position

    async def counts(self, tenant: str, first: date, last: date) -> tuple[int, int, int]:
        """(signups, activated, fast activated) of the signups of [first, last]."""
        async with self._pool.acquire() as conn:
            r = await conn.fetchrow(
                _COUNTS_SQL, tenant, first, last, ACTIVATION_WINDOW_US, FAST_ACTIVATION_US
            )
        assert r is not None  # an aggregate without GROUP BY always returns one row
        return int(r["signups"]), int(r["activated"]), int(r["fast"])

    async def workflow_stats(
        self, tenant: str, first: date, last: date, granularity: Granularity
    ) -> tuple[list[WorkflowStats], WorkflowStats, int]:
        """The statistics of each period of [first, last] (clipped) and of the whole range.

        The same numbers as domain/workflows.py `periods` and `stats` over every run,
        read from the `run_day_totals` and `workflow_spans` rollups.
        """
        ranges = [*clipped_periods(first, last, granularity), (first, first, last)]
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            position = await activity_position(conn)
            rows = await conn.fetch(
                _PERIODS_SQL, tenant, [r[1] for r in ranges], [r[2] for r in ranges]
            )
        out = [
            counted_stats(
                start,
                a,
                b,
                successful=int(r["successful"]),
                failed=int(r["failed"]),
                active=int(r["active"]),
            )
            for (start, a, b), r in zip(ranges, rows, strict=True)
        ]
        return out[:-1], out[-1], position

    async def run_tallies(self, tenant: str, first: date, last: date) -> tuple[list[RunTally], int]:
        """The valid-status runs of [first, last] per day and workflow; position."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            position = await activity_position(conn)
            rows = await conn.fetch(_RUN_TALLIES_SQL, tenant, first, last)
        tallies = [
            RunTally(
                day=r["day"],
                workflow_id=r["workflow_id"],
                successful=r["successful"],
                failed=r["failed"],
            )
            for r in rows
        ]
        return tallies, position
