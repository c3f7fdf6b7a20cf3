"""The suite in one process: ingest and metrics over real NATS and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from northstar.ingest.v1 import ingest_pb2_grpc
from northstar.metrics.v1 import metrics_pb2_grpc
from northstar_ingest.bootstrap import build_host as build_ingest
from northstar_ingest.settings import IngestSettings
from northstar_metrics.bootstrap import build_host as build_metrics
from northstar_metrics.settings import MetricsSettings
from northstar_runtime.service import ServiceHost

WRITER_KEY = "writer-key-0123456789"
READER_KEY = "reader-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
OTHER_TENANT_KEY = "other-key-0123456789"
SERVICE_KEY = "service-key-0123456789"
API_KEYS = (
    f"acme:ingest:{WRITER_KEY},acme:read:{READER_KEY},acme:admin:{ADMIN_KEY},"
    f"globex:ingest+read:{OTHER_TENANT_KEY},northstar:service:{SERVICE_KEY}"
)


def auth(key: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


@dataclass
class Suite:
    """Running services and stubs to call them."""

    ingest_host: ServiceHost
    metrics_host: ServiceHost
    ingest: ingest_pb2_grpc.IngestServiceStub
    metrics: metrics_pb2_grpc.MetricsServiceStub
    channels: list[grpc.aio.Channel]


def settings_env(nats_url: str, database_url: str, namespace: str) -> dict[str, object]:
    """Settings every service of a test suite shares."""
    return {
        "grpc_address": "127.0.0.1:0",
        "nats_url": nats_url,
        "database_url": database_url,
        "northstar_namespace": namespace,
        "northstar_api_keys": API_KEYS,
        "northstar_partitions": 4,
        "shutdown_grace_seconds": 1.0,
    }


@pytest.fixture
async def suite(nats_url: str, database_url: str, namespace: str) -> AsyncIterator[Suite]:
    """Ingest and metrics started in this process, stopped after the test."""
    common = settings_env(nats_url, database_url, namespace)
    ingest_host = build_ingest(IngestSettings(**common), configure_process=False)  # type: ignore[arg-type]
    metrics_host = build_metrics(
        MetricsSettings(**common, projector_batch_size=500),
        configure_process=False,  # type: ignore[arg-type]
    )
    ingest_port = await ingest_host.start()
    metrics_port = await metrics_host.start()
    ingest_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest_port}")
    metrics_channel = grpc.aio.insecure_channel(f"127.0.0.1:{metrics_port}")
    try:
        yield Suite(
            ingest_host,
            metrics_host,
            ingest_pb2_grpc.IngestServiceStub(ingest_channel),
            metrics_pb2_grpc.MetricsServiceStub(metrics_channel),
            [ingest_channel, metrics_channel],
        )
    finally:
        for channel in (ingest_channel, metrics_channel):
            await channel.close()
        await metrics_host.stop()
        await ingest_host.stop()
