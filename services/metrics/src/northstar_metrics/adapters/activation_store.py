"""The activation and workflow facts of a tenant, from `user_facts` and `events`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg
import numpy as np
import numpy.typing as npt

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
    percentile_ranks,
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

# The activation numbers of the signups of [$2, $3] per value of the breakdown column
# ($4: 'plan', 'channel' or NULL for none, one group), in one pass over their
# `user_facts` rows: integer counts, and per stage the durations (us) unordered; the
# order statistics are selected in Python (numpy's partition), cheaper than sorting
# each array in PostgreSQL. A signup converts when its org started a subscription
# within 30 days of it: the range's subscriptions are few, so their start times are
# gathered per org once and hashed on org_id.
_SUMMARY_SQL = """
WITH subs AS (
  SELECT org_id COLLATE "C" AS org_id, array_agg(ts_us) AS starts FROM events
  WHERE tenant = $1 AND event = 'subscription.started' AND org_id <> ''
    AND ts_us >= $5 AND ts_us < $6
  GROUP BY 1
)
SELECT seg, count(*) AS signups,
  count(*) FILTER (WHERE d1 <= $8) AS activated,
  count(*) FILTER (WHERE d2 <= $9) AS fast,
  count(*) FILTER (WHERE eligible) AS eligible,
  count(*) FILTER (WHERE eligible AND EXISTS (
    SELECT FROM unnest(starts) AS t WHERE t >= ts AND t <= ts + $7)) AS paid,
  array_agg(d0) FILTER (WHERE d0 IS NOT NULL) AS d0,
  array_agg(d1) FILTER (WHERE d1 IS NOT NULL) AS d1,
  array_agg(d2) FILTER (WHERE d2 IS NOT NULL) AS d2
FROM (
  SELECT u.signup_ts_us AS ts,
    -- Grouped bytewise (the segments' order is set in Python): faster than a locale.
    (CASE $4::text WHEN 'plan' THEN u.plan WHEN 'channel' THEN u.channel END) COLLATE "C"
      AS seg,
    (u.plan = 'free' AND u.org_id <> '') AS eligible, s.starts,
    u.integration_connected_us - u.signup_ts_us AS d0,
    u.workflow_created_us - u.signup_ts_us AS d1,
    u.workflow_run_succeeded_us - u.signup_ts_us AS d2
  FROM user_facts u LEFT JOIN subs s ON s.org_id = u.org_id COLLATE "C"
  WHERE u.tenant = $1 AND u.signup_day BETWEEN $2::date AND $3::date
) c
GROUP BY seg
"""
_STAGES = ("d0", "d1", "d2")
_NONE: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Group:
    """The counts and the stage durations (us, unordered) of some signups."""

    signups: int
    activated: int
    fast: int
    eligible: int
    paid: int
    durations: tuple[npt.NDArray[np.int64], ...]

    @classmethod
    def of(cls, r: asyncpg.Record) -> _Group:
        return cls(
            r["signups"],
            r["activated"],
            r["fast"],
            r["eligible"],
            r["paid"],
            tuple(np.array(r[k] or (), dtype=np.int64) for k in _STAGES),
        )

    @classmethod
    def union(cls, groups: list[_Group]) -> _Group:
        return cls(
            sum(g.signups for g in groups),
            sum(g.activated for g in groups),
            sum(g.fast for g in groups),
            sum(g.eligible for g in groups),
            sum(g.paid for g in groups),
            tuple(
                np.concatenate([_NONE, *(g.durations[k] for g in groups)])
                for k in range(len(_STAGES))
            ),
        )

    def summary(self) -> ActivationSummary:
        return ActivationSummary(
            signups=self.signups,
            activated=self.activated,
            activation_rate=ratio(self.activated, self.signups),
            integration_connected=_time_to_value(self.durations[0]),
            workflow_created=_time_to_value(self.durations[1]),
            workflow_run_succeeded=_time_to_value(self.durations[2]),
            fast_activated=self.fast,
            signup_to_value_30m=ratio(self.fast, self.signups),
            free_signups_with_org=self.eligible,
            paid_conversions=self.paid,
            paid_conversion_rate=ratio(self.paid, self.eligible),
        )


def _time_to_value(durations_us: npt.NDArray[np.int64]) -> TimeToValue:
    """The count, median and p90 (seconds) of the durations, as domain/activation.py
    `percentile` computes them: numpy's partition places the two order statistics
    around each percentile's index exactly where a sort would."""
    n = len(durations_us)
    if not n:
        return TimeToValue(0, None, None)
    ranks = {q: percentile_ranks(n, q) for q in (0.5, 0.9)}
    ordered = np.partition(durations_us, sorted({k for pair in ranks.values() for k in pair}))
    median, p90 = (
        interpolate(n, q, int(ordered[a]) / US_PER_SECOND, int(ordered[b]) / US_PER_SECOND)
        for q, (a, b) in ranks.items()
    )
    return TimeToValue(n, median, p90)


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
        groups = {r["seg"]: _Group.of(r) for r in rows}
        overall = _Group.union(list(groups.values())).summary()
        if attribute is None:
            return overall, [], position
        values: list[str | None] = [*sorted(v for v in groups if v is not None)]
        if None in groups:
            values.append(None)
        return overall, [ActivationSegment(v, groups[v].summary()) for v in values], position

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
