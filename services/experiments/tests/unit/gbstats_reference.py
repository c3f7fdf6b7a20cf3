"""Regenerate `gbstats_cases.json`: gbstats 0.8.0's outputs on random sufficient statistics.

gbstats 0.8.0 pins numpy<2 and pandas<2, so it cannot join the workspace; run this file
in a throwaway environment:

    uv run --no-project --python 3.11 --with gbstats==0.8.0 \
        python services/experiments/tests/unit/gbstats_reference.py

The parity test reads the JSON and compares our numbers with these to 1e-6 relative.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig, GaussianPrior
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm

OUT = Path(__file__).with_name("gbstats_cases.json")


def _moments(rng: random.Random, binomial: bool, n: int, base: float) -> dict[str, float]:
    """Sufficient statistics of n simulated users (post, pre and cross products)."""
    s = ss = ps = pss = pp = 0.0
    for _ in range(n):
        pre = (1.0 if rng.random() < base else 0.0) if binomial else rng.expovariate(1 / base)
        if binomial:
            post = 1.0 if rng.random() < (0.6 * base + 0.4 * pre) else 0.0
        else:
            post = max(0.0, 0.7 * pre + rng.gauss(base * 0.3, base * 0.5))
        s += post
        ss += post * post
        ps += pre
        pss += pre * pre
        pp += post * pre
    return {
        "n": n,
        "sum": s,
        "sum_squares": ss,
        "pre_sum": ps,
        "pre_sum_squares": pss,
        "post_pre": pp,
    }


def _stat(m: dict[str, float], binomial: bool, pre: bool = False) -> object:
    prefix = "pre_" if pre else ""
    if binomial:
        return ProportionStatistic(n=int(m["n"]), sum=m[f"{prefix}sum"])
    return SampleMeanStatistic(
        n=int(m["n"]), sum=m[f"{prefix}sum"], sum_squares=m[f"{prefix}sum_squares"]
    )


def _ra(m: dict[str, float], binomial: bool) -> RegressionAdjustedStatistic:
    return RegressionAdjustedStatistic(
        n=int(m["n"]),
        post_statistic=_stat(m, binomial),
        pre_statistic=_stat(m, binomial, pre=True),
        post_pre_sum_of_products=m["post_pre"],
        theta=0,
    )


def _result(test: object) -> dict[str, object]:
    r = test.compute_result()  # type: ignore[attr-defined]
    out: dict[str, object] = {
        "expected": r.expected,
        "ci": list(r.ci),
        "stddev": r.uplift.stddev,
        "error": r.error_message,
    }
    for name in ("p_value", "chance_to_win", "risk"):
        if hasattr(r, name):
            out[name] = getattr(r, name)
    theta = getattr(test.stat_a, "theta", None)  # type: ignore[attr-defined]
    out["theta"] = theta
    return out


def main() -> None:
    rng = random.Random(20240601)
    cases = []
    for i in range(40):
        binomial = i % 2 == 0
        base = rng.uniform(0.02, 0.5) if binomial else rng.uniform(1.0, 50.0)
        lift = rng.uniform(-0.2, 0.3)
        na, nb = rng.randint(50, 3000), rng.randint(50, 3000)
        a = _moments(rng, binomial, na, base)
        b = _moments(
            rng, binomial, nb, base * (1 + lift) if not binomial else min(0.95, base * (1 + lift))
        )
        case: dict[str, object] = {"binomial": binomial, "a": a, "b": b}
        for cuped in (False, True):
            make = (
                (lambda m, b=binomial: _ra(m, b)) if cuped else (lambda m, b=binomial: _stat(m, b))
            )
            key = "cuped_" if cuped else ""
            case[f"{key}frequentist"] = _result(
                TwoSidedTTest(make(a), make(b), FrequentistConfig(alpha=0.05))
            )
            case[f"{key}sequential"] = _result(
                SequentialTwoSidedTTest(
                    make(a), make(b), SequentialConfig(alpha=0.05, sequential_tuning_parameter=5000)
                )
            )
            for inverse in (False, True):
                case[f"{key}bayesian{'_inverse' if inverse else ''}"] = _result(
                    EffectBayesianABTest(
                        make(a),
                        make(b),
                        EffectBayesianConfig(
                            inverse=inverse, prior_effect=GaussianPrior(), prior_type="relative"
                        ),
                    )
                )
        cases.append(case)
    srm = []
    for _ in range(30):
        k = rng.randint(2, 6)
        raw = [rng.random() + 0.05 for _ in range(k)]
        weights = [w / sum(raw) for w in raw]
        users = [int(w * 10000 * rng.uniform(0.95, 1.05)) for w in weights]
        srm.append(
            {"users": users, "weights": weights, "p_value": float(check_srm(users, weights))}
        )
    OUT.write_text(json.dumps({"cases": cases, "srm": srm}, indent=1) + "\n")


if __name__ == "__main__":
    main()
