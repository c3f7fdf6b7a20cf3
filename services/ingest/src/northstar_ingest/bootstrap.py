"""The one place that wires the ingest service's parts."""

from __future__ import annotations

import time

from northstar.ingest.v1 import ingest_pb2_grpc
from northstar_ingest.application import Ingestor
from northstar_ingest.domain.limits import RecentIds, TenantRateLimiter
from northstar_ingest.entrypoints.grpc import SCOPES, SERVICE_NAME, IngestServicer
from northstar_ingest.settings import IngestSettings
from northstar_runtime.service import Resources, ServiceHost, ServiceParts


def build_host(settings: IngestSettings, *, configure_process: bool = True) -> ServiceHost:
    """A ServiceHost running the ingest service with these settings."""

    async def build(resources: Resources) -> ServiceParts:
        ingestor = Ingestor(
            log_client=resources.log,
            topology=resources.topology,
            partitions=settings.northstar_partitions,
            limiter=TenantRateLimiter(
                rate=settings.ingest_rate_limit,
                burst=settings.ingest_rate_burst,
                clock=time.monotonic,
            ),
            recent=RecentIds(settings.ingest_recent_ids),
            publish_timeout=settings.ingest_publish_timeout,
        )
        servicer = IngestServicer(ingestor)
        return ServiceParts(
            register=[
                lambda server: ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
            ],
        )

    return ServiceHost(
        service="ingest",
        settings=settings,
        service_names=[SERVICE_NAME],
        scopes=SCOPES,
        build=build,
        configure_process=configure_process,
    )
