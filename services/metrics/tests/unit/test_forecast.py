"""Forecasts: lines and weekly patterns continue exactly; noisy series match numpy OLS."""

from __future__ import annotations

import math
from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_metrics.domain.daily_series import DailySeries
from northstar_metrics.domain.forecast import (
    Method,
    backtest,
    fit,
    forecast,
    student_t_quantile,
)

from ..reference_series import ols_forecast

ORIGIN = date(2026, 6, 30)


def series_of(values: list[Fraction | None], origin: date = ORIGIN) -> DailySeries:
    first = origin - timedelta(days=len(values) - 1)
    return DailySeries(
        first,
        origin,
        {first + timedelta(days=i): v for i, v in enumerate(values) if v is not None},
    )


@settings(max_examples=200, deadline=None)
@given(
    intercept=st.integers(-1000, 100_000),
    slope=st.fractions(min_value=-50, max_value=500, max_denominator=4),
    length=st.integers(1, 120),
    fit_days=st.integers(14, 90),
    horizon=st.integers(1, 60),
)
def test_an_exactly_linear_series_is_continued_exactly(
    intercept: int, slope: Fraction, length: int, fit_days: int, horizon: int
) -> None:
    values: list[Fraction | None] = [intercept + slope * i for i in range(length)]
    model = fit(series_of(values), ORIGIN, fit_days)
    assert model is not None
    points = forecast(model, horizon)
    for h, p in enumerate(points, start=1):
        expected = intercept + slope * (length - 1 + h)
        if length > 1:
            assert p.value == expected
        else:
            assert p.value == intercept  # one observation: carried forward
        if p.interval_95 is not None and p.interval_80 is not None:
            assert p.interval_95.lower == p.interval_95.upper == float(p.value)
            assert p.interval_80.lower == p.interval_80.upper == float(p.value)


@settings(max_examples=200, deadline=None)
@given(
    pattern=st.lists(st.integers(0, 10_000), min_size=7, max_size=7),
    slope=st.integers(-20, 20),
    weeks=st.integers(2, 12),
    extra=st.integers(0, 6),
    horizon=st.integers(1, 60),
)
def test_a_weekly_pattern_is_kept_exactly(
    pattern: list[int], slope: int, weeks: int, extra: int, horizon: int
) -> None:
    length = weeks * 7 + extra
    first = ORIGIN - timedelta(days=length - 1)

    def value(d: date) -> Fraction:
        return Fraction(pattern[d.weekday()] + slope * (d - first).days)

    values: list[Fraction | None] = [value(first + timedelta(days=i)) for i in range(length)]
    model = fit(series_of(values), ORIGIN, 56)
    assert model is not None and model.method is Method.LINEAR_TREND_WEEKLY
    assert sum(model.weekday_effects) == 0
    for p in forecast(model, horizon):
        assert p.value == value(p.day)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.integers(0, 500).map(Fraction)), min_size=1, max_size=80
    ),
    fit_days=st.integers(14, 70),
)
def test_noisy_series_match_numpy_least_squares(
    values: list[Fraction | None], fit_days: int
) -> None:
    series = series_of(values)
    model = fit(series, ORIGIN, fit_days)
    as_dict = {ORIGIN - timedelta(days=len(values) - 1 - i): v for i, v in enumerate(values)}
    expected = ols_forecast(as_dict, ORIGIN, fit_days, 14)
    if model is None:
        assert expected is None
        return
    assert expected is not None
    got = [float(p.value) for p in forecast(model, 14)]
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-6)
    for p in forecast(model, 14):
        if p.interval_80 is None or p.interval_95 is None:
            assert model.degrees_of_freedom == 0
            continue
        assert p.interval_95.lower <= p.interval_80.lower <= float(p.value)
        assert float(p.value) <= p.interval_80.upper <= p.interval_95.upper


def test_intervals_are_the_ols_prediction_intervals() -> None:
    values: list[Fraction | None] = [Fraction(v) for v in (3, 5, 4, 8, 6, 9, 10, 9)]
    model = fit(series_of(values), ORIGIN, 14)
    assert model is not None and model.method is Method.LINEAR_TREND
    # By hand: t = -7..0, y as above.
    ts = list(range(-7, 1))
    ys = [3, 5, 4, 8, 6, 9, 10, 9]
    n = len(ts)
    t_mean = sum(ts) / n
    y_mean = sum(ys) / n
    sxx = sum((t - t_mean) ** 2 for t in ts)
    b = sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys, strict=True)) / sxx
    a = y_mean - b * t_mean
    rss = sum((y - a - b * t) ** 2 for t, y in zip(ts, ys, strict=True))
    sigma = math.sqrt(rss / (n - 2))
    (p,) = forecast(model, 1)
    assert float(p.value) == pytest.approx(a + b)
    half = 2.4469118511449692 * sigma * math.sqrt(1 + 1 / n + (1 - t_mean) ** 2 / sxx)
    assert p.interval_95 is not None
    assert p.interval_95.upper - float(p.value) == pytest.approx(half)
    assert model.residual_variance == pytest.approx(rss / (n - 2))


def test_student_t_quantiles() -> None:
    assert student_t_quantile(0.975, 6) == pytest.approx(2.4469118511449692, abs=1e-9)
    assert student_t_quantile(0.975, 10) == pytest.approx(2.2281388519649385, abs=1e-9)
    assert student_t_quantile(0.9, 1) == pytest.approx(3.077683537175253, abs=1e-9)
    assert student_t_quantile(0.9, 30) == pytest.approx(1.3104150253913999, abs=1e-9)
    assert student_t_quantile(0.975, 100_000) == pytest.approx(1.959963984540054, abs=1e-4)


def test_absent_and_single_observations() -> None:
    assert fit(series_of([None] * 30), ORIGIN, 56) is None
    model = fit(series_of([Fraction(7), None, None]), ORIGIN, 14)
    assert model is not None and model.method is Method.CONSTANT
    assert [(p.value, p.interval_80) for p in forecast(model, 2)] == [(7, None), (7, None)]


def test_backtest_of_a_line_is_perfect_and_counts_horizons() -> None:
    values: list[Fraction | None] = [Fraction(10 + 3 * i) for i in range(100)]
    accuracy = backtest(series_of(values), ORIGIN, 56, 30)
    assert accuracy.origins == 28
    assert [h.horizon for h in accuracy.by_horizon] == list(range(1, 29))
    # Horizon h is checked from the origins h..28 days back: 29 - h forecasts.
    assert [h.forecasts for h in accuracy.by_horizon] == [29 - h for h in range(1, 29)]
    assert accuracy.overall.forecasts == sum(range(1, 29))
    assert accuracy.overall.mae == 0.0 and accuracy.overall.mape == 0.0
    assert accuracy.overall.coverage_95 == 1.0


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.integers(0, 50).map(Fraction)), min_size=1, max_size=90
    ),
    horizon=st.integers(1, 35),
)
def test_backtest_equals_a_brute_force_reference(
    values: list[Fraction | None], horizon: int
) -> None:
    series = series_of(values)
    as_dict = {ORIGIN - timedelta(days=len(values) - 1 - i): v for i, v in enumerate(values)}
    errors: dict[int, list[float]] = {}
    percentages: dict[int, list[float]] = {}
    origins = 0
    for back in range(1, 29):
        origin = ORIGIN - timedelta(days=back)
        predicted = ols_forecast(as_dict, origin, 21, back)
        if predicted is None:
            continue
        origins += 1
        for h in range(1, min(horizon, 28, back) + 1):
            actual = as_dict.get(origin + timedelta(days=h))
            if actual is None:
                continue
            errors.setdefault(h, []).append(abs(predicted[h - 1] - float(actual)))
            if actual != 0:
                percentages.setdefault(h, []).append(
                    abs(predicted[h - 1] - float(actual)) / float(actual)
                )
    accuracy = backtest(series, ORIGIN, 21, horizon)
    assert accuracy.origins == origins
    for h in accuracy.by_horizon:
        assert h.forecasts == len(errors.get(h.horizon, []))
        if h.forecasts:
            assert h.mae == pytest.approx(sum(errors[h.horizon]) / h.forecasts, abs=1e-6)
        else:
            assert h.mae is None
        ps = percentages.get(h.horizon, [])
        assert (h.mape is None) == (not ps)
        if ps:
            assert h.mape == pytest.approx(sum(ps) / len(ps), abs=1e-6)
