"""The alerts clients and `northstar alerts` against a running alerts service."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console
from typer.testing import CliRunner

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar_client import AlertsClient, AsyncAlertsClient, RpcError
from northstar_client.cli import app
from northstar_client.render import render

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


# ------------------------------------------------------------------------------- CLI

RULE_YAML = """\
rule_id: {rule_id}
name: DAU low
series: {{kind: SERIES_KIND_METRIC, name: dau}}
threshold: {{comparator: COMPARATOR_LESS, warning: 100, critical: 50}}
for_seconds: 600
labels: {{team: growth}}
channels: {{webhooks: ["http://127.0.0.1:9/hook"]}}
"""


def parse(output: str) -> dict:
    """The JSON answer in the output (the in-process services may log around it)."""
    start = output.index("{") if output.startswith("{") else output.index("\n{") + 1
    value, _ = json.JSONDecoder().raw_decode(output, start)
    return value


def cli(suite, *args: str, code: int = 0, stdin: str | None = None) -> str:
    result = runner.invoke(app, ["alerts", *args], env=suite.env(), input=stdin)
    assert result.exit_code == code, result.output
    return result.output


def rule_file(tmp_path: Path, rule_id: str) -> str:
    path = tmp_path / f"{rule_id}.yaml"
    path.write_text(RULE_YAML.format(rule_id=rule_id))
    return str(path)


def test_cli_rules_lifecycle(suite, tmp_path: Path) -> None:
    created = parse(cli(suite, "rules", "create", rule_file(tmp_path, "cli-dau"), "--json"))
    assert created["version"] > 0
    table = cli(suite, "rules", "list")
    assert "cli-dau" in table and "warning value < 100" in table and "1 webhook" in table
    assert "DAU low" in cli(suite, "rules", "get", "cli-dau")
    # `get --json` is what `update` reads: fetch, edit, send back.
    got = parse(cli(suite, "rules", "get", "cli-dau", "--json"))
    assert got["version"] == created["version"] and got["rule"]["for_seconds"] == 600
    got["rule"]["threshold"]["warning"] = 120
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(got))
    updated = parse(cli(suite, "rules", "update", str(edited), "--json"))
    assert updated["version"] > created["version"]
    stale = cli(
        suite, "rules", "update", str(edited), "--expected-version", str(created["version"]), code=1
    )
    assert "ABORTED" in stale
    assert parse(cli(suite, "rules", "get", "cli-dau", "--json"))["rule"]["threshold"] == {
        "comparator": "COMPARATOR_LESS",
        "warning": 120,
        "critical": 50,
    }
    # A rule in JSON on stdin.
    from_stdin = json.dumps({**got["rule"], "rule_id": "cli-stdin"})
    assert "version" in cli(suite, "rules", "create", "-", stdin=from_stdin)
    cli(suite, "rules", "delete", "cli-dau")
    cli(suite, "rules", "delete", "cli-stdin")
    assert "NOT_FOUND" in cli(suite, "rules", "get", "cli-dau", code=1)
    assert "cli-dau" not in cli(suite, "rules", "list")


def test_cli_bad_rule_files(suite, tmp_path: Path) -> None:
    # Read, but invalid: the service's field violations, one line, exit 1.
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(RULE_YAML.format(rule_id="cli-bad") + "interval_seconds: 30\n")
    output = cli(suite, "rules", "create", str(invalid), code=1)
    assert "INVALID_ARGUMENT" in output
    assert "rule.interval_seconds: must be at least 1 minute" in output
    assert "NOT_FOUND" in cli(suite, "rules", "get", "cli-bad", code=1)
    # Not a rule at all: refused before any call, exit 2.
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"rule_id": "x", "thresholds": {}}))
    assert "no field named" in cli(suite, "rules", "create", str(unknown), code=2)
    broken = tmp_path / "broken.yaml"
    broken.write_text("rule_id: [unclosed\n")
    assert "neither JSON nor YAML" in cli(suite, "rules", "create", str(broken), code=2)
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"rule_id": "x",')
    assert "is not JSON: " in cli(suite, "rules", "create", str(truncated), code=2)
    assert "cannot read" in cli(suite, "rules", "create", str(tmp_path / "none.yaml"), code=2)
    assert "INVALID_ARGUMENT" in cli(suite, "test", "--file", str(invalid), code=1)


def test_cli_alerts_history_ack_and_test(suite, wait, tmp_path: Path) -> None:
    path = rule_file(tmp_path, "cli-ack")
    cli(suite, "rules", "create", path)

    def listed() -> dict:
        data = parse(cli(suite, "list", "--rule", "cli-ack", "--json"))
        assert [a["severity"] for a in data["alerts"]] == ["SEVERITY_WARNING", "SEVERITY_CRITICAL"]
        return data

    data = wait(listed, timeout=15, message="the rule's alerts listed")
    assert {a["status"] for a in data["alerts"]} <= {"ALERT_STATUS_INACTIVE"}
    table = cli(suite, "list")
    assert "Alerts" in table and "cli-ack" in table and "warning" in table
    assert "no transitions yet" in cli(suite, "history", "cli-ack")
    inactive = cli(suite, "ack", "cli-ack", "--severity", "warning", "--comment", "x", code=1)
    assert "FAILED_PRECONDITION" in inactive
    assert "--severity" in cli(suite, "ack", "cli-ack", "--severity", "major", code=2)
    trial = cli(suite, "test", "cli-ack")
    assert "Test at" in trial and "warning" in trial and "critical" in trial
    inline = parse(cli(suite, "test", "--file", path, "--json"))
    assert [s["severity"] for s in inline["severities"]] == [
        "SEVERITY_WARNING",
        "SEVERITY_CRITICAL",
    ]
    assert "not both" in cli(suite, "test", code=2)
    assert "NOT_FOUND" in cli(suite, "test", "cli-missing", code=1)


def test_cli_silences(suite) -> None:
    args = ["--match", "rule_id=cli-ack", "--match", "severity=warning", "--reason", "deploy"]
    created = parse(
        cli(suite, "silences", "create", *args, "--ends-in", "2h", "--author", "ops", "--json")
    )["silence"]
    assert created["matchers"] == {"rule_id": "cli-ack", "severity": "warning"}
    assert created["status"] == "SILENCE_STATUS_ACTIVE" and created["author"] == "ops"
    table = cli(suite, "silences", "list")
    assert created["silence_id"] in table and "rule_id=cli-ack" in table and "active" in table
    assert "expired" in cli(suite, "silences", "expire", created["silence_id"])
    again = cli(suite, "silences", "expire", created["silence_id"], code=1)
    assert "FAILED_PRECONDITION" in again
    assert created["silence_id"] not in cli(suite, "silences", "list")
    assert created["silence_id"] in cli(suite, "silences", "list", "--all")
    later = parse(
        cli(suite, "silences", "create", *args, "--until", "2099-01-01T00:00:00Z", "--json")
    )["silence"]
    assert later["ends_at"] == "2099-01-01T00:00:00Z" and later["author"]  # the user's name
    assert "--ends-in or --until" in cli(suite, "silences", "create", *args, code=2)
    assert "KEY=VALUE" in cli(
        suite, "silences", "create", "--match", "x", "--reason", "r", "--ends-in", "1h", code=2
    )
    past = cli(suite, "silences", "create", *args, "--until", "2001-01-01T00:00:00", code=1)
    assert "INVALID_ARGUMENT" in past and "ends_at" in past


def test_cli_notifications(suite) -> None:
    assert "no notifications" in cli(suite, "notifications", "--rule", "cli-none")
    data = parse(cli(suite, "notifications", "--json"))
    assert data["notifications"] == [] and data["next_page_token"] == ""
    bad = cli(suite, "notifications", "--limit", "-1", code=1)
    assert "INVALID_ARGUMENT" in bad and "page_size" in bad


def test_every_alerts_command_has_help_with_examples() -> None:
    commands = [
        ["rules", "list"],
        ["rules", "get"],
        ["rules", "create"],
        ["rules", "update"],
        ["rules", "delete"],
        ["list"],
        ["history"],
        ["ack"],
        ["test"],
        ["silences", "list"],
        ["silences", "create"],
        ["silences", "expire"],
        ["notifications"],
        [],
    ]
    for command in commands:
        result = runner.invoke(app, ["alerts", *command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0 and "Examples" in result.output, command


def rendered(message: Message) -> str:
    console = Console(record=True, width=220)
    console.print(render(message))
    return console.export_text()


def test_tables_of_firing_alerts_transitions_and_deliveries() -> None:
    firing = pb.Alert(
        rule_id="r1",
        rule_name="DAU low",
        severity=pb.SEVERITY_CRITICAL,
        status=pb.ALERT_STATUS_FIRING,
        value=42.5,
        threshold=50,
        since_us=1_764_633_600_000_000,
        acknowledged_by="ops",
        ack_comment="on it",
    )
    text = rendered(pb.ListAlertsResponse(alerts=[firing]))
    assert "critical" in text and "firing" in text and "42.50" in text
    assert "2025-12-02 00:00:00" in text and "ops: on it" in text
    history = pb.AlertHistoryResponse(
        entries=[
            pb.AlertHistoryEntry(
                kind=pb.ALERT_EVENT_KIND_TRANSITION,
                severity=pb.SEVERITY_WARNING,
                from_status=pb.ALERT_STATUS_PENDING,
                to_status=pb.ALERT_STATUS_FIRING,
                value=80,
                threshold=100,
            ),
            pb.AlertHistoryEntry(
                kind=pb.ALERT_EVENT_KIND_ACKNOWLEDGEMENT,
                severity=pb.SEVERITY_WARNING,
                to_status=pb.ALERT_STATUS_FIRING,
                acknowledged_by="ops",
            ),
        ]
    )
    text = rendered(history)
    assert "pending → firing" in text and "acknowledged (firing)" in text and "ops" in text
    delivered = pb.Delivery(
        channel="webhook",
        target="https://hooks.example.com/a",
        status=pb.DELIVERY_STATUS_DELIVERED,
        attempts=1,
    )
    failed = pb.Delivery(
        channel="email",
        target="oncall@example.com",
        status=pb.DELIVERY_STATUS_FAILED,
        attempts=8,
        last_error="550 mailbox unavailable",
    )
    page = pb.ListNotificationsResponse(
        notifications=[
            pb.Notification(
                notification_id=7,
                rule_id="r1",
                severity=pb.SEVERITY_CRITICAL,
                kind="firing",
                deliveries=[delivered, failed],
            )
        ],
        next_page_token="7",
    )
    lines = rendered(page).splitlines()
    row = next(line for line in lines if "hooks.example.com" in line)
    assert "r1" in row and "delivered" in row and "firing" in row
    row = next(line for line in lines if "oncall@example.com" in line)
    assert "failed" in row and " 8 " in row and "550 mailbox unavailable" in row
    assert any("--page-token 7" in line for line in lines)


def test_rule_and_trial_text() -> None:
    anomaly = pb.Rule(
        rule_id="a1",
        series=pb.Series(kind=pb.SERIES_KIND_METRIC, name="event_count", event_name="page.view"),
        anomaly=pb.Anomaly(z=2.5, relative=0.5, severity=pb.SEVERITY_CRITICAL),
        interval_seconds=3600,
    )
    text = rendered(pb.ListRulesResponse(rules=[pb.GetRuleResponse(rule=anomaly, version=3)]))
    assert "metric event_count (page.view)" in text
    assert "anomaly |z| >= 2.5 or relative > 0.5 (critical)" in text
    trial = pb.TestRuleResponse(
        at_us=1_764_633_600_000_000,
        error="metrics unavailable",
        severities=[pb.SeverityVerdict(severity=pb.SEVERITY_CRITICAL, verdict=pb.VERDICT_NONE)],
    )
    text = rendered(trial)
    assert "value –" in text and "none" in text and "no value: metrics unavailable" in text
