"""Rebuild: the time to replay the whole events log into each service's read models.

Part of `python -m bench.queries` (after the queries, on the same stream): every service
that projects the EVENTS stream (metrics, experiments) is started on empty read models
and timed until its checkpoint reaches the stream's last sequence, the way an operator
rebuilds one (`python -m northstar_<service> rebuild`, then a start). The rebuilt metrics
service is then asked every question of the run once more and its answers must equal the
live ones: a rebuild at the data set's scale, not only the tests' small sets.

Alerts and reports project only their own domain streams (rules, schedules, reports made),
not the events log, so they have no replay of the events to time.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc

from bench.run import (
    API_KEY,
    ROOT,
    CpuMeter,
    Service,
    follow_checkpoint,
    say,
    start_service,
    wait_quiet,
)
from northstar_runtime.topology import Topology

if TYPE_CHECKING:
    from bench.queries import Run

Cases = list[tuple[str, str, Any, Any]]

# The service and the projection (its checkpoint row) that reads the events log.
REPLAYED = {"metrics": "activity", "experiments": "experiment_events"}
# Fields that say where or when an answer was read (the log position, the seconds since
# the newest event at the time of the call), not what it is.
VOLATILE_FIELDS = ("log_position", "freshness_seconds")


def _operator_rebuild(service: str, env: dict[str, str]) -> float:
    """`python -m northstar_<service> rebuild`: drop and recreate its read models."""
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", f"northstar_{service}", "rebuild"],
        env={**os.environ, **env, "LOG_LEVEL": "WARNING", "LOG_FORMAT": "json"},
        cwd=ROOT,
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
    )
    return time.perf_counter() - t


async def _replay(
    run: Run, service: str, last_seq: int, events: int
) -> tuple[Service, dict[str, Any]]:
    """Rebuild one service's read models and start it; time until the checkpoint is at
    the stream's end. Returns the running service and the measurement."""
    env = {
        "NATS_URL": run.nats_url,
        "DATABASE_URL": run.database_url,
        "NORTHSTAR_NAMESPACE": run.namespace,
    }
    dropped_s = await asyncio.to_thread(_operator_rebuild, service, env)
    await wait_quiet(longest=run.plan.quiet_wait)
    schema = Topology(run.namespace).schema(service)
    projection = REPLAYED[service]
    conn = await asyncpg.connect(run.database_url)
    # Metered from before the start: a small log is replayed before the service says
    # SERVING. The new process's CPU counts from zero.
    meter = CpuMeter({service: []}, postgres=True)
    before = meter.snapshot()
    t0 = time.monotonic()
    svc = await start_service(service, env, run.work)
    t_serving = time.monotonic()
    meter.groups[service] = [svc.pid]
    try:
        timeline = await follow_checkpoint(
            conn, svc, schema, projection, last_seq, t0=t0, limit_s=3 * 3600, poll_s=0.2
        )
        t_done = time.monotonic()
        cores = CpuMeter.cores(before, meter.snapshot())
    except BaseException:
        svc.stop()
        raise
    finally:
        await conn.close()
    total = t_done - t0
    out: dict[str, Any] = {
        "projection": projection,
        "events": events,
        "operator_rebuild_seconds": round(dropped_s, 2),
        "seconds_to_serving": round(t_serving - t0, 2),
        "seconds": round(total, 2),
        "events_per_s": round(events / total),
        "cpu_cores": cores,
        "timeline": timeline[:: max(1, len(timeline) // 60)],
    }
    say(
        f"  {service}: {events:,} events replayed in {total:,.1f} s"
        f" ({events / total:,.0f}/s); cores {cores}"
    )
    return svc, out


def _strip_volatile(message: Any) -> Any:
    """A copy of an answer without the fields that say where or when it was read."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in VOLATILE_FIELDS:
        if name in copy.DESCRIPTOR.fields_by_name:
            copy.ClearField(name)
    return copy


async def _same_answers(run: Run, metrics: Service, cases: Cases) -> dict[str, Any]:
    """Ask every question once more; compare with the answers before the rebuild."""
    md = (("authorization", f"Bearer {API_KEY}"),)
    equal: list[str] = []
    different: list[str] = []
    async with grpc.aio.insecure_channel(
        metrics.address, options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    ) as ch:
        for label, method, request, response_cls in cases:
            live = run.answers.get(label)
            if live is None:
                continue
            call = ch.unary_unary(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=response_cls.FromString,
            )
            try:
                rebuilt = await call(request, metadata=md, timeout=600)
            except grpc.aio.AioRpcError as e:
                different.append(f"{label} ({e.code().name}: {e.details()})")
                continue
            if _strip_volatile(rebuilt) == _strip_volatile(live):
                equal.append(label)
            else:
                different.append(label)
    if different:
        say(f"  !! rebuilt metrics answers differently: {different}")
    else:
        say(f"  rebuilt metrics answers all {len(equal)} questions as before")
    return {"equal": equal, "different": different}


async def rebuild(run: Run, cases: Cases) -> dict[str, Any]:
    """Replay the events log into metrics and then experiments, each from empty; `cases`
    are the run's questions (label, full method name, request, response class).

    Passed in rather than imported from bench.queries: a late import would load the
    module from disk as it is then, not as the running benchmark started."""
    last_seq = int(run.results["load"]["stream_last_seq"])
    events = int(run.results["load"]["accepted"])
    out: dict[str, Any] = {}
    for service in REPLAYED:
        say(f"rebuild: {service} read models from the start of the log")
        svc, measured = await _replay(run, service, last_seq, events)
        try:
            if service == "metrics":
                measured["answers"] = await _same_answers(run, svc, cases)
        finally:
            svc.stop()
        out[service] = measured
    return out


def render(r: dict[str, Any]) -> list[str]:
    """The Rebuild part of the Queries section."""
    rb = r.get("rebuild")
    if not rb:
        return []
    lines = [
        "### Rebuild: the whole log replayed into each service's read models",
        "",
        "After the queries, each service that projects the events log is rebuilt the way an"
        " operator does it (`python -m northstar_<service> rebuild`, which drops and"
        " recreates its schema, then a start) and timed from the start until its checkpoint"
        " equals the stream's last sequence. Nothing else runs meanwhile (ingest is stopped).",
        "",
        "| service (projection) | events | seconds | events/s | target | CPU while replaying |",
        "|---|---|---|---|---|---|",
    ]
    for service, m in rb.items():
        cores = m["cpu_cores"]
        split = ", ".join(
            f"{k} {cores[k]:.2f}" for k in (service, "postgres", "other") if k in cores
        )
        target = "100,000 (metrics issue)" if service == "metrics" else ""
        lines.append(
            f"| {service} (`{m['projection']}`) | {m['events']:,} | {m['seconds']:,.1f}"
            f" | {m['events_per_s']:,} | {target} | {split} cores |"
        )
    lines.append("")
    answers = rb.get("metrics", {}).get("answers")
    if answers:
        if answers["different"]:
            lines.append(
                f"**The rebuilt metrics service answered {len(answers['different'])}"
                f" questions differently**: {', '.join(answers['different'])}."
            )
        else:
            lines.append(
                f"The rebuilt metrics service answered all {len(answers['equal'])} questions"
                " of the run exactly as the live one (each answer compared field by field,"
                " `log_position` and `freshness_seconds` aside): rebuild equals live at this scale."
            )
        lines.append("")
    lines += [
        "Alerts and reports are not in the table: they project only their own domain"
        " streams (rules, schedules, reports made), never the events log.",
        "",
    ]
    return lines
