"""The data-quality facts of a receive period, read from the read models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg
import orjson

from northstar_metrics.adapters.event_store import activity_position, event_row
from northstar_metrics.adapters.ingest_requests import PROJECTION_NAME
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.quality import (
    NEEDS_ORG,
    NEEDS_USER,
    SKEW_LIMIT_US,
    WELL_KNOWN,
    RequestTally,
)
from northstar_metrics.domain.time import day_start_us

# The position of the projection of ingest's request summaries: a position in the
# DOMAIN stream, not comparable with the activity projection's.
_REQUESTS_POSITION_SQL = (
    "SELECT coalesce(max(position), 0) FROM projection_checkpoints WHERE projection = $1"
)


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


class QualityStore:
    """The data-quality facts of a receive period, read in one snapshot."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def period(
        self, tenant: str, first: date, last: date, *, bot_min_events: int
    ) -> PeriodFacts:
        """Everything DataQuality needs about events received on days [first, last]."""
        since, until = day_start_us(first), day_start_us(last + timedelta(days=1))
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
            event_position = await activity_position(conn)
            domain_position = await conn.fetchval(_REQUESTS_POSITION_SQL, PROJECTION_NAME)
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
        return PeriodFacts(
            accepted=int(totals["accepted"]),
            accepted_skewed=int(totals["skewed"]),
            active_users=int(totals["active"]),
            orphan_users=int(orphans),
            duplicates=int(repeats["duplicates"]),
            id_conflicts=int(repeats["conflicts"]),
            requests=tallies,
            ingest_duplicates=ingest_duplicates,
            incomplete_candidates=[event_row(r) for r in candidates],
            heavy_users={r[0]: list(r[1]) for r in heavy},
            newest_received_at_us=None if newest is None else int(newest),
            log_position=event_position,
            domain_log_position=int(domain_position),
        )
