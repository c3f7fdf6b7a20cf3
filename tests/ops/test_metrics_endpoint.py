"""Each service's Prometheus endpoint, scraped and parsed: RED per RPC, ingest outcomes by
reason, projector lag, batch latency and dead letters, with the names the dashboards and
alert rules use. The services run as processes: telemetry is configured once per process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType

import grpc
import nats
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from northstar.experiments.v1 import experiments_pb2, experiments_pb2_grpc
from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar_harness.eventually import assert_eventually
from northstar_harness.servers import free_port
from northstar_runtime.topology import Topology

WRITER_KEY = "ops-writer-key-0123456789"
API_KEYS = f"acme:ingest+read:{WRITER_KEY}"


@dataclass
class Service:
    """A service process and its two ports."""

    name: str
    process: asyncio.subprocess.Process
    grpc_port: int
    metrics_port: int

    def scrape(self) -> dict[str, list[Sample]]:
        """GET /metrics, parsed by the Prometheus client's parser: samples by family."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError as e:
            raise AssertionError(f"{self.name}: {url} not answering: {e}") from e
        return {f.name: list(f.samples) for f in text_string_to_metric_families(text)}


async def _start(name: str, env: dict[str, str]) -> Service:
    grpc_port, metrics_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"northstar_{name}",
        env={
            **env,
            "GRPC_ADDRESS": f"127.0.0.1:{grpc_port}",
            "METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    service = Service(name, process, grpc_port, metrics_port)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            assert process.returncode is None, f"{name} exited"
            try:
                response = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.aio.AioRpcError as e:
                raise AssertionError(f"{name} not answering yet: {e.code()}") from e
            return response.status == health_pb2.HealthCheckResponse.SERVING

        await assert_eventually(serving, timeout=60)
    return service


@pytest.fixture
async def services(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[dict[str, Service]]:
    """ingest, metrics and experiments as processes, stopped with SIGTERM after the test."""
    env = {
        **os.environ,
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "NORTHSTAR_NAMESPACE": namespace,
        "NORTHSTAR_API_KEYS": API_KEYS,
        "NORTHSTAR_PARTITIONS": "4",
        "SHUTDOWN_GRACE_SECONDS": "1",
        "PROJECTOR_BATCH_SIZE": "100",
    }
    started: dict[str, Service] = {}
    try:
        for name in ("ingest", "metrics", "experiments"):
            started[name] = await _start(name, env)
        yield started
    finally:
        for service in started.values():
            if service.process.returncode is None:
                service.process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(service.process.wait(), timeout=30)
                except TimeoutError:
                    service.process.kill()
                    await service.process.wait()


def _event(event_id: str, name: str = "page.view") -> ingest_pb2.Event:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(datetime.now(UTC))
    return ingest_pb2.Event(event_id=event_id, event=name, user_id="u1", timestamp=t)


def _labelled(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


async def test_every_endpoint_exports_the_suites_metrics(
    services: dict[str, Service], nats_url: str, namespace: str, k8s_validate: ModuleType
) -> None:
    ingest, metrics, experiments = (
        services["ingest"],
        services["metrics"],
        services["experiments"],
    )
    track = "/northstar.ingest.v1.IngestService/Track"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.grpc_port}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        auth = (("authorization", f"Bearer {WRITER_KEY}"),)
        response = await stub.Track(
            ingest_pb2.TrackRequest(events=[_event("m1"), _event("m2"), _event("m3", "")]),
            metadata=auth,
            timeout=10,
        )
        assert [r.status for r in response.results] == [
            ingest_pb2.EVENT_STATUS_ACCEPTED,
            ingest_pb2.EVENT_STATUS_ACCEPTED,
            ingest_pb2.EVENT_STATUS_REJECTED,
        ]
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Track(ingest_pb2.TrackRequest(events=[_event("m4")]), timeout=10)
        assert denied.value.code() is grpc.StatusCode.UNAUTHENTICATED
    list_experiments = "/northstar.experiments.v1.ExperimentsService/ListExperiments"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{experiments.grpc_port}") as channel:
        await experiments_pb2_grpc.ExperimentsServiceStub(channel).ListExperiments(
            experiments_pb2.ListExperimentsRequest(), metadata=auth, timeout=10
        )

    # A poison entry in the log: the projector parks it and counts a dead letter.
    topology = Topology(namespace)
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(topology.events_subject("acme", 0), b"\xff not protobuf")
    finally:
        await nc.close()

    def ingest_exports_red_and_outcomes() -> bool:
        families = ingest.scrape()
        requests = families.get("northstar_rpc_requests", [])
        assert _labelled(requests, "northstar_rpc_requests_total", method=track, code="OK")
        assert _labelled(
            requests, "northstar_rpc_requests_total", method=track, code="UNAUTHENTICATED"
        )
        duration = families.get("northstar_rpc_duration_seconds", [])
        buckets = _labelled(duration, "northstar_rpc_duration_seconds_bucket", method=track)
        assert buckets
        assert {"le", "method", "code"} <= set(buckets[0].labels)
        counts = _labelled(duration, "northstar_rpc_duration_seconds_count", code="OK")
        assert sum(s.value for s in counts) == 1
        events = families.get("northstar_ingest_events", [])
        accepted = _labelled(events, "northstar_ingest_events_total", outcome="accepted")
        assert sum(s.value for s in accepted) == 2
        rejected = _labelled(events, "northstar_ingest_events_total", outcome="rejected")
        assert [(s.labels["reason"], s.value) for s in rejected] == [("required", 1.0)]
        return True

    await assert_eventually(ingest_exports_red_and_outcomes, timeout=10)

    def metrics_exports_projector_health() -> bool:
        families = metrics.scrape()
        projections = {
            s.labels["projection"] for s in families.get("northstar_projector_position", [])
        }
        assert projections == {"activity", "ingest_requests"}
        for gauge in ("northstar_projector_lag", "northstar_projector_lag_seconds"):
            assert {s.labels["projection"] for s in families[gauge]} == projections
            assert all(s.value >= 0 for s in families[gauge])
        applied = families.get("northstar_projector_entries_applied", [])
        assert _labelled(
            applied, "northstar_projector_entries_applied_total", projection="activity"
        )
        batches = families.get("northstar_projector_batch_duration_seconds", [])
        assert _labelled(
            batches, "northstar_projector_batch_duration_seconds_count", projection="activity"
        )
        parked = families.get("northstar_projector_dead_letters", [])
        dead = _labelled(parked, "northstar_projector_dead_letters_total", projection="activity")
        assert sum(s.value for s in dead) == 1
        return True

    await assert_eventually(metrics_exports_projector_health, timeout=30)

    def experiments_exports_red_and_projector_health() -> bool:
        families = experiments.scrape()
        requests = families.get("northstar_rpc_requests", [])
        assert _labelled(
            requests, "northstar_rpc_requests_total", method=list_experiments, code="OK"
        )
        projections = {
            s.labels["projection"] for s in families.get("northstar_projector_position", [])
        }
        assert projections == {"experiments", "experiment_events"}
        for gauge in ("northstar_projector_lag", "northstar_projector_lag_seconds"):
            assert {s.labels["projection"] for s in families[gauge]} == projections
        applied = families.get("northstar_projector_entries_applied", [])
        assert _labelled(
            applied, "northstar_projector_entries_applied_total", projection="experiment_events"
        )
        parked = families.get("northstar_projector_dead_letters", [])
        dead = _labelled(
            parked, "northstar_projector_dead_letters_total", projection="experiment_events"
        )
        assert sum(s.value for s in dead) == 1
        return True

    await assert_eventually(experiments_exports_red_and_projector_health, timeout=30)

    # Every series the dashboards and alert rules name is one these endpoints export.
    exported: set[str] = set()
    for service in (ingest, metrics, experiments):
        exported |= {s.name for samples in service.scrape().values() for s in samples}
    referenced = k8s_validate.referenced_metrics(
        k8s_validate.render(k8s_validate.K8S / "overlays" / "prod")
    )
    assert referenced <= exported, referenced - exported
    assert {n for n in exported if n.startswith("northstar_")} <= k8s_validate.EXPORTED_METRICS
