"""The event as the metric definitions see it, and the order rule of spec/events.md."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from northstar_metrics.domain.time import day_of


@dataclass(frozen=True, slots=True)
class EventRow:
    """One accepted, deduplicated product event."""

    event_id: str
    event: str
    user_id: str
    org_id: str
    ts_us: int
    properties: dict[str, Any]
    received_at_us: int = 0
    sent_at_us: int = 0

    @property
    def day(self) -> date:
        """The UTC day of the event's timestamp."""
        return day_of(self.ts_us)

    @property
    def order_key(self) -> tuple[int, str]:
        """ "Earliest" and "latest" order: timestamp, then event_id (plain string order)."""
        return (self.ts_us, self.event_id)


def integer_property(row: EventRow, name: str) -> int | None:
    """A property that must be a JSON integer (money, counts); None when it is not one."""
    value = row.properties.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def numeric_property(row: EventRow, name: str) -> float | None:
    """A property read as a number (int or float, not bool); None otherwise."""
    value = row.properties.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
