"""The metrics service in-process over real NATS and PostgreSQL, fed straight from the log."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import pytest

from northstar.log.v1 import log_pb2
from northstar.metrics.v1 import metrics_pb2_grpc
from northstar_metrics.adapters.columnar import ColumnarEvents
from northstar_metrics.bootstrap import build_host
from northstar_metrics.settings import MetricsSettings
from northstar_runtime.codec import encode_batch
from northstar_runtime.log import LogClient, OutgoingMessage
from northstar_runtime.service import ServiceHost
from northstar_runtime.topology import Topology

from ..reference import Ev

READ_KEY = "metrics-reader-key-01"
ADMIN_KEY = "metrics-admin-key-01"
TENANTS = [f"t{i}" for i in range(200)]
SERVICE_KEY = "metrics-service-key-01"
API_KEYS = ",".join(
    [f"{t}:read:{READ_KEY}-{t},{t}:admin:{ADMIN_KEY}-{t}" for t in TENANTS]
    + [f"northstar:service:{SERVICE_KEY}"]
)
_ids = itertools.count()


def auth(tenant: str) -> tuple[tuple[str, str]]:
    """Metadata of tenant's read key."""
    return (("authorization", f"Bearer {READ_KEY}-{tenant}"),)


def admin_auth(tenant: str) -> tuple[tuple[str, str]]:
    """Metadata of tenant's admin key."""
    return (("authorization", f"Bearer {ADMIN_KEY}-{tenant}"),)


def service_auth(tenant: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """Metadata of the service key acting for tenant."""
    return (("authorization", f"Bearer {SERVICE_KEY}"), ("x-northstar-tenant", tenant))


def stored(e: Ev) -> log_pb2.StoredEvent:
    """The log form of a reference event."""
    return log_pb2.StoredEvent(
        event_id=e.event_id,
        event=e.event,
        user_id=e.user_id,
        org_id=e.org_id,
        timestamp_us=e.timestamp_us,
        original_timestamp_us=e.timestamp_us,
        received_at_us=e.timestamp_us,
        properties_json=e.properties.encode(),
    )


@dataclass
class MetricsUnderTest:
    """A running metrics service, a log client to feed it, and its stub."""

    host: ServiceHost
    log: LogClient
    stub: metrics_pb2_grpc.MetricsServiceStub
    settings: MetricsSettings

    @property
    def copy(self) -> ColumnarEvents | None:
        """The service's columnar copy of the events, if it keeps one."""
        assert self.host.parts is not None
        copies = [w for w in self.host.parts.workers if isinstance(w, ColumnarEvents)]
        return copies[0] if copies else None

    async def append(self, tenant: str, events: Sequence[Ev], *, per_message: int = 7) -> int:
        """Append events in arrival order, a few per message; returns the last position."""
        messages = []
        for i in range(0, len(events), per_message):
            payload, headers = encode_batch(
                tenant, 0, [stored(e) for e in events[i : i + per_message]]
            )
            messages.append(
                OutgoingMessage(
                    self.log.topology.events_subject(tenant, 0), payload, headers=headers
                )
            )
        acks = await self.log.publish_many(messages, timeout=10)
        return max(a.seq for a in acks)


def metrics_settings(nats_url: str, database_url: str, namespace: str) -> MetricsSettings:
    """Settings of a metrics service under test."""
    return MetricsSettings(
        grpc_address="127.0.0.1:0",
        nats_url=nats_url,
        database_url=database_url,
        northstar_namespace=namespace,
        northstar_api_keys=API_KEYS,
        northstar_partitions=4,
        shutdown_grace_seconds=1.0,
        projector_batch_size=50,
    )


@pytest.fixture
async def metrics(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[MetricsUnderTest]:
    """A metrics service started for the test."""
    async with running_metrics(metrics_settings(nats_url, database_url, namespace)) as m:
        yield m


@pytest.fixture(params=["columnar", "postgresql"])
async def ad_hoc_metrics(
    request: pytest.FixtureRequest, nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[MetricsUnderTest]:
    """The service answering Funnel and Trend from its columnar copy, and without one.

    The copy is rewritten (sorted, common properties in columns of their own) whenever a
    quarter of its rows is new, so answers come from promoted columns and from the map.
    """
    settings = metrics_settings(nats_url, database_url, namespace).model_copy(
        update={"columnar_copy": request.param == "columnar", "columnar_compact_min_rows": 1}
    )
    async with running_metrics(settings) as m:
        yield m


@contextlib.asynccontextmanager
async def running_metrics(settings: MetricsSettings) -> AsyncIterator[MetricsUnderTest]:
    """A metrics service with these settings, its feeder and its stub, stopped after."""
    host = build_host(settings, configure_process=False)
    port = await host.start()
    log = await LogClient.connect(
        settings.nats_url, Topology(settings.northstar_namespace), name="test-feeder"
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield MetricsUnderTest(host, log, metrics_pb2_grpc.MetricsServiceStub(channel), settings)
    finally:
        await channel.close()
        await log.close()
        await host.stop()
