"""The reports clients and `northstar reports` against a running reports service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from typer.testing import CliRunner

from northstar.reports.v1 import reports_pb2 as pb
from northstar_client import AsyncReportsClient, ReportsClient, RpcError
from northstar_client.cli import app

runner = CliRunner()
YESTERDAY = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
LAST_WEEK = (datetime.now(UTC).date() - timedelta(days=7)).isoformat()  # in an ended ISO week


def schedule(schedule_id: str, name: str = "Growth daily") -> pb.Schedule:
    return pb.Schedule(
        schedule_id=schedule_id,
        name=name,
        kind=pb.REPORT_KIND_DAILY,
        cron="0 8 * * *",
        time_zone="UTC",
        channels=pb.Channels(webhooks=["http://127.0.0.1:9/hook"]),
    )


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(RpcError) as failed:
        call()
    return failed.value.code


def test_schedules_round_trip_with_versions(suite) -> None:
    with ReportsClient(suite.config()) as client:
        created = client.create_schedule(schedule("sdk-daily")).schedule
        assert created.version == 1 and created.HasField("next_run")
        taken = lambda: client.create_schedule(schedule("sdk-daily"))  # noqa: E731
        assert code_of(taken) == grpc.StatusCode.ALREADY_EXISTS
        updated = client.update_schedule(schedule("sdk-daily", "Renamed"), created.version)
        assert updated.schedule.version > created.version
        stale = lambda: client.update_schedule(schedule("sdk-daily"), created.version)  # noqa: E731
        assert code_of(stale) == grpc.StatusCode.ABORTED
        assert client.get_schedule("sdk-daily").schedule.schedule.name == "Renamed"
        bad = pb.Schedule(schedule_id="sdk-bad", name="x", kind=pb.REPORT_KIND_DAILY, cron="nope")
        with pytest.raises(RpcError) as refused:
            client.create_schedule(bad)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "schedule.cron" in {v.field for v in refused.value.violations}
        client.delete_schedule("sdk-daily", updated.schedule.version)
        listed = [s.schedule.schedule_id for s in client.list_schedules().schedules]
        assert "sdk-daily" not in listed


def test_generate_get_and_list_reports(suite) -> None:
    with ReportsClient(suite.config()) as client:
        client.create_schedule(schedule("sdk-gen"))
        made = client.generate_report("sdk-gen", period_date=YESTERDAY).report
        summary = made.summary
        assert summary.on_demand and summary.schedule_id == "sdk-gen"
        assert (summary.period.start_date, summary.period.end_date) == (YESTERDAY, YESTERDAY)
        assert list(summary.deliveries) == []  # not delivered unless asked
        html = client.get_report(summary.report_id, pb.FORMAT_HTML)
        assert html.content_type.startswith("text/html") and "<svg" in html.content
        markdown = client.get_report(summary.report_id, pb.FORMAT_MARKDOWN)
        assert markdown.content.startswith("#") and "Growth daily" in markdown.content
        as_json = client.get_report(summary.report_id)
        parsed = json_format.Parse(as_json.content, pb.Report())
        assert parsed.summary.report_id == summary.report_id
        listed = client.list_reports("sdk-gen")
        assert [r.report_id for r in listed.reports] == [summary.report_id]
        unknown = lambda: client.get_report("0" * 32)  # noqa: E731
        assert code_of(unknown) == grpc.StatusCode.NOT_FOUND
        malformed = lambda: client.get_report("no such report")  # noqa: E731
        assert code_of(malformed) == grpc.StatusCode.INVALID_ARGUMENT
        ongoing = datetime.now(UTC).date().isoformat()
        not_ended = lambda: client.generate_report("sdk-gen", period_date=ongoing)  # noqa: E731
        assert code_of(not_ended) == grpc.StatusCode.FAILED_PRECONDITION


def test_async_client_generates_from_an_inline_definition(suite) -> None:
    async def run() -> pb.Report:
        async with AsyncReportsClient(suite.config()) as client:
            made = await client.generate_report(schedule("inline"), period_date=YESTERDAY)
            got = await client.get_report(made.report.summary.report_id)
            return got.report

    report = asyncio.run(run())
    assert report.summary.schedule_id == "" and report.summary.on_demand
    assert pb.SECTION_KEY_METRICS in report.sections


def test_cli_schedules_generate_and_reports(suite, tmp_path: Path) -> None:
    env = suite.env()
    definition = tmp_path / "cli-weekly.yaml"
    definition.write_text(
        "schedule_id: cli-weekly\n"
        "name: CLI weekly\n"
        "kind: REPORT_KIND_WEEKLY\n"
        'cron: "0 9 * * 1"\n'
        "time_zone: Europe/Paris\n"
    )
    created = runner.invoke(app, ["reports", "schedules", "create", str(definition)], env=env)
    assert created.exit_code == 0, created.output
    assert "cli-weekly" in created.output and "Europe/Paris" in created.output
    listed = runner.invoke(app, ["reports", "schedules", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "cli-weekly" in listed.output and "0 9 * * 1" in listed.output

    # `get --json` is read back by `update`: fetch, edit, send.
    got = runner.invoke(app, ["reports", "schedules", "get", "cli-weekly", "--json"], env=env)
    assert got.exit_code == 0, got.output
    answer = json.loads(got.output)
    answer["schedule"]["schedule"]["name"] = "CLI weekly, renamed"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(answer))
    updated = runner.invoke(app, ["reports", "schedules", "update", str(edited)], env=env)
    assert updated.exit_code == 0, updated.output
    assert "renamed" in updated.output

    page = tmp_path / "week.html"
    generated = runner.invoke(
        app,
        ["reports", "generate", "cli-weekly", "--date", LAST_WEEK, "-f", "html", "-o", str(page)],
        env=env,
    )
    assert generated.exit_code == 0, generated.output
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") or text.lower().startswith("<!doctype html>")
    assert "CLI weekly, renamed" in text

    reports = runner.invoke(app, ["reports", "list", "--schedule", "cli-weekly", "--json"], env=env)
    assert reports.exit_code == 0, reports.output
    (only,) = json.loads(reports.output)["reports"]
    assert only["on_demand"] is True and only["period"]["unit"] == "PERIOD_UNIT_WEEK"

    markdown = runner.invoke(app, ["reports", "get", only["report_id"]], env=env)
    assert markdown.exit_code == 0, markdown.output
    assert "CLI weekly, renamed" in markdown.output and "Retention" in markdown.output

    deleted = runner.invoke(app, ["reports", "schedules", "delete", "cli-weekly"], env=env)
    assert deleted.exit_code == 0, deleted.output
    missing = runner.invoke(app, ["reports", "schedules", "get", "cli-weekly"], env=env)
    assert missing.exit_code == 1 and "NOT_FOUND" in missing.output


def test_cli_refuses_a_file_that_is_not_a_schedule(suite, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("- a list\n- not a schedule\n")
    result = runner.invoke(app, ["reports", "schedules", "create", str(wrong)], env=suite.env())
    assert result.exit_code == 2 and "must hold one schedule" in result.output
    typo = tmp_path / "typo.yaml"
    typo.write_text("schedule_id: x\ncrn: '0 9 * * *'\n")
    result = runner.invoke(app, ["reports", "schedules", "create", str(typo)], env=suite.env())
    assert result.exit_code == 2 and "crn" in result.output
