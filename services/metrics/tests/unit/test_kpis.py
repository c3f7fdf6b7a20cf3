"""Attainment, thresholds, the alignment score and priority actions, by hand."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest

from northstar_metrics.domain.kpis import (
    DEFAULT_KPIS,
    Direction,
    KpiDefinition,
    KpiValue,
    State,
    Status,
    apply_overrides,
    attainment,
    last_complete_month,
    scorecard,
    status_of,
    threshold_state,
)
from northstar_metrics.domain.revenue import MonthRatios


@pytest.mark.parametrize(
    ("direction", "target", "actual", "expected"),
    [
        (Direction.HIGHER, 0.25, 0.20, 0.8),
        (Direction.HIGHER, 0.25, 0.30, 1.0),
        (Direction.HIGHER, 0.15, -0.05, 0.0),  # negative growth floors at 0
        (Direction.LOWER, 0.05, 0.04, 1.0),
        (Direction.LOWER, 0.05, 0.05, 1.0),
        (Direction.LOWER, 0.05, 0.10, 0.5),
        (Direction.LOWER, 0.05, 0.0, 1.0),
        (Direction.HIGHER, 0.0, 0.0, 1.0),
        (Direction.HIGHER, 0.0, -1.0, 0.0),
    ],
)
def test_attainment(direction: Direction, target: float, actual: float, expected: float) -> None:
    assert attainment(direction, target, actual) == pytest.approx(expected)


def test_status_buckets() -> None:
    assert status_of(80.0) is Status.ON_TRACK
    assert status_of(79.999) is Status.AT_RISK
    assert status_of(50.0) is Status.AT_RISK
    assert status_of(49.9) is Status.OFF_TRACK
    assert status_of(None) is Status.NO_DATA


def test_scorecard_by_hand() -> None:
    values = {
        "d7_retention": KpiValue("d7_retention", 0.20, "w"),  # att 0.8, WARNING? 0.20 is not < 0.20
        "activation_rate": KpiValue("activation_rate", 0.10, "w"),  # att 0.25, CRITICAL
        "d30_retention": KpiValue("d30_retention", None, "w"),  # missing
        "ltv_to_cac": KpiValue("ltv_to_cac", 5.0, "m"),  # att 1
        "signup_to_value_30m": KpiValue("signup_to_value_30m", 0.30, "w"),  # att 0.5
        "mrr_growth_mom": KpiValue("mrr_growth_mom", None, "m"),  # missing
        "churn_rate": KpiValue("churn_rate", 0.08, "m"),  # att 0.625, WARNING
        "viral_coefficient": KpiValue("viral_coefficient", 0.5, "m"),  # att 1
    }
    card = scorecard(DEFAULT_KPIS, values)
    states = {r.definition.name: r.state for r in card.kpis}
    assert states == {
        "d7_retention": State.OK,
        "activation_rate": State.CRITICAL,
        "d30_retention": State.MISSING,
        "ltv_to_cac": State.OK,
        "signup_to_value_30m": State.OK,
        "mrr_growth_mom": State.MISSING,
        "churn_rate": State.WARNING,
        "viral_coefficient": State.OK,
    }
    weighted = 20 * 0.8 + 15 * 0.25 + 15 * 1 + 10 * 0.5 + 10 * 0.625 + 5 * 1
    assert card.score == pytest.approx(100 * weighted / (20 + 15 + 15 + 10 + 10 + 5))
    assert card.status is Status.AT_RISK
    assert card.missing == ("d30_retention", "mrr_growth_mom")
    impacts = [(a.kpi, round(a.impact, 6)) for a in card.actions]
    assert impacts == [
        ("activation_rate", 11.25),
        ("signup_to_value_30m", 5.0),
        ("d7_retention", 4.0),
        ("churn_rate", 3.75),
        ("ltv_to_cac", 0.0),  # ties keep the table order
        ("viral_coefficient", 0.0),
    ]
    gaps = {a.kpi: a.gap for a in card.actions}
    assert gaps["activation_rate"] == pytest.approx(0.30)
    assert gaps["churn_rate"] == pytest.approx(0.03)


def test_a_score_of_fifty_by_hand_is_at_risk() -> None:
    # 21 signups: 2 retained on day 7, 7 activated, 3 fast; signup to value targets 0.6.
    # Attainments 8/21, 5/6 and 5/21 weigh 20, 15 and 10: 100 x 22.5 / 45 = 50 exactly,
    # which double arithmetic made 49.99999999999999 (OFF_TRACK).
    definitions = apply_overrides(
        DEFAULT_KPIS,
        [KpiDefinition("signup_to_value_30m", Direction.HIGHER, 0.6, 10)],
    )
    values = {
        "d7_retention": KpiValue("d7_retention", Fraction(2, 21), "w", 2, 21),
        "activation_rate": KpiValue("activation_rate", Fraction(7, 21), "w", 7, 21),
        "signup_to_value_30m": KpiValue("signup_to_value_30m", Fraction(3, 21), "w", 3, 21),
    }
    card = scorecard(definitions, values)
    assert card.score == 50
    assert card.status is Status.AT_RISK
    attained = {r.definition.name: r.attainment for r in card.kpis if r.attainment is not None}
    assert attained == {
        "d7_retention": Fraction(8, 21),
        "activation_rate": Fraction(5, 6),
        "signup_to_value_30m": Fraction(5, 21),
    }


def test_a_value_exactly_at_a_threshold_is_not_past_it() -> None:
    # A month whose LTV:CAC is 2 by hand: 6 orgs paying 1,000 at the end, 2 of the 5 at
    # the start churned, 625 spent on 3 new orgs: (1000/6) / (2/5) / (625/3) = 2.
    month = MonthRatios.of(
        churned_orgs=2,
        paying_start=5,
        mrr_start=500,
        mrr_end=1_000,
        paying_end=6,
        spend=625,
        new_orgs=3,
        signups=0,
        previous_signups=0,
        referral_signups=0,
    )
    assert month.ltv_to_cac == 2
    assert month.payback_months == Fraction(5, 4)
    ltv_to_cac = next(d for d in DEFAULT_KPIS if d.name == "ltv_to_cac")  # critical < 2.0
    assert threshold_state(ltv_to_cac, month.ltv_to_cac) is State.WARNING
    # A configured 0.05 is the decimal 1/20, not the double just above it.
    churn = next(d for d in DEFAULT_KPIS if d.name == "churn_rate")
    churn_at_target = KpiDefinition("churn_rate", Direction.LOWER, 0.05, 10, 0.05, 0.10)
    assert threshold_state(churn_at_target, Fraction(1, 20)) is State.OK
    assert threshold_state(churn, Fraction(1, 10)) is State.WARNING


def test_no_values_means_no_score() -> None:
    card = scorecard(DEFAULT_KPIS, {})
    assert card.score is None
    assert card.status is Status.NO_DATA
    assert card.actions == ()
    assert len(card.missing) == 8


def test_overrides_replace_whole_kpis_but_keep_direction() -> None:
    new = apply_overrides(
        DEFAULT_KPIS, [KpiDefinition("churn_rate", Direction.HIGHER, 0.03, 30, None, 0.2)]
    )
    churn = next(d for d in new if d.name == "churn_rate")
    assert (churn.direction, churn.target, churn.weight, churn.warning, churn.critical) == (
        Direction.LOWER,
        0.03,
        30,
        None,
        0.2,
    )
    assert [d.name for d in new] == [d.name for d in DEFAULT_KPIS]


@pytest.mark.parametrize(
    ("as_of", "month"),
    [
        (date(2026, 3, 1), date(2026, 2, 1)),
        (date(2026, 3, 31), date(2026, 2, 1)),
        (date(2026, 1, 15), date(2025, 12, 1)),
    ],
)
def test_last_complete_month(as_of: date, month: date) -> None:
    assert last_complete_month(as_of) == month
