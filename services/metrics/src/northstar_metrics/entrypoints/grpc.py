"""The MetricsService servicer: proto in, query, proto out; nothing else."""

from __future__ import annotations

from typing import Any

import grpc

from northstar.metrics.v1 import metrics_pb2, metrics_pb2_grpc
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.rpc_activation import ActivationRpcs
from northstar_metrics.entrypoints.rpc_funnel import FunnelRpcs
from northstar_metrics.entrypoints.rpc_kpis import KpiRpcs
from northstar_metrics.entrypoints.rpc_quality import QualityRpcs
from northstar_metrics.entrypoints.rpc_retention import RetentionRpcs
from northstar_metrics.entrypoints.rpc_revenue import RevenueRpcs
from northstar_metrics.entrypoints.rpc_series import SeriesRpcs
from northstar_metrics.entrypoints.rpc_trend import TrendRpcs
from northstar_metrics.entrypoints.validation import date_range
from northstar_runtime.auth import Scope
from northstar_runtime.errors import FieldViolation, InvalidArgument
from northstar_runtime.grpc_server import current_principal

SERVICE_NAME = metrics_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name
_ADMIN_METHODS = {"GetKpiConfig", "UpdateKpiConfig"}
SCOPES = {
    f"/{SERVICE_NAME}/{method.name}": Scope.ADMIN if method.name in _ADMIN_METHODS else Scope.READ
    for method in metrics_pb2.DESCRIPTOR.services_by_name["MetricsService"].methods
}

_METRIC_FIELD = {
    metrics_pb2.ACTIVE_USERS_METRIC_DAU: "dau",
    metrics_pb2.ACTIVE_USERS_METRIC_WAU: "wau",
    metrics_pb2.ACTIVE_USERS_METRIC_MAU: "mau",
    metrics_pb2.ACTIVE_USERS_METRIC_STICKINESS: "stickiness",
    metrics_pb2.ACTIVE_USERS_METRIC_MAO: "mao",
}


class MetricsServicer(
    RetentionRpcs,
    ActivationRpcs,
    FunnelRpcs,
    TrendRpcs,
    RevenueRpcs,
    KpiRpcs,
    SeriesRpcs,
    QualityRpcs,
    metrics_pb2_grpc.MetricsServiceServicer,
):
    """The metrics RPCs over the read models; each group lives in its rpc_* module."""

    def __init__(self, deps: MetricsDeps) -> None:
        self.deps = deps

    async def ActiveUsers(  # noqa: N802 - gRPC method name
        self, request: metrics_pb2.ActiveUsersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metrics_pb2.ActiveUsersResponse:
        """DAU, WAU, MAU, stickiness and MAO per day of the range."""
        first, last = date_range(request.from_date, request.to_date)
        if request.metric and request.metric not in _METRIC_FIELD:
            raise InvalidArgument(
                f"unknown metric {request.metric}",
                reason="UNKNOWN_METRIC",
                violations=[
                    FieldViolation("metric", "must be one of the ActiveUsersMetric values")
                ],
            )
        wanted = _METRIC_FIELD.get(request.metric)
        days, position = await self.deps.read_model.active_users(
            current_principal().tenant, first, last
        )
        response = metrics_pb2.ActiveUsersResponse(log_position=position)
        for d in days:
            row = response.days.add(
                date=d.day.isoformat(), dau=d.dau, wau=d.wau, mau=d.mau, mao=d.mao
            )
            if d.stickiness is not None:
                row.stickiness = d.stickiness
            if wanted is not None:
                value = getattr(d, wanted)
                if value is not None:
                    row.value = float(value)
        return response
