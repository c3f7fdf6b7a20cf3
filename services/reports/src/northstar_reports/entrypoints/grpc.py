"""The ReportsService servicer: proto in, command or query, proto out."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import grpc
import orjson

from northstar.reports.v1 import reports_pb2 as pb
from northstar.reports.v1 import reports_pb2_grpc
from northstar_reports.adapters.report_store import ReportBook
from northstar_reports.adapters.schedule_store import ScheduleStore
from northstar_reports.application.generation import ReportGenerator
from northstar_reports.domain import events as dom
from northstar_reports.domain.periods import latest_ended, next_fire, period_containing
from northstar_reports.domain.render import render
from northstar_reports.domain.schedules import SCHEDULE_ID, unit_of, validate
from northstar_runtime.auth import Scope
from northstar_runtime.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from northstar_runtime.grpc_server import check_deadline, current_principal

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ReportsService"].full_name
_ADMIN = {"CreateSchedule", "UpdateSchedule", "DeleteSchedule", "GenerateReport"}
SCOPES = {
    f"/{SERVICE_NAME}/{m.name}": Scope.ADMIN if m.name in _ADMIN else Scope.READ
    for m in pb.DESCRIPTOR.services_by_name["ReportsService"].methods
}
_REPORT_ID = re.compile(r"^[0-9a-f]{32}$")
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# GenerateReport waits at most this long (and never past its deadline) for the projection
# to store the new report, so a GetReport right after it finds the report.
READABLE_WAIT_S = 5.0


def _checked_day(value: str, field: str) -> date | None:
    """The day `value` names (`YYYY-MM-DD`), None when empty; INVALID_ARGUMENT otherwise."""
    if not value:
        return None
    if _DAY.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidArgument(f"{field}: not a date", violations=[FieldViolation(field, "YYYY-MM-DD")])


def _token(after: tuple[date, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([after[0].isoformat(), after[1]])).decode()


def _untoken(token: str) -> tuple[date, str] | None:
    if not token:
        return None
    try:
        start, report_id = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(report_id, str) and _REPORT_ID.match(report_id):
            return date.fromisoformat(start), report_id
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        pass
    raise InvalidArgument(
        "page_token: not a token of this list",
        violations=[FieldViolation("page_token", "not a token of this list")],
    )


class ReportsServicer(reports_pb2_grpc.ReportsServiceServicer):
    """Schedule commands append domain events with OCC; reports are read from read models."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        book: ReportBook,
        generator: ReportGenerator,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._book = book
        self._generator = generator
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _state(self, tenant: str, schedule: dom.ScheduleState) -> pb.ScheduleState:
        s = schedule.schedule
        out = pb.ScheduleState(schedule=s, version=schedule.version)
        # A paused schedule does not fire: no next run until it is resumed.
        at = None if s.paused else next_fire(s.cron, s.time_zone, self._now())
        if at is not None:
            out.next_run.FromDatetime(at)
        last = await self._book.last_period(tenant, s.schedule_id)
        if last is not None:
            out.last_period.CopyFrom(last)
        return out

    async def _load(self, tenant: str, schedule_id: str) -> dom.ScheduleState | None:
        if not SCHEDULE_ID.match(schedule_id):
            raise InvalidArgument(
                "schedule_id: not a schedule id",
                violations=[FieldViolation("schedule_id", "must match [a-z0-9][a-z0-9_.-]{0,63}")],
            )
        state, _ = await self._store.load(tenant, dom.schedule_key(schedule_id))
        return state

    async def CreateSchedule(  # noqa: N802 - gRPC method name
        self, request: pb.CreateScheduleRequest, context: Context
    ) -> pb.CreateScheduleResponse:
        """Create a schedule."""
        tenant = _tenant()
        validate(request.schedule, prefix="schedule.")
        state, _ = await self._store.load(tenant, dom.schedule_key(request.schedule.schedule_id))
        event = dom.decide_create(state, request.schedule)
        version = await self._store.append(tenant, event, 0)
        return pb.CreateScheduleResponse(
            schedule=await self._state(tenant, dom.ScheduleState(request.schedule, version))
        )

    async def UpdateSchedule(  # noqa: N802 - gRPC method name
        self, request: pb.UpdateScheduleRequest, context: Context
    ) -> pb.UpdateScheduleResponse:
        """Replace a schedule's definition at the stated version."""
        tenant = _tenant()
        validate(request.schedule, prefix="schedule.")
        state = await self._load(tenant, request.schedule.schedule_id)
        event = dom.decide_update(state, request.schedule)
        version = await self._store.append(tenant, event, request.expected_version)
        return pb.UpdateScheduleResponse(
            schedule=await self._state(tenant, dom.ScheduleState(request.schedule, version))
        )

    async def DeleteSchedule(  # noqa: N802 - gRPC method name
        self, request: pb.DeleteScheduleRequest, context: Context
    ) -> pb.DeleteScheduleResponse:
        """Delete a schedule at the stated version (its reports stay)."""
        tenant = _tenant()
        state = await self._load(tenant, request.schedule_id)
        event = dom.decide_delete(state, request.schedule_id)
        version = await self._store.append(tenant, event, request.expected_version)
        return pb.DeleteScheduleResponse(version=version)

    async def _live(self, tenant: str, schedule_id: str) -> dom.ScheduleState:
        state = await self._load(tenant, schedule_id)
        if state is None or state.deleted:
            raise NotFound(
                f"schedule {schedule_id!r} does not exist",
                reason="SCHEDULE_NOT_FOUND",
                resource_type="schedule",
                resource_name=schedule_id,
            )
        return state

    async def GetSchedule(  # noqa: N802 - gRPC method name
        self, request: pb.GetScheduleRequest, context: Context
    ) -> pb.GetScheduleResponse:
        """One live schedule with its next run and last period."""
        tenant = _tenant()
        state = await self._live(tenant, request.schedule_id)
        return pb.GetScheduleResponse(schedule=await self._state(tenant, state))

    async def ListSchedules(  # noqa: N802 - gRPC method name
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        """The tenant's live schedules, by id."""
        tenant = _tenant()
        out = pb.ListSchedulesResponse()
        for schedule_id in await self._store.schedule_ids(tenant):
            state, _ = await self._store.load(tenant, dom.schedule_key(schedule_id))
            if state is not None and not state.deleted:
                out.schedules.append(await self._state(tenant, state))
        return out

    async def GenerateReport(  # noqa: N802 - gRPC method name
        self, request: pb.GenerateReportRequest, context: Context
    ) -> pb.GenerateReportResponse:
        """Generate, store and (when asked) deliver a report of an ended period now."""
        tenant = _tenant()
        source = request.WhichOneof("source")
        if source == "definition":
            validate(request.definition, prefix="definition.")
            schedule = request.definition
        elif source == "schedule_id":
            schedule = (await self._live(tenant, request.schedule_id)).schedule
        else:
            raise InvalidArgument(
                "a schedule_id or a definition is required",
                violations=[FieldViolation("schedule_id", "a schedule_id or a definition")],
            )
        unit = unit_of(schedule)
        now = self._now()
        day = _checked_day(request.period_date, "period_date")
        if day is None:
            period = latest_ended(unit, schedule.time_zone, now)
        else:
            period = period_containing(day, unit, schedule.time_zone)
            if not period.has_ended(now):
                raise FailedPrecondition(
                    f"the period {period.start}..{period.end} has not ended",
                    reason="PERIOD_NOT_ENDED",
                )
        if source == "definition":
            # An inline definition names no stored schedule.
            schedule = pb.Schedule()
            schedule.CopyFrom(request.definition)
            schedule.schedule_id = ""
        report = await self._generator.on_demand(
            tenant, schedule, period, deliver=request.deliver, deadline_s=check_deadline()
        )
        await self._readable(tenant, report.summary.report_id)
        return pb.GenerateReportResponse(report=report)

    async def _readable(self, tenant: str, report_id: str) -> None:
        """Wait until the projection has stored the report (read your writes), for at most
        READABLE_WAIT_S and within the request's deadline; past that the report is still
        recorded and appears shortly, so the call answers anyway."""
        give_up = time.monotonic() + min(READABLE_WAIT_S, max(check_deadline() - 0.1, 0.0))
        delay = 0.005
        while await self._book.report(tenant, report_id) is None:
            if time.monotonic() >= give_up:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def GetReport(  # noqa: N802 - gRPC method name
        self, request: pb.GetReportRequest, context: Context
    ) -> pb.GetReportResponse:
        """One stored report of the tenant, rendered."""
        if not _REPORT_ID.match(request.report_id):
            raise InvalidArgument(
                "report_id: not a report id",
                violations=[FieldViolation("report_id", "32 lower-case hex digits")],
            )
        if request.format not in pb.Format.values():
            raise InvalidArgument(
                "format: unknown", violations=[FieldViolation("format", "json, markdown or html")]
            )
        report = await self._book.report(_tenant(), request.report_id)
        if report is None:
            raise NotFound(
                f"report {request.report_id!r} does not exist",
                reason="REPORT_NOT_FOUND",
                resource_type="report",
                resource_name=request.report_id,
            )
        rendering = render(report, request.format)
        return pb.GetReportResponse(
            report=report, content=rendering.content, content_type=rendering.content_type
        )

    async def ListReports(  # noqa: N802 - gRPC method name
        self, request: pb.ListReportsRequest, context: Context
    ) -> pb.ListReportsResponse:
        """A page of the tenant's report summaries, newest period first."""
        violations = []
        if request.schedule_id and not SCHEDULE_ID.match(request.schedule_id):
            violations.append(FieldViolation("schedule_id", "not a schedule id"))
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            violations.append(FieldViolation("page_size", f"0 to {MAX_PAGE_SIZE}"))
        if violations:
            raise InvalidArgument("invalid list request", violations=violations)
        from_date = _checked_day(request.from_date, "from_date")
        to_date = _checked_day(request.to_date, "to_date")
        after = _untoken(request.page_token)
        size = request.page_size or DEFAULT_PAGE_SIZE
        found = await self._book.summaries(
            _tenant(),
            schedule_id=request.schedule_id,
            from_date=from_date,
            to_date=to_date,
            after=after,
            limit=size + 1,
        )
        page = found[:size]
        token = ""
        if len(found) > size:
            last = page[-1]
            token = _token((date.fromisoformat(last.period.start_date), last.report_id))
        return pb.ListReportsResponse(reports=page, next_page_token=token)


def _tenant() -> str:
    return current_principal().tenant
