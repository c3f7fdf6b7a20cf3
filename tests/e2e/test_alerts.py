"""Alerts over the suite: ingest -> metrics -> the alerts evaluator, through gRPC."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import orjson
import pytest
from google.protobuf import timestamp_pb2

from northstar.alerts.v1 import alerts_pb2, alerts_pb2_grpc
from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import kpis_pb2
from northstar_alerts.adapters.metrics_client import MetricsClient
from northstar_alerts.bootstrap import build_host as build_alerts
from northstar_alerts.domain.rules import Anomaly, RelativeChange, Rule, Series, Threshold
from northstar_alerts.settings import AlertsSettings
from northstar_harness.eventually import assert_eventually
from northstar_harness.receivers import HttpReceiver, SmtpReceiver
from northstar_runtime.service import ServiceHost

from .conftest import ADMIN_KEY, READER_KEY, SERVICE_KEY, WRITER_KEY, Suite, auth, settings_env

# A minute ago: an event from later today would be refused as from the future.
NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(when)
    return t


def _event(event_id: str, name: str, user: str, when: datetime) -> ingest_pb2.Event:
    return ingest_pb2.Event(event_id=event_id, event=name, user_id=user, timestamp=_ts(when))


async def _track(suite: Suite, events: list[ingest_pb2.Event]) -> None:
    response = await suite.ingest.Track(
        ingest_pb2.TrackRequest(events=events), metadata=auth(WRITER_KEY), timeout=10
    )
    assert response.accepted == len(events)


async def _activation(suite: Suite) -> float | None:
    answer = await suite.metrics.Kpis(
        kpis_pb2.KpisRequest(as_of_date=NOW.date().isoformat()),
        metadata=auth(READER_KEY),
        timeout=10,
    )
    [kpi] = [k for k in answer.kpis if k.name == "activation_rate"]
    return kpi.value if kpi.HasField("value") else None


def _rule(series: Series, condition: Threshold | RelativeChange | Anomaly) -> Rule:
    return Rule(rule_id="r", tenant="acme", name="r", series=series, condition=condition)


@pytest.fixture
async def metrics_client(suite: Suite) -> AsyncIterator[MetricsClient]:
    """A metrics client of the suite's metrics service, with the service key."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{suite.metrics_host.port}")
    client = MetricsClient(channel, SERVICE_KEY, deadline_s=10)
    try:
        yield client
    finally:
        await client.close()


async def test_the_metrics_client_reads_kpis_and_daily_metrics(
    suite: Suite, metrics_client: MetricsClient
) -> None:
    signup = NOW - timedelta(days=10)
    events = [_event(f"s{i}", "user.signup", f"u{i}", signup) for i in range(4)]
    events.append(_event("w0", "workflow.created", "u0", signup + timedelta(minutes=5)))
    # DAU: 3 users yesterday, 1 the day before.
    events += [_event(f"v{i}", "page.view", f"u{i}", NOW - timedelta(days=1)) for i in range(3)]
    events.append(_event("v9", "page.view", "u0", NOW - timedelta(days=2)))
    # Clicks: 2 in the last complete hour, 1 in the hour before.
    hour = NOW.replace(minute=0) - timedelta(hours=1)
    events += [_event(f"c{i}", "click", "u1", hour + timedelta(minutes=10 + i)) for i in range(2)]
    events.append(_event("c9", "click", "u1", hour - timedelta(minutes=30)))
    await _track(suite, events)

    async def projected() -> bool:
        return await _activation(suite) == 0.25

    await assert_eventually(projected, timeout=30)
    at = NOW.timestamp()

    kpi = await metrics_client.observe(
        _rule(Series("kpi", "activation_rate"), Threshold("<", critical=0.2)), at
    )
    assert (kpi.value, kpi.previous, kpi.error) == (0.25, None, "")

    async def dau_counted() -> bool:
        dau = await metrics_client.observe(
            _rule(Series("metric", "dau"), RelativeChange(">", warning=1.0)), at
        )
        assert (dau.value, dau.previous, dau.error) == (3.0, 1.0, "")
        return True

    await assert_eventually(dau_counted, timeout=30)
    views = await metrics_client.observe(
        _rule(Series("metric", "event_count", event_name="page.view"), Threshold(">", 1.0)), at
    )
    assert (views.value, views.previous, views.error) == (3.0, 1.0, "")
    no_runs = await metrics_client.observe(
        _rule(Series("metric", "error_rate"), Threshold(">", 0.1)), at
    )
    assert (no_runs.value, no_runs.error) == (None, "")  # a ratio of no runs is absent
    clicks = await metrics_client.observe(
        _rule(Series("metric", "event_count", "hour", "click"), RelativeChange(">", 0.5)), at
    )
    assert (clicks.value, clicks.previous, clicks.error) == (2.0, 1.0, "")
    hourly_mrr = await metrics_client.observe(
        _rule(Series("metric", "mrr", "hour"), Threshold("<", 1.0)), at
    )
    assert (hourly_mrr.value, hourly_mrr.error) == (None, "metrics has no hourly mrr")
    anomaly = await metrics_client.observe(_rule(Series("metric", "dau"), Anomaly()), at)
    # The series starts 10 days ago: the 9 days before yesterday are the baseline.
    assert anomaly.value == 3.0
    assert anomaly.baseline == (4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


async def test_an_unreachable_metrics_service_is_an_error_observation() -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    client = MetricsClient(channel, SERVICE_KEY, deadline_s=1, attempts=2, backoff_s=0.01)
    rule = _rule(Series("kpi", "activation_rate"), Threshold("<", critical=0.2))
    try:
        obs = await client.observe(rule, time.time())
    finally:
        await client.close()
    assert obs.value is None
    assert obs.error.startswith("metrics UNAVAILABLE")


@dataclass
class Alerts:
    """A running alerts service and a stub of it."""

    host: ServiceHost
    stub: alerts_pb2_grpc.AlertsServiceStub

    @property
    def pool(self) -> asyncpg.Pool:
        """The service's own PostgreSQL pool (its schema)."""
        assert self.host.resources is not None and self.host.resources.pool is not None
        return self.host.resources.pool

    async def history(self, rule_id: str) -> list[tuple[int, int, int]]:
        """(severity, from, to) of the rule's transitions, oldest first; none before it exists."""
        try:
            answer = await self.stub.AlertHistory(
                alerts_pb2.AlertHistoryRequest(rule_id=rule_id),
                metadata=auth(READER_KEY),
                timeout=10,
            )
        except grpc.aio.AioRpcError as e:
            if e.code() is grpc.StatusCode.NOT_FOUND:
                return []
            raise
        return [(e.severity, e.from_status, e.to_status) for e in answer.entries]


@asynccontextmanager
async def _alerts(
    nats_url: str, database_url: str, namespace: str, metrics_address: str, **overrides: object
) -> AsyncIterator[Alerts]:
    settings = AlertsSettings(
        **settings_env(nats_url, database_url, namespace),  # type: ignore[arg-type]
        metrics_service_address=metrics_address,
        metrics_service_api_key=SERVICE_KEY,
        metrics_service_deadline_seconds=2.0,
        metrics_service_attempts=2,
        # Every evaluation reads metrics afresh: the test changes the numbers between them.
        metrics_service_cache_seconds=0,
        alerts_poll_seconds=0.1,
        **overrides,  # type: ignore[arg-type]
    )
    host = build_alerts(settings, configure_process=False)
    port = await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Alerts(host, alerts_pb2_grpc.AlertsServiceStub(channel))
    finally:
        await channel.close()
        await host.stop()


ACTIVATION = "default-activation_rate"
W, C = alerts_pb2.SEVERITY_WARNING, alerts_pb2.SEVERITY_CRITICAL
INACTIVE, FIRING, RESOLVED = (
    alerts_pb2.ALERT_STATUS_INACTIVE,
    alerts_pb2.ALERT_STATUS_FIRING,
    alerts_pb2.ALERT_STATUS_RESOLVED,
)


SIGNUP = NOW - timedelta(days=12)


async def _activation_is(suite: Suite, value: float) -> bool:
    return await _activation(suite) == value


async def _low_activation(suite: Suite) -> None:
    """Ten signups 12 days ago, one activated: activation 0.1, under its critical 0.2."""
    events = [_event(f"s{i}", "user.signup", f"u{i}", SIGNUP) for i in range(10)]
    events.append(_event("w0", "workflow.created", "u0", SIGNUP + timedelta(hours=1)))
    await _track(suite, events)
    await assert_eventually(lambda: _activation_is(suite, 0.1), timeout=30)


async def _activation_fixed_by_late_events(suite: Suite) -> None:
    """Late events: 5 of the 10 signups activated after all (activation 0.5)."""
    late = [
        _event(f"w{i}", "workflow.created", f"u{i}", SIGNUP + timedelta(hours=2))
        for i in range(1, 5)
    ]
    await _track(suite, late)
    await assert_eventually(lambda: _activation_is(suite, 0.5), timeout=30)


async def test_activation_below_critical_fires_once_and_late_events_resolve_it(
    suite: Suite, nats_url: str, database_url: str, namespace: str
) -> None:
    await _low_activation(suite)
    metrics_address = f"127.0.0.1:{suite.metrics_host.port}"
    async with _alerts(nats_url, database_url, namespace, metrics_address) as alerts:
        # The tenant's default rules are installed and evaluated at once.
        async def fired() -> bool:
            return len(await alerts.history(ACTIVATION)) == 2

        await assert_eventually(fired, timeout=30)
        assert sorted(await alerts.history(ACTIVATION)) == [
            (W, INACTIVE, FIRING),
            (C, INACTIVE, FIRING),
        ]
        rows = await alerts.pool.fetch(
            "SELECT severity, kind, notice FROM notification_outbox"
            " WHERE tenant = 'acme' AND rule_id = $1",
            ACTIVATION,
        )
        assert [(r["severity"], r["kind"]) for r in rows] == [("critical", "firing")]
        notice = orjson.loads(rows[0]["notice"])
        assert (notice["tenant"], notice["value"], notice["threshold"]) == ("acme", 0.1, 0.2)

        await _activation_fixed_by_late_events(suite)
        # The next hour comes: the rule is due again.
        await alerts.pool.execute(
            "UPDATE alert_rules SET next_due_at = 0 WHERE rule_id = $1", ACTIVATION
        )

        async def resolved() -> bool:
            return len(await alerts.history(ACTIVATION)) == 4

        await assert_eventually(resolved, timeout=30)
        assert sorted((await alerts.history(ACTIVATION))[2:]) == [
            (W, FIRING, RESOLVED),
            (C, FIRING, RESOLVED),
        ]
        kinds = await alerts.pool.fetch(
            "SELECT severity, kind FROM notification_outbox WHERE tenant = 'acme' AND rule_id = $1"
            " ORDER BY notification_id",
            ACTIVATION,
        )
        assert [(r["severity"], r["kind"]) for r in kinds] == [
            ("critical", "firing"),
            ("critical", "resolved"),
        ]
        listed = await alerts.stub.ListAlerts(
            alerts_pb2.ListAlertsRequest(rule_id=ACTIVATION), metadata=auth(READER_KEY), timeout=10
        )
        assert [(a.severity, a.status, a.value) for a in listed.alerts] == [
            (W, RESOLVED, 0.5),
            (C, RESOLVED, 0.5),
        ]
        tried = await alerts.stub.TestRule(
            alerts_pb2.TestRuleRequest(rule_id=ACTIVATION), metadata=auth(READER_KEY), timeout=10
        )
        assert (tried.value, tried.error) == (0.5, "")
        assert [s.verdict for s in tried.severities] == [alerts_pb2.VERDICT_CLEAR] * 2


async def test_with_metrics_down_an_evaluation_is_an_error_and_changes_no_state(
    suite: Suite, nats_url: str, database_url: str, namespace: str
) -> None:
    async with _alerts(nats_url, database_url, namespace, "127.0.0.1:1") as alerts:

        async def failed() -> bool:
            n = await alerts.pool.fetchval(
                "SELECT count(*) FROM alert_evaluations"
                " WHERE tenant = 'acme' AND rule_id = $1 AND outcome = 'error'",
                ACTIVATION,
            )
            return bool(n)

        await assert_eventually(failed, timeout=30)
        listed = await alerts.stub.ListAlerts(
            alerts_pb2.ListAlertsRequest(rule_id=ACTIVATION), metadata=auth(READER_KEY), timeout=10
        )
        assert [a.status for a in listed.alerts] == [INACTIVE, INACTIVE]
        assert [a.last_error[:19] for a in listed.alerts] == ["metrics UNAVAILABLE"] * 2
        assert await alerts.history(ACTIVATION) == []
        assert await alerts.pool.fetchval("SELECT count(*) FROM alert_state") == 0
        assert await alerts.pool.fetchval("SELECT count(*) FROM notification_outbox") == 0


async def _evaluations(alerts: Alerts, rule_id: str) -> int:
    return int(
        await alerts.pool.fetchval(
            "SELECT count(*) FROM alert_evaluations WHERE rule_id = $1", rule_id
        )
    )


async def _evaluate_again(alerts: Alerts, rule_id: str) -> None:
    """Make the rule due now (the next interval, sooner) and wait for that evaluation."""
    before = await _evaluations(alerts, rule_id)
    await alerts.pool.execute("UPDATE alert_rules SET next_due_at = 0 WHERE rule_id = $1", rule_id)

    async def evaluated() -> bool:
        return await _evaluations(alerts, rule_id) > before

    await assert_eventually(evaluated, timeout=30)


async def test_a_firing_alert_notifies_once_by_webhook_and_email_and_once_when_resolved(
    suite: Suite, nats_url: str, database_url: str, namespace: str
) -> None:
    await _low_activation(suite)
    http, smtp = HttpReceiver(), SmtpReceiver()
    await http.start()
    await smtp.start()
    metrics_address = f"127.0.0.1:{suite.metrics_host.port}"
    try:
        async with _alerts(
            nats_url,
            database_url,
            namespace,
            metrics_address,
            alerts_default_rules=False,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_security="none",
            delivery_poll_seconds=0.05,
        ) as alerts:
            rule = alerts_pb2.Rule(
                rule_id="activation-low",
                name="Activation low",
                series=alerts_pb2.Series(kind=alerts_pb2.SERIES_KIND_KPI, name="activation_rate"),
                threshold=alerts_pb2.Levels(comparator=alerts_pb2.COMPARATOR_LESS, critical=0.2),
                channels=alerts_pb2.Channels(
                    webhooks=[http.url("/hook")], emails=["oncall@example.com"]
                ),
            )
            await alerts.stub.CreateRule(
                alerts_pb2.CreateRuleRequest(rule=rule), metadata=auth(ADMIN_KEY), timeout=10
            )

            async def notified(n: int) -> bool:
                return len(http.seen("/hook")) == n and len(smtp.messages) == n

            await assert_eventually(lambda: notified(1), timeout=30)
            [firing] = http.seen("/hook")
            assert firing.body["status"] == "firing"
            assert firing.body["alerts"][0]["labels"]["rule_id"] == "activation-low"
            # Evaluated again while still firing: no second notification (repeat is 24 h).
            await _evaluate_again(alerts, "activation-low")
            await _evaluate_again(alerts, "activation-low")

            await _activation_fixed_by_late_events(suite)
            await _evaluate_again(alerts, "activation-low")
            await assert_eventually(lambda: notified(2), timeout=30)
            await _evaluate_again(alerts, "activation-low")
            assert [r.body["status"] for r in http.seen("/hook")] == ["firing", "resolved"]
            assert len({r.key for r in http.seen("/hook")}) == 2
            [(to, first), (_, second)] = smtp.messages
            assert to == ["oncall@example.com"]
            assert "FIRING" in str(first["Subject"]) and "RESOLVED" in str(second["Subject"])
            listed = await alerts.stub.ListNotifications(
                alerts_pb2.ListNotificationsRequest(rule_id="activation-low"),
                metadata=auth(READER_KEY),
                timeout=10,
            )
            assert sorted(n.kind for n in listed.notifications) == ["firing", "resolved"]
            assert {d.status for n in listed.notifications for d in n.deliveries} == {
                alerts_pb2.DELIVERY_STATUS_DELIVERED
            }
            assert len(http.seen("/hook")) == 2 and len(smtp.messages) == 2
    finally:
        await smtp.stop()
        await http.stop()
