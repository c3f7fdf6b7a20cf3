"""A service key reads any tenant's numbers through x-northstar-tenant, and only reads."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from northstar.metrics.v1 import kpis_pb2, metrics_pb2
from northstar_harness.eventually import assert_eventually

from ..reference import Ev
from .conftest import READ_KEY, MetricsUnderTest, auth, service_auth

US = 1_000_000
DAY = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp()) * US
REQUEST = metrics_pb2.ActiveUsersRequest(from_date="2026-03-10", to_date="2026-03-10")


async def test_a_service_key_reads_each_tenant_as_that_tenant(metrics: MetricsUnderTest) -> None:
    await metrics.append("t198", [Ev("a", "page.view", "u1", "", DAY)])
    position = await metrics.append(
        "t199", [Ev("b", "page.view", "u1", "", DAY), Ev("c", "page.view", "u2", "", DAY)]
    )

    async def dau(tenant: str) -> int:
        answer = await metrics.stub.ActiveUsers(REQUEST, metadata=service_auth(tenant), timeout=5)
        assert answer.log_position >= position
        return int(answer.days[0].dau)

    assert await assert_eventually(lambda: dau("t199"), timeout=20) == 2
    assert await dau("t198") == 1
    own = await metrics.stub.ActiveUsers(REQUEST, metadata=auth("t199"), timeout=5)
    assert own.days[0].dau == 2


async def test_the_tenant_header_needs_the_service_scope(metrics: MetricsUnderTest) -> None:
    md = (("authorization", f"Bearer {READ_KEY}-t1"), ("x-northstar-tenant", "t2"))
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await metrics.stub.ActiveUsers(REQUEST, metadata=md, timeout=5)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Acting for a tenant grants read only: admin methods stay closed.
    with pytest.raises(grpc.aio.AioRpcError) as admin:
        await metrics.stub.GetKpiConfig(
            kpis_pb2.GetKpiConfigRequest(), metadata=service_auth("t2"), timeout=5
        )
    assert admin.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await metrics.stub.ActiveUsers(REQUEST, metadata=service_auth("Not A Tenant"), timeout=5)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
