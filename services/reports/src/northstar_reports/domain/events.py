"""The reports service's domain events and the schedule aggregate's decisions.

Pure: no I/O. Events travel as the contract's messages (ReportScheduleCreated, ...,
ReportGenerated, ReportDelivered), the type in the type header. `decide_*` take a
schedule's folded state and a command's input and answer the event to append (or raise a
domain error); `evolve` folds an event into the state. A version is the log position of
the aggregate's last event (set by the store).

Subjects: a schedule is `domain.reports.<tenant>.schedule.<key>`, a report's generation
`...report.<report_id>`, its deliveries' ends `...delivery.<report_id>`. A schedule id
may hold dots, which separate subject tokens, so its key writes them as `~`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from northstar.reports.v1 import reports_pb2 as pb
from northstar_reports.domain.periods import Period
from northstar_reports.domain.schedules import validate
from northstar_runtime.codec import UnknownRecord
from northstar_runtime.errors import AlreadyExists, FailedPrecondition, NotFound

SCHEMA_VERSION = "1"
SCHEDULE_CREATED = "ReportScheduleCreated"
SCHEDULE_UPDATED = "ReportScheduleUpdated"
SCHEDULE_DELETED = "ReportScheduleDeleted"
SCHEDULE_EVENTS = (SCHEDULE_CREATED, SCHEDULE_UPDATED, SCHEDULE_DELETED)
GENERATED = "ReportGenerated"
DELIVERED = "ReportDelivered"


def schedule_key(schedule_id: str) -> str:
    """The subject token of a schedule id."""
    return schedule_id.replace(".", "~")


def schedule_id_of(key: str) -> str:
    """The schedule id of a subject token."""
    return key.replace("~", ".")


@dataclass(frozen=True, slots=True)
class ScheduleEvent:
    """One change of a schedule; `schedule` is the definition after it (None on delete)."""

    type: str
    schedule_id: str
    schedule: pb.Schedule | None

    @property
    def key(self) -> str:
        """The aggregate's subject token."""
        return schedule_key(self.schedule_id)


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """A schedule as folded from its events."""

    schedule: pb.Schedule
    version: int
    deleted: bool = False


def decide_create(state: ScheduleState | None, s: pb.Schedule) -> ScheduleEvent:
    """A new schedule; AlreadyExists when its id was ever used."""
    validate(s, prefix="schedule.")
    if state is not None:
        raise AlreadyExists(f"schedule {s.schedule_id!r} exists", reason="SCHEDULE_EXISTS")
    return ScheduleEvent(SCHEDULE_CREATED, s.schedule_id, s)


def decide_update(state: ScheduleState | None, s: pb.Schedule) -> ScheduleEvent:
    """A new definition of a live schedule."""
    validate(s, prefix="schedule.")
    live(state, s.schedule_id)
    return ScheduleEvent(SCHEDULE_UPDATED, s.schedule_id, s)


def decide_delete(state: ScheduleState | None, schedule_id: str) -> ScheduleEvent:
    """The end of a live schedule."""
    live(state, schedule_id)
    return ScheduleEvent(SCHEDULE_DELETED, schedule_id, None)


def live(state: ScheduleState | None, schedule_id: str) -> ScheduleState:
    """The state of a schedule that exists and is not deleted; NotFound otherwise."""
    if state is None:
        raise NotFound(
            f"schedule {schedule_id!r} does not exist",
            reason="SCHEDULE_NOT_FOUND",
            resource_type="schedule",
            resource_name=schedule_id,
        )
    if state.deleted:
        raise FailedPrecondition(f"schedule {schedule_id!r} was deleted", reason="SCHEDULE_DELETED")
    return state


def evolve(state: ScheduleState | None, event: ScheduleEvent, version: int) -> ScheduleState | None:
    """Fold one event into the state."""
    if event.type in (SCHEDULE_CREATED, SCHEDULE_UPDATED) and event.schedule is not None:
        return ScheduleState(event.schedule, version)
    if event.type == SCHEDULE_DELETED and state is not None:
        return ScheduleState(state.schedule, version, deleted=True)
    return state


def encode_schedule_event(event: ScheduleEvent) -> bytes:
    """The event's message bytes."""
    if event.type == SCHEDULE_DELETED:
        return pb.ReportScheduleDeleted(schedule_id=event.schedule_id).SerializeToString()
    message = (
        pb.ReportScheduleCreated if event.type == SCHEDULE_CREATED else pb.ReportScheduleUpdated
    )
    return message(schedule=event.schedule).SerializeToString()


def decode_schedule_event(type_: str, data: bytes) -> ScheduleEvent:
    """The event a message of `type_` holds; UnknownRecord for another type or bad bytes."""
    try:
        if type_ == SCHEDULE_DELETED:
            deleted = pb.ReportScheduleDeleted.FromString(data)
            return ScheduleEvent(type_, deleted.schedule_id, None)
        if type_ == SCHEDULE_CREATED:
            created = pb.ReportScheduleCreated.FromString(data)
            return ScheduleEvent(type_, created.schedule.schedule_id, created.schedule)
        if type_ == SCHEDULE_UPDATED:
            updated = pb.ReportScheduleUpdated.FromString(data)
            return ScheduleEvent(type_, updated.schedule.schedule_id, updated.schedule)
    except DecodeError as e:
        raise UnknownRecord(f"undecodable {type_}: {e}") from e
    raise UnknownRecord(f"not a schedule event: {type_!r}")


def report_id(tenant: str, schedule_id: str, period: Period) -> str:
    """The id of a scheduled report: derived from its tenant, schedule and period, so every
    replica and every retry after a crash names the same report (32 hex digits)."""
    key = "\x1f".join(
        (tenant, schedule_id, str(int(period.unit)), period.start.isoformat(), period.time_zone)
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def delivery_id(report: str, channel: str, target: str) -> str:
    """The id of a report's delivery to one target (the webhooks' Idempotency-Key)."""
    return hashlib.sha256(f"{report}\x1f{channel}\x1f{target}".encode()).hexdigest()[:32]
