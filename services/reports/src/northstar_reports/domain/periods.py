"""When a schedule fires and which period each fire covers. Pure: no I/O, no clock.

Fire times. A schedule's five-field cron is read in its IANA time zone by `cronsim`, which
follows Debian cron across daylight-saving changes for expressions with a fixed minute and
hour (the usual `0 9 * * *`):

- 09:00 local stays 09:00 local on both sides of a change (the UTC instant moves);
- a local time that does not exist (the spring gap, e.g. 02:30 in Europe/Paris on the last
  Sunday of March) fires at the first valid instant after it (03:00 local);
- a local time that happens twice (the autumn's repeated hour) fires once, at its first
  occurrence (the summer-time one).

Every instant answered here is an aware UTC datetime, whatever the zone.

Periods. A fire covers the period before it, in the schedule's zone: DAY is the local
calendar day before the fire's local date; WEEK is the ISO week (Monday to Sunday) before
the fire's local week. A period has ended once its last local day is over in its zone.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TypeAlias

from cronsim import CronSim, CronSimError

from northstar.reports.v1 import reports_pb2 as pb

DAY = pb.PERIOD_UNIT_DAY
WEEK = pb.PERIOD_UNIT_WEEK
PeriodUnit: TypeAlias = pb.PeriodUnit.ValueType


class InvalidCron(ValueError):
    """The expression is not a five-field cron expression cronsim accepts."""


@functools.cache
def available_zones() -> frozenset[str]:
    """Every IANA zone name known (the `tzdata` package provides them everywhere)."""
    return frozenset(zoneinfo.available_timezones())


def zone(name: str) -> tzinfo:
    """The zone of a schedule: its IANA name, or UTC when empty."""
    return UTC if name in ("", "UTC") else zoneinfo.ZoneInfo(name)


def check_cron(expr: str) -> None:
    """Raise InvalidCron unless `expr` is five fields that cronsim parses."""
    if len(expr.split()) != 5:
        raise InvalidCron("five fields: minute hour day-of-month month day-of-week")
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, LookupError, TypeError) as e:
        raise InvalidCron(str(e) or "not a cron expression") from e


def _local_minute(at: datetime, tz: tzinfo) -> datetime:
    return at.astimezone(tz).replace(second=0, microsecond=0)


def fires_after(expr: str, time_zone: str, after: datetime) -> Iterator[datetime]:
    """The fire times strictly after `after`, oldest first (UTC; may end after 50 years)."""
    tz = zone(time_zone)
    last = after
    start = _local_minute(after, tz)
    for fire in CronSim(expr, start):
        at = fire.astimezone(UTC)
        if at > last:  # a fixed-up gap time may repeat the instant just answered
            last = at
            yield at


def fires_until(expr: str, time_zone: str, until: datetime) -> Iterator[datetime]:
    """The fire times at or before `until`, newest first (UTC)."""
    tz = zone(time_zone)
    # Reverse iteration starts below its start: one second past `until` includes it.
    start = _local_minute(until, tz) + timedelta(seconds=1)
    previous: datetime | None = None
    for fire in CronSim(expr, start, reverse=True):
        at = fire.astimezone(UTC)
        if at > until or (previous is not None and at >= previous):
            continue
        previous = at
        yield at


def next_fire(expr: str, time_zone: str, after: datetime) -> datetime | None:
    """The first fire strictly after `after`; None when there is none within 50 years."""
    return next(fires_after(expr, time_zone, after), None)


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """The local calendar days a report covers: `start` to `end` inclusive, in a zone."""

    start: date
    end: date
    unit: PeriodUnit
    time_zone: str

    def to_proto(self) -> pb.Period:
        """The Period message."""
        return pb.Period(
            unit=self.unit,
            start_date=self.start.isoformat(),
            end_date=self.end.isoformat(),
            time_zone=self.time_zone,
        )

    def first_instant(self) -> datetime:
        """The UTC instant its first local day begins."""
        return local_midnight(self.start, zone(self.time_zone))

    def has_ended(self, now: datetime) -> bool:
        """True once its last local day is over in its zone."""
        return now.astimezone(zone(self.time_zone)).date() > self.end

    def previous(self) -> Period:
        """The period just before it."""
        return period_containing(self.start - timedelta(days=1), self.unit, self.time_zone)


def period_from_proto(p: pb.Period) -> Period:
    """The Period a message names (dates already validated)."""
    return Period(
        date.fromisoformat(p.start_date), date.fromisoformat(p.end_date), p.unit, p.time_zone
    )


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The UTC instant the local day `day` begins in `tz`."""
    # fold=0: a repeated midnight is its first occurrence; a midnight inside a gap (rare,
    # e.g. America/Havana) takes the offset before the change, which is the gap's end.
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def period_containing(day: date, unit: PeriodUnit, time_zone: str) -> Period:
    """The period of `unit` that holds the local day `day`."""
    if unit == WEEK:
        monday = day - timedelta(days=day.weekday())
        return Period(monday, monday + timedelta(days=6), WEEK, time_zone)
    return Period(day, day, DAY, time_zone)


def period_of_fire(fire: datetime, unit: PeriodUnit, time_zone: str) -> Period:
    """The period a fire covers: the local day, or the ISO week, before the fire's own."""
    local_day = fire.astimezone(zone(time_zone)).date()
    return period_containing(local_day, unit, time_zone).previous()


def latest_ended(unit: PeriodUnit, time_zone: str, now: datetime) -> Period:
    """The most recent period of `unit` that has ended at `now`."""
    today = now.astimezone(zone(time_zone)).date()
    return period_containing(today, unit, time_zone).previous()


def due_periods(
    expr: str,
    time_zone: str,
    unit: PeriodUnit,
    *,
    after: datetime,
    until: datetime,
    limit: int,
) -> list[Period]:
    """The periods covered by the fires in (`after`, `until`], oldest first: at most the
    `limit` newest distinct ones (older missed periods are not caught up).

    Several fires covering one period (`0 9,17 * * *` daily) count once. The search jumps
    from one period to the one before instead of walking every fire, so a frequent cron
    costs no more than a daily one.
    """
    if limit <= 0:
        return []
    found: list[Period] = []
    cursor = until
    while len(found) < limit:
        fire = next(fires_until(expr, time_zone, cursor), None)
        if fire is None or fire <= after:
            break
        period = period_of_fire(fire, unit, time_zone)
        found.append(period)
        # Every fire on or after the first local day of the fire's own period covers this
        # same period: continue just before that day began.
        own = period_containing(fire.astimezone(zone(time_zone)).date(), unit, time_zone)
        cursor = own.first_instant() - timedelta(seconds=1)
    return sorted(found)
