"""The one place that wires the experiments service's parts."""

from __future__ import annotations

from northstar.experiments.v1 import experiments_pb2_grpc
from northstar_experiments.adapters.experiment_store import ExperimentStore
from northstar_experiments.adapters.projections import DefinitionsProjection, ExposuresProjection
from northstar_experiments.adapters.read_model import ReadModel
from northstar_experiments.entrypoints.grpc import SCOPES, SERVICE_NAME, ExperimentsServicer
from northstar_experiments.settings import ExperimentsSettings
from northstar_runtime.projector import Projector
from northstar_runtime.service import Resources, ServiceHost, ServiceParts

MIGRATIONS = "northstar_experiments.migrations"


def build_host(settings: ExperimentsSettings, *, configure_process: bool = True) -> ServiceHost:
    """A ServiceHost running the experiments service with these settings."""

    async def build(resources: Resources) -> ServiceParts:
        assert resources.pool is not None
        topology = resources.topology
        servicer = ExperimentsServicer(
            store=ExperimentStore(resources.log),
            read_model=ReadModel(resources.pool),
            log=resources.log,
            partitions=settings.northstar_partitions,
        )
        return ServiceParts(
            register=[
                lambda server: experiments_pb2_grpc.add_ExperimentsServiceServicer_to_server(
                    servicer, server
                )
            ],
            projectors=[
                Projector(
                    log_client=resources.log,
                    pool=resources.pool,
                    service="experiments",
                    projection=DefinitionsProjection(),
                    stream=topology.domain_stream,
                    filter_subjects=[topology.domain_service_filter("experiments")],
                    batch_size=settings.projector_batch_size,
                ),
                Projector(
                    log_client=resources.log,
                    pool=resources.pool,
                    service="experiments",
                    projection=ExposuresProjection(),
                    stream=topology.events_stream,
                    filter_subjects=[topology.events_subjects],
                    batch_size=settings.projector_batch_size,
                ),
            ],
        )

    return ServiceHost(
        service="experiments",
        settings=settings,
        service_names=[SERVICE_NAME],
        scopes=SCOPES,
        build=build,
        migrations_package=MIGRATIONS,
        configure_process=configure_process,
    )
