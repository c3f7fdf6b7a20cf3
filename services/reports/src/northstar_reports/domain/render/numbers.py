"""How a report prints its numbers: one place, so JSON aside every rendering agrees.

Readings (docs/spec-readings.md, Reports):

- An absent value (a proto `optional` left unset, a NaN) prints as "—", never as 0.
- Money is integer minor units, printed with two decimals and no currency symbol.
- Rates (retention, conversion, activation, churn, growth, lift) print as percentages
  with one decimal; a change against the previous period is signed ("+4.2%").
- Counts print with thousands separators; a non-integral count (an average, such as
  the daily active users over a week) keeps one decimal.
"""

from __future__ import annotations

import math

DASH = "—"

# KPIs of spec/metrics.md whose value is a rate; the others are plain ratios.
RATE_KPIS = frozenset(
    {
        "d7_retention",
        "activation_rate",
        "d30_retention",
        "signup_to_value_30m",
        "mrr_growth_mom",
        "churn_rate",
    }
)


def present(x: float | None) -> bool:
    """True when the value is there and is a number (NaN counts as absent)."""
    return x is not None and not math.isnan(x)


def count(x: float | None) -> str:
    """A count: "12,345", or "1,234.5" when it is not integral."""
    if x is None or not present(x):
        return DASH
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:,.1f}"


def percent(x: float | None, *, signed: bool = False, decimals: int = 1) -> str:
    """A fraction as a percentage: 0.1234 → "12.3%" ("+12.3%" when signed)."""
    if x is None or not present(x):
        return DASH
    if math.isinf(x):
        return ("+∞" if signed else "∞") if x > 0 else "-∞"
    sign = "+" if signed else ""
    return f"{x * 100:{sign},.{decimals}f}%"


def points(x: float | None) -> str:
    """A difference of two rates in percentage points: 0.05 → "5.0 pp"."""
    if x is None or not present(x) or math.isinf(x):
        return DASH
    return f"{x * 100:,.1f} pp"


def money(x: float | None) -> str:
    """Integer minor units with two decimals: 123456 → "1,234.56"."""
    if x is None or not present(x) or math.isinf(x):
        return DASH
    return f"{x / 100:,.2f}"


def plain(x: float | None, *, decimals: int = 2) -> str:
    """A plain number with at most `decimals` decimals, trailing zeros kept off."""
    if x is None or not present(x):
        return DASH
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    text = f"{x:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def by_unit(x: float | None, unit: str) -> str:
    """A key metric's value by its unit: `count`, `ratio` (a rate) or `money`."""
    if unit == "ratio":
        return percent(x)
    if unit == "money":
        return money(x)
    return count(x)


def kpi_value(name: str, x: float | None) -> str:
    """A KPI's value (or target, or threshold): a percentage for rates, else a plain ratio."""
    if name in RATE_KPIS:
        return percent(x)
    if name == "ltv_to_cac":
        return DASH if x is None or not present(x) else f"{plain(x)}×"
    return plain(x)


def kpi_gap(name: str, x: float | None) -> str:
    """A priority action's gap, in the KPI's own unit (percentage points for rates)."""
    if name in RATE_KPIS:
        return points(x)
    return plain(x)


def seconds(x: float | None) -> str:
    """A duration: "45 s", "12 min", "3.5 h", "2.1 d"."""
    if x is None or not present(x) or math.isinf(x):
        return DASH
    if x < 90:
        return f"{x:.0f} s"
    if x < 90 * 60:
        return f"{x / 60:.0f} min"
    if x < 36 * 3600:
        return f"{plain(x / 3600, decimals=1)} h"
    return f"{plain(x / 86400, decimals=1)} d"
