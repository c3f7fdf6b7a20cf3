"""`northstar alerts` on a rule that fires: acknowledged, in the history, notified by webhook."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from northstar_client.cli import app
from northstar_harness.receivers import HttpReceiver

runner = CliRunner()

# No events: DAU is 0, under both levels, so the rule fires at its first evaluation.
RULE = """\
rule_id: dau-zero
name: DAU zero
series: {{kind: SERIES_KIND_METRIC, name: dau}}
threshold: {{comparator: COMPARATOR_LESS, warning: 100, critical: 50}}
channels: {{webhooks: ["{hook}"]}}
"""


def parse(output: str) -> dict:
    """The JSON answer in the output (the in-process services may log around it)."""
    start = output.index("{") if output.startswith("{") else output.index("\n{") + 1
    value, _ = json.JSONDecoder().raw_decode(output, start)
    return value


def test_firing_alert_ack_history_and_notifications(suite, wait, tmp_path: Path) -> None:
    receiver = HttpReceiver()
    suite.loop.run(receiver.start())
    try:
        evaluating = suite.start_alerts(
            alerts_evaluator_enabled=True,
            alerts_poll_seconds=0.1,
            metrics_service_cache_seconds=0,
            delivery_poll_seconds=0.05,
        )
        env = {**suite.env(), "NORTHSTAR_ALERTS_ENDPOINT": evaluating}

        def cli(*args: str, code: int = 0) -> str:
            result = runner.invoke(app, ["alerts", *args], env=env)
            assert result.exit_code == code, result.output
            return result.output

        hook = receiver.url("/hook")
        path = tmp_path / "rule.yaml"
        path.write_text(RULE.format(hook=hook))
        cli("rules", "create", str(path))

        def firing() -> dict:
            data = parse(cli("list", "--rule", "dau-zero", "--json"))
            assert [a["status"] for a in data["alerts"]] == ["ALERT_STATUS_FIRING"] * 2
            return data

        alerts = wait(firing, timeout=30, message="the rule fires")["alerts"]
        assert [(a["severity"], a["value"]) for a in alerts] == [
            ("SEVERITY_WARNING", 0),
            ("SEVERITY_CRITICAL", 0),
        ]
        assert "firing" in cli("list")
        acked = cli(
            "ack", "dau-zero", "--severity", "critical", "--by", "alice", "--comment", "on it"
        )
        assert "alice: on it" in acked and "firing" in acked
        history = cli("history", "dau-zero")
        assert "inactive → firing" in history and "acknowledged (firing)" in history

        # The critical notification (it suppresses the warning's), delivered once.
        def delivered() -> dict:
            page = parse(cli("notifications", "--rule", "dau-zero", "--json"))
            [notification] = page["notifications"]
            [delivery] = notification["deliveries"]
            assert delivery["status"] == "DELIVERY_STATUS_DELIVERED"
            return notification

        notification = wait(delivered, timeout=30, message="the notification delivered")
        assert (notification["severity"], notification["kind"]) == ("SEVERITY_CRITICAL", "firing")
        assert notification["deliveries"][0]["attempts"] == 1
        assert len(receiver.seen("/hook")) == 1
        table = cli("notifications", "--rule", "dau-zero")
        assert "delivered" in table and hook in table
    finally:
        suite.loop.run(receiver.stop())
