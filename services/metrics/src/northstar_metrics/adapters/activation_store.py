"""The activation and workflow facts of a tenant, read from the `events` table."""

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
from northstar_metrics.domain.time import day_of, day_start_us
from northstar_metrics.domain.workflows import RunTally

# The signups whose earliest user.signup (timestamp, then event_id in code point
# order: COLLATE "C") lies in [$2, $3), each with its first stage event at or after
# signup. Both lookups walk events_by_user_time for one user from a timestamp on, so
# the cost follows the signups of the range, not the size of the log.
_COHORT_SQL = """
WITH cohort AS (
  SELECT c.user_id, c.event_id, c.ts_us, c.org_id,
    CASE WHEN jsonb_typeof(c.properties->'plan') = 'string'
         THEN c.properties->>'plan' END AS plan,
    CASE WHEN jsonb_typeof(c.properties->'channel') = 'string'
         THEN c.properties->>'channel' END AS channel
  FROM events c
  WHERE c.tenant = $1 AND c.event = 'user.signup' AND c.user_id <> ''
    AND c.ts_us >= $2 AND c.ts_us < $3
    AND NOT EXISTS (
      SELECT 1 FROM events p
      WHERE p.tenant = $1 AND p.user_id = c.user_id AND p.user_id <> ''
        AND p.event = 'user.signup' AND p.ts_us <= c.ts_us
        AND (p.ts_us < c.ts_us OR p.event_id COLLATE "C" < c.event_id COLLATE "C"))
)
SELECT s.user_id, s.event_id, s.ts_us, s.org_id, s.plan, s.channel,
  (SELECT e.ts_us FROM events e
    WHERE e.tenant = $1 AND e.user_id = s.user_id AND e.user_id <> ''
      AND e.ts_us >= s.ts_us AND e.event = 'integration.connected'
    ORDER BY e.ts_us LIMIT 1) AS integration_connected_us,
  (SELECT e.ts_us FROM events e
    WHERE e.tenant = $1 AND e.user_id = s.user_id AND e.user_id <> ''
      AND e.ts_us >= s.ts_us AND e.event = 'workflow.created'
    ORDER BY e.ts_us LIMIT 1) AS workflow_created_us,
  (SELECT e.ts_us FROM events e
    WHERE e.tenant = $1 AND e.user_id = s.user_id AND e.user_id <> ''
      AND e.ts_us >= s.ts_us AND e.event = 'workflow.run'
      AND e.properties->'status' = '"success"'::jsonb
    ORDER BY e.ts_us LIMIT 1) AS workflow_run_succeeded_us
FROM cohort s
"""

_SUBSCRIPTIONS_SQL = """
SELECT event_id, event, user_id, org_id, ts_us
FROM events
WHERE tenant = $1 AND event = 'subscription.started' AND org_id <> ''
  AND ts_us >= $2 AND ts_us < $3
"""

# Valid-status runs per day and workflow, from the per-day rollup: a run without a
# string workflow_id (or with an empty one) is kept under '' and read as NULL,
# counted as a run but as no workflow.
_RUN_TALLIES_SQL = """
SELECT day, NULLIF(workflow_id, '') AS workflow_id, successful, failed
FROM run_days
WHERE tenant = $1 AND day >= $2 AND day <= $3
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
            # The plan's cost estimate is high (one probe per signup), which triggers JIT
            # compilation that takes longer than the query itself.
            await conn.execute("SET LOCAL jit = off")
            position = await activity_position(conn)
            rows = await conn.fetch(_COHORT_SQL, tenant, lo, hi)
            starts = await conn.fetch(
                _SUBSCRIPTIONS_SQL, tenant, lo, hi + PAID_CONVERSION_WINDOW_US
            )
        cohort = [
            Signup(
                user_id=r["user_id"],
                ts_us=r["ts_us"],
                day=day_of(r["ts_us"]),
                plan=r["plan"],
                channel=r["channel"],
                org_id=r["org_id"],
                event_id=r["event_id"],
            )
            for r in rows
        ]
        converted = paid_conversions(
            cohort,
            (EventRow(r[0], r[1], r[2], r[3], r[4], {}) for r in starts),
        )
        found = [
            SignupProgress(
                signup=s,
                integration_connected_us=r["integration_connected_us"],
                workflow_created_us=r["workflow_created_us"],
                workflow_run_succeeded_us=r["workflow_run_succeeded_us"],
                converted=s.user_id in converted,
            )
            for s, r in zip(cohort, rows, strict=True)
        ]
        return found, position

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
