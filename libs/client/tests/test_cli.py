"""Every CLI command against a running suite loaded with the demo data set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from northstar_client.cli import app
from northstar_client.importer import Checkpoint

runner = CliRunner()
TODAY = datetime.now(UTC).date()
FROM = (TODAY - timedelta(days=59)).isoformat()


@pytest.fixture(scope="module")
def loaded(suite):
    """The suite with the demo data loaded once for the module."""
    result = runner.invoke(app, ["demo", "--users", "400", "--wait", "60"], env=suite.env())
    assert result.exit_code == 0, result.output
    return suite


def parse(output: str) -> dict:
    """The JSON answer in the output (the in-process services may log around it)."""
    start = output.index("{") if output.startswith("{") else output.index("\n{") + 1
    value, _ = json.JSONDecoder().raw_decode(output, start)
    return value


def cli(suite, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=suite.env())
    assert result.exit_code == code, result.output
    return result.output


def test_demo_populates_every_metric_and_is_idempotent(loaded) -> None:
    output = cli(loaded, "demo", "--users", "400")
    assert "demo loaded" in output
    assert "(0 accepted" in output  # the same day's demo again: every event DUPLICATE
    assert "Try:" in output


def test_active_users_table_and_json(loaded) -> None:
    table = cli(loaded, "active-users", "--from", FROM)
    assert "Active users" in table
    assert "DAU" in table and "stickiness" in table
    assert any(ch in table for ch in "▁▂▃▄▅▆▇█")
    data = parse(cli(loaded, "active-users", "--from", FROM, "--json"))
    assert len(data["days"]) == 60
    assert sum(d["dau"] for d in data["days"]) > 0
    assert data["log_position"] > 0


def test_retention(loaded) -> None:
    assert "Retention" in cli(loaded, "retention", "--from", FROM, "--periods", "4")
    data = parse(cli(loaded, "retention", "--from", FROM, "--periods", "4", "--json"))
    assert data["cohorts"] and data["cohorts"][0]["size"] > 0
    data = parse(cli(loaded, "retention-trend", "--from", FROM, "--period", "1", "--json"))
    assert data["period"] == 1 and data["points"]


def test_funnel_with_filter_and_breakdown(loaded) -> None:
    steps = ["user.signup", "integration.connected", "workflow.run:status=success"]
    table = cli(loaded, "funnel", *steps, "--from", FROM, "--breakdown", "channel")
    assert "Funnel" in table and "By breakdown" in table and "seo" in table
    data = parse(cli(loaded, "funnel", *steps, "--from", FROM, "--json"))
    users = [s["users"] for s in data["overall"]["steps"]]
    assert users[0] > users[1] > users[2] > 0


def test_trend_with_breakdown(loaded) -> None:
    table = cli(loaded, "trend", "page.view", "--from", FROM, "--breakdown", "page")
    assert "dashboard" in table
    data = parse(
        cli(
            loaded,
            "trend",
            "subscription.started",
            "--from",
            FROM,
            "--measure",
            "sum",
            "--property",
            "mrr",
            "--json",
        )
    )
    assert data["measure"] == "TREND_MEASURE_SUM"
    assert data["series"][0]["total"] > 0


def test_revenue_kpis_and_config(loaded) -> None:
    assert "Revenue" in cli(loaded, "revenue", "--from", FROM)
    data = parse(cli(loaded, "revenue", "--from", FROM, "--json"))
    assert data["days"][-1]["mrr"] > 0
    table = cli(loaded, "kpis")
    assert "Alignment score" in table and "KPIs" in table
    kpis = parse(cli(loaded, "kpis", "--json"))
    assert kpis["kpis"] and "alignment_score" in kpis
    config = parse(cli(loaded, "kpi-config", "show", "--json"))
    name = config["config"]["targets"][0]["name"]
    changed = parse(cli(loaded, "kpi-config", "set", name, "--weight", "2", "--json"))
    assert changed["version"] > config["version"]
    assert changed["config"]["targets"][0]["weight"] == 2


def test_anomalies_forecast_activation_workflows_quality(loaded) -> None:
    data = parse(cli(loaded, "anomalies", "--series", "signups", "--from", FROM, "--json"))
    assert data["days_judged"] > 0
    assert "Anomalies" in cli(loaded, "anomalies", "--series", "events", "--event", "page.view")
    forecast = parse(cli(loaded, "forecast", "--series", "dau", "--horizon", "7", "--json"))
    assert len(forecast["points"]) == 7
    assert "Forecast" in cli(loaded, "forecast", "--series", "dau")
    assert "Activation" in cli(loaded, "activation", "--from", FROM, "--breakdown", "plan")
    assert "Workflows" in cli(loaded, "workflows", "--from", FROM)
    quality = parse(cli(loaded, "data-quality", "--from", FROM, "--json"))
    assert quality["received"] > 0 and quality["accepted"] > 0
    assert "Data quality" in cli(loaded, "data-quality")


def test_track_one_event_and_its_duplicate(suite) -> None:
    args = ["track", "user.signup", "-u", "cli-u1", "-p", "plan=free", "--event-id", "cli-e1"]
    assert "ACCEPTED" in cli(suite, *args)
    assert "DUPLICATE" in cli(suite, *args)
    bad = cli(suite, "track", "bad name!", "-u", "x", code=1)
    assert "REJECTED" in bad and "event" in bad


def test_errors_are_one_line_with_the_status(suite) -> None:
    result = runner.invoke(app, ["--api-key", "wrong-key-0123456789", "kpis"], env=suite.env())
    assert result.exit_code == 1
    assert "UNAUTHENTICATED" in result.output


def test_profiles_from_the_config_file(suite, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[profiles.local]\n"
        f'ingest_endpoint = "{suite.ingest_address}"\n'
        f'metrics_endpoint = "{suite.metrics_address}"\n'
        f'api_key = "{suite.config().api_key}"\n'
    )
    env = {
        **suite.env(),
        "NORTHSTAR_API_KEY": "",
        "NORTHSTAR_INGEST_ENDPOINT": "",
        "NORTHSTAR_METRICS_ENDPOINT": "",
    }
    result = runner.invoke(
        app, ["--config", str(config), "--profile", "local", "kpis", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    missing = runner.invoke(app, ["--config", str(config), "--profile", "nope", "kpis"], env=env)
    assert missing.exit_code == 2 and "profile 'nope'" in missing.output


def test_every_command_has_help_with_examples() -> None:
    commands = [
        "track",
        "import",
        "demo",
        "active-users",
        "retention",
        "retention-trend",
        "activation",
        "workflows",
        "funnel",
        "trend",
        "revenue",
        "kpis",
        "anomalies",
        "forecast",
        "data-quality",
        "erase-user",
    ]
    for command in commands:
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, command
        assert "Examples" in result.output, command


def _events_file(path: Path, n: int, *, bad_every: int) -> int:
    now = datetime.now(UTC).replace(microsecond=0)
    bad = 0
    with path.open("w") as f:
        for i in range(n):
            record: dict[str, object] = {
                "event": "imp.event",
                "user_id": f"iu{i % 50}",
                "timestamp": (now - timedelta(seconds=i % 60)).isoformat(),
                "properties": {"n": i},
            }
            if i % bad_every == 0:
                record["event"] = "not a valid name!"
                bad += 1
            f.write(json.dumps(record) + "\n")
    return bad


def test_import_csv_and_parquet(suite, tmp_path: Path) -> None:
    csv_file = tmp_path / "events.csv"
    csv_file.write_text(
        "event,user_id,timestamp,plan,mrr\n"
        f"csv.event,c1,{datetime.now(UTC).isoformat()},free,0\n"
        f"csv.event,c2,{datetime.now(UTC).isoformat()},pro,9900\n"
        f"csv.event,c3,not-a-time,pro,9900\n"
    )
    data = parse(cli(suite, "import", str(csv_file), "--json", code=0))
    assert (data["records"], data["accepted"], data["rejected"]) == (3, 2, 1)
    assert data["rejection_reasons"] == {"timestamp: format": 1}

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"event": ["pq.event"] * 5, "user_id": [f"p{i}" for i in range(5)]})
    parquet_file = tmp_path / "events.parquet"
    pq.write_table(table, parquet_file)
    data = parse(cli(suite, "import", str(parquet_file), "--json"))
    assert (data["records"], data["accepted"]) == (5, 5)
    again = parse(cli(suite, "import", str(parquet_file), "--json", "--restart"))
    assert (again["accepted"], again["duplicate"]) == (0, 5)


def test_import_resumes_after_a_kill_without_double_counting(
    suite, serve, helpers, wait, tmp_path
) -> None:
    source = tmp_path / "events.jsonl"
    total = 6_000
    bad = _events_file(source, total, bad_every=97)
    checkpoint = tmp_path / "events.checkpoint.json"
    rejects = tmp_path / "events.rejects.jsonl"

    # A proxy that forwards every call but stops answering after 20: the import is
    # killed with batches stored by ingest and never acknowledged to it.
    proxy = helpers.IngestProxy(suite.ingest_address, stall_after=20)
    address = serve(proxy)
    args = [
        sys.executable,
        "-m",
        "northstar_client.cli",
        "import",
        str(source),
        "--batch-size",
        "100",
        "--concurrency",
        "4",
        "--checkpoint",
        str(checkpoint),
        "--rejects",
        str(rejects),
        "--json",
    ]
    env = {**os.environ, **suite.env(), "NORTHSTAR_INGEST_ENDPOINT": address}
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # More than the 20 answered batches reached ingest: some are stored, unanswered.
        wait(
            lambda: proxy.calls >= 24 and proxy.forwarded_events > 2_000,
            message="the import stalled on the proxy",
        )
        wait(lambda: (c := Checkpoint.load(checkpoint)) is not None and c.records >= 1_000)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = Checkpoint.load(checkpoint)
    assert killed_at is not None and not killed_at.complete
    # At most the 20 batches answered before the stall, as a prefix of whole batches.
    assert 1_000 <= killed_at.records <= 2_000 and killed_at.records % 100 == 0
    assert proxy.forwarded_events > killed_at.records  # stored but never acknowledged

    done = subprocess.run(
        args,
        env={**os.environ, **suite.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed_from"] == killed_at.records
    assert summary["records"] == total
    assert summary["rejected"] == bad
    assert summary["accepted"] + summary["duplicate"] + summary["rejected"] == total
    # The batches ingest stored but never acknowledged came back as DUPLICATE.
    assert summary["duplicate"] > 0
    assert len(rejects.read_text().splitlines()) == bad
    assert sum(summary["rejection_reasons"].values()) == bad
    wait(
        lambda: suite.event_count("imp.event") == total - bad,
        timeout=60,
        message="every valid record counted exactly once",
    )

    # Once complete, running it again changes nothing.
    again = subprocess.run(
        args,
        env={**os.environ, **suite.env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert json.loads(again.stdout)["records"] == total
