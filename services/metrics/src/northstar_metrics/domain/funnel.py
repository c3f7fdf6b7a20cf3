"""Funnels (spec/metrics.md, Funnels): each user's depth and measured chain, and the answer.

A *chain* of a user is a sequence of distinct events e1 … ek of that user matching steps
1 … k, with t(e1) <= … <= t(ek) (ties in any order, whatever their event_ids), t(ek) - t(e1)
<= W and t(e1)'s UTC day in the entry range. The user's depth is the longest chain's length.

Readings of the spec, chosen where it is silent:

- Only events with a user_id take part (funnels count users).
- The measured chain (for the times, the histogram and the breakdown value) is the
  lexicographically smallest chain of full depth, comparing events by the order rule
  (timestamp, then event_id): its e1 is the earliest e1 giving the depth, and each next event
  is the earliest one matching the step at or after the previous event's *timestamp* (an event
  at the same microsecond with a smaller event_id still qualifies, as the order is
  non-strict). Where that plain greedy choice would stop short of the depth (possible only
  when one event matches several steps at a shared timestamp, or when an exclusion
  disqualifies the greedy chain), the earliest event that still lets the chain reach the
  depth is taken; whenever plain greedy reaches the depth, both agree.
- Exclusion (event X between steps a and b): a chain that reaches step b is disqualified when
  the user has an event matching X with t(ea) < t(x) < t(eb), strictly (an X at the same
  microsecond as ea or eb does not count; an event of the chain itself counts if it matches
  X). A chain shorter than b is never disqualified by it, so a user who did X after step a
  still reached a, and may reach b through another chain.
- Conversion of step 1 (from previous and from first) is 1 when anyone entered; every
  conversion is absent over a zero denominator; the median is absent over no users.
- Breakdown: a user counts under the value of its measured chain's e1; `$none` for an e1
  lacking the property (or holding null). Values are labelled as in trends (filters.py
  `breakdown_label`), so a string "1" and the number 1 share a bucket.
- Histogram: durations t(e_to) - t(e_from) on the measured chain of every user reaching
  `to_step`; buckets half-open [start, end). Automatic buckets begin at the whole second at
  or below the shortest duration and have one whole-second width, the smallest putting the
  longest duration in the last bucket; they are computed once over all users, so the
  breakdown histograms share the overall edges.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from operator import itemgetter
from typing import Any, NamedTuple

from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.filters import (
    NONE_LABEL,
    EventMatcher,
    Predicate,
    breakdown_label,
    compile_filters,
)
from northstar_metrics.domain.ratios import ratio
from northstar_metrics.domain.time import day_start_us

US = 1_000_000
DEFAULT_WINDOW_US = 7 * 86_400 * US
MAX_STEPS = 10
_NEVER = 1 << 62  # a deadline that no timestamp reaches


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Events matching `matcher` disqualify a chain between from_step and to_step (1-based)."""

    matcher: EventMatcher
    from_step: int
    to_step: int


@dataclass(frozen=True, slots=True)
class HistogramSpec:
    """A time-to-convert histogram between two steps: explicit edges or a bucket count."""

    from_step: int
    to_step: int
    edges_us: tuple[int, ...] = ()
    bucket_count: int = 10


@dataclass(frozen=True, slots=True)
class FunnelQuery:
    """A funnel: steps, entry days, window (microseconds), breakdown, exclusions, histogram."""

    steps: tuple[EventMatcher, ...]
    entry_from: date
    entry_to: date
    window_us: int = DEFAULT_WINDOW_US
    breakdown_property: str = ""
    exclusions: tuple[Exclusion, ...] = ()
    histogram: HistogramSpec | None = None

    @property
    def since_us(self) -> int:
        """No event before the first entry day can be in a chain or between its steps."""
        return day_start_us(self.entry_from)

    @property
    def entry_until_us(self) -> int:
        """t(e1) must be before this instant: the end of the last entry day."""
        return day_start_us(self.entry_to + timedelta(days=1))

    @property
    def until_us(self) -> int:
        """Exclusive end of the events that matter: t(e1) < entry_until and t(ek) <= t(e1) + W."""
        return self.entry_until_us + self.window_us

    @property
    def event_names(self) -> list[str]:
        """The names of every step and exclusion: the only events worth reading."""
        return sorted({s.event for s in self.steps} | {x.matcher.event for x in self.exclusions})


@dataclass(frozen=True, slots=True)
class Conversion:
    """A user's measured chain: the timestamps of its events, as long as the user's depth."""

    user_id: str
    step_ts_us: tuple[int, ...]
    breakdown_value: str
    property_missing: bool

    @property
    def depth(self) -> int:
        """The largest step the user reached."""
        return len(self.step_ts_us)


@dataclass(frozen=True, slots=True)
class StepResult:
    """Users reaching one step, conversions, and the median seconds from step 1."""

    step: int
    event: str
    users: int
    conversion_from_previous: float | None
    conversion_from_first: float | None
    median_seconds_from_first: float | None


@dataclass(frozen=True, slots=True)
class HistogramBucket:
    """Users whose duration is in [start_us, end_us)."""

    start_us: int
    end_us: int
    users: int


@dataclass(frozen=True, slots=True)
class Histogram:
    """Durations between two steps of the measured chains, bucketed."""

    from_step: int
    to_step: int
    buckets: tuple[HistogramBucket, ...]
    below: int
    above: int
    users: int


@dataclass(frozen=True, slots=True)
class FunnelResult:
    """The funnel of one group of users."""

    steps: tuple[StepResult, ...]
    histogram: Histogram | None


@dataclass(frozen=True, slots=True)
class BreakdownResult:
    """The funnel of the users whose measured e1 has one breakdown value."""

    value: str
    property_missing: bool
    result: FunnelResult


@dataclass(frozen=True, slots=True)
class FunnelAnswer:
    """Every user's funnel, and one per breakdown value when asked."""

    overall: FunnelResult
    breakdowns: tuple[BreakdownResult, ...]


class FunnelEvent(NamedTuple):
    """One event of a user as the chain search sees it: its instant and what it matches."""

    ts: int
    steps: int  # bit s: matches step s (0-based)
    exclusions: int  # bit k: matches exclusion k
    properties: Mapping[str, Any]  # read for the breakdown only (of step-1 events)


@dataclass(frozen=True, slots=True)
class _NameMasks:
    """What an event of one name matches: fixed bits, plus bits that depend on its properties."""

    steps: int
    exclusions: int
    step_checks: tuple[tuple[int, Predicate], ...]
    exclusion_checks: tuple[tuple[int, Predicate], ...]


def _name_masks(query: FunnelQuery) -> dict[str, _NameMasks]:
    names: dict[str, tuple[list[tuple[int, EventMatcher]], list[tuple[int, EventMatcher]]]] = (
        defaultdict(lambda: ([], []))
    )
    for s, m in enumerate(query.steps):
        names[m.event][0].append((s, m))
    for k, x in enumerate(query.exclusions):
        names[x.matcher.event][1].append((k, x.matcher))
    out = {}
    for name, (steps, exclusions) in names.items():
        fixed = [0, 0]
        checks: tuple[list[tuple[int, Predicate]], list[tuple[int, Predicate]]] = ([], [])
        for side, matchers in enumerate((steps, exclusions)):
            for bit, m in matchers:
                predicate = compile_filters(m.filters)
                if predicate is None:
                    fixed[side] |= 1 << bit
                else:
                    checks[side].append((1 << bit, predicate))
        out[name] = _NameMasks(fixed[0], fixed[1], tuple(checks[0]), tuple(checks[1]))
    return out


def _simple_chain(
    evs: Sequence[FunnelEvent], firsts: Sequence[int], n: int, window_us: int, overlapping: bool
) -> tuple[int, list[int]]:
    """Plain greedy from every e1 (exclusions aside), exact when steps do not compete for events.

    They do not when no event matches two steps, or when no two events share a timestamp:
    then the earliest event of a step at or after the previous one is never taken by another
    step of the chain (it could only be at the previous event's instant), so greedy from e1
    reaches the deepest step any chain from e1 reaches, on the earliest events.
    """
    by_step: list[list[int]] = [[] for _ in range(n)]
    for e in evs:
        mask = e.steps
        while mask:
            low = mask & -mask
            by_step[low.bit_length() - 1].append(e.ts)
            mask ^= low
    # Without shared timestamps the only event at the previous instant is the previous event.
    after = bisect_right if overlapping else bisect_left
    best_first, best = firsts[0], [evs[firsts[0]].ts]
    for i1 in firsts:
        t1 = evs[i1].ts
        limit = t1 + window_us
        chain = [t1]
        for s in range(1, n):
            times = by_step[s]
            p = after(times, chain[-1])
            if p == len(times) or times[p] > limit:
                break
            chain.append(times[p])
        if len(chain) > len(best):
            best_first, best = i1, chain
            if len(best) == n:
                break
    return best_first, best


class _ChainSearch:
    """Exact depth and measured chain of one user, for ties, overlapping steps and exclusions.

    Events sharing a timestamp form a group; a chain takes a run of consecutive steps from
    each group it passes (any order inside a group is allowed, so a run is feasible when its
    steps can be matched to distinct events: bipartite matching). The search keeps, per
    group, the set of (next step, exclusion deadlines) states; a deadline is the first
    exclusion event after the exclusion's opening step, which its closing step must not pass.
    """

    def __init__(self, evs: Sequence[FunnelEvent], query: FunnelQuery) -> None:
        self.evs = evs
        self.n = len(query.steps)
        self.window_us = query.window_us
        self.ts = [e.ts for e in evs]
        self.group_start: list[int] = []
        self.groups: list[tuple[int, int]] = []
        for i, t in enumerate(self.ts):
            if i == 0 or t != self.ts[i - 1]:
                self.groups.append((i, i + 1))
            else:
                self.groups[-1] = (self.groups[-1][0], i + 1)
            self.group_start.append(len(self.groups) - 1)
        self.group_masks = [
            [evs[i].steps for i in range(a, b) if evs[i].steps] for a, b in self.groups
        ]
        # suffix[g]: the steps matched in group g or later, a bound on what a state can reach.
        self.suffix = [0] * (len(self.groups) + 1)
        for g in range(len(self.groups) - 1, -1, -1):
            union = 0
            for mask in self.group_masks[g]:
                union |= mask
            self.suffix[g] = self.suffix[g + 1] | union
        self.opens: list[list[int]] = [[] for _ in range(self.n)]
        self.closes: list[list[int]] = [[] for _ in range(self.n)]
        for k, x in enumerate(query.exclusions):
            self.opens[x.from_step - 1].append(k)
            self.closes[x.to_step - 1].append(k)
        self.exclusion_ts = [
            [e.ts for e in evs if e.exclusions >> k & 1] for k in range(len(query.exclusions))
        ]
        self.limit = 0

    def _place(self, deadlines: list[int], step: int, t: int) -> bool:
        """Put `step` at time t: False when an exclusion event lies strictly inside its span."""
        for k in self.closes[step]:
            if deadlines[k] < t:
                return False
        for k in self.closes[step]:
            deadlines[k] = _NEVER
        for k in self.opens[step]:
            times = self.exclusion_ts[k]
            p = bisect_right(times, t)
            deadlines[k] = times[p] if p < len(times) else _NEVER
        return True

    def _augment(self, step: int, masks: list[int], owner: dict[int, int], seen: set[int]) -> bool:
        bit = 1 << step
        for p, mask in enumerate(masks):
            if mask & bit and p not in seen:
                seen.add(p)
                if p not in owner or self._augment(owner[p], masks, owner, seen):
                    owner[p] = step
                    return True
        return False

    def _runs(
        self, j: int, deadlines: tuple[int, ...], t: int, masks: list[int]
    ) -> list[tuple[int, tuple[int, ...]]]:
        """States after placing steps j … m-1 on distinct events of the group at t, every m > j."""
        out = []
        owner: dict[int, int] = {}
        current = list(deadlines)
        m = j
        while m < self.n:
            if not self._place(current, m, t) or not self._augment(m, masks, owner, set()):
                break
            m += 1
            out.append((m, tuple(current)))
        return out

    def _reach(self, j: int, g: int) -> int:
        """An upper bound of the steps placed from `j` placed, with groups g … left."""
        available = self.suffix[g]
        while j < self.n and available >> j & 1:
            j += 1
        return j

    def _deepest(
        self, group: int, used: set[int], j: int, deadlines: tuple[int, ...], target: int
    ) -> int:
        """Most steps placed, from `j` placed, going on in `group` (minus `used`) and later ones.

        Stops as soon as `target` steps are placed; states that cannot beat the best so far
        (or, when the target is below the number of steps, reach the target) are dropped.
        """
        best = j
        floor = target - 1 if target < self.n else 0
        states: set[tuple[int, tuple[int, ...]]] = {(j, deadlines)}
        g = group
        while best < target and g < len(self.groups) and states:
            t = self.ts[self.groups[g][0]]
            if t > self.limit:
                break
            if g == group:
                start, end = self.groups[g]
                masks = [
                    self.evs[i].steps
                    for i in range(start, end)
                    if self.evs[i].steps and i not in used
                ]
            else:
                masks = self.group_masks[g]
            union = 0
            for mask in masks:
                union |= mask
            if any(union >> sj & 1 for sj, _ in states if sj < self.n):
                grown = set(states)
                for sj, sd in states:
                    if sj < self.n and union >> sj & 1:
                        for state in self._runs(sj, sd, t, masks):
                            grown.add(state)
                            best = max(best, state[0])
                states = _undominated(grown)
            g += 1
            bar = max(best, floor)
            states = {st for st in states if self._reach(st[0], g) > bar}
        return best

    def _opened(self, i1: int) -> tuple[int, ...]:
        deadlines = [_NEVER] * len(self.exclusion_ts)
        self._place(deadlines, 0, self.ts[i1])
        return tuple(deadlines)

    def depth_from(self, i1: int) -> int:
        """The deepest step any chain starting at event i1 reaches."""
        self.limit = self.ts[i1] + self.window_us
        return self._deepest(self.group_start[i1], {i1}, 1, self._opened(i1), self.n)

    def measured_chain(self, i1: int, depth: int) -> list[int]:
        """The lexicographically earliest chain of `depth` events starting at i1."""
        self.limit = self.ts[i1] + self.window_us
        chain = [i1]
        deadlines = self._opened(i1)
        for s in range(1, depth):
            start = self.groups[self.group_start[chain[-1]]][0]
            for c in range(start, len(self.evs)):
                t = self.ts[c]
                if t > self.limit:
                    break
                if not self.evs[c].steps >> s & 1 or c in chain:
                    continue
                placed = list(deadlines)
                if not self._place(placed, s, t):
                    continue
                used = {x for x in [*chain, c] if self.ts[x] == t}
                if (
                    s + 1 >= depth
                    or self._deepest(self.group_start[c], used, s + 1, tuple(placed), depth)
                    >= depth
                ):
                    chain.append(c)
                    deadlines = tuple(placed)
                    break
            else:  # pragma: no cover - depth_from proved such a chain exists
                raise AssertionError("no chain of the proven depth")
        return chain


def _undominated(
    states: set[tuple[int, tuple[int, ...]]],
) -> set[tuple[int, tuple[int, ...]]]:
    """Drop states another state with the same next step beats on every deadline."""
    if len(states) <= 1:
        return states
    by_step: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for j, d in states:
        by_step[j].append(d)
    kept = set()
    for j, ds in by_step.items():
        if len(ds) == 1:
            kept.add((j, ds[0]))
            continue
        for d in ds:
            if not any(o != d and all(a >= b for a, b in zip(o, d, strict=True)) for o in ds):
                kept.add((j, d))
    return kept


def _shares_instants(evs: Sequence[FunnelEvent]) -> bool:
    instants = [e.ts for e in evs if e.steps]
    return len(set(instants)) != len(instants)


def _disqualified(times: Sequence[int], evs: Sequence[FunnelEvent], query: FunnelQuery) -> bool:
    """Whether an exclusion event lies strictly between two steps of the chain at `times`."""
    for k, x in enumerate(query.exclusions):
        if x.to_step > len(times):
            continue
        low, high = times[x.from_step - 1], times[x.to_step - 1]
        if any(low < e.ts < high for e in evs if e.exclusions >> k & 1):
            return True
    return False


def _user_conversion(
    user: str, evs: Sequence[FunnelEvent], query: FunnelQuery
) -> Conversion | None:
    n = len(query.steps)
    entry_until = query.entry_until_us
    firsts = [i for i, e in enumerate(evs) if e.steps & 1 and e.ts < entry_until]
    if not firsts:
        return None
    overlapping = any(e.steps & (e.steps - 1) for e in evs)
    competing = overlapping and _shares_instants(evs)
    times: list[int] = []
    if not competing:
        first, times = _simple_chain(evs, firsts, n, query.window_us, overlapping)
        if _disqualified(times, evs, query):
            times = []
    if not times:
        search = _ChainSearch(evs, query)
        first, depth = firsts[0], 0
        for i1 in firsts:
            d = search.depth_from(i1)
            if d > depth:
                first, depth = i1, d
                if depth == n:
                    break
        times = [evs[i].ts for i in search.measured_chain(first, depth)]
    return measured(user, times, evs[first].properties, query)


def measured(
    user: str, times: Sequence[int], first: Mapping[str, Any], query: FunnelQuery
) -> Conversion:
    """A user's conversion from its measured chain's times and its e1's properties."""
    prop = query.breakdown_property
    missing = bool(prop) and first.get(prop) is None
    value = breakdown_label(first, prop) if prop else ""
    return Conversion(user, tuple(times), value, missing)


def plain_greedy(query: FunnelQuery) -> bool:
    """Whether plain greedy from every e1 is the whole chain search (`_simple_chain`).

    It is when no exclusion can disqualify a chain and no event can match two steps
    (the steps name distinct events): then each next event is the earliest matching its
    step at or after the previous one, and the measured chain starts at the earliest e1,
    by (timestamp, event_id), among those reaching the deepest step.
    """
    names = [s.event for s in query.steps]
    return not query.exclusions and len(set(names)) == len(names)


def matched_events(
    rows: Iterable[EventRow], query: FunnelQuery
) -> list[tuple[str, list[FunnelEvent]]]:
    """Per user, the events matching a step or an exclusion in the query's span, ordered."""
    by_name = _name_masks(query)
    since, until = query.since_us, query.until_us
    per_user: dict[str, list[tuple[int, str, FunnelEvent]]] = defaultdict(list)
    for r in rows:
        masks = by_name.get(r.event)
        if masks is None or not r.user_id or not since <= r.ts_us < until:
            continue
        steps, exclusions = masks.steps, masks.exclusions
        for bit, predicate in masks.step_checks:
            if predicate(r.properties):
                steps |= bit
        for bit, predicate in masks.exclusion_checks:
            if predicate(r.properties):
                exclusions |= bit
        if steps or exclusions:
            per_user[r.user_id].append(
                (r.ts_us, r.event_id, FunnelEvent(r.ts_us, steps, exclusions, r.properties))
            )
    order = itemgetter(0, 1)
    users = []
    for user, evs in per_user.items():
        evs.sort(key=order)
        users.append((user, [e for _, _, e in evs]))
    return users


def conversions(rows: Iterable[EventRow], query: FunnelQuery) -> list[Conversion]:
    """Each entering user's depth and measured chain, in user order."""
    return user_conversions(matched_events(rows, query), query)


def user_conversions(
    users: Iterable[tuple[str, Sequence[FunnelEvent]]], query: FunnelQuery
) -> list[Conversion]:
    """Each entering user's depth and measured chain, in user order, from `matched_events`
    (or the same computed elsewhere)."""
    out = []
    for user, evs in sorted(users, key=itemgetter(0)):
        c = _user_conversion(user, evs, query)
        if c is not None:
            out.append(c)
    return out


def median(values: Sequence[int]) -> float:
    """The median, linearly interpolated (numpy's default), of a non-empty list."""
    xs = sorted(values)
    mid = len(xs) // 2
    if len(xs) % 2:
        return float(xs[mid])
    return (xs[mid - 1] + xs[mid]) / 2


def histogram_edges(spec: HistogramSpec, durations_us: Sequence[int]) -> tuple[int, ...]:
    """Bucket edges in microseconds: the explicit ones, or automatic whole-second ones."""
    if spec.edges_us:
        return spec.edges_us
    if not durations_us:
        return ()
    start = min(durations_us) // US * US
    width = (max(durations_us) - start) // (spec.bucket_count * US) + 1
    return tuple(start + i * width * US for i in range(spec.bucket_count + 1))


def _histogram(spec: HistogramSpec, edges: tuple[int, ...], group: list[Conversion]) -> Histogram:
    durations = [
        c.step_ts_us[spec.to_step - 1] - c.step_ts_us[spec.from_step - 1]
        for c in group
        if c.depth >= spec.to_step
    ]
    counts = [0] * max(len(edges) - 1, 0)
    below = above = 0
    for d in durations:
        if d < edges[0]:
            below += 1
        elif d >= edges[-1]:
            above += 1
        else:
            counts[bisect_right(edges, d) - 1] += 1
    buckets = tuple(HistogramBucket(edges[i], edges[i + 1], counts[i]) for i in range(len(counts)))
    return Histogram(spec.from_step, spec.to_step, buckets, below, above, len(durations))


def _result(
    query: FunnelQuery, group: list[Conversion], edges: tuple[int, ...] | None
) -> FunnelResult:
    steps = []
    entered = len(group)
    previous = entered
    for k, matcher in enumerate(query.steps, start=1):
        reached = [c for c in group if c.depth >= k]
        users = len(reached)
        steps.append(
            StepResult(
                step=k,
                event=matcher.event,
                users=users,
                conversion_from_previous=ratio(users, previous),
                conversion_from_first=ratio(users, entered),
                median_seconds_from_first=(
                    median([c.step_ts_us[k - 1] - c.step_ts_us[0] for c in reached]) / US
                    if reached
                    else None
                ),
            )
        )
        previous = users
    histogram = None
    if query.histogram is not None:
        histogram = (
            _histogram(query.histogram, edges, group)
            if edges
            else Histogram(query.histogram.from_step, query.histogram.to_step, (), 0, 0, 0)
        )
    return FunnelResult(tuple(steps), histogram)


def answer(query: FunnelQuery, users: list[Conversion]) -> FunnelAnswer:
    """The funnel over the users' measured chains, overall and per breakdown value."""
    edges: tuple[int, ...] | None = None
    if query.histogram is not None:
        spec = query.histogram
        edges = histogram_edges(
            spec,
            [
                c.step_ts_us[spec.to_step - 1] - c.step_ts_us[spec.from_step - 1]
                for c in users
                if c.depth >= spec.to_step
            ],
        )
    overall = _result(query, users, edges)
    breakdowns: list[BreakdownResult] = []
    if query.breakdown_property:
        groups: dict[tuple[bool, str], list[Conversion]] = defaultdict(list)
        for c in users:
            groups[(c.property_missing, c.breakdown_value)].append(c)
        order = sorted(groups, key=lambda key: (key[0], -len(groups[key]), key[1]))
        breakdowns = [
            BreakdownResult(value, missing, _result(query, groups[(missing, value)], edges))
            for missing, value in order
        ]
    return FunnelAnswer(overall, tuple(breakdowns))


def funnel(rows: Iterable[EventRow], query: FunnelQuery) -> FunnelAnswer:
    """The funnel of spec/metrics.md over a tenant's events (any order, duplicates removed)."""
    return answer(query, conversions(rows, query))


def funnel_of_users(
    users: Iterable[tuple[str, Sequence[FunnelEvent]]], query: FunnelQuery
) -> FunnelAnswer:
    """The same funnel from each user's `matched_events` (or the same computed elsewhere)."""
    return answer(query, user_conversions(users, query))


__all__ = [
    "DEFAULT_WINDOW_US",
    "MAX_STEPS",
    "NONE_LABEL",
    "BreakdownResult",
    "Conversion",
    "Exclusion",
    "FunnelAnswer",
    "FunnelEvent",
    "FunnelQuery",
    "FunnelResult",
    "Histogram",
    "HistogramBucket",
    "HistogramSpec",
    "StepResult",
    "answer",
    "conversions",
    "funnel",
    "funnel_of_users",
    "histogram_edges",
    "matched_events",
    "measured",
    "median",
    "plain_greedy",
    "user_conversions",
]
