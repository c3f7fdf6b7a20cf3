"""Obviously-correct retention (spec/metrics.md "Retention") by brute force over event lists.

Written apart from the service: periods are found by stepping day by day and month by
month, and every count is a scan over all users.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta

from .reference import Ev, dedup

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class SignupRef:
    """A user's first signup as the reference sees it."""

    user_id: str
    day: date
    plan: object
    channel: object


def first_signups(events: list[Ev]) -> dict[str, SignupRef]:
    """Each user's earliest user.signup: smallest (timestamp, event_id)."""
    best: dict[str, Ev] = {}
    for e in dedup(events):
        if e.event != "user.signup" or e.user_id == "":
            continue
        if e.user_id not in best or (e.timestamp_us, e.event_id) < (
            best[e.user_id].timestamp_us,
            best[e.user_id].event_id,
        ):
            best[e.user_id] = e
    out = {}
    for user, e in best.items():
        props = json.loads(e.properties)
        out[user] = SignupRef(user, e.day, props.get("plan"), props.get("channel"))
    return out


def activity(events: list[Ev]) -> dict[str, set[date]]:
    """Days with at least one event of the user."""
    days: dict[str, set[date]] = {}
    for e in dedup(events):
        if e.user_id != "":
            days.setdefault(e.user_id, set()).add(e.day)
    return days


def next_start(start: date, granularity: str) -> date:
    """The first day of the period after the one starting on `start`."""
    if granularity == "day":
        return start + ONE_DAY
    if granularity == "week":
        return start + 7 * ONE_DAY
    d = start
    while d.month == start.month:  # walk to the 1st of the next month
        d += ONE_DAY
    return d


def is_period_start(d: date, granularity: str) -> bool:
    """Whether a cohort period starts on `d`."""
    if granularity == "day":
        return True
    if granularity == "week":
        return d.isoweekday() == 1
    return d.day == 1


def cohort_of(d: date, granularity: str) -> date:
    """The first day of the cohort period holding `d`, by walking back."""
    while not is_period_start(d, granularity):
        d -= ONE_DAY
    return d


def period_bounds(cohort: date, n: int, granularity: str) -> tuple[date, date]:
    """First and last day of period n of the cohort."""
    start = cohort
    for _ in range(n):
        start = next_start(start, granularity)
    return start, next_start(start, granularity) - ONE_DAY


def cohort_users(
    signups: dict[str, SignupRef],
    cohort: date,
    granularity: str,
    segment: tuple[str, str] | None,
) -> list[str]:
    """The users of one cohort (and segment)."""
    users = []
    for s in signups.values():
        if cohort_of(s.day, granularity) != cohort:
            continue
        if segment is not None:
            attribute, value = segment
            actual = s.plan if attribute == "plan" else s.channel
            if not (isinstance(actual, str) and actual == value):
                continue
        users.append(s.user_id)
    return users


def is_retained(
    days: set[date], cohort: date, n: int, granularity: str, mode: str, as_of: date
) -> bool:
    """Whether a user with activity `days` is retained in period n."""
    start, end = period_bounds(cohort, n, granularity)
    if mode == "on_or_after":
        end = as_of
    return any(start <= d <= end for d in days)


Cell = tuple[int, int, int, float | None]  # period, retained, denominator, value


def retention(
    events: list[Ev],
    *,
    granularity: str,
    first: date,
    last: date,
    periods: int,
    as_of: date,
    mode: str = "on_day",
    segment: tuple[str, str] | None = None,
) -> tuple[list[tuple[str, str, int, list[Cell]]], list[Cell]]:
    """(rows, combined): rows are (cohort start, cohort end, size, cells of elapsed periods)."""
    signups = first_signups(events)
    days = activity(events)
    rows = []
    sums: dict[int, list[int]] = {}
    d = first
    while d <= last:
        if is_period_start(d, granularity):
            users = cohort_users(signups, d, granularity, segment)
            cells: list[Cell] = []
            for n in range(periods):
                if period_bounds(d, n, granularity)[1] > as_of:
                    continue
                kept = sum(
                    1
                    for u in users
                    if is_retained(days.get(u, set()), d, n, granularity, mode, as_of)
                )
                cells.append((n, kept, len(users), kept / len(users) if users else None))
                acc = sums.setdefault(n, [0, 0])
                acc[0] += kept
                acc[1] += len(users)
            rows.append(
                (d.isoformat(), period_bounds(d, 0, granularity)[1].isoformat(), len(users), cells)
            )
        d += ONE_DAY
    combined: list[Cell] = [(n, r, s, r / s if s else None) for n, (r, s) in sorted(sums.items())]
    return rows, combined


def retention_trend(
    events: list[Ev],
    *,
    granularity: str,
    first: date,
    last: date,
    period: int,
    as_of: date,
    mode: str = "on_day",
    segment: tuple[str, str] | None = None,
) -> tuple[list[tuple[str, str, int, Cell | None]], Cell | None]:
    """(points, combined): per cohort, its cell of `period` (None while not elapsed)."""
    signups = first_signups(events)
    days = activity(events)
    points = []
    total = [0, 0]
    reached = False
    d = first
    while d <= last:
        if is_period_start(d, granularity):
            users = cohort_users(signups, d, granularity, segment)
            cell: Cell | None = None
            if period_bounds(d, period, granularity)[1] <= as_of:
                kept = sum(
                    1
                    for u in users
                    if is_retained(days.get(u, set()), d, period, granularity, mode, as_of)
                )
                cell = (period, kept, len(users), kept / len(users) if users else None)
                total[0] += kept
                total[1] += len(users)
                reached = True
            points.append(
                (d.isoformat(), period_bounds(d, 0, granularity)[1].isoformat(), len(users), cell)
            )
        d += ONE_DAY
    combined: Cell | None = None
    if reached:
        combined = (period, total[0], total[1], total[0] / total[1] if total[1] else None)
    return points, combined


def day_retention(events: list[Ev], first: date, last: date, n: int) -> tuple[int, int]:
    """(users active on signup_day + n, signups) over signups with signup_day in [first, last]."""
    signups = first_signups(events)
    days = activity(events)
    chosen = [s for s in signups.values() if first <= s.day <= last]
    kept = [s for s in chosen if s.day + timedelta(days=n) in days.get(s.user_id, set())]
    return len(kept), len(chosen)
