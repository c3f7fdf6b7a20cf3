"""What happened to alerts and experiments during a report's period.

Pure: histories go in, the period's activity comes out. Readings (docs/spec-readings.md,
"Reports: sections"):

- Alerts and experiments change at instants. A period of local dates [first, last] in a
  time zone is the half-open window [first 00:00 local, last + 1 day 00:00 local); a
  midnight that does not exist locally (a daylight-saving jump at 00:00) is the first
  instant of the day, one that happens twice is its first occurrence.
- "At the window's end" is after every change strictly before the end: a change exactly at
  the end belongs to the next period, for the entries and for what is firing (or running)
  at the end alike, so one period's end state is the next one's start state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from northstar_reports.domain.periods import local_midnight


@dataclass(frozen=True, slots=True)
class Window:
    """Instants [start_us, end_us), microseconds since the epoch."""

    start_us: int
    end_us: int

    def holds(self, at_us: int) -> bool:
        """True when `at_us` is inside the window."""
        return self.start_us <= at_us < self.end_us


def local_midnight_us(day: dt.date, zone: ZoneInfo) -> int:
    """The first instant of `day` in `zone` (periods.local_midnight), in epoch microseconds."""
    since_epoch = local_midnight(day, zone) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return since_epoch // dt.timedelta(microseconds=1)


def period_window(first: dt.date, last: dt.date, zone: ZoneInfo) -> Window:
    """The instants of local dates [first, last] in `zone`."""
    return Window(
        local_midnight_us(first, zone), local_midnight_us(last + dt.timedelta(days=1), zone)
    )


# --- alerts ---------------------------------------------------------------------------

FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """One change of status of one alert (a rule and a severity)."""

    rule_id: str
    severity: int
    to_status: str  # FIRING, RESOLVED, or any other status name
    at_us: int
    ref: int = 0  # the caller's handle on the entry it came from


def transitions_in(transitions: Iterable[AlertTransition], window: Window) -> list[AlertTransition]:
    """The transitions to FIRING or RESOLVED inside the window, oldest first (ties by rule
    id, then severity, then the given order)."""
    inside = [t for t in transitions if t.to_status in (FIRING, RESOLVED) and window.holds(t.at_us)]
    return sorted(inside, key=lambda t: (t.at_us, t.rule_id, t.severity))


def firing_at(transitions: Iterable[AlertTransition], end_us: int) -> set[tuple[str, int]]:
    """The (rule, severity) alerts whose latest transition before `end_us` is to FIRING.

    Transitions of one alert at the same instant keep their given (log) order.
    """
    latest: dict[tuple[str, int], AlertTransition] = {}
    for t in transitions:
        if t.at_us >= end_us:
            continue
        key = (t.rule_id, t.severity)
        kept = latest.get(key)
        if kept is None or t.at_us >= kept.at_us:
            latest[key] = t
    return {key for key, t in latest.items() if t.to_status == FIRING}


# --- experiments ----------------------------------------------------------------------

DRAFT = "draft"
RUNNING = "running"
STOPPED = "stopped"
CONCLUDED = "concluded"
ARCHIVED = "archived"

# The status each experiment event leads to; an edit keeps the status it found.
_STATUS_AFTER = {
    "ExperimentCreated": DRAFT,
    "ExperimentStarted": RUNNING,
    "ExperimentStopped": STOPPED,
    "ExperimentConcluded": CONCLUDED,
    "ExperimentArchived": ARCHIVED,
}


@dataclass(frozen=True, slots=True)
class ExperimentChange:
    """One entry of an experiment's history: its event type and when."""

    type: str
    at_us: int


def status_at(history: Sequence[ExperimentChange], end_us: int) -> str | None:
    """The experiment's status after its changes before `end_us`; None before it existed."""
    status: str | None = None
    for change in history:  # oldest first (log order), as the service answers
        if change.at_us < end_us:
            status = _STATUS_AFTER.get(change.type, status)
    return status


def concluded_in(history: Sequence[ExperimentChange], window: Window) -> bool:
    """True when the experiment was concluded inside the window."""
    return any(c.type == "ExperimentConcluded" and window.holds(c.at_us) for c in history)
