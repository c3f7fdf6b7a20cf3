"""An obviously-correct trend (spec/metrics.md "Trends") by brute force over plain events.

Written apart from domain/trend.py: buckets from calendar arithmetic on datetimes, values
recomputed from scratch per bucket and series, numbers taken as the decimals written in
the JSON, sums exact with fractions and rounded once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .reference import Ev, dedup

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MISSING = object()


@dataclass(frozen=True)
class RefSeries:
    """One series: kind ("all", "value", "other", "none"), its value, points and total."""

    kind: str
    value: str
    points: list[float | None]
    total: float | None


def moment(ts_us: int) -> datetime:
    """The UTC instant of a microsecond timestamp, exactly."""
    return EPOCH + timedelta(microseconds=ts_us)


def label(ts: datetime, interval: str) -> str:
    """The label of the bucket holding the instant."""
    d = ts.date()
    if interval == "hour":
        return ts.strftime("%Y-%m-%dT%H:00:00Z")
    if interval == "day":
        return d.isoformat()
    if interval == "week":
        year, week, _ = d.isocalendar()
        return date.fromisocalendar(year, week, 1).isoformat()
    return f"{d.year:04d}-{d.month:02d}"


def bucket_labels(first: date, last: date, interval: str) -> list[str]:
    """Every bucket label of the range, in order, each once."""
    labels: list[str] = []
    ts = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    while ts < end:
        lab = label(ts, interval)
        if lab not in labels:
            labels.append(lab)
        ts += timedelta(hours=1)
    return labels


def canonical(value: Any) -> str:
    """JSON text with sorted keys and numbers (parsed as Decimal) in plain decimal form."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Decimal):
        if value == 0:
            return "0"
        return format(value.normalize(), "f")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    return (
        "{"
        + ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + canonical(value[k]) for k in sorted(value)
        )
        + "}"
    )


def key_of(properties_text: str, name: str) -> str | None:
    """The breakdown key of an event, None for `$none` (absent or null)."""
    props = json.loads(properties_text, parse_float=Decimal, parse_int=Decimal)
    value = props.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return canonical(value)


def number_of(properties_text: str, name: str) -> int | Decimal | None:
    """The property when it is a JSON number (not a bool), exactly as written."""
    value = json.loads(properties_text, parse_float=Decimal).get(name, MISSING)
    if type(value) in (int, Decimal):
        return value  # type: ignore[no-any-return]
    return None


def measure_value(events: list[Ev], measure: str, prop: str | None) -> float | None:
    """The measure over a set of events, from scratch."""
    if measure == "count":
        return float(len(events))
    if measure == "unique":
        return float(len({e.user_id for e in events if e.user_id != ""}))
    assert prop is not None
    numbers = [n for e in events if (n := number_of(e.properties, prop)) is not None]
    if measure == "sum":
        return float(sum((Fraction(n) for n in numbers), Fraction(0)))
    if not numbers:
        return None
    if measure == "avg":
        return float(sum((Fraction(n) for n in numbers), Fraction(0)) / len(numbers))
    if measure == "min":
        return float(min(numbers))
    return float(max(numbers))


def trend(
    events: list[Ev],
    *,
    first: date,
    last: date,
    interval: str,
    measure: str,
    event: str | None = None,
    prop: str | None = None,
    breakdown: str | None = None,
    keep: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> tuple[list[str], list[RefSeries]]:
    """Bucket labels and series of a trend over raw events (duplicates included)."""
    lo = datetime(first.year, first.month, first.day, tzinfo=UTC)
    hi = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    chosen = [
        e
        for e in dedup(events)
        if lo <= moment(e.timestamp_us) < hi
        and (event is None or e.event == event)
        and keep(json.loads(e.properties))
    ]
    labels = bucket_labels(first, last, interval)

    def series(kind: str, value: str, members: list[Ev]) -> RefSeries:
        points = [
            measure_value(
                [e for e in members if label(moment(e.timestamp_us), interval) == lab],
                measure,
                prop,
            )
            for lab in labels
        ]
        return RefSeries(kind, value, points, measure_value(members, measure, prop))

    if breakdown is None:
        return labels, [series("all", "", chosen)]
    keys = sorted({k for e in chosen if (k := key_of(e.properties, breakdown)) is not None})
    totals = {
        k: measure_value([e for e in chosen if key_of(e.properties, breakdown) == k], measure, prop)
        for k in keys
    }
    valued = sorted((k for k in keys if totals[k] is not None), key=lambda k: (-totals[k], k))  # type: ignore[operator]
    ranked = valued + sorted(k for k in keys if totals[k] is None)
    top = ranked[:25]
    out = [
        series("value", k, [e for e in chosen if key_of(e.properties, breakdown) == k]) for k in top
    ]
    rest = [e for e in chosen if key_of(e.properties, breakdown) not in (*top, None)]
    if len(keys) > 25:
        out.append(series("other", "$other", rest))
    none = [e for e in chosen if key_of(e.properties, breakdown) is None]
    if none:
        out.append(series("none", "$none", none))
    return labels, out
