"""The alerts service in-process over real NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.bootstrap import build_host
from northstar_alerts.settings import AlertsSettings

ADMIN_KEY = "alerts-admin-key-01"
READ_KEY = "alerts-read-key-01"
OTHER_ADMIN_KEY = "alerts-admin-key-02"
API_KEYS = f"acme:admin:{ADMIN_KEY},acme:read:{READ_KEY},globex:admin:{OTHER_ADMIN_KEY}"


def auth(key: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def stub(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[alerts_pb2_grpc.AlertsServiceStub]:
    """A stub of an alerts service started for the test."""
    settings = AlertsSettings(
        grpc_address="127.0.0.1:0",
        nats_url=nats_url,
        database_url=database_url,
        northstar_namespace=namespace,
        northstar_api_keys=API_KEYS,
        northstar_partitions=4,
        shutdown_grace_seconds=1.0,
    )
    host = build_host(settings, configure_process=False)
    port = await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield alerts_pb2_grpc.AlertsServiceStub(channel)
    finally:
        await channel.close()
        await host.stop()
