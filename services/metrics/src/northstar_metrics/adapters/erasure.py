"""A user's erasure applied to every metrics read model, inside the projection's transaction.

The user's stored events are read once; every rollup they contributed to is moved by
the difference between its rows with and without them (the late-event paths' way,
run backwards), then the events, their dedup rows and every per-user row are deleted.
What the user shared with others is re-derived from the rows that remain: an org's
successful-run days (MAO), an org's MRR steps and months, an org's acquisition
signup, a workflow's run days and spans. So afterwards the tables equal those of a log
that never held the user's events, and a replay (events, then the erasure) ends the
same.

Kept, as facts about requests rather than about the user: `quality_daily.duplicates`
and `id_conflicts` (retries counted at the time, stored by day with no event id) and
`ingest_requests` (per-request tallies of rejections by field and rule).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date

import asyncpg
import orjson
import structlog

from northstar.log.v1 import log_pb2
from northstar_metrics.adapters.daily_counts import NO_WORKFLOW, run_key
from northstar_metrics.adapters.quality_rollup import lacking
from northstar_metrics.adapters.revenue_rollup import RevenueRollup, _properties
from northstar_metrics.adapters.rollups import add_counts, lock_keys
from northstar_metrics.adapters.user_facts import REFERRAL, contribution
from northstar_metrics.domain.active_users import MAO_WINDOW, WINDOWS
from northstar_metrics.domain.erasure import coverage_change
from northstar_metrics.domain.quality import is_clock_skewed
from northstar_metrics.domain.revenue import SubscriptionState, counted_state
from northstar_metrics.domain.spans import span_rows, spans_delta
from northstar_metrics.domain.time import day_of, day_start_us
from northstar_runtime.db import Connection
from northstar_runtime.erasure import remember_erased

log = structlog.get_logger("northstar.metrics.erasure")

_USER_EVENTS = """
SELECT event_id, event, org_id, ts_us, received_at_us, sent_at_us, properties::text AS p
FROM events WHERE tenant = $1 AND user_id = $2
"""
_SUBTRACT_EVENT_DAYS = """
UPDATE event_days d SET n = d.n - k.n
FROM unnest($1::text[], $2::date[], $3::bigint[]) AS k(event, day, n)
WHERE d.tenant = $4 AND d.event = k.event AND d.day = k.day
"""
_DROP_EVENT_DAYS = "DELETE FROM event_days WHERE tenant = $1 AND day = ANY($2::date[]) AND n <= 0"
_SUBTRACT_RUN_DAYS = """
UPDATE run_days r SET successful = r.successful - k.s, failed = r.failed - k.f
FROM unnest($1::date[], $2::text[], $3::bigint[], $4::bigint[]) AS k(day, workflow_id, s, f)
WHERE r.tenant = $5 AND r.day = k.day AND r.workflow_id = k.workflow_id
RETURNING r.day, r.workflow_id, r.successful + r.failed = 0 AS gone
"""
_DROP_RUN_DAYS = (
    "DELETE FROM run_days WHERE tenant = $1 AND successful = 0 AND failed = 0"
    " AND day = ANY($2::date[])"
)
_SUBTRACT_RUN_TOTALS = """
UPDATE run_day_totals r SET successful = r.successful - k.s, failed = r.failed - k.f
FROM unnest($1::date[], $2::bigint[], $3::bigint[]) AS k(day, s, f)
WHERE r.tenant = $4 AND r.day = k.day
"""
_DROP_RUN_TOTALS = (
    "DELETE FROM run_day_totals WHERE tenant = $1 AND successful = 0 AND failed = 0"
    " AND day = ANY($2::date[])"
)
_WORKFLOW_DAYS = """
SELECT workflow_id, array_agg(day ORDER BY day) AS days FROM run_days
WHERE tenant = $1 AND workflow_id = ANY($2::text[]) GROUP BY workflow_id
"""
_ADD_WORKFLOW_SPANS = """
INSERT INTO workflow_spans (tenant, kind, y, x, workflows)
SELECT * FROM unnest($1::text[], $2::smallint[], $3::date[], $4::date[], $5::bigint[])
ON CONFLICT (tenant, kind, y, x) DO UPDATE SET
  workflows = workflow_spans.workflows + excluded.workflows
"""
_DROP_WORKFLOW_SPANS = """
DELETE FROM workflow_spans w
USING unnest($1::text[], $2::smallint[], $3::date[], $4::date[]) AS k(tenant, kind, y, x)
WHERE w.workflows = 0 AND w.tenant = k.tenant AND w.kind = k.kind AND w.y = k.y AND w.x = k.x
"""
_SUBTRACT_QUALITY = """
UPDATE quality_daily q SET accepted = q.accepted - k.a, skewed = q.skewed - k.s
FROM unnest($1::date[], $2::bigint[], $3::bigint[]) AS k(day, a, s)
WHERE q.tenant = $4 AND q.day = k.day
"""
_DROP_QUALITY = (
    "DELETE FROM quality_daily WHERE tenant = $1 AND day = ANY($2::date[])"
    " AND accepted = 0 AND skewed = 0 AND duplicates = 0 AND id_conflicts = 0"
)
_SUBTRACT_MISSING = """
UPDATE missing_fields_days m SET events = m.events - k.n
FROM unnest($1::date[], $2::text[], $3::text[], $4::bigint[]) AS k(day, event, field, n)
WHERE m.tenant = $5 AND m.day = k.day AND m.event = k.event AND m.field = k.field
"""
_DROP_MISSING = (
    "DELETE FROM missing_fields_days WHERE tenant = $1 AND day = ANY($2::date[]) AND events <= 0"
)
_ADD_DELTAS = """
INSERT INTO active_deltas (tenant, day, dau, wau, mau, mao)
SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[], $5::bigint[],
                     $6::bigint[])
ON CONFLICT (tenant, day) DO UPDATE SET
  dau = active_deltas.dau + excluded.dau, wau = active_deltas.wau + excluded.wau,
  mau = active_deltas.mau + excluded.mau, mao = active_deltas.mao + excluded.mao
"""
_ADD_COHORT_COUNTS = """
INSERT INTO cohort_counts (tenant, attr, value, kind, signup_day, x, y, users)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::date[],
                     $6::date[], $7::date[], $8::bigint[])
ON CONFLICT (tenant, attr, value, kind, signup_day, x, y)
DO UPDATE SET users = cohort_counts.users + excluded.users
"""
_DROP_COHORT_COUNTS = """
DELETE FROM cohort_counts c
USING unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::date[], $6::date[],
             $7::date[]) AS k(tenant, attr, value, kind, signup_day, x, y)
WHERE c.users = 0 AND c.tenant = k.tenant AND c.attr = k.attr AND c.value = k.value
  AND c.kind = k.kind AND c.signup_day = k.signup_day AND c.x = k.x AND c.y = k.y
"""
_ADD_SIGNUP_DAYS = """
INSERT INTO signup_days (tenant, day, referral, users)
SELECT * FROM unnest($1::text[], $2::date[], $3::boolean[], $4::bigint[])
ON CONFLICT (tenant, day, referral) DO UPDATE SET users = signup_days.users + excluded.users
"""
_DROP_SIGNUP_DAYS = """
DELETE FROM signup_days s
USING unnest($1::text[], $2::date[], $3::boolean[]) AS k(tenant, day, referral)
WHERE s.users = 0 AND s.tenant = k.tenant AND s.day = k.day AND s.referral = k.referral
"""
_ADD_RECEIVED_SPANS = """
INSERT INTO received_spans (tenant, orphan, kind, y, x, users)
SELECT * FROM unnest($1::text[], $2::boolean[], $3::smallint[], $4::date[], $5::date[],
                     $6::bigint[])
ON CONFLICT (tenant, orphan, kind, y, x) DO UPDATE SET
  users = received_spans.users + excluded.users
"""
_DROP_RECEIVED_SPANS = """
DELETE FROM received_spans s
USING unnest($1::text[], $2::boolean[], $3::smallint[], $4::date[], $5::date[])
  AS k(tenant, orphan, kind, y, x)
WHERE s.users = 0 AND s.tenant = k.tenant AND s.orphan = k.orphan AND s.kind = k.kind
  AND s.y = k.y AND s.x = k.x
"""
# Whether an org still has a successful workflow.run on a day, among the remaining events.
_ORG_STILL_SUCCEEDS = """
SELECT EXISTS (SELECT 1 FROM events WHERE tenant = $1 AND event = 'workflow.run'
  AND org_id = $2 AND ts_us >= $3 AND ts_us < $4
  AND properties->'status' = '"success"'::jsonb)
"""
_ORG_DAYS = """
SELECT array_agg(day ORDER BY day) FROM org_success_days WHERE tenant = $1 AND org_id = $2
"""
# An org's acquisition signup among the remaining events (as RevenueRollup keeps it).
_ORG_FIRST_SIGNUP = """
SELECT ts_us, event_id, CASE WHEN jsonb_typeof(properties->'channel') = 'string'
  THEN properties->>'channel' END AS channel
FROM events WHERE tenant = $1 AND event = 'user.signup' AND org_id = $2 AND user_id <> ''
ORDER BY ts_us, event_id COLLATE "C" LIMIT 1
"""
_STORED_STATES = """
SELECT org_id, ts_us, event_id, mrr FROM subscription_states
WHERE tenant = $1 AND org_id = ANY($2::text[])
"""


def _stored(user_id: str, r: asyncpg.Record) -> log_pb2.StoredEvent:
    """A stored `events` row as the StoredEvent the rollups read."""
    return log_pb2.StoredEvent(
        event_id=r["event_id"],
        event=r["event"],
        user_id=user_id,
        org_id=r["org_id"],
        timestamp_us=r["ts_us"],
        received_at_us=r["received_at_us"],
        sent_at_us=r["sent_at_us"],
        properties_json=r["p"].encode(),
    )


def _is_successful_run(e: log_pb2.StoredEvent) -> bool:
    if e.event != "workflow.run" or not e.org_id:
        return False
    return bool(orjson.loads(e.properties_json or b"{}").get("status") == "success")


class UserErasure:
    """Removes one user from every metrics read model (see the module's docstring)."""

    async def apply(self, conn: Connection, erasure: log_pb2.UserErased) -> None:
        """Erase the user's events and everything derived from them; remember the erasure."""
        tenant, user = erasure.tenant, erasure.user_id
        events = [_stored(user, r) for r in await conn.fetch(_USER_EVENTS, tenant, user)]
        # The shared keys first, locked in the order the projection's own rollups take
        # them (workflows, then orgs' subscription states), so that a replica applying a
        # batch and one applying an erasure wait for each other instead of deadlocking.
        await self._runs(conn, tenant, events)
        await self._revenue(conn, tenant, events)
        await self._event_days(conn, tenant, events)
        await self._quality(conn, tenant, user, events)
        days = await self._active_users(conn, tenant, user)
        await self._user_facts(conn, tenant, user, days)
        await conn.execute(
            "DELETE FROM events_seen WHERE tenant = $1 AND event_id = ANY($2::text[])",
            tenant,
            [e.event_id for e in events],
        )
        await conn.execute("DELETE FROM events WHERE tenant = $1 AND user_id = $2", tenant, user)
        # MAO and acquisition are re-derived from the events that remain.
        await self._org_days(conn, tenant, events)
        await self._acquisition(conn, tenant, events)
        await remember_erased(conn, tenant, user, erasure.erased_at_us)
        log.info("user erased", erasure_id=erasure.erasure_id, events=len(events))

    async def _revenue(
        self, conn: Connection, tenant: str, events: Sequence[log_pb2.StoredEvent]
    ) -> None:
        """Take the user's counted subscription events out of its orgs' MRR."""
        gone: dict[str, set[str]] = defaultdict(set)
        for e in events:
            mrr = _properties(e.properties_json).get("mrr")
            s = counted_state(e.event, e.org_id, e.timestamp_us, e.event_id, mrr)
            if s is not None:
                gone[s.org_id].add(s.event_id)
        if not gone:
            return
        orgs = sorted(gone)
        await lock_keys(conn, "subscription_states", [(tenant, o) for o in orgs])
        stored: dict[str, list[SubscriptionState]] = defaultdict(list)
        for r in await conn.fetch(_STORED_STATES, tenant, orgs):
            stored[r[0]].append(SubscriptionState(r[0], r[1], r[2], int(r[3])))
        changes = {}
        for org in orgs:
            before = sorted(stored[org], key=lambda s: (s.ts_us, s.event_id))
            changes[(tenant, org)] = (before, [s for s in before if s.event_id not in gone[org]])
        await RevenueRollup().move_orgs(conn, changes)
        await conn.execute(
            "DELETE FROM subscription_states WHERE tenant = $1 AND org_id = ANY($2::text[])"
            " AND event_id = ANY($3::text[])",
            tenant,
            orgs,
            sorted({i for ids in gone.values() for i in ids}),
        )

    async def _runs(
        self, conn: Connection, tenant: str, events: Sequence[log_pb2.StoredEvent]
    ) -> None:
        """Subtract the user's runs from run_days / totals; re-derive the spans it ends."""
        cells: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
        for e in events:
            key = run_key(e)
            if key is not None:
                cells[(day_of(e.timestamp_us), key[0])][0 if key[1] == "success" else 1] += 1
        if not cells:
            return
        workflows = sorted({w for _, w in cells if w != NO_WORKFLOW})
        await lock_keys(conn, "workflow_spans", [(tenant, w) for w in workflows])
        before = {r[0]: list(r[1]) for r in await conn.fetch(_WORKFLOW_DAYS, tenant, workflows)}
        keys = sorted(cells)
        rows = await conn.fetch(
            _SUBTRACT_RUN_DAYS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [cells[k][0] for k in keys],
            [cells[k][1] for k in keys],
            tenant,
        )
        vanished: dict[str, set[date]] = defaultdict(set)
        for r in rows:
            if r["gone"]:
                vanished[r["workflow_id"]].add(r["day"])
        days = sorted({k[0] for k in keys})
        await conn.execute(_DROP_RUN_DAYS, tenant, days)
        totals: dict[date, list[int]] = defaultdict(lambda: [0, 0])
        for (day, _), (s, f) in cells.items():
            totals[day][0] += s
            totals[day][1] += f
        await conn.execute(
            _SUBTRACT_RUN_TOTALS,
            days,
            [totals[d][0] for d in days],
            [totals[d][1] for d in days],
            tenant,
        )
        await conn.execute(_DROP_RUN_TOTALS, tenant, days)
        delta: Counter[tuple[str, int, date, date]] = Counter()
        for w in workflows:
            if not vanished.get(w):
                continue
            old = before.get(w, [])
            new = [d for d in old if d not in vanished[w]]
            for (kind, x, y), n in spans_delta(old, new).items():
                delta[(tenant, kind, y, x)] += n
        await add_counts(conn, delta, add=_ADD_WORKFLOW_SPANS, drop_zeros=_DROP_WORKFLOW_SPANS)

    async def _event_days(
        self, conn: Connection, tenant: str, events: Sequence[log_pb2.StoredEvent]
    ) -> None:
        counts = Counter((e.event, day_of(e.timestamp_us)) for e in events)
        if not counts:
            return
        keys = sorted(counts)
        await conn.execute(
            _SUBTRACT_EVENT_DAYS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [counts[k] for k in keys],
            tenant,
        )
        await conn.execute(_DROP_EVENT_DAYS, tenant, sorted({k[1] for k in keys}))

    async def _quality(
        self, conn: Connection, tenant: str, user: str, events: Sequence[log_pb2.StoredEvent]
    ) -> None:
        """The user's accepted / skewed / missing-field counts, receive days and spans."""
        daily: dict[date, list[int]] = defaultdict(lambda: [0, 0])
        missing: Counter[tuple[date, str, str]] = Counter()
        from northstar_metrics.adapters.projection import _Event  # noqa: PLC0415 - a cycle

        for e in events:
            day = day_of(e.received_at_us)
            daily[day][0] += 1
            daily[day][1] += is_clock_skewed(e.received_at_us, e.sent_at_us)
            fields = lacking(_Event(tenant, 0, e))
            if fields:
                missing[(day, e.event, "")] += 1
                for field in fields:
                    missing[(day, e.event, field)] += 1
        if daily:
            days = sorted(daily)
            await conn.execute(
                _SUBTRACT_QUALITY,
                days,
                [daily[d][0] for d in days],
                [daily[d][1] for d in days],
                tenant,
            )
            await conn.execute(_DROP_QUALITY, tenant, days)
        if missing:
            keys = sorted(missing)
            await conn.execute(
                _SUBTRACT_MISSING,
                *([k[i] for k in keys] for i in range(3)),
                [missing[k] for k in keys],
                tenant,
            )
            await conn.execute(_DROP_MISSING, tenant, sorted({k[0] for k in keys}))
        await conn.execute(
            "DELETE FROM user_received_days WHERE tenant = $1 AND user_id = $2", tenant, user
        )
        received_days = sorted(daily)
        orphan = not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM user_facts WHERE tenant = $1 AND user_id = $2)",
            tenant,
            user,
        )
        delta: Counter[tuple[str, bool, int, date, date]] = Counter()
        for is_orphan in (False, True) if orphan else (False,):
            for (kind, x, y), n in span_rows(received_days).items():
                delta[(tenant, is_orphan, kind, y, x)] -= n
        await add_counts(conn, delta, add=_ADD_RECEIVED_SPANS, drop_zeros=_DROP_RECEIVED_SPANS)

    async def _active_users(self, conn: Connection, tenant: str, user: str) -> list[date]:
        """Take the user's activity days out of DAU / WAU / MAU."""
        days = [
            r[0]
            for r in await conn.fetch(
                "DELETE FROM user_days WHERE tenant = $1 AND user_id = $2 RETURNING day",
                tenant,
                user,
            )
        ]
        await self._add_deltas(conn, coverage_change(tenant, days, [], WINDOWS))
        return days

    async def _user_facts(
        self, conn: Connection, tenant: str, user: str, days: Sequence[date]
    ) -> None:
        """Take the user out of its signup cohort (retention counts, signups per day)."""
        row = await conn.fetchrow(
            "DELETE FROM user_facts WHERE tenant = $1 AND user_id = $2"
            " RETURNING signup_day, plan, channel",
            tenant,
            user,
        )
        if row is None:
            return
        key = (row["signup_day"], row["plan"], row["channel"])
        delta: dict[tuple[object, ...], int] = defaultdict(int)
        for r, n in contribution(key, days).items():
            delta[(tenant, *r)] -= n
        await add_counts(conn, delta, add=_ADD_COHORT_COUNTS, drop_zeros=_DROP_COHORT_COUNTS)
        await add_counts(
            conn,
            {(tenant, row["signup_day"], row["channel"] == REFERRAL): -1},
            add=_ADD_SIGNUP_DAYS,
            drop_zeros=_DROP_SIGNUP_DAYS,
        )

    async def _org_days(
        self, conn: Connection, tenant: str, events: Sequence[log_pb2.StoredEvent]
    ) -> None:
        """Re-derive MAO for the orgs the user's successful runs counted for."""
        candidates: dict[str, set[date]] = defaultdict(set)
        for e in events:
            if _is_successful_run(e):
                candidates[e.org_id].add(day_of(e.timestamp_us))
        for org in sorted(candidates):
            vanished = []
            for day in sorted(candidates[org]):
                start = day_start_us(day)
                still = await conn.fetchval(
                    _ORG_STILL_SUCCEEDS, tenant, org, start, start + 86_400_000_000
                )
                if not still:
                    vanished.append(day)
            if not vanished:
                continue
            before = list(await conn.fetchval(_ORG_DAYS, tenant, org) or [])
            after = [d for d in before if d not in vanished]
            await conn.execute(
                "DELETE FROM org_success_days WHERE tenant = $1 AND org_id = $2"
                " AND day = ANY($3::date[])",
                tenant,
                org,
                vanished,
            )
            await self._add_deltas(
                conn, coverage_change(tenant, before, after, {"mao": MAO_WINDOW})
            )

    async def _acquisition(
        self, conn: Connection, tenant: str, events: Sequence[log_pb2.StoredEvent]
    ) -> None:
        """Orgs whose acquisition signup was the user's get the next one (or none)."""
        signups = {e.event_id: e.org_id for e in events if e.event == "user.signup" and e.org_id}
        if not signups:
            return
        rows = await conn.fetch(
            "DELETE FROM org_acquisition WHERE tenant = $1 AND event_id = ANY($2::text[])"
            " RETURNING org_id",
            tenant,
            sorted(signups),
        )
        for r in sorted(rows, key=lambda r: str(r["org_id"])):
            first = await conn.fetchrow(_ORG_FIRST_SIGNUP, tenant, r["org_id"])
            if first is not None:
                await conn.execute(
                    "INSERT INTO org_acquisition (tenant, org_id, ts_us, event_id, channel)"
                    " VALUES ($1, $2, $3, $4, $5)",
                    tenant,
                    r["org_id"],
                    first["ts_us"],
                    first["event_id"],
                    first["channel"],
                )

    async def _add_deltas(
        self, conn: Connection, deltas: dict[tuple[str, date], dict[str, int]]
    ) -> None:
        keys = sorted(k for k, v in deltas.items() if any(v.values()))
        if not keys:
            return
        await conn.execute(
            _ADD_DELTAS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            *([deltas[k].get(name, 0) for k in keys] for name in ("dau", "wau", "mau", "mao")),
        )
