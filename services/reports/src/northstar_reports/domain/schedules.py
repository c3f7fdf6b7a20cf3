"""Report schedules: what a valid one is, which sections and period it means, the defaults.

Pure: no I/O. A schedule is the contract's `Schedule` message (the proto is the value: it
is what the events carry and what the API answers). `violations` names every bad field;
`sections_of` and `unit_of` read the kind rules the contract states.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from northstar.reports.v1 import reports_pb2 as pb
from northstar_reports.domain.periods import DAY, WEEK, InvalidCron, available_zones, check_cron
from northstar_runtime.errors import FieldViolation, InvalidArgument

SCHEDULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
NAME_MAX = 200
TARGETS_MAX = 20  # per channel
FUNNEL_STEPS = (2, 10)
FUNNEL_WINDOW_MAX_S = 90 * 86_400
# Deliberately plain: one @, no spaces, a dotted domain. Whether the mailbox exists is for
# the SMTP server to say (a 5xx refusal fails that delivery).
_EMAIL = re.compile(r"^[^@\s<>,;]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")

DAILY_SECTIONS = (
    pb.SECTION_KEY_METRICS,
    pb.SECTION_ALIGNMENT,
    pb.SECTION_PRIORITY_ACTIONS,
    pb.SECTION_ALERTS,
    pb.SECTION_EXPERIMENTS,
    pb.SECTION_DATA_QUALITY,
)
WEEKLY_SECTIONS = (
    pb.SECTION_KEY_METRICS,
    pb.SECTION_ALIGNMENT,
    pb.SECTION_PRIORITY_ACTIONS,
    pb.SECTION_ALERTS,
    pb.SECTION_EXPERIMENTS,
    pb.SECTION_RETENTION,
    pb.SECTION_FUNNEL,
    pb.SECTION_DATA_QUALITY,
)
_KNOWN_SECTIONS = frozenset(pb.Section.values()) - {pb.SECTION_UNSPECIFIED}
_KINDS = frozenset({pb.REPORT_KIND_DAILY, pb.REPORT_KIND_WEEKLY, pb.REPORT_KIND_CUSTOM})
_UNITS = frozenset({pb.PERIOD_UNIT_UNSPECIFIED, DAY, WEEK})


def sections_of(s: pb.Schedule) -> list[pb.Section.ValueType]:
    """The sections a schedule's reports carry, in order."""
    if s.kind == pb.REPORT_KIND_DAILY:
        return list(DAILY_SECTIONS)
    if s.kind == pb.REPORT_KIND_WEEKLY:
        return list(WEEKLY_SECTIONS)
    return list(s.sections)


def unit_of(s: pb.Schedule) -> pb.PeriodUnit.ValueType:
    """The period a schedule's reports cover (a custom one without a unit: a day)."""
    if s.kind == pb.REPORT_KIND_WEEKLY:
        return WEEK
    if s.kind == pb.REPORT_KIND_CUSTOM and s.period_unit == WEEK:
        return WEEK
    return DAY


def _http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and len(url) <= 2048


def _targets(
    values: Iterable[str], field: str, ok: Callable[[str], object], what: str
) -> Iterable[FieldViolation]:
    seen: set[str] = set()
    items = list(values)
    if len(items) > TARGETS_MAX:
        yield FieldViolation(field, f"at most {TARGETS_MAX}")
    for i, value in enumerate(items):
        if not ok(value):
            yield FieldViolation(f"{field}[{i}]", what)
        elif value in seen:
            yield FieldViolation(f"{field}[{i}]", "listed twice")
        seen.add(value)


def violations(s: pb.Schedule) -> list[FieldViolation]:
    """Every rule the schedule breaks, each naming its field (empty: valid)."""
    out: list[FieldViolation] = []
    if not SCHEDULE_ID.match(s.schedule_id):
        out.append(FieldViolation("schedule_id", "must match [a-z0-9][a-z0-9_.-]{0,63}"))
    name = s.name.strip()
    if not name:
        out.append(FieldViolation("name", "required"))
    elif len(s.name) > NAME_MAX or any(ord(c) < 32 for c in s.name):
        out.append(FieldViolation("name", f"at most {NAME_MAX} printable characters"))
    try:
        check_cron(s.cron)
    except InvalidCron as e:
        out.append(FieldViolation("cron", f"not a five-field cron expression: {e}"))
    if s.time_zone and s.time_zone not in available_zones():
        out.append(FieldViolation("time_zone", "not an IANA time zone, e.g. Europe/Paris"))
    if s.kind not in _KINDS:
        out.append(FieldViolation("kind", "daily, weekly or custom"))
    if s.period_unit not in _UNITS:
        out.append(FieldViolation("period_unit", "day or week"))
    elif s.kind == pb.REPORT_KIND_DAILY and s.period_unit not in (
        pb.PERIOD_UNIT_UNSPECIFIED,
        DAY,
    ):
        out.append(FieldViolation("period_unit", "a daily report covers a day"))
    elif s.kind == pb.REPORT_KIND_WEEKLY and s.period_unit not in (
        pb.PERIOD_UNIT_UNSPECIFIED,
        WEEK,
    ):
        out.append(FieldViolation("period_unit", "a weekly report covers a week"))
    if s.kind in (pb.REPORT_KIND_DAILY, pb.REPORT_KIND_WEEKLY) and s.sections:
        out.append(FieldViolation("sections", "only a custom report lists its sections"))
    if s.kind == pb.REPORT_KIND_CUSTOM:
        if not s.sections:
            out.append(FieldViolation("sections", "a custom report needs at least one"))
        seen: set[int] = set()
        for i, section in enumerate(s.sections):
            if section not in _KNOWN_SECTIONS:
                out.append(FieldViolation(f"sections[{i}]", "not a section"))
            elif section in seen:
                out.append(FieldViolation(f"sections[{i}]", "listed twice"))
            seen.add(section)
    out.extend(_targets(s.channels.emails, "channels.emails", _EMAIL.match, "not an email"))
    out.extend(_targets(s.channels.slack, "channels.slack", _http_url, "not an http(s) URL"))
    out.extend(_targets(s.channels.webhooks, "channels.webhooks", _http_url, "not an http(s) URL"))
    low, high = FUNNEL_STEPS
    if s.funnel_steps and not low <= len(s.funnel_steps) <= high:
        out.append(FieldViolation("funnel_steps", f"{low} to {high} steps, or none"))
    for i, step in enumerate(s.funnel_steps):
        if not step.event:
            out.append(FieldViolation(f"funnel_steps[{i}].event", "required"))
    if s.HasField("funnel_window_seconds") and not (
        0 < s.funnel_window_seconds <= FUNNEL_WINDOW_MAX_S
    ):
        out.append(FieldViolation("funnel_window_seconds", "1 second to 90 days"))
    return out


def validate(s: pb.Schedule, *, prefix: str = "") -> None:
    """Raise InvalidArgument naming every bad field (with `prefix`, e.g. `schedule.`)."""
    found = violations(s)
    if found:
        named = [FieldViolation(prefix + v.field, v.description) for v in found]
        raise InvalidArgument(
            "invalid schedule: " + "; ".join(f"{v.field}: {v.description}" for v in named),
            violations=named,
        )


def default_schedules() -> list[pb.Schedule]:
    """The schedules every tenant starts with: the daily report at 09:00 UTC every day and
    the weekly report at 09:00 UTC on Mondays, stored only (no channels)."""
    return [
        pb.Schedule(
            schedule_id="daily",
            name="Daily report",
            kind=pb.REPORT_KIND_DAILY,
            cron="0 9 * * *",
            time_zone="UTC",
        ),
        pb.Schedule(
            schedule_id="weekly",
            name="Weekly report",
            kind=pb.REPORT_KIND_WEEKLY,
            cron="0 9 * * 1",
            time_zone="UTC",
        ),
    ]
