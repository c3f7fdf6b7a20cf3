"""The long fault tier (`make faults`): faults under a retrying load of a realistic event mix.

Every service process is killed with SIGKILL (and, with two replicas of ingest, metrics and
experiments, the first of each while the second serves), NATS and PostgreSQL are restarted, the
projectors are paused for a minute, a poison entry is written to the log, each while a
client that sends every request twice (and retries each until answered) loads ingest.
Afterwards ActiveUsers, Retention, Funnel, Revenue and the experiment's GetResults equal a
reference computed here, in plain Python, from exactly the events the client was told were
accepted: no loss, no double count, and nothing parked on a dead-letter subject but the
poison entry.

Reports have a small stack of their own (no load): a reports replica SIGKILLed while
generating or while delivering leaves one report per period and one delivery per target,
finished by the other replica.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import sys
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import nats
import orjson
import pytest
import structlog
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from northstar.alerts.v1 import alerts_pb2, alerts_pb2_grpc
from northstar.experiments.v1 import experiments_pb2 as xpb
from northstar.experiments.v1 import experiments_pb2_grpc
from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar.metrics.v1 import (
    filters_pb2,
    funnel_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
    retention_pb2,
    revenue_pb2,
)
from northstar.reports.v1 import reports_pb2 as rpb
from northstar_experiments.domain.assignment import assign
from northstar_harness.eventually import assert_eventually
from northstar_harness.receivers import HttpReceiver, Route, SmtpReceiver
from northstar_harness.servers import NatsServer, PostgresServer, free_port
from northstar_reports.domain.events import delivery_id
from northstar_runtime.topology import Topology

from . import test_reports
from .conftest import ADMIN_KEY, READER_KEY, WRITER_KEY, auth
from .processes import ReportsStack, ServiceProcess, process_env

pytestmark = pytest.mark.faults_long

ROOT = Path(__file__).resolve().parents[2]
US = 1_000_000
DAY_US = 86_400 * US
NAMESPACE = "faultslong"
LAST = datetime.now(UTC).date() - timedelta(days=2)  # every event lies before today
DAYS = 60
FIRST = LAST - timedelta(days=DAYS - 1)
USERS = 1_100  # about 24k events with the experiment's
BATCH = 100  # events per Track request
RATE = 1_000  # events per second offered
IN_FLIGHT = 8  # requests the client has outstanding at most
EXPERIMENT = "checkout"
VARIANTS = ("control", "treatment")
WEIGHTS = (0.5, 0.5)
COVERAGE = 0.9
ANSWERED = {ingest_pb2.EVENT_STATUS_ACCEPTED, ingest_pb2.EVENT_STATUS_DUPLICATE}
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
SERVICES = {
    "ingest": "northstar_ingest",
    "metrics": "northstar_metrics",
    "experiments": "northstar_experiments",
    "alerts": "northstar_alerts",
}
log = structlog.get_logger("northstar.tests.faults")


def _package(name: str, directory: Path) -> types.ModuleType:
    """`directory` importable as package `name` (test folders are not packages)."""
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(directory)]
        sys.modules[name] = package
    return sys.modules[name]


# The metrics service's own brute-force references, and the benchmark's data set generator.
_package("metrics_reference", ROOT / "services/metrics/tests")
_package("bench_data", ROOT / "bench")
reference = importlib.import_module("metrics_reference.reference")
reference_funnel = importlib.import_module("metrics_reference.reference_funnel")
reference_retention = importlib.import_module("metrics_reference.reference_retention")
reference_revenue = importlib.import_module("metrics_reference.reference_revenue")
dataset = importlib.import_module("bench_data.dataset")


# ---------------------------------------------------------------------------------------------
# The workload: the benchmark's SaaS mix, plus the experiment's exposures and purchases.


def _experiment_events(signups: list[dict[str, Any]], end_us: int) -> list[dict[str, Any]]:
    """Exposures (some users seen twice, a few in both variants) and purchases around them."""
    rng = random.Random(2026)
    row = dataset._event  # the data set's own event shape
    out = []
    for s in signups:
        if rng.random() > 0.6:
            continue
        user = s["user_id"]
        index, _ = assign(EXPERIMENT, user, WEIGHTS, COVERAGE)
        if index < 0:
            continue
        seen = s["timestamp_us"] + rng.randrange(1, 3_600 * US)
        exposures = [(seen, VARIANTS[index])]
        if rng.random() < 0.2:  # exposed again later: the first exposure still decides
            exposures.append((seen + DAY_US, VARIANTS[index]))
        if rng.random() < 0.03:  # exposed to the other variant too: left out of results
            exposures.append((seen + 2 * DAY_US, VARIANTS[1 - index]))
        for n, (at, variant) in enumerate(exposures):
            out.append(
                row(
                    f"{user}-x{n}",
                    "experiment.exposure",
                    at,
                    user,
                    experiment=EXPERIMENT,
                    variant=variant,
                )
            )
        purchases = []
        if rng.random() < 0.1:  # bought before being exposed: not a conversion
            purchases.append((seen - rng.randrange(1, DAY_US), 1_500))
        if rng.random() < (0.25 if index == 0 else 0.32):
            for _ in range(rng.randrange(1, 4)):
                at = seen + rng.randrange(1, 10 * DAY_US)
                purchases.append((at, rng.choice((900, 1_900, 4_900))))
        for n, (at, amount) in enumerate(purchases):
            out.append(row(f"{user}-p{n}", "checkout.completed", at, user, amount=amount))
    return [e for e in out if e["timestamp_us"] < end_us]


def _as_proto(row: dict[str, Any]) -> ingest_pb2.Event:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(row["timestamp_us"])
    return ingest_pb2.Event(
        event_id=row["event_id"],
        event=row["event"],
        user_id=row["user_id"],
        org_id=row["org_id"],
        timestamp=ts,
        properties_json=orjson.dumps(row["properties"]).decode(),
    )


_WORKLOAD: list[ingest_pb2.Event] = []


def workload() -> list[ingest_pb2.Event]:
    """The same ~24k events for every scenario, in an order that mixes users and days."""
    if not _WORKLOAD:
        end = datetime(LAST.year, LAST.month, LAST.day, tzinfo=UTC)
        end_us = int(end.timestamp()) * US + DAY_US
        shape = dataset.Shape(users=USERS, days=DAYS, end=end, seed=7)
        # The generator lets a few first workflows fall after its last day: not yet happened.
        rows = [r for r in dataset.generate(shape) if r["timestamp_us"] < end_us]
        signups = [r for r in rows if r["event"] == "user.signup"]
        rows += _experiment_events(signups, end_us)
        random.Random(3).shuffle(rows)  # late and early events, as many clients send them
        _WORKLOAD.extend(_as_proto(r) for r in rows)
    return _WORKLOAD


def as_reference_event(e: ingest_pb2.Event) -> Any:
    """An event as the metrics references see it."""
    return reference.Ev(
        e.event_id, e.event, e.user_id, e.org_id, e.timestamp.ToMicroseconds(), e.properties_json
    )


# ---------------------------------------------------------------------------------------------
# What the answers must be, from the accepted events only.

FUNNEL = reference_funnel.RefFunnel(
    steps=(
        reference_funnel.RefStep("user.signup"),
        reference_funnel.RefStep("integration.connected"),
        reference_funnel.RefStep("workflow.created"),
        reference_funnel.RefStep(
            "workflow.run", (reference_funnel.RefFilter("status", "eq", ("success",)),)
        ),
    ),
    first_day=FIRST,
    last_day=LAST,
)
RETENTION = (
    {"granularity": "week", "periods": 8, "mode": "on_day", "segment": None},
    {"granularity": "day", "periods": 14, "mode": "on_or_after", "segment": ("channel", "seo")},
)


@dataclass(frozen=True)
class VariantSums:
    """What GetResults reports of one variant for one metric."""

    users: int
    sum: float
    sum_squares: float


@dataclass(frozen=True)
class Answers:
    """Every answer the scenarios compare, in plain values."""

    active_users: list[tuple[str, int, int, int, int]]
    retention: list[Any]
    funnel: dict[str, Any]
    revenue_days: list[tuple[str, int, int, float | None]]
    revenue_months: list[Any]
    exposed: list[int]  # users per variant (SRM counts)
    multiple_exposures: int
    experiment_metrics: dict[str, list[VariantSums]]


def experiment_reference(events: list[Any]) -> tuple[list[int], int, dict[str, list[VariantSums]]]:
    """Exposed users per variant, users in both, and per-variant sums of each goal metric."""
    exposures: dict[str, list[tuple[int, str, str]]] = {}
    purchases: dict[str, list[tuple[int, int]]] = {}
    for e in reference.dedup(events):
        props = orjson.loads(e.properties)
        if e.event == "experiment.exposure" and props.get("experiment") == EXPERIMENT:
            if props.get("variant") in VARIANTS:
                exposures.setdefault(e.user_id, []).append(
                    (e.timestamp_us, e.event_id, props["variant"])
                )
        elif e.event == "checkout.completed":
            purchases.setdefault(e.user_id, []).append((e.timestamp_us, props["amount"]))
    per_variant: list[list[tuple[bool, int]]] = [[] for _ in VARIANTS]
    both = 0
    for user, seen in exposures.items():
        if len({v for _, _, v in seen}) > 1:
            both += 1
            continue
        first_ts, _, variant = min(seen)
        bought = [amount for ts, amount in purchases.get(user, []) if ts >= first_ts]
        per_variant[VARIANTS.index(variant)].append((bool(bought), sum(bought)))
    metrics = {
        "purchased": [
            VariantSums(len(us), float(sum(b for b, _ in us)), float(sum(b for b, _ in us)))
            for us in per_variant
        ],
        "revenue": [
            VariantSums(len(us), float(sum(a for _, a in us)), float(sum(a * a for _, a in us)))
            for us in per_variant
        ],
    }
    return [len(us) for us in per_variant], both, metrics


_EXPECTED: dict[frozenset[str], Answers] = {}


def expected(accepted: list[ingest_pb2.Event]) -> Answers:
    """The reference answers over exactly these events (computed once per distinct set)."""
    key = frozenset(e.event_id for e in accepted)
    if key in _EXPECTED:
        return _EXPECTED[key]
    events = [as_reference_event(e) for e in accepted]
    names = {s.event for s in FUNNEL.steps}
    billing = [e for e in events if e.event.startswith(("subscription.", "marketing."))]
    exposed, both, sums = experiment_reference(events)
    answers = Answers(
        active_users=reference.active_users(events, FIRST, LAST),
        retention=[
            reference_retention.retention(events, first=FIRST, last=LAST, as_of=LAST, **q)
            for q in RETENTION
        ],
        funnel=reference_funnel.funnel(FUNNEL, [e for e in events if e.event in names]),
        revenue_days=reference_revenue.daily(billing, FIRST, LAST),
        revenue_months=reference_revenue.months(
            [*billing, *(e for e in events if e.event == "user.signup")], FIRST, LAST
        ),
        exposed=exposed,
        multiple_exposures=both,
        experiment_metrics=sums,
    )
    _EXPECTED[key] = answers
    return answers


# ---------------------------------------------------------------------------------------------
# The services' answers in the same shapes.


def _field(message: Any, name: str) -> Any:
    """A field's value; None for an optional field that is not set."""
    if message.DESCRIPTOR.fields_by_name[name].has_presence and not message.HasField(name):
        return None
    return getattr(message, name)


def _row(message: Any, *names: str) -> tuple[Any, ...]:
    return tuple(_field(message, name) for name in names)


# The reference's names of revenue month numbers, where the proto's differ.
_MONTH_FIELDS = {
    "paying_start": "paying_orgs_start",
    "paying_end": "paying_orgs_end",
    "new": "new_mrr",
    "expansion": "expansion_mrr",
    "contraction": "contraction_mrr",
    "churned": "churned_mrr",
    "spend": "marketing_spend",
}


def _month(m: revenue_pb2.RevenueMonth) -> Any:
    values = {
        f.name: _field(m, _MONTH_FIELDS.get(f.name, f.name))
        for f in fields(reference_revenue.RefMonth)
        if f.name != "channels"
    }
    channels = (_row(c, "channel", "marketing_spend", "new_orgs", "cac") for c in m.channels)
    return reference_revenue.RefMonth(**values, channels=tuple(channels))


def _cells(cells: Any) -> list[tuple[Any, ...]]:
    return [_row(c, "period", "retained", "cohort_size", "retention") for c in cells]


_STEP = ("users", "conversion_from_previous", "conversion_from_first", "median_seconds_from_first")


def _matcher(step: Any) -> filters_pb2.EventMatcher:
    return filters_pb2.EventMatcher(
        event=step.event,
        filters=[
            filters_pb2.PropertyFilter(
                property=f.prop,
                operator=filters_pb2.FILTER_OPERATOR_EQUALS,
                values=[{"string_value": v} for v in f.values],
            )
            for f in step.filters
        ],
    )


class Stack:
    """Ingest, metrics, experiments and alerts as processes on the test's own servers.

    Each service named in `replicas` runs a second process, `<name>-b`, beside the first:
    ingest replicas share the load, metrics and experiments replicas answer queries and
    stand by for the projector lock the first one holds.
    """

    def __init__(
        self, nats_url: str, database_url: str, logs: Path, replicas: tuple[str, ...] = ()
    ) -> None:
        modules = {**SERVICES, **{f"{name}-b": SERVICES[name] for name in replicas}}
        self.ports = {name: free_port() for name in modules}
        self.processes = {
            name: ServiceProcess(
                {
                    **process_env(self.ports[name], nats_url, database_url, NAMESPACE),
                    "SHUTDOWN_GRACE_SECONDS": "1",
                },
                module=module,
                log=logs / f"{name}.log",
            )
            for name, module in modules.items()
        }
        self.channels = {
            name: grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            for name, port in self.ports.items()
        }
        self.ingest = ingest_pb2_grpc.IngestServiceStub(self.channels["ingest"])
        self.metrics = metrics_pb2_grpc.MetricsServiceStub(self.channels["metrics"])
        self.experiments = experiments_pb2_grpc.ExperimentsServiceStub(self.channels["experiments"])
        self.alerts = alerts_pb2_grpc.AlertsServiceStub(self.channels["alerts"])

    def replica(self, name: str, side: str) -> str:
        """The process name of a service's replica `a` (the first) or `b`."""
        return name if side == "a" else f"{name}-b"

    def ingest_stubs(self) -> list[ingest_pb2_grpc.IngestServiceStub]:
        """Every ingest replica's stub, the first one first."""
        names = [n for n in self.channels if n == "ingest" or n == "ingest-b"]
        return [ingest_pb2_grpc.IngestServiceStub(self.channels[n]) for n in names]

    def readers(self) -> list[tuple[str, str]]:
        """(metrics, experiments) process names of each side that serves queries."""
        sides = [("metrics", "experiments")]
        if "metrics-b" in self.channels:
            sides.append(("metrics-b", "experiments-b"))
        return sides

    async def start(self) -> None:
        """Start every service and wait until each reports SERVING."""
        for process in self.processes.values():
            await process.start()
        for name in self.processes:
            await self.serving(name)

    async def serving(self, name: str, timeout: float = 60) -> None:
        """Wait until the service's health check says SERVING."""
        health = health_pb2_grpc.HealthStub(self.channels[name])

        async def up() -> bool:
            try:
                r = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.aio.AioRpcError as e:
                raise AssertionError(f"{name}: {e.code()}") from e
            return r.status == health_pb2.HealthCheckResponse.SERVING

        await assert_eventually(up, timeout=timeout, interval=0.1)

    async def stop(self) -> None:
        """Close the channels; SIGTERM whatever still runs (SIGCONT first if paused)."""
        for channel in self.channels.values():
            await channel.close()
        for process in self.processes.values():
            if process.running:
                process.resume()
                await process.terminate()

    async def answers(self, side: str = "a") -> Answers:
        """Every compared answer, as the replicas of `side` give it now."""
        span = {"from_date": FIRST.isoformat(), "to_date": LAST.isoformat()}
        read = {"metadata": auth(READER_KEY), "timeout": 10}
        metrics = metrics_pb2_grpc.MetricsServiceStub(self.channels[self.replica("metrics", side)])
        experiments = experiments_pb2_grpc.ExperimentsServiceStub(
            self.channels[self.replica("experiments", side)]
        )
        active = await metrics.ActiveUsers(metrics_pb2.ActiveUsersRequest(**span), **read)
        retention = []
        for q in RETENTION:
            segment = None
            if q["segment"] is not None:
                segment = retention_pb2.CohortSegment(
                    attribute=retention_pb2.COHORT_ATTRIBUTE_CHANNEL, value=q["segment"][1]
                )
            r = await metrics.Retention(
                retention_pb2.RetentionRequest(
                    granularity=retention_pb2.CohortGranularity.Value(
                        f"COHORT_GRANULARITY_{q['granularity'].upper()}"
                    ),
                    periods=q["periods"],
                    mode=retention_pb2.RetentionMode.Value(f"RETENTION_MODE_{q['mode'].upper()}"),
                    segment=segment,
                    as_of_date=LAST.isoformat(),
                    **span,
                ),
                **read,
            )
            rows = [
                (*_row(c, "cohort_start", "cohort_end", "size"), _cells(c.cells)) for c in r.cohorts
            ]
            retention.append((rows, _cells(r.combined)))
        funnel = await metrics.Funnel(
            funnel_pb2.FunnelRequest(
                steps=[_matcher(s) for s in FUNNEL.steps],
                window_seconds=FUNNEL.window_us // US,
                **span,
            ),
            **read,
        )
        revenue = await metrics.Revenue(revenue_pb2.RevenueRequest(**span), **read)
        results = await experiments.GetResults(
            xpb.GetResultsRequest(experiment_key=EXPERIMENT), **read
        )
        return Answers(
            active_users=[(d.date, d.dau, d.wau, d.mau, d.mao) for d in active.days],
            retention=retention,
            funnel={
                "overall": ([_row(s, *_STEP) for s in funnel.overall.steps], None),
                "breakdowns": [],
            },
            revenue_days=[_row(d, "date", "mrr", "paying_orgs", "arpu") for d in revenue.days],
            revenue_months=[_month(m) for m in revenue.months],
            exposed=list(results.srm.users),
            multiple_exposures=results.multiple_exposures,
            experiment_metrics={
                m.metric: [VariantSums(v.users, v.sum, v.sum_squares) for v in m.variants]
                for m in results.metrics
            },
        )

    async def define_experiment(self) -> None:
        """Create and start the experiment, and wait until its results can be asked for."""
        definition = xpb.ExperimentDefinition(
            name="checkout copy",
            variants=[xpb.Variant(key=k, weight=w) for k, w in zip(VARIANTS, WEIGHTS, strict=True)],
            coverage=COVERAGE,
            goal_metrics=[
                xpb.Metric(
                    name="purchased", kind=xpb.METRIC_KIND_BINOMIAL, event="checkout.completed"
                ),
                xpb.Metric(
                    name="revenue",
                    kind=xpb.METRIC_KIND_CONTINUOUS,
                    event="checkout.completed",
                    property="amount",
                ),
            ],
            analysis_start_us=int(
                datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=UTC).timestamp()
            )
            * US,
        )
        admin = {"metadata": auth(ADMIN_KEY), "timeout": 10}
        created = await self.experiments.CreateExperiment(
            xpb.CreateExperimentRequest(key=EXPERIMENT, definition=definition), **admin
        )
        await self.experiments.StartExperiment(
            xpb.StartExperimentRequest(key=EXPERIMENT, expected_version=created.experiment.version),
            **admin,
        )

        async def analysable() -> xpb.GetResultsResponse:
            try:
                return await self.experiments.GetResults(
                    xpb.GetResultsRequest(experiment_key=EXPERIMENT),
                    metadata=auth(READER_KEY),
                    timeout=5,
                )
            except grpc.aio.AioRpcError as e:
                raise AssertionError(f"not projected yet: {e.code()}") from e

        await assert_eventually(analysable, timeout=30, interval=0.2)

    async def define_rule(self) -> None:
        """An alert rule, to find again after the faults."""
        rule = alerts_pb2.Rule(
            rule_id="dau-low",
            name="DAU low",
            series=alerts_pb2.Series(kind=alerts_pb2.SERIES_KIND_METRIC, name="dau"),
            threshold=alerts_pb2.Levels(
                comparator=alerts_pb2.COMPARATOR_LESS, warning=100.0, critical=50.0
            ),
            for_seconds=300,
            channels=alerts_pb2.Channels(webhooks=["http://127.0.0.1:9/hook"]),
        )
        await self.alerts.CreateRule(
            alerts_pb2.CreateRuleRequest(rule=rule), metadata=auth(ADMIN_KEY), timeout=10
        )


# ---------------------------------------------------------------------------------------------
# The load: a paced client that sends every request twice and retries each until answered.


@dataclass
class RetryingClient:
    """What a careless client behind a flaky network does, and what it was told.

    With several ingest replicas it sends each call to the next one in turn, as a
    round-robin balancer does, so a retry after a failed call goes to another replica.
    """

    stubs: list[ingest_pb2_grpc.IngestServiceStub]
    told: dict[str, int] = field(default_factory=dict)  # event id -> last status told
    calls: int = 0
    failed: int = 0
    answered: int = 0  # requests answered (both sends)

    async def send(self, batch: list[ingest_pb2.Event]) -> None:
        request = ingest_pb2.TrackRequest(events=batch)
        for _ in range(2):
            while True:
                stub = self.stubs[self.calls % len(self.stubs)]
                self.calls += 1
                try:
                    reply = await stub.Track(request, metadata=auth(WRITER_KEY), timeout=5)
                except grpc.aio.AioRpcError as e:
                    assert e.code() in RETRYABLE, e
                    self.failed += 1
                    await asyncio.sleep(0.1)
                    continue
                self.told.update({r.event_id: r.status for r in reply.results})
                break
        self.answered += 1

    async def offer(
        self, events: list[ingest_pb2.Event], rate: float, at_a_third: asyncio.Event
    ) -> float:
        """Offer the events at `rate` per second; returns the seconds until all were answered."""
        batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
        slots = asyncio.Semaphore(IN_FLIGHT)
        start = time.monotonic()

        async def one(batch: list[ingest_pb2.Event]) -> None:
            async with slots:
                await self.send(batch)
            if self.answered == len(batches) // 3:
                at_a_third.set()

        tasks = []
        for i, batch in enumerate(batches):
            await asyncio.sleep(max(0.0, start + i * BATCH / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(batch)))
        await asyncio.gather(*tasks)
        return time.monotonic() - start


async def query_load(stack: Stack, stop: asyncio.Event) -> tuple[int, int]:
    """Readers asking metrics and experiments (every replica in turn) all along; (answered,
    failed) calls."""
    answered = failed = 0
    sides = stack.readers()
    while not stop.is_set():
        metrics_name, experiments_name = sides[(answered + failed) % len(sides)]
        metrics = metrics_pb2_grpc.MetricsServiceStub(stack.channels[metrics_name])
        experiments = experiments_pb2_grpc.ExperimentsServiceStub(stack.channels[experiments_name])
        for call in (
            metrics.ActiveUsers(
                metrics_pb2.ActiveUsersRequest(
                    from_date=FIRST.isoformat(), to_date=LAST.isoformat()
                ),
                metadata=auth(READER_KEY),
                timeout=2,
            ),
            experiments.GetResults(
                xpb.GetResultsRequest(experiment_key=EXPERIMENT),
                metadata=auth(READER_KEY),
                timeout=2,
            ),
        ):
            try:
                await call
                answered += 1
            except grpc.aio.AioRpcError as e:
                assert e.code() in RETRYABLE, e
                failed += 1
        await asyncio.sleep(0.2)
    return answered, failed


@dataclass
class Outcome:
    """What one scenario's load and check measured."""

    events: int
    seconds: float
    calls: int
    failed_calls: int
    queries: tuple[int, int]
    settled_seconds: float


async def settled(stack: Stack, want: Answers, side: str = "a") -> float:
    """Wait until every answer of `side`'s replicas equals the reference; returns the seconds
    it took."""
    start = time.monotonic()

    async def equal() -> bool:
        try:
            got = await stack.answers(side)
        except grpc.aio.AioRpcError as e:
            raise AssertionError(f"not answering yet: {e.code()}") from e
        for name in (f.name for f in fields(Answers)):
            assert getattr(got, name) == getattr(want, name), name
        return True

    await assert_eventually(equal, timeout=120, interval=0.5)
    return time.monotonic() - start


async def parked(stack: Stack, service: str) -> list[dict[str, Any]]:
    """What `northstar-<service> dead-letters` lists."""
    listed = await stack.processes[service].output("dead-letters")
    return [orjson.loads(line) for line in listed.splitlines()]


async def under_load(
    stack: Stack,
    fault: Callable[[], Awaitable[None]],
    poison: list[int] | None = None,
    side: str = "a",
) -> Outcome:
    """Run the workload, inject `fault` once a third is answered, then check every answer
    (of `side`'s replicas).

    Nothing may be parked on a dead-letter subject, except the log positions in `poison`.
    """
    events = workload()
    client = RetryingClient(stack.ingest_stubs())
    at_a_third = asyncio.Event()
    stop_queries = asyncio.Event()

    async def inject() -> None:
        await at_a_third.wait()
        await fault()

    faulted = asyncio.create_task(inject())
    readers = asyncio.create_task(query_load(stack, stop_queries))
    try:
        seconds = await client.offer(events, RATE, at_a_third)
        await faulted
    finally:
        stop_queries.set()
        queries = await readers
        if not faulted.done():
            faulted.cancel()

    accepted_ids = {i for i, status in client.told.items() if status in ANSWERED}
    assert accepted_ids == {e.event_id for e in events}, "an event was never told accepted"
    settle = await settled(stack, expected([e for e in events if e.event_id in accepted_ids]), side)
    listed = await asyncio.gather(parked(stack, "metrics"), parked(stack, "experiments"))
    for rows in listed:
        assert [r["position"] for r in rows] == (poison or []), rows
    outcome = Outcome(len(events), seconds, client.calls, client.failed, queries, settle)
    log.warning("fault scenario measured", **outcome.__dict__)
    return outcome


# ---------------------------------------------------------------------------------------------
# The scenarios.


@pytest.fixture
async def stack(
    private_nats: NatsServer, private_postgres: PostgresServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    """Every service running, the experiment started and an alert rule defined."""
    s = Stack(private_nats.url, private_postgres.dsn, tmp_path)
    try:
        await s.start()
        await s.define_experiment()
        await s.define_rule()
        yield s
    finally:
        await s.stop()


async def _rule_survives(stack: Stack) -> None:
    rules = await stack.alerts.ListRules(
        alerts_pb2.ListRulesRequest(), metadata=auth(READER_KEY), timeout=10
    )
    # The rule the test defined, beside the KPI table's defaults every tenant gets.
    ids = [r.rule.rule_id for r in rules.rules]
    assert "dau-low" in ids
    assert all(i == "dau-low" or i.startswith("default-") for i in ids), ids


@pytest.mark.parametrize("service", list(SERVICES))
async def test_a_service_killed_under_load_loses_and_doubles_nothing(
    stack: Stack, service: str
) -> None:
    # SIGKILL lands while requests, projections and queries are in flight; the process is
    # started again on the same port half a second later.
    process = stack.processes[service]

    async def kill_and_restart() -> None:
        await process.kill()
        await asyncio.sleep(0.5)
        await process.start()

    outcome = await under_load(stack, kill_and_restart)
    if service == "ingest":
        assert outcome.failed_calls > 0  # the kill met requests, which were retried
    await _rule_survives(stack)


@pytest.fixture
async def replicated(
    private_nats: NatsServer, private_postgres: PostgresServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The stack with two replicas of ingest, metrics and experiments."""
    s = Stack(
        private_nats.url,
        private_postgres.dsn,
        tmp_path,
        replicas=("ingest", "metrics", "experiments"),
    )
    try:
        await s.start()
        await s.define_experiment()
        await s.define_rule()
        yield s
    finally:
        await s.stop()


async def test_one_replica_killed_while_the_other_serves_loses_and_doubles_nothing(
    replicated: Stack,
) -> None:
    # The first replica of ingest, metrics and experiments is SIGKILLed under load and stays
    # down: the client's next calls go to the other ingest, the other metrics and
    # experiments take their projector locks over and the answers, read from them alone,
    # settle exact. Started again, the first replicas answer the same.
    stack = replicated
    first = [stack.processes[name] for name in ("ingest", "metrics", "experiments")]

    async def kill_the_first() -> None:
        for process in first:
            await process.kill()

    outcome = await under_load(stack, kill_the_first, side="b")
    assert outcome.failed_calls > 0  # calls to the killed ingest failed and went elsewhere
    assert not any(p.running for p in first)
    for name in ("ingest", "metrics", "experiments"):
        await stack.processes[name].start()
        await stack.serving(name)
    await settled(stack, await stack.answers("b"), "a")
    await _rule_survives(stack)


@pytest.mark.parametrize("server", ["nats", "postgres"])
async def test_a_server_restarted_under_load_loses_and_doubles_nothing(
    stack: Stack, private_nats: NatsServer, private_postgres: PostgresServer, server: str
) -> None:
    # Every service reconnects by itself; none is restarted.
    restart = private_nats.restart if server == "nats" else private_postgres.restart
    await under_load(stack, lambda: asyncio.to_thread(restart))
    assert all(p.running for p in stack.processes.values())
    await _rule_survives(stack)


async def test_projectors_paused_a_minute_catch_up_exactly(stack: Stack) -> None:
    # SIGSTOP both projecting services for 60 s while ingest goes on taking the load: frozen
    # with their connections open and a batch in hand, they resume and catch up exactly.
    paused = [stack.processes["metrics"], stack.processes["experiments"]]

    async def pause_a_minute() -> None:
        for process in paused:
            process.pause()
        try:
            await asyncio.sleep(60)
        finally:
            for process in paused:
                process.resume()

    await under_load(stack, pause_a_minute)
    await _rule_survives(stack)


async def test_a_poison_entry_under_load_is_parked_listed_and_tried_again_on_redeploy(
    stack: Stack, private_nats: NatsServer
) -> None:
    # Bytes that are no log entry land in the middle of the load: each projector parks
    # them after bounded tries and goes on; the answers stay exact and the entry is listed.
    poison: list[int] = []

    async def append_poison() -> None:
        nc = await nats.connect(private_nats.url)
        try:
            subject = Topology(NAMESPACE).events_subject("acme", 0)
            ack = await nc.jetstream().publish(subject, b"\xff not a log entry")
        finally:
            await nc.close()
        poison.append(ack.seq)

    await under_load(stack, append_poison, poison)

    # A redeploy of the same (still broken) version tries what is parked once more before
    # going on with the log; the entry stays parked and nothing is counted twice.
    async def redeploy(name: str) -> None:
        process = stack.processes[name]
        assert await process.terminate() == 0
        await process.start()
        await stack.serving(name)

    await asyncio.gather(redeploy("metrics"), redeploy("experiments"))

    def still_fails(name: str) -> bool:
        log_file = stack.processes[name].log
        assert log_file is not None
        return "dead letter still fails" in log_file.read_text()

    await assert_eventually(lambda: all(map(still_fails, ("metrics", "experiments"))), timeout=60)
    for rows in await asyncio.gather(parked(stack, "metrics"), parked(stack, "experiments")):
        assert [(r["position"], r["replayed_at"]) for r in rows] == [(poison[0], None)], rows
    await settled(stack, expected(workload()))


# ---------------------------------------------------------------------------------------------
# Reports: a replica killed while generating or while delivering. Reports gets its own small
# stack (ingest, metrics, experiments, alerts and two reports replicas): the kill tests above
# need no reports, and a report needs no load.

REPORTS_NAMESPACE = "reportsfaults"
# Short leases, so the replica that stays takes a dead one's claims over within seconds;
# the upstream deadline stays inside the generation deadline.
REPORTS_ENV = {
    **test_reports.QUICK,
    "REPORTS_GENERATION_TIMEOUT_SECONDS": "8",
    "REPORTS_LEASE_MARGIN_SECONDS": "1",
    "UPSTREAM_DEADLINE_SECONDS": "6",
    "HTTP_TIMEOUT_SECONDS": "3",
    "SMTP_TIMEOUT_SECONDS": "3",
    "DELIVERY_LEASE_MARGIN_SECONDS": "1",
}


async def _claimed(dsn: str) -> bool:
    """Whether a replica holds the schedule's run under a lease (claimed, not recorded)."""
    conn = await asyncpg.connect(dsn)
    try:
        table = f"{Topology(REPORTS_NAMESPACE).schema('reports')}.report_runs"
        n = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE status = 'pending' AND lease_until > now()"
        )
    finally:
        await conn.close()
    return bool(n)


@pytest.mark.parametrize("point", ["generating", "delivering"])
async def test_a_reports_replica_killed_mid_way_leaves_one_report_delivered_once_per_target(
    private_nats: NatsServer, private_postgres: PostgresServer, tmp_path: Path, point: str
) -> None:
    # generating: metrics is paused (SIGSTOP), so the first replica's gathering hangs with
    # the period claimed; it is SIGKILLed there, metrics resumes, the second replica starts
    # and takes the run over once its lease ends. delivering: the webhook and Slack
    # receivers hold the first request they get; once both are held (the report recorded,
    # its deliveries claimed and in flight), the first replica is SIGKILLed and the second,
    # started then, sends them again once their leases end, with the same keys.
    http, smtp = HttpReceiver(), SmtpReceiver()
    await http.start()
    await smtp.start()
    held = Route(delay=60, slow_first=1) if point == "delivering" else Route()
    targets = test_reports.channels(http)
    targets.ClearField("slack")
    targets.ClearField("webhooks")
    targets.slack.append(http.url("/slack", held))
    targets.webhooks.append(http.url("/hook", Route(delay=held.delay, slow_first=held.slow_first)))
    stack = ReportsStack(
        private_nats.url,
        private_postgres.dsn,
        REPORTS_NAMESPACE,
        tmp_path,
        env={**REPORTS_ENV, "SMTP_PORT": str(smtp.port)},
    )
    first = stack.processes["reports-a"]
    try:
        await stack.start(*(n for n in stack.processes if n != "reports-b"))
        await test_reports.track(stack, test_reports.events(users=40))
        if point == "generating":
            stack.processes["metrics"].pause()
        await test_reports.create_schedule(stack, private_postgres.dsn, REPORTS_NAMESPACE, targets)
        if point == "generating":
            await assert_eventually(lambda: _claimed(private_postgres.dsn), timeout=20)
            killed_at = time.monotonic()
            await first.kill()
            stack.processes["metrics"].resume()
        else:

            def both_held() -> bool:
                return len(http.seen("/hook")) == 1 and len(http.seen("/slack")) == 1

            await assert_eventually(both_held, timeout=30, interval=0.05)
            killed_at = time.monotonic()
            await first.kill()
        await stack.start("reports-b")

        async def settled() -> rpb.ReportSummary:
            listed = await test_reports.list_reports(stack, "reports-b")
            assert len(listed) == 1, listed
            assert test_reports.delivered(listed[0]), listed[0].deliveries
            return listed[0]

        summary = await assert_eventually(settled, timeout=60, interval=0.2)
        took_over_s = round(time.monotonic() - killed_at, 1)
        # The killed replica comes back: nothing more is generated or sent.
        await stack.start("reports-a")
        await asyncio.sleep(3)
        assert [r.report_id for r in await test_reports.list_reports(stack, "reports-a")] == [
            summary.report_id
        ]

        rid = summary.report_id
        for path, channel in (("/hook", "webhook"), ("/slack", "slack")):
            seen = http.seen(path)
            key = delivery_id(rid, channel, f"{http.base}{path}")
            assert {(r.headers["X-Northstar-Report"], r.key) for r in seen} == {(rid, key)}
            attempts = [r.headers["X-Northstar-Attempt"] for r in seen]
            # Held when the sender died: sent again, as the second attempt of the same delivery.
            assert attempts == (["1", "2"] if point == "delivering" else ["1"]), attempts
        mail_keys = {test_reports.message_key(m) for _, m in smtp.messages}
        assert mail_keys == {delivery_id(rid, "email", test_reports.EMAIL)}
        assert 1 <= len(smtp.messages) <= 2  # a mail sent as the sender died may come again
        log.warning(
            "reports kill measured",
            point=point,
            hook=len(http.seen("/hook")),
            slack=len(http.seen("/slack")),
            mails=len(smtp.messages),
            settled_after_kill_s=took_over_s,
        )
    finally:
        await stack.stop()
        await smtp.stop()
        await http.stop()
