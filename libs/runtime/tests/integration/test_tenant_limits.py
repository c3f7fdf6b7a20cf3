"""Through a real gRPC server: one tenant's slow calls cannot take the replica."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from northstar_runtime.auth import ApiKeyStore, Scope
from northstar_runtime.grpc_server import GrpcServer, create_server

METHOD = "/test.Slow/Wait"


@pytest.fixture
async def slow_server() -> AsyncIterator[tuple[GrpcServer, asyncio.Event]]:
    release = asyncio.Event()

    async def wait(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await release.wait()
        return request

    server, late = await create_server(
        "127.0.0.1:0",
        keys=ApiKeyStore(inline="a:read:key-a,b:read:key-b"),
        scopes={METHOD: Scope.READ},
        service_names=[],
        tenant_max_in_flight=2,
    )
    late.install(
        [
            lambda s: s.add_registered_method_handlers(
                "test.Slow", {"Wait": grpc.unary_unary_rpc_method_handler(wait)}
            )
        ]
    )
    try:
        yield server, release
    finally:
        release.set()
        await server.stop(0.1)


async def test_a_tenant_beyond_its_in_flight_limit_is_told_to_retry(
    slow_server: tuple[GrpcServer, asyncio.Event],
) -> None:
    server, release = slow_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(METHOD)

        def as_tenant(t: str) -> grpc.aio.UnaryUnaryCall[bytes, bytes]:
            return call(t.encode(), metadata=(("authorization", f"Bearer key-{t}"),), timeout=10)

        held = [as_tenant("a"), as_tenant("a")]
        other = as_tenant("b")
        await asyncio.sleep(0.3)  # the three calls are in the handler, waiting
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await as_tenant("a")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dict(err.value.trailing_metadata() or ())["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(details)
        info = error_details_pb2.ErrorInfo()
        retry = error_details_pb2.RetryInfo()
        assert any(d.Unpack(info) for d in status.details)
        assert any(d.Unpack(retry) for d in status.details)
        assert info.reason == "TENANT_CONCURRENCY"
        assert retry.retry_delay.ToNanoseconds() > 0
        release.set()
        assert [await c for c in (*held, other)] == [b"a", b"a", b"b"]
        # The slots came back: the tenant is served again.
        assert await as_tenant("a") == b"a"
