"""The activation and workflows RPCs of MetricsService: proto in, query, proto out."""

from __future__ import annotations

from typing import Any

import grpc

from northstar.metrics.v1 import activation_pb2
from northstar_metrics.adapters.activation_store import ActivationStore
from northstar_metrics.domain.activation import (
    ActivationSummary,
    CohortAttribute,
    TimeToValue,
)
from northstar_metrics.domain.workflows import (
    Granularity,
    WorkflowStats,
)
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import date_range
from northstar_runtime.errors import FieldViolation, InvalidArgument
from northstar_runtime.grpc_server import current_principal

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
        overall, segments, position = await ActivationStore(self.deps.pool).summaries(
            current_principal().tenant, first, last, attribute
        )
        response = activation_pb2.ActivationResponse(
            overall=_summary(overall), log_position=position
        )
        if attribute is not None:
            for segment in segments:
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
        by_period, total, position = await ActivationStore(self.deps.pool).workflow_stats(
            current_principal().tenant, first, last, granularity
        )
        return activation_pb2.WorkflowsResponse(
            periods=[_period(p) for p in by_period], total=_period(total), log_position=position
        )
