"""The revenue RPCs of MetricsService: proto in, query, proto out.

Months are every calendar month that overlaps the requested range, each computed over
the whole month even where the range cuts it (a month's numbers never depend on the
range that asked for them); signup growth and the viral coefficient also read the month
before the first one. adapters/revenue_store.py reads the facts they count.
"""

from __future__ import annotations

from typing import Any

import grpc

from northstar.metrics.v1 import revenue_pb2
from northstar_metrics.adapters.revenue_store import RevenueStore
from northstar_metrics.domain.revenue import (
    MonthRevenue,
    RevenueDay,
    months_overlapping,
)
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import date_range
from northstar_runtime.grpc_server import current_principal


def _day_message(d: RevenueDay) -> revenue_pb2.RevenueDay:
    message = revenue_pb2.RevenueDay(date=d.day.isoformat(), mrr=d.mrr, paying_orgs=d.paying_orgs)
    if d.arpu is not None:
        message.arpu = d.arpu
    return message


def _month_message(m: MonthRevenue) -> revenue_pb2.RevenueMonth:
    message = revenue_pb2.RevenueMonth(
        month=m.month.strftime("%Y-%m"),
        mrr_start=m.mrr_start,
        mrr_end=m.mrr_end,
        paying_orgs_start=m.paying_start,
        paying_orgs_end=m.paying_end,
        new_mrr=m.new,
        new_orgs=m.new_orgs,
        expansion_mrr=m.expansion,
        expansion_orgs=m.expansion_orgs,
        contraction_mrr=m.contraction,
        contraction_orgs=m.contraction_orgs,
        churned_mrr=m.churned,
        churned_orgs=m.churned_orgs,
        marketing_spend=m.spend,
        signups=m.signups,
        previous_signups=m.previous_signups,
        referral_signups=m.referral_signups,
    )
    optional = {
        "churn_rate": m.churn_rate,
        "arpu_end": m.arpu_end,
        "ltv": m.ltv,
        "cac": m.cac,
        "ltv_to_cac": m.ltv_to_cac,
        "payback_months": m.payback_months,
        "mrr_growth": m.mrr_growth,
        "signup_growth": m.signup_growth,
        "viral_coefficient": m.viral_coefficient,
    }
    for name, value in optional.items():
        if value is not None:
            setattr(message, name, value)
    for c in m.channels:
        channel = message.channels.add(
            channel=c.channel, marketing_spend=c.spend, new_orgs=c.new_orgs
        )
        if c.cac is not None:
            channel.cac = c.cac
    return message


class RevenueRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    async def Revenue(  # noqa: N802 - gRPC method name
        self, request: revenue_pb2.RevenueRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> revenue_pb2.RevenueResponse:
        """MRR per day, and per overlapping month its movements, churn, LTV, CAC and growth."""
        first, last = date_range(request.from_date, request.to_date)
        tenant = current_principal().tenant
        months = months_overlapping(first, last)
        summaries, days, position = await RevenueStore(self.deps.pool).months(
            tenant, months, (first, last)
        )
        response = revenue_pb2.RevenueResponse(log_position=position)
        response.days.extend(_day_message(d) for d in days)
        response.months.extend(_month_message(m) for m in summaries)
        return response
