"""Active users (spec/metrics.md, "Active users") as difference arrays.

`X(d)` for a window of W days is the number of users with activity in
`[d-W+1, d]`: DAU (W=1), WAU (W=7), MAU (W=30); MAO is the same over orgs with
a successful workflow.run. A user with activity days S is counted on every
day of the union of `[s, s+W-1]` for s in S. When a new activity day x joins
S, the days it newly covers are one interval,

    [max(x, prev + W), min(x + W - 1, next - 1)]

where prev is the latest day of S before x and next the earliest after it.
So every number is maintained exactly, late events included, by adding +1
at the interval's start and -1 after its end in a difference array; the value
on day d is the sum of the deltas of all days <= d.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from northstar_metrics.domain.ratios import ratio

WINDOWS: dict[str, int] = {"dau": 1, "wau": 7, "mau": 30}
MAO_WINDOW = 30


@dataclass(frozen=True, slots=True)
class NewDay:
    """A day of activity not seen before for a subject, with its stored neighbours."""

    tenant: str
    subject: str
    day: date
    prev: date | None
    next: date | None


Deltas = dict[tuple[str, date], dict[str, int]]


def coverage_deltas(days: Iterable[NewDay], windows: dict[str, int]) -> Deltas:
    """Difference-array deltas for a set of new (tenant, subject, day) facts.

    `prev` and `next` of each fact are the neighbours among days stored before
    this set; new days of the same subject are folded in, in date order.
    """
    deltas: Deltas = defaultdict(lambda: defaultdict(int))
    by_subject: dict[tuple[str, str], list[NewDay]] = defaultdict(list)
    for d in days:
        by_subject[(d.tenant, d.subject)].append(d)
    for (tenant, _), items in by_subject.items():
        items.sort(key=lambda d: d.day)
        last_new: date | None = None
        for d in items:
            prev = (
                d.prev
                if last_new is None or (d.prev is not None and d.prev > last_new)
                else last_new
            )
            for name, w in windows.items():
                start = d.day if prev is None else max(d.day, prev + timedelta(days=w))
                end = d.day + timedelta(days=w - 1)
                if d.next is not None:
                    end = min(end, d.next - timedelta(days=1))
                if start <= end:
                    deltas[(tenant, start)][name] += 1
                    deltas[(tenant, end + timedelta(days=1))][name] -= 1
            last_new = d.day
    return deltas


@dataclass(frozen=True, slots=True)
class ActiveUsersDay:
    """Every active-users number of one day."""

    day: date
    dau: int
    wau: int
    mau: int
    mao: int

    @property
    def stickiness(self) -> float | None:
        """DAU / MAU; absent when MAU is 0."""
        return ratio(self.dau, self.mau)


def series(
    delta_rows: Sequence[tuple[date, int, int, int, int]], first: date, last: date
) -> list[ActiveUsersDay]:
    """Per-day values over [first, last] from (day, dau, wau, mau, mao) delta rows sorted by day."""
    out: list[ActiveUsersDay] = []
    dau = wau = mau = mao = 0
    i = 0
    day = first
    while day <= last:
        while i < len(delta_rows) and delta_rows[i][0] <= day:
            _, d_dau, d_wau, d_mau, d_mao = delta_rows[i]
            dau, wau, mau, mao = dau + d_dau, wau + d_wau, mau + d_mau, mao + d_mao
            i += 1
        out.append(ActiveUsersDay(day, dau, wau, mau, mao))
        day += timedelta(days=1)
    return out
