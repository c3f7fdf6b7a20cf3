"""Ingest's request summaries into `ingest_requests`, and the reads of the
data-quality and daily-series queries over the metrics schema.

The projection keeps what the event log does not otherwise show: events
ingest rejected (by field and rule) and the duplicates it answered without
storing them again. It reads `northstar.log.v1.RequestReceived` records from
the DOMAIN stream (`domain.ingest.<tenant>.received`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg
import orjson

from northstar.log.v1 import log_pb2
from northstar_metrics.adapters.event_store import EVENT_NAMES_CTE, EVENT_NAMES_SQL, EventStore
from northstar_metrics.adapters.queries import ReadModel
from northstar_metrics.domain.daily_series import (
    DailySeries,
    SeriesKind,
    SeriesSpec,
    count_series,
    ratio_series,
    signup_days,
)
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.quality import (
    NEEDS_ORG,
    NEEDS_USER,
    SKEW_LIMIT_US,
    WELL_KNOWN,
    RequestTally,
)
from northstar_metrics.domain.revenue import mrr_by_day
from northstar_metrics.domain.time import US_PER_DAY, day_of
from northstar_runtime.codec import SCHEMA_HEADER, TYPE_HEADER, UnknownRecord
from northstar_runtime.db import Connection
from northstar_runtime.projector import LogEntry

REQUEST_RECEIVED = "RequestReceived"
REQUEST_RECEIVED_SCHEMA = "1"
PROJECTION_NAME = "ingest_requests"
_EPOCH = date(1970, 1, 1)


class IngestRequestsProjection:
    """One row per RequestReceived: its clocks, duplicates and rejections."""

    name = PROJECTION_NAME

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Insert the batch's request summaries; a redelivered one changes nothing."""
        rows = []
        for entry in entries:
            kind = entry.headers.get(TYPE_HEADER)
            if kind != REQUEST_RECEIVED:
                # Other records of the ingest service are not this read model's business.
                continue
            schema = entry.headers.get(SCHEMA_HEADER, REQUEST_RECEIVED_SCHEMA)
            if schema != REQUEST_RECEIVED_SCHEMA:
                raise UnknownRecord(f"not a RequestReceived v1: v{schema}")
            summary = log_pb2.RequestReceived.FromString(entry.data)
            rejections = [
                {"field": r.field, "rule": r.rule, "count": r.count} for r in summary.rejections
            ]
            rows.append(
                (
                    summary.tenant,
                    entry.seq,
                    summary.received_at_us,
                    summary.sent_at_us,
                    summary.accepted,
                    summary.duplicate,
                    orjson.dumps(rejections).decode(),
                )
            )
        if not rows:
            return
        await conn.executemany(
            "INSERT INTO ingest_requests (tenant, position, received_at_us, sent_at_us,"
            " accepted, duplicate, rejections) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)"
            " ON CONFLICT DO NOTHING",
            rows,
        )

    async def reset(self, conn: Connection) -> None:
        """Empty the read model, for a replay of the DOMAIN stream."""
        await conn.execute("TRUNCATE ingest_requests")


def _day_start_us(day: date) -> int:
    return (day - _EPOCH).days * US_PER_DAY


# Integer day number of a timestamp, floored also before 1970 (SQL's / truncates).
_DAY_NUMBER = (
    "(CASE WHEN ts_us >= 0 THEN ts_us / 86400000000 ELSE -((-ts_us - 1) / 86400000000) - 1 END)"
)


# A loose index scan: the tenant's distinct event names, one probe of the
# (tenant, event, ts_us) index each, instead of reading every event.


@dataclass(frozen=True, slots=True)
class TenantSpan:
    """The days of a tenant's earliest and latest event timestamps."""

    first: date
    last: date


class SeriesReads:
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
        until = _day_start_us(last + timedelta(days=1))
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
        # MRR: an org's state carries over from before the range, so read all history
        # of every `subscription.*` name, as the Revenue query does.
        names = [n for n in await self.event_names(tenant) if n.startswith("subscription.")]
        rows = await self._events.events(tenant, names=names, until_us=until) if names else []
        return count_series(mrr_by_day(rows, lo, last), start=start, first=first, last=last)

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

    async def event_names(self, tenant: str) -> list[str]:
        """The tenant's distinct event names, in string order."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(EVENT_NAMES_SQL, tenant)
        return [r[0] for r in rows]

    async def event_counts(
        self, tenant: str, name: str, first: date, last: date
    ) -> dict[date, int]:
        """Events named `name` per day of [first, last] (days without any left out)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_DAY_NUMBER} AS day_number, count(*) FROM events"  # noqa: S608 - fixed fragment
                " WHERE tenant = $1 AND event = $2 AND ts_us >= $3 AND ts_us < $4"
                " GROUP BY day_number",
                tenant,
                name,
                _day_start_us(first),
                _day_start_us(last + timedelta(days=1)),
            )
        return {_EPOCH + timedelta(days=r[0]): int(r[1]) for r in rows}

    async def run_counts(
        self, tenant: str, first: date, last: date
    ) -> tuple[dict[date, int], dict[date, int]]:
        """Runs with a valid status, and failed runs, per day of [first, last].

        A valid status is the JSON string `success` or `failed`, exactly as
        `domain.workflows.run_status` reads it; counted in SQL because a
        quarter's runs are too many rows to decode one by one.
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_DAY_NUMBER} AS day_number, count(*),"  # noqa: S608 - fixed fragment
                " count(*) FILTER (WHERE properties ->> 'status' = 'failed')"
                " FROM events WHERE tenant = $1 AND event = 'workflow.run'"
                " AND ts_us >= $2 AND ts_us < $3"
                " AND jsonb_typeof(properties -> 'status') = 'string'"
                " AND properties ->> 'status' IN ('success', 'failed')"
                " GROUP BY day_number",
                tenant,
                _day_start_us(first),
                _day_start_us(last + timedelta(days=1)),
            )
        runs = {_EPOCH + timedelta(days=r[0]): int(r[1]) for r in rows}
        failed = {_EPOCH + timedelta(days=r[0]): int(r[2]) for r in rows}
        return runs, failed

    async def first_signups(self, tenant: str, first: date, last: date) -> list[int]:
        """Timestamps of the users' earliest `user.signup` that fall in [first, last]."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT min(ts_us) FROM events"
                " WHERE tenant = $1 AND event = 'user.signup' AND user_id <> ''"
                " GROUP BY user_id HAVING min(ts_us) >= $2 AND min(ts_us) < $3",
                tenant,
                _day_start_us(first),
                _day_start_us(last + timedelta(days=1)),
            )
        return [int(r[0]) for r in rows]


@dataclass(frozen=True, slots=True)
class PeriodFacts:
    """What the read models say about the events received in a period."""

    accepted: int
    accepted_skewed: int
    active_users: int
    orphan_users: int
    duplicates: int
    id_conflicts: int
    requests: list[RequestTally]
    ingest_duplicates: int
    incomplete_candidates: list[EventRow]
    heavy_users: dict[str, list[int]]
    newest_received_at_us: int | None
    log_position: int
    domain_log_position: int


# Leaves out only the events that are certainly complete; domain/quality.py
# decides about every other one, so the SQL need not match it exactly.
_INCOMPLETE_CANDIDATES = """
SELECT event_id, event, user_id, org_id, ts_us, properties::text, received_at_us, sent_at_us
FROM events
WHERE tenant = $1 AND received_at_us >= $2 AND received_at_us < $3 AND event = ANY($4::text[])
  AND NOT coalesce(
    (event <> ALL($5::text[]) OR user_id <> '')
    AND (event <> ALL($6::text[]) OR org_id <> '')
    AND (event <> 'workflow.run' OR (jsonb_typeof(properties -> 'status') = 'string'
         AND properties ->> 'status' IN ('success', 'failed')))
    AND (event NOT IN ('subscription.started', 'subscription.changed')
         OR (jsonb_typeof(properties -> 'mrr') = 'number'
             AND properties ->> 'mrr' ~ '^[0-9]{1,18}$'))
    AND (event <> 'marketing.spend'
         OR (jsonb_typeof(properties -> 'amount') = 'number'
             AND properties ->> 'amount' ~ '^-?[0-9]{1,18}$')),
    false)
"""


class QualityReads:
    """The data-quality facts of a receive period, read in one snapshot."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def period(
        self, tenant: str, first: date, last: date, *, bot_min_events: int
    ) -> PeriodFacts:
        """Everything DataQuality needs about events received on days [first, last]."""
        since, until = _day_start_us(first), _day_start_us(last + timedelta(days=1))
        period = (tenant, since, until)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            totals = await conn.fetchrow(
                "SELECT count(*) AS accepted,"
                " count(*) FILTER (WHERE sent_at_us <> 0"
                "   AND abs(received_at_us - sent_at_us) > $4) AS skewed,"
                " count(DISTINCT user_id) FILTER (WHERE user_id <> '') AS active"
                " FROM events WHERE tenant = $1 AND received_at_us >= $2 AND received_at_us < $3",
                *period,
                SKEW_LIMIT_US,
            )
            orphans = await conn.fetchval(
                "SELECT count(DISTINCT e.user_id) FROM events e"
                " WHERE e.tenant = $1 AND e.received_at_us >= $2 AND e.received_at_us < $3"
                " AND e.user_id <> '' AND NOT EXISTS (SELECT 1 FROM events s"
                "   WHERE s.tenant = $1 AND s.event = 'user.signup' AND s.user_id = e.user_id)",
                *period,
            )
            repeats = await conn.fetchrow(
                "SELECT coalesce(sum(duplicates), 0) AS duplicates,"
                " coalesce(sum(id_conflicts), 0) AS conflicts"
                " FROM quality_daily WHERE tenant = $1 AND day >= $2 AND day <= $3",
                tenant,
                first,
                last,
            )
            requests = await conn.fetch(
                "SELECT received_at_us, sent_at_us, duplicate, rejections::text"
                " FROM ingest_requests"
                " WHERE tenant = $1 AND received_at_us >= $2 AND received_at_us < $3",
                *period,
            )
            candidates = await conn.fetch(
                _INCOMPLETE_CANDIDATES,
                *period,
                sorted(WELL_KNOWN),
                sorted(NEEDS_USER),
                sorted(NEEDS_ORG),
            )
            heavy = await conn.fetch(
                "WITH heavy AS (SELECT user_id FROM events"
                "   WHERE tenant = $1 AND received_at_us >= $2 AND received_at_us < $3"
                "   AND user_id <> '' GROUP BY user_id HAVING count(*) >= $4)"
                " SELECT e.user_id, array_agg(e.ts_us) FROM events e JOIN heavy h"
                "   ON e.user_id = h.user_id"
                " WHERE e.tenant = $1 AND e.received_at_us >= $2 AND e.received_at_us < $3"
                " GROUP BY e.user_id",
                *period,
                bot_min_events,
            )
            newest = await conn.fetchval(
                "SELECT max(received_at_us) FROM events WHERE tenant = $1", tenant
            )
            positions = await conn.fetch("SELECT projection, position FROM projection_checkpoints")
        # Aggregates without GROUP BY always return one row.
        assert totals is not None and repeats is not None
        tallies = []
        ingest_duplicates = 0
        for r in requests:
            ingest_duplicates += int(r["duplicate"])
            tallies.append(
                RequestTally(
                    r["received_at_us"],
                    r["sent_at_us"],
                    [(x["field"], x["rule"], int(x["count"])) for x in orjson.loads(r[3])],
                )
            )
        domain_position = max(
            (int(p["position"]) for p in positions if p["projection"] == PROJECTION_NAME),
            default=0,
        )
        # The product-event projections ("activity", or "activity_p<a>_<b>" per
        # partition range) count positions of the EVENTS stream; others do not.
        event_position = max(
            (int(p["position"]) for p in positions if p["projection"].startswith("activity")),
            default=0,
        )
        return PeriodFacts(
            accepted=int(totals["accepted"]),
            accepted_skewed=int(totals["skewed"]),
            active_users=int(totals["active"]),
            orphan_users=int(orphans),
            duplicates=int(repeats["duplicates"]),
            id_conflicts=int(repeats["conflicts"]),
            requests=tallies,
            ingest_duplicates=ingest_duplicates,
            incomplete_candidates=[
                EventRow(
                    event_id=r[0],
                    event=r[1],
                    user_id=r[2],
                    org_id=r[3],
                    ts_us=r[4],
                    properties=orjson.loads(r[5]),
                    received_at_us=r[6],
                    sent_at_us=r[7],
                )
                for r in candidates
            ],
            heavy_users={r[0]: list(r[1]) for r in heavy},
            newest_received_at_us=None if newest is None else int(newest),
            log_position=event_position,
            domain_log_position=domain_position,
        )
