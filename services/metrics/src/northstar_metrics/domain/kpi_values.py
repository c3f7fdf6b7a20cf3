"""The value of each KPI as of a day, from the other metric definitions."""

from __future__ import annotations

from datetime import date, timedelta

from northstar_metrics.domain.activation import activation_counts, fast_activation_counts
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.kpis import KpiValue, last_complete_month
from northstar_metrics.domain.ratios import ratio
from northstar_metrics.domain.retention import day_retention_over_signups
from northstar_metrics.domain.revenue import month_summary
from northstar_metrics.domain.signups import signups


def _ratio(name: str, window: str, numerator: int, denominator: int) -> KpiValue:
    return KpiValue(name, ratio(numerator, denominator), window, numerator, denominator)


def kpi_values(
    as_of: date, rows: list[EventRow], user_days: dict[str, list[date]]
) -> dict[str, KpiValue]:
    """Every KPI of the table as of day `as_of`, using only complete windows before it."""
    sign = signups(rows)
    recent = (as_of - timedelta(days=37), as_of - timedelta(days=8))
    older = (as_of - timedelta(days=60), as_of - timedelta(days=31))
    recent_window = f"signups {recent[0].isoformat()}..{recent[1].isoformat()}"
    older_window = f"signups {older[0].isoformat()}..{older[1].isoformat()}"
    month = last_complete_month(as_of)
    month_window = f"month {month.isoformat()[:7]}"
    summary = month_summary(rows, sign, month)
    values = [
        _ratio(
            "d7_retention", recent_window, *day_retention_over_signups(sign, user_days, *recent, 7)
        ),
        _ratio("activation_rate", recent_window, *activation_counts(sign, rows, *recent)),
        _ratio(
            "d30_retention", older_window, *day_retention_over_signups(sign, user_days, *older, 30)
        ),
        KpiValue("ltv_to_cac", summary.ltv_to_cac, month_window),
        _ratio("signup_to_value_30m", recent_window, *fast_activation_counts(sign, rows, *recent)),
        KpiValue("mrr_growth_mom", summary.mrr_growth, month_window),
        KpiValue("churn_rate", summary.churn_rate, month_window),
        KpiValue("viral_coefficient", summary.viral_coefficient, month_window),
    ]
    return {v.name: v for v in values}
