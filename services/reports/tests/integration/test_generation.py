"""Scheduled generation once per (schedule, period) across replicas, crashes and downtime;
delivery once per target over real SMTP and HTTP receivers; rebuild; tenants."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import grpc
import orjson
import pytest
from google.protobuf import json_format

from northstar.reports.v1 import reports_pb2 as pb
from northstar_harness.eventually import assert_eventually
from northstar_harness.receivers import HttpReceiver, Route, SmtpReceiver
from northstar_reports.adapters.generation_store import GenerationStore
from northstar_reports.adapters.projection import ReportsProjection
from northstar_reports.domain import events
from northstar_runtime.log import LogConflict
from northstar_runtime.service import ServiceHost

from .conftest import (
    OTHER_ADMIN_KEY,
    ReportsHosts,
    auth,
    daily,
    pool_of,
    stub_of,
    subject_counts,
)


class Crash(BaseException):
    """A replica dying at a fault point: no handler of the service catches it."""


@pytest.fixture
async def http() -> AsyncIterator[HttpReceiver]:
    receiver = HttpReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def covered_days(created: datetime, now: datetime, n: int) -> list[date]:
    """The newest `n` days the 09:00 UTC fires in (created, now] cover, newest first."""
    last_fire = now.date() if now.hour >= 9 else now.date() - timedelta(days=1)
    days = [last_fire - timedelta(days=1 + i) for i in range(n)]
    first_fire = created.date() if created.hour < 9 else created.date() + timedelta(days=1)
    return [d for d in days if d + timedelta(days=1) >= first_fire]


async def all_reports(
    host: ServiceHost, key: tuple[tuple[str, str]] | None = None
) -> list[pb.ReportSummary]:
    listed = await stub_of(host).ListReports(pb.ListReportsRequest(), metadata=key or auth())
    return list(listed.reports)


async def create(host: ServiceHost, schedule: pb.Schedule) -> datetime:
    """Create the schedule; (a lower bound of) the time the log stored it."""
    before = datetime.now(UTC)
    await stub_of(host).CreateSchedule(pb.CreateScheduleRequest(schedule=schedule), metadata=auth())
    return before


async def test_two_replicas_generate_each_period_once_and_deliver_once(
    hosts: ReportsHosts, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    settings = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port}
    a = await hosts.start(**settings)
    b = await hosts.start(**settings)
    hook = http.url("/hook")
    created = await create(
        a, daily("ops", channels=pb.Channels(emails=["ops@acme.test"], webhooks=[hook]))
    )
    now = created + timedelta(days=3, minutes=1)
    hosts.clock.set(now)
    expected = covered_days(created, now, 3)
    assert len(expected) == 3

    async def delivered() -> list[pb.ReportSummary]:
        reports = await all_reports(a)
        assert [date.fromisoformat(r.period.start_date) for r in reports] == expected
        for r in reports:
            assert [d.status for d in r.deliveries] == [pb.DELIVERY_STATUS_DELIVERED] * 2
        return reports

    reports = await assert_eventually(delivered, timeout=30)
    # Both replicas keep polling for a while; nothing more may appear.
    await asyncio.sleep(1.0)
    counts = await subject_counts(b, "report")
    assert sorted(counts.values()) == [1, 1, 1]
    assert {k.rsplit(".", 1)[1] for k in counts} == {r.report_id for r in reports}
    assert all(not r.on_demand and r.schedule_id == "ops" for r in reports)
    assert sorted(r.key for r in http.seen("/hook")) == sorted(
        events.delivery_id(r.report_id, "webhook", hook) for r in reports
    )
    assert len(smtp.messages) == 3
    assert sorted((await subject_counts(a, "delivery")).values()) == [2, 2, 2]  # two targets
    assert len(hosts.sections.calls) == 3  # one gathering per period, no second attempt


@pytest.mark.parametrize("point", ["gathered", "committed", "recorded"])
async def test_a_crash_anywhere_in_a_generation_gives_one_report_delivered_once(
    hosts: ReportsHosts, http: HttpReceiver, point: str
) -> None:
    """Replica a dies at `point` (before recording: its lease must lapse; after the commit,
    before the publish: the relay publishes; after the publish: nothing is left to do),
    before delivering anything; replica b finishes the work."""
    crashed = asyncio.Event()

    async def die(at: str) -> None:
        if at == point:
            crashed.set()
            raise Crash(at)

    a = await hosts.start(fault=die, reports_dispatcher_enabled=False)
    hook = http.url("/hook")
    created = await create(a, daily("ops", channels=pb.Channels(webhooks=[hook])))
    hosts.clock.set(created + timedelta(days=1, minutes=1))
    await asyncio.wait_for(crashed.wait(), 20)
    await hosts.stop(a)
    assert http.seen("/hook") == []

    b = await hosts.start()

    async def delivered() -> pb.ReportSummary:
        reports = await all_reports(b)
        assert len(reports) == 1
        report = reports[0]
        assert [d.status for d in report.deliveries] == [pb.DELIVERY_STATUS_DELIVERED]
        return report

    report = await assert_eventually(delivered, timeout=40)
    await asyncio.sleep(1.0)  # b keeps polling: no second generation, no second send
    assert [r.key for r in http.seen("/hook")] == [
        events.delivery_id(report.report_id, "webhook", hook)
    ]
    assert list((await subject_counts(b, "report")).values()) == [1]
    # Gathered twice only when a died before recording anything.
    assert len(hosts.sections.calls) == (2 if point == "gathered" else 1)


async def test_missed_days_are_caught_up_up_to_the_limit(hosts: ReportsHosts) -> None:
    host = await hosts.start(reports_catch_up_limit=4)
    created = await create(host, daily("ops"))
    # The service "was down" for six days.
    now = created + timedelta(days=6, minutes=1)
    hosts.clock.set(now)
    expected = covered_days(created, now, 4)

    async def caught_up() -> bool:
        got = [date.fromisoformat(r.period.start_date) for r in await all_reports(host)]
        assert got == expected
        return True

    await assert_eventually(caught_up, timeout=30)
    # A paused schedule generates nothing, even as more days pass.
    stub = stub_of(host)
    state = (
        await stub.GetSchedule(pb.GetScheduleRequest(schedule_id="ops"), metadata=auth())
    ).schedule
    assert state.last_period.start_date == expected[0].isoformat()
    await stub.UpdateSchedule(
        pb.UpdateScheduleRequest(
            schedule=daily("ops", paused=True), expected_version=state.version
        ),
        metadata=auth(),
    )

    async def paused() -> bool:
        return bool(await pool_of(host).fetchval("SELECT paused FROM report_schedules"))

    await assert_eventually(paused, timeout=20)
    hosts.clock.set(now + timedelta(days=2))
    await asyncio.sleep(1.0)  # ten scheduler rounds with two more days due
    assert len(await all_reports(host)) == 4


async def test_email_slack_and_webhook_carry_the_report(
    hosts: ReportsHosts, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    host = await hosts.start(smtp_host="127.0.0.1", smtp_port=smtp.port)
    slack, hook = http.url("/slack"), http.url("/hook")
    channels = pb.Channels(emails=["ceo@acme.test"], slack=[slack], webhooks=[hook])
    created = await create(host, daily("ops", channels=channels))
    hosts.clock.set(created + timedelta(days=1, minutes=1))

    async def all_sent() -> bool:
        return len(smtp.messages) == 1 and bool(http.seen("/slack")) and bool(http.seen("/hook"))

    await assert_eventually(all_sent, timeout=30)
    (report,) = await all_reports(host)
    rcpts, message = smtp.messages[0]
    assert rcpts == ["ceo@acme.test"]
    assert message.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in message.iter_parts()]
    assert types == ["text/plain", "text/html"]
    assert message["Subject"]
    (slack_request,) = http.seen("/slack")
    assert isinstance(slack_request.body["text"], str) and slack_request.body["text"]
    (hook_request,) = http.seen("/hook")
    assert hook_request.key == events.delivery_id(report.report_id, "webhook", hook)
    body = json_format.ParseDict(hook_request.body, pb.Report())
    assert body.summary.report_id == report.report_id
    assert body.key_metrics.metrics[0].name == "dau"


async def test_a_failing_receiver_is_retried_then_failed(
    hosts: ReportsHosts, http: HttpReceiver
) -> None:
    host = await hosts.start(delivery_max_attempts=3)
    hook = http.url("/down", Route(fail=1000))
    created = await create(host, daily("ops", channels=pb.Channels(webhooks=[hook])))
    hosts.clock.set(created + timedelta(days=1, minutes=1))

    async def failed() -> pb.Delivery:
        reports = await all_reports(host)
        assert len(reports) == 1 and len(reports[0].deliveries) == 1
        delivery = reports[0].deliveries[0]
        assert delivery.status == pb.DELIVERY_STATUS_FAILED
        return delivery

    delivery = await assert_eventually(failed, timeout=30)
    assert delivery.attempts == 3 and "try later" in delivery.last_error
    assert len(http.seen("/down")) == 3
    assert len({r.key for r in http.seen("/down")}) == 1  # one idempotency key, every attempt


async def test_generate_report_on_demand(hosts: ReportsHosts, http: HttpReceiver) -> None:
    host = await hosts.start(reports_scheduler_enabled=False)
    stub = stub_of(host)
    hook = http.url("/hook")
    await create(host, daily("ops", channels=pb.Channels(webhooks=[hook])))
    today = datetime.now(UTC).date()
    with pytest.raises(grpc.aio.AioRpcError) as not_ended:
        await stub.GenerateReport(
            pb.GenerateReportRequest(schedule_id="ops", period_date=today.isoformat()),
            metadata=auth(),
        )
    assert not_ended.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.GenerateReport(pb.GenerateReportRequest(schedule_id="nope"), metadata=auth())
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    day = (today - timedelta(days=3)).isoformat()
    first = await stub.GenerateReport(
        pb.GenerateReportRequest(schedule_id="ops", period_date=day), metadata=auth()
    )
    second = await stub.GenerateReport(
        pb.GenerateReportRequest(schedule_id="ops", period_date=day, deliver=True), metadata=auth()
    )
    for r in (first.report, second.report):
        assert r.summary.on_demand and r.summary.period.start_date == day
    assert first.report.summary.report_id != second.report.summary.report_id
    assert list(first.report.summary.deliveries) == []
    assert [d.target for d in second.report.summary.deliveries] == [hook]
    await assert_eventually(lambda: len(http.seen("/hook")) == 1, timeout=20)
    inline = await stub.GenerateReport(
        pb.GenerateReportRequest(definition=daily("inline", kind=pb.REPORT_KIND_WEEKLY)),
        metadata=auth(),
    )
    s = inline.report.summary
    assert s.schedule_id == "" and s.period.unit == pb.PERIOD_UNIT_WEEK
    assert date.fromisoformat(s.period.start_date).isoweekday() == 1
    assert list(inline.report.sections)[-1] == pb.SECTION_DATA_QUALITY

    # Read your writes: the report GenerateReport answered is readable at once.
    got = await stub.GetReport(
        pb.GetReportRequest(report_id=inline.report.summary.report_id, format=pb.FORMAT_HTML),
        metadata=auth(),
    )
    assert got.content_type == "text/html; charset=utf-8" and got.content
    assert got.report.summary.report_id == inline.report.summary.report_id


async def test_reports_are_per_tenant_and_paged(hosts: ReportsHosts) -> None:
    host = await hosts.start(reports_scheduler_enabled=False)
    stub = stub_of(host)
    await create(host, daily("ops"))
    today = datetime.now(UTC).date()
    made = []
    for back in range(1, 6):
        day = (today - timedelta(days=back)).isoformat()
        r = await stub.GenerateReport(
            pb.GenerateReportRequest(schedule_id="ops", period_date=day), metadata=auth()
        )
        made.append(r.report.summary.report_id)
    await assert_eventually(lambda: _count(host, 5), timeout=20)
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await stub.ListReports(
            pb.ListReportsRequest(page_size=2, page_token=token), metadata=auth()
        )
        pages.append([r.report_id for r in page.reports])
        token = page.next_page_token
        if not token:
            break
    assert pages == [made[0:2], made[2:4], made[4:5]]  # newest period first
    window = await stub.ListReports(
        pb.ListReportsRequest(
            from_date=(today - timedelta(days=3)).isoformat(),
            to_date=(today - timedelta(days=2)).isoformat(),
        ),
        metadata=auth(),
    )
    assert [r.report_id for r in window.reports] == made[1:3]
    with pytest.raises(grpc.aio.AioRpcError) as bad_token:
        await stub.ListReports(pb.ListReportsRequest(page_token="nope"), metadata=auth())
    assert bad_token.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    other = await stub.ListReports(pb.ListReportsRequest(), metadata=auth(OTHER_ADMIN_KEY))
    assert list(other.reports) == []
    with pytest.raises(grpc.aio.AioRpcError) as hidden:
        await stub.GetReport(pb.GetReportRequest(report_id=made[0]), metadata=auth(OTHER_ADMIN_KEY))
    assert hidden.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.GetReport(pb.GetReportRequest(report_id="0" * 32), metadata=auth())
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    got = await stub.GetReport(pb.GetReportRequest(report_id=made[0]), metadata=auth())
    assert got.content_type == "application/json"
    assert orjson.loads(got.content)["summary"]["reportId"] == made[0]


async def _count(host: ServiceHost, n: int) -> bool:
    return len(await all_reports(host)) == n


async def test_a_rebuild_from_the_log_gives_the_same_reports(
    hosts: ReportsHosts, http: HttpReceiver
) -> None:
    host = await hosts.start(delivery_max_attempts=2)
    ok, down = http.url("/ok"), http.url("/down", Route(fail=1000))
    created = await create(host, daily("ops", channels=pb.Channels(webhooks=[ok, down])))
    hosts.clock.set(created + timedelta(days=2, minutes=1))

    async def settled() -> list[pb.ReportSummary]:
        reports = await all_reports(host)
        assert len(reports) == 2
        statuses = sorted(d.status for r in reports for d in r.deliveries)
        assert statuses == [pb.DELIVERY_STATUS_DELIVERED] * 2 + [pb.DELIVERY_STATUS_FAILED] * 2
        return reports

    live = await assert_eventually(settled, timeout=30)
    live_full = [
        await stub_of(host).GetReport(pb.GetReportRequest(report_id=r.report_id), metadata=auth())
        for r in live
    ]
    await hosts.stop(host)
    again = await hosts.start(reports_scheduler_enabled=False, reports_dispatcher_enabled=False)
    async with pool_of(again).acquire() as conn, conn.transaction():
        await ReportsProjection().reset(conn)
        await conn.execute("DELETE FROM projection_checkpoints WHERE projection = 'reports'")
    await hosts.stop(again)
    rebuilt = await hosts.start(reports_scheduler_enabled=False, reports_dispatcher_enabled=False)

    async def same() -> bool:
        assert await all_reports(rebuilt) == live
        return True

    await assert_eventually(same, timeout=30)
    for before in live_full:
        after = await stub_of(rebuilt).GetReport(
            pb.GetReportRequest(report_id=before.report.summary.report_id), metadata=auth()
        )
        assert after == before


async def test_a_second_append_of_a_report_is_detected(hosts: ReportsHosts) -> None:
    host = await hosts.start()
    created = await create(host, daily("ops"))
    hosts.clock.set(created + timedelta(days=1, minutes=1))
    await assert_eventually(lambda: _count(host, 1), timeout=30)
    assert host.resources is not None
    log = host.resources.log
    info = await log.js.stream_info(log.topology.domain_stream)
    assert info.config.duplicate_window == 600  # seconds: the relay's retries fall inside
    pool = pool_of(host)
    # The relay publishing the same row again (a crash before it was marked published).
    await pool.execute("UPDATE report_outbox SET published_at = NULL")
    store = GenerationStore(pool, log, owner="test", lease_s=10)
    assert await store.publish() == 1
    row = await pool.fetchrow("SELECT subject, msg_id, payload FROM report_outbox")
    again = await log.append(row["subject"], bytes(row["payload"]), msg_id=row["msg_id"])
    assert again.duplicate
    # Past the duplicate window (another msg-id): the report's subject refuses a second one.
    with pytest.raises(LogConflict):
        await log.append(row["subject"], bytes(row["payload"]), msg_id="other", expected_version=0)
    assert list((await subject_counts(host, "report")).values()) == [1]


async def fast_while_slow_is_held(host: ServiceHost, release: asyncio.Event) -> None:
    """ "b-fast" is generated while "a-slow" is held, and "a-slow" once released."""

    async def generated(schedule_id: str) -> bool:
        return any(r.schedule_id == schedule_id for r in await all_reports(host))

    await assert_eventually(lambda: generated("b-fast"), timeout=20)
    assert not await generated("a-slow")
    release.set()
    await assert_eventually(lambda: generated("a-slow"), timeout=20)


async def test_a_slow_schedule_does_not_hold_back_another(hosts: ReportsHosts) -> None:
    host = await hosts.start(reports_generation_timeout_seconds=30.0)
    release = asyncio.Event()
    hosts.sections.hold["a-slow"] = release
    await create(host, daily("a-slow"))
    created = await create(host, daily("b-fast"))
    hosts.clock.set(created + timedelta(days=1, minutes=1))
    # "a-slow" comes first and is still gathering (held) while "b-fast" is generated.
    await fast_while_slow_is_held(host, release)


async def test_a_schedule_due_while_another_gathers_is_not_held_back(
    hosts: ReportsHosts,
) -> None:
    # The slow schedule's round is still gathering when the other one becomes due: the
    # next round starts it all the same.
    host = await hosts.start(reports_generation_timeout_seconds=30.0)
    release = asyncio.Event()
    hosts.sections.hold["a-slow"] = release
    created = await create(host, daily("a-slow"))
    hosts.clock.set(created + timedelta(days=1, minutes=1))
    await assert_eventually(lambda: any(c[1] == "a-slow" for c in hosts.sections.calls))
    later = await create(host, daily("b-fast"))
    hosts.clock.set(later + timedelta(days=2, minutes=1))
    await fast_while_slow_is_held(host, release)
