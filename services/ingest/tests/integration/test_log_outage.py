"""The log goes away: UNAVAILABLE within the deadline, NOT_SERVING, and nothing acked is lost."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2

from northstar.ingest.v1 import ingest_pb2
from northstar_harness.eventually import assert_eventually
from northstar_harness.servers import NatsServer

from .conftest import (
    ACCEPTED,
    ADMIN_KEY,
    DUPLICATE,
    WRITER_KEY,
    IngestUnderTest,
    StartIngest,
    auth,
    error_details,
    event,
    statuses,
)

pytestmark = pytest.mark.faults

DEADLINE = 3.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def batch(prefix: str, n: int = 20) -> list[ingest_pb2.Event]:
    return [event(f"{prefix}-{i}", user_id=f"u-{i}") for i in range(n)]


async def track_during_outage(ingest: IngestUnderTest, events: list[ingest_pb2.Event]) -> None:
    """Track must fail UNAVAILABLE (with a RetryInfo), and answer before its deadline."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await ingest.stub.Track(
            ingest_pb2.TrackRequest(events=events), metadata=auth(WRITER_KEY), timeout=DEADLINE
        )
    elapsed = time.monotonic() - started
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
    assert elapsed < DEADLINE
    details = error_details(failed.value)
    assert details.retry_info is not None
    assert details.error_info is not None
    assert details.error_info.reason == "LOG_UNAVAILABLE"


async def stop(server: NatsServer, how: str) -> None:
    """Stop the server off the event loop, so the service notices as it would in life."""
    await asyncio.to_thread(server.kill if how == "kill" else server.stop)


@pytest.fixture
async def on_private_nats(start_ingest: StartIngest, private_nats: NatsServer) -> IngestUnderTest:
    """Ingest on a NATS server of the test's own."""
    return await start_ingest(nats_url=private_nats.url)


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_unavailable_while_the_log_is_down_and_nothing_acked_is_lost(
    on_private_nats: IngestUnderTest, private_nats: NatsServer, how: str
) -> None:
    ingest = on_private_nats
    before = await ingest.track(batch("before"))
    assert statuses(before) == [ACCEPTED] * 20
    assert await ingest.health() == SERVING

    await stop(private_nats, how)
    # At once, before the service may have noticed, and again once it has.
    await track_during_outage(ingest, batch("down"))

    async def not_serving() -> bool:
        assert await ingest.health() == NOT_SERVING
        assert await ingest.health("northstar.ingest.v1.IngestService") == NOT_SERVING
        return True

    await assert_eventually(not_serving, timeout=10)
    await track_during_outage(ingest, batch("down"))

    await asyncio.to_thread(private_nats.start)
    recovery = batch("after")

    async def accepts_again() -> ingest_pb2.TrackResponse:
        try:
            response = await ingest.track(recovery, timeout=DEADLINE)
        except grpc.aio.AioRpcError as e:
            raise AssertionError(f"Track still fails: {e.code()}") from e
        # A retry after an attempt the log stored but never confirmed answers DUPLICATE.
        assert set(statuses(response)) <= {ACCEPTED, DUPLICATE}
        return response

    await assert_eventually(accepts_again, timeout=30)
    assert await ingest.health() == SERVING

    logged = await ingest.logged_by_id()
    acknowledged = {e.event_id for e in batch("before")} | {e.event_id for e in recovery}
    # Every acknowledged event is in the log once; the refused ones are not.
    assert set(logged) == acknowledged


async def test_unavailable_when_the_log_is_down_for_a_while(
    on_private_nats: IngestUnderTest, private_nats: NatsServer
) -> None:
    ingest = on_private_nats
    await stop(private_nats, "stop")

    async def not_serving() -> bool:
        return await ingest.health() == NOT_SERVING

    await assert_eventually(not_serving, timeout=10)
    for attempt in range(5):
        await track_during_outage(ingest, batch(f"down-{attempt}"))
    # The stream answers the same way, request by request.
    call = ingest.stub.TrackStream(
        iter([ingest_pb2.TrackStreamRequest(events=batch("s"), request_id="r")]),
        metadata=auth(WRITER_KEY),
        timeout=DEADLINE,
    )
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async for _ in call:
            pass
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE


class Partition:
    """A TCP relay to NATS that can stop passing bytes without closing anything.

    A network partition or a frozen server: the connection stays up and nobody
    answers, so only timeouts can tell.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._open = asyncio.Event()
        self._open.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        """Listen on a free port; the NATS URL to give the service."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    def cut(self) -> None:
        """Stop passing bytes either way (they wait, unread, until `heal`)."""
        self._open.clear()

    def heal(self) -> None:
        """Pass bytes again."""
        self._open.set()

    async def close(self) -> None:
        """Stop listening and drop every relayed connection."""
        self._open.set()
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        self._writers += [client_w, server_w]
        for source, sink in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                await self._open.wait()
                sink.write(data)
                await sink.drain()
        sink.close()


@pytest.fixture
async def partition(private_nats: NatsServer) -> AsyncIterator[Partition]:
    """A relay between the service and its private NATS server."""
    relay = Partition(private_nats.port)
    yield relay
    await relay.close()


@pytest.fixture
async def behind_partition(start_ingest: StartIngest, partition: Partition) -> IngestUnderTest:
    """Ingest reaching its private NATS through the relay."""
    return await start_ingest(nats_url=await partition.start())


async def test_unavailable_within_the_deadline_when_the_log_does_not_answer(
    behind_partition: IngestUnderTest, partition: Partition
) -> None:
    ingest = behind_partition
    assert statuses(await ingest.track(batch("before"))) == [ACCEPTED] * 20
    partition.cut()
    try:
        await track_during_outage(ingest, batch("down"))
    finally:
        partition.heal()


async def test_track_recovers_when_a_partition_heals(
    behind_partition: IngestUnderTest, partition: Partition
) -> None:
    ingest = behind_partition
    assert statuses(await ingest.track(batch("before"))) == [ACCEPTED] * 20
    partition.cut()
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await ingest.track(batch("during"), timeout=1.0)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    partition.heal()

    async def accepts_again() -> bool:
        response = await ingest.track(batch("after"), timeout=DEADLINE)
        assert set(statuses(response)) <= {ACCEPTED, DUPLICATE}
        return True

    await assert_eventually(accepts_again, timeout=20)
    logged = await ingest.logged_by_id()
    before_and_after = {e.event_id for e in batch("before") + batch("after")}
    during = {e.event_id for e in batch("during")}
    # The unconfirmed request may or may not have been stored; the acknowledged ones are.
    assert before_and_after <= set(logged) <= before_and_after | during


async def test_health_turns_not_serving_when_the_log_does_not_answer(
    behind_partition: IngestUnderTest, partition: Partition
) -> None:
    ingest = behind_partition
    partition.cut()
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await ingest.track(batch("during"), timeout=1.0)

        async def not_serving() -> bool:
            return await ingest.health() == NOT_SERVING

        await assert_eventually(not_serving, timeout=15)
    finally:
        partition.heal()


async def test_erase_user_is_unavailable_while_the_log_is_down_then_appends_once(
    on_private_nats: IngestUnderTest, private_nats: NatsServer
) -> None:
    ingest = on_private_nats
    request = ingest_pb2.EraseUserRequest(user_id="u-erased")
    await stop(private_nats, "stop")
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await ingest.stub.EraseUser(request, metadata=auth(ADMIN_KEY), timeout=DEADLINE)
    assert time.monotonic() - started < DEADLINE
    details = error_details(failed.value)
    assert details.code == grpc.StatusCode.UNAVAILABLE
    assert details.error_info is not None and details.error_info.reason == "LOG_UNAVAILABLE"
    assert details.retry_info is not None

    await asyncio.to_thread(private_nats.start)

    async def erased() -> ingest_pb2.EraseUserResponse:
        try:
            return await ingest.stub.EraseUser(request, metadata=auth(ADMIN_KEY), timeout=DEADLINE)
        except grpc.aio.AioRpcError as e:
            raise AssertionError(f"EraseUser still fails: {e.code()}") from e

    first = await assert_eventually(erased, timeout=30)
    again = await erased()  # the client's retry: the same erasure, stored once
    assert (again.erasure_id, again.log_position) == (first.erasure_id, first.log_position)
