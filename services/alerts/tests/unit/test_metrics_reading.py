"""Which days the metrics client asks for."""

from __future__ import annotations

import datetime as dt

import pytest

from northstar_alerts.adapters.metrics_client import previous_kpi_day


@pytest.mark.parametrize(
    ("kpi", "day", "previous"),
    [
        # Signup-window KPIs: the window 30 days earlier.
        ("activation_rate", dt.date(2026, 3, 31), dt.date(2026, 3, 1)),
        ("d30_retention", dt.date(2026, 1, 15), dt.date(2025, 12, 16)),
        # Monthly KPIs: a day whose last complete month is the one before d's.
        ("churn_rate", dt.date(2026, 3, 31), dt.date(2026, 2, 1)),
        ("ltv_to_cac", dt.date(2026, 1, 1), dt.date(2025, 12, 1)),
    ],
)
def test_previous_period_of_a_kpi(kpi: str, day: dt.date, previous: dt.date) -> None:
    assert previous_kpi_day(kpi, day) == previous
