"""Reports over real processes: ingest, metrics, experiments, alerts and two reports replicas.

A schedule firing every minute (`* * * * *`, Europe/Paris) covers the same period, the local
day before, at every fire. Both replicas' schedulers race for it every quarter second: one
report is stored for the period and each channel target (a webhook and a Slack URL on a real
HTTP receiver, an address on a real SMTP server) receives it once, with the documented
Idempotency-Key / Message-ID, and nothing more after the next real fire.

The fires. The schedule's `active_since` (when it was created) is moved three minutes back in
the reports read model, as if it had been created then: three fires have passed when the
test starts waiting, so the first report comes at the replicas' next poll instead of up to a
minute later, and the test then waits for the next real minute's fire (at most 60 s) plus a
few polls. Total wall time: setup (~10 s) plus at most ~62 s.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
import time
import types
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import pytest
from google.protobuf import json_format, timestamp_pb2

from northstar.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from northstar.metrics.v1 import metrics_pb2, metrics_pb2_grpc, quality_pb2
from northstar.reports.v1 import reports_pb2 as rpb
from northstar.reports.v1 import reports_pb2_grpc
from northstar_harness.eventually import assert_eventually
from northstar_harness.receivers import HttpReceiver, SmtpReceiver
from northstar_reports.domain.events import delivery_id, report_id
from northstar_reports.domain.periods import DAY, Period, due_periods, period_from_proto
from northstar_runtime.topology import Topology

from .conftest import ADMIN_KEY, READER_KEY, WRITER_KEY, auth
from .processes import ReportsStack

ROOT = Path(__file__).resolve().parents[2]
US = 1_000_000
DAY_US = 86_400 * US
SCHEDULE = "paris-daily"
CRON = "* * * * *"
ZONE = "Europe/Paris"
EMAIL = "growth@example.com"
BACKDATE_S = 180.0  # the schedule is made three minutes old: three fires have passed
HEX32 = re.compile(r"^[0-9a-f]{32}$")
READ = {"metadata": auth(READER_KEY), "timeout": 10}

# The benchmark's data set generator (bench is no package).
if "bench_data" not in sys.modules:
    _bench = types.ModuleType("bench_data")
    _bench.__path__ = [str(ROOT / "bench")]
    sys.modules["bench_data"] = _bench
dataset = importlib.import_module("bench_data.dataset")

# Quick delivery and polling: the scheduler acts on each poll, so on every fire within
# a quarter second, and a retry (none is expected) comes within a second.
QUICK = {
    "REPORTS_POLL_SECONDS": "0.25",
    "DELIVERY_POLL_SECONDS": "0.1",
    "DELIVERY_BACKOFF_INITIAL_SECONDS": "0.2",
    "DELIVERY_BACKOFF_MAX_SECONDS": "1",
    "DELIVERY_BACKOFF_JITTER_SECONDS": "0",
    "HTTP_TIMEOUT_SECONDS": "5",
    "SMTP_TIMEOUT_SECONDS": "5",
    "SMTP_HOST": "127.0.0.1",
    "SMTP_SECURITY": "none",
    "UPSTREAM_DEADLINE_SECONDS": "5",
    "REPORTS_GENERATION_TIMEOUT_SECONDS": "20",
}


def events(users: int = 80, days: int = 20, seed: int = 11) -> list[ingest_pb2.Event]:
    """The data set's SaaS mix over the `days` days up to yesterday in Paris (the report's
    day; metrics counts that date as a UTC day): signups with plan and channel,
    integrations, workflows and their runs, page views, subscriptions, spend. Nothing later
    than a minute ago (after 23:00 UTC, Paris's yesterday is the UTC today)."""
    yesterday = datetime.now(ZoneInfo(ZONE)).date() - timedelta(days=1)
    end = datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=UTC)
    end_us = min(int(end.timestamp()) * US + DAY_US, int(time.time() - 60) * US)
    shape = dataset.Shape(users=users, days=days, end=end, seed=seed)
    out = []
    for row in dataset.generate(shape):
        if row["timestamp_us"] >= end_us:
            continue  # a first workflow the generator let fall after its last day
        ts = timestamp_pb2.Timestamp()
        ts.FromMicroseconds(row["timestamp_us"])
        out.append(
            ingest_pb2.Event(
                event_id=row["event_id"],
                event=row["event"],
                user_id=row["user_id"],
                org_id=row["org_id"],
                timestamp=ts,
                properties_json=orjson.dumps(row["properties"]).decode(),
            )
        )
    return out


async def track(stack: ReportsStack, batch: list[ingest_pb2.Event]) -> None:
    """Send the events through the public Track API, 100 a request, and wait until metrics
    has projected every one (DataQuality of today counts them as received and accepted)."""
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channels["ingest"])
    for i in range(0, len(batch), 100):
        reply = await ingest.Track(
            ingest_pb2.TrackRequest(events=batch[i : i + 100]),
            metadata=auth(WRITER_KEY),
            timeout=10,
        )
        assert reply.accepted == len(batch[i : i + 100]), reply
    metrics = metrics_pb2_grpc.MetricsServiceStub(stack.channels["metrics"])
    today = datetime.now(UTC).date().isoformat()

    async def projected() -> bool:
        answer = await metrics.DataQuality(
            quality_pb2.DataQualityRequest(from_date=today, to_date=today), **READ
        )
        return answer.accepted == len(batch)

    await assert_eventually(projected, timeout=30, interval=0.2)


def channels(http: HttpReceiver) -> rpb.Channels:
    """A webhook, a Slack URL and an address: three targets."""
    return rpb.Channels(emails=[EMAIL], slack=[http.url("/slack")], webhooks=[http.url("/hook")])


async def create_schedule(
    stack: ReportsStack, database_url: str, namespace: str, targets: rpb.Channels
) -> datetime:
    """CreateSchedule (admin), then make the schedule BACKDATE_S old in the read model;
    returns the instant it is now active since."""
    reports = reports_pb2_grpc.ReportsServiceStub(stack.channels["reports-a"])
    schedule = rpb.Schedule(
        schedule_id=SCHEDULE,
        name="Paris daily",
        kind=rpb.REPORT_KIND_DAILY,
        cron=CRON,
        time_zone=ZONE,
        channels=targets,
    )
    await reports.CreateSchedule(
        rpb.CreateScheduleRequest(schedule=schedule), metadata=auth(ADMIN_KEY), timeout=10
    )
    table = f"{Topology(namespace).schema('reports')}.report_schedules"
    conn = await asyncpg.connect(database_url)
    try:

        async def projected() -> float:
            since: float | None = await conn.fetchval(
                f"SELECT active_since FROM {table} WHERE tenant = 'acme' AND schedule_id = $1",
                SCHEDULE,
            )
            assert since is not None, "the schedule is not projected yet"
            return since

        since = await assert_eventually(projected, timeout=20)
        await conn.execute(
            f"UPDATE {table} SET active_since = $2 WHERE tenant = 'acme' AND schedule_id = $1",
            SCHEDULE,
            since - BACKDATE_S,
        )
    finally:
        await conn.close()
    return datetime.fromtimestamp(since - BACKDATE_S, UTC)


def expected_periods(active_since: datetime, until: datetime) -> list[Period]:
    """The periods the fires in (active_since, until] cover: the local day before, one
    period unless the test runs across Paris midnight."""
    return due_periods(CRON, ZONE, DAY, after=active_since, until=until, limit=7)


async def list_reports(stack: ReportsStack, replica: str) -> list[rpb.ReportSummary]:
    """Every report of the schedule, as `replica` lists them."""
    reports = reports_pb2_grpc.ReportsServiceStub(stack.channels[replica])
    listed = await reports.ListReports(
        rpb.ListReportsRequest(schedule_id=SCHEDULE, page_size=100), **READ
    )
    assert not listed.next_page_token
    return list(listed.reports)


def delivered(summary: rpb.ReportSummary) -> bool:
    """All three deliveries recorded DELIVERED."""
    return len(summary.deliveries) == 3 and all(
        d.status == rpb.DELIVERY_STATUS_DELIVERED for d in summary.deliveries
    )


def message_key(message: EmailMessage) -> str:
    """The delivery id in a report email's Message-ID (`<report-<id>@<domain>>`)."""
    found = re.fullmatch(r"<report-([0-9a-f]{32})@[^>]+>", str(message["Message-ID"]))
    assert found, message["Message-ID"]
    return found.group(1)


def without_volatile(q: quality_pb2.DataQualityResponse) -> quality_pb2.DataQualityResponse:
    """A data-quality answer without what depends on the moment it was asked (freshness,
    log positions) and without user ids (a report keeps none)."""
    out = quality_pb2.DataQualityResponse()
    out.CopyFrom(q)
    for name in ("freshness_seconds", "log_position", "domain_log_position"):
        out.ClearField(name)
    for bot in out.suspected_bot_users:
        bot.ClearField("user_id")
    return out


async def agrees_with_metrics(stack: ReportsStack, report: rpb.Report) -> None:
    """The report's key metrics and data quality equal metrics' own answers for its day."""
    day = report.summary.period.start_date
    assert report.summary.period.end_date == day
    metrics = metrics_pb2_grpc.MetricsServiceStub(stack.channels["metrics"])
    active = await metrics.ActiveUsers(
        metrics_pb2.ActiveUsersRequest(from_date=day, to_date=day), **READ
    )
    [d] = active.days
    key = {m.name: m for m in report.key_metrics.metrics}
    assert key["dau"].value == d.dau
    assert key["wau"].value == d.wau
    assert key["mau"].value == d.mau
    assert (key["stickiness"].value if key["stickiness"].HasField("value") else None) == (
        d.stickiness if d.HasField("stickiness") else None
    )
    assert d.dau > 0, "the data set has activity on the report's day"
    quality = await metrics.DataQuality(
        quality_pb2.DataQualityRequest(from_date=day, to_date=day), **READ
    )
    assert without_volatile(report.data_quality.quality) == without_volatile(quality)


@pytest.fixture
async def stack(
    nats_url: str, database_url: str, namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[ReportsStack, HttpReceiver, SmtpReceiver]]:
    """Every service as a process on the machine's servers, two reports replicas, and the
    receivers their deliveries go to."""
    http, smtp = HttpReceiver(), SmtpReceiver()
    await http.start()
    await smtp.start()
    s = ReportsStack(
        nats_url, database_url, namespace, tmp_path, env={**QUICK, "SMTP_PORT": str(smtp.port)}
    )
    try:
        await s.start()
        yield s, http, smtp
    finally:
        await s.stop()
        await smtp.stop()
        await http.stop()


async def test_two_replicas_racing_over_every_minute_report_once_and_deliver_once(
    stack: tuple[ReportsStack, HttpReceiver, SmtpReceiver], database_url: str, namespace: str
) -> None:
    s, http, smtp = stack
    reports_a = reports_pb2_grpc.ReportsServiceStub(s.channels["reports-a"])

    # The tenant's default schedules are installed once the services run.
    async def defaults() -> bool:
        listed = await reports_a.ListSchedules(rpb.ListSchedulesRequest(), **READ)
        got = {(x.schedule.schedule_id, x.schedule.kind, x.schedule.cron) for x in listed.schedules}
        assert got == {
            ("daily", rpb.REPORT_KIND_DAILY, "0 9 * * *"),
            ("weekly", rpb.REPORT_KIND_WEEKLY, "0 9 * * 1"),
        }, got
        return True

    await assert_eventually(defaults, timeout=20, interval=0.2)

    await track(s, events())
    active_since = await create_schedule(s, database_url, namespace, channels(http))

    async def generated_and_delivered() -> rpb.ReportSummary:
        listed = await list_reports(s, "reports-b")
        # One period, unless the three minutes before the test held Paris midnight.
        due = expected_periods(active_since, datetime.now(UTC))
        assert sorted(period_from_proto(r.period) for r in listed) == due, listed
        assert all(delivered(r) for r in listed), listed
        return listed[0]  # the newest period first

    summary = await assert_eventually(generated_and_delivered, timeout=30, interval=0.2)
    assert summary.kind == rpb.REPORT_KIND_DAILY and not summary.on_demand

    # While the next real fire comes: the report's numbers, and its renderings.
    got = await reports_a.GetReport(
        rpb.GetReportRequest(report_id=summary.report_id, format=rpb.FORMAT_JSON), **READ
    )
    await agrees_with_metrics(s, got.report)
    assert got.content_type == "application/json"
    html = await reports_a.GetReport(
        rpb.GetReportRequest(report_id=summary.report_id, format=rpb.FORMAT_HTML), **READ
    )
    assert html.content_type == "text/html; charset=utf-8"
    assert html.content.lstrip().lower().startswith("<!doctype html")
    assert "Paris daily" in html.content and "<svg" in html.content
    markdown = await reports_a.GetReport(
        rpb.GetReportRequest(report_id=summary.report_id, format=rpb.FORMAT_MARKDOWN), **READ
    )
    assert markdown.content_type == "text/markdown"
    assert markdown.content.startswith("# ") and "Paris daily" in markdown.content

    # The next minute's fire, and a few polls of both replicas after it.
    now = time.time()
    await asyncio.sleep(60 - now % 60 + 1.5)
    until = datetime.now(UTC)
    periods = expected_periods(active_since, until)
    assert len(periods) >= 1

    for replica in ("reports-a", "reports-b"):
        listed = await list_reports(s, replica)
        # One stored report per period the fires covered (the fires since active_since
        # all cover the same day, unless the test ran across Paris midnight).
        assert sorted(period_from_proto(r.period) for r in listed) == periods, listed
        assert all(delivered(r) for r in listed)
    assert summary.report_id in {r.report_id for r in listed}

    # Each target received each report once, keyed by its delivery's id.
    ids = {report_id("acme", SCHEDULE, p) for p in periods}
    assert ids == {r.report_id for r in listed}
    hook_url, slack_url = http.url("/hook"), http.url("/slack")
    want = {
        (rid, delivery_id(rid, channel, target))
        for rid in ids
        for channel, target in (("webhook", hook_url), ("slack", slack_url))
    }
    seen = [(r.headers["X-Northstar-Report"], r.key) for r in http.requests]
    assert sorted(seen) == sorted(want)  # no target twice, none missing
    mails = sorted(message_key(m) for _, m in smtp.messages)
    assert mails == sorted(delivery_id(rid, "email", EMAIL) for rid in ids)
    assert all(to == [EMAIL] for to, _ in smtp.messages)

    [hook] = [r for r in http.seen("/hook") if r.headers["X-Northstar-Report"] == summary.report_id]
    [slack] = [
        r for r in http.seen("/slack") if r.headers["X-Northstar-Report"] == summary.report_id
    ]
    for request in (hook, slack):
        assert HEX32.match(request.key), request.headers
        assert request.headers["X-Northstar-Attempt"] == "1"
        assert request.headers["User-Agent"] == "northstar-reports"
    # The webhook's body is the report in proto3 JSON, as GetReport answers it (but for the
    # deliveries, which were pending when it was sent).
    sent = json_format.ParseDict(hook.body, rpb.Report())
    stored = rpb.Report()
    stored.CopyFrom(got.report)
    sent.summary.ClearField("deliveries")
    stored.summary.ClearField("deliveries")
    assert sent == stored
    assert isinstance(slack.body["text"], str) and "Paris daily" in slack.body["text"]
    [mail] = [
        m
        for _, m in smtp.messages
        if message_key(m) == delivery_id(summary.report_id, "email", EMAIL)
    ]
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
