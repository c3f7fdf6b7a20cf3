"""ListAlerts, AlertHistory, AcknowledgeAlert and TestRule over gRPC on real NATS and PostgreSQL."""

from __future__ import annotations

import grpc
import orjson
import pytest

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.adapters.schedule import Claim
from northstar_alerts.domain.rule_events import rule_from_json
from northstar_alerts.domain.rules import Rule
from northstar_alerts.domain.state import Observation
from northstar_harness.eventually import assert_eventually

from .conftest import ADMIN_KEY, OTHER_ADMIN_KEY, READ_KEY, AlertsDb, auth

Stub = alerts_pb2_grpc.AlertsServiceStub


def _rule(rule_id: str = "act") -> pb.Rule:
    return pb.Rule(
        rule_id=rule_id,
        name="activation low",
        series=pb.Series(kind=pb.SERIES_KIND_KPI, name="activation_rate"),
        threshold=pb.Levels(comparator=pb.COMPARATOR_LESS, warning=0.3, critical=0.2),
    )


async def _scheduled(db: AlertsDb, rule_id: str) -> Rule:
    """The rule once the projection put it in the schedule."""

    async def projected() -> bytes | None:
        return await db.pool.fetchval(
            "SELECT rule FROM alert_rules WHERE tenant = 'acme' AND rule_id = $1", rule_id
        )

    await assert_eventually(projected, timeout=20)
    return rule_from_json(orjson.loads(await projected() or b"{}"))


async def _evaluate(db: AlertsDb, rule: Rule, at: float, value: float) -> None:
    schedule = db.schedule("test")
    await db.pool.execute("UPDATE alert_rules SET next_due_at = $1", at)
    [claim] = await schedule.claim(at, 1)
    assert claim == Claim(rule, at)
    await db.recorder(schedule).commit(claim, Observation(at=at, value=value), now=at)


async def _code(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as e:
        return e.code()
    raise AssertionError("the call succeeded")


async def test_list_acknowledge_and_history(stub: Stub, alerts_db: AlertsDb) -> None:
    await stub.CreateRule(pb.CreateRuleRequest(rule=_rule()), metadata=auth(ADMIN_KEY))
    rule = await _scheduled(alerts_db, "act")
    listed = await stub.ListAlerts(pb.ListAlertsRequest(), metadata=auth(READ_KEY))
    assert [(a.severity, a.status, a.last_evaluated_at_us) for a in listed.alerts] == [
        (pb.SEVERITY_WARNING, pb.ALERT_STATUS_INACTIVE, 0),
        (pb.SEVERITY_CRITICAL, pb.ALERT_STATUS_INACTIVE, 0),
    ]
    ack = pb.AcknowledgeAlertRequest(rule_id="act", severity=pb.SEVERITY_WARNING, comment="x")
    inactive = stub.AcknowledgeAlert(ack, metadata=auth(ADMIN_KEY))
    assert await _code(inactive) == grpc.StatusCode.FAILED_PRECONDITION

    await _evaluate(alerts_db, rule, 1000.0, 0.25)  # warning only
    acked = await stub.AcknowledgeAlert(ack, metadata=auth(ADMIN_KEY))
    assert (acked.alert.status, acked.alert.acknowledged_by) == (pb.ALERT_STATUS_FIRING, "inline-0")
    named = pb.AcknowledgeAlertRequest(
        rule_id="act", severity=pb.SEVERITY_WARNING, acknowledged_by="ana", comment="on it"
    )
    await stub.AcknowledgeAlert(named, metadata=auth(ADMIN_KEY))
    listed = await stub.ListAlerts(pb.ListAlertsRequest(rule_id="act"), metadata=auth(READ_KEY))
    warning = listed.alerts[0]
    assert (warning.status, warning.value, warning.threshold) == (pb.ALERT_STATUS_FIRING, 0.25, 0.3)
    assert (warning.since_us, warning.last_evaluated_at_us) == (1_000_000_000, 1_000_000_000)
    assert (warning.acknowledged_by, warning.ack_comment) == ("ana", "on it")
    assert listed.alerts[1].status == pb.ALERT_STATUS_INACTIVE

    # The acknowledgement travels with the next notice: the resolve.
    await _evaluate(alerts_db, rule, 4600.0, 0.5)
    notices = await alerts_db.pool.fetch("SELECT kind, notice FROM notification_outbox ORDER BY 1")
    assert [(r["kind"], orjson.loads(r["notice"])["acked_by"]) for r in notices] == [
        ("firing", ""),
        ("resolved", "ana"),
    ]

    history = await stub.AlertHistory(
        pb.AlertHistoryRequest(rule_id="act"), metadata=auth(READ_KEY)
    )
    assert [
        (e.kind, e.from_status, e.to_status, e.at_us // 1_000_000, e.acknowledged_by)
        for e in history.entries
        if e.kind == pb.ALERT_EVENT_KIND_TRANSITION
    ] == [
        (
            pb.ALERT_EVENT_KIND_TRANSITION,
            pb.ALERT_STATUS_INACTIVE,
            pb.ALERT_STATUS_FIRING,
            1000,
            "",
        ),
        (
            pb.ALERT_EVENT_KIND_TRANSITION,
            pb.ALERT_STATUS_FIRING,
            pb.ALERT_STATUS_RESOLVED,
            4600,
            "",
        ),
    ]
    acks = [e for e in history.entries if e.kind == pb.ALERT_EVENT_KIND_ACKNOWLEDGEMENT]
    assert [(a.acknowledged_by, a.ack_comment, a.to_status) for a in acks] == [
        ("inline-0", "x", pb.ALERT_STATUS_FIRING),
        ("ana", "on it", pb.ALERT_STATUS_FIRING),
    ]
    assert history.entries[0].value == 0.25 and history.entries[0].threshold == 0.3

    # Another tenant sees none of it.
    other = await stub.ListAlerts(pb.ListAlertsRequest(), metadata=auth(OTHER_ADMIN_KEY))
    assert list(other.alerts) == []
    missing = stub.AlertHistory(
        pb.AlertHistoryRequest(rule_id="act"), metadata=auth(OTHER_ADMIN_KEY)
    )
    assert await _code(missing) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (
            pb.AcknowledgeAlertRequest(severity=pb.SEVERITY_WARNING),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (pb.AcknowledgeAlertRequest(rule_id="act"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.AcknowledgeAlertRequest(rule_id="nope", severity=pb.SEVERITY_WARNING),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            pb.AcknowledgeAlertRequest(
                rule_id="act", severity=pb.SEVERITY_WARNING, comment="x" * 1001
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
)
async def test_bad_acknowledgements(
    stub: Stub, request_: pb.AcknowledgeAlertRequest, code: grpc.StatusCode
) -> None:
    assert await _code(stub.AcknowledgeAlert(request_, metadata=auth(ADMIN_KEY))) == code


async def test_acknowledging_needs_admin(stub: Stub) -> None:
    ack = pb.AcknowledgeAlertRequest(rule_id="act", severity=pb.SEVERITY_WARNING)
    denied = stub.AcknowledgeAlert(ack, metadata=auth(READ_KEY))
    assert await _code(denied) == grpc.StatusCode.PERMISSION_DENIED


async def test_test_rule_reports_no_verdict_when_metrics_is_down(stub: Stub) -> None:
    inline = await stub.TestRule(
        pb.TestRuleRequest(definition=_rule()), metadata=auth(READ_KEY), timeout=10
    )
    assert inline.error.startswith("metrics UNAVAILABLE")
    assert not inline.HasField("value")
    assert [(s.severity, s.verdict, s.threshold) for s in inline.severities] == [
        (pb.SEVERITY_WARNING, pb.VERDICT_NONE, 0.3),
        (pb.SEVERITY_CRITICAL, pb.VERDICT_NONE, 0.2),
    ]
    missing = stub.TestRule(pb.TestRuleRequest(rule_id="nope"), metadata=auth(READ_KEY))
    assert await _code(missing) == grpc.StatusCode.NOT_FOUND
    bad = pb.Rule(rule_id="x", name="", series=pb.Series(kind=pb.SERIES_KIND_KPI, name="nope"))
    bad.threshold.comparator = pb.COMPARATOR_LESS
    bad.threshold.warning = 1.0
    invalid = stub.TestRule(pb.TestRuleRequest(definition=bad), metadata=auth(READ_KEY))
    assert await _code(invalid) == grpc.StatusCode.INVALID_ARGUMENT
