"""KPI configuration: domain events with optimistic concurrency, admin only."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from northstar.metrics.v1 import kpis_pb2

from .conftest import MetricsUnderTest, admin_auth, auth


async def test_defaults_then_versioned_changes(metrics: MetricsUnderTest) -> None:
    first = await metrics.stub.GetKpiConfig(
        kpis_pb2.GetKpiConfigRequest(), metadata=admin_auth("t1")
    )
    assert first.version == 0
    assert [t.name for t in first.config.targets][:2] == ["d7_retention", "activation_rate"]
    churn = next(t for t in first.config.targets if t.name == "churn_rate")
    assert (churn.target, churn.weight, churn.warning, churn.critical) == (0.05, 10, 0.07, 0.10)

    changed = await metrics.stub.UpdateKpiConfig(
        kpis_pb2.UpdateKpiConfigRequest(
            targets=[kpis_pb2.KpiTarget(name="churn_rate", target=0.03, weight=12, critical=0.2)],
            expected_version=0,
        ),
        metadata=admin_auth("t1"),
    )
    assert changed.version > 0
    churn = next(t for t in changed.config.targets if t.name == "churn_rate")
    assert (churn.target, churn.weight, churn.HasField("warning"), churn.critical) == (
        0.03,
        12,
        False,
        0.2,
    )
    again = await metrics.stub.GetKpiConfig(
        kpis_pb2.GetKpiConfigRequest(), metadata=admin_auth("t1")
    )
    assert again.version == changed.version
    assert again.config == changed.config
    # Another tenant still has the defaults.
    other = await metrics.stub.GetKpiConfig(
        kpis_pb2.GetKpiConfigRequest(), metadata=admin_auth("t2")
    )
    assert other.version == 0

    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await metrics.stub.UpdateKpiConfig(
            kpis_pb2.UpdateKpiConfigRequest(
                targets=[kpis_pb2.KpiTarget(name="churn_rate", target=0.04, weight=1)],
                expected_version=0,
            ),
            metadata=admin_auth("t1"),
        )
    assert stale.value.code() == grpc.StatusCode.ABORTED


async def test_two_concurrent_changes_exactly_one_wins(metrics: MetricsUnderTest) -> None:
    def change(weight: float) -> kpis_pb2.UpdateKpiConfigRequest:
        return kpis_pb2.UpdateKpiConfigRequest(
            targets=[kpis_pb2.KpiTarget(name="viral_coefficient", target=0.5, weight=weight)],
            expected_version=0,
        )

    results = await asyncio.gather(
        metrics.stub.UpdateKpiConfig(change(7), metadata=admin_auth("t3")),
        metrics.stub.UpdateKpiConfig(change(9), metadata=admin_auth("t3")),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, kpis_pb2.UpdateKpiConfigResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].code() == grpc.StatusCode.ABORTED
    now = await metrics.stub.GetKpiConfig(kpis_pb2.GetKpiConfigRequest(), metadata=admin_auth("t3"))
    viral = next(t for t in now.config.targets if t.name == "viral_coefficient")
    assert (
        viral.weight
        == next(t for t in won[0].config.targets if t.name == "viral_coefficient").weight
    )


async def test_config_needs_admin_and_valid_targets(metrics: MetricsUnderTest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await metrics.stub.GetKpiConfig(kpis_pb2.GetKpiConfigRequest(), metadata=auth("t4"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    for bad in [
        kpis_pb2.KpiTarget(name="nps", target=1, weight=1),
        kpis_pb2.KpiTarget(name="churn_rate", target=float("nan"), weight=1),
        kpis_pb2.KpiTarget(name="churn_rate", target=0.1, weight=-1),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await metrics.stub.UpdateKpiConfig(
                kpis_pb2.UpdateKpiConfigRequest(targets=[bad], expected_version=0),
                metadata=admin_auth("t4"),
            )
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
