"""The data-quality facts of a receive period, read from the read models."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg
import orjson

from northstar_metrics.adapters.event_store import activity_position
from northstar_metrics.adapters.ingest_requests import PROJECTION_NAME
from northstar_metrics.domain.quality import (
    BOT_MIN_EVENTS,
    BUSY_DAY_MIN_EVENTS,
    MissingFields,
    RequestTally,
    missing_fields_of,
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
    missing_fields: list[MissingFields]
    # The timestamps of the period's accepted events of each user who may be a
    # suspected bot (others cannot: at most 600 events on any two consecutive days).
    heavy_users: dict[str, list[int]]
    newest_received_at_us: int | None
    log_position: int
    domain_log_position: int


# Per receive-day range [$2, $3]: users with an accepted event received in it, among
# all ($4 false) or the orphans ($4 true), from the summed `received_spans` rows
# (domain/spans.py `active_in`); a one-day range reads that day's row.
_USERS_SQL = """
SELECT CASE WHEN $2::date = $3::date THEN
  (SELECT coalesce(sum(users), 0) FROM received_spans
   WHERE tenant = $1 AND orphan = $4 AND kind = 3 AND y = $3 AND x = $3)
ELSE
  (SELECT coalesce(sum(users), 0) FROM received_spans
   WHERE tenant = $1 AND orphan = $4 AND kind = 0 AND y <= $3)
  - (SELECT coalesce(sum(users), 0) FROM received_spans
     WHERE tenant = $1 AND orphan = $4 AND kind = 1 AND y < $2)
  - (SELECT coalesce(sum(users), 0) FROM received_spans
     WHERE tenant = $1 AND orphan = $4 AND kind = 2 AND y > $3 AND x < $2)
END
"""
# Users with at least $4 accepted events received in [$2, $3] within 60 seconds have
# that many on two consecutive activity days, so BUSY_DAY_MIN_EVENTS on one: the
# partial index of migration 0013 lists those users, whatever the period received (its
# predicate is repeated literally, or PostgreSQL cannot use it). Of those, only a user
# with $4 events received in the period and $4 on two consecutive activity days
# (`user_days`, every receive time) can be a bot; their timestamps are read user by user
# (events_by_user_time), never by joining the period's events, which a plan on stale
# statistics would scan once per user.
BOT_CANDIDATES_SQL = f"""
WITH candidates AS (
  SELECT DISTINCT user_id FROM user_days
  WHERE tenant = $1 AND events >= {int(BUSY_DAY_MIN_EVENTS)}
), heavy AS (
  SELECT u.user_id FROM user_received_days u JOIN candidates c ON c.user_id = u.user_id
  WHERE u.tenant = $1 AND u.day BETWEEN $2 AND $3
  GROUP BY u.user_id HAVING sum(u.events) >= $4
), dense AS (
  SELECT h.user_id FROM heavy h
  WHERE EXISTS (
    SELECT FROM (
      SELECT events + CASE WHEN lead(day) OVER w = day + 1 THEN lead(events) OVER w ELSE 0
        END AS two_days
      FROM user_days WHERE tenant = $1 AND user_id = h.user_id
      WINDOW w AS (ORDER BY day)
    ) d WHERE d.two_days >= $4
  )
)
SELECT h.user_id, (
  SELECT array_agg(e.ts_us) FROM events e
  WHERE e.tenant = $1 AND e.user_id = h.user_id AND e.user_id <> ''
    AND e.received_at_us >= $5 AND e.received_at_us < $6
) FROM dense h
"""  # noqa: S608 - an integer constant
# The period's request summaries in one scan: ingest's duplicates summed, and the
# requests with rejections (only they add to the tally) as [received, sent, rejections].
_REQUESTS_SQL = """
SELECT coalesce(sum(duplicate), 0) AS duplicates,
  coalesce(jsonb_agg(jsonb_build_array(received_at_us, sent_at_us, rejections))
    FILTER (WHERE rejections <> '[]'::jsonb), '[]'::jsonb)::text AS rejected
FROM ingest_requests
WHERE tenant = $1 AND received_at_us >= $2 AND received_at_us < $3
"""
_MISSING_SQL = """
SELECT event, field, sum(events)::bigint AS events FROM missing_fields_days
WHERE tenant = $1 AND day BETWEEN $2 AND $3
GROUP BY event, field
"""


class QualityStore:
    """The data-quality facts of a receive period, read in one snapshot."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def period(self, tenant: str, first: date, last: date) -> PeriodFacts:
        """Everything DataQuality needs about events received on days [first, last]."""
        since, until = day_start_us(first), day_start_us(last + timedelta(days=1))
        period = (tenant, since, until)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            repeats = await conn.fetchrow(
                "SELECT coalesce(sum(duplicates), 0) AS duplicates,"
                " coalesce(sum(id_conflicts), 0) AS conflicts,"
                " coalesce(sum(accepted), 0) AS accepted, coalesce(sum(skewed), 0) AS skewed"
                " FROM quality_daily WHERE tenant = $1 AND day >= $2 AND day <= $3",
                tenant,
                first,
                last,
            )
            active = await conn.fetchval(_USERS_SQL, tenant, first, last, False)
            orphans = await conn.fetchval(_USERS_SQL, tenant, first, last, True)
            requests = await conn.fetchrow(_REQUESTS_SQL, *period)
            missing = await conn.fetch(_MISSING_SQL, tenant, first, last)
            heavy = await conn.fetch(
                BOT_CANDIDATES_SQL, tenant, first, last, BOT_MIN_EVENTS, since, until
            )
            newest = await conn.fetchval(
                "SELECT max(received_at_us) FROM events WHERE tenant = $1", tenant
            )
            event_position = await activity_position(conn)
            domain_position = await conn.fetchval(_REQUESTS_POSITION_SQL, PROJECTION_NAME)
        # Aggregates without GROUP BY always return one row.
        assert repeats is not None
        assert requests is not None
        tallies = [
            RequestTally(
                received_at_us,
                sent_at_us,
                [(x["field"], x["rule"], int(x["count"])) for x in rejections],
            )
            for received_at_us, sent_at_us, rejections in orjson.loads(requests["rejected"])
        ]
        return PeriodFacts(
            accepted=int(repeats["accepted"]),
            accepted_skewed=int(repeats["skewed"]),
            active_users=int(active),
            orphan_users=int(orphans),
            duplicates=int(repeats["duplicates"]),
            id_conflicts=int(repeats["conflicts"]),
            requests=tallies,
            ingest_duplicates=int(requests["duplicates"]),
            missing_fields=missing_fields_of((r[0], r[1], int(r[2])) for r in missing),
            heavy_users={r[0]: list(r[1]) for r in heavy},
            newest_received_at_us=None if newest is None else int(newest),
            log_position=event_position,
            domain_log_position=int(domain_position),
        )
