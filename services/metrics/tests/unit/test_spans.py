"""Span rows count the subjects active in any range; their deltas move the sums exactly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.spans import (
    DAY,
    FIRST_DAY,
    GAP,
    LAST_DAY,
    active_in,
    span_rows,
    spans_delta,
)

START = date(2026, 1, 26)
days_strategy = st.sets(st.integers(0, 40), min_size=1).map(
    lambda s: sorted(START + timedelta(days=d) for d in s)
)
subjects_strategy = st.dictionaries(st.sampled_from([f"w{i}" for i in range(6)]), days_strategy)
RANGES = st.tuples(st.integers(-2, 42), st.integers(0, 40)).map(
    lambda t: (START + timedelta(days=t[0]), START + timedelta(days=t[0] + t[1]))
)


@settings(max_examples=400, deadline=None)
@given(subjects=subjects_strategy, span=RANGES)
def test_summed_span_rows_count_the_subjects_active_in_any_range(
    subjects: dict[str, list[date]], span: tuple[date, date]
) -> None:
    s, e = span
    total: dict[tuple[int, date, date], int] = {}
    for days in subjects.values():
        for row, n in span_rows(days).items():
            total[row] = total.get(row, 0) + n

    def summed(kind: int, keep: Callable[[date, date], bool]) -> int:
        return sum(n for (k, x, y), n in total.items() if k == kind and keep(x, y))

    got = active_in(
        summed(FIRST_DAY, lambda x, y: y <= e),
        summed(LAST_DAY, lambda x, y: y < s),
        summed(GAP, lambda x, y: x < s and y > e),
    )
    assert got == sum(1 for days in subjects.values() if any(s <= d <= e for d in days))
    assert summed(DAY, lambda x, y: x == s) == sum(1 for days in subjects.values() if s in days)


@settings(max_examples=300, deadline=None)
@given(before=days_strategy | st.just([]), added=days_strategy)
def test_the_delta_of_new_days_is_the_difference_of_the_rows(
    before: list[date], added: list[date]
) -> None:
    after = sorted(set(before) | set(added))
    delta = spans_delta(before, after)
    rows = dict(span_rows(before))
    for row, n in delta.items():
        rows[row] = rows.get(row, 0) + n
    assert {r: n for r, n in rows.items() if n} == span_rows(after)
