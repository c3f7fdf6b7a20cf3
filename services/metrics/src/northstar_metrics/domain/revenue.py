"""Revenue (spec/metrics.md "Revenue"): MRR per day, monthly movements, churn, LTV, CAC.

An org's *state* at an instant T is its latest (timestamp, then event_id) counted
`subscription.*` event with timestamp <= T; it pays that event's `mrr` when the event is
a `subscription.started` or `subscription.changed` with `mrr` > 0, and nothing otherwise.
Day d's state is taken at its last microsecond, so "timestamp <= end of d" is
"timestamp < start of d + 1".

Readings where the spec leaves a choice (each one what an analyst would expect):

- Counted events (events.md): a `subscription.*` without `org_id` is skipped, and so is
  a `subscription.started` / `subscription.changed` whose `mrr` is not a JSON integer
  >= 0; a skipped event leaves the org's previous state in force. `mrr = 0` is counted:
  the org is then not paying.
- "JSON integer" is the stored JSON type: `1200` counts, `1200.0`, `"1200"` and `true` do
  not. Ingest stores an integral protobuf `Struct` number as a JSON integer, so only a
  client that sends JSON text with `1200.0` gets the event skipped.
- `subscription.*` is every event name that starts with `subscription.`: an unknown one
  (say `subscription.paused`) with an `org_id` ends paying, like `subscription.canceled`.
- Movements are magnitudes (all >= 0): `mrr_end - mrr_start = new + expansion -
  contraction - churned`, each org compared only at the two ends of the month (an org
  that cancels and restarts inside the month is expansion, contraction or nothing).
- `marketing.spend` counts in the month of its timestamp when `amount` is a JSON
  integer (negative amounts, refunds, count as given). Its `channel` must be a string to
  count per channel; without one the spend counts only in the overall CAC.
- An org's acquisition channel is the string `channel` of the earliest `user.signup`
  event (any user, not only users' first signups) whose `org_id` is the org, over all
  time; when that event has no string `channel` the org has no acquisition channel.
- Per-channel CAC lists every channel with spend or with new orgs in the month.
- `growth(MRR, M)` uses MRR at the end of M and of M-1, the latter being M's `mrr_start`.
- "Signups in M" are users whose signup (earliest `user.signup` with a `user_id`) has
  its UTC day in M; `referral` is that signup's `channel` being exactly the string.
- Ratios over a zero (or absent) denominator are absent: LTV with no churn, LTV/CAC with
  a CAC of 0, payback with no paying org at the end of the month.
- Ratios are exact fractions of the month's integers, ratios of ratios included, rounded
  to a double once (`MonthRatios`): LTV:CAC that is 2 by hand is 2.0, not 1.9999999999999998.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.ratios import as_float, exact_ratio, ratio
from northstar_metrics.domain.signups import Signup
from northstar_metrics.domain.time import day_of, day_start_us

SUBSCRIPTION_PREFIX = "subscription."
PAYING_EVENTS = frozenset({"subscription.started", "subscription.changed"})
MARKETING_SPEND = "marketing.spend"
USER_SIGNUP = "user.signup"
REFERRAL = "referral"


def month_of(day: date) -> date:
    """The first day of the day's month."""
    return day.replace(day=1)


def next_month(month: date) -> date:
    """The first day of the month after the month starting on `month`."""
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    """The first day of the month before the month starting on `month`."""
    return (month - timedelta(days=1)).replace(day=1)


def months_overlapping(first: date, last: date) -> list[date]:
    """The first days of every calendar month that overlaps [first, last]."""
    months = []
    month = month_of(first)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """An org's state from one counted subscription event on; `mrr` 0 means not paying."""

    org_id: str
    ts_us: int
    event_id: str
    mrr: int


def json_integer(value: object) -> int | None:
    """A decoded JSON value that is an integer (not a float, not a bool); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def text_value(value: object) -> str | None:
    """A decoded JSON value that is a string; None otherwise."""
    return value if isinstance(value, str) else None


def counted_state(
    event: str, org_id: str, ts_us: int, event_id: str, mrr: object
) -> SubscriptionState | None:
    """The state a subscription event sets (`mrr`: its decoded property), or None if skipped."""
    if not event.startswith(SUBSCRIPTION_PREFIX) or not org_id:
        return None
    paid = 0
    if event in PAYING_EVENTS:
        value = json_integer(mrr)
        if value is None or value < 0:
            return None
        paid = value
    return SubscriptionState(org_id, ts_us, event_id, paid)


def subscription_state(row: EventRow) -> SubscriptionState | None:
    """The state a subscription event sets, or None when revenue skips the event."""
    return counted_state(row.event, row.org_id, row.ts_us, row.event_id, row.properties.get("mrr"))


def subscription_states(rows: Iterable[EventRow]) -> list[SubscriptionState]:
    """The counted subscription events as states, in the order rule (timestamp, event_id)."""
    states = [s for s in map(subscription_state, rows) if s is not None]
    states.sort(key=lambda s: (s.ts_us, s.event_id))
    return states


@dataclass(frozen=True, slots=True)
class Spend:
    """One counted `marketing.spend`: its day, channel (None: no string one) and amount."""

    day: date
    channel: str | None
    amount: int


def counted_spend(day: date, channel: object, amount: object) -> Spend | None:
    """A `marketing.spend` from its decoded properties; None when `amount` is no integer."""
    value = json_integer(amount)
    if value is None:
        return None
    return Spend(day, text_value(channel), value)


def marketing_spend(rows: Iterable[EventRow]) -> list[Spend]:
    """The `marketing.spend` events with an integer `amount`."""
    spend = []
    for row in rows:
        if row.event == MARKETING_SPEND:
            s = counted_spend(row.day, row.properties.get("channel"), row.properties.get("amount"))
            if s is not None:
                spend.append(s)
    return spend


def acquisition_channels(rows: Iterable[EventRow]) -> dict[str, str | None]:
    """Per org: the string `channel` of the earliest `user.signup` carrying its org_id.

    A signup without a user_id is not "of any user" and lacks the field its KPIs need
    (events.md): it is left out, as data quality counts it among `missing_fields`.
    """
    earliest: dict[str, EventRow] = {}
    for row in rows:
        if row.event != USER_SIGNUP or not row.org_id or not row.user_id:
            continue
        seen = earliest.get(row.org_id)
        if seen is None or row.order_key < seen.order_key:
            earliest[row.org_id] = row
    return {org: text_value(row.properties.get("channel")) for org, row in earliest.items()}


@dataclass(frozen=True, slots=True)
class MonthSignups:
    """Users whose signup falls in a month, and those of them with channel `referral`."""

    signups: int = 0
    referral: int = 0


def signups_by_month(signups: Iterable[Signup]) -> dict[date, MonthSignups]:
    """Signups (users' first `user.signup`) counted by the month of their day."""
    counts: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for s in signups:
        c = counts[month_of(s.day)]
        c[0] += 1
        if s.channel == REFERRAL:
            c[1] += 1
    return {month: MonthSignups(c[0], c[1]) for month, c in counts.items()}


def signups_by_month_of_days(days: Iterable[tuple[date, int, int]]) -> dict[date, MonthSignups]:
    """Monthly signups from (day, signups, referral signups) counts."""
    counts: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for day, total, referral in days:
        c = counts[month_of(day)]
        c[0] += total
        c[1] += referral
    return {month: MonthSignups(c[0], c[1]) for month, c in counts.items()}


@dataclass(frozen=True, slots=True)
class RevenueFacts:
    """What revenue reads from a tenant's events, reduced to the counted facts."""

    states: tuple[SubscriptionState, ...]
    spend: tuple[Spend, ...]
    acquisition: dict[str, str | None]
    signups: dict[date, MonthSignups]

    @classmethod
    def from_rows(cls, rows: Iterable[EventRow], signups: dict[str, Signup]) -> RevenueFacts:
        """Facts from subscription, marketing.spend and user.signup rows, and the signups."""
        rows = list(rows)
        return cls(
            states=tuple(subscription_states(rows)),
            spend=tuple(marketing_spend(rows)),
            acquisition=acquisition_channels(rows),
            signups=signups_by_month(signups.values()),
        )


def paying_at(
    states: Sequence[SubscriptionState], cutoffs: Iterable[int]
) -> dict[int, dict[str, int]]:
    """Per cutoff instant: the paying orgs and their MRR, from the states before it.

    A cutoff is exclusive (the state at the end of day d is the one at cutoff
    `day_start_us(d + 1)`); `states` must be in the order rule.
    """
    snapshots: dict[int, dict[str, int]] = {}
    current: dict[str, int] = {}
    i = 0
    for cutoff in sorted(set(cutoffs)):
        while i < len(states) and states[i].ts_us < cutoff:
            s = states[i]
            if s.mrr > 0:
                current[s.org_id] = s.mrr
            else:
                current.pop(s.org_id, None)
            i += 1
        snapshots[cutoff] = dict(current)
    return snapshots


@dataclass(frozen=True, slots=True)
class RevenueDay:
    """MRR, paying orgs and ARPU at the end of one day."""

    day: date
    mrr: int
    paying_orgs: int
    arpu: float | None


def daily_revenue(states: Sequence[SubscriptionState], first: date, last: date) -> list[RevenueDay]:
    """One RevenueDay per day of [first, last]; `states` must be in the order rule."""
    current: dict[str, int] = {}
    mrr = paying = 0
    i = 0
    days = []
    day = first
    while day <= last:
        cutoff = day_start_us(day + timedelta(days=1))
        while i < len(states) and states[i].ts_us < cutoff:
            s = states[i]
            before = current.get(s.org_id, 0)
            mrr += s.mrr - before
            paying += (s.mrr > 0) - (before > 0)
            current[s.org_id] = s.mrr
            i += 1
        days.append(RevenueDay(day, mrr, paying, ratio(mrr, paying)))
        day += timedelta(days=1)
    return days


def mrr_steps(states: Sequence[SubscriptionState]) -> dict[date, tuple[int, int]]:
    """One org's changes of (MRR, paying) at the end of each day; states in the order rule.

    Summed over the orgs and over the days <= d they are (MRR(d), paying_orgs(d)): the
    state at the end of d is the latest one with a timestamp on a day <= d.
    """
    steps: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    mrr = 0
    for s in states:
        if s.mrr != mrr:
            step = steps[day_of(s.ts_us)]
            step[0] += s.mrr - mrr
            step[1] += (s.mrr > 0) - (mrr > 0)
            mrr = s.mrr
    return {d: (m, p) for d, (m, p) in steps.items() if m or p}


def daily_revenue_of_steps(
    steps: Iterable[tuple[date, int, int]], first: date, last: date
) -> list[RevenueDay]:
    """`daily_revenue` from the (day, MRR, paying) steps summed over orgs (up to `last`)."""
    by_day: dict[date, tuple[int, int]] = {}
    mrr = paying = 0
    for day, m, p in steps:
        if day < first:
            mrr += m
            paying += p
        elif day <= last:
            by_day[day] = (m, p)
    days = []
    day = first
    while day <= last:
        m, p = by_day.get(day, (0, 0))
        mrr += m
        paying += p
        days.append(RevenueDay(day, mrr, paying, ratio(mrr, paying)))
        day += timedelta(days=1)
    return days


def mrr_by_day(rows: list[EventRow], first: date, last: date) -> dict[date, int]:
    """MRR at the end of each day of [first, last], from a tenant's subscription events."""
    return {d.day: d.mrr for d in daily_revenue(subscription_states(rows), first, last)}


@dataclass(frozen=True, slots=True)
class ChannelCac:
    """One acquisition channel's spend, new paying orgs and CAC in a month."""

    channel: str
    spend: int
    new_orgs: int
    cac: float | None


@dataclass(frozen=True, slots=True)
class MonthRevenue:
    """A month's MRR at both ends, its movements and the ratios built on them.

    The ratios are kept exact (`ratios`); each float attribute rounds one of them once.
    """

    month: date
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
    spend: int
    signups: int
    previous_signups: int
    referral_signups: int
    channels: tuple[ChannelCac, ...]
    ratios: MonthRatios

    @property
    def churn_rate(self) -> float | None:
        return as_float(self.ratios.churn_rate)

    @property
    def arpu_end(self) -> float | None:
        return as_float(self.ratios.arpu_end)

    @property
    def ltv(self) -> float | None:
        return as_float(self.ratios.ltv)

    @property
    def cac(self) -> float | None:
        return as_float(self.ratios.cac)

    @property
    def ltv_to_cac(self) -> float | None:
        return as_float(self.ratios.ltv_to_cac)

    @property
    def payback_months(self) -> float | None:
        return as_float(self.ratios.payback_months)

    @property
    def mrr_growth(self) -> float | None:
        return as_float(self.ratios.mrr_growth)

    @property
    def signup_growth(self) -> float | None:
        return as_float(self.ratios.signup_growth)

    @property
    def viral_coefficient(self) -> float | None:
        return as_float(self.ratios.viral_coefficient)


@dataclass(frozen=True, slots=True)
class MonthRatios:
    """A month's ratios, exact: each is built from the month's integer counts and money,
    a ratio of ratios included, so that rounding happens once, at the end."""

    churn_rate: Fraction | None
    arpu_end: Fraction | None
    ltv: Fraction | None
    cac: Fraction | None
    ltv_to_cac: Fraction | None
    payback_months: Fraction | None
    mrr_growth: Fraction | None
    signup_growth: Fraction | None
    viral_coefficient: Fraction | None

    @classmethod
    def of(
        cls,
        *,
        churned_orgs: int,
        paying_start: int,
        mrr_start: int,
        mrr_end: int,
        paying_end: int,
        spend: int,
        new_orgs: int,
        signups: int,
        previous_signups: int,
        referral_signups: int,
    ) -> MonthRatios:
        churn_rate = exact_ratio(churned_orgs, paying_start)
        arpu_end = exact_ratio(mrr_end, paying_end)
        ltv = None if arpu_end is None else exact_ratio(arpu_end, churn_rate)
        cac = exact_ratio(spend, new_orgs)
        return cls(
            churn_rate=churn_rate,
            arpu_end=arpu_end,
            ltv=ltv,
            cac=cac,
            ltv_to_cac=None if ltv is None else exact_ratio(ltv, cac),
            payback_months=None if cac is None else exact_ratio(cac, arpu_end),
            mrr_growth=exact_ratio(mrr_end - mrr_start, mrr_start),
            signup_growth=exact_ratio(signups - previous_signups, previous_signups),
            viral_coefficient=exact_ratio(referral_signups, previous_signups),
        )


@dataclass(frozen=True, slots=True)
class Movements:
    """A month's movements, each org compared at the month's two ends, summed over orgs.

    `new_by_channel`: the new paying orgs per acquisition channel (orgs without one
    are only in `new_orgs`).
    """

    new: int = 0
    new_orgs: int = 0
    expansion: int = 0
    expansion_orgs: int = 0
    contraction: int = 0
    contraction_orgs: int = 0
    churned: int = 0
    churned_orgs: int = 0
    new_by_channel: Mapping[str, int] = field(default_factory=dict)


def movements(
    start: Mapping[str, int], end: Mapping[str, int], acquisition: Mapping[str, str | None]
) -> Movements:
    """The movements between the paying orgs (org -> MRR) at a month's two ends."""
    new = expansion = contraction = churned = 0
    new_orgs = expansion_orgs = contraction_orgs = churned_orgs = 0
    by_channel: dict[str, int] = defaultdict(int)
    for org, mrr in end.items():
        before = start.get(org)
        if before is None:
            new += mrr
            new_orgs += 1
            channel = acquisition.get(org)
            if channel is not None:
                by_channel[channel] += 1
        elif mrr > before:
            expansion += mrr - before
            expansion_orgs += 1
        elif mrr < before:
            contraction += before - mrr
            contraction_orgs += 1
    for org, mrr in start.items():
        if org not in end:
            churned += mrr
            churned_orgs += 1
    return Movements(
        new,
        new_orgs,
        expansion,
        expansion_orgs,
        contraction,
        contraction_orgs,
        churned,
        churned_orgs,
        dict(by_channel),
    )


def org_month_ends(states: Sequence[SubscriptionState]) -> dict[date, tuple[int, int]]:
    """One org's (MRR at the start, MRR at the end) of each month in which they differ.

    Only a month holding one of the org's states can differ; `states` in the order rule.
    Summed over orgs these give every month's `Movements` (a start of 0 is a new org,
    an end of 0 a churned one).
    """
    ends: dict[date, tuple[int, int]] = {}
    mrr = 0
    for s in states:
        month = month_of(day_of(s.ts_us))
        start = ends[month][0] if month in ends else mrr
        ends[month] = (start, s.mrr)
        mrr = s.mrr
    return {m: e for m, e in ends.items() if e[0] != e[1]}


@dataclass(frozen=True, slots=True)
class MonthEnds:
    """MRR and paying orgs at a month's start and at its end."""

    mrr_start: int
    paying_start: int
    mrr_end: int
    paying_end: int


def summarize(
    month: date,
    ends: MonthEnds,
    moves: Movements,
    spend: Sequence[Spend],
    signups: Mapping[date, MonthSignups],
) -> MonthRevenue:
    """One month from its two ends, its movements, its counted spend and the signups."""
    channel_spend: dict[str, int] = defaultdict(int)
    for s in spend:
        if s.channel is not None:
            channel_spend[s.channel] += s.amount
    channel_new = moves.new_by_channel
    channels = tuple(
        ChannelCac(
            c,
            channel_spend[c],
            channel_new.get(c, 0),
            ratio(channel_spend[c], channel_new.get(c, 0)),
        )
        for c in sorted(channel_spend.keys() | channel_new.keys())
    )
    total_spend = sum(s.amount for s in spend)
    this = signups.get(month, MonthSignups())
    previous = signups.get(previous_month(month), MonthSignups())
    return MonthRevenue(
        month=month,
        mrr_start=ends.mrr_start,
        mrr_end=ends.mrr_end,
        paying_start=ends.paying_start,
        paying_end=ends.paying_end,
        new=moves.new,
        new_orgs=moves.new_orgs,
        expansion=moves.expansion,
        expansion_orgs=moves.expansion_orgs,
        contraction=moves.contraction,
        contraction_orgs=moves.contraction_orgs,
        churned=moves.churned,
        churned_orgs=moves.churned_orgs,
        spend=total_spend,
        signups=this.signups,
        previous_signups=previous.signups,
        referral_signups=this.referral,
        channels=channels,
        ratios=MonthRatios.of(
            churned_orgs=moves.churned_orgs,
            paying_start=ends.paying_start,
            mrr_start=ends.mrr_start,
            mrr_end=ends.mrr_end,
            paying_end=ends.paying_end,
            spend=total_spend,
            new_orgs=moves.new_orgs,
            signups=this.signups,
            previous_signups=previous.signups,
            referral_signups=this.referral,
        ),
    )


def spend_by_month(spend: Iterable[Spend]) -> dict[date, list[Spend]]:
    """The counted spend grouped by the month of its day."""
    out: dict[date, list[Spend]] = defaultdict(list)
    for s in spend:
        out[month_of(s.day)].append(s)
    return out


def month_summaries(facts: RevenueFacts, months: Sequence[date]) -> list[MonthRevenue]:
    """A MonthRevenue per month (each given by its first day), in one pass over the states."""
    bounds = {m: (day_start_us(m), day_start_us(next_month(m))) for m in months}
    snapshots = paying_at(facts.states, (b for pair in bounds.values() for b in pair))
    spend = spend_by_month(facts.spend)
    out = []
    for m in months:
        start, end = snapshots[bounds[m][0]], snapshots[bounds[m][1]]
        ends = MonthEnds(sum(start.values()), len(start), sum(end.values()), len(end))
        moves = movements(start, end, facts.acquisition)
        out.append(summarize(m, ends, moves, spend.get(m, []), facts.signups))
    return out


def month_summary(rows: list[EventRow], signups: dict[str, Signup], month: date) -> MonthRevenue:
    """Month `month` (its first day) from the tenant's subscription.*, spend and signup rows."""
    return month_summaries(RevenueFacts.from_rows(rows, signups), [month_of(month)])[0]
