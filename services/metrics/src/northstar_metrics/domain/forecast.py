"""Forecasts of a daily series (spec/metrics.md, "Forecast").

Method: ordinary least squares on the last `fit_days` days ending at the
origin (the last observed day), of

    y(t) = level + slope * t + effect[weekday(t)],   t = days after the origin,

with seven weekday effects that sum to 0 (effects coding). An exactly linear
series has zero residuals and is continued exactly; a weekly pattern (with or
without a trend) is reproduced by the weekday effects and kept. The normal
equations are solved in exact rational arithmetic, so "exactly" survives:
an integer line is continued by integers, not by 41.99999999.

The model is the richest the window allows: with at least 14 observations
and every weekday present, trend plus weekly effects; with 2 or more, a line;
with 1, that value carried forward; with none, no forecast. Absent days (a
ratio over zero, days before the series start) are simply not observations.

Intervals are the classical OLS prediction intervals,
`yhat ± t(q, n-p) * sigma * sqrt(1 + x0' (X'X)^-1 x0)` with `sigma^2 = RSS / (n-p)`
and Student's t quantile (q = 0.90 for 80 %, 0.975 for 95 %): they widen
with the horizon as the trend's uncertainty grows, and collapse onto the
point for a series the model fits exactly. Without residual degrees of
freedom (n = p) there are none. Points are not clipped at 0.

Accuracy is a rolling-origin backtest: each of the 28 days before the
origin serves as an origin in turn, the same method is fitted on the
`fit_days` ending there, and its forecasts of the days up to the real origin
are compared with what the series then showed: MAE, MAPE (as a fraction,
over non-zero observed values) and the share of observed values inside the
80 % and 95 % intervals, per horizon 1..min(H, 28) and overall.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from northstar_metrics.domain.daily_series import DailySeries, days_between

DEFAULT_HORIZON_DAYS = 30
MAX_HORIZON_DAYS = 365
DEFAULT_FIT_DAYS = 56
MIN_FIT_DAYS = 14
MAX_FIT_DAYS = 365
BACKTEST_ORIGINS = 28
MIN_WEEKLY_OBSERVATIONS = 14
INTERVAL_QUANTILES = {80: 0.90, 95: 0.975}


class Method(enum.Enum):
    """The model fitted, the richest the observations allow."""

    CONSTANT = "constant"
    LINEAR_TREND = "linear_trend"
    LINEAR_TREND_WEEKLY = "linear_trend_weekly"


@dataclass(frozen=True, slots=True)
class Interval:
    """A prediction interval."""

    lower: float
    upper: float

    def contains(self, value: float) -> bool:
        """Whether value lies inside, bounds included."""
        return self.lower <= value <= self.upper


@dataclass(frozen=True, slots=True)
class ForecastDay:
    """The forecast of one day: the point and its 80 % and 95 % intervals (None without dof)."""

    day: date
    value: Fraction
    interval_80: Interval | None
    interval_95: Interval | None


def _regressors(method: Method, offset: int, weekday: int) -> list[int]:
    row = [1]
    if method is not Method.CONSTANT:
        row.append(offset)
    if method is Method.LINEAR_TREND_WEEKLY:
        # Effects coding: Sunday's effect is minus the sum of the other six.
        row.extend(1 if weekday == w else (-1 if weekday == 6 else 0) for w in range(6))
    return row


@dataclass(frozen=True, slots=True)
class Model:
    """A fitted model: exact coefficients, residual variance and (X'X)^-1 for intervals."""

    method: Method
    origin: date
    coefficients: tuple[Fraction, ...]
    observations: int
    residual_variance: float | None
    gram_inverse: tuple[tuple[float, ...], ...]

    @property
    def degrees_of_freedom(self) -> int:
        """Observations minus parameters."""
        return self.observations - len(self.coefficients)

    @property
    def level(self) -> Fraction:
        """The trend line at the origin, without a weekday effect."""
        return self.coefficients[0]

    @property
    def slope(self) -> Fraction:
        """The trend's change per day (0 for a constant)."""
        return self.coefficients[1] if len(self.coefficients) > 1 else Fraction(0)

    @property
    def weekday_effects(self) -> list[Fraction]:
        """Monday..Sunday effects summing to 0; empty without a weekly component."""
        if self.method is not Method.LINEAR_TREND_WEEKLY:
            return []
        six = list(self.coefficients[2:])
        return [*six, -sum(six, Fraction(0))]

    def predict(self, day: date) -> ForecastDay:
        """The point forecast of `day` with its intervals."""
        x = _regressors(self.method, (day - self.origin).days, day.weekday())
        value = sum(
            (Fraction(a) * b for a, b in zip(x, self.coefficients, strict=True)), Fraction(0)
        )
        if self.residual_variance is None:
            return ForecastDay(day, value, None, None)
        leverage = sum(
            x[i] * self.gram_inverse[i][j] * x[j] for i in range(len(x)) for j in range(len(x))
        )
        scale = math.sqrt(self.residual_variance * (1.0 + max(leverage, 0.0)))
        center = float(value)
        intervals = []
        for level in (80, 95):
            half = student_t_quantile(INTERVAL_QUANTILES[level], self.degrees_of_freedom) * scale
            intervals.append(Interval(center - half, center + half))
        return ForecastDay(day, value, intervals[0], intervals[1])


def fit(series: DailySeries, origin: date, fit_days: int) -> Model | None:
    """The model fitted on the values of [origin - fit_days + 1, origin]; None without any."""
    observed = [
        (d, v)
        for d in days_between(origin - timedelta(days=fit_days - 1), origin)
        if (v := series.value(d)) is not None
    ]
    if not observed:
        return None
    weekdays = {d.weekday() for d, _ in observed}
    if len(observed) >= MIN_WEEKLY_OBSERVATIONS and len(weekdays) == 7:
        method = Method.LINEAR_TREND_WEEKLY
    elif len(observed) >= 2:
        method = Method.LINEAR_TREND
    else:
        method = Method.CONSTANT
    rows = [_regressors(method, (d - origin).days, d.weekday()) for d, _ in observed]
    p = len(rows[0])
    # Sums over a common denominator run in plain integers: most series are
    # counts, and integer arithmetic keeps long windows and backtests fast.
    scale = math.lcm(*(v.denominator for _, v in observed))
    ys = [v.numerator * (scale // v.denominator) for _, v in observed]
    gram = [[sum(r[i] * r[j] for r in rows) for j in range(p)] for i in range(p)]
    moments = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(p)]
    scaled = _solve_exact(gram, [Fraction(m) for m in moments])
    coefficients = [c / scale for c in scaled]
    n = len(observed)
    variance: float | None = None
    if n > p:
        # For the least-squares solution X'(y - Xb) = 0, so RSS = y'y - b'X'y exactly.
        rss = Fraction(sum(y * y for y in ys)) - sum(
            (b * m for b, m in zip(scaled, moments, strict=True)), Fraction(0)
        )
        variance = float(rss / (scale * scale) / (n - p))
    return Model(method, origin, tuple(coefficients), n, variance, _invert(gram))


def _solve_exact(matrix: Sequence[Sequence[int]], rhs: Sequence[Fraction]) -> list[Fraction]:
    """Gaussian elimination in rationals: exact, and the systems are at most 8 x 8."""
    p = len(rhs)
    a = [[Fraction(v) for v in row] + [rhs[i]] for i, row in enumerate(matrix)]
    for col in range(p):
        pivot = next(r for r in range(col, p) if a[r][col] != 0)
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(p):
            if r != col and a[r][col] != 0:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
    return [a[i][p] / a[i][i] for i in range(p)]


def _invert(matrix: Sequence[Sequence[int]]) -> tuple[tuple[float, ...], ...]:
    """(X'X)^-1 in floats (only interval widths need it), by Gauss-Jordan with pivoting."""
    p = len(matrix)
    a = [
        [float(v) for v in row] + [1.0 if i == j else 0.0 for j in range(p)]
        for i, row in enumerate(matrix)
    ]
    for col in range(p):
        pivot = max(range(col, p), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        head = a[col][col]
        a[col] = [x / head for x in a[col]]
        for r in range(p):
            if r != col and a[r][col] != 0.0:
                factor = a[r][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
    return tuple(tuple(row[p:]) for row in a)


def forecast(model: Model, horizon_days: int) -> list[ForecastDay]:
    """The next `horizon_days` days after the model's origin."""
    return [model.predict(model.origin + timedelta(days=h)) for h in range(1, horizon_days + 1)]


@dataclass(frozen=True, slots=True)
class HorizonAccuracy:
    """Backtest errors of forecasts made `horizon` days ahead (0: all horizons)."""

    horizon: int
    forecasts: int
    mae: float | None
    mape: float | None
    coverage_80: float | None
    coverage_95: float | None


@dataclass(frozen=True, slots=True)
class Accuracy:
    """A rolling-origin backtest: origins that had a model, overall and per-horizon errors."""

    origins: int
    overall: HorizonAccuracy
    by_horizon: list[HorizonAccuracy]


@dataclass
class _Tally:
    errors: list[float]
    percentage_errors: list[float]
    covered_80: list[bool]
    covered_95: list[bool]

    def add(self, predicted: ForecastDay, actual: Fraction) -> None:
        self.errors.append(abs(float(predicted.value - actual)))
        if actual != 0:
            self.percentage_errors.append(abs(float((predicted.value - actual) / actual)))
        value = float(actual)
        if predicted.interval_80 is not None and predicted.interval_95 is not None:
            self.covered_80.append(predicted.interval_80.contains(value))
            self.covered_95.append(predicted.interval_95.contains(value))

    def summary(self, horizon: int) -> HorizonAccuracy:
        return HorizonAccuracy(
            horizon,
            len(self.errors),
            _mean(self.errors),
            _mean(self.percentage_errors),
            _mean([1.0 if c else 0.0 for c in self.covered_80]),
            _mean([1.0 if c else 0.0 for c in self.covered_95]),
        )


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def backtest(series: DailySeries, origin: date, fit_days: int, horizon_days: int) -> Accuracy:
    """Refit at each of the 28 days before `origin`; compare forecasts up to `origin`.

    `series` must cover [origin - 28 - fit_days + 1, origin].
    """
    longest = min(horizon_days, BACKTEST_ORIGINS)
    overall = _Tally([], [], [], [])
    per_horizon = {h: _Tally([], [], [], []) for h in range(1, longest + 1)}
    origins = 0
    for back in range(1, BACKTEST_ORIGINS + 1):
        start = origin - timedelta(days=back)
        model = fit(series, start, fit_days)
        if model is None:
            continue
        origins += 1
        for h in range(1, min(longest, back) + 1):
            actual = series.value(start + timedelta(days=h))
            if actual is None:
                continue
            predicted = model.predict(start + timedelta(days=h))
            per_horizon[h].add(predicted, actual)
            overall.add(predicted, actual)
    return Accuracy(
        origins, overall.summary(0), [per_horizon[h].summary(h) for h in sorted(per_horizon)]
    )


@functools.lru_cache(maxsize=1024)
def student_t_quantile(probability: float, degrees_of_freedom: int) -> float:
    """The `probability` quantile (> 0.5) of Student's t, by bisection on its CDF."""
    low, high = 0.0, 1.0
    while _student_t_cdf(high, degrees_of_freedom) < probability:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if _student_t_cdf(mid, degrees_of_freedom) < probability:
            low = mid
        else:
            high = mid
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2.0


def _student_t_cdf(x: float, df: int) -> float:
    """P(T <= x) for x >= 0: 1 - I_{df/(df+x^2)}(df/2, 1/2) / 2."""
    return 1.0 - 0.5 * _regularized_beta(df / (df + x * x), df / 2.0, 0.5)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by its continued fraction (modified Lentz), on the convergent side."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return result
