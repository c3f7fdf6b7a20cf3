"""Attainment, thresholds, the alignment score and priority actions, by hand."""

from __future__ import annotations

from datetime import date

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
)


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
