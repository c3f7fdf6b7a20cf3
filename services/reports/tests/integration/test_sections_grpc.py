"""GrpcSectionSource against the real services: ingest, metrics, experiments and alerts
started in this process over real NATS and PostgreSQL.

A small hand-made tenant: users signing up, active, running workflows and paying; an
experiment with exposures, one concluded, one still a draft; two alert rules whose
transitions an evaluator with a hand-driven clock commits through the alerts service's own
scheduler. Every section is checked against hand-computed numbers and against the same
RPCs called directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf import timestamp_pb2

from northstar.alerts.v1 import alerts_pb2, alerts_pb2_grpc
from northstar.experiments.v1 import experiments_pb2 as xp
from northstar.experiments.v1 import experiments_pb2_grpc
from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar.metrics.v1 import (
    funnel_pb2,
    kpis_pb2,
    metrics_pb2,
    metrics_pb2_grpc,
    quality_pb2,
    retention_pb2,
)
from northstar.reports.v1 import reports_pb2 as rp
from northstar_alerts.adapters.alert_store import EventOutbox
from northstar_alerts.adapters.schedule import RuleSchedule
from northstar_alerts.application.evaluation import EvaluationRecorder
from northstar_alerts.application.scheduler import EvaluationScheduler
from northstar_alerts.bootstrap import build_host as build_alerts
from northstar_alerts.domain.rules import Rule
from northstar_alerts.domain.state import ManualClock, Observation
from northstar_alerts.settings import AlertsSettings
from northstar_experiments.bootstrap import build_host as build_experiments
from northstar_experiments.settings import ExperimentsSettings
from northstar_harness.eventually import assert_eventually
from northstar_ingest.bootstrap import build_host as build_ingest
from northstar_ingest.settings import IngestSettings
from northstar_metrics.bootstrap import build_host as build_metrics
from northstar_metrics.settings import MetricsSettings
from northstar_reports.adapters.sections import DEFAULT_FUNNEL, GrpcSectionSource
from northstar_runtime.service import ServiceHost

WRITER = "sections-writer-key-01"
ADMIN = "sections-admin-key-01"
READER = "sections-reader-key-01"
OTHER = "sections-globex-key-01"
SERVICE = "sections-service-key-01"
KEYS = (
    f"acme:ingest:{WRITER},acme:admin:{ADMIN},acme:read:{READER},"
    f"globex:ingest+read:{OTHER},northstar:service:{SERVICE}"
)
S = rp.Section
ALL_SECTIONS = [
    S.SECTION_KEY_METRICS,
    S.SECTION_ALIGNMENT,
    S.SECTION_PRIORITY_ACTIONS,
    S.SECTION_ALERTS,
    S.SECTION_EXPERIMENTS,
    S.SECTION_RETENTION,
    S.SECTION_FUNNEL,
    S.SECTION_DATA_QUALITY,
]

TODAY = dt.datetime.now(dt.UTC).date()
T0 = dt.datetime.combine(TODAY, dt.time(0), tzinfo=dt.UTC)  # today's first instant, UTC
MONDAY = TODAY - dt.timedelta(days=TODAY.weekday())
BOT_EVENTS = 601  # more than 600 within 60 seconds: a suspected bot


def _auth(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


def _us(when: dt.datetime) -> int:
    return (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _ts(when: dt.datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromMicroseconds(_us(when))
    return t


def _day(days_ago: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return T0 - dt.timedelta(days=days_ago) + dt.timedelta(hours=hour, minutes=minute)


def _ev(
    event_id: str, name: str, when: dt.datetime, user: str = "", org: str = "", **props: Any
) -> ingest_pb2.Event:
    return ingest_pb2.Event(
        event_id=event_id,
        event=name,
        user_id=user,
        org_id=org,
        timestamp=_ts(when),
        properties_json=orjson.dumps(props).decode() if props else "",
    )


def _seconds(s: float) -> dt.datetime:
    """Today, `s` seconds after midnight UTC (ingest accepts up to an hour ahead)."""
    return T0 + dt.timedelta(seconds=s)


EVENTS = [
    # Eight days ago: u4 signs up (in MAU, not in WAU).
    _ev("s4", "user.signup", _day(8), "u4", plan="free"),
    _ev("v4", "page.view", _day(8, minute=5), "u4"),
    # Three days ago o1 starts paying 5000.
    _ev("sub1", "subscription.started", _day(3, 9), org="o1", plan="pro", mrr=5000),
    # Yesterday: u3 signs up, u5 (no signup) is active, one successful run.
    _ev("s3", "user.signup", _day(1), "u3", plan="free"),
    _ev("v3a", "page.view", _day(1, minute=5), "u3"),
    _ev("v5", "page.view", _day(1, 11), "u5"),
    _ev("r0", "workflow.run", _day(1, 12), "u3", "o1", status="success", workflow_id="wf1"),
    # Today, in its first minute: u1 goes through the whole funnel, u2 only signs up.
    _ev("s1", "user.signup", _seconds(1), "u1", plan="free"),
    _ev("s2", "user.signup", _seconds(2), "u2", plan="free"),
    _ev("i1", "integration.connected", _seconds(10), "u1", integration="shopify"),
    _ev("c1", "workflow.created", _seconds(20), "u1"),
    _ev("r1", "workflow.run", _seconds(30), "u1", "o1", status="success", workflow_id="wf1"),
    _ev("r2", "workflow.run", _seconds(35), "u1", "o1", status="success", workflow_id="wf1"),
    _ev("r3", "workflow.run", _seconds(36), "u1", "o1", status="failed", workflow_id="wf1"),
    _ev("sub2", "subscription.started", _seconds(40), "u1", "o2", plan="team", mrr=2000),
    _ev("v3b", "page.view", _seconds(45), "u3"),
    _ev("x1", "experiment.exposure", _seconds(50), "u1", experiment="exp-run", variant="a"),
    _ev("x2", "experiment.exposure", _seconds(51), "u2", experiment="exp-run", variant="b"),
    *(_ev(f"b{i}", "bot.tick", _seconds(3 + i * 0.05), "bot-7") for i in range(BOT_EVENTS)),
]

# Active users per day, by hand from EVENTS (DAU; WAU and MAU follow by window).
ACTIVE = {
    TODAY - dt.timedelta(days=8): {"u4"},
    TODAY - dt.timedelta(days=1): {"u3", "u5"},
    TODAY: {"u1", "u2", "u3", "bot-7"},
}
SIGNUPS = {TODAY - dt.timedelta(days=8): 1, TODAY - dt.timedelta(days=1): 1, TODAY: 2}
RUNS = {TODAY - dt.timedelta(days=1): (1, 0), TODAY: (3, 1)}  # (runs, failed)
# (mrr, paying orgs) at the end of each day, from three days ago.
MRR_FROM = {TODAY - dt.timedelta(days=3): (5000, 1), TODAY: (7000, 2)}


@dataclass
class Services:
    """The four services running for one test, and stubs to act on them."""

    hosts: list[ServiceHost]
    channels: list[grpc.aio.Channel]
    ingest: ingest_pb2_grpc.IngestServiceStub
    metrics: metrics_pb2_grpc.MetricsServiceStub
    experiments: experiments_pb2_grpc.ExperimentsServiceStub
    alerts: alerts_pb2_grpc.AlertsServiceStub

    def address(self, index: int) -> str:
        """host:port of hosts[index] (0 ingest, 1 metrics, 2 experiments, 3 alerts)."""
        return f"127.0.0.1:{self.hosts[index].port}"

    def source(self, **overrides: str) -> GrpcSectionSource:
        """A section source over these services (an address overridable)."""
        addresses = {
            "metrics_address": self.address(1),
            "experiments_address": self.address(2),
            "alerts_address": self.address(3),
            **overrides,
        }
        return GrpcSectionSource(**addresses, service_key=SERVICE, deadline_s=10.0, attempts=1)


@pytest.fixture
async def sections_services(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[Services]:
    """Ingest, metrics, experiments and alerts (no evaluator, no default rules)."""
    common: dict[str, Any] = {
        "grpc_address": "127.0.0.1:0",
        "nats_url": nats_url,
        "database_url": database_url,
        "northstar_namespace": namespace,
        "northstar_api_keys": KEYS,
        "northstar_partitions": 4,
        "shutdown_grace_seconds": 0.5,
    }
    hosts = [
        build_ingest(IngestSettings(**common), configure_process=False),
        build_metrics(MetricsSettings(**common, projector_batch_size=500), configure_process=False),
        build_experiments(ExperimentsSettings(**common), configure_process=False),
    ]
    started: list[ServiceHost] = []
    channels: list[grpc.aio.Channel] = []
    try:
        for host in hosts:
            await host.start()
            started.append(host)
        alerts = build_alerts(
            AlertsSettings(
                **common,
                alerts_evaluator_enabled=False,
                alerts_default_rules=False,
                metrics_service_address=f"127.0.0.1:{hosts[1].port}",
                metrics_service_api_key=SERVICE,
            ),
            configure_process=False,
        )
        await alerts.start()
        started.append(alerts)
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{h.port}") for h in started]
        yield Services(
            started,
            channels,
            ingest_pb2_grpc.IngestServiceStub(channels[0]),
            metrics_pb2_grpc.MetricsServiceStub(channels[1]),
            experiments_pb2_grpc.ExperimentsServiceStub(channels[2]),
            alerts_pb2_grpc.AlertsServiceStub(channels[3]),
        )
    finally:
        for channel in channels:
            await channel.close()
        for host in reversed(started):
            await host.stop()


# --- the tenant's data ----------------------------------------------------------------


async def _track(services: Services, events: Sequence[ingest_pb2.Event], key: str) -> None:
    for i in range(0, len(events), 500):
        answer = await services.ingest.Track(
            ingest_pb2.TrackRequest(events=events[i : i + 500]), metadata=_auth(key), timeout=10
        )
        assert answer.accepted == len(events[i : i + 500]), answer


async def _experiments(services: Services) -> None:
    """exp-run running since now (analysed from today's midnight); exp-done started,
    stopped and concluded now; exp-draft never started."""
    stub, auth = services.experiments, _auth(ADMIN)
    variants = [xp.Variant(key="a", weight=0.5), xp.Variant(key="b", weight=0.5)]
    goal = xp.Metric(name="runs", kind=xp.METRIC_KIND_BINOMIAL, event="workflow.run")

    async def create(key: str, **extra: Any) -> int:
        d = xp.ExperimentDefinition(
            name=key, variants=variants, coverage=1.0, goal_metrics=[goal], **extra
        )
        made = await stub.CreateExperiment(
            xp.CreateExperimentRequest(key=key, definition=d), metadata=auth, timeout=10
        )
        return made.experiment.version

    async def start(key: str, version: int) -> int:
        started = await stub.StartExperiment(
            xp.StartExperimentRequest(key=key, expected_version=version), metadata=auth, timeout=10
        )
        return started.experiment.version

    await start("exp-run", await create("exp-run", analysis_start_us=_us(T0)))
    version = await start("exp-done", await create("exp-done"))
    stopped = await stub.StopExperiment(
        xp.StopExperimentRequest(key="exp-done", expected_version=version),
        metadata=auth,
        timeout=10,
    )
    await stub.ConcludeExperiment(
        xp.ConcludeExperimentRequest(
            key="exp-done", expected_version=stopped.experiment.version, winner="b", reason="won"
        ),
        metadata=auth,
        timeout=10,
    )
    await create("exp-draft")


# Alert transitions: B fires yesterday noon and keeps firing; A fires and resolves in
# today's first half hour, then fires again exactly at the end of today.
B_FIRES = _day(1, 12)
A_FIRES, A_RESOLVES, A_FIRES_AGAIN = _day(0, 0, 10), _day(0, 0, 20), _day(-1, 0)


def _alert_value(rule_id: str, at: float) -> float:
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    if rule_id == "rule-b":
        return 20.0 if when >= B_FIRES else 0.0
    return 20.0 if A_FIRES <= when < A_RESOLVES or when >= A_FIRES_AGAIN else 0.0


async def _alerts(services: Services) -> None:
    """Two rules created over gRPC, evaluated at hand-picked instants by the service's own
    scheduler (its recorder and outbox, on its schema and log), with a stand-in reading."""
    for rule_id, name in (("rule-a", "Rule A"), ("rule-b", "Rule B")):
        rule = alerts_pb2.Rule(
            rule_id=rule_id,
            name=name,
            series=alerts_pb2.Series(kind=alerts_pb2.SERIES_KIND_METRIC, name="dau"),
            threshold=alerts_pb2.Levels(comparator=alerts_pb2.COMPARATOR_GREATER, critical=10),
            interval_seconds=60,
        )
        await services.alerts.CreateRule(
            alerts_pb2.CreateRuleRequest(rule=rule), metadata=_auth(ADMIN), timeout=10
        )
    host = services.hosts[3]
    assert host.resources is not None and host.resources.pool is not None
    pool, log = host.resources.pool, host.resources.log

    async def scheduled() -> bool:
        return await pool.fetchval("SELECT count(*) FROM alert_rules WHERE tenant = 'acme'") == 2

    await assert_eventually(scheduled, timeout=30)

    async def observe(rule: Rule, at: float) -> Observation:
        return Observation(at=at, value=_alert_value(rule.rule_id, at))

    clock = ManualClock(0.0)
    schedule = RuleSchedule(pool, owner="sections-test", lease_s=30)
    outbox = EventOutbox(pool, log)
    scheduler = EvaluationScheduler(
        schedule=schedule,
        recorder=EvaluationRecorder(pool, schedule, outbox),
        observe=observe,
        outbox=outbox,
        clock=clock,
        poll_s=0.05,
    )
    for when in (B_FIRES, A_FIRES, A_RESOLVES, A_FIRES_AGAIN):
        clock.advance(when.timestamp() - clock())
        await pool.execute("UPDATE alert_rules SET next_due_at = 0")
        assert await scheduler.run_due() == 2
    await outbox.publish()

    async def in_history() -> bool:
        counts = []
        for rule_id in ("rule-a", "rule-b"):
            answer = await services.alerts.AlertHistory(
                alerts_pb2.AlertHistoryRequest(rule_id=rule_id), metadata=_auth(READER), timeout=10
            )
            counts.append(len(answer.entries))
        return counts == [3, 1]

    await assert_eventually(in_history, timeout=30)


async def _projected(services: Services) -> bool:
    """Metrics has every event and experiments every exposure."""
    days = await services.metrics.ActiveUsers(
        metrics_pb2.ActiveUsersRequest(
            from_date=(TODAY - dt.timedelta(days=8)).isoformat(), to_date=TODAY.isoformat()
        ),
        metadata=_auth(READER),
        timeout=10,
    )
    quality = await services.metrics.DataQuality(
        quality_pb2.DataQualityRequest(from_date=TODAY.isoformat(), to_date=TODAY.isoformat()),
        metadata=_auth(READER),
        timeout=10,
    )
    results = await services.experiments.GetResults(
        xp.GetResultsRequest(experiment_key="exp-run"), metadata=_auth(READER), timeout=10
    )
    return (
        [d.dau for d in days.days if d.dau] == [1, 2, 4]
        and quality.accepted == len(EVENTS)
        and list(results.srm.users) == [1, 1]
    )


@pytest.fixture
async def sections_acme(sections_services: Services) -> Services:
    """The services with acme's data in, projected everywhere."""
    await _experiments(sections_services)
    await _track(sections_services, EVENTS, WRITER)
    await _alerts(sections_services)
    await assert_eventually(lambda: _projected(sections_services), timeout=60)
    return sections_services


# --- expectations by hand -------------------------------------------------------------


def _active_in(first: dt.date, last: dt.date) -> set[str]:
    users: set[str] = set()
    for day, who in ACTIVE.items():
        if first <= day <= last:
            users |= who
    return users


def _mrr(day: dt.date) -> tuple[int, int]:
    state = (0, 0)
    for since, value in sorted(MRR_FROM.items()):
        if since <= day:
            state = value
    return state


def _expected_point(name: str, first: dt.date, last: dt.date) -> float | None:
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    dau = [len(ACTIVE.get(d, set())) for d in days]
    mau = [len(_active_in(d - dt.timedelta(days=29), d)) for d in days]
    runs = sum(RUNS.get(d, (0, 0))[0] for d in days)
    failed = sum(RUNS.get(d, (0, 0))[1] for d in days)
    sticky = [a / m for a, m in zip(dau, mau, strict=True) if m]
    return {
        "dau": sum(dau) / len(days),
        "wau": float(len(_active_in(last - dt.timedelta(days=6), last))),
        "mau": float(mau[-1]),
        "stickiness": sum(sticky) / len(sticky) if sticky else None,
        "signups": float(sum(SIGNUPS.get(d, 0) for d in days)),
        "workflow_runs": float(runs),
        "workflow_error_rate": failed / runs if runs else None,
        "mrr": float(_mrr(last)[0]),
        "paying_orgs": float(_mrr(last)[1]),
    }[name]


def _value(message: Any, field: str = "value") -> float | None:
    return getattr(message, field) if message.HasField(field) else None


def _assert_key_metrics(section: rp.KeyMetricsSection, weekly: bool) -> None:
    step = 7 if weekly else 1
    points = 8 if weekly else 14
    last_first = MONDAY if weekly else TODAY
    names = [m.name for m in section.metrics]
    assert names == [
        "dau",
        "wau",
        "mau",
        "stickiness",
        "signups",
        "workflow_runs",
        "workflow_error_rate",
        "mrr",
        "paying_orgs",
    ]
    for metric in section.metrics:
        firsts = [last_first - dt.timedelta(days=step * i) for i in range(points - 1, -1, -1)]
        expected = [
            _expected_point(metric.name, f, f + dt.timedelta(days=step - 1)) for f in firsts
        ]
        assert [p.date for p in metric.sparkline] == [f.isoformat() for f in firsts]
        got = [_value(p) for p in metric.sparkline]
        assert got == pytest.approx(expected), metric.name
        assert _value(metric) == pytest.approx(expected[-1]), metric.name
        assert _value(metric, "previous") == pytest.approx(expected[-2]), metric.name


def _strip_times(results: xp.GetResultsResponse) -> xp.GetResultsResponse:
    copy = xp.GetResultsResponse()
    copy.CopyFrom(results)
    copy.ClearField("computed_at_us")
    copy.ClearField("analysis_end_us")
    copy.ClearField("log_position")
    return copy


# --- the tests ------------------------------------------------------------------------


def _period(unit: int, first: dt.date, last: dt.date) -> rp.Period:
    return rp.Period(
        unit=unit, start_date=first.isoformat(), end_date=last.isoformat(), time_zone="UTC"
    )


DAY = _period(rp.PERIOD_UNIT_DAY, TODAY, TODAY)
WEEK = _period(rp.PERIOD_UNIT_WEEK, MONDAY, MONDAY + dt.timedelta(days=6))
SCHEDULE = rp.Schedule(schedule_id="daily", name="Daily", kind=rp.REPORT_KIND_DAILY)


async def test_a_day_report_by_hand(sections_acme: Services) -> None:
    source = sections_acme.source()
    try:
        report = await source.gather(
            tenant="acme", schedule=SCHEDULE, period=DAY, sections=ALL_SECTIONS
        )
    finally:
        await source.close()
    assert list(report.errors) == []
    assert not report.HasField("summary") and list(report.sections) == []

    metrics = {m.name: m for m in report.key_metrics.metrics}
    by_hand = {
        "dau": (4, 2, 1.0),
        "wau": (5, 2, 1.5),
        "mau": (6, 3, 1.0),
        "stickiness": (4 / 6, 2 / 3, 0.0),
        "signups": (2, 1, 1.0),
        "workflow_runs": (3, 1, 2.0),
        "workflow_error_rate": (1 / 3, 0, None),
        "mrr": (7000, 5000, 0.4),
        "paying_orgs": (2, 1, 1.0),
    }
    for name, (value, previous, change) in by_hand.items():
        m = metrics[name]
        assert (_value(m), _value(m, "previous")) == pytest.approx((value, previous)), name
        assert _value(m, "change") == (None if change is None else pytest.approx(change)), name
    assert (metrics["mrr"].unit, metrics["stickiness"].unit) == ("money", "ratio")
    assert not metrics["workflow_error_rate"].higher_is_better
    dau_line = [_value(p) for p in metrics["dau"].sparkline]
    assert dau_line == [0.0] * 5 + [1.0] + [0.0] * 6 + [2.0, 4.0]
    _assert_key_metrics(report.key_metrics, weekly=False)

    # Alerts: A fired and resolved today; its firing again at midnight is tomorrow's; B,
    # fired yesterday, is still firing at the end.
    entries = [
        (e.rule_id, e.rule_name, e.change, e.at.ToMicroseconds(), _value(e), _value(e, "threshold"))
        for e in report.alerts.entries
    ]
    assert entries == [
        ("rule-a", "Rule A", rp.ALERT_CHANGE_FIRED, _us(A_FIRES), 20.0, 10.0),
        ("rule-a", "Rule A", rp.ALERT_CHANGE_RESOLVED, _us(A_RESOLVES), 0.0, 10.0),
    ]
    assert {e.severity for e in report.alerts.entries} == {alerts_pb2.SEVERITY_CRITICAL}
    assert report.alerts.firing_at_end == 1

    # Experiments: exp-run is running (results as of the day's last microsecond), exp-done
    # was concluded today (results as of its stop), exp-draft is neither.
    [running] = report.experiments.running
    [concluded] = report.experiments.concluded
    assert (running.experiment.key, concluded.experiment.key) == ("exp-run", "exp-done")
    assert (running.error, concluded.error) == ("", "")
    assert list(running.results.srm.users) == [1, 1]
    assert list(concluded.results.srm.users) == [0, 0]
    assert concluded.results.analysis_end_us == concluded.experiment.stopped_at_us
    read = _auth(READER)
    direct_running = await sections_acme.experiments.GetResults(
        xp.GetResultsRequest(experiment_key="exp-run", as_of_us=_us(T0 + dt.timedelta(days=1)) - 1),
        metadata=read,
        timeout=10,
    )
    assert _strip_times(running.results) == _strip_times(direct_running)
    direct_concluded = await sections_acme.experiments.GetResults(
        xp.GetResultsRequest(
            experiment_key="exp-done", as_of_us=concluded.experiment.stopped_at_us
        ),
        metadata=read,
        timeout=10,
    )
    assert _strip_times(concluded.results) == _strip_times(direct_concluded)

    # Alignment and priority actions: one Kpis as of tomorrow.
    tomorrow = (TODAY + dt.timedelta(days=1)).isoformat()
    kpis = await sections_acme.metrics.Kpis(
        kpis_pb2.KpisRequest(as_of_date=tomorrow), metadata=read, timeout=10
    )
    assert report.alignment.as_of_date == tomorrow
    assert report.alignment.kpis == kpis
    assert list(report.priority_actions.actions) == list(kpis.priority_actions[:5])

    # Retention: the 8 cohort weeks ending with this week.
    assert report.retention.retention == await sections_acme.metrics.Retention(
        retention_pb2.RetentionRequest(
            granularity=retention_pb2.COHORT_GRANULARITY_WEEK,
            from_date=(MONDAY - dt.timedelta(weeks=7)).isoformat(),
            to_date=MONDAY.isoformat(),
            periods=8,
            mode=retention_pb2.RETENTION_MODE_ON_DAY,
            as_of_date=TODAY.isoformat(),
        ),
        metadata=read,
        timeout=10,
    )
    cohorts = report.retention.retention.cohorts
    assert [c.cohort_start for c in cohorts][-1] == MONDAY.isoformat()
    assert len(cohorts) == 8
    assert cohorts[-1].size == 2 + (1 if TODAY - dt.timedelta(days=1) >= MONDAY else 0)

    # Funnel: the default steps over today; u1 goes all the way, u2 stops at signup.
    assert list(report.funnel.steps) == list(DEFAULT_FUNNEL)
    assert [s.users for s in report.funnel.funnel.overall.steps] == [2, 1, 1, 1]
    assert report.funnel.funnel.window_seconds == 7 * 86_400
    assert report.funnel.funnel == await sections_acme.metrics.Funnel(
        funnel_pb2.FunnelRequest(
            steps=DEFAULT_FUNNEL, from_date=TODAY.isoformat(), to_date=TODAY.isoformat()
        ),
        metadata=read,
        timeout=10,
    )

    # Data quality: today's events, the bot counted and its user id gone.
    quality = report.data_quality.quality
    assert quality.accepted == len(EVENTS)
    assert quality.suspected_bots == 1
    [bot] = quality.suspected_bot_users
    assert (bot.user_id, bot.max_events_in_window) == ("", BOT_EVENTS)
    direct = await sections_acme.metrics.DataQuality(
        quality_pb2.DataQualityRequest(from_date=TODAY.isoformat(), to_date=TODAY.isoformat()),
        metadata=read,
        timeout=10,
    )
    assert [b.user_id for b in direct.suspected_bot_users] == ["bot-7"]
    for answer in (direct, quality):
        answer.suspected_bot_users[0].ClearField("user_id")
        answer.ClearField("freshness_seconds")  # seconds since the newest event: it moves
    assert quality == direct


async def test_a_week_report_by_hand(sections_acme: Services) -> None:
    source = sections_acme.source()
    schedule = rp.Schedule(
        schedule_id="weekly",
        kind=rp.REPORT_KIND_WEEKLY,
        funnel_steps=DEFAULT_FUNNEL[:2],
        funnel_window_seconds=5,
    )
    try:
        report = await source.gather(
            tenant="acme", schedule=schedule, period=WEEK, sections=ALL_SECTIONS
        )
    finally:
        await source.close()
    assert list(report.errors) == []
    _assert_key_metrics(report.key_metrics, weekly=True)

    end = T0 + dt.timedelta(days=7 - TODAY.weekday())
    start = end - dt.timedelta(days=7)
    happened = [
        ("rule-b", rp.ALERT_CHANGE_FIRED, B_FIRES),
        ("rule-a", rp.ALERT_CHANGE_FIRED, A_FIRES),
        ("rule-a", rp.ALERT_CHANGE_RESOLVED, A_RESOLVES),
        ("rule-a", rp.ALERT_CHANGE_FIRED, A_FIRES_AGAIN),
    ]
    assert [(e.rule_id, e.change, e.at.ToMicroseconds()) for e in report.alerts.entries] == [
        (r, c, _us(at)) for r, c, at in happened if start <= at < end
    ]
    assert report.alerts.firing_at_end == 1 + (1 if end > A_FIRES_AGAIN else 0)

    assert [e.experiment.key for e in report.experiments.running] == ["exp-run"]
    assert [e.experiment.key for e in report.experiments.concluded] == ["exp-done"]
    assert report.alignment.as_of_date == (MONDAY + dt.timedelta(days=7)).isoformat()

    # The schedule's own funnel: two steps, five seconds (u1 connects 9 s after signing up).
    assert list(report.funnel.steps) == list(DEFAULT_FUNNEL[:2])
    assert [s.users for s in report.funnel.funnel.overall.steps] == [
        2 + (1 if TODAY - dt.timedelta(days=1) >= MONDAY else 0),
        0,
    ]
    assert report.funnel.funnel.window_seconds == 5
    assert report.data_quality.quality.accepted == len(EVENTS)


async def test_a_down_upstream_is_its_sections_error_and_the_others_stay(
    sections_acme: Services,
) -> None:
    source = sections_acme.source(experiments_address="127.0.0.1:1")
    try:
        report = await source.gather(
            tenant="acme", schedule=SCHEDULE, period=DAY, sections=ALL_SECTIONS
        )
    finally:
        await source.close()
    [error] = report.errors
    assert error.section == S.SECTION_EXPERIMENTS
    assert error.message.startswith("experiments: UNAVAILABLE")
    assert not report.HasField("experiments")
    for field in (
        "key_metrics",
        "alignment",
        "priority_actions",
        "alerts",
        "retention",
        "funnel",
        "data_quality",
    ):
        assert report.HasField(field), field
    assert len(report.alerts.entries) == 2


async def test_only_the_asked_sections_are_filled(sections_acme: Services) -> None:
    source = sections_acme.source(metrics_address="127.0.0.1:1")
    try:
        report = await source.gather(
            tenant="acme",
            schedule=SCHEDULE,
            period=DAY,
            sections=[S.SECTION_ALERTS, S.SECTION_ALIGNMENT, S.SECTION_ALIGNMENT],
        )
    finally:
        await source.close()
    # Metrics is down: the one alignment asked for fails once; alerts is there.
    assert [(e.section, e.message.split(" ")[:2]) for e in report.errors] == [
        (S.SECTION_ALIGNMENT, ["metrics:", "UNAVAILABLE"])
    ]
    assert [f.name for f, _ in report.ListFields()] == ["alerts", "errors"]


async def test_another_tenant_sees_none_of_acme(sections_acme: Services) -> None:
    await _track(sections_acme, [_ev("g1", "page.view", _seconds(5), "g-user")], OTHER)

    async def globex_projected() -> bool:
        days = await sections_acme.metrics.ActiveUsers(
            metrics_pb2.ActiveUsersRequest(from_date=TODAY.isoformat(), to_date=TODAY.isoformat()),
            metadata=_auth(OTHER),
            timeout=10,
        )
        return [d.dau for d in days.days] == [1]

    await assert_eventually(globex_projected, timeout=30)
    source = sections_acme.source()
    try:
        report = await source.gather(
            tenant="globex", schedule=SCHEDULE, period=DAY, sections=ALL_SECTIONS
        )
    finally:
        await source.close()
    assert list(report.errors) == []
    values = {m.name: _value(m) for m in report.key_metrics.metrics}
    assert values["signups"] == 0.0 and values["mrr"] == 0.0 and values["workflow_runs"] == 0.0
    assert (values["dau"], values["mau"]) == (1.0, 1.0)  # its own one user, never acme's
    assert list(report.alerts.entries) == [] and report.alerts.firing_at_end == 0
    assert list(report.experiments.running) == list(report.experiments.concluded) == []
    assert [s.users for s in report.funnel.funnel.overall.steps] == [0] * 4
    assert report.data_quality.quality.accepted == 1
    assert list(report.data_quality.quality.suspected_bot_users) == []
    assert all(c.size == 0 for c in report.retention.retention.cohorts)
