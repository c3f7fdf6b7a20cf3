"""The cohort_counts contribution of a user: the incremental difference equals the full one."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from northstar_metrics.adapters.user_facts import OPEN_END, OPEN_START, added_days, contribution

DAYS = st.sets(st.integers(0, 80).map(lambda n: date(2026, 1, 20) + timedelta(days=n)))
KEYS = st.tuples(
    st.just(date(2026, 1, 25)),
    st.sampled_from([None, "free", "pro"]),
    st.sampled_from([None, "seo"]),
)


@given(key=KEYS, before=DAYS, new=DAYS)
def test_added_days_is_the_difference_of_contributions(
    key: tuple[date, str | None, str | None], before: set[date], new: set[date]
) -> None:
    expected = Counter(contribution(key, before | new))
    expected.subtract(contribution(key, before))
    assert {k: v for k, v in expected.items() if v} == {
        k: v for k, v in added_days(key, sorted(before), new).items() if v
    }


def test_a_user_without_activity_is_one_open_gap() -> None:
    key = (date(2026, 1, 25), "free", None)
    assert contribution(key, []) == {
        ("", "", 0, date(2026, 1, 25), OPEN_START, OPEN_END): 1,
        ("plan", "free", 0, date(2026, 1, 25), OPEN_START, OPEN_END): 1,
    }


def test_a_day_between_two_stored_days_splits_their_gap() -> None:
    key = (date(2026, 1, 25), None, None)
    d = [date(2026, 2, 2), date(2026, 2, 4), date(2026, 2, 3)]  # Mon, Wed; new: Tue
    assert added_days(key, d[:2], [d[2]]) == {
        ("", "", 0, key[0], d[0], d[1]): -1,
        ("", "", 0, key[0], d[0], d[2]): 1,
        ("", "", 0, key[0], d[2], d[1]): 1,
        ("", "", 1, key[0], d[2], d[2]): 1,
    }
