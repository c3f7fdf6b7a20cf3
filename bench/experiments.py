"""`python -m bench.experiments [--quick]`: AssignBatch throughput and GetResults latency.

Starts the experiments service in this process against the local NATS and PostgreSQL (a
fresh namespace, dropped afterwards) and writes the "Experiments" section of BENCHMARKS.md.

- AssignBatch: one client in the same process (so server and client share one core: a
  conservative figure) sends 1,000-pair batches over gRPC for a fixed time. Baseline in the
  same run: the bare hashing (`domain.assignment.assign`) per second on the same core.
- GetResults: N users exposed, split over two variants, each with one metric event, loaded
  into the projection's tables by set-based SQL (`exposures`, `user_events`), then the
  aggregates rebuilt by the same code a definition change runs. Latency of GetResults over
  gRPC from the running sums; baseline in the same run: the exact path (an `as_of` before
  the latest counted timestamp), which computes the statistics from the per-user rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import psutil
import structlog

from bench.report import replace_section
from northstar.experiments.v1 import experiments_pb2 as pb
from northstar.experiments.v1 import experiments_pb2_grpc
from northstar_experiments.adapters import aggregates
from northstar_experiments.adapters.read_model import ReadModel
from northstar_experiments.bootstrap import build_host
from northstar_experiments.domain.assignment import assign
from northstar_experiments.settings import ExperimentsSettings
from northstar_harness.isolation import drop_namespace, new_namespace

log = structlog.get_logger("bench.experiments")

ADMIN = (("authorization", "Bearer bench-admin-key-0001"),)
READ = (("authorization", "Bearer bench-read-key-00001"),)
INGEST = (("authorization", "Bearer bench-ingest-key-0001"),)
KEYS = (
    "acme:admin:bench-admin-key-0001,acme:read:bench-read-key-00001,"
    "acme:ingest:bench-ingest-key-0001"
)
START_MARK, END_MARK = "<!-- experiments:start -->", "<!-- experiments:end -->"


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _definition(start_us: int) -> pb.ExperimentDefinition:
    return pb.ExperimentDefinition(
        name="bench",
        variants=[
            pb.Variant(key="control", name="Control", weight=0.5),
            pb.Variant(key="green", name="Green", weight=0.5),
        ],
        coverage=1.0,
        goal_metrics=[
            pb.Metric(name="purchase", kind=pb.METRIC_KIND_BINOMIAL, event="order.completed"),
            pb.Metric(
                name="revenue",
                kind=pb.METRIC_KIND_CONTINUOUS,
                event="order.completed",
                property="amount",
            ),
        ],
        analysis_start_us=start_us,
    )


def hashing_baseline(seconds: float) -> float:
    """Bare GrowthBook hashing of distinct ids per second."""
    n, i = 0, 0
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(1000):
            assign("bench-assign", f"user-{i}", [0.5, 0.5], 1.0)
            i += 1
        n += 1000
    return n / (time.perf_counter() - t0)


async def assign_batch(stub: Any, seconds: float) -> dict[str, Any]:
    """AssignBatch of 1,000 distinct pairs per call, for `seconds`."""
    # Requests are built before the clock starts: the figure is the service's cost (and the
    # client's gRPC call and response parsing, which share the core).
    requests = [
        pb.AssignBatchRequest(
            queries=[
                pb.AssignmentQuery(experiment_key="bench-assign", user_id=f"user-{j}-{k}")
                for k in range(1000)
            ]
        )
        for j in range(50)
    ]
    calls = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        request = requests[calls % len(requests)]
        c0 = time.perf_counter()
        response = await stub.AssignBatch(request, metadata=INGEST)
        latencies.append(time.perf_counter() - c0)
        assert len(response.assignments) == 1000
        calls += 1
    wall = time.perf_counter() - t0
    return {
        "assignments_per_s": calls * 1000 / wall,
        "calls": calls,
        "call_p50_ms": _pct(latencies, 0.5) * 1000,
        "call_p95_ms": _pct(latencies, 0.95) * 1000,
    }


def _remote_client(address: str, seconds: float) -> dict[str, Any]:
    """In a separate process: AssignBatch calls, 2 in flight, requests serialized up front."""

    async def run() -> dict[str, Any]:
        bodies = [
            pb.AssignBatchRequest(
                queries=[
                    pb.AssignmentQuery(experiment_key="bench-assign", user_id=f"r-{j}-{k}")
                    for k in range(1000)
                ]
            ).SerializeToString()
            for j in range(50)
        ]
        calls = 0
        async with grpc.aio.insecure_channel(
            address, options=[("grpc.max_receive_message_length", 64 << 20)]
        ) as channel:
            call = channel.unary_unary(
                "/northstar.experiments.v1.ExperimentsService/AssignBatch",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            deadline = time.perf_counter() + seconds
            t0 = time.perf_counter()

            async def worker(offset: int) -> None:
                nonlocal calls
                i = offset
                while time.perf_counter() < deadline:
                    await call(bodies[i % len(bodies)], metadata=INGEST)
                    calls += 1
                    i += 2

            await asyncio.gather(worker(0), worker(1))
            wall = time.perf_counter() - t0
        return {"assignments_per_s": calls * 1000 / wall, "calls": calls, "wall_s": wall}

    return asyncio.run(run())


async def assign_batch_remote(port: int, seconds: float) -> dict[str, Any]:
    """AssignBatch driven from another process: the service's own core use is measured."""
    me = psutil.Process()
    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with ctx.Pool(1) as pool:
        pool.apply(time.sleep, (0,))  # the worker has started and imported before the clock
        before = me.cpu_times()
        result = await loop.run_in_executor(
            None, pool.apply, _remote_client, (f"127.0.0.1:{port}", seconds)
        )
        after = me.cpu_times()
    busy = (after.user - before.user) + (after.system - before.system)
    result["service_cores"] = busy / result["wall_s"]
    result["assignments_per_service_core_s"] = result["assignments_per_s"] / result["service_cores"]
    return result


_LOAD_EXPOSURES = """
INSERT INTO exposures (tenant, event_id, experiment, variant, user_id, ts_us)
SELECT 'acme', 'x-' || g, 'bench-results', CASE WHEN g % 2 = 0 THEN 'control' ELSE 'green' END,
       'u-' || g, $1::bigint + g
FROM generate_series(1, $2::int) g
"""
_LOAD_EVENTS = """
INSERT INTO user_events (tenant, event_id, user_id, event, ts_us, properties)
SELECT 'acme', 'o-' || g, 'u-' || g, 'order.completed', $1::bigint + g + 1000,
       jsonb_build_object('amount', 10 + g % 90)
FROM generate_series(1, $2::int) g WHERE g % 3 <> 0
"""


async def results_latency(
    host: Any, stub: Any, users: int, calls: int, exact_calls: int
) -> dict[str, Any]:
    """GetResults latency from the running sums, and the exact path's as the baseline."""
    start = time.time_ns() // 1000 - 86_400_000_000 * 2
    created = await stub.CreateExperiment(
        pb.CreateExperimentRequest(key="bench-results", definition=_definition(start)),
        metadata=ADMIN,
    )
    await stub.StartExperiment(
        pb.StartExperimentRequest(key="bench-results", expected_version=created.experiment.version),
        metadata=ADMIN,
    )
    pool = host.resources.pool
    rm = ReadModel(pool)
    for _ in range(200):  # the DOMAIN projection folds the start
        found = await rm.get("acme", "bench-results")
        if found is not None and found[0].started_at_us:
            break
        await asyncio.sleep(0.05)
    # A connection of its own: loading and rebuilding a million users outlasts the pool's
    # command timeout.
    conn = await asyncpg.connect(
        host.settings.database_url,
        server_settings={"search_path": f"{host.topology.schema('experiments')},public"},
    )
    try:
        t0 = time.perf_counter()
        await conn.execute(_LOAD_EXPOSURES, start, users)
        await conn.execute(_LOAD_EVENTS, start, users)
        await conn.execute("ANALYZE exposures")
        await conn.execute("ANALYZE user_events")
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = await rm.get("acme", "bench-results")
        assert found is not None
        async with conn.transaction():
            await aggregates.lock(conn)
            await aggregates.rebuild(conn, "acme", found[0])
        await conn.execute("ANALYZE experiment_sums")
    finally:
        await conn.close()
    rebuild_s = time.perf_counter() - t0
    request = pb.GetResultsRequest(experiment_key="bench-results")
    first = await stub.GetResults(request, metadata=READ)
    assert sum(first.srm.users) == users, first.srm.users
    fast: list[float] = []
    for _ in range(calls):
        c0 = time.perf_counter()
        await stub.GetResults(request, metadata=READ)
        fast.append(time.perf_counter() - c0)
    # An as_of one microsecond before the latest exposure: the sums cannot answer it.
    past = pb.GetResultsRequest(experiment_key="bench-results", as_of_us=start + users - 1)
    exact: list[float] = []
    for _ in range(exact_calls):
        c0 = time.perf_counter()
        await stub.GetResults(past, metadata=READ)
        exact.append(time.perf_counter() - c0)
    return {
        "users": users,
        "load_s": load_s,
        "rebuild_s": rebuild_s,
        "fast_p50_ms": _pct(fast, 0.5) * 1000,
        "fast_p95_ms": _pct(fast, 0.95) * 1000,
        "fast_calls": calls,
        "exact_p50_ms": statistics.median(exact) * 1000,
        "exact_calls": exact_calls,
    }


async def run(quick: bool) -> dict[str, Any]:
    """Start the service, measure, stop it."""
    nats_url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    namespace = new_namespace()
    settings = ExperimentsSettings(
        grpc_address="127.0.0.1:0",
        nats_url=nats_url,
        database_url=database_url,
        northstar_namespace=namespace,
        northstar_api_keys=KEYS,
        northstar_partitions=4,
        shutdown_grace_seconds=1.0,
    )
    host = build_host(settings, configure_process=False)
    port = await host.start()
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    stub = experiments_pb2_grpc.ExperimentsServiceStub(channel)
    try:
        created = await stub.CreateExperiment(
            pb.CreateExperimentRequest(key="bench-assign", definition=_definition(0)),
            metadata=ADMIN,
        )
        await stub.StartExperiment(
            pb.StartExperimentRequest(
                key="bench-assign", expected_version=created.experiment.version
            ),
            metadata=ADMIN,
        )
        for _ in range(200):  # until the DOMAIN projection has folded the start
            try:
                r = await stub.Assign(
                    pb.AssignRequest(experiment_key="bench-assign", user_id="warm"),
                    metadata=INGEST,
                )
            except grpc.aio.AioRpcError:
                r = None
            if r is not None and r.assignment.hash_value:
                break
            await asyncio.sleep(0.05)
        seconds = 3.0 if quick else 10.0
        out: dict[str, Any] = {
            "hashing_per_s": hashing_baseline(seconds / 2),
            "assign": await assign_batch(stub, seconds),
            "assign_remote": await assign_batch_remote(port, seconds),
        }
        out["results"] = await results_latency(
            host,
            stub,
            users=100_000 if quick else 1_000_000,
            calls=20 if quick else 50,
            exact_calls=2 if quick else 3,
        )
        return out
    finally:
        await channel.close(None)
        await host.stop()
        await drop_namespace(namespace, nats_url=nats_url, database_url=database_url)


def render(r: dict[str, Any], quick: bool) -> str:
    """The BENCHMARKS.md section."""
    a, g, ar = r["assign"], r["results"], r["assign_remote"]
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
    remote_rows = "\n".join(
        [
            "| AssignBatch, 1,000 distinct pairs per call, 2 calls in flight"
            f" | {ar['assignments_per_s']:,.0f} assignments/s | |",
            f"| The service's CPU meanwhile | {ar['service_cores']:.2f} cores | |",
            "| Per core of the service"
            f" | {ar['assignments_per_service_core_s']:,.0f} assignments/s"
            " | >= 100,000 (goal 200,000) |",
        ]
    )
    assign_row = (
        "| AssignBatch, 1,000 distinct pairs per call, no exposure"
        f" | {a['assignments_per_s']:,.0f} assignments/s | (conservative: see below) |"
    )
    fast_row = (
        "| GetResults (frequentist, 2 goal metrics) p50 / p95, from the running sums"
        f" | {g['fast_p50_ms']:.1f} / {g['fast_p95_ms']:.1f} ms ({g['fast_calls']} calls)"
        " | < 200 ms |"
    )
    exact_row = (
        "| Baseline: the exact path (`as_of` before the latest exposure) p50"
        f" | {g['exact_p50_ms']:,.0f} ms ({g['exact_calls']} calls) | |"
    )
    return f"""{START_MARK}
## Experiments: {mode} mode, {when}

### Machine

{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python
{platform.python_version()}; NATS and PostgreSQL on the same machine, shared with other work
while measuring. The service runs in the benchmark's process (`make bench-experiments`).

### AssignBatch (one process, one core: server and client share it)

| What | Figure | Target |
|---|---|---|
{assign_row}
| Per call p50 / p95 | {a["call_p50_ms"]:.1f} / {a["call_p95_ms"]:.1f} ms | |
| Baseline: bare GrowthBook hashing (`assign`) | {r["hashing_per_s"]:,.0f} ids/s | |
| AssignBatch / bare hashing | {a["assignments_per_s"] / r["hashing_per_s"]:.2f} | |

Method: {a["calls"]} calls over gRPC on 127.0.0.1 from a client in the same event loop, cycling
through 50 prebuilt requests of distinct ids; the client's call and response parsing share
the core, so this is a conservative figure for the service on one core.

### AssignBatch with the client in another process

| What | Figure | Target |
|---|---|---|
{remote_rows}

Method: {ar["calls"]} calls from a client in a separate process (requests serialized before
the clock, responses not parsed); the service's process CPU time (user + system, psutil) over
the same wall time gives its cores, and the throughput divided by them its figure per core.
The event loop is single-threaded; gRPC's own threads add a little on top of one core.

### GetResults with {g["users"]:,} exposed users

| What | Figure | Target |
|---|---|---|
{fast_row}
{exact_row}
| Exact path / running sums | {g["exact_p50_ms"] / g["fast_p50_ms"]:,.0f}x | |

Method: {g["users"]:,} exposures (half per variant) and an order for two users in three were
written into `exposures` and `user_events` by set-based SQL ({g["load_s"]:.1f} s), then the
experiment's aggregates were rebuilt by the code a definition change runs
({g["rebuild_s"]:.1f} s). GetResults answers from `experiment_sums`, whatever the number of
users; the exact path computes the statistics from the per-user rows at query time.
{END_MARK}
"""


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="bench.experiments", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k users, short cells")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args()
    results = asyncio.run(run(args.quick))
    log.info("experiments benchmark", **results)
    replace_section(args.out, START_MARK, END_MARK, render(results, args.quick))


if __name__ == "__main__":
    main()
