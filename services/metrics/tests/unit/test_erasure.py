"""The erasure policy's pure parts: which late events are dropped, and the coverage change."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from northstar_metrics.domain.active_users import WINDOWS
from northstar_metrics.domain.erasure import coverage_change, is_erased_history, user_digest

D0 = date(2026, 3, 1)


def test_only_events_at_or_before_the_erasure_are_erased_history() -> None:
    erased_at = 1_000_000
    assert is_erased_history(erased_at - 1, erased_at)  # a late retry of old history
    assert is_erased_history(erased_at, erased_at)  # the erasure's own microsecond
    assert not is_erased_history(erased_at + 1, erased_at)  # the user came back
    assert not is_erased_history(0, None)  # never erased


def test_the_digest_is_per_tenant_and_never_the_id() -> None:
    # The experiments service pins the same value: one rule, written in both services.
    assert user_digest("acme", "u1").hex() == "f21338d703eeed77edacc5228b45c880"
    assert user_digest("acme", "u1") != user_digest("globex", "u1")
    assert b"u1" not in user_digest("acme", "u1")


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
