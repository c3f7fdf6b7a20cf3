"""`python -m bench.alerts [--quick]`: evaluation lag of many rules against a real metrics service.

10,000 rules across 100 tenants (quick: 1,000 across 10), each evaluated every minute by one
alerts evaluator (this process) against a metrics service in another process, both over
the local NATS and PostgreSQL in a fresh namespace (dropped afterwards). Each tenant has a
month of events (signups, activations, page views) projected by metrics first. The rules
are a mix: half the default KPI rules (one Kpis answer per tenant, shared by its KPI rules
for METRICS_SERVICE_CACHE_SECONDS), a quarter DAU anomaly rules (one Forecast read per
tenant, shared likewise) and a quarter relative changes of a daily event count, one event
name per rule (a Trend read each, never shared). They are put into the schedule
as the rules projection does (no log round trip per rule), their first due times spread
over a minute, as rules created at different times are.

Lag is from an evaluation's scheduled time to the start of the transaction that commits
it (`alert_evaluations.recorded_at - evaluated_at`), over every evaluation after the first
minute (warm-up). Also measured: the time of each claim, metrics read (by the answer it
waits for) and commit, and the CPU of the evaluator, metrics, the PostgreSQL backends
serving them and the NATS server. Writes the "Alerts" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import orjson
import psutil
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.report import replace_section
from northstar.log.v1 import log_pb2
from northstar_alerts.adapters.alert_store import EventOutbox
from northstar_alerts.adapters.metrics_client import MetricsClient
from northstar_alerts.adapters.schedule import RuleSchedule, RulesProjection
from northstar_alerts.application.evaluation import EvaluationRecorder, Observe
from northstar_alerts.application.scheduler import EvaluationScheduler
from northstar_alerts.bootstrap import MIGRATIONS
from northstar_alerts.domain.rule_events import CREATED, RuleEvent, event_to_json
from northstar_alerts.domain.rules import Anomaly, RelativeChange, Rule, Series, default_rules
from northstar_harness.isolation import drop_namespace, new_namespace
from northstar_harness.servers import free_port
from northstar_runtime.codec import TYPE_HEADER, encode_batch
from northstar_runtime.db import create_pool, load_migrations, migrate
from northstar_runtime.log import LogClient, OutgoingMessage
from northstar_runtime.projector import LogEntry
from northstar_runtime.topology import Topology

log = structlog.get_logger("bench.alerts")

SERVICE_KEY = "bench-alerts-service-key-01"
START_MARK, END_MARK = "<!-- alerts:start -->", "<!-- alerts:end -->"
DAY_US = 86_400_000_000
CACHE_S = 30.0  # METRICS_SERVICE_CACHE_SECONDS' default
T = TypeVar("T")


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class CpuOf:
    """CPU seconds used while measuring by the PostgreSQL backends serving some processes
    (found by their client ports, sampled as they come and go) and by the NATS server."""

    def __init__(self, clients: list[psutil.Process]) -> None:
        self._clients = clients
        self._start = time.time()
        self._backends: dict[int, tuple[psutil.Process, float, float]] = {}
        nats = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "nats-server"]
        # The shared server on the default port is the one the bench talks to.
        self._nats = next((p for p in nats if "4222" in " ".join(p.cmdline())), None)
        self._nats0 = self._cpu(self._nats) if self._nats else 0.0

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    def sample(self) -> None:
        """Note the backends serving the clients now, and every known backend's CPU."""
        ports = set()
        for c in self._clients:
            with contextlib.suppress(psutil.Error):
                ports |= {
                    k.laddr.port
                    for k in c.net_connections("tcp")
                    if k.raddr and k.raddr.port == 5432
                }
        for p in psutil.process_iter(["name"]):
            if p.info["name"] != "postgres":
                continue
            with contextlib.suppress(psutil.Error):
                if p.pid in self._backends:
                    proc, first, _ = self._backends[p.pid]
                    self._backends[p.pid] = (proc, first, self._cpu(proc))
                elif any(k.raddr and k.raddr.port in ports for k in p.net_connections("tcp")):
                    base = 0.0 if p.create_time() >= self._start else self._cpu(p)
                    self._backends[p.pid] = (p, base, self._cpu(p))

    def cores(self, wall: float) -> tuple[float, float]:
        """PostgreSQL (these clients' backends) and NATS cores used over `wall` seconds."""
        self.sample()
        pg = sum(last - first for _, first, last in self._backends.values())
        nats = 0.0
        if self._nats is not None:
            with contextlib.suppress(psutil.Error):
                nats = self._cpu(self._nats) - self._nats0
        return pg / wall, nats / wall


def _read_kind(rule: Rule) -> str:
    """Which metrics answer a bench rule reads: shared Kpis, shared Forecast, its own Trend."""
    if rule.series.kind == "kpi":
        return "kpis"
    return "forecast" if isinstance(rule.condition, Anomaly) else "trend"


class Phases:
    """Wall times of each phase of an evaluation (claim, metrics read, commit)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def timed(self, phase: str, call: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        times = self.seconds.setdefault(phase, [])

        async def run(*args: Any, **kwargs: Any) -> T:
            t0 = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                times.append(time.perf_counter() - t0)

        return run

    def observe(self, observe: Observe) -> Observe:
        """`observe` timed as a whole ("read") and by the answer it waits for."""
        kinds = {
            kind: self.timed(f"read_{kind}", observe) for kind in ("kpis", "forecast", "trend")
        }
        timed = self.timed("read", lambda rule, at: kinds[_read_kind(rule)](rule, at))
        return cast(Observe, timed)

    def summary(self) -> dict[str, float]:
        """Per phase: how many calls, their mean and p99 in milliseconds."""
        out: dict[str, float] = {}
        for k, v in self.seconds.items():
            out[f"{k}_calls"] = float(len(v))
            out[f"{k}_ms_per_call"] = 1000 * sum(v) / len(v) if v else 0.0
            out[f"{k}_ms_p99"] = 1000 * _pct(v, 0.99) if v else 0.0
        return out


KPI_RULES = default_rules("bench")


def _rule(tenant: str, i: int) -> Rule:
    kind = i % 4
    if kind < 2:
        kpi = KPI_RULES[i % len(KPI_RULES)]
        series, condition = kpi.series, kpi.condition
    elif kind == 2:
        series, condition = Series("metric", "dau"), Anomaly(z=2.0 + i % 3)
    else:
        # One event name per rule: these reads are never shared.
        series = Series("metric", "event_count", event_name=f"feature.{i}")
        condition = RelativeChange("<", warning=-0.3)
    return Rule(
        rule_id=f"bench-{i}",
        tenant=tenant,
        name=f"bench rule {i}",
        series=series,
        condition=condition,
        interval_s=60,
    )


def _events(tenant: int, now_us: int) -> list[log_pb2.StoredEvent]:
    out: list[log_pb2.StoredEvent] = []

    def add(name: str, user: str, ts: int, n: int) -> None:
        out.append(
            log_pb2.StoredEvent(
                event_id=f"{tenant}-{name}-{user}-{n}",
                event=name,
                user_id=user,
                timestamp_us=ts,
                original_timestamp_us=ts,
                received_at_us=ts,
                properties_json=b"{}",
            )
        )

    for u in range(30):
        user = f"u{u}"
        signup = now_us - (10 + u) * DAY_US
        add("user.signup", user, signup, 0)
        if (u + tenant) % 3 == 0:
            add("workflow.created", user, signup + 3_600_000_000, 0)
        for d in range(0, 10 + u, 3):
            add("page.view", user, signup + d * DAY_US + 60_000_000, d)
    return out


async def _feed(log_client: LogClient, tenants: list[str]) -> int:
    now_us = int(time.time() * 1e6) - 60_000_000
    messages = []
    total = 0
    for t, tenant in enumerate(tenants):
        events = _events(t, now_us)
        total += len(events)
        for i in range(0, len(events), 100):
            payload, headers = encode_batch(tenant, 0, events[i : i + 100])
            messages.append(
                OutgoingMessage(
                    log_client.topology.events_subject(tenant, 0), payload, headers=headers
                )
            )
    for i in range(0, len(messages), 200):
        await log_client.publish_many(messages[i : i + 200], timeout=30)
    return total


async def _serving(address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"metrics at {address} not serving after {timeout:g}s")


async def _projected(client: MetricsClient, tenant: str, timeout: float) -> None:
    rule = _rule(tenant, 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obs = await client.observe(rule, time.time())
        if obs.value is not None:
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"metrics had not projected {tenant} after {timeout:g}s")


async def run(quick: bool) -> dict[str, Any]:
    """Run the benchmark; its figures."""
    tenants_n, per_tenant = (10, 100) if quick else (100, 100)
    minutes = 3 if quick else 5
    concurrency, batch_size = 256, 100
    ns = new_namespace()
    nats_url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    tenants = [f"t{i}" for i in range(tenants_n)]
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "GRPC_ADDRESS": address,
        "METRICS_ADDRESS": "",
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "NORTHSTAR_NAMESPACE": ns,
        "NORTHSTAR_PARTITIONS": "4",
        "NORTHSTAR_API_KEYS": f"northstar:service:{SERVICE_KEY}",
        "LOG_LEVEL": "WARNING",
    }
    metrics = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "northstar_metrics",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    topology = Topology(ns)
    log_client = await LogClient.connect(nats_url, topology, name="bench-alerts")
    schema = topology.schema("alerts")
    pool = await create_pool(database_url, schema, max_size=16)
    channel = grpc.aio.insecure_channel(address)
    client = MetricsClient(channel, SERVICE_KEY, deadline_s=10, attempts=3, cache_s=CACHE_S)
    try:
        await _serving(address, 60)
        await log_client.ensure_streams()
        events = await _feed(log_client, tenants)
        await _projected(client, tenants[-1], 300)
        await migrate(pool, schema, load_migrations(MIGRATIONS))

        start = time.time() + 5
        entries = []
        for t, tenant in enumerate(tenants):
            for i in range(per_tenant):
                rule = _rule(tenant, i)
                entries.append(
                    LogEntry(
                        seq=t * per_tenant + i + 1,
                        subject=topology.domain_subject("alerts", tenant, "rule", rule.rule_id),
                        data=orjson.dumps(event_to_json(RuleEvent(CREATED, rule.rule_id, rule))),
                        headers={TYPE_HEADER: CREATED},
                    )
                )
        async with pool.acquire() as conn, conn.transaction():
            await RulesProjection().apply(conn, entries)
            await conn.execute("UPDATE alert_rules SET next_due_at = $1 + random() * 60", start)

        schedule = RuleSchedule(pool, owner="bench", lease_s=60)
        recorder = EvaluationRecorder(pool, schedule, EventOutbox(pool, log_client))
        phases = Phases()
        schedule.claim = phases.timed("claim", schedule.claim)  # type: ignore[method-assign]
        recorder.commit_many = phases.timed("commit", recorder.commit_many)  # type: ignore[method-assign]
        scheduler = EvaluationScheduler(
            schedule=schedule,
            recorder=recorder,
            observe=phases.observe(client.observe),
            outbox=EventOutbox(pool, log_client),
            concurrency=concurrency,
            batch_size=batch_size,
            timeout_s=30,
            poll_s=0.1,
        )
        me, them = psutil.Process(), psutil.Process(metrics.pid)
        servers = CpuOf([me, them])
        cpu0 = (me.cpu_times(), them.cpu_times())
        task = asyncio.create_task(scheduler.run())
        stop_at = start + minutes * 60
        while (left := stop_at - time.time()) > 0:
            await asyncio.sleep(min(5.0, left))
            servers.sample()
        scheduler.stop()
        await task
        cpu1 = (me.cpu_times(), them.cpu_times())
        wall = minutes * 60
        pg_cores, nats_cores = servers.cores(wall)

        rows = await pool.fetch(
            "SELECT extract(epoch FROM recorded_at) - evaluated_at AS lag, outcome"
            " FROM alert_evaluations WHERE evaluated_at >= $1 AND evaluated_at < $2",
            start + 60,
            start + wall,
        )
        lags = [float(r["lag"]) for r in rows]
        errors = sum(1 for r in rows if r["outcome"] == "error")
        due = await pool.fetchval(
            "SELECT count(*) FROM alert_rules WHERE next_due_at < $1", time.time() - 5
        )
        return {
            "rules": tenants_n * per_tenant,
            "tenants": tenants_n,
            "events": events,
            "minutes": minutes,
            "concurrency": concurrency,
            "batch_size": batch_size,
            "evaluations": len(rows),
            "expected": tenants_n * per_tenant * (minutes - 1),
            "errors": errors,
            "lag_p50_s": _pct(lags, 0.5) if lags else float("nan"),
            "lag_p99_s": _pct(lags, 0.99) if lags else float("nan"),
            "lag_max_s": max(lags) if lags else float("nan"),
            "behind_at_end": int(due),
            "evaluator_cores": (sum(cpu1[0][:2]) - sum(cpu0[0][:2])) / wall,
            "metrics_cores": (sum(cpu1[1][:2]) - sum(cpu0[1][:2])) / wall,
            "postgres_cores": pg_cores,
            "nats_cores": nats_cores,
            **phases.summary(),
        }
    finally:
        await client.close()
        await pool.close()
        await log_client.close()
        metrics.terminate()
        await metrics.wait()
        await drop_namespace(ns, nats_url=nats_url, database_url=database_url)


def render(r: dict[str, Any], quick: bool) -> str:
    """The BENCHMARKS.md section."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    when = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    mode = "quick" if quick else "full"
    lag = f"{r['lag_p50_s']:.2f} / {r['lag_p99_s']:.2f} / {r['lag_max_s']:.2f} s"
    pg_nats = f"{r['postgres_cores']:.2f} / {r['nats_cores']:.2f} cores"
    reads = f"{r['read_calls']:,.0f}, {r['read_ms_per_call']:.0f} / {r['read_ms_p99']:.0f} ms"
    by_kind = " — ".join(
        f"{r[f'read_{k}_ms_per_call']:.0f} / {r[f'read_{k}_ms_p99']:.0f} ms"
        for k in ("kpis", "forecast", "trend")
    )
    claims = f"{r['claim_calls']:,.0f}, {r['claim_ms_per_call']:.1f} / {r['claim_ms_p99']:.1f} ms"
    commits = (
        f"{r['commit_calls']:,.0f}, {r['commit_ms_per_call']:.1f} / {r['commit_ms_p99']:.1f} ms"
    )
    return f"""{START_MARK}
## Alerts: {mode} mode, {when}

### Machine

{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python
{platform.python_version()}; NATS and PostgreSQL on the same machine, shared with other work
while measuring. One evaluator (this process) and one metrics service (another process).

### Evaluation lag, {r["rules"]:,} rules across {r["tenants"]} tenants, every minute

| What | Figure |
|---|---|
| Evaluations measured (after a minute of warm-up) | {r["evaluations"]:,} of {r["expected"]:,} due |
| Evaluations committed per minute | {r["evaluations"] / (r["minutes"] - 1):,.0f} |
| Lag, scheduled to committed, p50 / p99 / max | {lag} |
| Error evaluations | {r["errors"]:,} |
| Rules overdue when the run stopped | {r["behind_at_end"]:,} |
| Evaluator CPU / metrics CPU | {r["evaluator_cores"]:.2f} / {r["metrics_cores"]:.2f} cores |
| PostgreSQL CPU (both processes' backends) / NATS CPU | {pg_nats} |
| Claim: statements, mean / p99 | {claims} |
| Metrics read: reads, mean / p99 (shared ones included) | {reads} |
| Commit: transactions (batches), mean / p99 | {commits} |
| Read by answer: Kpis / Forecast (shared) / Trend (own), mean / p99 | {by_kind} |

Method: {r["events"]:,} events projected by metrics first; {r["minutes"]} minutes of
evaluation with at most {r["concurrency"]} rules in flight. Rules: half the default KPI
rules (their tenant's Kpis answer shared for {CACHE_S:g} s), a quarter DAU anomaly rules
(one Forecast read per tenant, shared likewise) and a quarter relative changes of a daily
event count, one event name per rule (a Trend read each); first due times spread over a
minute. The lag includes any backlog carried over from the first minute (the warm-up), which
drains only as fast as the evaluator's spare capacity. Evaluations are committed in batches
of at most {r["batch_size"]} (one transaction each). PostgreSQL CPU is that of the backends
serving the evaluator and metrics (found by their client ports); the NATS server is shared
with other work, so its figure is an upper bound. Claim, read and commit times cover the
whole run, the warm-up's first evaluations (every rule's first transitions) included.
Reproduce: `make bench-alerts` (`--quick`: 1,000 rules across 10 tenants, 3 minutes).
{END_MARK}
"""


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="bench.alerts", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 rules, 3 minutes")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    results = asyncio.run(run(args.quick))
    log.info("alerts benchmark", **results)
    replace_section(args.out, START_MARK, END_MARK, render(results, args.quick))


if __name__ == "__main__":
    main()
