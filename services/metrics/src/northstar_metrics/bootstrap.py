"""The one place that wires the metrics service's parts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from northstar.metrics.v1 import metrics_pb2_grpc
from northstar_metrics.adapters.columnar import ColumnarEvents
from northstar_metrics.adapters.event_store import EventStore
from northstar_metrics.adapters.ingest_requests import IngestRequestsProjection
from northstar_metrics.adapters.projection import ActivityProjection
from northstar_metrics.adapters.queries import ReadModel
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.grpc import SCOPES, SERVICE_NAME, MetricsServicer
from northstar_metrics.settings import MetricsSettings
from northstar_runtime.projector import Projector
from northstar_runtime.service import Resources, ServiceHost, ServiceParts

MIGRATIONS = "northstar_metrics.migrations"


def build_projector(resources: Resources, settings: MetricsSettings) -> Projector:
    """The activity projector over all partitions, or this replica's range."""
    topology = resources.topology
    partitions = settings.partition_range()
    projection = ActivityProjection()
    if partitions is None:
        filters = [topology.events_subjects]
    else:
        filters = [topology.events_partition_filter(p) for p in partitions]
        projection.name = f"activity_p{partitions.start}_{partitions.stop - 1}"
    assert resources.pool is not None
    return Projector(
        log_client=resources.log,
        pool=resources.pool,
        service="metrics",
        projection=projection,
        stream=topology.events_stream,
        filter_subjects=filters,
        batch_size=settings.projector_batch_size,
    )


def _closer(copy: ColumnarEvents) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        copy.close()

    return close


def build_host(settings: MetricsSettings, *, configure_process: bool = True) -> ServiceHost:
    """A ServiceHost running the metrics service with these settings."""

    async def build(resources: Resources) -> ServiceParts:
        assert resources.pool is not None
        copy = (
            ColumnarEvents(
                resources.pool,
                memory_limit=settings.columnar_memory_limit,
                compact_min_rows=settings.columnar_compact_min_rows,
            )
            if settings.columnar_copy
            else None
        )
        servicer = MetricsServicer(
            MetricsDeps(
                read_model=ReadModel(resources.pool),
                events=EventStore(resources.pool),
                pool=resources.pool,
                log=resources.log,
                topology=resources.topology,
                columnar=copy,
            )
        )
        return ServiceParts(
            register=[
                lambda server: metrics_pb2_grpc.add_MetricsServiceServicer_to_server(
                    servicer, server
                )
            ],
            projectors=[
                build_projector(resources, settings),
                Projector(
                    log_client=resources.log,
                    pool=resources.pool,
                    service="metrics",
                    projection=IngestRequestsProjection(),
                    stream=resources.topology.domain_stream,
                    filter_subjects=[resources.topology.domain_service_filter("ingest")],
                    batch_size=settings.projector_batch_size,
                ),
            ],
            workers=[copy] if copy is not None else [],
            on_stop=[_closer(copy)] if copy is not None else [],
        )

    return ServiceHost(
        service="metrics",
        settings=settings,
        service_names=[SERVICE_NAME],
        scopes=SCOPES,
        build=build,
        migrations_package=MIGRATIONS,
        configure_process=configure_process,
    )
