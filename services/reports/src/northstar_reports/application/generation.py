"""Building and recording one report: sections gathered, summary set, recorded once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from northstar.reports.v1 import reports_pb2 as pb
from northstar_reports.adapters.generation_store import GenerationStore, Run
from northstar_reports.application.ports import SectionSource
from northstar_reports.domain.periods import Period
from northstar_reports.domain.schedules import sections_of
from northstar_runtime.errors import DeadlineExceeded

# A test's fault point, called with the step just done: "gathered" (sections in hand,
# nothing recorded), "committed" (run done, event queued, deliveries created; the event not
# yet in the log), "recorded" (the event appended too). A fault that raises a BaseException
# other than CancelledError stands for the process dying there: nothing after it runs.
Fault = Callable[[str], Awaitable[None]]
CHANNELS = (("email", "emails"), ("slack", "slack"), ("webhook", "webhooks"))


def pending_deliveries(s: pb.Schedule) -> list[pb.Delivery]:
    """One pending delivery per channel target of the schedule."""
    return [
        pb.Delivery(channel=channel, target=target, status=pb.DELIVERY_STATUS_PENDING)
        for channel, field in CHANNELS
        for target in getattr(s.channels, field)
    ]


class ReportGenerator:
    """Gathers a report's sections and records it with its deliveries."""

    def __init__(
        self,
        source: SectionSource,
        store: GenerationStore,
        *,
        clock: Callable[[], float],
        deadline_s: float,
        fault: Fault | None = None,
    ) -> None:
        self._source = source
        self._store = store
        self._clock = clock
        self._deadline_s = deadline_s
        self._fault = fault

    async def build(
        self,
        tenant: str,
        schedule: pb.Schedule,
        period: Period,
        *,
        report_id: str,
        on_demand: bool,
        deliver: bool,
        deadline_s: float | None = None,
    ) -> pb.Report:
        """The report of `schedule` over `period`, not yet recorded; the sections are
        gathered within `deadline_s` (at most the generation deadline)."""
        sections = sections_of(schedule)
        limit = self._deadline_s if deadline_s is None else min(deadline_s, self._deadline_s)
        try:
            report = await asyncio.wait_for(
                self._source.gather(
                    tenant=tenant, schedule=schedule, period=period.to_proto(), sections=sections
                ),
                timeout=limit,
            )
        except TimeoutError as e:
            raise DeadlineExceeded(
                "the sections were not gathered within the deadline", reason="DEADLINE_EXCEEDED"
            ) from e
        del report.sections[:]
        report.sections.extend(sections)
        summary = report.summary
        summary.Clear()
        summary.report_id = report_id
        summary.schedule_id = schedule.schedule_id  # empty for an inline definition
        summary.title = schedule.name
        summary.kind = schedule.kind
        summary.period.CopyFrom(period.to_proto())
        summary.generated_at.FromDatetime(datetime.fromtimestamp(self._clock(), UTC))
        summary.on_demand = on_demand
        if deliver:
            summary.deliveries.extend(pending_deliveries(schedule))
        return report

    async def _step(self, point: str) -> None:
        if self._fault is not None:
            await self._fault(point)

    async def scheduled(self, run: Run) -> bool:
        """Generate and record a claimed run; False when its lease was lost meanwhile."""
        try:
            report = await self.build(
                run.tenant,
                run.schedule,
                run.period,
                report_id=run.report_id,
                on_demand=False,
                deliver=True,
            )
        except (Exception, asyncio.CancelledError):
            # A failed gathering (or a stop) gives the run back at once; a crash leaves
            # it to its lease.
            await asyncio.shield(self._store.release(run))
            raise
        await self._step("gathered")
        ids = await self._store.record(run.tenant, report, run=run)
        if ids is None:
            return False
        await self._step("committed")
        await self._store.publish(ids)
        await self._step("recorded")
        return True

    async def on_demand(
        self,
        tenant: str,
        schedule: pb.Schedule,
        period: Period,
        *,
        deliver: bool,
        deadline_s: float | None = None,
    ) -> pb.Report:
        """Generate and record a new on-demand report (a random id each call)."""
        report = await self.build(
            tenant,
            schedule,
            period,
            report_id=uuid.uuid4().hex,
            on_demand=True,
            deliver=deliver,
            deadline_s=deadline_s,
        )
        ids = await self._store.record(tenant, report, run=None)
        await self._store.publish(ids or [])
        return report
