"""The funnel RPCs of MetricsService: proto in, query, proto out."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import grpc

from northstar.metrics.v1 import funnel_pb2
from northstar_metrics.adapters.funnel_store import FunnelStore
from northstar_metrics.domain.filters import matcher_from_proto, matcher_violations
from northstar_metrics.domain.funnel import (
    DEFAULT_WINDOW_US,
    MAX_STEPS,
    US,
    Exclusion,
    FunnelQuery,
    FunnelResult,
    HistogramSpec,
)
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import date_range, rejected
from northstar_runtime.errors import FieldViolation
from northstar_runtime.grpc_server import current_principal

MAX_WINDOW_SECONDS = 366 * 86_400
MAX_BUCKETS = 100
DEFAULT_BUCKETS = 10


def _step_pair(from_step: int, to_step: int, steps: int, field: str) -> list[FieldViolation]:
    if not 1 <= from_step < to_step <= steps:
        return [
            FieldViolation(
                field, f"needs 1 <= from_step < to_step <= {steps}, got {from_step}, {to_step}"
            )
        ]
    return []


def _histogram_spec(
    request: funnel_pb2.FunnelRequest, steps: int
) -> tuple[HistogramSpec | None, list[FieldViolation]]:
    if not request.HasField("histogram"):
        return None, []
    h = request.histogram
    violations = _step_pair(h.from_step, h.to_step, steps, "histogram.to_step")
    edges = list(h.bucket_edges_seconds)
    edges_us: tuple[int, ...] = ()
    if edges:
        if h.bucket_count:
            violations.append(
                FieldViolation("histogram.bucket_count", "give either bucket edges or a count")
            )
        if not 2 <= len(edges) <= MAX_BUCKETS + 1:
            violations.append(
                FieldViolation(
                    "histogram.bucket_edges_seconds", f"needs 2 to {MAX_BUCKETS + 1} edges"
                )
            )
        elif not all(math.isfinite(e) and 0 <= e <= 1e12 for e in edges):
            violations.append(
                FieldViolation(
                    "histogram.bucket_edges_seconds", "edges must be finite and non-negative"
                )
            )
        else:
            edges_us = tuple(round(e * US) for e in edges)
            if any(a >= b for a, b in pairwise(edges_us)):
                violations.append(
                    FieldViolation(
                        "histogram.bucket_edges_seconds",
                        "edges must increase strictly (to the microsecond)",
                    )
                )
    elif h.bucket_count > MAX_BUCKETS:
        violations.append(
            FieldViolation("histogram.bucket_count", f"at most {MAX_BUCKETS} buckets")
        )
    spec = HistogramSpec(h.from_step, h.to_step, edges_us, h.bucket_count or DEFAULT_BUCKETS)
    return spec, violations


def funnel_query(request: funnel_pb2.FunnelRequest) -> FunnelQuery:
    """The domain query of a request, or INVALID_ARGUMENT naming every bad field."""
    first, last = date_range(request.from_date, request.to_date)
    n = len(request.steps)
    violations: list[FieldViolation] = []
    if not 2 <= n <= MAX_STEPS:
        violations.append(FieldViolation("steps", f"a funnel has 2 to {MAX_STEPS} steps, got {n}"))
    for i, step in enumerate(request.steps):
        violations.extend(matcher_violations(step, f"steps[{i}]", require_event=True))
    window_us = DEFAULT_WINDOW_US
    if request.HasField("window_seconds"):
        if not 0 <= request.window_seconds <= MAX_WINDOW_SECONDS:
            violations.append(
                FieldViolation(
                    "window_seconds", f"must be between 0 and {MAX_WINDOW_SECONDS} seconds"
                )
            )
        window_us = request.window_seconds * US
    for i, x in enumerate(request.exclusions):
        violations.extend(matcher_violations(x.event, f"exclusions[{i}].event", require_event=True))
        violations.extend(_step_pair(x.from_step, x.to_step, n, f"exclusions[{i}].to_step"))
    histogram, histogram_violations = _histogram_spec(request, n)
    violations.extend(histogram_violations)
    if violations:
        raise rejected(violations, "INVALID_FUNNEL")
    return FunnelQuery(
        steps=tuple(matcher_from_proto(s, f"steps[{i}]") for i, s in enumerate(request.steps)),
        entry_from=first,
        entry_to=last,
        window_us=window_us,
        breakdown_property=request.breakdown_property,
        exclusions=tuple(
            Exclusion(matcher_from_proto(x.event, f"exclusions[{i}].event"), x.from_step, x.to_step)
            for i, x in enumerate(request.exclusions)
        ),
        histogram=histogram,
    )


def _fill(target: funnel_pb2.FunnelResult, result: FunnelResult) -> None:
    for s in result.steps:
        row = target.steps.add(step=s.step, event=s.event, users=s.users)
        if s.conversion_from_previous is not None:
            row.conversion_from_previous = s.conversion_from_previous
        if s.conversion_from_first is not None:
            row.conversion_from_first = s.conversion_from_first
        if s.median_seconds_from_first is not None:
            row.median_seconds_from_first = s.median_seconds_from_first
    h = result.histogram
    if h is not None:
        target.histogram.from_step = h.from_step
        target.histogram.to_step = h.to_step
        target.histogram.below_count = h.below
        target.histogram.above_count = h.above
        target.histogram.users = h.users
        for b in h.buckets:
            target.histogram.buckets.add(
                start_seconds=b.start_us / US, end_seconds=b.end_us / US, users=b.users
            )


class FunnelRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    async def Funnel(  # noqa: N802 - gRPC method name
        self, request: funnel_pb2.FunnelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> funnel_pb2.FunnelResponse:
        """Ordered-step conversion with a window, breakdown, exclusions and a histogram."""
        query = funnel_query(request)
        tenant = current_principal().tenant
        # Read the position first: the answer then covers at least everything up to it.
        position = await self.deps.events.position()
        store = FunnelStore(self.deps.pool, self.deps.columnar)
        answer = await store.funnel(tenant, query, position=position)
        response = funnel_pb2.FunnelResponse(
            window_seconds=query.window_us // US, log_position=position
        )
        _fill(response.overall, answer.overall)
        for b in answer.breakdowns:
            _fill(
                response.breakdowns.add(
                    breakdown_value=b.value, property_missing=b.property_missing
                ).result,
                b.result,
            )
        return response
