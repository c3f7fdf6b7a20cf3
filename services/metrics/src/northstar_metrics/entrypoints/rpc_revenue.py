"""The revenue RPCs of MetricsService: proto in, query, proto out.

Months are every calendar month that overlaps the requested range, each computed over
the whole month even where the range cuts it (a month's numbers never depend on the
range that asked for them); signup growth and the viral coefficient also read the month
before the first one.

`_RevenueReader` reads only the facts revenue counts, in one snapshot: the properties
it needs rather than whole events, and the signup counts and acquisition channels
aggregated in PostgreSQL, so that a tenant's ~200k signups never leave the database.
The rules stay in domain/revenue.py (the same `counted_state` / `counted_spend`
decisions the row-based functions use); the integration tests hold this path to the
brute-force reference.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import grpc
import orjson

from northstar.metrics.v1 import revenue_pb2
from northstar_metrics.adapters.event_store import ACTIVITY_POSITION_SQL, EVENT_NAMES_SQL
from northstar_metrics.domain.revenue import (
    SUBSCRIPTION_PREFIX,
    MonthRevenue,
    RevenueDay,
    RevenueFacts,
    SubscriptionState,
    counted_spend,
    counted_state,
    daily_revenue,
    month_summaries,
    months_overlapping,
    new_paying_orgs,
    next_month,
    previous_month,
    signups_by_month_of_days,
    start_us,
    text_value,
)
from northstar_metrics.domain.time import day_of
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import date_range
from northstar_runtime.db import Connection
from northstar_runtime.grpc_server import current_principal

_SUBSCRIPTIONS = """
SELECT event, org_id, ts_us, event_id, (properties -> 'mrr')::text
FROM events
WHERE tenant = $1 AND event = ANY($2::text[]) AND org_id <> '' AND ts_us < $3
ORDER BY ts_us, event_id COLLATE "C"
"""
_SPEND = """
SELECT ts_us, (properties -> 'channel')::text, (properties -> 'amount')::text
FROM events
WHERE tenant = $1 AND event = 'marketing.spend' AND ts_us >= $2 AND ts_us < $3
"""
# Users' signups (earliest `user.signup` by timestamp, then event_id in code-point
# order: `COLLATE "C"` compares UTF-8 bytes, which orders like code points) per day.
_SIGNUPS = """
SELECT date '1970-01-01' + (ts_us / 86400000000)::int AS day, count(*),
       count(*) FILTER (WHERE channel = '"referral"'::jsonb)
FROM (
  SELECT DISTINCT ON (user_id) ts_us, properties -> 'channel' AS channel
  FROM events
  WHERE tenant = $1 AND event = 'user.signup' AND user_id <> ''
  ORDER BY user_id, ts_us, event_id COLLATE "C"
) first_signups
WHERE ts_us >= $2 AND ts_us < $3
GROUP BY 1
"""
# The channel of each org's earliest `user.signup` (any user's) carrying its org_id.
_ACQUISITION = """
SELECT DISTINCT ON (org_id) org_id, (properties -> 'channel')::text
FROM events
WHERE tenant = $1 AND event = 'user.signup' AND org_id = ANY($2::text[])
ORDER BY org_id, ts_us, event_id COLLATE "C"
"""
# Sorting a large tenant's signups by user needs more than the default.
_WORK_MEM = "SET LOCAL work_mem = '64MB'"
_HAS_CHECKPOINTS = "SELECT to_regclass('projection_checkpoints') IS NOT NULL"
# The position of the projection that writes `events` (positions of projections over
# other streams are not comparable with it).


def _decoded(text: str | None) -> object:
    """A property value as stored JSON text, decoded; None when the key is absent."""
    return None if text is None else orjson.loads(text)


class _RevenueReader:
    """The counted revenue facts of one tenant, read in one repeatable-read snapshot."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def position(self) -> int:
        """The log position the events read model reflects (0 before its first batch)."""
        if not await self._conn.fetchval(_HAS_CHECKPOINTS):
            return 0
        return int(await self._conn.fetchval(ACTIVITY_POSITION_SQL))

    async def states(self, tenant: str, until_us: int) -> list[SubscriptionState]:
        """The counted `subscription.*` events before `until_us`, in the order rule."""
        names = [
            r[0]
            for r in await self._conn.fetch(EVENT_NAMES_SQL, tenant)
            if r[0].startswith(SUBSCRIPTION_PREFIX)
        ]
        if not names:
            return []
        rows = await self._conn.fetch(_SUBSCRIPTIONS, tenant, names, until_us)
        states = [
            s
            for r in rows
            if (s := counted_state(r[0], r[1], r[2], r[3], _decoded(r[4]))) is not None
        ]
        # Already in order from SQL, where sorting is cheaper; Python's sort of sorted data
        # is one linear pass that keeps the order rule independent of the collation.
        states.sort(key=lambda s: (s.ts_us, s.event_id))
        return states

    async def facts(self, tenant: str, months: list[date]) -> RevenueFacts:
        """Everything the months need (signups from the month before the first one on)."""
        await self._conn.execute(_WORK_MEM)
        since, until = start_us(months[0]), start_us(next_month(months[-1]))
        states = await self.states(tenant, until)
        spend = [
            s
            for r in await self._conn.fetch(_SPEND, tenant, since, until)
            if (s := counted_spend(day_of(r[0]), _decoded(r[1]), _decoded(r[2]))) is not None
        ]
        signup_days = await self._conn.fetch(
            _SIGNUPS, tenant, start_us(previous_month(months[0])), until
        )
        candidates = sorted(new_paying_orgs(states, months))
        acquisition = await self._conn.fetch(_ACQUISITION, tenant, candidates)
        return RevenueFacts(
            states=tuple(states),
            spend=tuple(spend),
            acquisition={r[0]: text_value(_decoded(r[1])) for r in acquisition},
            signups=signups_by_month_of_days((r[0], r[1], r[2]) for r in signup_days),
        )


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
        async with self.deps.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            reader = _RevenueReader(conn)
            position = await reader.position()
            facts = await reader.facts(tenant, months)
        response = revenue_pb2.RevenueResponse(log_position=position)
        response.days.extend(_day_message(d) for d in daily_revenue(facts.states, first, last))
        response.months.extend(_month_message(m) for m in month_summaries(facts, months))
        return response
