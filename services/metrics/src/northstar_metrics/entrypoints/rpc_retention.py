"""The retention RPCs of MetricsService: proto in, query, proto out.

The query's end date (`as_of_date`) defaults to today, UTC, at the time of the request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc

from northstar.metrics.v1 import retention_pb2
from northstar_metrics.adapters.retention_store import RetentionStore
from northstar_metrics.domain.retention import (
    CohortAttribute,
    CohortGranularity,
    CohortQuery,
    CohortSegment,
    RetentionCell,
    RetentionMode,
    retention_matrix,
    retention_trend,
)
from northstar_metrics.domain.time import DAY_FORMAT, iso_day
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import date_range, rejected
from northstar_runtime.errors import FieldViolation, InvalidArgument
from northstar_runtime.grpc_server import current_principal

MAX_PERIODS = 1000
MAX_TREND_PERIOD = 3660

_GRANULARITY = {
    retention_pb2.COHORT_GRANULARITY_UNSPECIFIED: CohortGranularity.DAY,
    retention_pb2.COHORT_GRANULARITY_DAY: CohortGranularity.DAY,
    retention_pb2.COHORT_GRANULARITY_WEEK: CohortGranularity.WEEK,
    retention_pb2.COHORT_GRANULARITY_MONTH: CohortGranularity.MONTH,
}
_GRANULARITY_PROTO = {
    CohortGranularity.DAY: retention_pb2.COHORT_GRANULARITY_DAY,
    CohortGranularity.WEEK: retention_pb2.COHORT_GRANULARITY_WEEK,
    CohortGranularity.MONTH: retention_pb2.COHORT_GRANULARITY_MONTH,
}
_MODE = {
    retention_pb2.RETENTION_MODE_UNSPECIFIED: RetentionMode.ON_DAY,
    retention_pb2.RETENTION_MODE_ON_DAY: RetentionMode.ON_DAY,
    retention_pb2.RETENTION_MODE_ON_OR_AFTER: RetentionMode.ON_OR_AFTER,
}
_ATTRIBUTE = {
    retention_pb2.COHORT_ATTRIBUTE_PLAN: CohortAttribute.PLAN,
    retention_pb2.COHORT_ATTRIBUTE_CHANNEL: CohortAttribute.CHANNEL,
}


def _cohort_query(
    request: retention_pb2.RetentionRequest | retention_pb2.RetentionTrendRequest,
    violations: list[FieldViolation],
) -> CohortQuery | None:
    """The query's cohorts, mode, segment and end date; problems go to `violations`."""
    first = last = None
    try:
        first, last = date_range(request.from_date, request.to_date)
    except InvalidArgument as e:
        violations.extend(e.violations)
    granularity = _GRANULARITY.get(request.granularity)
    if granularity is None:
        violations.append(
            FieldViolation("granularity", "must be one of the CohortGranularity values")
        )
    mode = _MODE.get(request.mode)
    if mode is None:
        violations.append(FieldViolation("mode", "must be one of the RetentionMode values"))
    segment = None
    if request.HasField("segment"):
        attribute = _ATTRIBUTE.get(request.segment.attribute)
        if attribute is None:
            violations.append(
                FieldViolation("segment.attribute", "must be COHORT_ATTRIBUTE_PLAN or _CHANNEL")
            )
        if not request.segment.value:
            violations.append(FieldViolation("segment.value", "must not be empty"))
        if attribute is not None and request.segment.value:
            segment = CohortSegment(attribute, request.segment.value)
    as_of = datetime.now(UTC).date()
    if request.as_of_date:
        try:
            as_of = iso_day(request.as_of_date)
        except ValueError:
            violations.append(
                FieldViolation("as_of_date", f"must be {DAY_FORMAT}, got {request.as_of_date!r}")
            )
    if first is None or last is None or granularity is None or mode is None:
        return None
    return CohortQuery(granularity, first, last, mode, segment, as_of)


def _reject(violations: list[FieldViolation]) -> InvalidArgument:
    return rejected(violations, "INVALID_RETENTION_QUERY")


def _cell(cell: RetentionCell) -> retention_pb2.RetentionCell:
    out = retention_pb2.RetentionCell(
        period=cell.period, retained=cell.retained, cohort_size=cell.cohort_size
    )
    if cell.retention is not None:
        out.retention = cell.retention
    return out


class RetentionRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    async def Retention(  # noqa: N802 - gRPC method name
        self,
        request: retention_pb2.RetentionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> retention_pb2.RetentionResponse:
        """The retention matrix: per cohort, its size and the cells of its elapsed periods."""
        violations: list[FieldViolation] = []
        query = _cohort_query(request, violations)
        if not 1 <= request.periods <= MAX_PERIODS:
            violations.append(FieldViolation("periods", f"must be between 1 and {MAX_PERIODS}"))
        if violations or query is None:
            raise _reject(violations)
        store = RetentionStore(self.deps.pool)
        counts, position = await store.cohort_counts(
            current_principal().tenant, query, range(request.periods)
        )
        matrix = retention_matrix(query, request.periods, counts)
        return retention_pb2.RetentionResponse(
            granularity=_GRANULARITY_PROTO[query.granularity],
            as_of_date=query.as_of.isoformat(),
            cohorts=[
                retention_pb2.RetentionCohort(
                    cohort_start=row.start.isoformat(),
                    cohort_end=row.end.isoformat(),
                    size=row.size,
                    cells=[_cell(c) for c in row.cells],
                )
                for row in matrix.cohorts
            ],
            combined=[_cell(c) for c in matrix.combined],
            log_position=position,
        )

    async def RetentionTrend(  # noqa: N802 - gRPC method name
        self,
        request: retention_pb2.RetentionTrendRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> retention_pb2.RetentionTrendResponse:
        """retention(cohort, N) for a fixed N across the cohorts of the range."""
        violations: list[FieldViolation] = []
        query = _cohort_query(request, violations)
        if request.period > MAX_TREND_PERIOD:
            violations.append(FieldViolation("period", f"must be at most {MAX_TREND_PERIOD}"))
        if violations or query is None:
            raise _reject(violations)
        n = request.period
        store = RetentionStore(self.deps.pool)
        counts, position = await store.cohort_counts(
            current_principal().tenant, query, range(n, n + 1)
        )
        trend = retention_trend(query, n, counts)
        response = retention_pb2.RetentionTrendResponse(
            granularity=_GRANULARITY_PROTO[query.granularity],
            period=n,
            as_of_date=query.as_of.isoformat(),
            log_position=position,
        )
        for point in trend.points:
            out = response.points.add(
                cohort_start=point.start.isoformat(),
                cohort_end=point.end.isoformat(),
                size=point.size,
            )
            if point.cell is not None:
                out.cell.CopyFrom(_cell(point.cell))
        if trend.combined is not None:
            response.combined.CopyFrom(_cell(trend.combined))
        return response
