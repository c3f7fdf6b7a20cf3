"""The load generator: runs inside spawned worker processes, never in the coordinator.

Each job is a plain dict (picklable) and returns a plain dict. Clocks are
`time.monotonic()` (CLOCK_MONOTONIC, one clock for every process of the machine), so the
coordinator can hand every worker the same absolute start and end times.

Requests are built once per job from a few templates and serialized once; each call only
patches a fixed-width counter into the event ids (one `bytes.replace`), so the client
spends its CPU on gRPC, not on building protobufs. Every event still has a unique id.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

TRACK = "/northstar.ingest.v1.IngestService/Track"
TRACK_STREAM = "/northstar.ingest.v1.IngestService/TrackStream"
ACTIVE_USERS = "/northstar.metrics.v1.MetricsService/ActiveUsers"

USERS = 10_000
ORGS = 500
EVENT_NAMES = (
    "page.view",
    "page.view",
    "page.view",
    "button.click",
    "button.click",
    "feature.used",
    "workflow.run",
    "search.performed",
    "signup",
    "invite.sent",
)
PATHS = ("/", "/pricing", "/docs", "/settings", "/dashboard", "/billing", "/reports")
PLANS = ("free", "team", "business", "enterprise")
# Placeholder patched per request with a counter of the same width.
MARKER = b"~~~~~~~~~~~~"
# Distinct pre-built requests per job: enough that the users of the 10k cover most.
TEMPLATE_EVENTS = 16_000


def _properties(rng: random.Random, name: str) -> bytes:
    props: dict[str, Any] = {"plan": rng.choice(PLANS), "path": rng.choice(PATHS)}
    if name == "workflow.run":
        props["status"] = "success" if rng.random() < 0.9 else "failure"
        props["duration_ms"] = rng.randrange(20, 20_000)
    else:
        props["duration_ms"] = rng.randrange(1, 5_000)
    if rng.random() < 0.5:
        props["experiment"] = f"exp_{rng.randrange(20)}"
    if rng.random() < 0.3:
        props["referrer"] = "https://example.com/landing"
    return orjson.dumps(props)


def build_templates(batch: int, *, prefix: str, seed: int, stream: bool = False) -> list[bytes]:
    """Serialized TrackRequest (or TrackStreamRequest) bodies with MARKER in every event id."""
    from google.protobuf import timestamp_pb2  # noqa: PLC0415

    from northstar.ingest.v1 import ingest_pb2  # noqa: PLC0415

    rng = random.Random(seed)
    now = time.time_ns()
    ts = timestamp_pb2.Timestamp(seconds=now // 1_000_000_000, nanos=(now % 1_000_000_000))
    out = []
    for t in range(max(8, min(256, TEMPLATE_EVENTS // batch))):
        events = []
        for i in range(batch):
            user = rng.randrange(USERS)
            name = rng.choice(EVENT_NAMES)
            events.append(
                ingest_pb2.Event(
                    event_id=f"{prefix}{t}-{MARKER.decode()}-{i:04d}",
                    event=name,
                    user_id=f"user_{user:05d}",
                    org_id=f"org_{user % ORGS:03d}",
                    session_id=f"s_{user:05d}_{rng.randrange(4)}",
                    timestamp=ts,
                    properties_json=_properties(rng, name).decode(),
                )
            )
        cls = ingest_pb2.TrackStreamRequest if stream else ingest_pb2.TrackRequest
        out.append(cls(events=events).SerializeToString())
    return out


class Payloads:
    """Round-robin over templates, each call with fresh event ids."""

    def __init__(self, templates: list[bytes]) -> None:
        self._templates = templates
        self._n = 0

    def next(self) -> bytes:
        self._n += 1
        t = self._templates[self._n % len(self._templates)]
        return t.replace(MARKER, b"%012d" % self._n)


@dataclass
class Tally:
    """What one worker saw inside the measurement window."""

    calls: int = 0
    events: int = 0
    rejected: int = 0
    duplicate: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    total_events: int = 0
    late_start: float = 0.0
    dropped: int = 0

    def result(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "events": self.events,
            "rejected": self.rejected,
            "duplicate": self.duplicate,
            "errors": dict(self.errors),
            "latencies": self.latencies,
            "total_events": self.total_events,
            "late_start": self.late_start,
            "dropped": self.dropped,
        }


async def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _channel(address: str) -> Any:
    import grpc  # noqa: PLC0415

    return grpc.aio.insecure_channel(
        address,
        options=[
            # One connection per logical client, as separate clients would have.
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )


def _record(tally: Tally, resp: bytes, t_done: float, start: float, spec: dict[str, Any]) -> int:
    from northstar.ingest.v1 import ingest_pb2  # noqa: PLC0415

    r = ingest_pb2.TrackResponse.FromString(resp)
    tally.total_events += r.accepted
    if spec["t_measure"] <= t_done <= spec["t_end"]:
        tally.calls += 1
        tally.events += r.accepted
        tally.rejected += r.rejected
        tally.duplicate += r.duplicate
        tally.latencies.append(t_done - start)
    return int(r.accepted)


async def _closed_loop(spec: dict[str, Any]) -> Tally:
    """`clients` clients, each a stream of Track calls, one at a time."""
    import grpc  # noqa: PLC0415

    tally = Tally()
    md = (("authorization", f"Bearer {spec['api_key']}"),)
    payloads = Payloads(build_templates(spec["batch"], prefix=spec["prefix"], seed=spec["seed"]))
    channels = [_channel(spec["address"]) for _ in range(spec["clients"])]
    budget = spec.get("max_events")
    try:
        calls = [
            ch.unary_unary(TRACK, request_serializer=None, response_deserializer=None)
            for ch in channels
        ]
        await asyncio.gather(*(ch.channel_ready() for ch in channels))
        await _sleep_until(spec["t_begin"])
        tally.late_start = max(0.0, time.monotonic() - spec["t_begin"])

        async def client(call: Callable[..., Any]) -> None:
            while time.monotonic() < spec["t_end"]:
                if budget is not None and tally.total_events >= budget:
                    return
                payload = payloads.next()
                start = time.monotonic()
                try:
                    resp = await call(payload, metadata=md, timeout=30)
                except grpc.aio.AioRpcError as e:
                    tally.errors[e.code().name] += 1
                    await asyncio.sleep(0.01)
                    continue
                _record(tally, resp, time.monotonic(), start, spec)

        await asyncio.gather(*(client(c) for c in calls))
    finally:
        for ch in channels:
            await ch.close()
    return tally


async def _open_loop(spec: dict[str, Any]) -> Tally:
    """Poisson arrivals at `rate` requests/s, whatever the answers' pace (no coordinated
    omission: latency runs from the scheduled send time)."""
    import grpc  # noqa: PLC0415

    tally = Tally()
    md = (("authorization", f"Bearer {spec['api_key']}"),)
    payloads = Payloads(build_templates(spec["batch"], prefix=spec["prefix"], seed=spec["seed"]))
    channels = [_channel(spec["address"]) for _ in range(spec["clients"])]
    rng = random.Random(spec["seed"])
    max_outstanding = spec.get("max_outstanding", 2_000)
    outstanding: set[asyncio.Task[None]] = set()
    try:
        calls = [
            ch.unary_unary(TRACK, request_serializer=None, response_deserializer=None)
            for ch in channels
        ]
        await asyncio.gather(*(ch.channel_ready() for ch in channels))

        async def one(call: Callable[..., Any], payload: bytes, scheduled: float) -> None:
            try:
                resp = await call(payload, metadata=md, timeout=30)
            except grpc.aio.AioRpcError as e:
                tally.errors[e.code().name] += 1
                return
            _record(tally, resp, time.monotonic(), scheduled, spec)

        await _sleep_until(spec["t_begin"])
        tally.late_start = max(0.0, time.monotonic() - spec["t_begin"])
        scheduled = spec["t_begin"] + rng.expovariate(spec["rate"])
        n = 0
        while scheduled < spec["t_end"]:
            await _sleep_until(scheduled)
            if len(outstanding) >= max_outstanding:
                tally.dropped += 1
            else:
                task = asyncio.create_task(one(calls[n % len(calls)], payloads.next(), scheduled))
                outstanding.add(task)
                task.add_done_callback(outstanding.discard)
            n += 1
            scheduled += rng.expovariate(spec["rate"])
        if outstanding:
            await asyncio.wait(outstanding, timeout=30)
    finally:
        for ch in channels:
            await ch.close()
    return tally


async def _streaming(spec: dict[str, Any]) -> Tally:
    """`clients` gateway streams (TrackStream), each with `window` requests in flight."""
    import grpc  # noqa: PLC0415

    tally = Tally()
    md = (("authorization", f"Bearer {spec['api_key']}"),)
    payloads = Payloads(
        build_templates(spec["batch"], prefix=spec["prefix"], seed=spec["seed"], stream=True)
    )
    channels = [_channel(spec["address"]) for _ in range(spec["clients"])]
    try:
        await asyncio.gather(*(ch.channel_ready() for ch in channels))
        await _sleep_until(spec["t_begin"])
        tally.late_start = max(0.0, time.monotonic() - spec["t_begin"])

        async def gateway(ch: Any) -> None:
            call = ch.stream_stream(
                TRACK_STREAM, request_serializer=None, response_deserializer=None
            )
            window = asyncio.Semaphore(spec["window"])
            sent: collections.deque[float] = collections.deque()

            async def requests() -> Any:
                while time.monotonic() < spec["t_end"]:
                    await window.acquire()
                    sent.append(time.monotonic())
                    yield payloads.next()

            try:
                timeout = spec["t_end"] - time.monotonic() + 30
                async for resp in call(requests(), metadata=md, timeout=timeout):
                    _record(tally, resp, time.monotonic(), sent.popleft(), spec)
                    window.release()
            except grpc.aio.AioRpcError as e:
                tally.errors[e.code().name] += 1

        await asyncio.gather(*(gateway(ch) for ch in channels))
    finally:
        for ch in channels:
            await ch.close()
    return tally


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Entry point in a worker process: run one job, return its tally."""
    import os  # noqa: PLC0415

    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    kind = spec["kind"]
    if kind == "publish":
        return asyncio.run(_raw_publish(spec))
    if kind == "consume":
        return asyncio.run(_raw_consume(spec))
    if kind == "warm":
        import grpc  # noqa: F401, PLC0415

        from northstar.ingest.v1 import ingest_pb2  # noqa: F401, PLC0415

        time.sleep(0.3)
        return {"pid": os.getpid()}
    runner = {"closed": _closed_loop, "open": _open_loop, "stream": _streaming}[kind]
    t0 = time.process_time()
    tally = asyncio.run(runner(spec))
    out = tally.result()
    out["cpu_seconds"] = time.process_time() - t0
    out["pid"] = os.getpid()
    return out


# --- Raw NATS baselines (same run, same machine) -------------------------------------


def _stored_events(n: int, seed: int) -> list[Any]:
    from northstar.log.v1 import log_pb2  # noqa: PLC0415

    rng = random.Random(seed)
    now_us = time.time_ns() // 1000
    out = []
    for i in range(n):
        name = rng.choice(EVENT_NAMES)
        user = rng.randrange(USERS)
        out.append(
            log_pb2.StoredEvent(
                event_id=f"{seed:04d}-{i:08d}-0123456789abcdef",
                event=name,
                user_id=f"user_{user:05d}",
                org_id=f"org_{user % ORGS:03d}",
                session_id=f"s_{user:05d}_0",
                timestamp_us=now_us,
                original_timestamp_us=now_us,
                received_at_us=now_us,
                properties_json=_properties(rng, name),
            )
        )
    return out


async def _raw_publish(spec: dict[str, Any]) -> dict[str, Any]:
    """JetStream async publish of one-event messages vs `per_message`-event messages, each
    for `seconds`: the measurement behind the log's unit (EventBatch per partition)."""
    import nats  # noqa: PLC0415

    from northstar.log.v1 import log_pb2  # noqa: PLC0415

    nc = await nats.connect(spec["nats_url"])
    js = nc.jetstream(publish_async_max_pending=20_000)
    results = {}
    try:
        for per_message in (1, spec["per_message"]):
            events = _stored_events(per_message, spec["seed"])
            payload = log_pb2.EventBatch(tenant="bench", partition=0, events=events)
            data = payload.SerializeToString()
            t_end = time.monotonic() + spec["seconds"]
            t0 = time.monotonic()
            n = 0
            futures: list[asyncio.Future[Any]] = []
            while time.monotonic() < t_end:
                for _ in range(100):
                    futures.append(
                        await js.publish_async(
                            f"{spec['subject_prefix']}.{n % 16}",
                            data,
                            headers={"Nats-Msg-Id": f"{per_message}-{n}"},
                        )
                    )
                    n += 1
                if len(futures) > 5_000:
                    await asyncio.gather(*futures)
                    futures.clear()
            await asyncio.gather(*futures)
            elapsed = time.monotonic() - t0
            results[str(per_message)] = {
                "messages": n,
                "seconds": elapsed,
                "messages_per_s": n / elapsed,
                "events_per_s": n * per_message / elapsed,
                "bytes_per_message": len(data),
            }
    finally:
        await nc.close()
    return results


async def _raw_consume(spec: dict[str, Any]) -> dict[str, Any]:
    """Pull-fetch the whole stream and decode every EventBatch, like the projector but
    without PostgreSQL: the baseline the projector's rate is a ratio of."""
    import nats  # noqa: PLC0415
    from nats.js import api  # noqa: PLC0415

    from northstar.log.v1 import log_pb2  # noqa: PLC0415

    nc = await nats.connect(spec["nats_url"])
    js = nc.jetstream()
    durable = spec["durable"]
    try:
        with contextlib.suppress(Exception):
            await js.delete_consumer(spec["stream"], durable)
        await js.add_consumer(
            spec["stream"],
            api.ConsumerConfig(
                durable_name=durable,
                ack_policy=api.AckPolicy.ALL,
                deliver_policy=api.DeliverPolicy.ALL,
                max_ack_pending=100_000,
                ack_wait=120.0,
            ),
        )
        sub = await js.pull_subscribe_bind(durable, stream=spec["stream"])
        last = spec["last_seq"]
        t0 = time.monotonic()
        c0 = time.process_time()
        messages = events = 0
        position = 0
        while position < last:
            try:
                msgs = await sub.fetch(spec["batch"], timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for m in msgs:
                events += len(log_pb2.EventBatch.FromString(m.data).events)
            messages += len(msgs)
            position = msgs[-1].metadata.sequence.stream
            await msgs[-1].ack()
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - c0
        await js.delete_consumer(spec["stream"], durable)
    finally:
        await nc.close()
    return {
        "messages": messages,
        "events": events,
        "seconds": elapsed,
        "events_per_s": events / elapsed,
        "client_cpu_seconds": cpu,
    }
