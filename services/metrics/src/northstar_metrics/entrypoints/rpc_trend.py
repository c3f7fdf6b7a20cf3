"""The trend RPC of MetricsService: proto in, query, proto out."""

from __future__ import annotations

from typing import Any

import grpc

from northstar.metrics.v1 import trend_pb2
from northstar_metrics.adapters.trend_store import TrendStore
from northstar_metrics.domain.filters import filters_from_proto
from northstar_metrics.domain.trend import (
    Interval,
    Measure,
    SeriesKind,
    TrendQuery,
)
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import MAX_RANGE_DAYS, date_range, invalid
from northstar_runtime.grpc_server import current_principal

# Hour buckets over more than a leap year are more points than any chart can show.
MAX_HOUR_RANGE_DAYS = 366

_INTERVALS = {
    trend_pb2.TREND_INTERVAL_UNSPECIFIED: Interval.DAY,
    trend_pb2.TREND_INTERVAL_HOUR: Interval.HOUR,
    trend_pb2.TREND_INTERVAL_DAY: Interval.DAY,
    trend_pb2.TREND_INTERVAL_WEEK: Interval.WEEK,
    trend_pb2.TREND_INTERVAL_MONTH: Interval.MONTH,
}
_INTERVAL_PROTO = {
    Interval.HOUR: trend_pb2.TREND_INTERVAL_HOUR,
    Interval.DAY: trend_pb2.TREND_INTERVAL_DAY,
    Interval.WEEK: trend_pb2.TREND_INTERVAL_WEEK,
    Interval.MONTH: trend_pb2.TREND_INTERVAL_MONTH,
}
_MEASURES = {
    trend_pb2.TREND_MEASURE_UNSPECIFIED: Measure.EVENT_COUNT,
    trend_pb2.TREND_MEASURE_EVENT_COUNT: Measure.EVENT_COUNT,
    trend_pb2.TREND_MEASURE_UNIQUE_USERS: Measure.UNIQUE_USERS,
    trend_pb2.TREND_MEASURE_SUM: Measure.SUM,
    trend_pb2.TREND_MEASURE_AVERAGE: Measure.AVERAGE,
    trend_pb2.TREND_MEASURE_MIN: Measure.MIN,
    trend_pb2.TREND_MEASURE_MAX: Measure.MAX,
}
_MEASURE_PROTO = {
    Measure.EVENT_COUNT: trend_pb2.TREND_MEASURE_EVENT_COUNT,
    Measure.UNIQUE_USERS: trend_pb2.TREND_MEASURE_UNIQUE_USERS,
    Measure.SUM: trend_pb2.TREND_MEASURE_SUM,
    Measure.AVERAGE: trend_pb2.TREND_MEASURE_AVERAGE,
    Measure.MIN: trend_pb2.TREND_MEASURE_MIN,
    Measure.MAX: trend_pb2.TREND_MEASURE_MAX,
}
_KIND_PROTO = {
    SeriesKind.ALL: trend_pb2.TREND_SERIES_KIND_ALL,
    SeriesKind.VALUE: trend_pb2.TREND_SERIES_KIND_VALUE,
    SeriesKind.OTHER: trend_pb2.TREND_SERIES_KIND_OTHER,
    SeriesKind.NONE: trend_pb2.TREND_SERIES_KIND_NONE,
}


def _query(request: trend_pb2.TrendRequest) -> TrendQuery:
    """The domain query of a request, or INVALID_ARGUMENT naming the field."""
    interval = _INTERVALS.get(request.interval)
    if interval is None:
        raise invalid("interval", "must be one of the TrendInterval values", "UNKNOWN_INTERVAL")
    measure = _MEASURES.get(request.measure)
    if measure is None:
        raise invalid("measure", "must be one of the TrendMeasure values", "UNKNOWN_MEASURE")
    if measure.numeric and not request.property:
        raise invalid("property", "is required for SUM, AVERAGE, MIN and MAX", "MISSING_PROPERTY")
    if not measure.numeric and request.property:
        raise invalid("property", "is only for SUM, AVERAGE, MIN and MAX", "UNEXPECTED_PROPERTY")
    max_days = MAX_HOUR_RANGE_DAYS if interval is Interval.HOUR else MAX_RANGE_DAYS
    first, last = date_range(request.from_date, request.to_date, max_days=max_days)
    return TrendQuery(
        first=first,
        last=last,
        interval=interval,
        measure=measure,
        event=request.event or None,
        property=request.property or None,
        breakdown=request.breakdown_property or None,
    )


def _value(value: float | None) -> dict[str, float]:
    return {} if value is None else {"value": value}


class TrendRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    async def Trend(  # noqa: N802 - gRPC method name
        self, request: trend_pb2.TrendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> trend_pb2.TrendResponse:
        """A measure per hour, day, week or month, optionally broken down by a property."""
        query = _query(request)
        filters = filters_from_proto(request.filters)  # INVALID_ARGUMENT naming filters[i]
        tenant = current_principal().tenant
        # Read the position first: the events read next include at least everything
        # up to it, so a client waiting for its own writes can trust log_position.
        position = await self.deps.events.position()
        store = TrendStore(self.deps.pool, self.deps.events, self.deps.columnar)
        result = await store.trend(tenant, query, filters, position=position)
        response = trend_pb2.TrendResponse(
            interval=_INTERVAL_PROTO[query.interval],
            measure=_MEASURE_PROTO[query.measure],
            log_position=position,
        )
        for b in result.buckets:
            response.buckets.add(
                start=b.label, from_date=b.first.isoformat(), to_date=b.last.isoformat()
            )
        for s in result.series:
            series = response.series.add(kind=_KIND_PROTO[s.kind], breakdown_value=s.value)
            for b, point in zip(result.buckets, s.points, strict=True):
                series.points.add(bucket=b.label, **_value(point))
            if s.total is not None:
                series.total = s.total
        return response
