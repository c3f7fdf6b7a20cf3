"""Service-to-service calls: the tenant header, the deadline, what is retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from northstar_runtime.auth import TENANT_HEADER
from northstar_runtime.upstream import ClientTls, TenantCalls, tenant_metadata


def _error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "x")


class Flaky:
    """A unary call failing with `codes` in turn, then answering."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.seen: list[tuple[Any, float]] = []

    async def __call__(self, request: Any, *, metadata: Any, timeout: float) -> empty_pb2.Empty:
        self.seen.append((metadata, timeout))
        if self.codes:
            raise _error(self.codes.pop(0))
        return empty_pb2.Empty()


async def test_a_call_reads_as_the_tenant_with_the_deadline() -> None:
    call = Flaky()
    await TenantCalls("key", deadline_s=2.5)(call, empty_pb2.Empty(), "acme")
    assert call.seen == [((("authorization", "Bearer key"), (TENANT_HEADER, "acme")), 2.5)]
    assert tenant_metadata("key", "acme") == call.seen[0][0]


async def test_transient_failures_are_retried_up_to_the_attempts() -> None:
    call = Flaky(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    calls = TenantCalls("key", deadline_s=1, attempts=3, backoff_s=0.001)
    assert await calls(call, empty_pb2.Empty(), "acme") == empty_pb2.Empty()
    assert len(call.seen) == 3
    call = Flaky(*[grpc.StatusCode.UNAVAILABLE] * 3)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await calls(call, empty_pb2.Empty(), "acme")
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert len(call.seen) == 3


async def test_other_failures_are_not_retried() -> None:
    call = Flaky(grpc.StatusCode.PERMISSION_DENIED)
    calls = TenantCalls("key", deadline_s=1, attempts=3, backoff_s=0.001)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await calls(call, empty_pb2.Empty(), "acme")
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert len(call.seen) == 1


def test_tls_options() -> None:
    assert not ClientTls().in_use
    assert ClientTls(enabled=True).in_use
    assert ClientTls(ca_file=Path("ca.pem")).in_use
    with pytest.raises(ValueError, match="go together"):
        ClientTls(cert_file=Path("c.pem"))
    with pytest.raises(ValueError, match="at least 1"):
        TenantCalls("key", deadline_s=1, attempts=0)
