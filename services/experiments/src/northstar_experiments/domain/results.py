"""An experiment's analysis from sufficient statistics: comparisons, SRM, decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from northstar_experiments.domain.experiment import MetricDefinition, Variant
from northstar_experiments.domain.stats import (
    ALPHA,
    SRM_THRESHOLD,
    Comparison,
    CupedMoments,
    bayesian,
    cuped_pair,
    frequentist,
    holm_bonferroni,
    plain,
    srm_p_value,
    users_needed,
)

SHIP = "ship"
KEEP_RUNNING = "keep_running"
STOP_GUARDRAIL = "stop_guardrail"
_WIN_PROBABILITY = 0.95


@dataclass
class VariantOutcome:
    """One variant's numbers for one metric (comparison absent for the control)."""

    key: str
    moments: CupedMoments
    comparison: Comparison | None = None
    adjusted_p_value: float | None = None
    users_needed: int = 0


@dataclass
class MetricOutcome:
    """One metric's outcome across variants."""

    metric: MetricDefinition
    goal: bool
    variants: list[VariantOutcome]
    theta: float = 0.0


@dataclass
class Decision:
    """The recommendation."""

    kind: str
    variant: str = ""
    metric: str = ""
    reason: str = ""
    users_needed: int = 0


@dataclass
class Analysis:
    """Everything GetResults answers besides times and position."""

    srm_p_value: float
    srm_mismatch: bool
    metrics: list[MetricOutcome] = field(default_factory=list)
    decision: Decision = field(default_factory=lambda: Decision(KEEP_RUNNING))


def _significant(c: Comparison, bayes: bool, *, better: bool, inverse: bool, p: float) -> bool:
    if c.error:
        return False
    improved = (c.lift > 0) != inverse
    if bayes:
        ctw = c.chance_to_win
        return ctw > _WIN_PROBABILITY if better else ctw < 1 - _WIN_PROBABILITY
    return p < ALPHA and (improved if better else not improved)


def analyse(
    variants: Sequence[Variant],
    users: Sequence[int],
    metrics: Sequence[tuple[MetricDefinition, bool, Mapping[str, CupedMoments]]],
    *,
    bayes: bool,
    cuped: bool,
    sequential: bool,
) -> Analysis:
    """Compare every variant with the control (the first) on every metric; then decide."""
    srm = srm_p_value(users, [v.weight for v in variants])
    analysis = Analysis(srm, srm < SRM_THRESHOLD)
    control_key = variants[0].key
    for metric, goal, moments in metrics:
        control = moments[control_key]
        outcome = MetricOutcome(metric, goal, [VariantOutcome(control_key, control)])
        for v in variants[1:]:
            m = moments[v.key]
            if cuped:
                a, b, outcome.theta = cuped_pair(control, m)
            else:
                a, b = plain(control.post), plain(m.post)
            c = (
                bayesian(a, b, inverse=metric.inverse)
                if bayes
                else frequentist(a, b, sequential=sequential)
            )
            outcome.variants.append(
                VariantOutcome(v.key, m, c, users_needed=users_needed(control.post, m.post))
            )
        analysis.metrics.append(outcome)
    if not bayes:
        goals = [o for o in analysis.metrics if o.goal]
        for i in range(1, len(variants)):
            family = [o.variants[i] for o in goals]
            ps = [vo.comparison.p_value for vo in family if vo.comparison is not None]
            for vo, adj in zip(family, holm_bonferroni(ps), strict=True):
                vo.adjusted_p_value = adj
    analysis.decision = _decide(analysis, bayes)
    return analysis


def _decide(analysis: Analysis, bayes: bool) -> Decision:
    for o in analysis.metrics:
        if o.goal:
            continue
        for vo in o.variants[1:]:
            c = vo.comparison
            if c is not None and _significant(
                c, bayes, better=False, inverse=o.metric.inverse, p=c.p_value
            ):
                return Decision(
                    STOP_GUARDRAIL,
                    vo.key,
                    o.metric.name,
                    f"guardrail {o.metric.name} got significantly worse in {vo.key}",
                )
    goals = [o for o in analysis.metrics if o.goal]
    if not goals:
        return Decision(KEEP_RUNNING, reason="no goal metric")
    primary = goals[0]
    if analysis.srm_mismatch:
        return Decision(KEEP_RUNNING, reason="sample ratio mismatch: check the assignment")
    winners = [
        vo
        for vo in primary.variants[1:]
        if vo.comparison is not None
        and _significant(
            vo.comparison,
            bayes,
            better=True,
            inverse=primary.metric.inverse,
            p=vo.adjusted_p_value if vo.adjusted_p_value is not None else vo.comparison.p_value,
        )
    ]
    if winners:
        sign = -1 if primary.metric.inverse else 1
        best = max(winners, key=lambda vo: sign * vo.comparison.lift if vo.comparison else 0.0)
        return Decision(
            SHIP, best.key, primary.metric.name, f"{best.key} improved {primary.metric.name}"
        )
    needed = [vo.users_needed for vo in primary.variants[1:]]
    worst = -1 if any(n < 0 for n in needed) else max(needed, default=0)
    return Decision(
        KEEP_RUNNING,
        metric=primary.metric.name,
        reason="no significant effect on the first goal metric yet",
        users_needed=worst,
    )
