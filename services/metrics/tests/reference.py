"""Obviously-correct reference implementations of spec/metrics.md over plain event lists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


@dataclass(frozen=True)
class Ev:
    """A product event as the reference sees it."""

    event_id: str
    event: str
    user_id: str
    org_id: str
    timestamp_us: int
    properties: str = "{}"

    @property
    def day(self) -> date:
        return datetime.fromtimestamp(self.timestamp_us / 1e6, tz=UTC).date()


def dedup(events: list[Ev]) -> list[Ev]:
    """The first event of each id stands."""
    seen: set[str] = set()
    out = []
    for e in events:
        if e.event_id not in seen:
            seen.add(e.event_id)
            out.append(e)
    return out


def active_users(events: list[Ev], first: date, last: date) -> list[tuple[str, int, int, int, int]]:
    """(date, DAU, WAU, MAU, MAO) per day, by brute force."""
    events = dedup(events)
    rows = []
    d = first
    while d <= last:

        def users(window: int, day: date = d) -> int:
            lo = day - timedelta(days=window - 1)
            return len({e.user_id for e in events if e.user_id and lo <= e.day <= day})

        lo30 = d - timedelta(days=29)
        mao = len(
            {
                e.org_id
                for e in events
                if e.event == "workflow.run"
                and e.org_id
                and json.loads(e.properties).get("status") == "success"
                and lo30 <= e.day <= d
            }
        )
        rows.append((d.isoformat(), users(1), users(7), users(30), mao))
        d += timedelta(days=1)
    return rows
