"""The reports read models, projected from the DOMAIN stream's `domain.reports.>` subjects.

Schedules fold into `report_schedules`, each ReportGenerated stores its whole report in
`reports` (with its deliveries, pending, in `report_deliveries`), each ReportDelivered
settles one delivery. Every write is idempotent (a redelivered entry changes nothing), and
a ReportDelivered projected before its ReportGenerated (they are on different subjects)
is kept, not overwritten by the pending copy. A rebuild replays the log into the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date
from typing import TypeVar

from google.protobuf.message import DecodeError

from northstar.reports.v1 import reports_pb2 as pb
from northstar_reports.adapters.schedule_store import decode_event
from northstar_reports.domain import events
from northstar_runtime.codec import TYPE_HEADER, UnknownRecord
from northstar_runtime.db import Connection
from northstar_runtime.projector import LogEntry


def _tenant_and_aggregate(subject: str) -> tuple[str, str]:
    # [namespace.]domain.reports.<tenant>.<aggregate>.<key>
    parts = subject.split(".")
    return parts[-3], parts[-2]


class ReportsProjection:
    """Folds schedule, generation and delivery events into the read models."""

    name = "reports"

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Apply each entry in the caller's transaction."""
        for entry in entries:
            kind = entry.headers.get(TYPE_HEADER, "")
            tenant, aggregate = _tenant_and_aggregate(entry.subject)
            if kind in events.SCHEDULE_EVENTS and aggregate == "schedule":
                await self._schedule(conn, tenant, entry)
            elif kind == events.GENERATED and aggregate == "report":
                await self._generated(conn, tenant, _decode(pb.ReportGenerated, entry).report)
            elif kind == events.DELIVERED and aggregate == "delivery":
                delivered = _decode(pb.ReportDelivered, entry)
                await _settle(conn, tenant, delivered.report_id, delivered.delivery)

    async def _schedule(self, conn: Connection, tenant: str, entry: LogEntry) -> None:
        event = decode_event(entry.data, dict(entry.headers))
        at = entry.logged_at if entry.logged_at is not None else time.time()
        if event.type == events.SCHEDULE_DELETED:
            await conn.execute(
                "UPDATE report_schedules SET deleted = true, version = $3"
                " WHERE tenant = $1 AND schedule_id = $2 AND version < $3",
                tenant,
                event.schedule_id,
                entry.seq,
            )
            return
        assert event.schedule is not None
        # A resume (paused -> not paused) restarts the catch-up from now: the periods missed
        # while paused are not generated (the contract's Schedule.paused).
        await conn.execute(
            "INSERT INTO report_schedules"
            " (tenant, schedule_id, version, paused, schedule, active_since)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, schedule_id) DO UPDATE"
            " SET version = EXCLUDED.version, paused = EXCLUDED.paused,"
            " schedule = EXCLUDED.schedule,"
            " active_since = CASE WHEN report_schedules.paused AND NOT EXCLUDED.paused"
            "  THEN EXCLUDED.active_since ELSE report_schedules.active_since END"
            " WHERE report_schedules.version < EXCLUDED.version",
            tenant,
            event.schedule_id,
            entry.seq,
            event.schedule.paused,
            event.schedule.SerializeToString(),
            at,
        )

    async def _generated(self, conn: Connection, tenant: str, report: pb.Report) -> None:
        s = report.summary
        stored = pb.Report()
        stored.CopyFrom(report)
        del stored.summary.deliveries[:]
        await conn.execute(
            "INSERT INTO reports (tenant, report_id, schedule_id, on_demand, period_start,"
            " generated_at, report) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (tenant, report_id) DO NOTHING",
            tenant,
            s.report_id,
            s.schedule_id,
            s.on_demand,
            date.fromisoformat(s.period.start_date),
            s.generated_at.ToDatetime(tzinfo=UTC),
            stored.SerializeToString(),
        )
        await conn.executemany(
            "INSERT INTO report_deliveries (tenant, report_id, channel, target, delivery)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [
                (tenant, s.report_id, d.channel, d.target, d.SerializeToString())
                for d in s.deliveries
            ],
        )

    async def reset(self, conn: Connection) -> None:
        """Forget every read model (a replay refolds them)."""
        await conn.execute("TRUNCATE report_schedules, reports, report_deliveries")


async def _settle(conn: Connection, tenant: str, report_id: str, d: pb.Delivery) -> None:
    await conn.execute(
        "INSERT INTO report_deliveries (tenant, report_id, channel, target, delivery, settled)"
        " VALUES ($1, $2, $3, $4, $5, true) ON CONFLICT (tenant, report_id, channel, target)"
        " DO UPDATE SET delivery = EXCLUDED.delivery, settled = true",
        tenant,
        report_id,
        d.channel,
        d.target,
        d.SerializeToString(),
    )


M = TypeVar("M", pb.ReportGenerated, pb.ReportDelivered)


def _decode(message: type[M], entry: LogEntry) -> M:
    try:
        return message.FromString(entry.data)
    except DecodeError as e:
        raise UnknownRecord(f"undecodable {message.__name__}: {e}") from e
