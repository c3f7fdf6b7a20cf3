"""KPIs as of a day, attainment, the alignment score and priority actions
(spec/metrics.md, "KPIs as of a date, and the alignment score").

Readings where the spec is silent, chosen as an analyst would expect:

- "As of day d" uses only complete windows before d: the signup windows are
  fixed offsets from d (e.g. `[d-37, d-8]`); "the last complete month" is the
  calendar month before d's month (its last day is before d).
- A target of 0 or less (a tenant may set one): a higher-is-better KPI attains
  1 when the value reaches the target, else 0; a lower-is-better KPI with a
  value of 0 attains 1.
- Threshold states: higher-is-better is CRITICAL below the critical level, else
  WARNING below the warning level; lower-is-better is CRITICAL above the
  critical level, else WARNING above the warning level (the table's `<` and
  `>`, strict). A KPI without thresholds is OK whenever it has a value.
- Priority actions list every KPI with a value, including those on target
  (impact 0), so a report can take the top five.
- Exact arithmetic: values are exact fractions of their counts and money, and a
  configured target, weight or threshold is the decimal it is written as (0.05 is
  1/20). Attainments, the score, states and the status are decided on those exact
  numbers and rounded to doubles only in the answer: a score of 50 by hand is AT_RISK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from enum import Enum
from fractions import Fraction

from northstar_metrics.domain.ratios import decimal


class Direction(Enum):
    """Which way is better."""

    HIGHER = "higher"
    LOWER = "lower"


class State(Enum):
    """A value against its thresholds."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    MISSING = "missing"


class Status(Enum):
    """The alignment score's bucket."""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    OFF_TRACK = "off_track"
    NO_DATA = "no_data"


@dataclass(frozen=True, slots=True)
class KpiDefinition:
    """A KPI's direction and its tenant-configurable target, weight and thresholds."""

    name: str
    direction: Direction
    target: float
    weight: float
    warning: float | None = None
    critical: float | None = None


DEFAULT_KPIS: tuple[KpiDefinition, ...] = (
    KpiDefinition("d7_retention", Direction.HIGHER, 0.25, 20, 0.20, 0.15),
    KpiDefinition("activation_rate", Direction.HIGHER, 0.40, 15, 0.30, 0.20),
    KpiDefinition("d30_retention", Direction.HIGHER, 0.15, 15, 0.12, 0.08),
    KpiDefinition("ltv_to_cac", Direction.HIGHER, 4.0, 15, 3.0, 2.0),
    KpiDefinition("signup_to_value_30m", Direction.HIGHER, 0.60, 10),
    KpiDefinition("mrr_growth_mom", Direction.HIGHER, 0.15, 10),
    KpiDefinition("churn_rate", Direction.LOWER, 0.05, 10, 0.07, 0.10),
    KpiDefinition("viral_coefficient", Direction.HIGHER, 0.5, 5),
)
KPI_NAMES: tuple[str, ...] = tuple(k.name for k in DEFAULT_KPIS)

RECOMMENDED_ACTIONS: Mapping[str, str] = {
    "d7_retention": "Improve the first-week experience: onboarding emails, in-app guides to the"
    " core workflow, and a check-in for users inactive after day 2.",
    "activation_rate": "Shorten the path to the first workflow: templates, a guided setup and"
    " prompts for users who signed up without creating one.",
    "d30_retention": "Deepen habit: recurring workflows, integrations that bring users back, and"
    " win-back campaigns for users fading after week two.",
    "ltv_to_cac": "Shift spend to the channels with the best LTV:CAC and raise expansion revenue"
    " (upgrades, seats) to lift LTV.",
    "signup_to_value_30m": "Get new users to a successful run within 30 minutes: prefilled"
    " sample data, one-click integrations and a first-run checklist.",
    "mrr_growth_mom": "Grow MRR: convert engaged free users, push expansion in paying accounts"
    " and reduce contraction.",
    "churn_rate": "Reduce churn: reach accounts with falling usage early, fix the top"
    " cancellation reasons and offer plan downgrades instead of cancellations.",
    "viral_coefficient": "Encourage referrals: an in-product invite flow, referral rewards and"
    " shareable workflow results.",
}


@dataclass(frozen=True, slots=True)
class KpiValue:
    """A KPI's measured value over its window (absent when the window has no data)."""

    name: str
    value: Fraction | None
    window: str
    numerator: int | None = None
    denominator: int | None = None


@dataclass(frozen=True, slots=True)
class KpiResult:
    """A KPI evaluated against its definition."""

    definition: KpiDefinition
    measured: KpiValue
    attainment: Fraction | None
    state: State


@dataclass(frozen=True, slots=True)
class PriorityAction:
    """A KPI with its impact on the score, its gap and a recommended action."""

    kpi: str
    impact: Fraction
    gap: Fraction
    recommended_action: str


@dataclass(frozen=True, slots=True)
class Scorecard:
    """Every KPI, the alignment score and status, the missing KPIs and the actions."""

    kpis: tuple[KpiResult, ...]
    score: Fraction | None
    status: Status
    missing: tuple[str, ...]
    actions: tuple[PriorityAction, ...]


def last_complete_month(as_of: date) -> date:
    """First day of the calendar month before `as_of`'s month (its last complete month)."""
    return (as_of.replace(day=1) - timedelta(days=1)).replace(day=1)


def attainment(direction: Direction, target: Fraction, actual: Fraction) -> Fraction:
    """How far a value meets its target, in [0, 1]."""
    one, zero = Fraction(1), Fraction(0)
    if direction is Direction.HIGHER:
        if target <= 0:
            return one if actual >= target else zero
        return max(zero, min(actual / target, one))
    if actual <= target:
        return one
    return max(zero, target / actual)


def threshold_state(d: KpiDefinition, actual: Fraction) -> State:
    """OK, WARNING or CRITICAL against the definition's thresholds (as decimals)."""
    critical = None if d.critical is None else decimal(d.critical)
    warning = None if d.warning is None else decimal(d.warning)
    if d.direction is Direction.HIGHER:
        if critical is not None and actual < critical:
            return State.CRITICAL
        if warning is not None and actual < warning:
            return State.WARNING
        return State.OK
    if critical is not None and actual > critical:
        return State.CRITICAL
    if warning is not None and actual > warning:
        return State.WARNING
    return State.OK


def status_of(score: Fraction | None) -> Status:
    """ON_TRACK (>= 80), AT_RISK (>= 50), OFF_TRACK (< 50); NO_DATA without a score."""
    if score is None:
        return Status.NO_DATA
    if score >= 80:
        return Status.ON_TRACK
    if score >= 50:
        return Status.AT_RISK
    return Status.OFF_TRACK


def scorecard(definitions: Sequence[KpiDefinition], values: Mapping[str, KpiValue]) -> Scorecard:
    """Evaluate every KPI, in the definitions' order."""
    results: list[KpiResult] = []
    for d in definitions:
        measured = values.get(d.name) or KpiValue(d.name, None, "")
        if measured.value is None:
            results.append(KpiResult(d, measured, None, State.MISSING))
            continue
        results.append(
            KpiResult(
                d,
                measured,
                attainment(d.direction, decimal(d.target), measured.value),
                threshold_state(d, measured.value),
            )
        )
    scored = [r for r in results if r.attainment is not None]
    total_weight = sum((decimal(r.definition.weight) for r in scored), Fraction(0))
    score = (
        100
        * sum(
            (decimal(r.definition.weight) * (r.attainment or 0) for r in scored),
            Fraction(0),
        )
        / total_weight
        if scored and total_weight > 0
        else None
    )
    actions = []
    for r in scored:
        d, value = r.definition, r.measured.value
        assert value is not None and r.attainment is not None
        target = decimal(d.target)
        gap = target - value if d.direction is Direction.HIGHER else value - target
        impact = decimal(d.weight) * (1 - r.attainment)
        actions.append(PriorityAction(d.name, impact, gap, RECOMMENDED_ACTIONS[d.name]))
    # sorted() is stable: equal impacts keep the table order.
    actions.sort(key=lambda a: -a.impact)
    return Scorecard(
        kpis=tuple(results),
        score=score,
        status=status_of(score),
        missing=tuple(r.definition.name for r in results if r.attainment is None),
        actions=tuple(actions),
    )


def apply_overrides(
    base: Sequence[KpiDefinition], overrides: Sequence[KpiDefinition]
) -> tuple[KpiDefinition, ...]:
    """The definitions with some KPIs replaced whole (direction always the built-in one)."""
    by_name = {o.name: o for o in overrides}
    return tuple(
        replace(by_name[d.name], direction=d.direction) if d.name in by_name else d for d in base
    )
