"""The metrics service killed with SIGKILL mid-replay, and rebuilt: no loss, no double count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2

from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar.metrics.v1 import metrics_pb2, metrics_pb2_grpc
from northstar_harness.eventually import assert_eventually
from northstar_harness.servers import NatsServer, PostgresServer, free_port
from northstar_ingest.bootstrap import build_host as build_ingest
from northstar_ingest.settings import IngestSettings
from northstar_metrics.bootstrap import build_host as build_metrics
from northstar_metrics.settings import MetricsSettings

from .conftest import READER_KEY, WRITER_KEY, auth, settings_env
from .processes import ServiceProcess, process_env

pytestmark = pytest.mark.faults

START = datetime(2026, 9, 1, 8, tzinfo=UTC)
USERS = 300
DAYS = 40


def generated_events() -> list[ingest_pb2.Event]:
    """A deterministic spread of activity: user u is active every (u % 7 + 1)-th day."""
    events = []
    for u in range(USERS):
        for d in range(0, DAYS, u % 7 + 1):
            t = timestamp_pb2.Timestamp()
            t.FromDatetime(START + timedelta(days=d, minutes=u))
            events.append(
                ingest_pb2.Event(
                    event_id=f"u{u}-d{d}", event="page.view", user_id=f"u{u}", timestamp=t
                )
            )
    return events


def expected(
    events: list[ingest_pb2.Event], first: date, last: date
) -> list[tuple[str, int, int, int]]:
    days: dict[str, set[date]] = {}
    for e in events:
        days.setdefault(e.user_id, set()).add(e.timestamp.ToDatetime(tzinfo=UTC).date())
    rows = []
    d = first
    while d <= last:
        counts = [
            sum(1 for s in days.values() if any(d - timedelta(days=w - 1) <= x <= d for x in s))
            for w in (1, 7, 30)
        ]
        rows.append((d.isoformat(), *counts))
        d += timedelta(days=1)
    return rows


@pytest.fixture
async def ingested(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[list[ingest_pb2.Event]]:
    """The generated events, tracked through a real ingest service."""
    host = build_ingest(
        IngestSettings(**settings_env(nats_url, database_url, namespace)), configure_process=False
    )  # type: ignore[arg-type]
    port = await host.start()
    events = generated_events()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for i in range(0, len(events), 100):
            response = await stub.Track(
                ingest_pb2.TrackRequest(events=events[i : i + 100]),
                metadata=auth(WRITER_KEY),
                timeout=10,
            )
            assert response.accepted == len(events[i : i + 100])
    await host.stop()
    yield events


async def test_sigkill_mid_replay_and_rebuild_give_exact_answers(
    ingested: list[ingest_pb2.Event], nats_url: str, database_url: str, namespace: str
) -> None:
    port = free_port()
    env = {
        **process_env(port, nats_url, database_url, namespace),
        "PROJECTOR_BATCH_SIZE": "1",  # one log message per transaction: many chances to die mid-way
    }
    metrics = ServiceProcess(env)
    db = await asyncpg.connect(database_url)
    checkpoint_sql = (
        f'SELECT coalesce(max(position), 0) FROM "{namespace}_metrics".projection_checkpoints'
    )

    async def position() -> int:
        try:
            return int(await db.fetchval(checkpoint_sql))
        except asyncpg.exceptions.UndefinedTableError:
            return 0

    await metrics.start()
    await assert_eventually(lambda: _past(position, 3), timeout=30)
    await metrics.kill()
    killed_at = await position()

    first, last = START.date(), (START + timedelta(days=DAYS + 5)).date()
    truth = expected(ingested, first, last)
    env_with_full_batches = {**env, "PROJECTOR_BATCH_SIZE": "500"}
    metrics.env = env_with_full_batches
    await metrics.start()
    try:
        answer = await _settled(port, first, last, truth)
        assert killed_at < answer.log_position
    finally:
        assert await metrics.terminate() == 0  # graceful drain on SIGTERM

    assert await metrics.run("rebuild") == 0
    assert await position() == 0
    await metrics.start()
    try:
        await _settled(port, first, last, truth)
    finally:
        await metrics.terminate()
        await db.close()


async def _past(position: object, n: int) -> bool:
    return await position() >= n  # type: ignore[operator,no-any-return]


async def _settled(
    port: int, first: date, last: date, truth: list[tuple[str, int, int, int]]
) -> metrics_pb2.ActiveUsersResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = metrics_pb2_grpc.MetricsServiceStub(channel)

        async def exact() -> metrics_pb2.ActiveUsersResponse:
            try:
                answer = await stub.ActiveUsers(
                    metrics_pb2.ActiveUsersRequest(
                        from_date=first.isoformat(), to_date=last.isoformat()
                    ),
                    metadata=auth(READER_KEY),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as e:
                raise AssertionError(f"not serving yet: {e.code()}") from e
            assert [(d.date, d.dau, d.wau, d.mau) for d in answer.days] == truth
            return answer

        return await assert_eventually(exact, timeout=60, interval=0.2)


async def test_ingest_killed_under_a_retrying_load_loses_and_doubles_nothing(
    nats_url: str, database_url: str, namespace: str
) -> None:
    # A client that sends every request twice, and retries it until answered, while ingest
    # is killed with SIGKILL and started again on the same port: every event is answered
    # ACCEPTED or DUPLICATE, and the numbers equal a reference over exactly those events.
    port = free_port()
    env = process_env(port, nats_url, database_url, namespace)
    ingest = ServiceProcess(env, module="northstar_ingest")
    metrics_port = free_port()
    metrics = ServiceProcess({**env, "GRPC_ADDRESS": f"127.0.0.1:{metrics_port}"})
    await ingest.start()
    await metrics.start()
    events = generated_events()
    batches = [events[i : i + 50] for i in range(0, len(events), 50)]
    told: dict[str, int] = {}  # event id -> final status the client was told
    answered = 0
    attempts = 0

    async def send_until_answered(stub: ingest_pb2_grpc.IngestServiceStub, batch: list) -> None:
        nonlocal attempts
        request = ingest_pb2.TrackRequest(events=batch)
        for _ in range(2):  # every request twice, as a careless client would
            while True:
                attempts += 1
                try:
                    reply = await stub.Track(request, metadata=auth(WRITER_KEY), timeout=5)
                except grpc.aio.AioRpcError as e:
                    assert e.code() in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ), e
                    await asyncio.sleep(0.1)
                    continue
                for r in reply.results:
                    told[r.event_id] = r.status
                break

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            # The kill comes from beside the client, so it can land while a request is in
            # flight (stored but not answered: its retry must be told DUPLICATE).
            a_third = asyncio.Event()
            fault = asyncio.create_task(_kill_and_restart(ingest, a_third))
            for batch in batches:
                await send_until_answered(stub, batch)
                answered += 1
                if answered == len(batches) // 3:
                    a_third.set()
            await fault
        assert answered == len(batches)
        assert attempts > 2 * len(batches)  # the kill made some calls fail and retry
        ok = {ingest_pb2.EVENT_STATUS_ACCEPTED, ingest_pb2.EVENT_STATUS_DUPLICATE}
        assert set(told) == {e.event_id for e in events}
        assert set(told.values()) <= ok
        first, last = START.date(), (START + timedelta(days=DAYS + 5)).date()
        await _settled(metrics_port, first, last, expected(events, first, last))
    finally:
        for process in (ingest, metrics):
            if process.proc is not None and process.proc.returncode is None:
                await process.terminate()


async def _kill_and_restart(process: ServiceProcess, go: asyncio.Event) -> None:
    await go.wait()
    await process.kill()
    await asyncio.sleep(0.5)
    await process.start()


async def test_nats_and_postgres_restarted_under_load_lose_nothing(
    private_nats: NatsServer, private_postgres: PostgresServer
) -> None:
    # Ingest and metrics on servers of this test's own; while a retrying client loads
    # ingest, NATS is restarted, then PostgreSQL. Nothing the client was told is lost or
    # counted twice, and both services come back by themselves.
    namespace = "faultsrestart"
    env = settings_env(private_nats.url, private_postgres.dsn, namespace)
    ingest_host = build_ingest(IngestSettings(**env), configure_process=False)  # type: ignore[arg-type]
    metrics_host = build_metrics(MetricsSettings(**env), configure_process=False)  # type: ignore[arg-type]
    ingest_port = await ingest_host.start()
    metrics_port = await metrics_host.start()
    events = generated_events()
    batches = [events[i : i + 50] for i in range(0, len(events), 50)]
    told: dict[str, int] = {}
    restarts: list[asyncio.Task[object]] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest_port}") as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            for n, batch in enumerate(batches):
                # Restarted beside the load, not between requests: calls meet the outage.
                if n == len(batches) // 3:
                    restarts.append(asyncio.create_task(asyncio.to_thread(private_nats.restart)))
                if n == 2 * len(batches) // 3:
                    restarts.append(
                        asyncio.create_task(asyncio.to_thread(private_postgres.restart))
                    )
                while True:
                    try:
                        reply = await stub.Track(
                            ingest_pb2.TrackRequest(events=batch),
                            metadata=auth(WRITER_KEY),
                            timeout=5,
                        )
                    except grpc.aio.AioRpcError as e:
                        assert e.code() in (
                            grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                        ), e
                        await asyncio.sleep(0.1)
                        continue
                    told.update({r.event_id: r.status for r in reply.results})
                    break
        await asyncio.gather(*restarts)
        ok = {ingest_pb2.EVENT_STATUS_ACCEPTED, ingest_pb2.EVENT_STATUS_DUPLICATE}
        assert set(told) == {e.event_id for e in events}
        assert set(told.values()) <= ok
        first, last = START.date(), (START + timedelta(days=DAYS + 5)).date()
        await _settled(metrics_port, first, last, expected(events, first, last))
    finally:
        await metrics_host.stop()
        await ingest_host.stop()
