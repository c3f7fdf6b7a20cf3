"""Schedule validation, the kinds' sections and units, ids of reports and deliveries."""

from __future__ import annotations

from datetime import date

import pytest

from northstar.metrics.v1 import filters_pb2
from northstar.reports.v1 import reports_pb2 as pb
from northstar_reports.domain import events
from northstar_reports.domain.periods import DAY, WEEK, Period
from northstar_reports.domain.schedules import (
    DAILY_SECTIONS,
    WEEKLY_SECTIONS,
    default_schedules,
    sections_of,
    unit_of,
    violations,
)
from northstar_runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound


def schedule(**fields: object) -> pb.Schedule:
    base: dict[str, object] = {
        "schedule_id": "ops.daily-1",
        "name": "Ops daily",
        "kind": pb.REPORT_KIND_DAILY,
        "cron": "0 9 * * *",
        "time_zone": "Europe/Paris",
    }
    return pb.Schedule(**{**base, **fields})


def fields(s: pb.Schedule) -> list[str]:
    return [v.field for v in violations(s)]


def test_a_valid_schedule_has_no_violations() -> None:
    assert fields(schedule()) == []
    for s in default_schedules():
        assert fields(s) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schedule_id": ""}, "schedule_id"),
        ({"schedule_id": "Upper"}, "schedule_id"),
        ({"schedule_id": "-lead"}, "schedule_id"),
        ({"schedule_id": "a" * 65}, "schedule_id"),
        ({"name": "  "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"cron": "0 9 * *"}, "cron"),
        ({"cron": "0 9 * * * *"}, "cron"),
        ({"cron": "every day"}, "cron"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "../etc/passwd"}, "time_zone"),
        ({"kind": pb.REPORT_KIND_UNSPECIFIED}, "kind"),
        ({"period_unit": WEEK}, "period_unit"),
        ({"sections": [pb.SECTION_ALERTS]}, "sections"),
        ({"channels": pb.Channels(emails=["not-an-email"])}, "channels.emails[0]"),
        ({"channels": pb.Channels(emails=["a@b.io", "a@b.io"])}, "channels.emails[1]"),
        ({"channels": pb.Channels(slack=["ftp://hooks.slack.com/x"])}, "channels.slack[0]"),
        ({"channels": pb.Channels(webhooks=["https://"])}, "channels.webhooks[0]"),
        ({"funnel_steps": [filters_pb2.EventMatcher(event="signup")]}, "funnel_steps"),
        ({"funnel_window_seconds": 0}, "funnel_window_seconds"),
    ],
)
def test_each_rule_names_its_field(change: dict[str, object], field: str) -> None:
    assert fields(schedule(**change)) == [field]


def test_weekly_and_custom_rules() -> None:
    assert fields(schedule(kind=pb.REPORT_KIND_WEEKLY, period_unit=DAY)) == ["period_unit"]
    assert fields(schedule(kind=pb.REPORT_KIND_WEEKLY, period_unit=WEEK)) == []
    assert fields(schedule(kind=pb.REPORT_KIND_CUSTOM)) == ["sections"]
    dup = schedule(kind=pb.REPORT_KIND_CUSTOM, sections=[pb.SECTION_ALERTS, pb.SECTION_ALERTS])
    assert fields(dup) == ["sections[1]"]
    ok = schedule(kind=pb.REPORT_KIND_CUSTOM, sections=[pb.SECTION_FUNNEL, pb.SECTION_ALERTS])
    assert fields(ok) == []
    steps = [filters_pb2.EventMatcher(event=f"e{i}") for i in range(11)]
    assert fields(schedule(funnel_steps=steps)) == ["funnel_steps"]
    assert fields(schedule(funnel_steps=steps[:10])) == []
    assert fields(schedule(funnel_steps=[steps[0], filters_pb2.EventMatcher()])) == [
        "funnel_steps[1].event"
    ]


def test_sections_and_units_follow_the_kind() -> None:
    assert sections_of(schedule()) == list(DAILY_SECTIONS)
    assert unit_of(schedule()) == DAY
    weekly = schedule(kind=pb.REPORT_KIND_WEEKLY)
    assert sections_of(weekly) == list(WEEKLY_SECTIONS) and unit_of(weekly) == WEEK
    custom = schedule(kind=pb.REPORT_KIND_CUSTOM, sections=[pb.SECTION_FUNNEL])
    assert sections_of(custom) == [pb.SECTION_FUNNEL] and unit_of(custom) == DAY
    custom.period_unit = WEEK
    assert unit_of(custom) == WEEK


def test_defaults_are_the_daily_and_weekly_reports_at_nine_utc() -> None:
    daily, weekly = default_schedules()
    assert (daily.schedule_id, daily.cron, daily.time_zone) == ("daily", "0 9 * * *", "UTC")
    assert (weekly.schedule_id, weekly.cron, weekly.kind) == (
        "weekly",
        "0 9 * * 1",
        pb.REPORT_KIND_WEEKLY,
    )
    assert not daily.channels.emails and not weekly.channels.webhooks


def test_decisions_follow_the_aggregate_life() -> None:
    s = schedule()
    created = events.decide_create(None, s)
    state = events.evolve(None, created, 1)
    assert state is not None and state.version == 1
    with pytest.raises(AlreadyExists):
        events.decide_create(state, s)
    with pytest.raises(NotFound):
        events.decide_update(None, s)
    deleted = events.evolve(state, events.decide_delete(state, s.schedule_id), 2)
    assert deleted is not None and deleted.deleted
    with pytest.raises(FailedPrecondition):
        events.decide_update(deleted, s)
    with pytest.raises(InvalidArgument) as raised:
        events.decide_create(None, schedule(cron="nope"))
    assert [v.field for v in raised.value.violations] == ["schedule.cron"]


def test_events_round_trip_as_contract_messages() -> None:
    s = schedule()
    for event in (
        events.ScheduleEvent(events.SCHEDULE_CREATED, s.schedule_id, s),
        events.ScheduleEvent(events.SCHEDULE_UPDATED, s.schedule_id, s),
        events.ScheduleEvent(events.SCHEDULE_DELETED, s.schedule_id, None),
    ):
        again = events.decode_schedule_event(event.type, events.encode_schedule_event(event))
        assert again == event
    assert events.ScheduleEvent(events.SCHEDULE_CREATED, "a.b", s).key == "a~b"
    assert events.schedule_id_of("a~b") == "a.b"


def test_report_ids_are_stable_and_distinct() -> None:
    p = Period(date(2026, 1, 1), date(2026, 1, 1), DAY, "UTC")
    rid = events.report_id("acme", "daily", p)
    assert rid == events.report_id("acme", "daily", p)
    assert len(rid) == 32 and int(rid, 16) >= 0
    others = {
        events.report_id("globex", "daily", p),
        events.report_id("acme", "weekly", p),
        events.report_id("acme", "daily", p.previous()),
        events.report_id("acme", "daily", Period(p.start, p.end, DAY, "Europe/Paris")),
    }
    assert rid not in others and len(others) == 4
    assert events.delivery_id(rid, "email", "a@b.io") != events.delivery_id(rid, "slack", "a@b.io")
