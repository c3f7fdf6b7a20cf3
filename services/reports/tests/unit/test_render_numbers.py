"""How a report prints numbers: dash for absent, money in minor units, rates as percentages."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from northstar_reports.domain.render import numbers

FORMATTERS = [
    numbers.count,
    numbers.percent,
    numbers.points,
    numbers.money,
    numbers.plain,
    numbers.seconds,
    lambda x: numbers.percent(x, signed=True),
    lambda x: numbers.by_unit(x, "money"),
    lambda x: numbers.kpi_value("ltv_to_cac", x),
    lambda x: numbers.kpi_gap("churn_rate", x),
]


@pytest.mark.parametrize("fmt", FORMATTERS)
def test_absent_is_a_dash_never_zero(fmt: object) -> None:
    assert fmt(None) == "—"  # type: ignore[operator]
    assert fmt(math.nan) == "—"  # type: ignore[operator]


@pytest.mark.parametrize("fmt", FORMATTERS)
@given(x=st.floats(allow_nan=False))
def test_a_value_prints_as_something_other_than_a_dash(fmt: object, x: float) -> None:
    out = fmt(x)  # type: ignore[operator]
    assert isinstance(out, str) and out
    assert "nan" not in out.lower()


def test_counts_money_and_rates() -> None:
    assert numbers.count(1234567) == "1,234,567"
    assert numbers.count(3787.14) == "3,787.1"
    assert numbers.count(0) == "0"
    assert numbers.money(123456) == "1,234.56"
    assert numbers.money(-5) == "-0.05"
    assert numbers.money(0) == "0.00"
    assert numbers.percent(0.1234) == "12.3%"
    assert numbers.percent(0.1234, signed=True) == "+12.3%"
    assert numbers.percent(-0.049, signed=True) == "-4.9%"
    assert numbers.percent(0.0) == "0.0%"
    assert numbers.points(0.068) == "6.8 pp"
    assert numbers.by_unit(0.352, "ratio") == "35.2%"
    assert numbers.by_unit(20_264_500, "money") == "202,645.00"
    assert numbers.by_unit(561, "count") == "561"


def test_kpis_print_in_their_own_unit() -> None:
    assert numbers.kpi_value("d7_retention", 0.214) == "21.4%"
    assert numbers.kpi_value("churn_rate", 0.05) == "5.0%"
    assert numbers.kpi_value("ltv_to_cac", 4.6) == "4.6×"
    assert numbers.kpi_value("viral_coefficient", 0.5) == "0.5"
    assert numbers.kpi_gap("mrr_growth_mom", 0.068) == "6.8 pp"
    assert numbers.kpi_gap("ltv_to_cac", 1.25) == "1.25"


def test_durations() -> None:
    assert numbers.seconds(42) == "42 s"
    assert numbers.seconds(1260) == "21 min"
    assert numbers.seconds(5400) == "1.5 h"
    assert numbers.seconds(7 * 86400) == "7 d"
    assert numbers.seconds(4.2 * 86400) == "4.2 d"
