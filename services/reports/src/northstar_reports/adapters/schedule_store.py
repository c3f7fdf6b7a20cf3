"""Report schedules in the log: one subject per schedule, folded and appended with
optimistic concurrency by the shared aggregate store."""

from __future__ import annotations

from northstar_reports.domain.events import (
    SCHEMA_VERSION,
    ScheduleEvent,
    ScheduleState,
    decode_schedule_event,
    encode_schedule_event,
    evolve,
    schedule_id_of,
)
from northstar_runtime.aggregates import AggregateStore
from northstar_runtime.codec import SCHEMA_HEADER, TYPE_HEADER, UnknownRecord
from northstar_runtime.log import LogClient


def decode_event(data: bytes, headers: dict[str, str] | None) -> ScheduleEvent:
    """A schedule event from a log message; UnknownRecord for another schema or type."""
    h = headers or {}
    if h.get(SCHEMA_HEADER, SCHEMA_VERSION) != SCHEMA_VERSION:
        raise UnknownRecord(f"report schedule event schema v{h.get(SCHEMA_HEADER)}")
    return decode_schedule_event(h.get(TYPE_HEADER, ""), data)


class ScheduleStore(AggregateStore[ScheduleEvent, ScheduleState]):
    """Loads a schedule by folding its subject; appends changes with OCC."""

    def __init__(self, log: LogClient) -> None:
        super().__init__(
            log,
            service="reports",
            aggregate="schedule",
            noun="schedule",
            exists_reason="SCHEDULE_EXISTS",
            schema_version=SCHEMA_VERSION,
            decode=decode_event,
            encode=encode_schedule_event,
            evolve=evolve,
        )

    async def schedule_ids(self, tenant: str) -> list[str]:
        """The ids of every schedule the tenant ever had, from the stream's subject list."""
        return sorted(schedule_id_of(k) for k in await self.keys(tenant))
