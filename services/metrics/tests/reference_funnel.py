"""Brute-force reference of spec/metrics.md "Funnels": every chain of every user is listed.

Written apart from the implementation and slow on purpose: for a user it enumerates all
chains (distinct events matching steps 1..k, non-decreasing timestamps, within the window,
e1 in the entry days, not disqualified by an exclusion), takes the longest length as the
depth and the smallest chain of that length, comparing events by (timestamp, event_id)
element by element, as the measured chain.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from .reference import Ev, dedup

US = 1_000_000


@dataclass(frozen=True)
class RefFilter:
    """property, operator ("eq", "ne", "in", "<", "<=", ">", ">="), values."""

    prop: str
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class RefStep:
    """An event name and filters."""

    event: str
    filters: tuple[RefFilter, ...] = ()


@dataclass(frozen=True)
class RefFunnel:
    """A funnel query as the reference sees it (steps and exclusion steps 1-based)."""

    steps: tuple[RefStep, ...]
    first_day: date
    last_day: date
    window_us: int = 7 * 86_400 * US
    breakdown: str = ""
    exclusions: tuple[tuple[RefStep, int, int], ...] = ()
    histogram: tuple[int, int] | None = None  # (from_step, to_step)
    edges_seconds: tuple[float, ...] = ()
    bucket_count: int = 10


def _canon(v: Any) -> Any:
    """A hashable form where equal JSON values coincide (1 and 1.0), types never mix."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int | float):
        return ("num", Fraction(v))
    if isinstance(v, str):
        return ("str", v)
    if v is None:
        return ("null",)
    if isinstance(v, list):
        return ("list", tuple(_canon(x) for x in v))
    return ("obj", tuple(sorted((k, _canon(x)) for k, x in v.items())))


def _holds(f: RefFilter, props: dict[str, Any]) -> bool:
    if f.op == "ne":
        return not _holds(RefFilter(f.prop, "eq", f.values), props)
    if f.prop not in props:
        return False
    v = props[f.prop]
    if f.op == "eq":
        return _canon(v) == _canon(f.values[0])
    if f.op == "in":
        return _canon(v) in {_canon(x) for x in f.values}
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    a, b = Fraction(v), Fraction(f.values[0])
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[f.op]


def _matches(step: RefStep, e: Ev) -> bool:
    props = json.loads(e.properties)
    return e.event == step.event and all(_holds(f, props) for f in step.filters)


def label(props: dict[str, Any], name: str) -> tuple[str, bool]:
    """The breakdown label of a property and whether it is the `$none` bucket."""
    v = props.get(name)
    if v is None:
        return "$none", True
    if isinstance(v, str):
        return v, False
    if isinstance(v, bool):
        return ("true" if v else "false"), False
    if isinstance(v, float) and v.is_integer():
        return str(int(v)), False
    return str(v), False


def _chains(q: RefFunnel, evs: list[Ev]) -> list[list[Ev]]:
    out: list[list[Ev]] = []

    def disqualified(chain: list[Ev]) -> bool:
        for step, a, b in q.exclusions:
            if len(chain) < b:
                continue
            ta, tb = chain[a - 1].timestamp_us, chain[b - 1].timestamp_us
            if any(_matches(step, x) and ta < x.timestamp_us < tb for x in evs):
                return True
        return False

    def grow(chain: list[Ev]) -> None:
        out.append(chain)
        k = len(chain)
        if k == len(q.steps):
            return
        for e in evs:
            if (
                e not in chain
                and _matches(q.steps[k], e)
                and e.timestamp_us >= chain[-1].timestamp_us
                and e.timestamp_us - chain[0].timestamp_us <= q.window_us
            ):
                longer = [*chain, e]
                if not disqualified(longer):
                    grow(longer)

    for e in evs:
        if _matches(q.steps[0], e) and q.first_day <= e.day <= q.last_day:
            grow([e])
    return out


def measured_chains(q: RefFunnel, events: list[Ev]) -> dict[str, list[Ev]]:
    """Each entering user's measured chain (its length is the user's depth)."""
    users: dict[str, list[Ev]] = {}
    for e in dedup(events):
        if e.user_id:
            users.setdefault(e.user_id, []).append(e)
    chosen = {}
    for user, evs in users.items():
        chains = _chains(q, evs)
        if not chains:
            continue
        depth = max(len(c) for c in chains)
        chosen[user] = min(
            (c for c in chains if len(c) == depth),
            key=lambda c: [(e.timestamp_us, e.event_id) for e in c],
        )
    return chosen


def _edges(q: RefFunnel, durations: list[int]) -> list[Fraction]:
    if q.edges_seconds:
        return [Fraction(round(Fraction(x) * US), US) for x in q.edges_seconds]
    if not durations:
        return []
    low = Fraction(min(durations), US)
    high = Fraction(max(durations), US)
    begin = Fraction(int(low))  # durations are >= 0, so int() is the floor
    width = 1
    while begin + q.bucket_count * width <= high:
        width += 1
    return [begin + i * width for i in range(q.bucket_count + 1)]


def _result(
    q: RefFunnel, chains: list[list[Ev]], edges: list[Fraction] | None
) -> tuple[list[tuple[int, float | None, float | None, float | None]], Any]:
    rows = []
    entered = len(chains)
    for k in range(1, len(q.steps) + 1):
        reached = [c for c in chains if len(c) >= k]
        prev = entered if k == 1 else len([c for c in chains if len(c) >= k - 1])
        times = [c[k - 1].timestamp_us - c[0].timestamp_us for c in reached]
        rows.append(
            (
                len(reached),
                len(reached) / prev if prev else None,
                len(reached) / entered if entered else None,
                statistics.median(times) / US if times else None,
            )
        )
    hist = None
    if q.histogram is not None:
        a, b = q.histogram
        durations = [c[b - 1].timestamp_us - c[a - 1].timestamp_us for c in chains if len(c) >= b]
        assert edges is not None
        seconds = [Fraction(d, US) for d in durations]
        buckets = [
            (
                float(edges[i]),
                float(edges[i + 1]),
                sum(edges[i] <= s < edges[i + 1] for s in seconds),
            )
            for i in range(len(edges) - 1)
        ]
        below = sum(s < edges[0] for s in seconds) if edges else 0
        above = sum(s >= edges[-1] for s in seconds) if edges else 0
        hist = (buckets, below, above, len(durations))
    return rows, hist


def funnel(q: RefFunnel, events: list[Ev]) -> dict[str, Any]:
    """{"overall": (steps, histogram), "breakdowns": [(value, missing, steps, histogram)]}."""
    chosen = measured_chains(q, events)
    edges = None
    if q.histogram is not None:
        a, b = q.histogram
        edges = _edges(
            q,
            [c[b - 1].timestamp_us - c[a - 1].timestamp_us for c in chosen.values() if len(c) >= b],
        )
    out: dict[str, Any] = {"overall": _result(q, list(chosen.values()), edges), "breakdowns": []}
    if q.breakdown:
        groups: dict[tuple[str, bool], list[list[Ev]]] = {}
        for c in chosen.values():
            groups.setdefault(label(json.loads(c[0].properties), q.breakdown), []).append(c)
        for (value, missing), chains in sorted(
            groups.items(), key=lambda kv: (kv[0][1], -len(kv[1]), kv[0][0])
        ):
            out["breakdowns"].append((value, missing, *_result(q, chains, edges)))
    return out


def day_start_us(d: date) -> int:
    """Microseconds at 00:00 UTC of a day."""
    return (d - date(1970, 1, 1)).days * 86_400 * US
