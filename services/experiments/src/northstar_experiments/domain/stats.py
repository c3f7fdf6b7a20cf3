"""Experiment statistics with the formulas of GrowthBook's gbstats 0.8.0.

Pure functions over per-variant sufficient statistics (users, sum, sum of squares and,
for CUPED, the pre-exposure sums and the cross products). Each function mirrors one
gbstats class so that the parity tests can compare number for number:

- `SampleMeanStatistic` / `ProportionStatistic` / `RegressionAdjustedStatistic` and
  `compute_theta` (gbstats/models/statistics.py) → `Moments`, `Adjusted`, `cuped_theta`;
- `TwoSidedTTest`, `SequentialTwoSidedTTest` (gbstats/frequentist/tests.py) →
  `frequentist`;
- `EffectBayesianABTest` with a flat (improper) prior (gbstats/bayesian/tests.py) →
  `bayesian`;
- `check_srm` (gbstats/utils.py) → `srm_p_value`.

gbstats itself is not a dependency: 0.8.0 pins numpy<2 and pandas<2, which would hold
the whole workspace (one lock) on old versions, and it analyses pandas data frames where
we have a handful of sums. scipy gives the same distributions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _st  # type: ignore[import-untyped]

ALPHA = 0.05
SEQUENTIAL_TUNING = 5000.0
SRM_THRESHOLD = 0.001
_Z_ALPHA = 1.959964
_Z_POWER = 0.841621

BASELINE_ZERO = "ZERO_VALUE_IN_BASELINE_VARIATION"
ZERO_VARIANCE = "ZERO_NEGATIVE_VARIANCE"
NO_UNITS = "NO_UNITS_IN_VARIATION"


@dataclass(frozen=True, slots=True)
class Moments:
    """One variant's per-user values of a metric: users, sum and sum of squares."""

    n: int
    total: float
    total_squares: float
    binomial: bool = False

    @property
    def mean(self) -> float:
        """Mean per user (0 without users)."""
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """p(1-p) for binomial metrics, else the sample variance (0 below 2 users)."""
        if self.binomial:
            m = self.mean
            return m * (1 - m)
        if self.n <= 1:
            return 0.0
        return (self.total_squares - self.total**2 / self.n) / (self.n - 1)


@dataclass(frozen=True, slots=True)
class CupedMoments:
    """A variant's post-exposure and pre-exposure moments and their cross products."""

    post: Moments
    pre: Moments
    post_pre_products: float

    @property
    def covariance(self) -> float:
        """Sample covariance of the post and pre values."""
        n = self.post.n
        if n <= 1:
            return 0.0
        return (self.post_pre_products - self.post.total * self.pre.total / n) / (n - 1)


@dataclass(frozen=True, slots=True)
class Adjusted:
    """What a test needs of one variant: n, (adjusted) mean, unadjusted mean, variance."""

    n: int
    mean: float
    unadjusted_mean: float
    variance: float


def plain(m: Moments) -> Adjusted:
    """A variant without regression adjustment."""
    return Adjusted(m.n, m.mean, m.mean, m.variance)


def _joint(a: Moments, b: Moments) -> Moments:
    return Moments(a.n + b.n, a.total + b.total, a.total_squares + b.total_squares, a.binomial)


def cuped_theta(a: CupedMoments, b: CupedMoments) -> float:
    """gbstats' theta: pooled cov(post, pre) / var(pre) of control and variant; 0 if degenerate."""
    post = _joint(a.post, b.post)
    pre = _joint(a.pre, b.pre)
    if pre.variance == 0 or post.variance == 0:
        return 0.0
    joint = CupedMoments(post, pre, a.post_pre_products + b.post_pre_products)
    return joint.covariance / pre.variance


def adjusted(m: CupedMoments, theta: float) -> Adjusted:
    """A variant with CUPED adjustment by theta."""
    n = m.post.n
    variance = (
        0.0 if n <= 1 else m.post.variance + theta**2 * m.pre.variance - 2 * theta * m.covariance
    )
    return Adjusted(n, m.post.mean - theta * m.pre.mean, m.post.mean, variance)


def cuped_pair(a: CupedMoments, b: CupedMoments) -> tuple[Adjusted, Adjusted, float]:
    """Control and variant adjusted with their pairwise theta (unadjusted when theta is 0)."""
    theta = cuped_theta(a, b)
    if theta == 0:
        return plain(a.post), plain(b.post), 0.0
    return adjusted(a, theta), adjusted(b, theta), theta


@dataclass(frozen=True, slots=True)
class Comparison:
    """A variant against the control: relative lift, interval and the engine's numbers."""

    lift: float
    ci_lower: float
    ci_upper: float
    stddev: float
    p_value: float = 1.0
    chance_to_win: float = 0.0
    risk_control: float = 0.0
    risk_variant: float = 0.0
    error: str = ""


def _relative(a: Adjusted, b: Adjusted) -> tuple[float, float]:
    ua, ub = a.unadjusted_mean, b.unadjusted_mean
    point = (b.mean - a.mean) / ua
    variance = b.variance / (ua**2 * b.n) + a.variance * ub**2 / (ua**4 * a.n)
    return point, variance


def frequentist(
    a: Adjusted, b: Adjusted, *, sequential: bool = False, alpha: float = ALPHA
) -> Comparison:
    """Two-sided Welch t-test of the relative lift, or its always-valid sequential form."""
    if a.mean == 0 or a.unadjusted_mean == 0:
        return Comparison(0.0, 0.0, 0.0, 0.0, p_value=1.0, error=BASELINE_ZERO)
    if a.variance <= 0 or b.variance <= 0:
        return Comparison(0.0, 0.0, 0.0, 0.0, p_value=1.0, error=ZERO_VARIANCE)
    point, variance = _relative(a, b)
    sd = math.sqrt(variance)
    if sequential:
        # Waudby-Smith et al. 2023 (https://arxiv.org/pdf/2103.06476v7.pdf), eqs 9, 155, 161.
        n = a.n + b.n
        rho = math.sqrt(
            (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / SEQUENTIAL_TUNING
        )
        s2 = variance * n
        width = math.sqrt(s2) * math.sqrt(
            (2 * (n * rho**2 + 1)) * math.log(math.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2
        )
        st2 = point**2 * n / variance
        tr2p1 = n * rho**2 + 1
        # p = 1 / e-value, e-value = exp(rho² st² / (2 (n rho² + 1))) / sqrt(n rho² + 1),
        # taken in logs: a strong effect's e-value overflows a double (gbstats' numpy
        # gives inf, so p = 0), its p-value underflows to 0.
        log_evalue = rho**2 * st2 / (2 * tr2p1) - 0.5 * math.log(tr2p1)
        p = math.exp(-log_evalue) if log_evalue > 0 else 1.0
        return Comparison(point, point - width, point + width, sd, p_value=p)
    dof = (b.variance / b.n + a.variance / a.n) ** 2 / (
        b.variance**2 / (b.n**2 * (b.n - 1)) + a.variance**2 / (a.n**2 * (a.n - 1))
    )
    p = float(2 * (1 - _st.t.cdf(abs(point / sd), dof)))
    width = float(_st.t.ppf(1 - alpha / 2, dof)) * sd
    return Comparison(point, point - width, point + width, sd, p_value=p)


def _truncated_mean(mu: float, sigma: float, low: float, high: float) -> float:
    a, b = (low - mu) / sigma, (high - mu) / sigma
    return float(_st.truncnorm.stats(a, b, loc=mu, scale=sigma, moments="m"))


def bayesian(
    a: Adjusted, b: Adjusted, *, inverse: bool = False, alpha: float = ALPHA
) -> Comparison:
    """Gaussian posterior of the relative lift under a flat prior: chance to win, risk."""
    if a.mean == 0 or a.unadjusted_mean == 0:
        return Comparison(0.0, 0.0, 0.0, 0.0, chance_to_win=0.5, error=BASELINE_ZERO)
    if a.n == 0 or b.n == 0:
        return Comparison(0.0, 0.0, 0.0, 0.0, chance_to_win=0.5, error=NO_UNITS)
    if a.variance <= 0 or b.variance <= 0:
        return Comparison(0.0, 0.0, 0.0, 0.0, chance_to_win=0.5, error=ZERO_VARIANCE)
    mu, variance = _relative(a, b)
    sd = math.sqrt(variance)
    ctw = float(_st.norm.sf(0, mu, sd))
    if inverse:
        ctw = 1 - ctw
    low, high = (float(x) for x in _st.norm.ppf([alpha / 2, 1 - alpha / 2], mu, sd))
    p_control_better = float(_st.norm.cdf(0.0, loc=mu, scale=sd))
    risk_control = (1.0 - p_control_better) * _truncated_mean(mu, sd, 0.0, math.inf)
    risk_variant = -p_control_better * _truncated_mean(mu, sd, -math.inf, 0.0)
    if inverse:
        risk_control, risk_variant = risk_variant, risk_control
    return Comparison(
        mu, low, high, sd, chance_to_win=ctw, risk_control=risk_control, risk_variant=risk_variant
    )


def srm_p_value(users: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-square goodness of fit of users per variant against the weights (1 with no users)."""
    total = sum(users)
    if not total:
        return 1.0
    total_weight = sum(weights)
    x = 0.0
    for o, w in zip(users, weights, strict=True):
        if w <= 0:
            continue
        e = w / total_weight * total
        x += (o - e) ** 2 / e
    return float(_st.chi2.sf(x, len(users) - 1))


def holm_bonferroni(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted_p = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted_p[i] = running
    return adjusted_p


def users_needed(control: Moments, variant: Moments) -> int:
    """Users per variant still needed for 80 % power at the observed effect (-1: no effect).

    `n = (1.959964 + 0.841621)² · (var_c + var_t) / (mean_t - mean_c)²` minus the smaller
    variant's users, at least 0 (spec/experiments.md).
    """
    diff = variant.mean - control.mean
    if diff == 0:
        return -1
    n = (_Z_ALPHA + _Z_POWER) ** 2 * (control.variance + variant.variance) / diff**2
    return max(0, math.ceil(n - min(control.n, variant.n)))
