"""Anomaly detection equals the brute-force reference; the spec's edge cases exactly."""

from __future__ import annotations

import math
from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.anomalies import Direction, scan, threshold
from northstar_metrics.domain.daily_series import DailySeries, count_series, ratio_series

from ..reference_series import anomalies as reference_anomalies
from ..reference_series import days

D0 = date(2026, 1, 1)


def as_series(values: list[Fraction | None], first: date = D0) -> DailySeries:
    last = first + timedelta(days=len(values) - 1)
    return DailySeries(
        first, last, {first + timedelta(days=i): v for i, v in enumerate(values) if v is not None}
    )


def as_dict(values: list[Fraction | None], first: date = D0) -> dict[date, Fraction | None]:
    return {first + timedelta(days=i): v for i, v in enumerate(values)}


# Small integer ranges make ties, constant baselines and exact boundaries common.
values_strategy = st.lists(
    st.one_of(
        st.none(),
        st.integers(0, 6).map(Fraction),
        st.integers(0, 1000).map(Fraction),
        st.fractions(min_value=0, max_value=1, max_denominator=7),
    ),
    min_size=1,
    max_size=90,
)


@settings(max_examples=400, deadline=None)
@given(
    values=values_strategy,
    z=st.sampled_from([0.5, 1.0, 2.0, 3.0, 2.5]),
    r=st.one_of(st.none(), st.sampled_from([0.1, 0.3, 0.5, 1.0])),
    skip=st.integers(0, 40),
)
def test_scan_equals_the_reference(
    values: list[Fraction | None], z: float, r: float | None, skip: int
) -> None:
    series = as_series(values)
    first = D0 + timedelta(days=min(skip, len(values) - 1))
    last = series.last
    z_t = Fraction(str(z))
    r_t = None if r is None else Fraction(str(r))
    found = scan(series, first, last, z_threshold=z_t, relative_threshold=r_t)
    expected, judged = reference_anomalies(as_dict(values), first, last, z_t, r_t)
    assert found.days_judged == judged
    assert [
        (a.day, a.value, a.mean, a.variance, a.baseline_days, a.z_rule, a.relative_rule)
        for a in found.anomalies
    ] == [(e.day, e.value, e.mean, e.variance, e.n, e.z_rule, e.relative_rule) for e in expected]


def test_fewer_than_14_baseline_days_judge_nothing() -> None:
    values: list[Fraction | None] = [Fraction(1)] * 13 + [Fraction(1000)]
    assert scan(as_series(values), D0, D0 + timedelta(days=13)).anomalies == []
    assert scan(as_series(values), D0, D0 + timedelta(days=13)).days_judged == 0
    values = [Fraction(1)] * 14 + [Fraction(1000)]
    found = scan(as_series(values), D0, D0 + timedelta(days=14))
    assert [a.day for a in found.anomalies] == [D0 + timedelta(days=14)]


def test_absent_days_do_not_count_as_baseline_days() -> None:
    # 28 baseline days of which only 13 have a value: not enough.
    values: list[Fraction | None] = [Fraction(1) if i % 2 else None for i in range(27)]
    values += [None, Fraction(50)]
    assert scan(as_series(values), D0 + timedelta(days=28), D0 + timedelta(days=28)).anomalies == []


def test_constant_baseline_equal_value_is_no_anomaly_other_value_has_infinite_z() -> None:
    values: list[Fraction | None] = [Fraction(5)] * 20 + [Fraction(5), Fraction(4)]
    found = scan(as_series(values), D0 + timedelta(days=20), D0 + timedelta(days=21))
    assert found.days_judged == 2
    (a,) = found.anomalies
    assert a.day == D0 + timedelta(days=21)
    assert a.infinite_z and a.z == -math.inf and a.z_rule
    assert a.direction is Direction.DROP
    assert a.stddev == 0.0 and a.mean == 5


def test_z_exactly_on_the_threshold_is_anomalous() -> None:
    # Seven 8s, seven 12s and one 10: mean 10, sample variance 4 * 14 / 14 = 4, s = 2.
    baseline: list[Fraction | None] = [Fraction(8)] * 7 + [Fraction(12)] * 7 + [Fraction(10)]
    day = D0 + timedelta(days=15)
    on = scan(as_series([*baseline, Fraction(16)]), day, day)
    assert [(a.z, a.z_rule) for a in on.anomalies] == [(3.0, True)]
    assert on.anomalies[0].direction is Direction.SPIKE
    below = scan(as_series([*baseline, Fraction(1599, 100)]), day, day)
    assert below.anomalies == []
    assert scan(as_series([*baseline, Fraction(4)]), day, day).anomalies[0].z == -3.0


def test_relative_rule_strictly_greater_skipped_at_zero_mean() -> None:
    baseline: list[Fraction | None] = [Fraction(9), Fraction(11)] * 10
    day = D0 + timedelta(days=20)
    # |13 - 10| / 10 = 0.3 exactly: not > 0.3; z = 3 / 1.026 < 3.
    assert (
        scan(
            as_series([*baseline, Fraction(13)]), day, day, relative_threshold=threshold(0.3)
        ).anomalies
        == []
    )
    (a,) = scan(
        as_series([*baseline, Fraction(14)]), day, day, relative_threshold=threshold(0.3)
    ).anomalies
    assert (a.z_rule, a.relative_rule) == (True, True)
    (b,) = scan(
        as_series([*baseline, Fraction(5)]), day, day, relative_threshold=threshold(0.3)
    ).anomalies
    assert (b.z_rule, b.relative_rule, b.relative_deviation) == (True, True, -0.5)
    zeros: list[Fraction | None] = [Fraction(0), Fraction(0), Fraction(0), Fraction(1)] * 5
    (c,) = scan(
        as_series([*zeros, Fraction(5)]), day, day, relative_threshold=threshold(0.1)
    ).anomalies
    assert c.relative_rule is True  # mean 0.25 != 0
    only_zeros: list[Fraction | None] = [Fraction(0)] * 20
    (d,) = scan(
        as_series([*only_zeros, Fraction(1)]), day, day, relative_threshold=threshold(0.1)
    ).anomalies
    assert (d.z_rule, d.relative_rule, d.relative_deviation) == (True, False, None)


def test_thresholds_are_read_as_typed_decimals() -> None:
    assert threshold(0.3) == Fraction(3, 10)
    assert threshold(3.0) == 3
    with pytest.raises(ValueError, match="thresholds"):
        scan(as_series([Fraction(1)]), D0, D0, z_threshold=Fraction(0))


def test_series_start_and_zero_and_absent_rules() -> None:
    counts = count_series(
        {D0 + timedelta(days=3): 2},
        start=D0 + timedelta(days=2),
        first=D0,
        last=D0 + timedelta(days=5),
    )
    assert [counts.value(d) for d in days(D0, D0 + timedelta(days=5))] == [
        None,
        None,
        0,
        2,
        0,
        0,
    ]
    ratio = ratio_series(
        {D0 + timedelta(days=3): 1},
        {D0 + timedelta(days=3): 4, D0 + timedelta(days=1): 2},
        start=D0 + timedelta(days=2),
        first=D0,
        last=D0 + timedelta(days=4),
    )
    assert [ratio.value(d) for d in days(D0, D0 + timedelta(days=4))] == [
        None,
        None,
        None,
        Fraction(1, 4),
        None,
    ]
    assert count_series({}, start=None, first=D0, last=D0).values == {}
