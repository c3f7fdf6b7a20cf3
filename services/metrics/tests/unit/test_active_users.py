"""The difference-array maintenance of DAU/WAU/MAU/MAO equals brute force, in any order."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.active_users import (
    WINDOWS,
    ActiveUsersDay,
    NewDay,
    coverage_deltas,
    series,
)

START = date(2026, 1, 1)


class Store:
    """A stand-in for the user_days table: what the projection's SQL answers."""

    def __init__(self) -> None:
        self.days: dict[tuple[str, str], set[date]] = defaultdict(set)
        self.deltas: dict[date, list[int]] = defaultdict(lambda: [0, 0, 0, 0])

    def add_batch(self, facts: set[tuple[str, str, date]]) -> None:
        new = []
        for tenant, user, day in sorted(facts):
            stored = self.days[(tenant, user)]
            if day in stored:
                continue
            before = [d for d in stored if d < day]
            after = [d for d in stored if d > day]
            new.append(
                NewDay(tenant, user, day, max(before, default=None), min(after, default=None))
            )
        for d in new:
            self.days[(d.tenant, d.subject)].add(d.day)
        for (_, day), values in coverage_deltas(new, WINDOWS).items():
            for i, name in enumerate(("dau", "wau", "mau")):
                self.deltas[day][i] += values.get(name, 0)

    def series(self, first: date, last: date) -> list[ActiveUsersDay]:
        rows = sorted((d, v[0], v[1], v[2], v[3]) for d, v in self.deltas.items())
        return series(rows, first, last)


def brute(days: dict[str, set[date]], d: date, window: int) -> int:
    lo = d - timedelta(days=window - 1)
    return sum(1 for s in days.values() if any(lo <= x <= d for x in s))


facts_strategy = st.lists(
    st.tuples(st.sampled_from(["u1", "u2", "u3", "u4"]), st.integers(0, 80)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(facts=facts_strategy, batch_size=st.integers(1, 7), data=st.data())
def test_any_batching_and_order_gives_exact_counts(
    facts: list[tuple[str, int]], batch_size: int, data: st.DataObject
) -> None:
    order = data.draw(st.permutations(facts))
    store = Store()
    for i in range(0, len(order), batch_size):
        store.add_batch({("t", u, START + timedelta(days=n)) for u, n in order[i : i + batch_size]})
    truth: dict[str, set[date]] = defaultdict(set)
    for u, n in facts:
        truth[u].add(START + timedelta(days=n))
    last = START + timedelta(days=120)
    for row in store.series(START - timedelta(days=2), last):
        assert row.dau == brute(truth, row.day, 1), row
        assert row.wau == brute(truth, row.day, 7), row
        assert row.mau == brute(truth, row.day, 30), row


def test_hand_computed_windows() -> None:
    store = Store()
    store.add_batch({("t", "a", date(2026, 3, 1)), ("t", "b", date(2026, 3, 5))})
    got = {r.day: (r.dau, r.wau, r.mau) for r in store.series(date(2026, 2, 28), date(2026, 4, 5))}
    assert got[date(2026, 2, 28)] == (0, 0, 0)
    assert got[date(2026, 3, 1)] == (1, 1, 1)
    assert got[date(2026, 3, 5)] == (1, 2, 2)
    assert got[date(2026, 3, 7)] == (0, 2, 2)  # a's week is [3-1, 3-7]
    assert got[date(2026, 3, 8)] == (0, 1, 2)
    assert got[date(2026, 3, 30)] == (0, 0, 2)  # a's month is [3-1, 3-30]
    assert got[date(2026, 3, 31)] == (0, 0, 1)
    assert got[date(2026, 4, 4)] == (0, 0, 0)


def test_stickiness_absent_over_zero_mau() -> None:
    assert ActiveUsersDay(date(2026, 1, 1), 0, 0, 0, 0).stickiness is None
    assert ActiveUsersDay(date(2026, 1, 1), 1, 1, 4, 0).stickiness == 0.25
