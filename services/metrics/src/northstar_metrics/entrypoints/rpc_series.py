"""The series RPCs of MetricsService: proto in, query, proto out."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import grpc

from northstar.metrics.v1 import series_pb2
from northstar_metrics.adapters.series_store import SeriesStore
from northstar_metrics.domain import anomalies, forecast
from northstar_metrics.domain.daily_series import (
    DailySeries,
    SeriesKind,
    SeriesSpec,
    days_between,
)
from northstar_metrics.domain.time import DAY_FORMAT, iso_day
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import date_range, invalid
from northstar_runtime.grpc_server import current_principal

_KINDS = {
    series_pb2.DAILY_SERIES_DAU: SeriesKind.DAU,
    series_pb2.DAILY_SERIES_SIGNUPS: SeriesKind.SIGNUPS,
    series_pb2.DAILY_SERIES_WORKFLOW_RUNS: SeriesKind.WORKFLOW_RUNS,
    series_pb2.DAILY_SERIES_ERROR_RATE: SeriesKind.ERROR_RATE,
    series_pb2.DAILY_SERIES_MRR: SeriesKind.MRR,
    series_pb2.DAILY_SERIES_EVENT_COUNT: SeriesKind.EVENT_COUNT,
}
_DIRECTIONS = {
    anomalies.Direction.SPIKE: series_pb2.ANOMALY_DIRECTION_SPIKE,
    anomalies.Direction.DROP: series_pb2.ANOMALY_DIRECTION_DROP,
}
_METHODS = {
    forecast.Method.CONSTANT: series_pb2.FORECAST_METHOD_CONSTANT,
    forecast.Method.LINEAR_TREND: series_pb2.FORECAST_METHOD_LINEAR_TREND,
    forecast.Method.LINEAR_TREND_WEEKLY: series_pb2.FORECAST_METHOD_LINEAR_TREND_WEEKLY,
}
MAX_EVENT_NAME_CHARS = 200


def _spec(selector: series_pb2.SeriesSelector) -> SeriesSpec:
    kind = _KINDS.get(selector.series)
    if kind is None:
        raise invalid("selector.series", "must name a DailySeries", "UNKNOWN_SERIES")
    name = selector.event_name
    if kind is SeriesKind.EVENT_COUNT:
        if not 1 <= len(name) <= MAX_EVENT_NAME_CHARS:
            raise invalid(
                "selector.event_name",
                f"must be 1 to {MAX_EVENT_NAME_CHARS} characters for EVENT_COUNT",
                "INVALID_EVENT_NAME",
            )
    elif name:
        raise invalid(
            "selector.event_name", "is only for DAILY_SERIES_EVENT_COUNT", "INVALID_EVENT_NAME"
        )
    return SeriesSpec(kind, name)


def _positive(field: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise invalid(field, "must be a finite number > 0", "INVALID_THRESHOLD")


def _bounded(field: str, value: int, default: int, low: int, high: int) -> int:
    if value == 0:
        return default
    if not low <= value <= high:
        raise invalid(field, f"must be {low} to {high} (0: {default})", "OUT_OF_RANGE")
    return value


def _day(field: str, text: str) -> date:
    try:
        return iso_day(text)
    except ValueError:
        raise invalid(field, f"must be {DAY_FORMAT}, got {text!r}", "INVALID_DATE") from None


def _optional(value: float | None) -> dict[str, float]:
    return {} if value is None else {"value": value}


class SeriesRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    def _store(self) -> SeriesStore:
        return SeriesStore(self.deps.pool, self.deps.events, self.deps.read_model)

    async def Anomalies(  # noqa: N802 - gRPC method name
        self, request: series_pb2.AnomaliesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> series_pb2.AnomaliesResponse:
        """Anomalous days of a daily series by the z-score and relative rules."""
        spec = _spec(request.selector)
        first, last = date_range(request.from_date, request.to_date)
        z_threshold = anomalies.DEFAULT_Z_THRESHOLD
        if request.HasField("z_threshold"):
            _positive("z_threshold", request.z_threshold)
            z_threshold = anomalies.threshold(request.z_threshold)
        relative = None
        if request.HasField("relative_threshold"):
            _positive("relative_threshold", request.relative_threshold)
            relative = anomalies.threshold(request.relative_threshold)
        tenant = current_principal().tenant
        # Read the position first: the data read after it is at least that fresh.
        position = await self.deps.events.position()
        store = self._store()
        span = await store.span(tenant)
        series = await store.series(
            tenant, spec, first - timedelta(days=anomalies.BASELINE_DAYS), last, span
        )
        found = anomalies.scan(
            series, first, last, z_threshold=z_threshold, relative_threshold=relative
        )
        response = series_pb2.AnomaliesResponse(
            z_threshold=float(z_threshold),
            days_judged=found.days_judged,
            log_position=position,
        )
        if relative is not None:
            response.relative_threshold = float(relative)
        if span is not None:
            response.series_start_date = span.first.isoformat()
        for a in found.anomalies:
            item = response.anomalies.add(
                date=a.day.isoformat(),
                value=float(a.value),
                baseline_mean=float(a.mean),
                baseline_stddev=a.stddev,
                baseline_days=a.baseline_days,
                deviation=float(a.deviation),
                z=a.z,
                infinite_z=a.infinite_z,
                direction=_DIRECTIONS[a.direction],
            )
            if a.relative_deviation is not None:
                item.relative_deviation = a.relative_deviation
            if a.z_rule:
                item.rules.append(series_pb2.ANOMALY_RULE_Z_SCORE)
            if a.relative_rule:
                item.rules.append(series_pb2.ANOMALY_RULE_RELATIVE)
        return response

    async def Forecast(  # noqa: N802 - gRPC method name
        self, request: series_pb2.ForecastRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> series_pb2.ForecastResponse:
        """The next days of a daily series with 80 % and 95 % intervals, and past accuracy."""
        spec = _spec(request.selector)
        horizon = _bounded(
            "horizon_days",
            request.horizon_days,
            forecast.DEFAULT_HORIZON_DAYS,
            1,
            forecast.MAX_HORIZON_DAYS,
        )
        fit_days = _bounded(
            "fit_days",
            request.fit_days,
            forecast.DEFAULT_FIT_DAYS,
            forecast.MIN_FIT_DAYS,
            forecast.MAX_FIT_DAYS,
        )
        as_of = _day("as_of_date", request.as_of_date) if request.HasField("as_of_date") else None
        tenant = current_principal().tenant
        position = await self.deps.events.position()
        store = self._store()
        span = await store.span(tenant)
        response = series_pb2.ForecastResponse(log_position=position)
        if as_of is None:
            if span is None:
                return response
            as_of = span.last
        response.as_of_date = as_of.isoformat()
        history_start = as_of - timedelta(days=forecast.BACKTEST_ORIGINS + fit_days - 1)
        series = await store.series(tenant, spec, history_start, as_of, span)
        _fill_forecast(response, series, as_of, fit_days, horizon)
        return response


def _fill_forecast(
    response: series_pb2.ForecastResponse,
    series: DailySeries,
    as_of: date,
    fit_days: int,
    horizon: int,
) -> None:
    for d in days_between(as_of - timedelta(days=fit_days - 1), as_of):
        value = series.value(d)
        response.history.add(
            date=d.isoformat(), **_optional(None if value is None else float(value))
        )
    model = forecast.fit(series, as_of, fit_days)
    accuracy = forecast.backtest(series, as_of, fit_days, horizon)
    response.accuracy.origins = accuracy.origins
    for target, source in (
        (response.accuracy.overall, accuracy.overall),
        *((response.accuracy.by_horizon.add(), h) for h in accuracy.by_horizon),
    ):
        target.horizon_days = source.horizon
        target.forecasts = source.forecasts
        for name in ("mae", "mape", "coverage_80", "coverage_95"):
            value = getattr(source, name)
            if value is not None:
                setattr(target, name, value)
    if model is None:
        return
    response.model.method = _METHODS[model.method]
    response.model.level = float(model.level)
    response.model.slope_per_day = float(model.slope)
    response.model.weekday_effects.extend(float(e) for e in model.weekday_effects)
    response.model.observations = model.observations
    response.model.degrees_of_freedom = model.degrees_of_freedom
    if model.residual_variance is not None:
        response.model.residual_stddev = math.sqrt(model.residual_variance)
    for point in forecast.forecast(model, horizon):
        item = response.points.add(date=point.day.isoformat(), value=float(point.value))
        if point.interval_80 is not None and point.interval_95 is not None:
            item.lower_80, item.upper_80 = point.interval_80.lower, point.interval_80.upper
            item.lower_95, item.upper_95 = point.interval_95.lower, point.interval_95.upper
