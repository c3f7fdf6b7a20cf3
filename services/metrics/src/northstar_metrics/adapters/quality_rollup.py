"""The data-quality read models kept by the projection, per receive day (migration 0009).

Maintenance per batch of first-seen events, inside the projection's transaction and
before `user_facts` takes the batch's signups (a user's orphan state is read first):

- `quality_daily.accepted` / `skewed` and `missing_fields_days` add the batch's counts;
- `user_received_days` adds each user's events per receive day;
- `received_spans`: each user with a new receive day, or whose first signup arrives,
  moves by the difference of its span rows (domain/spans.py) before and after the
  batch: always among all users, and among the orphans while it has no signup.

Duplicates never reach here (the projection dedups first), and every row is a sum
over events or a function of the set of a user's receive days and whether it has a
signup, so a replay of the log rebuilds the same rows whatever the batches.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import orjson

from northstar_metrics.adapters.rollups import add_counts
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.quality import is_clock_skewed, is_well_known, missing_fields
from northstar_metrics.domain.spans import span_rows, spans_delta
from northstar_metrics.domain.time import day_of
from northstar_runtime.db import Connection

if TYPE_CHECKING:
    from northstar_metrics.adapters.projection import _Event

# The well-known events whose properties `missing_fields` reads.
_READS_PROPERTIES = frozenset(
    {"workflow.run", "subscription.started", "subscription.changed", "marketing.spend"}
)

_ADD_DAILY = """
INSERT INTO quality_daily (tenant, day, accepted, skewed)
SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[])
ON CONFLICT (tenant, day) DO UPDATE SET
  accepted = quality_daily.accepted + excluded.accepted,
  skewed = quality_daily.skewed + excluded.skewed
"""
_ADD_MISSING = """
INSERT INTO missing_fields_days (tenant, day, event, field, events)
SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::text[], $5::bigint[])
ON CONFLICT (tenant, day, event, field) DO UPDATE SET
  events = missing_fields_days.events + excluded.events
"""
_STORED_DAYS = """
SELECT u.tenant, u.user_id, array_agg(u.day ORDER BY u.day) AS days
FROM user_received_days u JOIN unnest($1::text[], $2::text[]) AS k(tenant, user_id)
  ON u.tenant = k.tenant AND u.user_id = k.user_id
GROUP BY u.tenant, u.user_id
"""
_SIGNED_UP = """
SELECT f.tenant, f.user_id
FROM user_facts f JOIN unnest($1::text[], $2::text[]) AS k(tenant, user_id)
  ON f.tenant = k.tenant AND f.user_id = k.user_id
"""
_ADD_USER_DAYS = """
INSERT INTO user_received_days (tenant, user_id, day, events)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
ON CONFLICT (tenant, user_id, day) DO UPDATE SET
  events = user_received_days.events + excluded.events
"""
_ADD_SPANS = """
INSERT INTO received_spans (tenant, orphan, kind, y, x, users)
SELECT * FROM unnest($1::text[], $2::boolean[], $3::smallint[], $4::date[], $5::date[],
                     $6::bigint[])
ON CONFLICT (tenant, orphan, kind, y, x) DO UPDATE SET
  users = received_spans.users + excluded.users
"""
_DROP_ZERO_SPANS = """
DELETE FROM received_spans s
USING unnest($1::text[], $2::boolean[], $3::smallint[], $4::date[], $5::date[])
  AS k(tenant, orphan, kind, y, x)
WHERE s.users = 0 AND s.tenant = k.tenant AND s.orphan = k.orphan AND s.kind = k.kind
  AND s.y = k.y AND s.x = k.x
"""


def lacking(ev: _Event) -> list[str]:
    """What an accepted event lacks for its metrics (domain/quality.py `missing_fields`)."""
    e = ev.event
    if not is_well_known(e.event):
        return []
    properties = orjson.loads(e.properties_json or b"{}") if e.event in _READS_PROPERTIES else {}
    row = EventRow(e.event_id, e.event, e.user_id, e.org_id, e.timestamp_us, properties)
    return missing_fields(row)


class QualityRollup:
    """Maintains the per-receive-day quality counts, user receive days and their spans."""

    reset_tables = ("user_received_days", "received_spans", "missing_fields_days")

    async def apply(self, conn: Connection, fresh: Sequence[_Event]) -> None:
        """Fold the batch's first-seen events in (before `user_facts` takes its signups)."""
        daily: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
        missing: Counter[tuple[str, date, str, str]] = Counter()
        user_days: Counter[tuple[str, str, date]] = Counter()
        signups: set[tuple[str, str]] = set()
        for ev in fresh:
            e = ev.event
            day = day_of(e.received_at_us)
            counts = daily[(ev.tenant, day)]
            counts[0] += 1
            counts[1] += is_clock_skewed(e.received_at_us, e.sent_at_us)
            fields = lacking(ev)
            if fields:
                missing[(ev.tenant, day, e.event, "")] += 1
                for field in fields:
                    missing[(ev.tenant, day, e.event, field)] += 1
            if e.user_id:
                user_days[(ev.tenant, e.user_id, day)] += 1
                if e.event == "user.signup":
                    signups.add((ev.tenant, e.user_id))
        if daily:
            keys = sorted(daily)
            await conn.execute(
                _ADD_DAILY,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [daily[k][0] for k in keys],
                [daily[k][1] for k in keys],
            )
        if missing:
            keys4 = sorted(missing)
            columns = [list(c) for c in zip(*keys4, strict=True)]
            await conn.execute(_ADD_MISSING, *columns, [missing[k] for k in keys4])
        if user_days:
            await self._users(conn, user_days, signups)

    async def _users(
        self,
        conn: Connection,
        user_days: Counter[tuple[str, str, date]],
        signups: set[tuple[str, str]],
    ) -> None:
        batch: dict[tuple[str, str], set[date]] = defaultdict(set)
        for tenant, user_id, day in user_days:
            batch[(tenant, user_id)].add(day)
        users = sorted(batch)  # a fixed lock order between concurrent writers
        tenants, ids = [u[0] for u in users], [u[1] for u in users]
        stored = {(r[0], r[1]): list(r[2]) for r in await conn.fetch(_STORED_DAYS, tenants, ids)}
        signed = {(r[0], r[1]) for r in await conn.fetch(_SIGNED_UP, tenants, ids)}
        delta: Counter[tuple[str, bool, int, date, date]] = Counter()
        for user in users:
            before = stored.get(user, [])
            after = sorted(set(before) | batch[user])
            was_orphan = user not in signed
            is_orphan = was_orphan and user not in signups
            moves = [(False, spans_delta(before, after))]
            if was_orphan and is_orphan:
                moves.append((True, moves[0][1]))
            elif was_orphan:
                gone = dict.fromkeys(span_rows(before), -1)
                moves.append((True, gone))
            for orphan, rows in moves:
                for (kind, x, y), n in rows.items():
                    delta[(user[0], orphan, kind, y, x)] += n
        keys = sorted(user_days)
        columns = [list(c) for c in zip(*keys, strict=True)]
        await conn.execute(_ADD_USER_DAYS, *columns, [user_days[k] for k in keys])
        await add_counts(conn, delta, add=_ADD_SPANS, drop_zeros=_DROP_ZERO_SPANS)
