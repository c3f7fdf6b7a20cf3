"""The one place that wires the reports service's parts."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable

from northstar.reports.v1 import reports_pb2_grpc
from northstar_reports.adapters.delivery_store import DeliveryStore
from northstar_reports.adapters.generation_store import GenerationStore
from northstar_reports.adapters.projection import ReportsProjection
from northstar_reports.adapters.report_store import ReportBook
from northstar_reports.adapters.schedule_store import ScheduleStore
from northstar_reports.adapters.sections import GrpcSectionSource
from northstar_reports.application.defaults import DefaultSchedulesInstaller
from northstar_reports.application.dispatcher import Dispatcher
from northstar_reports.application.generation import Fault, ReportGenerator
from northstar_reports.application.ports import SectionSource
from northstar_reports.application.scheduler import ReportScheduler
from northstar_reports.entrypoints.grpc import SCOPES, SERVICE_NAME, ReportsServicer
from northstar_reports.settings import ReportsSettings
from northstar_runtime.projector import Projector
from northstar_runtime.service import Resources, ServiceHost, ServiceParts, Worker
from northstar_runtime.upstream import ClientTls

MIGRATIONS = "northstar_reports.migrations"


def replica_id() -> str:
    """This replica's lease owner name: host, process and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def section_source(settings: ReportsSettings) -> GrpcSectionSource:
    """The gRPC section source the settings name."""
    tls = ClientTls(
        enabled=settings.upstream_tls,
        ca_file=settings.upstream_tls_ca_file,
        cert_file=settings.upstream_tls_cert_file,
        key_file=settings.upstream_tls_key_file,
    )
    return GrpcSectionSource(
        metrics_address=settings.metrics_service_address,
        experiments_address=settings.experiments_service_address,
        alerts_address=settings.alerts_service_address,
        service_key=settings.upstream_api_key,
        deadline_s=settings.upstream_deadline_seconds,
        tls=tls,
    )


def build_host(
    settings: ReportsSettings,
    *,
    configure_process: bool = True,
    sections: SectionSource | None = None,
    clock: Callable[[], float] = time.time,
    fault: Fault | None = None,
) -> ServiceHost:
    """A ServiceHost running the reports service with these settings (tests pass their own
    section source, clock and fault point)."""

    async def build(resources: Resources) -> ServiceParts:
        assert resources.pool is not None
        pool, topology = resources.pool, resources.topology
        grpc_source = None
        source: SectionSource
        if sections is None:
            grpc_source = section_source(settings)
            source = grpc_source
        else:
            source = sections
        schedules = ScheduleStore(resources.log)
        book = ReportBook(pool)
        generation = GenerationStore(
            pool, resources.log, owner=replica_id(), lease_s=settings.generation_lease_seconds
        )
        generator = ReportGenerator(
            source,
            generation,
            clock=clock,
            deadline_s=settings.reports_generation_timeout_seconds,
            fault=fault,
        )
        servicer = ReportsServicer(store=schedules, book=book, generator=generator, clock=clock)
        workers: list[Worker] = []
        if settings.reports_dispatcher_enabled:
            workers.append(Dispatcher(DeliveryStore(pool, generation), settings))
        if settings.reports_scheduler_enabled:
            defaults = None
            if settings.reports_default_schedules:
                defaults = DefaultSchedulesInstaller(pool, schedules, resources.keys.tenants)
            workers.append(
                ReportScheduler(
                    book=book,
                    store=generation,
                    generator=generator,
                    clock=clock,
                    poll_s=settings.reports_poll_seconds,
                    catch_up_limit=settings.reports_catch_up_limit,
                    concurrency=settings.reports_generation_concurrency,
                    defaults=defaults,
                )
            )
        return ServiceParts(
            register=[
                lambda server: reports_pb2_grpc.add_ReportsServiceServicer_to_server(
                    servicer, server
                )
            ],
            projectors=[
                Projector(
                    log_client=resources.log,
                    pool=pool,
                    service="reports",
                    projection=ReportsProjection(),
                    stream=topology.domain_stream,
                    filter_subjects=[topology.domain_service_filter("reports")],
                )
            ],
            workers=workers,
            on_stop=[grpc_source.close] if grpc_source is not None else [],
        )

    return ServiceHost(
        service="reports",
        settings=settings,
        service_names=[SERVICE_NAME],
        scopes=SCOPES,
        build=build,
        migrations_package=MIGRATIONS,
        configure_process=configure_process,
    )
