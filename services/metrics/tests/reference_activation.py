"""Obviously-correct references for Activation and Workflows, by brute force over Ev lists.

Written from spec/metrics.md without looking at the service code: every number is a
plain scan over all events, and percentiles are computed in exact fractions.
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from .reference import Ev, dedup

SECOND = 1_000_000
DAY = 86_400 * SECOND

# (reached, median seconds, p90 seconds)
Stage = tuple[int, float | None, float | None]
# (signups, activated, activation_rate, [integration, created, succeeded],
#  fast, signup_to_value_30m, eligible, converted, paid_conversion_rate)
Summary = tuple[int, int, float | None, list[Stage], int, float | None, int, int, float | None]
# (period_start, from, to, runs, successful, failed, error_rate, active, runs per active)
Period = tuple[str, str, str, int, int, int, float | None, int, float | None]


def props(e: Ev) -> dict[str, Any]:
    """The event's properties."""
    loaded: dict[str, Any] = json.loads(e.properties)
    return loaded


def share(n: int, d: int) -> float | None:
    """n / d, absent over zero."""
    return None if d == 0 else n / d


def quantile(values: list[Fraction], q: Fraction) -> float | None:
    """Linear interpolation between closest ranks, computed exactly, rounded once."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def signup_of(events: list[Ev]) -> dict[str, Ev]:
    """Each user's earliest user.signup (timestamp, then event_id)."""
    out: dict[str, Ev] = {}
    for e in sorted(events, key=lambda e: (e.timestamp_us, e.event_id)):
        if e.event == "user.signup" and e.user_id and e.user_id not in out:
            out[e.user_id] = e
    return out


def _is_stage(e: Ev, stage: int) -> bool:
    if stage == 0:
        return e.event == "integration.connected"
    if stage == 1:
        return e.event == "workflow.created"
    return e.event == "workflow.run" and props(e).get("status") == "success"


def _first(events: list[Ev], user: str, since: int, stage: int) -> int | None:
    times = [
        e.timestamp_us
        for e in events
        if e.user_id == user and e.timestamp_us >= since and _is_stage(e, stage)
    ]
    return min(times) if times else None


def summary(events: list[Ev], cohort: list[Ev]) -> Summary:
    """The activation numbers of the signups `cohort` (their signup events)."""
    activated = 0
    fast = 0
    eligible = 0
    converted = 0
    durations: list[list[Fraction]] = [[], [], []]
    for s in cohort:
        t0 = s.timestamp_us
        if any(
            e.event == "workflow.created"
            and e.user_id == s.user_id
            and t0 <= e.timestamp_us
            and e.timestamp_us <= t0 + 7 * DAY
            for e in events
        ):
            activated += 1
        for stage in range(3):
            t = _first(events, s.user_id, t0, stage)
            if t is not None:
                durations[stage].append(Fraction(t - t0, SECOND))
        run = _first(events, s.user_id, t0, 2)
        if run is not None and run - t0 <= 1800 * SECOND:
            fast += 1
        if props(s).get("plan") == "free" and s.org_id != "":
            eligible += 1
            if any(
                e.event == "subscription.started"
                and e.org_id == s.org_id
                and t0 <= e.timestamp_us <= t0 + 30 * DAY
                for e in events
            ):
                converted += 1
    stages: list[Stage] = [
        (len(d), quantile(d, Fraction(1, 2)), quantile(d, Fraction(9, 10))) for d in durations
    ]
    n = len(cohort)
    return (
        n,
        activated,
        share(activated, n),
        stages,
        fast,
        share(fast, n),
        eligible,
        converted,
        share(converted, eligible),
    )


def activation(
    events: list[Ev], first: date, last: date, attribute: str | None = None
) -> tuple[Summary, list[tuple[str | None, Summary]]]:
    """The overall summary of the signups of [first, last] and, by attribute, the segments."""
    events = dedup(events)
    cohort = [s for s in signup_of(events).values() if first <= s.day <= last]
    overall = summary(events, cohort)
    if attribute is None:
        return overall, []

    def value(s: Ev) -> str | None:
        v = props(s).get(attribute)
        return v if isinstance(v, str) else None

    values = {value(s) for s in cohort}
    ordered = sorted(v for v in values if v is not None) + ([None] if None in values else [])
    return overall, [(v, summary(events, [s for s in cohort if value(s) == v])) for v in ordered]


def _valid_runs(events: list[Ev]) -> list[Ev]:
    return [
        e
        for e in events
        if e.event == "workflow.run" and props(e).get("status") in ("success", "failed")
    ]


def _period(runs: list[Ev], start: date, days: list[date]) -> Period:
    inside = [e for e in runs if e.day in days]
    ok = sum(1 for e in inside if props(e)["status"] == "success")
    bad = len(inside) - ok
    workflows = set()
    for e in inside:
        w = props(e).get("workflow_id")
        if isinstance(w, str) and w != "":
            workflows.add(w)
    return (
        start.isoformat(),
        min(days).isoformat(),
        max(days).isoformat(),
        len(inside),
        ok,
        bad,
        share(bad, len(inside)),
        len(workflows),
        share(len(inside), len(workflows)),
    )


def workflows(
    events: list[Ev], first: date, last: date, granularity: str
) -> tuple[list[Period], Period]:
    """Per period overlapping [first, last] (only its days in range), and the total."""
    runs = _valid_runs(dedup(events))
    groups: dict[date, list[date]] = {}
    d = first
    while d <= last:
        if granularity == "day":
            start = d
        elif granularity == "week":
            year, week, _ = d.isocalendar()
            start = date.fromisocalendar(year, week, 1)
        else:
            start = date(d.year, d.month, 1)
        groups.setdefault(start, []).append(d)
        d += timedelta(days=1)
    every = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [_period(runs, s, days) for s, days in sorted(groups.items())], _period(
        runs, first, every
    )


def daily_runs(events: list[Ev], first: date, last: date) -> dict[date, tuple[int, int]]:
    """(valid runs, failed runs) on every day of [first, last]."""
    runs = _valid_runs(dedup(events))
    out = {}
    d = first
    while d <= last:
        today = [e for e in runs if e.day == d]
        out[d] = (len(today), sum(1 for e in today if props(e)["status"] == "failed"))
        d += timedelta(days=1)
    return out


def close(a: object, b: object) -> bool:
    """Equal, except floats, which may differ in the last bits (percentile rounding)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return a == b
