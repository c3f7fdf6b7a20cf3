"""Every date a request can name, at the calendar's edges: the first and last days a query
may name answer, a day past them is INVALID_ARGUMENT (never INTERNAL: a week's end or the
month before a KPI window once stepped outside Python's dates)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import grpc
import pytest

from northstar.metrics.v1 import (
    activation_pb2,
    filters_pb2,
    funnel_pb2,
    kpis_pb2,
    metrics_pb2,
    quality_pb2,
    retention_pb2,
    revenue_pb2,
    series_pb2,
    trend_pb2,
)
from northstar_metrics.domain.time import FIRST_DAY, LAST_DAY

from ..reference import Ev
from .conftest import MetricsUnderTest, auth
from .replay import applied

Ask = Callable[[MetricsUnderTest, str, str], Awaitable[Any]]
DAU = series_pb2.SeriesSelector(series=series_pb2.DAILY_SERIES_DAU)


def _asks() -> dict[str, Ask]:
    """Each date-taking RPC asked for [first, last] (or as of `last`)."""
    md = auth("t30")
    week = retention_pb2.COHORT_GRANULARITY_WEEK
    on_day = retention_pb2.RETENTION_MODE_ON_DAY
    return {
        "ActiveUsers": lambda m, a, b: m.stub.ActiveUsers(
            metrics_pb2.ActiveUsersRequest(from_date=a, to_date=b), metadata=md, timeout=30
        ),
        "Retention": lambda m, a, b: m.stub.Retention(
            retention_pb2.RetentionRequest(
                granularity=week, from_date=a, to_date=b, periods=12, mode=on_day, as_of_date=b
            ),
            metadata=md,
            timeout=30,
        ),
        "RetentionTrend": lambda m, a, b: m.stub.RetentionTrend(
            retention_pb2.RetentionTrendRequest(
                granularity=week, from_date=a, to_date=b, period=1, mode=on_day, as_of_date=b
            ),
            metadata=md,
            timeout=30,
        ),
        "Activation": lambda m, a, b: m.stub.Activation(
            activation_pb2.ActivationRequest(from_date=a, to_date=b), metadata=md, timeout=30
        ),
        "Workflows": lambda m, a, b: m.stub.Workflows(
            activation_pb2.WorkflowsRequest(
                from_date=a, to_date=b, granularity=activation_pb2.WORKFLOWS_GRANULARITY_WEEK
            ),
            metadata=md,
            timeout=30,
        ),
        "Funnel": lambda m, a, b: m.stub.Funnel(
            funnel_pb2.FunnelRequest(
                steps=[
                    filters_pb2.EventMatcher(event="user.signup"),
                    filters_pb2.EventMatcher(event="page.view"),
                ],
                from_date=a,
                to_date=b,
            ),
            metadata=md,
            timeout=30,
        ),
        "Trend": lambda m, a, b: m.stub.Trend(
            trend_pb2.TrendRequest(
                from_date=a,
                to_date=b,
                interval=trend_pb2.TREND_INTERVAL_WEEK,
                event="page.view",
                measure=trend_pb2.TREND_MEASURE_UNIQUE_USERS,
            ),
            metadata=md,
            timeout=30,
        ),
        "Revenue": lambda m, a, b: m.stub.Revenue(
            revenue_pb2.RevenueRequest(from_date=a, to_date=b), metadata=md, timeout=30
        ),
        "Kpis": lambda m, a, b: m.stub.Kpis(
            kpis_pb2.KpisRequest(as_of_date=a), metadata=md, timeout=30
        ),
        "Anomalies": lambda m, a, b: m.stub.Anomalies(
            series_pb2.AnomaliesRequest(selector=DAU, from_date=a, to_date=b),
            metadata=md,
            timeout=30,
        ),
        "Forecast": lambda m, a, b: m.stub.Forecast(
            series_pb2.ForecastRequest(selector=DAU, as_of_date=b, horizon_days=30),
            metadata=md,
            timeout=30,
        ),
        "DataQuality": lambda m, a, b: m.stub.DataQuality(
            quality_pb2.DataQualityRequest(from_date=a, to_date=b), metadata=md, timeout=30
        ),
    }


ASKS = _asks()


@pytest.mark.parametrize("rpc", sorted(ASKS))
async def test_the_calendars_edges_answer_and_past_them_is_invalid(
    metrics: MetricsUnderTest, rpc: str
) -> None:
    ask = ASKS[rpc]
    # Some activity near each edge, so that the queries have rows to step from.
    days_us = [
        int((d - date(1970, 1, 1)).total_seconds() * 1_000_000)
        for d in (FIRST_DAY + timedelta(days=3), LAST_DAY - timedelta(days=3))
    ]
    events = [
        Ev(f"{kind}{i}", kind, "u1", "o1", t, '{"plan": "free"}')
        for i, t in enumerate(days_us)
        for kind in ("user.signup", "page.view")
    ]
    await applied(metrics, await metrics.append("t30", events))
    month = timedelta(days=30)
    for first, last in ((FIRST_DAY, FIRST_DAY + month), (LAST_DAY - month, LAST_DAY)):
        await ask(metrics, first.isoformat(), last.isoformat())
    for first, last in (("0001-01-01", "0001-01-31"), ("9999-12-01", "9999-12-31")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ask(metrics, first, last)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, rpc
        assert "0100-01-01 to 9900-12-31" in (refused.value.details() or ""), rpc
