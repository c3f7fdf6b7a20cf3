"""Anomalous days of a daily series (spec/metrics.md, "Anomalies").

The baseline of day d is the values present in `[d-28, d-1]` (absent days
are left out): mean `m`, sample standard deviation `s` (n - 1).
`z = (x - m) / s`. Day d is anomalous if `|z| >= threshold`, or, with a
relative threshold r, if `|x - m| / m > r` (skipped when m = 0). No anomaly
with fewer than 14 baseline values, nor when s = 0 and x = m; s = 0 and
x != m is anomalous with an infinite z.

Both rules are decided in exact rational arithmetic, so a day exactly on a
threshold is decided as the formula says, not as floating point rounds it:
`|z| >= T` is `(x - m)^2 >= T^2 s^2`. The thresholds arrive as doubles and
are read as the decimal they print as (0.3 is 3/10, not the nearest binary
fraction), which is what the person who typed them meant. The reported
mean, deviation and z are the exact values rounded to doubles.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from northstar_metrics.domain.daily_series import DailySeries, days_between

BASELINE_DAYS = 28
MIN_BASELINE_DAYS = 14
DEFAULT_Z_THRESHOLD = Fraction(3)


class Direction(enum.Enum):
    """Whether the value is above (spike) or below (drop) its baseline mean."""

    SPIKE = "spike"
    DROP = "drop"


def threshold(value: float) -> Fraction:
    """A threshold typed as a decimal, exactly as it prints (0.3 -> 3/10)."""
    return Fraction(repr(value))


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomalous day and the exact numbers that made it so."""

    day: date
    value: Fraction
    mean: Fraction
    variance: Fraction
    baseline_days: int
    z_rule: bool
    relative_rule: bool

    @property
    def deviation(self) -> Fraction:
        """x - m."""
        return self.value - self.mean

    @property
    def stddev(self) -> float:
        """The sample standard deviation s."""
        return math.sqrt(self.variance)

    @property
    def infinite_z(self) -> bool:
        """s = 0 and x != m."""
        return self.variance == 0

    @property
    def z(self) -> float:
        """(x - m) / s; infinite, with the deviation's sign, when s = 0."""
        if self.variance == 0:
            return math.copysign(math.inf, self.deviation)
        return float(self.deviation) / self.stddev

    @property
    def relative_deviation(self) -> float | None:
        """(x - m) / m; None when m = 0."""
        return float(self.deviation / self.mean) if self.mean else None

    @property
    def direction(self) -> Direction:
        """Spike when x > m, drop when x < m."""
        return Direction.SPIKE if self.value > self.mean else Direction.DROP


@dataclass(frozen=True, slots=True)
class AnomalyScan:
    """The anomalous days of a range and how many days could be judged."""

    anomalies: list[Anomaly]
    days_judged: int


def scan(
    series: DailySeries,
    first: date,
    last: date,
    *,
    z_threshold: Fraction = DEFAULT_Z_THRESHOLD,
    relative_threshold: Fraction | None = None,
) -> AnomalyScan:
    """Judge each day of [first, last] with a value; `series` must cover [first-28, last]."""
    if z_threshold <= 0 or (relative_threshold is not None and relative_threshold <= 0):
        raise ValueError("thresholds must be > 0")
    # Running sums over the sliding baseline window keep the scan linear in days.
    n = 0
    total = Fraction(0)
    squares = Fraction(0)
    window_start = first - timedelta(days=BASELINE_DAYS)
    for d in days_between(window_start, first - timedelta(days=1)):
        v = series.value(d)
        if v is not None:
            n, total, squares = n + 1, total + v, squares + v * v
    anomalies: list[Anomaly] = []
    judged = 0
    for d in days_between(first, last):
        x = series.value(d)
        if x is not None and n >= MIN_BASELINE_DAYS:
            judged += 1
            found = _judge(
                d,
                x,
                n,
                total,
                squares,
                z_threshold=z_threshold,
                relative_threshold=relative_threshold,
            )
            if found is not None:
                anomalies.append(found)
        leaving = series.value(d - timedelta(days=BASELINE_DAYS))
        if leaving is not None:
            n, total, squares = n - 1, total - leaving, squares - leaving * leaving
        if x is not None:
            n, total, squares = n + 1, total + x, squares + x * x
    return AnomalyScan(anomalies, judged)


def _judge(
    day: date,
    x: Fraction,
    n: int,
    total: Fraction,
    squares: Fraction,
    *,
    z_threshold: Fraction,
    relative_threshold: Fraction | None,
) -> Anomaly | None:
    mean = total / n
    variance = (n * squares - total * total) / (n * (n - 1))
    deviation = x - mean
    if variance == 0:
        z_rule = deviation != 0
    else:
        z_rule = deviation * deviation >= z_threshold * z_threshold * variance
    relative_rule = (
        relative_threshold is not None and mean != 0 and abs(deviation) / mean > relative_threshold
    )
    if not (z_rule or relative_rule):
        return None
    return Anomaly(day, x, mean, variance, n, z_rule, relative_rule)
