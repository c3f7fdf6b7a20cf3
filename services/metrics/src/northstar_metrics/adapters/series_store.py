"""The daily series of the Anomalies and Forecast queries, read from the read models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from northstar_metrics.adapters.event_store import EVENT_NAMES_CTE, EventStore
from northstar_metrics.adapters.queries import ReadModel
from northstar_metrics.adapters.revenue_store import RevenueStore
from northstar_metrics.domain.daily_series import (
    DailySeries,
    SeriesKind,
    SeriesSpec,
    count_series,
    ratio_series,
    signup_days,
)
from northstar_metrics.domain.time import day_of


@dataclass(frozen=True, slots=True)
class TenantSpan:
    """The days of a tenant's earliest and latest event timestamps."""

    first: date
    last: date


class SeriesStore:
    """The daily series over the read models; counts are aggregated in SQL."""

    def __init__(self, pool: asyncpg.Pool, events: EventStore, read_model: ReadModel) -> None:
        self._pool = pool
        self._events = events
        self._read_model = read_model

    async def series(
        self, tenant: str, spec: SeriesSpec, first: date, last: date, span: TenantSpan | None
    ) -> DailySeries:
        """The series over [first, last]; absent before the tenant's first day with events."""
        start = None if span is None else span.first
        if start is None or start > last:
            return DailySeries(first, last, {})
        lo = max(first, start)
        if spec.kind is SeriesKind.DAU:
            days, _ = await self._read_model.active_users(tenant, lo, last)
            return count_series({d.day: d.dau for d in days}, start=start, first=first, last=last)
        if spec.kind is SeriesKind.SIGNUPS:
            signups = signup_days(await self.first_signups(tenant, lo, last))
            return count_series(signups, start=start, first=first, last=last)
        if spec.kind is SeriesKind.EVENT_COUNT:
            counts = await self.event_counts(tenant, spec.event_name, lo, last)
            return count_series(counts, start=start, first=first, last=last)
        if spec.kind in (SeriesKind.WORKFLOW_RUNS, SeriesKind.ERROR_RATE):
            runs, failed = await self.run_counts(tenant, lo, last)
            if spec.kind is SeriesKind.WORKFLOW_RUNS:
                return count_series(runs, start=start, first=first, last=last)
            return ratio_series(failed, runs, start=start, first=first, last=last)
        # MRR: from the summed MRR steps of every day up to the range, as Revenue reads it.
        mrr = {d.day: d.mrr for d in await RevenueStore(self._pool).days(tenant, lo, last)}
        return count_series(mrr, start=start, first=first, last=last)

    async def span(self, tenant: str) -> TenantSpan | None:
        """The tenant's first and last days with any event; None without events."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"WITH RECURSIVE {EVENT_NAMES_CTE} SELECT"  # noqa: S608 - fixed fragment
                " min((SELECT min(e.ts_us) FROM events e"
                "      WHERE e.tenant = $1 AND e.event = n.event)) AS first_us,"
                " max((SELECT max(e.ts_us) FROM events e"
                "      WHERE e.tenant = $1 AND e.event = n.event)) AS last_us"
                " FROM names n WHERE n.event IS NOT NULL",
                tenant,
            )
        if row is None or row["first_us"] is None:
            return None
        return TenantSpan(day_of(row["first_us"]), day_of(row["last_us"]))

    async def event_counts(
        self, tenant: str, name: str, first: date, last: date
    ) -> dict[date, int]:
        """Events named `name` per day of [first, last] (days without any left out)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT day, n FROM event_days"
                " WHERE tenant = $1 AND event = $2 AND day >= $3 AND day <= $4 AND n > 0",
                tenant,
                name,
                first,
                last,
            )
        return {r["day"]: int(r["n"]) for r in rows}

    async def run_counts(
        self, tenant: str, first: date, last: date
    ) -> tuple[dict[date, int], dict[date, int]]:
        """Runs with a valid status, and failed runs, per day of [first, last].

        A valid status is the JSON string `success` or `failed`, exactly as
        `domain.workflows.run_status` reads it; read from the per-day rollup
        `run_day_totals` (see adapters/daily_counts.py).
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT day, successful + failed AS runs, failed FROM run_day_totals"
                " WHERE tenant = $1 AND day >= $2 AND day <= $3 AND successful + failed > 0",
                tenant,
                first,
                last,
            )
        runs = {r["day"]: int(r["runs"]) for r in rows}
        failed = {r["day"]: int(r["failed"]) for r in rows}
        return runs, failed

    async def first_signups(self, tenant: str, first: date, last: date) -> list[int]:
        """Timestamps of the users' earliest `user.signup` that fall in [first, last]."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT signup_ts_us FROM user_facts"
                " WHERE tenant = $1 AND signup_day BETWEEN $2::date AND $3::date",
                tenant,
                first,
                last,
            )
        return [int(r[0]) for r in rows]
