"""The one place that wires the alerts service's parts."""

from __future__ import annotations

from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.adapters.delivery_store import DeliveryStore
from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.adapters.silence_store import SilenceStore
from northstar_alerts.application.dispatcher import Dispatcher
from northstar_alerts.entrypoints.grpc import SCOPES, SERVICE_NAME, AlertsServicer
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.service import Resources, ServiceHost, ServiceParts

MIGRATIONS = "northstar_alerts.migrations"


def build_host(settings: AlertsSettings, *, configure_process: bool = True) -> ServiceHost:
    """A ServiceHost running the alerts service with these settings."""

    async def build(resources: Resources) -> ServiceParts:
        assert resources.pool is not None  # the service has migrations, so a pool
        deliveries = DeliveryStore(resources.pool)
        servicer = AlertsServicer(
            store=RuleStore(resources.log),
            silences=SilenceStore(resources.log),
            deliveries=deliveries,
        )
        return ServiceParts(
            register=[
                lambda server: alerts_pb2_grpc.add_AlertsServiceServicer_to_server(servicer, server)
            ],
            projectors=[],
            workers=[Dispatcher(deliveries, settings)],
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
