"""The life of a service process: wire, start, serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import grpc
import structlog

from northstar_runtime.auth import ApiKeyStore, Scope
from northstar_runtime.config import ServiceSettings
from northstar_runtime.db import create_pool, load_migrations, migrate
from northstar_runtime.grpc_server import GrpcServer, create_server
from northstar_runtime.log import LogClient, NatsAuth
from northstar_runtime.projector import Projector
from northstar_runtime.telemetry import configure_logging, configure_telemetry
from northstar_runtime.tls import server_credentials
from northstar_runtime.topology import Topology

log = structlog.get_logger("northstar.service")


@dataclass
class Resources:
    """What the runtime hands a service's bootstrap: settings and live connections."""

    settings: ServiceSettings
    topology: Topology
    log: LogClient
    pool: asyncpg.Pool | None
    keys: ApiKeyStore


class Worker(Protocol):
    """A background loop the host runs: started after the gRPC server, stopped before close.

    `run` returns once `stop` was called (or raises); the host waits a bounded time for it.
    """

    @property
    def name(self) -> str: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ServiceParts:
    """What a service's bootstrap returns: its gRPC servicers and background loops."""

    register: Sequence[Callable[[grpc.aio.Server], None]]
    projectors: Sequence[Projector] = ()
    workers: Sequence[Worker] = ()
    on_stop: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)


class ServiceHost:
    """Runs one service: connections, migrations, gRPC server, projectors, drain."""

    def __init__(
        self,
        *,
        service: str,
        settings: ServiceSettings,
        service_names: Sequence[str],
        scopes: Mapping[str, Scope],
        build: Callable[[Resources], Awaitable[ServiceParts]],
        migrations_package: str | None = None,
        configure_process: bool = True,
    ) -> None:
        self.service = service
        self.settings = settings
        self._build = build
        self._service_names = service_names
        self._scopes = scopes
        self._migrations_package = migrations_package
        self._configure_process = configure_process
        self.topology = Topology(settings.northstar_namespace)
        self.grpc: GrpcServer | None = None
        self.parts: ServiceParts | None = None
        self.resources: Resources | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False
        self._log_client: LogClient | None = None
        self._pool: asyncpg.Pool | None = None

    @property
    def port(self) -> int:
        """The bound gRPC port."""
        assert self.grpc is not None
        return self.grpc.port

    async def start(self) -> int:
        """Connect, migrate, serve; returns the gRPC port once SERVING.

        A failure part way (the log or the database unreachable) stops what was
        already started, so a failed start leaks no server, connection or pool.
        """
        try:
            return await self._start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.stop()
            raise

    async def _start(self) -> int:
        s = self.settings
        if self._configure_process:
            configure_logging(service=self.service, level=s.log_level, fmt=s.log_format)
            configure_telemetry(service=self.service, metrics_address=s.metrics_address)
        keys = ApiKeyStore(file=s.northstar_api_keys_file, inline=s.northstar_api_keys)
        # Serve health (NOT_SERVING) before the dependencies are reachable.
        credentials = None
        if s.grpc_tls_cert_file is not None and s.grpc_tls_key_file is not None:
            credentials = server_credentials(
                s.grpc_tls_cert_file, s.grpc_tls_key_file, s.grpc_tls_client_ca_file
            )
        self.grpc, late = await create_server(
            s.grpc_address,
            keys=keys,
            scopes=self._scopes,
            service_names=self._service_names,
            credentials=credentials,
            tenant_max_in_flight=s.northstar_tenant_max_in_flight,
            max_concurrent_rpcs=s.grpc_max_concurrent_rpcs,
        )
        self._log_client = log_client = await LogClient.connect(
            s.nats_url,
            self.topology,
            name=f"northstar-{self.service}",
            on_state=self._on_log_state,
            auth=NatsAuth.from_settings(s),
        )
        await log_client.ensure_streams(
            replicas=s.northstar_stream_replicas, sync_always=s.northstar_stream_sync_always
        )
        pool = None
        if self._migrations_package is not None:
            schema = self.topology.schema(self.service)
            self._pool = pool = await create_pool(s.database_url, schema)
            await migrate(pool, schema, load_migrations(self._migrations_package))
        self.resources = Resources(s, self.topology, log_client, pool, keys)
        self.parts = await self._build(self.resources)
        # Checkpoint tables exist before the first query can ask for a position.
        for projector in self.parts.projectors:
            await projector.setup()
        late.install(self.parts.register)
        for loop in (*self.parts.projectors, *self.parts.workers):
            self._tasks.append(asyncio.create_task(loop.run(), name=loop.name))
        self._ready = True
        await self.grpc.set_serving(log_client.connected)
        log.info("service serving", port=self.grpc.port, address=s.grpc_address)
        return self.grpc.port

    async def _on_log_state(self, connected: bool) -> None:
        if self.grpc is not None and self._ready:
            await self.grpc.set_serving(connected)

    async def stop(self) -> None:
        """NOT_SERVING, drain in-flight calls, stop loops, close connections."""
        self._ready = False
        if self.grpc is not None:
            await self.grpc.stop(self.settings.shutdown_grace_seconds)
        if self.parts is not None:
            for loop in (*self.parts.workers, *self.parts.projectors):
                loop.stop()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=15)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error(
                        "background task failed", task=task.get_name(), error=repr(task.exception())
                    )
        if self.parts is not None:
            for hook in self.parts.on_stop:
                await hook()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._log_client is not None:
            await self._log_client.close()
            self._log_client = None
        log.info("service stopped")

    async def run_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            await stop.wait()
            log.info("stop signal received; draining")
        finally:
            with contextlib.suppress(Exception):
                await self.stop()
