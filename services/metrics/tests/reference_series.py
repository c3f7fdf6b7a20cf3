"""Obviously-correct references for daily series, anomalies, forecasts and data quality.

Written from spec/metrics.md and spec/events.md over plain lists, by brute
force, without the service's code.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

import numpy as np

from .reference import Ev, dedup

DAY_US = 86_400_000_000


def day_of(ts_us: int) -> date:
    return date(1970, 1, 1) + timedelta(days=ts_us // DAY_US)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# ---------------------------------------------------------------- daily series


def _start(events: list[Ev]) -> date | None:
    return min((day_of(e.timestamp_us) for e in events), default=None)


def _props(e: Ev) -> dict:
    return json.loads(e.properties)


def series(events: list[Ev], kind: str, first: date, last: date, name: str = "") -> dict:
    """{day: Fraction | None} over [first, last] for one named series."""
    events = dedup(events)
    start = _start(events)
    out: dict[date, Fraction | None] = {}
    for d in days(first, last):
        if start is None or d < start:
            out[d] = None
            continue
        on_day = [e for e in events if day_of(e.timestamp_us) == d]
        if kind == "dau":
            out[d] = Fraction(len({e.user_id for e in on_day if e.user_id}))
        elif kind == "event_count":
            out[d] = Fraction(sum(1 for e in on_day if e.event == name))
        elif kind == "signups":
            firsts: dict[str, Ev] = {}
            for e in events:
                if e.event == "user.signup" and e.user_id:
                    seen = firsts.get(e.user_id)
                    if seen is None or (e.timestamp_us, e.event_id) < (
                        seen.timestamp_us,
                        seen.event_id,
                    ):
                        firsts[e.user_id] = e
            out[d] = Fraction(sum(1 for e in firsts.values() if day_of(e.timestamp_us) == d))
        elif kind in ("workflow_runs", "error_rate"):
            runs = [
                e
                for e in on_day
                if e.event == "workflow.run" and _props(e).get("status") in ("success", "failed")
            ]
            failed = sum(1 for e in runs if _props(e)["status"] == "failed")
            if kind == "workflow_runs":
                out[d] = Fraction(len(runs))
            else:
                out[d] = Fraction(failed, len(runs)) if runs else None
        elif kind == "mrr":
            out[d] = Fraction(mrr_at_end_of(events, d))
        else:
            raise ValueError(kind)
    return out


def mrr_at_end_of(events: list[Ev], d: date) -> int:
    """Sum over orgs of the mrr of their latest counted subscription.* event by the end of d."""
    latest: dict[str, Ev] = {}
    for e in events:
        if not e.event.startswith("subscription.") or not e.org_id or day_of(e.timestamp_us) > d:
            continue
        if e.event in ("subscription.started", "subscription.changed"):
            mrr = _props(e).get("mrr")
            if isinstance(mrr, bool) or not isinstance(mrr, int) or mrr < 0:
                continue
        seen = latest.get(e.org_id)
        if seen is None or (e.timestamp_us, e.event_id) > (seen.timestamp_us, seen.event_id):
            latest[e.org_id] = e
    total = 0
    for e in latest.values():
        if e.event in ("subscription.started", "subscription.changed"):
            total += _props(e)["mrr"]
    return total


# ---------------------------------------------------------------- anomalies


@dataclass(frozen=True)
class RefAnomaly:
    day: date
    value: Fraction
    mean: Fraction
    variance: Fraction
    n: int
    z_rule: bool
    relative_rule: bool


def anomalies(
    values: dict[date, Fraction | None],
    first: date,
    last: date,
    z: Fraction = Fraction(3),
    r: Fraction | None = None,
) -> tuple[list[RefAnomaly], int]:
    """Anomalous days of [first, last] and the number of days judged, straight from the spec."""
    found = []
    judged = 0
    for d in days(first, last):
        x = values.get(d)
        if x is None:
            continue
        baseline = [v for k in range(1, 29) if (v := values.get(d - timedelta(days=k))) is not None]
        if len(baseline) < 14:
            continue
        judged += 1
        m = statistics.mean(baseline)
        var = statistics.variance(baseline)
        # s = 0: any difference is an infinite z.
        z_rule = x != m if var == 0 else (x - m) ** 2 / var >= z**2
        relative_rule = r is not None and m != 0 and abs(x - m) / m > r
        if z_rule or relative_rule:
            found.append(RefAnomaly(d, x, m, var, len(baseline), z_rule, relative_rule))
    return found, judged


# ---------------------------------------------------------------- forecast


def design_row(offset: int, weekday: int, weekly: bool, linear: bool) -> list[float]:
    row = [1.0]
    if linear:
        row.append(float(offset))
    if weekly:
        row.extend(1.0 if weekday == w else 0.0 for w in range(1, 7))  # dummy coding
    return row


def ols_forecast(
    values: dict[date, Fraction | None], origin: date, fit_days: int, horizon: int
) -> list[float] | None:
    """numpy least squares (dummy coding, a different basis than the service's) forecasts."""
    obs = [
        (d, float(v))
        for d in days(origin - timedelta(days=fit_days - 1), origin)
        if (v := values.get(d)) is not None
    ]
    if not obs:
        return None
    weekly = len(obs) >= 14 and len({d.weekday() for d, _ in obs}) == 7
    linear = len(obs) >= 2
    x = np.array([design_row((d - origin).days, d.weekday(), weekly, linear) for d, _ in obs])
    y = np.array([v for _, v in obs])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    out = []
    for h in range(1, horizon + 1):
        d = origin + timedelta(days=h)
        out.append(float(np.dot(design_row(h, d.weekday(), weekly, linear), beta)))
    return out


# ---------------------------------------------------------------- data quality


@dataclass(frozen=True)
class Received:
    """A product event as ingest stored it: with its receive time and the request's sent_at."""

    ev: Ev
    received_at_us: int
    sent_at_us: int = 0


def lacking(e: Ev) -> bool:
    """Whether a well-known event lacks what its KPIs need (events.md), by the table."""
    p = _props(e)
    if e.event in (
        "user.signup",
        "integration.connected",
        "workflow.created",
        "experiment.exposure",
    ):
        return not e.user_id
    if e.event == "workflow.run":
        return not e.user_id or not e.org_id or p.get("status") not in ("success", "failed")
    if e.event in ("subscription.started", "subscription.changed"):
        mrr = p.get("mrr")
        return not e.org_id or isinstance(mrr, bool) or not isinstance(mrr, int) or mrr < 0
    if e.event.startswith("subscription."):  # events.md: org_id "required for subscription.*"
        return not e.org_id
    if e.event == "marketing.spend":
        amount = p.get("amount")
        return isinstance(amount, bool) or not isinstance(amount, int)
    return False


def bot_peak(stamps: list[int]) -> int:
    """Brute force: the most stamps within 60 s of one of them (window [t, t + 60 s])."""
    return max((sum(1 for u in stamps if t <= u <= t + 60_000_000) for t in stamps), default=0)


@dataclass(frozen=True)
class RefQuality:
    accepted: int
    duplicates: int
    id_conflicts: int
    missing_fields: int
    missing_by_event: dict[str, int]
    active_users: int
    orphan_activity: int
    clock_skew_accepted: int
    suspected_bots: dict[str, int]


def quality(received: list[Received], first: date, last: date) -> RefQuality:
    """Data quality of the stored events received on days [first, last] (log order in)."""
    stored: dict[str, Received] = {}
    duplicates = conflicts = 0
    for r in received:
        seen = stored.get(r.ev.event_id)
        if seen is None:
            stored[r.ev.event_id] = r
            continue
        if first <= day_of(r.received_at_us) <= last:
            duplicates += 1
            a, b = seen.ev, r.ev
            if (a.event, a.user_id, a.org_id, a.properties) != (
                b.event,
                b.user_id,
                b.org_id,
                b.properties,
            ):
                conflicts += 1
    in_period = [r for r in stored.values() if first <= day_of(r.received_at_us) <= last]
    missing = [r.ev for r in in_period if lacking(r.ev)]
    by_event: dict[str, int] = {}
    for e in missing:
        by_event[e.event] = by_event.get(e.event, 0) + 1
    active = {r.ev.user_id for r in in_period if r.ev.user_id}
    signed = {r.ev.user_id for r in stored.values() if r.ev.event == "user.signup" and r.ev.user_id}
    skewed = sum(
        1
        for r in in_period
        if r.sent_at_us != 0 and abs(r.received_at_us - r.sent_at_us) > 3_600_000_000
    )
    bots = {}
    for user in active:
        peak = bot_peak([r.ev.timestamp_us for r in in_period if r.ev.user_id == user])
        if peak > 600:
            bots[user] = peak
    return RefQuality(
        accepted=len(in_period),
        duplicates=duplicates,
        id_conflicts=conflicts,
        missing_fields=len(missing),
        missing_by_event=by_event,
        active_users=len(active),
        orphan_activity=len(active - signed),
        clock_skew_accepted=skewed,
        suspected_bots=bots,
    )
