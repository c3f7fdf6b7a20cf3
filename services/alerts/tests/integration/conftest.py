"""The alerts service in-process over real NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.bootstrap import build_host
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.service import ServiceHost

ADMIN_KEY = "alerts-admin-key-01"
READ_KEY = "alerts-read-key-01"
OTHER_ADMIN_KEY = "alerts-admin-key-02"
API_KEYS = f"acme:admin:{ADMIN_KEY},acme:read:{READ_KEY},globex:admin:{OTHER_ADMIN_KEY}"


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT's BadRequest detail names, in order."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            return [v.field for v in request.field_violations]
    return []


def auth(key: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


class AlertsHosts:
    """Starts alerts hosts on one namespace (settings overridable) and stops them.

    Delivery is quick here: tiny backoffs without jitter and a short poll.
    """

    def __init__(self, nats_url: str, database_url: str, namespace: str) -> None:
        self._base: dict[str, Any] = {
            "grpc_address": "127.0.0.1:0",
            "nats_url": nats_url,
            "database_url": database_url,
            "northstar_namespace": namespace,
            "northstar_api_keys": API_KEYS,
            "northstar_partitions": 4,
            "shutdown_grace_seconds": 0.5,
            "delivery_poll_seconds": 0.05,
            "delivery_backoff_initial_seconds": 0.05,
            "delivery_backoff_max_seconds": 0.2,
            "delivery_backoff_jitter_seconds": 0,
            "http_timeout_seconds": 5.0,
        }
        self.running: list[ServiceHost] = []

    async def start(self, **overrides: Any) -> ServiceHost:
        """A started host with these settings changed."""
        host = build_host(AlertsSettings(**{**self._base, **overrides}), configure_process=False)
        await host.start()
        self.running.append(host)
        return host

    async def stop(self, host: ServiceHost) -> None:
        """Stop one host (drains its dispatcher)."""
        self.running.remove(host)
        await host.stop()


@pytest.fixture
async def alerts_hosts(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[AlertsHosts]:
    """Alerts hosts for the test; those still running are stopped at the end."""
    hosts = AlertsHosts(nats_url, database_url, namespace)
    try:
        yield hosts
    finally:
        for host in reversed(hosts.running):
            await host.stop()


def pool_of(host: ServiceHost) -> asyncpg.Pool:
    """The host's PostgreSQL pool (its schema on the search path)."""
    assert host.resources is not None and host.resources.pool is not None
    return host.resources.pool


@pytest.fixture
async def stub(alerts_hosts: AlertsHosts) -> AsyncIterator[alerts_pb2_grpc.AlertsServiceStub]:
    """A stub of an alerts service started for the test."""
    host = await alerts_hosts.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    try:
        yield alerts_pb2_grpc.AlertsServiceStub(channel)
    finally:
        await channel.close()
