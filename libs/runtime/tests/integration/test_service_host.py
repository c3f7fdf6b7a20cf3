"""ServiceHost's life: a start that fails part way leaves nothing running behind it."""

from __future__ import annotations

import socket

import pytest

from northstar_runtime.config import ServiceSettings
from northstar_runtime.service import Resources, ServiceHost, ServiceParts


class Boom(RuntimeError):
    pass


async def test_a_failed_start_stops_the_server_and_closes_the_log(
    nats_url: str, database_url: str, namespace: str
) -> None:
    seen: list[Resources] = []

    async def build(resources: Resources) -> ServiceParts:
        seen.append(resources)
        raise Boom("the service's parts could not be built")

    host = ServiceHost(
        service="test",
        settings=ServiceSettings(
            grpc_address="127.0.0.1:0",
            nats_url=nats_url,
            database_url=database_url,
            northstar_namespace=namespace,
            shutdown_grace_seconds=0.1,
        ),
        service_names=[],
        scopes={},
        build=build,
        configure_process=False,
    )
    with pytest.raises(Boom):
        await host.start()
    assert host.grpc is not None
    port = host.grpc.port
    # The listening socket is gone: nothing answers on the port any more.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert seen[0].log.nc.is_closed
