"""Queries on the reports read models: live schedules, stored reports and their deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from northstar.reports.v1 import reports_pb2 as pb


@dataclass(frozen=True, slots=True)
class ActiveSchedule:
    """A live, unpaused schedule and when its catch-up starts (epoch seconds)."""

    tenant: str
    schedule: pb.Schedule
    active_since: float


class ReportBook:
    """Reads the projected schedules and reports."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def active_schedules(self) -> list[ActiveSchedule]:
        """Every tenant's live, unpaused schedule."""
        rows = await self._pool.fetch(
            "SELECT tenant, schedule, active_since FROM report_schedules"
            " WHERE NOT deleted AND NOT paused ORDER BY tenant, schedule_id"
        )
        return [
            ActiveSchedule(r["tenant"], pb.Schedule.FromString(r["schedule"]), r["active_since"])
            for r in rows
        ]

    async def last_period(self, tenant: str, schedule_id: str) -> pb.Period | None:
        """The latest period the schedule generated a report for (on-demand ones aside)."""
        payload = await self._pool.fetchval(
            "SELECT report FROM reports WHERE tenant = $1 AND schedule_id = $2"
            " AND NOT on_demand ORDER BY period_start DESC, report_id DESC LIMIT 1",
            tenant,
            schedule_id,
        )
        return None if payload is None else pb.Report.FromString(payload).summary.period

    async def report(self, tenant: str, report_id: str) -> pb.Report | None:
        """One stored report with its deliveries; None when the tenant has none by that id."""
        payload = await self._pool.fetchval(
            "SELECT report FROM reports WHERE tenant = $1 AND report_id = $2", tenant, report_id
        )
        if payload is None:
            return None
        report = pb.Report.FromString(payload)
        report.summary.deliveries.extend((await self._deliveries(tenant, [report_id]))[report_id])
        return report

    async def summaries(
        self,
        tenant: str,
        *,
        schedule_id: str,
        from_date: date | None,
        to_date: date | None,
        after: tuple[date, str] | None,
        limit: int,
    ) -> list[pb.ReportSummary]:
        """Report summaries, newest period first (then by id, descending), after the
        keyset `after` (the last (period start, id) of the previous page)."""
        rows = await self._pool.fetch(
            "SELECT report_id, report FROM reports WHERE tenant = $1"
            " AND ($2 = '' OR schedule_id = $2)"
            " AND ($3::date IS NULL OR period_start >= $3)"
            " AND ($4::date IS NULL OR period_start <= $4)"
            " AND ($5::date IS NULL OR (period_start, report_id) < ($5, $6))"
            " ORDER BY period_start DESC, report_id DESC LIMIT $7",
            tenant,
            schedule_id,
            from_date,
            to_date,
            None if after is None else after[0],
            "" if after is None else after[1],
            limit,
        )
        deliveries = await self._deliveries(tenant, [r["report_id"] for r in rows])
        out = []
        for r in rows:
            summary = pb.Report.FromString(r["report"]).summary
            summary.deliveries.extend(deliveries[r["report_id"]])
            out.append(summary)
        return out

    async def _deliveries(self, tenant: str, report_ids: list[str]) -> dict[str, list[pb.Delivery]]:
        rows = await self._pool.fetch(
            "SELECT report_id, delivery FROM report_deliveries"
            " WHERE tenant = $1 AND report_id = ANY($2::text[])"
            " ORDER BY report_id, channel, target",
            tenant,
            report_ids,
        )
        out: dict[str, list[pb.Delivery]] = {r: [] for r in report_ids}
        for r in rows:
            out[r["report_id"]].append(pb.Delivery.FromString(r["delivery"]))
        return out
