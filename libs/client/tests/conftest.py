"""The services running for real, on a loop of their own, for sync and async tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc
import pytest

from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar.metrics.v1 import trend_pb2
from northstar_alerts.bootstrap import build_host as build_alerts
from northstar_alerts.settings import AlertsSettings
from northstar_client import ClientConfig, MetricsClient, RetryPolicy
from northstar_experiments.bootstrap import build_host as build_experiments
from northstar_experiments.settings import ExperimentsSettings
from northstar_harness.eventually import assert_eventually
from northstar_harness.isolation import drop_namespace, new_namespace
from northstar_ingest.bootstrap import build_host as build_ingest
from northstar_ingest.settings import IngestSettings
from northstar_metrics.bootstrap import build_host as build_metrics
from northstar_metrics.settings import MetricsSettings
from northstar_reports.bootstrap import build_host as build_reports
from northstar_reports.settings import ReportsSettings

KEY = "client-test-key-0123456789"
SERVICE_KEY = "client-test-service-key-0123"
API_KEYS = f"acme:admin:{KEY},northstar:service:{SERVICE_KEY}"
T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a thread: the services run there while tests block on clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Suite:
    """Where the running services are, and a config to reach them."""

    ingest_address: str
    metrics_address: str
    namespace: str
    loop: LoopThread
    hosts: list[Any] = field(default_factory=list)
    experiments_address: str = ""
    alerts_address: str = ""
    alerts_settings: dict[str, Any] = field(default_factory=dict)
    reports_address: str = ""

    def config(self, **changes: Any) -> ClientConfig:
        return ClientConfig(
            ingest_endpoint=changes.pop("ingest_endpoint", self.ingest_address),
            metrics_endpoint=self.metrics_address,
            experiments_endpoint=self.experiments_address,
            alerts_endpoint=self.alerts_address,
            reports_endpoint=self.reports_address,
            api_key=KEY,
            **changes,
        )

    def env(self) -> dict[str, str]:
        """Environment for the CLI run as a subprocess or through CliRunner."""
        return {
            "NORTHSTAR_INGEST_ENDPOINT": self.ingest_address,
            "NORTHSTAR_METRICS_ENDPOINT": self.metrics_address,
            "NORTHSTAR_EXPERIMENTS_ENDPOINT": self.experiments_address,
            "NORTHSTAR_ALERTS_ENDPOINT": self.alerts_address,
            "NORTHSTAR_REPORTS_ENDPOINT": self.reports_address,
            "NORTHSTAR_API_KEY": KEY,
            "NORTHSTAR_CONFIG": "",
            "NORTHSTAR_PROFILE": "",
            "NORTHSTAR_ENDPOINT": "",
            "COLUMNS": "200",
        }

    def start_alerts(self, **overrides: Any) -> str:
        """An alerts host on the suite's namespace (stopped with the suite); its address."""
        settings = AlertsSettings(**{**self.alerts_settings, **overrides})
        host = build_alerts(settings, configure_process=False)
        port = self.loop.run(host.start())
        self.hosts.insert(0, host)
        return f"127.0.0.1:{port}"

    def event_count(self, event: str = "", day: str | None = None) -> float:
        """Events of the tenant today (or on `day`), as the metrics read model sees them."""
        today = day or datetime.now(UTC).date().isoformat()
        with MetricsClient(self.config()) as metrics:
            answer = metrics.trend(
                trend_pb2.TrendRequest(from_date=today, to_date=today, event=event)
            )
        return sum(s.total for s in answer.series if s.HasField("total"))


def _start(nats_url: str, database_url: str, namespace: str, loop: LoopThread) -> Suite:
    common: dict[str, Any] = {
        "grpc_address": "127.0.0.1:0",
        "nats_url": nats_url,
        "database_url": database_url,
        "northstar_namespace": namespace,
        "northstar_api_keys": API_KEYS,
        "northstar_partitions": 4,
        "shutdown_grace_seconds": 1.0,
    }

    async def start() -> Suite:
        ingest = build_ingest(IngestSettings(**common), configure_process=False)
        metrics = build_metrics(
            MetricsSettings(**common, projector_batch_size=2000), configure_process=False
        )
        experiments = build_experiments(
            ExperimentsSettings(**common, projector_batch_size=2000), configure_process=False
        )
        ingest_port = await ingest.start()
        metrics_port = await metrics.start()
        experiments_port = await experiments.start()
        return Suite(
            f"127.0.0.1:{ingest_port}",
            f"127.0.0.1:{metrics_port}",
            namespace,
            loop,
            [experiments, metrics, ingest],
            f"127.0.0.1:{experiments_port}",
        )

    suite = loop.run(start())
    # Alerts answers every RPC; no scheduled evaluation or default rules, so a test sees
    # only the rules and alerts it made. TestRule reads the suite's metrics.
    suite.alerts_settings = {
        **common,
        "alerts_evaluator_enabled": False,
        "alerts_default_rules": False,
        "metrics_service_address": suite.metrics_address,
        "metrics_service_api_key": SERVICE_KEY,
    }
    suite.alerts_address = suite.start_alerts()
    # Reports answers every RPC and gathers its sections from the suite's services; no
    # scheduler (a test generates what it reads) and no deliveries.
    reports = build_reports(
        ReportsSettings(
            **common,
            reports_scheduler_enabled=False,
            reports_dispatcher_enabled=False,
            metrics_service_address=suite.metrics_address,
            experiments_service_address=suite.experiments_address,
            alerts_service_address=suite.alerts_address,
            upstream_api_key=SERVICE_KEY,
        ),
        configure_process=False,
    )
    suite.reports_address = f"127.0.0.1:{loop.run(reports.start())}"
    suite.hosts.insert(0, reports)
    return suite


@pytest.fixture(scope="module")
def suite(nats_url: str, database_url: str) -> Iterator[Suite]:
    """Ingest, metrics, experiments, alerts and reports on a namespace of their own, per test
    module."""
    namespace = new_namespace()
    loop = LoopThread()
    running = _start(nats_url, database_url, namespace, loop)
    try:
        yield running
    finally:
        for host in running.hosts:
            loop.run(host.stop())
        loop.run(drop_namespace(namespace, nats_url=nats_url, database_url=database_url))
        loop.close()


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Retries that give up within a couple of seconds."""
    return RetryPolicy(max_attempts=4, initial_backoff=0.02, max_backoff=0.1, total_timeout=3.0)


class IngestProxy(ingest_pb2_grpc.IngestServiceServicer):
    """A real gRPC server in front of ingest that injects faults after forwarding.

    `lose_answers`: the next N calls are forwarded (ingest stores the events) but the
    caller gets UNAVAILABLE, as when a connection drops after the server did the work.
    `stall_after`: calls after that many are forwarded, then never answered.
    """

    def __init__(self, target: str, *, lose_answers: int = 0, stall_after: int | None = None):
        self._channel = grpc.insecure_channel(target)
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)
        self.lose_answers = lose_answers
        self.stall_after = stall_after
        self.calls = 0
        self.forwarded_events = 0
        self.released = threading.Event()
        self._lock = threading.Lock()

    def Track(
        self, request: ingest_pb2.TrackRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.TrackResponse:
        with self._lock:
            self.calls += 1
            number = self.calls
        answer = self._stub.Track(request, metadata=context.invocation_metadata(), timeout=10)
        with self._lock:
            self.forwarded_events += len(request.events)
            lose = self.lose_answers > 0
            if lose:
                self.lose_answers -= 1
        if self.stall_after is not None and number > self.stall_after:
            self.released.wait()
            context.abort(grpc.StatusCode.UNAVAILABLE, "proxy stopped")
        if lose:
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost (injected)")
        return answer


class SilentServer(ingest_pb2_grpc.IngestServiceServicer):
    """A server that accepts calls and never answers them."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.calls = 0

    def Track(
        self, request: ingest_pb2.TrackRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.TrackResponse:
        self.calls += 1
        self.released.wait()
        context.abort(grpc.StatusCode.UNAVAILABLE, "stopped")
        raise AssertionError("unreachable")


@pytest.fixture
def serve() -> Iterator[Callable[[ingest_pb2_grpc.IngestServiceServicer], str]]:
    """Start a gRPC server for a servicer on a free port; returns its address."""
    servers: list[tuple[grpc.Server, Any]] = []

    def start(servicer: ingest_pb2_grpc.IngestServiceServicer) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append((server, servicer))
        return f"127.0.0.1:{port}"

    yield start
    for server, servicer in servers:
        released = getattr(servicer, "released", None)
        if released is not None:
            released.set()
        server.stop(grace=None)


@pytest.fixture
def wait() -> Callable[..., Any]:
    """`assert_eventually` for sync tests (the check runs on a loop of its own)."""

    def run(check: Callable[[], Any], timeout: float = 30.0, message: str = "") -> Any:
        return asyncio.run(assert_eventually(check, timeout=timeout, message=message))

    return run


@pytest.fixture
def helpers() -> Any:
    """The helper classes of this conftest (test modules cannot import it by name)."""
    return SimpleNamespace(
        IngestProxy=IngestProxy, SilentServer=SilentServer, LoopThread=LoopThread, start=_start
    )
