"""The KPI RPCs of MetricsService: Kpis, GetKpiConfig, UpdateKpiConfig."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, date, datetime
from typing import Any

import grpc

from northstar.metrics.v1 import kpis_pb2
from northstar_metrics.adapters.activation_store import ActivationStore
from northstar_metrics.adapters.kpi_config import KpiConfigStore, config_to_proto
from northstar_metrics.adapters.retention_store import RetentionStore
from northstar_metrics.adapters.revenue_store import RevenueStore
from northstar_metrics.domain.kpi_values import KpiCounts, KpiWindows, kpi_values_of
from northstar_metrics.domain.kpis import (
    DEFAULT_KPIS,
    KPI_NAMES,
    Direction,
    KpiDefinition,
    State,
    Status,
    scorecard,
)
from northstar_metrics.domain.time import DAY_FORMAT, iso_day
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_runtime.errors import FieldViolation, InvalidArgument
from northstar_runtime.grpc_server import current_principal

_DIRECTION = {
    Direction.HIGHER: kpis_pb2.KPI_DIRECTION_HIGHER,
    Direction.LOWER: kpis_pb2.KPI_DIRECTION_LOWER,
}
_STATE = {
    State.OK: kpis_pb2.KPI_STATE_OK,
    State.WARNING: kpis_pb2.KPI_STATE_WARNING,
    State.CRITICAL: kpis_pb2.KPI_STATE_CRITICAL,
    State.MISSING: kpis_pb2.KPI_STATE_MISSING,
}
_STATUS = {
    Status.ON_TRACK: kpis_pb2.ALIGNMENT_STATUS_ON_TRACK,
    Status.AT_RISK: kpis_pb2.ALIGNMENT_STATUS_AT_RISK,
    Status.OFF_TRACK: kpis_pb2.ALIGNMENT_STATUS_OFF_TRACK,
    Status.NO_DATA: kpis_pb2.ALIGNMENT_STATUS_NO_DATA,
}


def parse_as_of(text: str) -> date:
    """The request's day, or today (UTC) when empty."""
    if not text:
        return datetime.now(UTC).date()
    try:
        return iso_day(text)
    except ValueError:
        raise InvalidArgument(
            f"as_of_date must be {DAY_FORMAT}, got {text!r}",
            reason="INVALID_DATE",
            violations=[FieldViolation("as_of_date", f"must be {DAY_FORMAT}")],
        ) from None


def _overrides(targets: Any) -> list[KpiDefinition]:
    directions = {d.name: d.direction for d in DEFAULT_KPIS}
    violations: list[FieldViolation] = []
    seen: set[str] = set()
    out: list[KpiDefinition] = []
    for i, t in enumerate(targets):
        field = f"targets[{i}]"
        if t.name not in directions:
            violations.append(
                FieldViolation(
                    f"{field}.name", f"unknown KPI {t.name!r}; one of {', '.join(KPI_NAMES)}"
                )
            )
            continue
        if t.name in seen:
            violations.append(FieldViolation(f"{field}.name", f"{t.name} is listed twice"))
        seen.add(t.name)
        numbers = {"target": t.target, "weight": t.weight}
        if t.HasField("warning"):
            numbers["warning"] = t.warning
        if t.HasField("critical"):
            numbers["critical"] = t.critical
        for key, value in numbers.items():
            if not math.isfinite(value):
                violations.append(FieldViolation(f"{field}.{key}", "must be a finite number"))
        if t.weight < 0:
            violations.append(FieldViolation(f"{field}.weight", "must be >= 0"))
        out.append(
            KpiDefinition(
                name=t.name,
                direction=directions[t.name],
                target=t.target,
                weight=t.weight,
                warning=t.warning if t.HasField("warning") else None,
                critical=t.critical if t.HasField("critical") else None,
            )
        )
    if not targets:
        violations.append(FieldViolation("targets", "name at least one KPI to change"))
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations),
            reason="INVALID_KPI_CONFIG",
            violations=violations,
        )
    return out


class KpiRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    async def Kpis(  # noqa: N802 - gRPC method name
        self, request: kpis_pb2.KpisRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kpis_pb2.KpisResponse:
        """Every KPI as of a day, the alignment score and the priority actions."""
        as_of = parse_as_of(request.as_of_date)
        tenant = current_principal().tenant
        definitions, version = await KpiConfigStore(self.deps.log).get(tenant)
        position = await self.deps.events.position()
        windows = KpiWindows.as_of(as_of)
        card = scorecard(
            definitions, kpi_values_of(windows, await self._kpi_counts(tenant, windows))
        )
        response = kpis_pb2.KpisResponse(
            as_of_date=as_of.isoformat(),
            status=_STATUS[card.status],
            missing=list(card.missing),
            log_position=position,
            config_version=version,
        )
        if card.score is not None:
            response.alignment_score = float(card.score)
        for r in card.kpis:
            d, m = r.definition, r.measured
            kpi = response.kpis.add(
                name=d.name,
                target=d.target,
                weight=d.weight,
                direction=_DIRECTION[d.direction],
                state=_STATE[r.state],
                window=m.window,
            )
            if m.value is not None:
                kpi.value = float(m.value)
            if r.attainment is not None:
                kpi.attainment = float(r.attainment)
            if d.warning is not None:
                kpi.warning = d.warning
            if d.critical is not None:
                kpi.critical = d.critical
            if m.numerator is not None:
                kpi.numerator = m.numerator
            if m.denominator is not None:
                kpi.denominator = m.denominator
        for a in card.actions:
            response.priority_actions.add(
                kpi=a.kpi,
                impact=float(a.impact),
                gap=float(a.gap),
                recommended_action=a.recommended_action,
            )
        return response

    async def _kpi_counts(self, tenant: str, windows: KpiWindows) -> KpiCounts:
        """The KPIs' counts from the read models, each sized by its window, not the history.

        The same numbers as domain/kpi_values.py `kpi_values` over every event: D7 / D30
        from `cohort_counts`, activation from `user_facts`, the month from the revenue
        read models (the Revenue query's month).
        """
        pool = self.deps.pool
        retention, activation = RetentionStore(pool), ActivationStore(pool)
        d7, d30, (signups, activated, fast), ((month, *_), _, _) = await asyncio.gather(
            retention.day_retention(tenant, *windows.recent, 7),
            retention.day_retention(tenant, *windows.older, 30),
            activation.counts(tenant, *windows.recent),
            RevenueStore(pool).months(tenant, [windows.month]),
        )
        return KpiCounts(
            d7_retention=d7,
            activation=(activated, signups),
            d30_retention=d30,
            fast_activation=(fast, signups),
            month=month,
        )

    async def GetKpiConfig(  # noqa: N802 - gRPC method name
        self, request: kpis_pb2.GetKpiConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kpis_pb2.GetKpiConfigResponse:
        """The tenant's KPI configuration and its version."""
        definitions, version = await KpiConfigStore(self.deps.log).get(current_principal().tenant)
        return kpis_pb2.GetKpiConfigResponse(config=config_to_proto(definitions), version=version)

    async def UpdateKpiConfig(  # noqa: N802 - gRPC method name
        self, request: kpis_pb2.UpdateKpiConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> kpis_pb2.UpdateKpiConfigResponse:
        """Change KPIs against a stated version; a stale version answers ABORTED."""
        overrides = _overrides(request.targets)
        principal = current_principal()
        definitions, version = await KpiConfigStore(self.deps.log).update(
            principal.tenant, overrides, request.expected_version, principal.key_id
        )
        return kpis_pb2.UpdateKpiConfigResponse(
            config=config_to_proto(definitions), version=version
        )
