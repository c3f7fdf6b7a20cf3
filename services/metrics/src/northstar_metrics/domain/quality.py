"""Data quality of the events received in a period (spec/metrics.md, "Data quality").

The period selects events by the UTC day of their `received_at`.

- `received` = accepted + duplicates + rejected.
- `accepted`: events stored as the first of their id.
- `duplicates`: repeats the projection found in the log plus the events
  ingest answered DUPLICATE without storing them again (whole-message
  repeats caught by the log's deduplication window); the two never overlap.
- `rejected`, with reasons: ingest's per-request tallies by (field, rule).
- `id_conflicts`: duplicates whose content differed from the first.
- `missing_fields`: accepted well-known events lacking what their built-in
  metrics need, per events.md: the "fields the KPIs need" column (`user_id`,
  `org_id`) plus the property rules the text names (`workflow.run` without
  `status` success/failed, `subscription.started`/`changed` without an
  integer `mrr >= 0`, `marketing.spend` without an integer `amount`). Each
  event counts once however much it lacks. Reading: properties the text does
  not name as making a metric skip the event (`plan`, `workflow_id`,
  `experiment`, ...) are not counted.
- `orphan_activity`: distinct users with an accepted event in the period and
  no `user.signup` at all (received at any time).
- `clock_skew`: events of requests whose `sent_at` is set and more than
  3,600 s away from `received_at` (strictly), in either direction: accepted
  ones from the events, rejected ones from ingest's request tallies.
  Duplicates of skewed requests are left out: the first copy counts. A late
  event (old timestamp, no or honest `sent_at`) is not skew.
- `freshness`: seconds from the newest `received_at` of the tenant's
  accepted events (any period) to the query's time.
- `suspected_bots`: users with more than 600 of the period's accepted events
  whose timestamps lie within 60 seconds of each other (last - first <= 60 s,
  both ends inclusive as the spec's ranges are).

Score = 100 minus the sum of the penalties below, never below 0, absent when
nothing was received. Each issue costs `weight * min(1, share / full_at)`:
nothing when clean, the whole weight from `full_at` on, linearly between, so
the score only falls as any count grows. A zero denominator costs nothing.
Freshness is not scored: it describes the moment of the query, not the
period, and a past period must keep its score.

| issue            | share                         | weight | full_at |
|------------------|-------------------------------|--------|---------|
| rejected         | rejected / received           | 25     | 10 %    |
| missing_fields   | missing_fields / accepted     | 20     | 10 %    |
| id_conflicts     | id_conflicts / received       | 10     | 1 %     |
| duplicates       | duplicates / received         | 5      | 20 %    |
| clock_skew       | clock_skew / received         | 10     | 10 %    |
| orphan_activity  | orphan_activity / active users| 15     | 20 %    |
| suspected_bots   | suspected_bots / active users | 15     | 1 %     |
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from northstar_metrics.domain.events import EventRow, integer_property
from northstar_metrics.domain.ratios import decimal
from northstar_metrics.domain.revenue import SUBSCRIPTION_PREFIX

SKEW_LIMIT_US = 3_600 * 1_000_000
BOT_WINDOW_US = 60 * 1_000_000
BOT_MIN_EVENTS = 601
# A window of 60 s lies within two consecutive UTC days: a suspected bot has at least
# this many events on one activity day (migration 0013 indexes those days).
BUSY_DAY_MIN_EVENTS = -(-BOT_MIN_EVENTS // 2)
MAX_LISTED_BOTS = 100

NEEDS_USER = frozenset(
    {
        "user.signup",
        "integration.connected",
        "workflow.created",
        "workflow.run",
        "experiment.exposure",
    }
)
NEEDS_ORG = frozenset(
    {"workflow.run", "subscription.started", "subscription.changed", "subscription.canceled"}
)
_RUN_STATUSES = frozenset({"success", "failed"})
WELL_KNOWN = NEEDS_USER | NEEDS_ORG | {"marketing.spend"}


def is_well_known(event: str) -> bool:
    """Whether missing_fields has anything to check on this event name."""
    return event in WELL_KNOWN or needs_org(event)


def needs_org(event: str) -> bool:
    """Whether the event's built-in metrics need its `org_id`.

    events.md: `org_id` is "required for `workflow.run` and `subscription.*`": every name
    with the prefix (revenue counts an unknown one, say `subscription.paused`, when it
    has an org), not only the three names the table lists.
    """
    return event in NEEDS_ORG or event.startswith(SUBSCRIPTION_PREFIX)


def missing_fields(row: EventRow) -> list[str]:
    """The fields and properties a well-known event lacks for its built-in metrics."""
    lacking: list[str] = []
    if row.event in NEEDS_USER and not row.user_id:
        lacking.append("user_id")
    if needs_org(row.event) and not row.org_id:
        lacking.append("org_id")
    if row.event == "workflow.run":
        status = row.properties.get("status")
        if not (isinstance(status, str) and status in _RUN_STATUSES):
            lacking.append("properties.status")
    if row.event in ("subscription.started", "subscription.changed"):
        mrr = integer_property(row, "mrr")
        if mrr is None or mrr < 0:
            lacking.append("properties.mrr")
    if row.event == "marketing.spend" and integer_property(row, "amount") is None:
        lacking.append("properties.amount")
    return lacking


@dataclass(frozen=True, slots=True)
class MissingFields:
    """Incomplete well-known events of one name: how many, and per lacking field."""

    event: str
    events: int
    fields: dict[str, int]


def tally_missing_fields(rows: Iterable[EventRow]) -> list[MissingFields]:
    """Incomplete events per name (in name order); complete events are ignored."""
    events: Counter[str] = Counter()
    fields: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        lacking = missing_fields(row)
        if lacking:
            events[row.event] += 1
            fields[row.event].update(lacking)
    return [
        MissingFields(name, events[name], dict(sorted(fields[name].items())))
        for name in sorted(events)
    ]


def missing_fields_of(counts: Iterable[tuple[str, str, int]]) -> list[MissingFields]:
    """`tally_missing_fields` from (event, field, events) sums; field '' counts the events."""
    events: dict[str, int] = {}
    fields: dict[str, dict[str, int]] = defaultdict(dict)
    for event, field, n in counts:
        if field:
            fields[event][field] = n
        else:
            events[event] = n
    return [
        MissingFields(name, events[name], dict(sorted(fields[name].items())))
        for name in sorted(events)
        if events[name]
    ]


def is_clock_skewed(received_at_us: int, sent_at_us: int) -> bool:
    """A request's sent_at (0: none) more than an hour away from its receive time."""
    return sent_at_us != 0 and abs(received_at_us - sent_at_us) > SKEW_LIMIT_US


def max_events_within(timestamps_us: Sequence[int], window_us: int = BOT_WINDOW_US) -> int:
    """The most timestamps whose last minus first is at most `window_us` (two pointers)."""
    ordered = sorted(timestamps_us)
    best = 0
    start = 0
    for end, ts in enumerate(ordered):
        while ts - ordered[start] > window_us:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass(frozen=True, slots=True)
class SuspectedBot:
    """A user with more than 600 events within 60 seconds."""

    user_id: str
    max_events_in_window: int


def suspected_bots(timestamps_by_user: Mapping[str, Sequence[int]]) -> list[SuspectedBot]:
    """Users over the bot limit, most events in a window first, then by user_id."""
    bots = [
        SuspectedBot(user, peak)
        for user, stamps in timestamps_by_user.items()
        if len(stamps) >= BOT_MIN_EVENTS and (peak := max_events_within(stamps)) >= BOT_MIN_EVENTS
    ]
    return sorted(bots, key=lambda b: (-b.max_events_in_window, b.user_id))


@dataclass(frozen=True, slots=True)
class Rejections:
    """Rejected events: by (field, rule), and those of clock-skewed requests."""

    by_reason: dict[tuple[str, str], int]
    skewed: int

    @property
    def total(self) -> int:
        """Every rejected event."""
        return sum(self.by_reason.values())

    def reasons(self) -> list[tuple[str, str, int]]:
        """(field, rule, count), largest count first, then field and rule."""
        return sorted(
            ((f, r, n) for (f, r), n in self.by_reason.items()), key=lambda x: (-x[2], x[0], x[1])
        )


@dataclass(frozen=True, slots=True)
class RequestTally:
    """What ingest told about one request: its clocks and its rejections."""

    received_at_us: int
    sent_at_us: int
    rejections: Sequence[tuple[str, str, int]]


def tally_rejections(requests: Iterable[RequestTally]) -> Rejections:
    """Sum the requests' rejections by reason; count those in clock-skewed requests."""
    by_reason: Counter[tuple[str, str]] = Counter()
    skewed = 0
    for request in requests:
        rejected = 0
        for field, rule, count in request.rejections:
            by_reason[(field, rule)] += count
            rejected += count
        if is_clock_skewed(request.received_at_us, request.sent_at_us):
            skewed += rejected
    return Rejections(dict(by_reason), skewed)


class Issue(enum.Enum):
    """A data-quality issue that costs score, in table order."""

    REJECTED = "rejected"
    MISSING_FIELDS = "missing_fields"
    ID_CONFLICTS = "id_conflicts"
    DUPLICATES = "duplicates"
    CLOCK_SKEW = "clock_skew"
    ORPHAN_ACTIVITY = "orphan_activity"
    SUSPECTED_BOTS = "suspected_bots"


# issue -> (weight, share at which the whole weight is lost); see the module docstring.
PENALTIES: dict[Issue, tuple[float, float]] = {
    Issue.REJECTED: (25.0, 0.10),
    Issue.MISSING_FIELDS: (20.0, 0.10),
    Issue.ID_CONFLICTS: (10.0, 0.01),
    Issue.DUPLICATES: (5.0, 0.20),
    Issue.CLOCK_SKEW: (10.0, 0.10),
    Issue.ORPHAN_ACTIVITY: (15.0, 0.20),
    Issue.SUSPECTED_BOTS: (15.0, 0.01),
}


@dataclass(frozen=True, slots=True)
class QualityCounts:
    """The counts of a period that the score is computed from."""

    accepted: int
    duplicates: int
    rejected: int
    id_conflicts: int
    missing_fields: int
    active_users: int
    orphan_activity: int
    clock_skew: int
    suspected_bots: int

    @property
    def received(self) -> int:
        """accepted + duplicates + rejected."""
        return self.accepted + self.duplicates + self.rejected


@dataclass(frozen=True, slots=True)
class Penalty:
    """What one issue costs: weight * min(1, share / full_at)."""

    issue: Issue
    share: float
    weight: float
    full_at: float
    points: float


def _share(numerator: int, denominator: int) -> Fraction:
    return Fraction(numerator, denominator) if denominator else Fraction(0)


def _exact_penalties(counts: QualityCounts) -> list[tuple[Issue, Fraction, Fraction]]:
    """(issue, share, points) in table order, exact: the weights and levels are the
    decimals the table writes, so a score that is 90 by hand is 90.0."""
    shares = {
        Issue.REJECTED: _share(counts.rejected, counts.received),
        Issue.MISSING_FIELDS: _share(counts.missing_fields, counts.accepted),
        Issue.ID_CONFLICTS: _share(counts.id_conflicts, counts.received),
        Issue.DUPLICATES: _share(counts.duplicates, counts.received),
        Issue.CLOCK_SKEW: _share(counts.clock_skew, counts.received),
        Issue.ORPHAN_ACTIVITY: _share(counts.orphan_activity, counts.active_users),
        Issue.SUSPECTED_BOTS: _share(counts.suspected_bots, counts.active_users),
    }
    out = []
    for issue, (weight, full_at) in PENALTIES.items():
        share = shares[issue]
        points = decimal(weight) * min(Fraction(1), share / decimal(full_at))
        out.append((issue, share, points))
    return out


def penalties(counts: QualityCounts) -> list[Penalty]:
    """Every issue's penalty, in table order."""
    return [
        Penalty(issue, float(share), PENALTIES[issue][0], PENALTIES[issue][1], float(points))
        for issue, share, points in _exact_penalties(counts)
    ]


def score(counts: QualityCounts) -> float | None:
    """100 minus the penalties, at least 0; None when nothing was received."""
    if counts.received == 0:
        return None
    lost = sum((points for _, _, points in _exact_penalties(counts)), Fraction(0))
    return float(max(Fraction(0), 100 - lost))
