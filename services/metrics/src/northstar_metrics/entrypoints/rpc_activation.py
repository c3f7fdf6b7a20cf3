"""The activation and workflows RPCs of MetricsService: proto in, query, proto out."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import asyncpg
import grpc

from northstar.metrics.v1 import activation_pb2
from northstar_metrics.adapters.event_store import ACTIVITY_POSITION_SQL
from northstar_metrics.domain.activation import (
    PAID_CONVERSION_WINDOW_US,
    ActivationSummary,
    CohortAttribute,
    SignupProgress,
    TimeToValue,
    breakdown,
    paid_conversions,
    summarize,
)
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.signups import Signup
from northstar_metrics.domain.time import US_PER_DAY, day_of
from northstar_metrics.domain.workflows import (
    Granularity,
    RunTally,
    WorkflowStats,
    periods,
    stats,
)
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import date_range
from northstar_runtime.db import Connection
from northstar_runtime.errors import FieldViolation, InvalidArgument
from northstar_runtime.grpc_server import current_principal

_EPOCH = date(1970, 1, 1)

_BREAKDOWNS = {
    activation_pb2.ACTIVATION_BREAKDOWN_UNSPECIFIED: None,
    activation_pb2.ACTIVATION_BREAKDOWN_PLAN: CohortAttribute.PLAN,
    activation_pb2.ACTIVATION_BREAKDOWN_CHANNEL: CohortAttribute.CHANNEL,
}
_GRANULARITIES = {
    activation_pb2.WORKFLOWS_GRANULARITY_UNSPECIFIED: Granularity.DAY,
    activation_pb2.WORKFLOWS_GRANULARITY_DAY: Granularity.DAY,
    activation_pb2.WORKFLOWS_GRANULARITY_WEEK: Granularity.WEEK,
    activation_pb2.WORKFLOWS_GRANULARITY_MONTH: Granularity.MONTH,
}

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


async def _position(conn: Connection) -> int:
    """The log position the read model reached, 0 before the projector's first start."""
    # The projector creates its checkpoint table when it starts, which can come just
    # after the service starts serving; until then nothing has been projected.
    if await conn.fetchval("SELECT to_regclass('projection_checkpoints')") is None:
        return 0
    return int(await conn.fetchval(ACTIVITY_POSITION_SQL))


def _start_us(day: date) -> int:
    return (day - _EPOCH).days * US_PER_DAY


class _ActivationReadModel:
    """The activation and workflow facts of one tenant, read from the `events` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def cohort(
        self, tenant: str, first: date, last: date
    ) -> tuple[list[SignupProgress], int]:
        """The signups of [first, last] with their stage times and conversions; position."""
        lo, hi = _start_us(first), _start_us(last + timedelta(days=1))
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            # The plan's cost estimate is high (one probe per signup), which triggers JIT
            # compilation that takes longer than the query itself.
            await conn.execute("SET LOCAL jit = off")
            position = await _position(conn)
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
        lo, hi = _start_us(first), _start_us(last + timedelta(days=1))
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            position = await _position(conn)
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


def _stage(value: TimeToValue) -> activation_pb2.TimeToValueStage:
    stage = activation_pb2.TimeToValueStage(reached=value.reached)
    if value.median_seconds is not None:
        stage.median_seconds = value.median_seconds
    if value.p90_seconds is not None:
        stage.p90_seconds = value.p90_seconds
    return stage


def _summary(s: ActivationSummary) -> activation_pb2.ActivationSummary:
    out = activation_pb2.ActivationSummary(
        signups=s.signups,
        activated=s.activated,
        integration_connected=_stage(s.integration_connected),
        workflow_created=_stage(s.workflow_created),
        workflow_run_succeeded=_stage(s.workflow_run_succeeded),
        fast_activated=s.fast_activated,
        free_signups_with_org=s.free_signups_with_org,
        paid_conversions=s.paid_conversions,
    )
    if s.activation_rate is not None:
        out.activation_rate = s.activation_rate
    if s.signup_to_value_30m is not None:
        out.signup_to_value_30m = s.signup_to_value_30m
    if s.paid_conversion_rate is not None:
        out.paid_conversion_rate = s.paid_conversion_rate
    return out


def _period(s: WorkflowStats) -> activation_pb2.WorkflowsPeriod:
    out = activation_pb2.WorkflowsPeriod(
        period_start=s.period_start.isoformat(),
        from_date=s.first.isoformat(),
        to_date=s.last.isoformat(),
        runs=s.runs,
        successful_runs=s.successful_runs,
        failed_runs=s.failed_runs,
        active_workflows=s.active_workflows,
    )
    if s.error_rate is not None:
        out.error_rate = s.error_rate
    if s.runs_per_active_workflow is not None:
        out.runs_per_active_workflow = s.runs_per_active_workflow
    return out


class ActivationRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    async def Activation(  # noqa: N802 - gRPC method name
        self,
        request: activation_pb2.ActivationRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> activation_pb2.ActivationResponse:
        """Activation, TTFV stages, fast activation and paid conversion of a signup range."""
        first, last = date_range(request.from_date, request.to_date)
        if request.breakdown not in _BREAKDOWNS:
            raise InvalidArgument(
                f"unknown breakdown {request.breakdown}",
                reason="UNKNOWN_BREAKDOWN",
                violations=[
                    FieldViolation("breakdown", "must be one of the ActivationBreakdown values")
                ],
            )
        attribute = _BREAKDOWNS[request.breakdown]
        cohort, position = await _ActivationReadModel(self.deps.pool).cohort(
            current_principal().tenant, first, last
        )
        response = activation_pb2.ActivationResponse(
            overall=_summary(summarize(cohort)), log_position=position
        )
        if attribute is not None:
            for segment in breakdown(cohort, attribute):
                row = response.segments.add(summary=_summary(segment.summary))
                if segment.value is not None:
                    row.value = segment.value
        return response

    async def Workflows(  # noqa: N802 - gRPC method name
        self,
        request: activation_pb2.WorkflowsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> activation_pb2.WorkflowsResponse:
        """Runs, successes, failures, error rate and active workflows per period."""
        first, last = date_range(request.from_date, request.to_date)
        granularity = _GRANULARITIES.get(request.granularity)
        if granularity is None:
            raise InvalidArgument(
                f"unknown granularity {request.granularity}",
                reason="UNKNOWN_GRANULARITY",
                violations=[
                    FieldViolation("granularity", "must be one of the WorkflowsGranularity values")
                ],
            )
        tallies, position = await _ActivationReadModel(self.deps.pool).run_tallies(
            current_principal().tenant, first, last
        )
        return activation_pb2.WorkflowsResponse(
            periods=[_period(p) for p in periods(tallies, first, last, granularity)],
            total=_period(stats(tallies, first, first, last)),
            log_position=position,
        )
