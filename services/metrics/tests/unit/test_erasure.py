"""The erasure's coverage change in the active-user difference arrays."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from northstar_metrics.domain.active_users import WINDOWS
from northstar_metrics.domain.erasure import coverage_change

D0 = date(2026, 3, 1)


def _active(days: set[date], window: int, d: date) -> int:
    return int(any(d - timedelta(days=window - 1) <= x <= d for x in days))


days_strategy = st.sets(st.integers(0, 70).map(lambda n: D0 + timedelta(days=n)), max_size=12)


@given(before=days_strategy, removed=days_strategy)
def test_the_coverage_change_moves_each_days_count_by_the_brute_force_difference(
    before: set[date], removed: set[date]
) -> None:
    after = before - removed
    change = coverage_change("t", before, after, WINDOWS)
    for name, window in WINDOWS.items():
        running = 0
        for n in range(-1, 110):
            d = D0 + timedelta(days=n)
            running += change.get(("t", d), {}).get(name, 0)
            assert running == _active(after, window, d) - _active(before, window, d), (name, d)
