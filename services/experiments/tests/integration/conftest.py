"""The experiments service in-process over real NATS and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from northstar.experiments.v1 import experiments_pb2_grpc
from northstar_experiments.bootstrap import build_host
from northstar_experiments.settings import ExperimentsSettings
from northstar_runtime.log import LogClient
from northstar_runtime.service import ServiceHost
from northstar_runtime.topology import Topology

ADMIN_KEY = "experiments-admin-key-01"
READ_KEY = "experiments-read-key-01"
INGEST_KEY = "experiments-ingest-key-01"
API_KEYS = f"acme:admin:{ADMIN_KEY},acme:read:{READ_KEY},acme:ingest:{INGEST_KEY}"


def auth(key: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


@dataclass
class ExperimentsUnderTest:
    """A running experiments service, a log client, and its stub."""

    host: ServiceHost
    log: LogClient
    stub: experiments_pb2_grpc.ExperimentsServiceStub


@pytest.fixture
async def service(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[ExperimentsUnderTest]:
    """An experiments service started for the test."""
    settings = ExperimentsSettings(
        grpc_address="127.0.0.1:0",
        nats_url=nats_url,
        database_url=database_url,
        northstar_namespace=namespace,
        northstar_api_keys=API_KEYS,
        northstar_partitions=4,
        shutdown_grace_seconds=1.0,
        projector_batch_size=500,
    )
    host = build_host(settings, configure_process=False)
    port = await host.start()
    log = await LogClient.connect(nats_url, Topology(namespace), name="test-feeder")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ExperimentsUnderTest(host, log, experiments_pb2_grpc.ExperimentsServiceStub(channel))
    finally:
        await channel.close()
        await log.close()
        await host.stop()
