"""Obviously-correct revenue numbers (spec/metrics.md "Revenue") by brute force over Ev lists.

Every instant is looked up from scratch: an org's state at T is found by scanning all of
its events, a month's numbers by comparing two such lookups per org. Slow and plain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

from .reference import Ev, dedup


def day_start_us(d: date) -> int:
    """Microseconds since the epoch at 00:00 UTC of d."""
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1_000_000


def end_of_day_us(d: date) -> int:
    """The last microsecond of day d."""
    return day_start_us(d + timedelta(days=1)) - 1


def is_json_integer(value: object) -> bool:
    return type(value) is int


def counted_subscription_events(events: list[Ev]) -> list[Ev]:
    """The subscription.* events revenue does not skip (events.md)."""
    out = []
    for e in dedup(events):
        if not e.event.startswith("subscription.") or e.org_id == "":
            continue
        if e.event in ("subscription.started", "subscription.changed"):
            mrr = json.loads(e.properties).get("mrr")
            if not is_json_integer(mrr) or mrr < 0:
                continue
        out.append(e)
    return out


def mrr_of_org(events: list[Ev], org: str, instant_us: int) -> int:
    """The org's MRR at an instant (0 when not paying), by scanning all its events."""
    latest = None
    for e in counted_subscription_events(events):
        if e.org_id != org or e.timestamp_us > instant_us:
            continue
        if latest is None or (e.timestamp_us, e.event_id) > (latest.timestamp_us, latest.event_id):
            latest = e
    if latest is None or latest.event not in ("subscription.started", "subscription.changed"):
        return 0
    mrr = json.loads(latest.properties)["mrr"]
    return mrr if mrr > 0 else 0


def paying(events: list[Ev], instant_us: int) -> dict[str, int]:
    """Paying orgs and their MRR at an instant."""
    orgs = {e.org_id for e in dedup(events) if e.org_id}
    result = {}
    for org in orgs:
        mrr = mrr_of_org(events, org, instant_us)
        if mrr > 0:
            result[org] = mrr
    return result


def exact(a: int | Fraction, b: int | Fraction | None) -> Fraction | None:
    """a / b by hand: an exact fraction, None over nothing."""
    return None if b is None or b == 0 else Fraction(a) / Fraction(b)


def div(a: int | Fraction, b: int | Fraction | None) -> float | None:
    """a / b as reported: the exact fraction rounded once."""
    q = exact(a, b)
    return None if q is None else float(q)


def daily(events: list[Ev], first: date, last: date) -> list[tuple[str, int, int, float | None]]:
    """(date, MRR, paying orgs, ARPU) at the end of each day."""
    rows = []
    d = first
    while d <= last:
        p = paying(events, end_of_day_us(d))
        total = sum(p.values())
        rows.append((d.isoformat(), total, len(p), div(total, len(p))))
        d += timedelta(days=1)
    return rows


def month_bounds(month: date) -> tuple[date, date]:
    """The first and last day of the month."""
    following = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    return month, following - timedelta(days=1)


def first_signups(events: list[Ev]) -> dict[str, Ev]:
    """Each user's earliest user.signup."""
    out: dict[str, Ev] = {}
    for e in dedup(events):
        if e.event == "user.signup" and e.user_id:
            seen = out.get(e.user_id)
            if seen is None or (e.timestamp_us, e.event_id) < (seen.timestamp_us, seen.event_id):
                out[e.user_id] = e
    return out


def signups_in(events: list[Ev], month: date) -> tuple[int, int]:
    """(signups, referral signups) whose first signup falls in the month."""
    lo, hi = month_bounds(month)
    total = referral = 0
    for e in first_signups(events).values():
        if lo <= e.day <= hi:
            total += 1
            if json.loads(e.properties).get("channel") == "referral":
                referral += 1
    return total, referral


def acquisition_channel(events: list[Ev], org: str) -> str | None:
    """The string channel of the earliest user.signup carrying the org_id."""
    candidates = [
        e
        for e in dedup(events)
        if e.event == "user.signup" and e.org_id == org and e.user_id  # "of any user"
    ]
    if not candidates:
        return None
    earliest = min(candidates, key=lambda e: (e.timestamp_us, e.event_id))
    channel = json.loads(earliest.properties).get("channel")
    return channel if isinstance(channel, str) else None


@dataclass(frozen=True)
class RefMonth:
    """A month's revenue numbers as the reference computes them."""

    month: str
    mrr_start: int
    mrr_end: int
    paying_start: int
    paying_end: int
    new: int
    new_orgs: int
    expansion: int
    expansion_orgs: int
    contraction: int
    contraction_orgs: int
    churned: int
    churned_orgs: int
    churn_rate: float | None
    arpu_end: float | None
    ltv: float | None
    spend: int
    cac: float | None
    ltv_to_cac: float | None
    payback_months: float | None
    mrr_growth: float | None
    signups: int
    previous_signups: int
    referral_signups: int
    signup_growth: float | None
    viral_coefficient: float | None
    channels: tuple[tuple[str, int, int, float | None], ...]


def month(events: list[Ev], m: date) -> RefMonth:
    """Every monthly revenue number of the month starting on m."""
    lo, hi = month_bounds(m)
    start = paying(events, end_of_day_us(lo - timedelta(days=1)))
    end = paying(events, end_of_day_us(hi))
    new_orgs = [o for o in end if o not in start]
    churned_orgs = [o for o in start if o not in end]
    expanded = [o for o in end if o in start and end[o] > start[o]]
    contracted = [o for o in end if o in start and end[o] < start[o]]

    spend_total = 0
    spend_by_channel: dict[str, int] = {}
    for e in dedup(events):
        if e.event != "marketing.spend" or not lo <= e.day <= hi:
            continue
        props = json.loads(e.properties)
        amount = props.get("amount")
        if not is_json_integer(amount):
            continue
        spend_total += amount
        channel = props.get("channel")
        if isinstance(channel, str):
            spend_by_channel[channel] = spend_by_channel.get(channel, 0) + amount
    new_by_channel: dict[str, int] = {}
    for o in new_orgs:
        channel = acquisition_channel(events, o)
        if channel is not None:
            new_by_channel[channel] = new_by_channel.get(channel, 0) + 1
    channels = tuple(
        (
            c,
            spend_by_channel.get(c, 0),
            new_by_channel.get(c, 0),
            div(spend_by_channel.get(c, 0), new_by_channel.get(c, 0)),
        )
        for c in sorted(set(spend_by_channel) | set(new_by_channel))
    )

    mrr_start, mrr_end = sum(start.values()), sum(end.values())
    churn_rate = exact(len(churned_orgs), len(start))
    arpu_end = exact(mrr_end, len(end))
    ltv = None if arpu_end is None else exact(arpu_end, churn_rate)
    cac = exact(spend_total, len(new_orgs))
    previous, _ = signups_in(events, month_bounds(lo - timedelta(days=1))[0].replace(day=1))
    this, referral = signups_in(events, m)
    return RefMonth(
        month=m.strftime("%Y-%m"),
        mrr_start=mrr_start,
        mrr_end=mrr_end,
        paying_start=len(start),
        paying_end=len(end),
        new=sum(end[o] for o in new_orgs),
        new_orgs=len(new_orgs),
        expansion=sum(end[o] - start[o] for o in expanded),
        expansion_orgs=len(expanded),
        contraction=sum(start[o] - end[o] for o in contracted),
        contraction_orgs=len(contracted),
        churned=sum(start[o] for o in churned_orgs),
        churned_orgs=len(churned_orgs),
        churn_rate=div(len(churned_orgs), len(start)),
        arpu_end=div(mrr_end, len(end)),
        ltv=None if ltv is None else float(ltv),
        spend=spend_total,
        cac=None if cac is None else float(cac),
        ltv_to_cac=None if ltv is None else div(ltv, cac),
        payback_months=None if cac is None else div(cac, arpu_end),
        mrr_growth=div(mrr_end - mrr_start, mrr_start),
        signups=this,
        previous_signups=previous,
        referral_signups=referral,
        signup_growth=div(this - previous, previous),
        viral_coefficient=div(referral, previous),
        channels=channels,
    )


def months(events: list[Ev], first: date, last: date) -> list[RefMonth]:
    """Every calendar month overlapping [first, last], computed over the whole month."""
    out = []
    m = first.replace(day=1)
    while m <= last:
        out.append(month(events, m))
        m = month_bounds(m)[1] + timedelta(days=1)
    return out
