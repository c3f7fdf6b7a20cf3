"""Activation and time to first value (spec/metrics.md), over the signups of a day range.

Readings of the spec where it is silent, chosen as an analyst would expect:

- The signups of a range are the users whose signup (earliest `user.signup`) day is in
  `[first, last]`; a later `user.signup` of the same user never makes it a signup again.
- Every stage event must carry the signup's `user_id`. Only the `workflow.run` status is
  required (events.md: a run without a valid status is left out of TTFV and fast
  activation); a run without `org_id` still counts here (org_id only matters for MAO).
  `workflow.created` without `workflow_id` and `integration.connected` without
  `integration` count: events.md lists no skip for them and no number here reads them.
- A stage has no deadline: its first event at or after `signup_ts` counts however late it
  comes (activation and fast activation have their own windows, 7 days and 1,800 s).
- Activation is "the first `workflow.created` at or after signup is at most 7 days after
  it", which is the same as "has one in `[signup_ts, signup_ts + 7 days]`".
- Paid conversion reads the org of the signup event (`org_id`) and its `plan` property
  (the string `free`); any `subscription.started` of that org in
  `[signup_ts, signup_ts + 30 days]` converts, whatever its `mrr`: the `mrr` skip of
  events.md is a revenue rule (MRR), and the conversion is about the subscription starting.
- Breakdown by plan or channel: signups whose signup event lacks the property (or has a
  non-string one) form their own segment, with no value.
- Percentiles are numpy's default (`linear`), including its interpolation formula, over
  exact microsecond durations divided by 10^6.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.ratios import ratio
from northstar_metrics.domain.signups import Signup

US_PER_SECOND = 1_000_000
ACTIVATION_WINDOW_US = 7 * 86_400 * US_PER_SECOND
FAST_ACTIVATION_US = 1_800 * US_PER_SECOND
PAID_CONVERSION_WINDOW_US = 30 * 86_400 * US_PER_SECOND
FREE_PLAN = "free"

INTEGRATION_CONNECTED = "integration.connected"
WORKFLOW_CREATED = "workflow.created"
WORKFLOW_RUN = "workflow.run"
SUBSCRIPTION_STARTED = "subscription.started"
STAGE_EVENTS = (INTEGRATION_CONNECTED, WORKFLOW_CREATED, WORKFLOW_RUN)


class CohortAttribute(Enum):
    """The signup attribute an activation breakdown splits by."""

    PLAN = "plan"
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class SignupProgress:
    """One signup and when it first reached each stage, at or after its signup."""

    signup: Signup
    integration_connected_us: int | None
    workflow_created_us: int | None
    workflow_run_succeeded_us: int | None
    converted: bool

    @property
    def activated(self) -> bool:
        """A `workflow.created` within 7 days of signup."""
        first = self.workflow_created_us
        return first is not None and first - self.signup.ts_us <= ACTIVATION_WINDOW_US

    @property
    def fast_activated(self) -> bool:
        """The first successful run at most 1,800 s after signup."""
        first = self.workflow_run_succeeded_us
        return first is not None and first - self.signup.ts_us <= FAST_ACTIVATION_US

    @property
    def paid_eligible(self) -> bool:
        """The signup event has plan `free` and an org: the paid-conversion denominator."""
        return is_paid_eligible(self.signup)


@dataclass(frozen=True, slots=True)
class TimeToValue:
    """Seconds from signup to one stage over the signups that reached it."""

    reached: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True, slots=True)
class ActivationSummary:
    """Every activation number of one set of signups, numerators and denominators."""

    signups: int
    activated: int
    activation_rate: float | None
    integration_connected: TimeToValue
    workflow_created: TimeToValue
    workflow_run_succeeded: TimeToValue
    fast_activated: int
    signup_to_value_30m: float | None
    free_signups_with_org: int
    paid_conversions: int
    paid_conversion_rate: float | None


@dataclass(frozen=True, slots=True)
class ActivationSegment:
    """The summary of the signups with one value of the breakdown attribute (None: none)."""

    value: str | None
    summary: ActivationSummary


def percentile(values: Sequence[float], q: float) -> float | None:
    """numpy's default (`linear`) quantile q of values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    below, above = percentile_ranks(len(ordered), q)
    return interpolate(len(ordered), q, ordered[below], ordered[above])


def percentile_ranks(n: int, q: float) -> tuple[int, int]:
    """The 0-based ranks of the two order statistics numpy interpolates between."""
    below = math.floor((n - 1) * q)
    return below, min(below + 1, n - 1)


def interpolate(n: int, q: float, a: float, b: float) -> float:
    """numpy's linear quantile q of n values whose order statistics at the ranks are a, b."""
    index = (n - 1) * q
    weight = index - math.floor(index)
    # numpy's _lerp interpolates from the nearer end, so ours matches it to the last bit.
    if weight >= 0.5:
        return b - (b - a) * (1 - weight)
    return a + (b - a) * weight


def is_successful_run(row: EventRow) -> bool:
    """A `workflow.run` whose status is `success` (a valid status, by events.md)."""
    return row.event == WORKFLOW_RUN and row.properties.get("status") == "success"


def is_paid_eligible(signup: Signup) -> bool:
    """The signup event has plan `free` and an org_id."""
    return signup.plan == FREE_PLAN and bool(signup.org_id)


def signups_in_range(signups: Mapping[str, Signup], first: date, last: date) -> list[Signup]:
    """The signups whose signup day is in [first, last], by user id."""
    return sorted((s for s in signups.values() if first <= s.day <= last), key=lambda s: s.user_id)


def _stage_of(row: EventRow) -> int | None:
    if row.event == INTEGRATION_CONNECTED:
        return 0
    if row.event == WORKFLOW_CREATED:
        return 1
    if is_successful_run(row):
        return 2
    return None


def paid_conversions(signups: Iterable[Signup], rows: Iterable[EventRow]) -> set[str]:
    """Users among the eligible signups whose org started a subscription within 30 days."""
    starts: dict[str, list[int]] = {}
    for r in rows:
        if r.event == SUBSCRIPTION_STARTED and r.org_id:
            starts.setdefault(r.org_id, []).append(r.ts_us)
    converted = set()
    for s in signups:
        if not is_paid_eligible(s):
            continue
        end = s.ts_us + PAID_CONVERSION_WINDOW_US
        if any(s.ts_us <= t <= end for t in starts.get(s.org_id, ())):
            converted.add(s.user_id)
    return converted


def progress(
    signups: Mapping[str, Signup], rows: Iterable[EventRow], first: date, last: date
) -> list[SignupProgress]:
    """Each signup of [first, last] with its first stage times and its paid conversion.

    `rows` must hold the user's stage events (`integration.connected`,
    `workflow.created`, `workflow.run`) and the `subscription.started` events; others
    are ignored.
    """
    cohort = signups_in_range(signups, first, last)
    members = {s.user_id: s for s in cohort}
    firsts: dict[str, list[int | None]] = {s.user_id: [None, None, None] for s in cohort}
    starts: list[EventRow] = []
    for r in rows:
        if r.event == SUBSCRIPTION_STARTED:
            starts.append(r)
            continue
        signup = members.get(r.user_id)
        stage = _stage_of(r)
        if signup is None or stage is None or r.ts_us < signup.ts_us:
            continue
        seen = firsts[r.user_id][stage]
        if seen is None or r.ts_us < seen:
            firsts[r.user_id][stage] = r.ts_us
    converted = paid_conversions(cohort, starts)
    return [
        SignupProgress(
            signup=s,
            integration_connected_us=firsts[s.user_id][0],
            workflow_created_us=firsts[s.user_id][1],
            workflow_run_succeeded_us=firsts[s.user_id][2],
            converted=s.user_id in converted,
        )
        for s in cohort
    ]


def _time_to_value(signups: Sequence[SignupProgress], stage: int) -> TimeToValue:
    seconds = []
    for p in signups:
        reached = (
            p.integration_connected_us,
            p.workflow_created_us,
            p.workflow_run_succeeded_us,
        )[stage]
        if reached is not None:
            seconds.append((reached - p.signup.ts_us) / US_PER_SECOND)
    return TimeToValue(len(seconds), percentile(seconds, 0.5), percentile(seconds, 0.9))


def summarize(signups: Sequence[SignupProgress]) -> ActivationSummary:
    """The activation numbers of a set of signups."""
    activated = sum(1 for p in signups if p.activated)
    fast = sum(1 for p in signups if p.fast_activated)
    eligible = [p for p in signups if p.paid_eligible]
    converted = sum(1 for p in eligible if p.converted)
    return ActivationSummary(
        signups=len(signups),
        activated=activated,
        activation_rate=ratio(activated, len(signups)),
        integration_connected=_time_to_value(signups, 0),
        workflow_created=_time_to_value(signups, 1),
        workflow_run_succeeded=_time_to_value(signups, 2),
        fast_activated=fast,
        signup_to_value_30m=ratio(fast, len(signups)),
        free_signups_with_org=len(eligible),
        paid_conversions=converted,
        paid_conversion_rate=ratio(converted, len(eligible)),
    )


def breakdown(
    signups: Sequence[SignupProgress], attribute: CohortAttribute
) -> list[ActivationSegment]:
    """One summary per attribute value, in string order, then the signups without one."""
    groups: dict[str | None, list[SignupProgress]] = {}
    for p in signups:
        value = p.signup.plan if attribute is CohortAttribute.PLAN else p.signup.channel
        groups.setdefault(value, []).append(p)
    values: list[str | None] = [*sorted(v for v in groups if v is not None)]
    if None in groups:
        values.append(None)
    return [ActivationSegment(v, summarize(groups[v])) for v in values]


def activation_counts(
    signups: dict[str, Signup], rows: list[EventRow], first: date, last: date
) -> tuple[int, int]:
    """(activated, signups) over the signups of [first, last]; rows as for `progress`."""
    cohort = progress(signups, rows, first, last)
    return sum(1 for p in cohort if p.activated), len(cohort)


def fast_activation_counts(
    signups: dict[str, Signup], rows: list[EventRow], first: date, last: date
) -> tuple[int, int]:
    """(first successful run within 1,800 s, signups) over the signups of [first, last]."""
    cohort = progress(signups, rows, first, last)
    return sum(1 for p in cohort if p.fast_activated), len(cohort)
