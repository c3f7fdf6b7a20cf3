"""The activation and workflow facts of a tenant, from `user_facts` and `events`."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg

from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.domain.activation import (
    PAID_CONVERSION_WINDOW_US,
    SignupProgress,
    paid_conversions,
)
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.signups import Signup
from northstar_metrics.domain.time import day_start_us
from northstar_metrics.domain.workflows import RunTally

# The signups whose signup day is in [$2, $3], each with its first stage event at or
# after signup: all kept per user by the projection in `user_facts` (see
# adapters/user_facts.py), read by its (tenant, signup_day) index.
_COHORT_SQL = """
SELECT user_id, signup_ts_us, signup_day, plan, channel, org_id, signup_event_id,
  integration_connected_us, workflow_created_us, workflow_run_succeeded_us
FROM user_facts
WHERE tenant = $1 AND signup_day BETWEEN $2::date AND $3::date
"""

_SUBSCRIPTIONS_SQL = """
SELECT event_id, event, user_id, org_id, ts_us
FROM events
WHERE tenant = $1 AND event = 'subscription.started' AND org_id <> ''
  AND ts_us >= $2 AND ts_us < $3
"""

# Valid-status runs per day offset and workflow: a run without a string workflow_id
# (or with an empty one) is grouped under NULL, counted as a run but as no workflow.
_RUN_TALLIES_SQL = """
SELECT (ts_us - $2) / 86400000000 AS day_offset,
  NULLIF(CASE WHEN jsonb_typeof(properties->'workflow_id') = 'string'
              THEN properties->>'workflow_id' END, '') AS workflow_id,
  count(*) FILTER (WHERE properties->'status' = '"success"'::jsonb) AS successful,
  count(*) FILTER (WHERE properties->'status' = '"failed"'::jsonb) AS failed
FROM events
WHERE tenant = $1 AND event = 'workflow.run' AND ts_us >= $2 AND ts_us < $3
  AND properties->'status' IN ('"success"'::jsonb, '"failed"'::jsonb)
GROUP BY 1, 2
"""


class ActivationStore:
    """The activation and workflow facts of one tenant, read from the `events` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def cohort(
        self, tenant: str, first: date, last: date
    ) -> tuple[list[SignupProgress], int]:
        """The signups of [first, last] with their stage times and conversions; position."""
        lo, hi = day_start_us(first), day_start_us(last + timedelta(days=1))
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            position = await activity_position(conn)
            rows = await conn.fetch(_COHORT_SQL, tenant, first, last)
            starts = await conn.fetch(
                _SUBSCRIPTIONS_SQL, tenant, lo, hi + PAID_CONVERSION_WINDOW_US
            )
        # Positional: the columns are selected in Signup's field order.
        cohort = [Signup(*r[:7]) for r in rows]
        converted = paid_conversions(
            cohort,
            (EventRow(r[0], r[1], r[2], r[3], r[4], {}) for r in starts),
        )
        found = [
            SignupProgress(s, r[7], r[8], r[9], s.user_id in converted)
            for s, r in zip(cohort, rows, strict=True)
        ]
        return found, position

    async def run_tallies(self, tenant: str, first: date, last: date) -> tuple[list[RunTally], int]:
        """The valid-status runs of [first, last] per day and workflow; position."""
        lo, hi = day_start_us(first), day_start_us(last + timedelta(days=1))
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            position = await activity_position(conn)
            rows = await conn.fetch(_RUN_TALLIES_SQL, tenant, lo, hi)
        tallies = [
            RunTally(
                day=first + timedelta(days=r["day_offset"]),
                workflow_id=r["workflow_id"],
                successful=r["successful"],
                failed=r["failed"],
            )
            for r in rows
        ]
        return tallies, position
