"""The reports projection: idempotent, and a delivery's end projected before its report
(different subjects) is kept."""

from __future__ import annotations

from northstar.reports.v1 import reports_pb2 as pb
from northstar_reports.adapters.projection import ReportsProjection
from northstar_reports.adapters.report_store import ReportBook
from northstar_reports.domain import events
from northstar_runtime.codec import TYPE_HEADER
from northstar_runtime.projector import LogEntry

from .conftest import ReportsHosts, pool_of

REPORT_ID = "ab" * 16


def entry(seq: int, aggregate: str, kind: str, data: bytes) -> LogEntry:
    return LogEntry(seq, f"domain.reports.acme.{aggregate}.{REPORT_ID}", data, {TYPE_HEADER: kind})


def generated() -> LogEntry:
    report = pb.Report(
        summary=pb.ReportSummary(
            report_id=REPORT_ID,
            schedule_id="ops",
            title="Ops",
            period=pb.Period(
                unit=pb.PERIOD_UNIT_DAY, start_date="2026-03-01", end_date="2026-03-01"
            ),
            deliveries=[
                pb.Delivery(
                    channel="webhook", target="https://a.test/", status=pb.DELIVERY_STATUS_PENDING
                ),
                pb.Delivery(channel="email", target="x@a.test", status=pb.DELIVERY_STATUS_PENDING),
            ],
        )
    )
    report.summary.generated_at.FromSeconds(1_772_000_000)
    return entry(
        1, "report", events.GENERATED, pb.ReportGenerated(report=report).SerializeToString()
    )


def delivered(seq: int) -> LogEntry:
    d = pb.Delivery(
        channel="webhook", target="https://a.test/", status=pb.DELIVERY_STATUS_DELIVERED, attempts=2
    )
    return entry(
        seq,
        "delivery",
        events.DELIVERED,
        pb.ReportDelivered(report_id=REPORT_ID, delivery=d).SerializeToString(),
    )


async def test_a_delivery_end_before_its_report_is_kept_and_replays_change_nothing(
    hosts: ReportsHosts,
) -> None:
    host = await hosts.start(reports_scheduler_enabled=False, reports_dispatcher_enabled=False)
    pool = pool_of(host)
    projection = ReportsProjection()
    for batch in ([delivered(2)], [generated()], [generated(), delivered(2)]):
        async with pool.acquire() as conn, conn.transaction():
            await projection.apply(conn, batch)
    report = await ReportBook(pool).report("acme", REPORT_ID)
    assert report is not None
    statuses = {(d.channel, d.status, d.attempts) for d in report.summary.deliveries}
    assert statuses == {
        ("email", pb.DELIVERY_STATUS_PENDING, 0),
        ("webhook", pb.DELIVERY_STATUS_DELIVERED, 2),
    }
    assert await ReportBook(pool).report("globex", REPORT_ID) is None
