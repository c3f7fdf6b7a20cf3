"""Our statistics against gbstats 0.8.0's outputs on the same sufficient statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import chisquare

from northstar_experiments.domain.stats import (
    CupedMoments,
    Moments,
    bayesian,
    cuped_pair,
    frequentist,
    holm_bonferroni,
    plain,
    srm_p_value,
    users_needed,
)

DATA = json.loads(Path(__file__).with_name("gbstats_cases.json").read_text())
REL = 1e-6


def close(ours: float, theirs: float) -> bool:
    return math.isclose(ours, theirs, rel_tol=REL, abs_tol=1e-12)


def moments(m: dict[str, float], binomial: bool) -> CupedMoments:
    post = Moments(int(m["n"]), m["sum"], m["sum_squares"], binomial)
    pre = Moments(int(m["n"]), m["pre_sum"], m["pre_sum_squares"], binomial)
    return CupedMoments(post, pre, m["post_pre"])


def pair(case: dict[str, Any], cuped: bool) -> tuple[Any, Any]:
    a, b = moments(case["a"], case["binomial"]), moments(case["b"], case["binomial"])
    if cuped:
        ra, rb, _theta = cuped_pair(a, b)
        return ra, rb
    return plain(a.post), plain(b.post)


@pytest.mark.parametrize("index", range(len(DATA["cases"])))
@pytest.mark.parametrize("cuped", [False, True], ids=["plain", "cuped"])
def test_frequentist_and_sequential_match_gbstats(index: int, cuped: bool) -> None:
    case = DATA["cases"][index]
    a, b = pair(case, cuped)
    prefix = "cuped_" if cuped else ""
    for name, sequential in (("frequentist", False), ("sequential", True)):
        ref = case[prefix + name]
        ours = frequentist(a, b, sequential=sequential)
        assert close(ours.lift, ref["expected"]), name
        assert close(ours.ci_lower, ref["ci"][0]), name
        assert close(ours.ci_upper, ref["ci"][1]), name
        assert close(ours.p_value, ref["p_value"]), name
        assert close(ours.stddev, ref["stddev"]), name


@pytest.mark.parametrize("index", range(len(DATA["cases"])))
@pytest.mark.parametrize("cuped", [False, True], ids=["plain", "cuped"])
@pytest.mark.parametrize("inverse", [False, True], ids=["higher", "inverse"])
def test_bayesian_matches_gbstats(index: int, cuped: bool, inverse: bool) -> None:
    case = DATA["cases"][index]
    a, b = pair(case, cuped)
    ref = case[("cuped_" if cuped else "") + "bayesian" + ("_inverse" if inverse else "")]
    ours = bayesian(a, b, inverse=inverse)
    assert close(ours.lift, ref["expected"])
    assert close(ours.ci_lower, ref["ci"][0])
    assert close(ours.ci_upper, ref["ci"][1])
    assert close(ours.chance_to_win, ref["chance_to_win"])
    assert close(ours.risk_control, ref["risk"][0])
    assert close(ours.risk_variant, ref["risk"][1])


@pytest.mark.parametrize("index", range(len(DATA["cases"])))
def test_cuped_theta_matches_gbstats(index: int) -> None:
    case = DATA["cases"][index]
    a, b = moments(case["a"], case["binomial"]), moments(case["b"], case["binomial"])
    _ra, _rb, theta = cuped_pair(a, b)
    assert close(theta, case["cuped_frequentist"]["theta"])


@pytest.mark.parametrize("index", range(len(DATA["srm"])))
def test_srm_matches_gbstats_and_scipy_chisquare(index: int) -> None:
    case = DATA["srm"][index]
    ours = srm_p_value(case["users"], case["weights"])
    assert close(ours, case["p_value"])
    total = sum(case["users"])
    expected = [w * total for w in case["weights"]]
    assert close(ours, float(chisquare(case["users"], expected).pvalue))


def test_a_strong_effect_has_a_sequential_p_value_of_zero() -> None:
    # 10 % against 20 % conversion over 100k users each: the e-value is past a double's
    # range (gbstats' numpy gives inf, so p = 0; math.exp raised OverflowError).
    a, b = (
        plain(Moments(100_000, 10_000, 10_000, True)),
        plain(Moments(100_000, 20_000, 20_000, True)),
    )
    f = frequentist(a, b, sequential=True)
    assert f.p_value == 0.0
    assert close(f.lift, 1.0)
    assert abs(f.ci_lower - 0.92169) < 1e-5  # gbstats 0.8.0, to its printed digits
    assert abs(f.ci_upper - 1.07831) < 1e-5


def test_baseline_zero_gives_gbstats_default_output() -> None:
    a, b = plain(Moments(100, 0, 0, True)), plain(Moments(100, 5, 5, True))
    f = frequentist(a, b)
    assert (f.lift, f.ci_lower, f.ci_upper, f.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert f.error == "ZERO_VALUE_IN_BASELINE_VARIATION"
    assert bayesian(a, b).chance_to_win == 0.5


def test_holm_bonferroni_step_down() -> None:
    assert holm_bonferroni([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_bonferroni([0.5]) == [0.5]
    assert holm_bonferroni([0.001, 0.9]) == pytest.approx([0.002, 0.9])


def test_users_needed_formula() -> None:
    c = Moments(1000, 100, 100, True)
    t = Moments(1000, 120, 120, True)
    n = (1.959964 + 0.841621) ** 2 * (0.1 * 0.9 + 0.12 * 0.88) / 0.02**2
    assert users_needed(c, t) == math.ceil(n - 1000)
    assert users_needed(c, Moments(1000, 100, 100, True)) == -1
    assert users_needed(Moments(10**6, 1e5, 1e5, True), Moments(10**6, 1.2e5, 1.2e5, True)) == 0
