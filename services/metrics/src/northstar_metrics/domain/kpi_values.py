"""The value of each KPI as of a day, from the other metric definitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from northstar_metrics.domain.activation import activation_counts, fast_activation_counts
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.kpis import KpiValue, last_complete_month
from northstar_metrics.domain.ratios import exact_ratio
from northstar_metrics.domain.retention import day_retention_over_signups
from northstar_metrics.domain.revenue import MonthRevenue, month_summary
from northstar_metrics.domain.signups import signups


@dataclass(frozen=True, slots=True)
class KpiWindows:
    """The complete windows before a day that the KPIs read."""

    recent: tuple[date, date]  # signups: D7, activation, signup to value
    older: tuple[date, date]  # signups: D30
    month: date  # the last complete month (its first day)

    @classmethod
    def as_of(cls, day: date) -> KpiWindows:
        """The windows of the KPIs as of `day`."""
        return cls(
            recent=(day - timedelta(days=37), day - timedelta(days=8)),
            older=(day - timedelta(days=60), day - timedelta(days=31)),
            month=last_complete_month(day),
        )


@dataclass(frozen=True, slots=True)
class KpiCounts:
    """What the KPIs count over their windows: each pair is (numerator, denominator)."""

    d7_retention: tuple[int, int]
    activation: tuple[int, int]
    d30_retention: tuple[int, int]
    fast_activation: tuple[int, int]
    month: MonthRevenue


def _ratio(name: str, window: str, numerator: int, denominator: int) -> KpiValue:
    return KpiValue(name, exact_ratio(numerator, denominator), window, numerator, denominator)


def kpi_values_of(windows: KpiWindows, counts: KpiCounts) -> dict[str, KpiValue]:
    """Every KPI of the table from the counts over its windows."""
    recent, older = windows.recent, windows.older
    recent_window = f"signups {recent[0].isoformat()}..{recent[1].isoformat()}"
    older_window = f"signups {older[0].isoformat()}..{older[1].isoformat()}"
    month_window = f"month {windows.month.isoformat()[:7]}"
    summary, exact = counts.month, counts.month.ratios
    values = [
        _ratio("d7_retention", recent_window, *counts.d7_retention),
        _ratio("activation_rate", recent_window, *counts.activation),
        _ratio("d30_retention", older_window, *counts.d30_retention),
        KpiValue("ltv_to_cac", exact.ltv_to_cac, month_window),
        _ratio("signup_to_value_30m", recent_window, *counts.fast_activation),
        KpiValue("mrr_growth_mom", exact.mrr_growth, month_window),
        KpiValue(
            "churn_rate",
            exact.churn_rate,
            month_window,
            summary.churned_orgs,
            summary.paying_start,
        ),
        KpiValue(
            "viral_coefficient",
            exact.viral_coefficient,
            month_window,
            summary.referral_signups,
            summary.previous_signups,
        ),
    ]
    return {v.name: v for v in values}


def kpi_values(
    as_of: date, rows: list[EventRow], user_days: dict[str, list[date]]
) -> dict[str, KpiValue]:
    """Every KPI of the table as of day `as_of`, using only complete windows before it."""
    sign = signups(rows)
    w = KpiWindows.as_of(as_of)
    counts = KpiCounts(
        d7_retention=day_retention_over_signups(sign, user_days, *w.recent, 7),
        activation=activation_counts(sign, rows, *w.recent),
        d30_retention=day_retention_over_signups(sign, user_days, *w.older, 30),
        fast_activation=fast_activation_counts(sign, rows, *w.recent),
        month=month_summary(rows, sign, w.month),
    )
    return kpi_values_of(w, counts)
