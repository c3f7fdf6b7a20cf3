"""The ingest service in this process, over real NATS, and ways to look into its log."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import nats
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from nats.js import api

from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar.log.v1 import log_pb2
from northstar_ingest.bootstrap import build_host
from northstar_ingest.settings import IngestSettings
from northstar_runtime.codec import decode_batch
from northstar_runtime.service import ServiceHost
from northstar_runtime.topology import Topology

TENANT = "acme"
OTHER_TENANT = "globex"
WRITER_KEY = "acme-writer-key-0123456789"
READER_KEY = "acme-reader-key-0123456789"
ADMIN_KEY = "acme-admin-key-0123456789"
OTHER_WRITER_KEY = "globex-writer-key-0123456789"
API_KEYS = ",".join(
    [
        f"{TENANT}:ingest:{WRITER_KEY}",
        f"{TENANT}:read:{READER_KEY}",
        f"{TENANT}:admin:{ADMIN_KEY}",
        f"{OTHER_TENANT}:ingest+read:{OTHER_WRITER_KEY}",
    ]
)
PARTITIONS = 4

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US

ACCEPTED = ingest_pb2.EVENT_STATUS_ACCEPTED
DUPLICATE = ingest_pb2.EVENT_STATUS_DUPLICATE
REJECTED = ingest_pb2.EVENT_STATUS_REJECTED

SERVICE_NAME = "northstar.ingest.v1.IngestService"
TRACK_METHOD = f"/{SERVICE_NAME}/Track"


def auth(key: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


def now_us() -> int:
    """The wall clock in microseconds, as the service reads it."""
    return time.time_ns() // 1000


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of a time in microseconds since the epoch."""
    return timestamp_pb2.Timestamp(seconds=us // SECOND_US, nanos=us % SECOND_US * 1000)


def event(event_id: str = "", name: str = "page.view", **fields: Any) -> ingest_pb2.Event:
    """A wire event; `timestamp_us` sets the timestamp, other keywords the proto fields."""
    ts_us = fields.pop("timestamp_us", None)
    ev = ingest_pb2.Event(event_id=event_id, event=name, **fields)
    if ts_us is not None:
        ev.timestamp.CopyFrom(timestamp(ts_us))
    return ev


def statuses(response: Any) -> list[int]:
    """The per-event statuses of a Track(Stream) response, in order."""
    return [r.status for r in response.results]


@dataclass(frozen=True)
class ErrorDetails:
    """The google.rpc details of a failed call, unpacked."""

    code: grpc.StatusCode
    error_info: error_details_pb2.ErrorInfo | None
    bad_request: error_details_pb2.BadRequest | None
    retry_info: error_details_pb2.RetryInfo | None

    @property
    def violated_fields(self) -> list[str]:
        """The fields a BadRequest names, in order."""
        assert self.bad_request is not None, "no google.rpc.BadRequest detail"
        return [v.field for v in self.bad_request.field_violations]


def error_details(error: grpc.aio.AioRpcError) -> ErrorDetails:
    """Decode `grpc-status-details-bin`; fails when the status carries none."""
    status = rpc_status.from_call(error)
    assert status is not None, f"{error.code()} without google.rpc status details"
    found: dict[type[Any], Any] = {}
    for packed in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                found[kind] = message
    return ErrorDetails(
        code=error.code(),
        error_info=found.get(error_details_pb2.ErrorInfo),
        bad_request=found.get(error_details_pb2.BadRequest),
        retry_info=found.get(error_details_pb2.RetryInfo),
    )


@dataclass(frozen=True)
class LoggedEvent:
    """One product event as the log holds it, with the message that carried it."""

    subject: str
    tenant: str
    partition: int
    stream_seq: int
    event: log_pb2.StoredEvent


@dataclass
class IngestUnderTest:
    """A running ingest service, a channel to it and a reader of its log."""

    host: ServiceHost
    channel: grpc.aio.Channel
    stub: ingest_pb2_grpc.IngestServiceStub
    nats_url: str
    topology: Topology

    async def track(
        self,
        events: Sequence[ingest_pb2.Event],
        *,
        key: str = WRITER_KEY,
        timeout: float = 10.0,
        **request_fields: Any,
    ) -> ingest_pb2.TrackResponse:
        """Call Track with these events."""
        request = ingest_pb2.TrackRequest(events=events, **request_fields)
        response: ingest_pb2.TrackResponse = await self.stub.Track(
            request, metadata=auth(key), timeout=timeout
        )
        return response

    async def track_error(
        self, request: ingest_pb2.TrackRequest, *, key: str | None = WRITER_KEY
    ) -> grpc.aio.AioRpcError:
        """Call Track expecting it to fail; the error."""
        metadata = auth(key) if key is not None else ()
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await self.stub.Track(request, metadata=metadata, timeout=10)
        return failed.value

    async def health(self, service: str = "") -> int:
        """The standard health service's answer for `service` ("" is the server)."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(answer.status)

    async def logged_events(self) -> list[LoggedEvent]:
        """Every product event in the namespace's EVENTS stream, in log order."""
        nc = await nats.connect(
            self.nats_url, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=0
        )
        try:
            js = nc.jetstream(timeout=5)
            info = await js.stream_info(self.topology.events_stream)
            expected = info.state.messages
            if expected == 0:
                return []
            sub = await js.pull_subscribe(
                self.topology.events_subjects,
                stream=self.topology.events_stream,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.ALL,
                    ack_policy=api.AckPolicy.NONE,
                    inactive_threshold=30.0,
                ),
            )
            messages = []
            while len(messages) < expected:
                messages += await sub.fetch(expected - len(messages), timeout=5)
            await sub.unsubscribe()
        finally:
            await nc.close()
        logged = []
        for msg in messages:
            batch = decode_batch(msg.data, msg.headers or {})
            logged += [
                LoggedEvent(
                    msg.subject, batch.tenant, batch.partition, msg.metadata.sequence.stream, e
                )
                for e in batch.events
            ]
        return logged

    async def logged_by_id(self) -> dict[str, LoggedEvent]:
        """The logged events by event id; fails if any id is logged twice."""
        logged = await self.logged_events()
        by_id = {e.event.event_id: e for e in logged}
        assert len(by_id) == len(logged), sorted(e.event.event_id for e in logged)
        return by_id


StartIngest = Callable[..., Awaitable[IngestUnderTest]]


@pytest.fixture
async def start_ingest(nats_url: str, namespace: str) -> AsyncIterator[StartIngest]:
    """Start ingest services in this process (settings overridable); all stopped after."""
    started: list[IngestUnderTest] = []

    async def start(**overrides: Any) -> IngestUnderTest:
        settings: dict[str, Any] = {
            "grpc_address": "127.0.0.1:0",
            "nats_url": nats_url,
            "northstar_namespace": namespace,
            "northstar_api_keys": API_KEYS,
            "northstar_partitions": PARTITIONS,
            "shutdown_grace_seconds": 1.0,
        }
        settings.update(overrides)
        host = build_host(IngestSettings(**settings), configure_process=False)
        port = await host.start()
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ],
        )
        service = IngestUnderTest(
            host=host,
            channel=channel,
            stub=ingest_pb2_grpc.IngestServiceStub(channel),
            nats_url=settings["nats_url"],
            topology=Topology(namespace),
        )
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in reversed(started):
            await service.channel.close()
            await service.host.stop()


@pytest.fixture
async def ingest(start_ingest: StartIngest) -> IngestUnderTest:
    """An ingest service with the default settings."""
    return await start_ingest()
