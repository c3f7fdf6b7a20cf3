"""The alerts clients and `northstar alerts` against a running alerts service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import timestamp_pb2
from typer.testing import CliRunner

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar_client import AlertsClient, AsyncAlertsClient, RpcError

runner = CliRunner()


def rule(rule_id: str, warning: float = 100.0) -> pb.Rule:
    return pb.Rule(
        rule_id=rule_id,
        name="DAU low",
        series=pb.Series(kind=pb.SERIES_KIND_METRIC, name="dau"),
        threshold=pb.Levels(comparator=pb.COMPARATOR_LESS, warning=warning, critical=50.0),
        for_seconds=300,
        labels={"team": "growth"},
        channels=pb.Channels(webhooks=["http://127.0.0.1:9/hook"]),
    )


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(RpcError) as failed:
        call()
    return failed.value.code


def test_rules_round_trip_with_versions(suite) -> None:
    with AlertsClient(suite.config()) as client:
        created = client.create_rule(rule("sdk-dau"))
        assert (
            code_of(lambda: client.create_rule(rule("sdk-dau"))) == grpc.StatusCode.ALREADY_EXISTS
        )
        got = client.get_rule("sdk-dau")
        assert got.version == created.version and got.rule.threshold.warning == 100.0
        updated = client.update_rule(rule("sdk-dau", warning=120.0), got.version)
        assert updated.version > created.version
        stale = lambda: client.update_rule(rule("sdk-dau", 130.0), created.version)  # noqa: E731
        assert code_of(stale) == grpc.StatusCode.ABORTED
        listed = client.list_rules()
        assert [(r.rule.rule_id, r.rule.threshold.warning) for r in listed.rules] == [
            ("sdk-dau", 120.0)
        ]
        with pytest.raises(RpcError) as bad:
            client.create_rule(pb.Rule(rule_id="sdk-bad", name="x"))
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and bad.value.violations
        client.delete_rule("sdk-dau", updated.version)
        assert code_of(lambda: client.get_rule("sdk-dau")) == grpc.StatusCode.NOT_FOUND


def test_alerts_test_rule_and_acknowledgement(suite, wait) -> None:
    with AlertsClient(suite.config()) as client:
        client.create_rule(rule("sdk-ack"))

        def listed() -> list[pb.Alert]:
            alerts = list(client.list_alerts("sdk-ack").alerts)  # from the rules projection
            assert {a.severity for a in alerts} == {pb.SEVERITY_WARNING, pb.SEVERITY_CRITICAL}
            return alerts

        alerts = wait(listed, timeout=15, message="the rule's alerts listed")
        assert all(a.status != pb.ALERT_STATUS_FIRING for a in alerts)
        not_active = lambda: client.acknowledge_alert("sdk-ack", pb.SEVERITY_WARNING)  # noqa: E731
        assert code_of(not_active) == grpc.StatusCode.FAILED_PRECONDITION
        assert list(client.alert_history("sdk-ack").entries) == []
        # Evaluated now against the suite's metrics (stored and inline), nothing written.
        stored = client.test_rule("sdk-ack")
        inline = client.test_rule(rule("sdk-inline"))
        for trial in (stored, inline):
            assert trial.at_us > 0
            assert {s.severity for s in trial.severities} == {
                pb.SEVERITY_WARNING,
                pb.SEVERITY_CRITICAL,
            }
        assert code_of(lambda: client.test_rule("sdk-missing")) == grpc.StatusCode.NOT_FOUND
        assert code_of(lambda: client.get_rule("sdk-inline")) == grpc.StatusCode.NOT_FOUND
        assert list(client.list_notifications("sdk-ack").notifications) == []


def test_silences_round_trip(suite) -> None:
    ends = timestamp_pb2.Timestamp()
    ends.FromSeconds(int(time.time()) + 3600)
    silence = pb.Silence(
        matchers={"rule_id": "sdk-ack"}, ends_at=ends, reason="maintenance", author="sdk"
    )
    with AlertsClient(suite.config()) as client:
        created = client.create_silence(silence).silence
        assert created.silence_id and created.status == pb.SILENCE_STATUS_ACTIVE
        listed = [s.silence_id for s in client.list_silences().silences]
        assert created.silence_id in listed
        expired = client.expire_silence(created.silence_id).silence
        assert expired.status == pb.SILENCE_STATUS_EXPIRED
        again = lambda: client.expire_silence(created.silence_id)  # noqa: E731
        assert code_of(again) == grpc.StatusCode.FAILED_PRECONDITION
        assert created.silence_id not in [s.silence_id for s in client.list_silences().silences]
        everything = client.list_silences(include_expired=True).silences
        assert created.silence_id in [s.silence_id for s in everything]


def test_async_client(suite) -> None:
    async def run() -> tuple[int, int, list[str]]:
        async with AsyncAlertsClient(suite.config()) as client:
            created = await client.create_rule(rule("async-dau"))
            got = await client.get_rule("async-dau")
            with pytest.raises(RpcError) as stale:
                await client.delete_rule("async-dau", created.version - 1)
            assert stale.value.code == grpc.StatusCode.ABORTED
            listed = await client.list_rules()
            await client.delete_rule("async-dau", got.version)
            return created.version, got.version, [r.rule.rule_id for r in listed.rules]

    created, got, listed = asyncio.run(run())
    assert created == got and "async-dau" in listed
