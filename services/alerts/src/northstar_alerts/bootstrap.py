"""The one place that wires the alerts service's parts."""

from __future__ import annotations

import os
import socket
import uuid

from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.adapters.alert_store import AlertLog, EventOutbox
from northstar_alerts.adapters.delivery_store import DeliveryStore
from northstar_alerts.adapters.metrics_client import MetricsClient
from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.adapters.schedule import RuleSchedule, RulesProjection
from northstar_alerts.adapters.silence_store import SilenceStore
from northstar_alerts.application.alerts import AlertBook
from northstar_alerts.application.defaults import DefaultRulesInstaller
from northstar_alerts.application.dispatcher import Dispatcher
from northstar_alerts.application.evaluation import EvaluationRecorder
from northstar_alerts.application.scheduler import EvaluationScheduler
from northstar_alerts.entrypoints.grpc import SCOPES, SERVICE_NAME, AlertsServicer
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.projector import Projector
from northstar_runtime.service import Resources, ServiceHost, ServiceParts, Worker

MIGRATIONS = "northstar_alerts.migrations"
# A lease outlives the evaluation deadline by this much, so a live evaluator keeps it.
LEASE_MARGIN_S = 30.0


def evaluator_id() -> str:
    """This replica's lease owner name: host, process and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def build_host(settings: AlertsSettings, *, configure_process: bool = True) -> ServiceHost:
    """A ServiceHost running the alerts service with these settings."""

    async def build(resources: Resources) -> ServiceParts:
        assert resources.pool is not None
        pool, topology = resources.pool, resources.topology
        rules = RuleStore(resources.log)
        metrics = MetricsClient.from_settings(settings)
        outbox = EventOutbox(pool, resources.log)
        schedule = RuleSchedule(
            pool,
            owner=evaluator_id(),
            lease_s=settings.alerts_evaluation_timeout_seconds + LEASE_MARGIN_S,
        )
        book = AlertBook(pool, outbox, AlertLog(resources.log), rules, metrics.observe)
        silences = SilenceStore(resources.log)
        deliveries = DeliveryStore(pool)
        servicer = AlertsServicer(store=rules, book=book, silences=silences, deliveries=deliveries)
        workers: list[Worker] = [Dispatcher(deliveries, settings)]
        if settings.alerts_evaluator_enabled:
            defaults = None
            if settings.alerts_default_rules:
                defaults = DefaultRulesInstaller(pool, rules, resources.keys.tenants)
            workers.append(
                EvaluationScheduler(
                    schedule=schedule,
                    recorder=EvaluationRecorder(pool, schedule, outbox, silences=silences.active),
                    observe=metrics.observe,
                    outbox=outbox,
                    concurrency=settings.alerts_evaluation_concurrency,
                    timeout_s=settings.alerts_evaluation_timeout_seconds,
                    poll_s=settings.alerts_poll_seconds,
                    defaults=defaults,
                    keep_evaluations_days=settings.alerts_evaluations_keep_days,
                )
            )
        return ServiceParts(
            register=[
                lambda server: alerts_pb2_grpc.add_AlertsServiceServicer_to_server(servicer, server)
            ],
            projectors=[
                Projector(
                    log_client=resources.log,
                    pool=pool,
                    service="alerts",
                    projection=RulesProjection(),
                    stream=topology.domain_stream,
                    filter_subjects=[topology.domain_service_filter("alerts")],
                )
            ],
            workers=workers,
            on_stop=[metrics.close],
        )

    return ServiceHost(
        service="alerts",
        settings=settings,
        service_names=[SERVICE_NAME],
        scopes=SCOPES,
        build=build,
        migrations_package=MIGRATIONS,
        configure_process=configure_process,
    )
