"""The activity projection: product events into dedup, activity and rollup tables."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import orjson

from northstar.log.v1 import log_pb2
from northstar_metrics.adapters.daily_counts import DailyCounts
from northstar_metrics.adapters.erasure import UserErasure
from northstar_metrics.adapters.quality_rollup import QualityRollup
from northstar_metrics.adapters.revenue_rollup import RevenueRollup
from northstar_metrics.adapters.user_facts import UserFacts
from northstar_metrics.domain.active_users import MAO_WINDOW, WINDOWS, NewDay, coverage_deltas
from northstar_metrics.domain.time import day_of
from northstar_runtime.codec import decode_events_entry
from northstar_runtime.db import Connection
from northstar_runtime.erasure import erased_at, is_erased_history
from northstar_runtime.projector import LogEntry

_NEIGHBOURS = {
    "user_days": """
        SELECT c.ord, c.present, c.prev, c.next FROM (
          SELECT i.ord,
            EXISTS (SELECT 1 FROM user_days u WHERE u.tenant = i.tenant
                    AND u.user_id = i.subject AND u.day = i.day) AS present,
            (SELECT max(u.day) FROM user_days u WHERE u.tenant = i.tenant
                    AND u.user_id = i.subject AND u.day < i.day) AS prev,
            (SELECT min(u.day) FROM user_days u WHERE u.tenant = i.tenant
                    AND u.user_id = i.subject AND u.day > i.day) AS next
          FROM unnest($1::text[], $2::text[], $3::date[]) WITH ORDINALITY
               AS i(tenant, subject, day, ord)) c
    """,
    "org_success_days": """
        SELECT c.ord, c.present, c.prev, c.next FROM (
          SELECT i.ord,
            EXISTS (SELECT 1 FROM org_success_days u WHERE u.tenant = i.tenant
                    AND u.org_id = i.subject AND u.day = i.day) AS present,
            (SELECT max(u.day) FROM org_success_days u WHERE u.tenant = i.tenant
                    AND u.org_id = i.subject AND u.day < i.day) AS prev,
            (SELECT min(u.day) FROM org_success_days u WHERE u.tenant = i.tenant
                    AND u.org_id = i.subject AND u.day > i.day) AS next
          FROM unnest($1::text[], $2::text[], $3::date[]) WITH ORDINALITY
               AS i(tenant, subject, day, ord)) c
    """,
}
# Every user-day of the batch with its events: new days are inserted, stored ones add
# the count (adapters/quality_store.py reads it for the suspected bots).
_ADD_USER_DAYS = """
INSERT INTO user_days (tenant, user_id, day, events)
SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])
ON CONFLICT (tenant, user_id, day) DO UPDATE SET events = user_days.events + excluded.events
"""
_INSERT_ORG_DAYS = (
    "INSERT INTO org_success_days (tenant, org_id, day)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::date[]) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class _Event:
    tenant: str
    seq: int
    event: log_pb2.StoredEvent


def fingerprint(e: log_pb2.StoredEvent) -> bytes:
    """What makes two events with one id the same: name, user, org, session, properties.

    The timestamp is left out: a client that sent none gets the receive time,
    which differs on every retry of the same event.
    """
    h = hashlib.blake2b(digest_size=16)
    for part in (e.event, e.user_id, e.org_id, e.session_id):
        h.update(part.encode())
        h.update(b"\x1f")
    h.update(e.properties_json)
    return h.digest()


def _is_successful_run(e: log_pb2.StoredEvent) -> bool:
    if e.event != "workflow.run" or not e.org_id:
        return False
    return bool(orjson.loads(e.properties_json or b"{}").get("status") == "success")


class ActivityProjection:
    """Dedup, user and org activity days, and the active-users difference arrays."""

    name = "activity"
    # Raised when the rows it keeps change, so that a deployed database is rebuilt from the
    # log once (Projection.version). 2: the revenue, workflow-span and quality read models
    # (migrations 0007-0009) start empty and need every past event. 3: an org's acquisition
    # signup must have a user_id (a user-less one was taken before). 4: `user_days` counts
    # the events of each day (migration 0011). 5: any `subscription.*` without an org_id
    # is a missing field, not only the three names events.md lists.
    version = 5

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Apply a batch of EventBatch and UserErased entries in log order, exactly once
        in effect: the events before an erasure are applied, then the erasure."""
        events: list[_Event] = []
        for entry in entries:
            record = decode_events_entry(entry.data, entry.headers)
            if isinstance(record, log_pb2.UserErased):
                await self._apply_events(conn, events)
                events = []
                await UserErasure().apply(conn, record)
            else:
                events.extend(_Event(record.tenant, entry.seq, e) for e in record.events)
        await self._apply_events(conn, events)

    async def _apply_events(self, conn: Connection, events: list[_Event]) -> None:
        if not events:
            return
        events = await self._drop_erased_history(conn, events)
        fresh = await self._dedup(conn, events)
        await self._store_events(conn, fresh)
        # Before user_facts takes the batch's signups: it reads who had none.
        await QualityRollup().apply(conn, fresh)
        await UserFacts().apply(conn, fresh)
        await DailyCounts().apply(conn, fresh)
        await RevenueRollup().apply(conn, fresh)
        users: Counter[tuple[str, str, date]] = Counter()
        orgs: set[tuple[str, str, date]] = set()
        for ev in fresh:
            e = ev.event
            day = day_of(e.timestamp_us)
            if e.user_id:
                users[(ev.tenant, e.user_id, day)] += 1
            if _is_successful_run(e):
                orgs.add((ev.tenant, e.org_id, day))
        user_days = sorted(users)
        new_users = await self._new_days(conn, "user_days", user_days)
        if user_days:
            await conn.execute(
                _ADD_USER_DAYS,
                *(list(c) for c in zip(*user_days, strict=True)),
                [users[k] for k in user_days],
            )
        new_orgs = await self._new_days(conn, "org_success_days", sorted(orgs))
        if new_orgs:
            await conn.execute(
                _INSERT_ORG_DAYS,
                [d.tenant for d in new_orgs],
                [d.subject for d in new_orgs],
                [d.day for d in new_orgs],
            )
        deltas: dict[tuple[str, date], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for new_days, windows in ((new_users, WINDOWS), (new_orgs, {"mao": MAO_WINDOW})):
            for key, values in coverage_deltas(new_days, windows).items():
                for name, v in values.items():
                    deltas[key][name] += v
        await self._add_deltas(conn, deltas)

    async def _drop_erased_history(self, conn: Connection, events: list[_Event]) -> list[_Event]:
        """Leave out the events of erased users timestamped at or before their erasure.

        Before the dedup: a dropped event leaves no trace, not even its id.
        """
        erased = await erased_at(
            conn, ((ev.tenant, ev.event.user_id) for ev in events if ev.event.user_id)
        )
        if not erased:
            return events
        return [
            ev
            for ev in events
            if not is_erased_history(
                ev.event.timestamp_us, erased.get((ev.tenant, ev.event.user_id))
            )
        ]

    async def _dedup(self, conn: Connection, events: list[_Event]) -> list[_Event]:
        """Keep the events whose (tenant, event_id) was never stored; count the rest."""
        first: dict[tuple[str, str], _Event] = {}
        repeats: list[_Event] = []
        for ev in events:
            key = (ev.tenant, ev.event.event_id)
            if key in first:
                repeats.append(ev)
            else:
                first[key] = ev
        candidates = list(first.values())
        inserted = await conn.fetch(
            "INSERT INTO events_seen (tenant, event_id, fingerprint, position)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bigint[])"
            " ON CONFLICT DO NOTHING RETURNING tenant, event_id",
            [e.tenant for e in candidates],
            [e.event.event_id for e in candidates],
            [fingerprint(e.event) for e in candidates],
            [e.seq for e in candidates],
        )
        new_keys = {(r["tenant"], r["event_id"]) for r in inserted}
        fresh = [e for e in candidates if (e.tenant, e.event.event_id) in new_keys]
        repeats.extend(e for e in candidates if (e.tenant, e.event.event_id) not in new_keys)
        if repeats:
            await self._count_repeats(conn, repeats)
        return fresh

    async def _store_events(self, conn: Connection, fresh: list[_Event]) -> None:
        """Keep every first-seen event for the ad-hoc queries (COPY: the fastest path)."""
        if not fresh:
            return
        await conn.copy_records_to_table(
            "events",
            records=[
                (
                    ev.tenant,
                    e.event_id,
                    e.event,
                    e.user_id,
                    e.org_id,
                    e.session_id,
                    e.timestamp_us,
                    e.original_timestamp_us,
                    e.received_at_us,
                    e.sent_at_us,
                    (e.properties_json or b"{}").decode(),
                    ev.seq,
                )
                for ev in fresh
                for e in (ev.event,)
            ],
            columns=[
                "tenant",
                "event_id",
                "event",
                "user_id",
                "org_id",
                "session_id",
                "ts_us",
                "original_ts_us",
                "received_at_us",
                "sent_at_us",
                "properties",
                "position",
            ],
        )

    async def _count_repeats(self, conn: Connection, repeats: list[_Event]) -> None:
        rows = await conn.fetch(
            "SELECT s.tenant, s.event_id, s.fingerprint FROM events_seen s"
            " JOIN unnest($1::text[], $2::text[]) AS k(tenant, event_id)"
            " ON s.tenant = k.tenant AND s.event_id = k.event_id",
            [e.tenant for e in repeats],
            [e.event.event_id for e in repeats],
        )
        stored = {(r["tenant"], r["event_id"]): bytes(r["fingerprint"]) for r in rows}
        counts: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
        for e in repeats:
            c = counts[(e.tenant, day_of(e.event.received_at_us))]
            c[0] += 1
            if stored.get((e.tenant, e.event.event_id)) != fingerprint(e.event):
                c[1] += 1
        keys = sorted(counts)
        await conn.execute(
            "INSERT INTO quality_daily (tenant, day, duplicates, id_conflicts)"
            " SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[])"
            " ON CONFLICT (tenant, day) DO UPDATE SET"
            " duplicates = quality_daily.duplicates + excluded.duplicates,"
            " id_conflicts = quality_daily.id_conflicts + excluded.id_conflicts",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [counts[k][0] for k in keys],
            [counts[k][1] for k in keys],
        )

    async def _new_days(
        self, conn: Connection, table: str, facts: list[tuple[str, str, date]]
    ) -> list[NewDay]:
        """The facts not stored yet, with their stored neighbours (the caller stores them)."""
        if not facts:
            return []
        columns = ([f[0] for f in facts], [f[1] for f in facts], [f[2] for f in facts])
        rows = await conn.fetch(_NEIGHBOURS[table], *columns)
        new = []
        for r in rows:
            if not r["present"]:
                tenant, subject, day = facts[r["ord"] - 1]
                new.append(NewDay(tenant, subject, day, prev=r["prev"], next=r["next"]))
        return new

    async def _add_deltas(
        self, conn: Connection, deltas: dict[tuple[str, date], dict[str, int]]
    ) -> None:
        if not deltas:
            return
        keys = sorted(deltas)
        await conn.execute(
            "INSERT INTO active_deltas (tenant, day, dau, wau, mau, mao)"
            " SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[],"
            " $5::bigint[], $6::bigint[])"
            " ON CONFLICT (tenant, day) DO UPDATE SET"
            " dau = active_deltas.dau + excluded.dau, wau = active_deltas.wau + excluded.wau,"
            " mau = active_deltas.mau + excluded.mau, mao = active_deltas.mao + excluded.mao",
            [k[0] for k in keys],
            [k[1] for k in keys],
            *([deltas[k].get(name, 0) for k in keys] for name in ("dau", "wau", "mau", "mao")),
        )

    async def reset(self, conn: Connection) -> None:
        """Empty every table this projection writes.

        TRUNCATE locks its tables one by one, in the order named. The columnar copy's
        snapshot reads `erased_users` before `events`, so they are named first and in that
        order: a reset meeting a copy step waits for it instead of deadlocking with it.
        """
        await conn.execute(
            "TRUNCATE erased_users, events, events_seen, user_days, org_success_days,"
            " active_deltas, quality_daily"
        )
        await conn.execute("TRUNCATE " + ", ".join(UserFacts.reset))
        await conn.execute("TRUNCATE " + ", ".join(DailyCounts.reset_tables))
        await conn.execute("TRUNCATE " + ", ".join(RevenueRollup.reset_tables))
        await conn.execute("TRUNCATE " + ", ".join(QualityRollup.reset_tables))
