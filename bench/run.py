"""`python -m bench.run [--quick]`: measure ingest and the projector, write BENCHMARKS.md.

The services run as real subprocesses (`python -m northstar_ingest`, `python -m
northstar_metrics`), exactly as deployed; the load comes from separate worker processes
(bench/load.py), so a client never shares the server's interpreter. NATS and PostgreSQL
are started here (harness servers in a temporary dir) unless NATS_URL / DATABASE_URL
point at running ones. Every figure is a throughput with the machine described, or a
ratio against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# gRPC reads this as it loads; forks of pg_ctl would otherwise be logged at INFO.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import asyncpg
import grpc
import nats
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.js import api

from bench import load, profiling, report
from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import metrics_pb2
from northstar_harness.servers import NatsServer, PostgresServer, free_port
from northstar_runtime.topology import Topology

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TENANT = "bench"
API_KEY = "bench-key-" + secrets.token_hex(12)
PARTITIONS = 16


@dataclass(frozen=True)
class Plan:
    """How long and how much: the quick smoke run and the full run differ only here."""

    mode: str
    cell_seconds: float
    warmup_seconds: float
    batches: tuple[int, ...] = (1, 100, 500)
    concurrency: tuple[int, ...] = (1, 4, 16)
    stream_concurrency: tuple[int, ...] = (1, 4, 16)
    stream_window: int = 8
    latency_fractions: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)
    latency_fixed: float = 50_000.0  # half the 100k target, as an absolute point
    freshness_fractions: tuple[float, ...] = (0.1, 0.5, 0.9)
    freshness_timeout: float = 30.0  # a probe not counted by then is recorded as lost time
    preload_events: int = 200_000
    profile_seconds: float = 8.0
    raw_publish_seconds: float = 2.0
    client_procs: int = 2
    retry_contended: bool = False
    quiet_wait: float = 5.0

    @classmethod
    def quick(cls, client_procs: int) -> Plan:
        return cls("quick", 3.0, 0.5, profile_seconds=6.0, client_procs=client_procs)

    @classmethod
    def full(cls, client_procs: int) -> Plan:
        return cls(
            "full",
            10.0,
            2.0,
            concurrency=(1, 4, 16, 64),
            stream_concurrency=(1, 4, 16, 64),
            preload_events=2_000_000,
            profile_seconds=20.0,
            raw_publish_seconds=5.0,
            client_procs=client_procs,
            retry_contended=True,
            quiet_wait=20.0,
        )


def say(text: str) -> None:
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stdout.flush()


# --- Processes ------------------------------------------------------------------------


@dataclass
class Service:
    """A service subprocess, started like production and stopped with SIGTERM."""

    name: str
    address: str
    log_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


async def start_service(
    name: str, env: dict[str, str], log_dir: Path, *, cprofile_out: Path | None = None
) -> Service:
    """Spawn `python -m northstar_<name>` and wait until its health check says SERVING."""
    address = f"127.0.0.1:{free_port()}"
    full_env = {
        **os.environ,
        **env,
        "GRPC_ADDRESS": address,
        "NORTHSTAR_API_KEYS": f"{TENANT}:ingest+read+admin:{API_KEY}",
        "NORTHSTAR_PARTITIONS": str(PARTITIONS),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "SHUTDOWN_GRACE_SECONDS": "2",
    }
    module = f"northstar_{name}"
    args = [sys.executable, "-m", module]
    if cprofile_out is not None:
        # Fallback when py-spy cannot attach: cProfile inside the process, via bench code.
        full_env["BENCH_CPROFILE_OUT"] = str(cprofile_out)
        args = [sys.executable, "-m", "bench.profiled", module]
    log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, waited on below
            args,
            env=full_env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    service = Service(name, address, log_path, proc)
    deadline = time.monotonic() + 60
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{service.log_tail()}")
            if time.monotonic() > deadline:
                service.stop()
                raise RuntimeError(f"{name} not SERVING after 60 s:\n{service.log_tail()}")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return service
            await asyncio.sleep(0.05)


async def follow_checkpoint(
    conn: asyncpg.Connection,
    svc: Service,
    schema: str,
    projection: str,
    last_seq: int,
    *,
    t0: float,
    limit_s: float,
    poll_s: float,
) -> list[tuple[float, int]]:
    """Poll a projection's checkpoint until it reaches `last_seq`: the timeline of
    (seconds since t0, position). Fails when the service exits or `limit_s` passes."""
    timeline: list[tuple[float, int]] = []
    position = 0
    while position < last_seq:
        if svc.proc.poll() is not None:
            raise RuntimeError(f"{svc.name} exited:\n{svc.log_tail()}")
        if time.monotonic() - t0 > limit_s:
            raise RuntimeError(f"{svc.name} did not reach the stream's end in {limit_s:g} s")
        with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            position = int(
                await conn.fetchval(
                    f'SELECT coalesce(max(position), 0) FROM "{schema}".projection_checkpoints'
                    " WHERE projection = $1",
                    projection,
                )
                or 0
            )
        timeline.append((round(time.monotonic() - t0, 3), position))
        if position < last_seq:
            await asyncio.sleep(poll_s)
    return timeline


class CpuMeter:
    """CPU seconds of each group of processes between two snapshots (psutil)."""

    def __init__(self, groups: dict[str, list[int]], *, postgres: bool) -> None:
        self.groups = groups
        self.postgres = postgres

    @staticmethod
    def _cpu(pid: int) -> float:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def snapshot(self) -> dict[str, float]:
        snap = {name: sum(self._cpu(p) for p in pids) for name, pids in self.groups.items()}
        if self.postgres:
            total = 0.0
            for proc in psutil.process_iter(["name", "cpu_times"]):
                if proc.info["name"] in ("postgres", "postmaster") and proc.info["cpu_times"]:
                    total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
            snap["postgres"] = total
        machine = psutil.cpu_times()
        snap["machine_busy"] = machine.user + machine.system + machine.nice + machine.softirq
        snap["machine_busy"] += machine.irq + getattr(machine, "steal", 0.0)
        snap["coordinator"] = self._cpu(os.getpid())
        snap["_t"] = time.monotonic()
        return snap

    @staticmethod
    def cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """Average cores busy per group over the interval; `other`: processes not ours
        (the machine is shared: anything else running shows here)."""
        elapsed = after["_t"] - before["_t"]
        out = {
            k: round(max(0.0, after[k] - before[k]) / elapsed, 3)
            for k in after
            if k != "_t" and k in before
        }
        ours = sum(v for k, v in out.items() if k != "machine_busy")
        out["other"] = round(max(0.0, out["machine_busy"] - ours), 3)
        return out


async def wait_quiet(limit: float = 0.3, longest: float = 20.0) -> float:
    """Wait (at most `longest` s) until the machine is nearly idle between cells: other
    work on a shared machine would otherwise be measured as ours. Returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < longest:
        before = psutil.cpu_times()
        await asyncio.sleep(0.5)
        after = psutil.cpu_times()
        busy = sum(
            getattr(after, f) - getattr(before, f)
            for f in ("user", "system", "nice", "irq", "softirq", "steal")
            if hasattr(after, f)
        )
        if busy / 0.5 < limit:
            break
    return round(time.monotonic() - t0, 1)


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def latency_summary(values: list[float]) -> dict[str, Any]:
    s = sorted(values)
    ms = 1000.0
    pick = {k: percentile(s, q) for k, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))}
    out: dict[str, Any] = {
        k: (round(v * ms, 2) if v is not None else None) for k, v in pick.items()
    }
    out["max"] = round(s[-1] * ms, 2) if s else None
    out["samples"] = len(s)
    return out


# --- The bench ------------------------------------------------------------------------


@dataclass
class Bench:
    plan: Plan
    pool: Any
    nats_url: str
    database_url: str
    nats_pid: int | None
    local_postgres: bool
    work: Path
    namespace: str
    ingest: Service | None = None
    pyspy_failed: bool = False
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def topology(self) -> Topology:
        return Topology(self.namespace)

    def client_pids(self) -> list[int]:
        return [p.pid for p in self.pool._pool]

    def meter(self, service: Service | None, service_name: str = "ingest") -> CpuMeter:
        groups: dict[str, list[int]] = {"clients": self.client_pids()}
        if service is not None:
            groups[service_name] = [service.pid]
        if self.nats_pid is not None:
            groups["nats"] = [self.nats_pid]
        return CpuMeter(groups, postgres=self.local_postgres)

    async def purge(self) -> None:
        nc = await nats.connect(self.nats_url)
        try:
            await nc.jetstream().purge_stream(self.topology.events_stream)
        finally:
            await nc.close()

    async def run_jobs(
        self, specs: list[dict[str, Any]], meter: CpuMeter | None, window: tuple[float, float]
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Run one job per worker; measure CPU over `window` (monotonic start, end)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self.pool.map, load.run_job, specs, 1)
        cores: dict[str, float] = {}
        if meter is not None:
            await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
            before = meter.snapshot()
            await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
            cores = CpuMeter.cores(before, meter.snapshot())
        return await future, cores

    def _specs(self, kind: str, clients: int, **extra: Any) -> list[dict[str, Any]]:
        assert self.ingest is not None
        procs = max(1, min(clients, self.plan.client_procs))
        now = time.monotonic()
        t_begin = now + 1.2
        t_measure = t_begin + self.plan.warmup_seconds
        t_end = t_measure + self.plan.cell_seconds
        specs = []
        for i in range(procs):
            share = clients // procs + (1 if i < clients % procs else 0)
            specs.append(
                {
                    "kind": kind,
                    "address": self.ingest.address,
                    "api_key": API_KEY,
                    "clients": share,
                    "prefix": f"{secrets.token_hex(3)}w{i}-",
                    "seed": int(now * 1000) % 100_000 + i,
                    "t_begin": t_begin,
                    "t_measure": t_measure,
                    "t_end": t_end,
                    **extra,
                }
            )
        return specs

    async def cell(self, kind: str, clients: int, **extra: Any) -> dict[str, Any]:
        """One measurement; re-run once when other processes took a noticeable share."""
        first = await self._cell(kind, clients, **extra)
        if first["cpu_cores"].get("other", 0.0) <= 0.25 or not self.plan.retry_contended:
            return first
        say(f"  (other processes used {first['cpu_cores']['other']} cores: measuring again)")
        second = await self._cell(kind, clients, **extra)
        second["retried"] = True
        return min((first, second), key=lambda r: r["cpu_cores"].get("other", 0.0))

    async def _cell(
        self, kind: str, clients: int, *, purge: bool = True, **extra: Any
    ) -> dict[str, Any]:
        waited = await wait_quiet(longest=self.plan.quiet_wait)
        addresses = extra.pop("addresses", None)
        extra_pids = extra.pop("extra_pids", [])
        specs = self._specs(kind, clients, **extra)
        if kind == "open":
            for s in specs:
                s["rate"] = extra["rate"] / len(specs)
        if addresses:
            for i, s in enumerate(specs):
                s["address"] = addresses[i % len(addresses)]
        window = (specs[0]["t_measure"], specs[0]["t_end"])
        meter = self.meter(self.ingest)
        meter.groups["ingest"] = meter.groups["ingest"] + extra_pids
        outs, cores = await self.run_jobs(specs, meter, window)
        seconds = window[1] - window[0]
        latencies = [x for o in outs for x in o["latencies"]]
        errors: dict[str, int] = {}
        for o in outs:
            for k, v in o["errors"].items():
                errors[k] = errors.get(k, 0) + v
        result = {
            "kind": kind,
            "clients": clients,
            "client_procs": len(specs),
            "seconds": seconds,
            "events": sum(o["events"] for o in outs),
            "calls": sum(o["calls"] for o in outs),
            "events_per_s": round(sum(o["events"] for o in outs) / seconds),
            "calls_per_s": round(sum(o["calls"] for o in outs) / seconds, 1),
            "rejected": sum(o["rejected"] for o in outs),
            "duplicate": sum(o["duplicate"] for o in outs),
            "errors": errors,
            "dropped": sum(o["dropped"] for o in outs),
            "late_start_max_s": round(max(o["late_start"] for o in outs), 3),
            "latency_ms": latency_summary(latencies),
            "cpu_cores": cores,
            "waited_for_quiet_s": waited,
            "ingest_processes": 1 + len(extra_pids),
            **{k: v for k, v in extra.items() if k in ("batch", "rate", "window")},
        }
        if purge:
            await self.purge()
        return result

    # --- Sections ---------------------------------------------------------------------

    async def raw_publish(self) -> None:
        """The log unit: JetStream publish rate of 1-event messages vs per-partition batches."""
        say("raw JetStream publish baseline (log unit)")
        await wait_quiet(longest=self.plan.quiet_wait)
        nc = await nats.connect(self.nats_url)
        js = nc.jetstream()
        name = f"{self.namespace.upper()}_RAW"
        subject = f"{self.namespace}raw"
        await js.add_stream(
            api.StreamConfig(
                name=name,
                subjects=[f"{subject}.>"],
                storage=api.StorageType.FILE,
                duplicate_window=600.0,
            )
        )
        try:
            per_message = 500 // PARTITIONS + 1
            spec = {
                "kind": "publish",
                "nats_url": self.nats_url,
                "subject_prefix": subject,
                "per_message": per_message,
                "seconds": self.plan.raw_publish_seconds,
                "seed": 7,
            }
            (out,), _ = await self.run_jobs([spec], None, (0, 0))
        finally:
            await js.delete_stream(name)
            await nc.close()
        self.results["raw_publish"] = {"per_message": per_message, **out}
        for k, v in out.items():
            say(f"  {k} events/message: {v['events_per_s']:,.0f} events/s")

    async def ingest_matrix(self) -> None:
        cells = []
        for batch in self.plan.batches:
            for clients in self.plan.concurrency:
                r = await self.cell("closed", clients, batch=batch)
                cells.append(r)
                say(
                    f"Track batch {batch:>3} x {clients:>2} clients: {r['events_per_s']:>9,} ev/s"
                    f"  p50 {r['latency_ms']['p50']} ms p99 {r['latency_ms']['p99']} ms"
                    f"  cores {r['cpu_cores']}"
                )
        self.results["track"] = cells

    async def stream_matrix(self) -> None:
        cells = []
        for clients in self.plan.stream_concurrency:
            r = await self.cell("stream", clients, batch=100, window=self.plan.stream_window)
            cells.append(r)
            say(f"TrackStream batch 100 x {clients:>2} streams: {r['events_per_s']:>9,} ev/s")
        self.results["track_stream"] = cells

    def max_track_500(self) -> float:
        return max(c["events_per_s"] for c in self.results["track"] if c["batch"] == 500)

    async def latency_sweep(self) -> None:
        peak = self.max_track_500()
        points = [(f"{int(f * 100)}% of max", f * peak) for f in self.plan.latency_fractions]
        fixed = self.plan.latency_fixed
        if fixed < 0.95 * peak and all(abs(r - fixed) > 0.05 * peak for _, r in points):
            points.append(("50k (half the target)", fixed))
        points.sort(key=lambda p: p[1])
        cells = []
        for label, rate in points:
            clients = 8
            r = await self.cell("open", clients, batch=500, rate=rate / 500)
            r["label"] = label
            r["offered_events_per_s"] = round(rate)
            cells.append(r)
            lat = r["latency_ms"]
            say(
                f"open loop {label:>22} ({rate:,.0f} ev/s offered): achieved"
                f" {r['events_per_s']:,} ev/s, p50 {lat['p50']} p99 {lat['p99']}"
                f" p999 {lat['p999']} ms"
            )
        self.results["latency"] = {"max_events_per_s": peak, "points": cells}

    async def freshness(self) -> None:
        """Time from Track acknowledged to the event counted by ActiveUsers, under load.

        While the open-loop load runs at a share of the measured max, one probe at a time
        sends a single event of a new user dated on a probe day no load event touches,
        then polls ActiveUsers for that day every 5 ms until its DAU counts the probe.
        """
        peak = self.max_track_500()
        assert self.ingest is not None
        await self.purge()
        metrics = await start_service(
            "metrics",
            {
                "NATS_URL": self.nats_url,
                "DATABASE_URL": self.database_url,
                "NORTHSTAR_NAMESPACE": self.namespace,
            },
            self.work,
        )
        points = []
        try:
            for k, fraction in enumerate(self.plan.freshness_fractions):
                rate = fraction * peak
                day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=100 + k)
                stop = asyncio.Event()
                probes = asyncio.create_task(self._probe(metrics, day, stop))
                try:
                    # The stream is purged only once the last probe is counted: a purge
                    # could remove a probe the projector has not read yet.
                    cell = await self._cell("open", 8, purge=False, batch=500, rate=rate / 500)
                finally:
                    stop.set()
                samples, lost = await probes
                await self.purge()
                point = {
                    "label": f"{int(fraction * 100)}% of max",
                    "offered_events_per_s": round(rate),
                    "achieved_events_per_s": cell["events_per_s"],
                    "track_p99_ms": cell["latency_ms"]["p99"],
                    "freshness_ms": latency_summary(samples),
                    "probes_not_counted": lost,
                    "cpu_cores": cell["cpu_cores"],
                }
                points.append(point)
                f = point["freshness_ms"]
                say(
                    f"freshness at {point['label']:>12} ({rate:,.0f} ev/s): p50 {f['p50']} ms,"
                    f" p99 {f['p99']} ms over {f['samples']} probes ({lost} not counted in"
                    f" {self.plan.freshness_timeout:g} s)"
                )
        finally:
            metrics.stop()
        self.results["freshness"] = {"max_events_per_s": peak, "points": points}

    async def _probe(
        self, metrics: Service, day: dt.date, stop: asyncio.Event
    ) -> tuple[list[float], int]:
        assert self.ingest is not None
        auth = (("authorization", f"Bearer {API_KEY}"),)
        stamp = dt.datetime.combine(day, dt.time(12), dt.UTC)
        run = secrets.token_hex(3)
        samples: list[float] = []
        lost = 0
        async with (
            grpc.aio.insecure_channel(self.ingest.address) as ic,
            grpc.aio.insecure_channel(metrics.address) as mc,
        ):
            track = ic.unary_unary(
                load.TRACK,
                request_serializer=ingest_pb2.TrackRequest.SerializeToString,
                response_deserializer=ingest_pb2.TrackResponse.FromString,
            )
            active = mc.unary_unary(
                load.ACTIVE_USERS,
                request_serializer=metrics_pb2.ActiveUsersRequest.SerializeToString,
                response_deserializer=metrics_pb2.ActiveUsersResponse.FromString,
            )
            query = metrics_pb2.ActiveUsersRequest(
                from_date=day.isoformat(), to_date=day.isoformat()
            )
            sent = 0
            while not stop.is_set():
                event = ingest_pb2.Event(
                    event_id=f"probe-{run}-{sent}",
                    event="bench.probe",
                    user_id=f"probe-{run}-{sent}",
                )
                event.timestamp.FromDatetime(stamp)
                reply = await track(ingest_pb2.TrackRequest(events=[event]), metadata=auth)
                acked = time.monotonic()
                if reply.accepted != 1:
                    raise RuntimeError(f"probe not accepted: {reply}")
                sent += 1
                deadline = acked + self.plan.freshness_timeout
                # One projector applies the log in order, so this probe is counted once the
                # day's DAU includes every probe sent so far (a slow one included).
                while True:
                    resp = await active(query, metadata=auth, timeout=10)
                    if resp.days and resp.days[0].dau >= sent:
                        samples.append(time.monotonic() - acked)
                        break
                    if time.monotonic() > deadline:
                        lost += 1
                        break
                    await asyncio.sleep(0.005)
        return samples, lost

    async def profile_ingest(self) -> None:
        for batch, key in ((500, "profile_ingest"), (1, "profile_ingest_batch1")):
            self.results[key] = await self._profile_ingest(batch)

    async def _profile_ingest(self, batch: int) -> dict[str, Any]:
        assert self.ingest is not None
        seconds = self.plan.profile_seconds
        say(f"profiling ingest for {seconds:g} s (batch {batch}, 16 clients)")
        await wait_quiet(longest=self.plan.quiet_wait)
        out = self.work / f"ingest-{batch}.pyspy.txt"
        specs = self._specs("closed", 16, batch=batch)
        start = specs[0]["t_measure"]
        for s in specs:
            s["t_end"] = start + seconds + 0.5
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self.pool.map, load.run_job, specs, 1)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        # The per-call cost (1-event batches) is in C (gRPC core, syscalls): native frames.
        spy = profiling.PySpy(self.ingest.pid, seconds, out, native=batch == 1)
        await asyncio.to_thread(spy.wait)
        outs = await future
        events = sum(o["events"] for o in outs)
        profile: dict[str, Any]
        if spy.ok:
            profile = profiling.summarize_raw(out, seconds, spy.rate)
            profile["tool"] += " with native frames" if spy.native else ", --nonblocking"
        else:
            self.pyspy_failed = True
            say(f"  py-spy failed ({spy.error}); falling back to cProfile in a second ingest")
            profile = await self._cprofile_ingest(batch)
        profile["events_per_s_under_profiler"] = round(events / (seconds + 0.5))
        await self.purge()
        return profile

    async def scale_out(self) -> None:
        """Two ingest processes (as two replicas behind a balancer), 500-event batches."""
        assert self.ingest is not None
        say("scale-out: 2 ingest processes, batch 500, 16 clients split between them")
        second = await start_service(
            "ingest",
            {
                "NATS_URL": self.nats_url,
                "NORTHSTAR_NAMESPACE": self.namespace,
                "INGEST_RATE_LIMIT": "0",
            },
            self.work,
        )
        try:
            first = await self.cell(
                "closed",
                16,
                batch=500,
                addresses=[self.ingest.address, second.address],
                extra_pids=[second.pid],
            )
        finally:
            second.stop()
        say(f"  {first['events_per_s']:,} ev/s  cores {first['cpu_cores']}")
        self.results["scale_out"] = first

    async def _cprofile_ingest(self, batch: int) -> dict[str, Any]:
        stats = self.work / "ingest.cprofile"
        svc = await start_service(
            "ingest",
            {
                "NATS_URL": self.nats_url,
                "NORTHSTAR_NAMESPACE": self.namespace,
                "INGEST_RATE_LIMIT": "0",
            },
            self.work,
            cprofile_out=stats,
        )
        saved, self.ingest = self.ingest, svc
        try:
            specs = self._specs("closed", 16, batch=batch)
            await self.run_jobs(specs, None, (0, 0))
        finally:
            self.ingest = saved
            svc.stop()
        return profiling.summarize_cprofile(stats)

    async def preload(self) -> dict[str, Any]:
        n = self.plan.preload_events
        say(f"preloading {n:,} events through Track (batch 500, 16 clients)")
        await wait_quiet(longest=self.plan.quiet_wait)
        await self.purge()
        specs = self._specs("closed", 16, batch=500)
        for s in specs:
            s["max_events"] = n // len(specs)
            s["t_end"] = s["t_begin"] + 3600
            s["t_measure"] = s["t_begin"]
        t0 = specs[0]["t_begin"]
        outs, _ = await self.run_jobs(specs, None, (0, 0))
        elapsed = time.monotonic() - t0
        nc = await nats.connect(self.nats_url)
        try:
            info = await nc.jetstream().stream_info(self.topology.events_stream)
        finally:
            await nc.close()
        events = sum(o["total_events"] for o in outs)
        out = {
            "events": events,
            "messages": info.state.messages,
            "first_seq": info.state.first_seq,
            "last_seq": info.state.last_seq,
            "bytes": info.state.bytes,
            "seconds": round(elapsed, 2),
            "events_per_s": round(events / elapsed),
        }
        say(f"  {events:,} events in {info.state.messages:,} log messages, {elapsed:.1f} s")
        self.results["preload"] = out
        return out

    async def raw_consume(self, last_seq: int) -> None:
        say("raw JetStream consume baseline (fetch + decode, no database)")
        await wait_quiet(longest=self.plan.quiet_wait)
        spec = {
            "kind": "consume",
            "nats_url": self.nats_url,
            "stream": self.topology.events_stream,
            "durable": "BENCH_RAW_CONSUME",
            "last_seq": last_seq,
            "batch": 2_000,
        }
        (out,), _ = await self.run_jobs([spec], None, (0, 0))
        say(f"  {out['events']:,} events in {out['seconds']:.2f} s: {out['events_per_s']:,.0f}/s")
        self.results["raw_consume"] = out

    async def replay(self, pre: dict[str, Any], *, profile: bool) -> dict[str, Any]:
        """Start metrics on a fresh schema; time until its checkpoint reaches the last seq."""
        last_seq, first_seq, events = pre["last_seq"], pre["first_seq"], pre["events"]
        await wait_quiet(longest=self.plan.quiet_wait)
        schema = self.topology.schema("metrics")
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            use_cprofile = profile and self.pyspy_failed
            cprofile_out = self.work / "metrics.cprofile" if use_cprofile else None
            t0 = time.monotonic()
            env = {
                "NATS_URL": self.nats_url,
                "DATABASE_URL": self.database_url,
                "NORTHSTAR_NAMESPACE": self.namespace,
            }
            svc = await start_service("metrics", env, self.work, cprofile_out=cprofile_out)
            t_serving = time.monotonic()
            meter = self.meter(svc, "metrics")
            before = meter.snapshot()
            spy = None
            if profile and not use_cprofile:
                spy = profiling.PySpy(
                    svc.pid, self.plan.profile_seconds, self.work / "metrics.pyspy.txt"
                )
            try:
                timeline = await follow_checkpoint(
                    conn, svc, schema, "activity", last_seq, t0=t0, limit_s=1800, poll_s=0.1
                )
                t_done = time.monotonic()
                cores = CpuMeter.cores(before, meter.snapshot())
                check = await self._active_users(svc) if not profile else None
            finally:
                if spy is not None:
                    await asyncio.to_thread(spy.wait)
                svc.stop()
        finally:
            await conn.close()
        first_progress = next((t for t, p in timeline if p > 0), None)
        total = t_done - t0
        out: dict[str, Any] = {
            "events": events,
            "messages": last_seq - first_seq + 1,
            "seconds_total": round(total, 2),
            "seconds_to_serving": round(t_serving - t0, 2),
            "events_per_s": round(events / total),
            "cpu_cores": cores,
            "active_users_check": check,
        }
        if first_progress is not None:
            # From the first applied batch to the end: the steady projection rate.
            first_pos = next(p for t, p in timeline if p > 0)
            messages = last_seq - first_seq + 1
            rest = (last_seq - first_pos) / messages * events
            steady = t_done - t0 - first_progress
            out["events_per_s_steady"] = round(rest / steady) if steady > 0 else None
        if cprofile_out is not None:
            out["profile"] = profiling.summarize_cprofile(cprofile_out)
        if spy is not None:
            out["profile"] = (
                profiling.summarize_raw(spy.output, min(spy.seconds, t_done - t_serving), spy.rate)
                if spy.ok
                else {"error": spy.error}
            )
        return out

    async def _active_users(self, svc: Service) -> dict[str, Any]:
        today = dt.datetime.now(dt.UTC).date().isoformat()
        async with grpc.aio.insecure_channel(svc.address) as channel:
            call = channel.unary_unary(
                load.ACTIVE_USERS,
                request_serializer=metrics_pb2.ActiveUsersRequest.SerializeToString,
                response_deserializer=metrics_pb2.ActiveUsersResponse.FromString,
            )
            resp = await call(
                metrics_pb2.ActiveUsersRequest(from_date=today, to_date=today),
                metadata=(("authorization", f"Bearer {API_KEY}"),),
                timeout=30,
            )
        day = resp.days[0] if resp.days else None
        return {
            "date": today,
            "dau": day.dau if day else None,
            "mau": day.mau if day else None,
            "mao": day.mao if day else None,
            "log_position": resp.log_position,
        }

    async def projector(self) -> None:
        pre = await self.preload()
        assert self.ingest is not None
        self.ingest.stop()
        self.ingest = None
        await self.raw_consume(pre["last_seq"])
        say("projector replay into ActiveUsers (metrics service, fresh schema)")
        measured = await self.replay(pre, profile=False)
        if measured["cpu_cores"].get("other", 0.0) > 0.25 and self.plan.retry_contended:
            say(f"  (other processes used {measured['cpu_cores']['other']} cores: again)")
            again = await self.replay(pre, profile=False)
            again["retried"] = True
            measured = min((measured, again), key=lambda r: r["cpu_cores"].get("other", 0.0))
        say(
            f"  {measured['events']:,} events in {measured['seconds_total']} s:"
            f" {measured['events_per_s']:,} ev/s (steady {measured.get('events_per_s_steady')})"
            f"  cores {measured['cpu_cores']}"
        )
        say(f"  ActiveUsers check: {measured['active_users_check']}")
        self.results["projector"] = measured
        say(f"projector replay again under py-spy ({self.plan.profile_seconds:g} s)")
        profiled = await self.replay(pre, profile=True)
        self.results["profile_projector"] = profiled.get("profile", {})
        self.results["profile_projector"]["events_per_s_under_profiler"] = profiled["events_per_s"]


def machine(nats_url: str, nats_pid: int | None) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    mhz = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("cpu MHz")),
        "",
    )
    mem = psutil.virtual_memory().total
    nats_version = ""
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which(
        "nats-server"
    )
    if binary:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            nats_version = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
    from importlib.metadata import version  # noqa: PLC0415

    return {
        "cpu_model": model,
        "cpu_mhz": mhz,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nats_server": nats_version + ("" if nats_pid else f" (external: {nats_url})"),
        "grpcio": version("grpcio"),
        "nats_py": version("nats-py"),
        "asyncpg": version("asyncpg"),
        "protobuf": version("protobuf"),
    }


async def forget(nats_url: str, database_url: str, namespace: str) -> None:
    """Drop what a run stored on the servers (its streams and schemas): on shared servers
    millions of events would otherwise stay behind."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        prefix = Topology(namespace).events_stream.split("_")[0] + "_"
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()
    conn = await asyncpg.connect(database_url)
    try:
        schemas = await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", f"{namespace}_"
        )
        for (name,) in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def main_async(plan: Plan, work: Path) -> dict[str, Any]:
    started = time.monotonic()
    started_at = dt.datetime.now(dt.UTC)
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NATS_URL")
        nats_pid = None
        if not nats_url:
            server = stack.enter_context(NatsServer(work / "nats"))
            nats_url = server.url
            nats_pid = server._proc.pid if server._proc else None
        database_url = os.environ.get("DATABASE_URL")
        local_pg = True
        if not database_url:
            pg = stack.enter_context(PostgresServer(work / "postgres"))
            database_url = pg.dsn
        conn = await asyncpg.connect(database_url)
        pg_version = await conn.fetchval("SHOW server_version")
        pg_settings = {
            k: await conn.fetchval(f"SHOW {k}")
            for k in ("fsync", "synchronous_commit", "shared_buffers")
        }
        await conn.close()
        info = machine(nats_url, nats_pid)
        info["postgresql"] = (
            f"{pg_version} ({', '.join(f'{k}={v}' for k, v in pg_settings.items())})"
        )
        say(f"machine: {info['cpu_model']}, {info['cores']} cores, {info['memory_gib']} GiB")

        namespace = f"bench{secrets.token_hex(3)}"
        ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(plan.client_procs)
        stack.callback(pool.terminate)
        pool.map(load.run_job, [{"kind": "warm"}] * plan.client_procs, 1)
        bench = Bench(plan, pool, nats_url, database_url, nats_pid, local_pg, work, namespace)
        bench.ingest = await start_service(
            "ingest",
            {"NATS_URL": nats_url, "NORTHSTAR_NAMESPACE": namespace, "INGEST_RATE_LIMIT": "0"},
            work,
        )
        try:
            await bench.raw_publish()
            await bench.ingest_matrix()
            await bench.stream_matrix()
            await bench.latency_sweep()
            await bench.freshness()
            await bench.scale_out()
            await bench.profile_ingest()
            await bench.projector()
        finally:
            if bench.ingest is not None:
                bench.ingest.stop()
            await forget(nats_url, database_url, namespace)
    return {
        "mode": plan.mode,
        "plan": plan.__dict__,
        "started_at": started_at.isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": info,
        "settings": {
            "partitions": PARTITIONS,
            "namespace": namespace,
            "ingest_rate_limit": 0,
            "projector_batch_size": 2000,
            "nats": "local harness server" if nats_pid else "external",
            "postgres": "local harness server" if local_pg else "external",
        },
        **bench.results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short cells (under 5 minutes)")
    parser.add_argument("--client-procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    parser.add_argument(
        "--render-only", type=Path, help="render BENCHMARKS.md from a results JSON file"
    )
    args = parser.parse_args()
    if args.render_only:
        results = json.loads(args.render_only.read_text())
        report.write(results, ROOT)
        return
    plan = Plan.quick(args.client_procs) if args.quick else Plan.full(args.client_procs)
    work = Path(tempfile.mkdtemp(prefix="northstar-bench-"))
    try:
        results = asyncio.run(main_async(plan, work))
    except BaseException:
        say(f"failed; logs kept in {work}")
        raise
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-{plan.mode}.json"
    path.write_text(json.dumps(results, indent=2))
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    report.write(results, ROOT)
    say(f"results: {path}; BENCHMARKS.md written; took {results['wall_seconds']} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
