"""Fire times across daylight-saving changes, the periods fires cover, catch-up enumeration."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_reports.domain.periods import (
    DAY,
    WEEK,
    InvalidCron,
    Period,
    check_cron,
    due_periods,
    fires_after,
    fires_until,
    latest_ended,
    period_containing,
    period_of_fire,
    zone,
)

ZONES = ("Europe/Paris", "America/New_York")


def local(fires: list[datetime], tz: str) -> list[str]:
    return [f.astimezone(zone(tz)).strftime("%Y-%m-%d %H:%M %z") for f in fires]


def first(expr: str, tz: str, after: datetime, n: int) -> list[datetime]:
    return list(itertools.islice(fires_after(expr, tz, after), n))


@pytest.mark.parametrize(
    ("tz", "spring", "autumn"),
    [
        ("Europe/Paris", date(2026, 3, 29), date(2026, 10, 25)),
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_nine_local_stays_nine_local_across_both_changes(
    tz: str, spring: date, autumn: date
) -> None:
    for change in (spring, autumn):
        start = datetime.combine(change - timedelta(days=2), datetime.min.time(), UTC)
        fires = first("0 9 * * *", tz, start, 5)
        assert [f.astimezone(zone(tz)).hour for f in fires] == [9] * 5
        assert [f.astimezone(zone(tz)).minute for f in fires] == [0] * 5
        # The UTC instant moves by the hour the clocks moved.
        offsets = {f.astimezone(zone(tz)).utcoffset() for f in fires}
        assert len(offsets) == 2


def test_paris_spring_gap_fires_at_the_first_valid_instant_after() -> None:
    fires = first("30 2 * * *", "Europe/Paris", datetime(2026, 3, 27, tzinfo=UTC), 3)
    assert local(fires, "Europe/Paris") == [
        "2026-03-27 02:30 +0100",
        "2026-03-28 02:30 +0100",
        "2026-03-29 03:00 +0200",  # 02:30 does not exist that day
    ]


def test_new_york_spring_gap_fires_at_the_first_valid_instant_after() -> None:
    fires = first("30 2 * * *", "America/New_York", datetime(2026, 3, 7, tzinfo=UTC), 3)
    assert local(fires, "America/New_York") == [
        "2026-03-07 02:30 -0500",
        "2026-03-08 03:00 -0400",
        "2026-03-09 02:30 -0400",
    ]


@pytest.mark.parametrize(
    ("tz", "day", "summer", "winter"),
    [
        ("Europe/Paris", date(2026, 10, 25), "+0200", "+0100"),
        ("America/New_York", date(2026, 11, 1), "-0400", "-0500"),
    ],
)
def test_the_repeated_autumn_hour_fires_once_at_its_first_occurrence(
    tz: str, day: date, summer: str, winter: str
) -> None:
    hour = "2" if tz == "Europe/Paris" else "1"
    start = datetime.combine(day - timedelta(days=1), datetime.min.time(), UTC)
    fires = first(f"30 {hour} * * *", tz, start, 3)
    texts = local(fires, tz)
    assert [t[:10] for t in texts] == [
        (day - timedelta(days=1)).isoformat(),
        day.isoformat(),
        (day + timedelta(days=1)).isoformat(),
    ]
    assert texts[1].endswith(summer)  # the first occurrence, once
    assert texts[2].endswith(winter)


@pytest.mark.parametrize("tz", ZONES)
def test_reverse_enumeration_meets_the_forward_one_across_changes(tz: str) -> None:
    for expr in ("30 2 * * *", "0 9 * * *", "15 1 * * 0"):
        forward = first(expr, tz, datetime(2026, 3, 1, tzinfo=UTC), 300)
        backward = list(itertools.islice(fires_until(expr, tz, forward[-1]), len(forward)))
        assert backward[::-1] == forward


@settings(max_examples=150, deadline=None)
@given(
    tz=st.sampled_from((*ZONES, "UTC", "Asia/Kolkata", "Australia/Lord_Howe")),
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
)
def test_daily_fires_are_one_per_local_day_strictly_increasing(
    tz: str, minute: int, hour: int, start: datetime
) -> None:
    after = start.replace(tzinfo=UTC)
    fires = first(f"{minute} {hour} * * *", tz, after, 10)
    assert fires[0] > after
    assert all(a < b for a, b in itertools.pairwise(fires))
    days = [f.astimezone(zone(tz)).date() for f in fires]
    assert all((b - a).days == 1 for a, b in itertools.pairwise(days))


def test_a_fire_covers_the_local_day_before_it() -> None:
    # 09:00 in Paris on Jan 2 is 08:00 UTC; 00:30 in New York on Jan 2 is 05:30 UTC.
    assert period_of_fire(datetime(2026, 1, 2, 8, tzinfo=UTC), DAY, "Europe/Paris") == Period(
        date(2026, 1, 1), date(2026, 1, 1), DAY, "Europe/Paris"
    )
    # 23:30 UTC Jan 1 is already Jan 2 in Paris, still Jan 1 in New York.
    at = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)
    assert period_of_fire(at, DAY, "Europe/Paris").start == date(2026, 1, 1)
    assert period_of_fire(at, DAY, "America/New_York").start == date(2025, 12, 31)


def test_a_fire_covers_the_iso_week_before_its_own() -> None:
    # Monday 2026-01-05 09:00 UTC covers Mon 2025-12-29 .. Sun 2026-01-04.
    p = period_of_fire(datetime(2026, 1, 5, 9, tzinfo=UTC), WEEK, "UTC")
    assert (p.start, p.end) == (date(2025, 12, 29), date(2026, 1, 4))
    # A Sunday fire covers the week before the one that Sunday ends.
    p = period_of_fire(datetime(2026, 1, 11, 9, tzinfo=UTC), WEEK, "UTC")
    assert (p.start, p.end) == (date(2025, 12, 29), date(2026, 1, 4))


@given(day=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_the_week_containing_a_day_is_monday_to_sunday_around_it(day: date) -> None:
    p = period_containing(day, WEEK, "UTC")
    assert p.start.isoweekday() == 1 and p.end.isoweekday() == 7
    assert p.start <= day <= p.end and (p.end - p.start).days == 6
    assert p.previous().end == p.start - timedelta(days=1)


def test_a_period_has_ended_once_its_last_local_day_is_over() -> None:
    p = period_containing(date(2026, 6, 1), DAY, "America/New_York")
    assert not p.has_ended(datetime(2026, 6, 2, 3, 59, tzinfo=UTC))  # 23:59 EDT June 1
    assert p.has_ended(datetime(2026, 6, 2, 4, 0, tzinfo=UTC))  # 00:00 EDT June 2
    assert latest_ended(WEEK, "UTC", datetime(2026, 1, 7, tzinfo=UTC)).start == date(2025, 12, 29)
    assert latest_ended(DAY, "UTC", datetime(2026, 1, 7, tzinfo=UTC)).start == date(2026, 1, 6)


def test_catch_up_lists_the_missed_days_oldest_first_up_to_the_limit() -> None:
    after = datetime(2026, 3, 20, 10, tzinfo=UTC)
    until = datetime(2026, 3, 30, 12, tzinfo=UTC)
    got = due_periods("0 9 * * *", "Europe/Paris", DAY, after=after, until=until, limit=100)
    # Fires on Mar 21 .. Mar 30 (09:00 local) cover Mar 20 .. Mar 29.
    assert [p.start.day for p in got] == list(range(20, 30))
    limited = due_periods("0 9 * * *", "Europe/Paris", DAY, after=after, until=until, limit=3)
    assert [p.start.day for p in limited] == [27, 28, 29]


def test_catch_up_counts_a_period_once_whatever_its_fires() -> None:
    got = due_periods(
        "*/5 * * * *",
        "UTC",
        WEEK,
        after=datetime(2026, 3, 1, tzinfo=UTC),
        until=datetime(2026, 3, 30, 12, tzinfo=UTC),
        limit=10,
    )
    # Sunday Mar 1 lies in the week of Feb 23: its fires cover the week of Feb 16.
    assert [p.start for p in got] == [
        date(2026, 2, 16),
        date(2026, 2, 23),
        date(2026, 3, 2),
        date(2026, 3, 9),
        date(2026, 3, 16),
        date(2026, 3, 23),
    ]


def test_nothing_is_due_before_the_first_fire() -> None:
    at = datetime(2026, 3, 20, 8, tzinfo=UTC)
    assert (
        due_periods("0 9 * * *", "UTC", DAY, after=at, until=at + timedelta(minutes=59), limit=5)
        == []
    )
    assert (
        due_periods("0 9 * * *", "UTC", DAY, after=at, until=at + timedelta(minutes=59), limit=0)
        == []
    )


@pytest.mark.parametrize(
    "expr", ["", "0 9 * *", "0 9 * * * *", "61 9 * * *", "0 25 * * *", "0 9 30 2 *", "x y z w v"]
)
def test_bad_crons_are_refused(expr: str) -> None:
    with pytest.raises(InvalidCron):
        check_cron(expr)


@settings(max_examples=100, deadline=None)
@given(
    tz=st.sampled_from((*ZONES, "UTC")),
    expr=st.sampled_from(("0 9 * * *", "30 2 * * *", "0 9 * * 1", "0 */6 * * *", "15 23 * * 5")),
    unit=st.sampled_from((DAY, WEEK)),
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1)),
    days=st.integers(0, 40),
    limit=st.integers(1, 12),
)
def test_catch_up_equals_the_newest_periods_of_every_fire(
    tz: str, expr: str, unit: int, start: datetime, days: int, limit: int
) -> None:
    after = start.replace(tzinfo=UTC)
    until = after + timedelta(days=days, hours=5)
    every = sorted(
        {
            period_of_fire(f, unit, tz)  # type: ignore[arg-type]
            for f in itertools.takewhile(lambda f: f <= until, fires_after(expr, tz, after))
        }
    )
    got = due_periods(expr, tz, unit, after=after, until=until, limit=limit)  # type: ignore[arg-type]
    assert got == every[-limit:]
