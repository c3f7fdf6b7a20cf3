"""The per-user facts read model (`user_facts`): each user's signup and first stage times.

Why per user: Retention, Activation and the signups series all start from "the users
whose signup day is in a range", and a user's signup is the minimum of its
`user.signup` events (timestamp, then event_id). Ranking every signup in history at
query time costs a sort of the whole tenant; keeping the minimum per user lets a query
read the users of a range from an index on (tenant, signup_day).

Maintenance per batch, all set-based, inside the projection's transaction:

- The batch's earliest signup per user is upserted, replacing the stored one only when
  strictly earlier (a later `user.signup` never changes a user's signup).
- A user whose signup was inserted or moved earlier (a late earlier signup) gets its
  stage firsts recomputed from `events` (one index probe per stage on
  events_by_user_time): a stage's first is relative to the signup, so an event before
  the old signup may now count. Rare, and the batch's events are already stored.
- Every stage event of the batch lowers its stage's first (`least`) when it is at or
  after its user's signup; with the recompute above this keeps every first exact
  whatever the arrival order, so a replay of the log rebuilds the same rows.

`cohort_counts` (migration 0005) holds, per signup day and segment, what each user
contributes to a retention matrix: its activity days, weeks and months, and the gaps
between its activity days. A user's contribution depends only on its signup (day,
plan, channel) and its activity days, so when a batch gives a user a new activity day
or moves its signup, the user's old contribution is subtracted and the new one added
(read from `user_facts` and `user_days` before the projection adds the batch's days).
The difference touches a few rows: a new day splits one gap in two.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING

import asyncpg
import orjson

from northstar_metrics.adapters.rollups import add_counts
from northstar_metrics.domain.time import day_of
from northstar_runtime.db import Connection

if TYPE_CHECKING:
    from northstar_metrics.adapters.projection import _Event

# The stage columns, by the event that sets them (workflow.run only when successful).
_STAGES = {"integration.connected": 0, "workflow.created": 1, "workflow.run": 2}

# Replaces the stored signup only by a strictly earlier one; RETURNING lists the users
# whose signup was inserted or moved (rows skipped by the WHERE are not returned).
_UPSERT_SIGNUPS = """
INSERT INTO user_facts (tenant, user_id, signup_ts_us, signup_event_id, signup_day,
                        plan, channel, org_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::date[],
                     $6::text[], $7::text[], $8::text[])
ON CONFLICT (tenant, user_id) DO UPDATE SET
  signup_ts_us = excluded.signup_ts_us, signup_event_id = excluded.signup_event_id,
  signup_day = excluded.signup_day, plan = excluded.plan, channel = excluded.channel,
  org_id = excluded.org_id
WHERE (excluded.signup_ts_us, excluded.signup_event_id)
    < (user_facts.signup_ts_us, user_facts.signup_event_id)
RETURNING tenant, user_id, signup_day, plan, channel
"""

_OLD_FACTS = """
SELECT f.tenant, f.user_id, f.signup_day, f.plan, f.channel
FROM user_facts f JOIN unnest($1::text[], $2::text[]) AS k(tenant, user_id)
  ON f.tenant = k.tenant AND f.user_id = k.user_id
"""

_OLD_DAYS = """
SELECT u.tenant, u.user_id, array_agg(u.day ORDER BY u.day) AS days
FROM user_days u JOIN unnest($1::text[], $2::text[]) AS k(tenant, user_id)
  ON u.tenant = k.tenant AND u.user_id = k.user_id
GROUP BY u.tenant, u.user_id
"""

_ADD_COUNTS = """
INSERT INTO cohort_counts (tenant, attr, value, kind, signup_day, x, y, users)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::date[],
                     $6::date[], $7::date[], $8::bigint[])
ON CONFLICT (tenant, attr, value, kind, signup_day, x, y)
DO UPDATE SET users = cohort_counts.users + excluded.users
"""

# Rows back at zero are removed, so that the table equals a rebuild's.
_DROP_ZEROS = """
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
REFERRAL = "referral"

# asyncpg writes date.min / date.max as PostgreSQL's -infinity / infinity.
OPEN_START = date.min
OPEN_END = date.max
GAP, DAY, WEEK, MONTH = 0, 1, 2, 3

_Key = tuple[date, str | None, str | None]  # signup day, plan, channel
_Row = tuple[str, str, int, date, date, date]  # attr, value, kind, signup_day, x, y


def _segments(key: _Key) -> list[tuple[str, str]]:
    _, plan, channel = key
    segments = [("", "")]
    if plan is not None:
        segments.append(("plan", plan))
    if channel is not None:
        segments.append(("channel", channel))
    return segments


def _week(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _month(d: date) -> date:
    return d.replace(day=1)


def contribution(key: _Key, days: Iterable[date]) -> dict[_Row, int]:
    """What one user with this signup and these activity days adds to `cohort_counts`."""
    items: set[tuple[int, date, date]] = set()
    prev = OPEN_START
    for d in sorted(set(days)):
        items.add((GAP, prev, d))
        items.add((DAY, d, d))
        items.add((WEEK, _week(d), _week(d)))
        items.add((MONTH, _month(d), _month(d)))
        prev = d
    items.add((GAP, prev, OPEN_END))
    return {
        (attr, value, kind, key[0], x, y): 1
        for attr, value in _segments(key)
        for kind, x, y in items
    }


def added_days(key: _Key, before: Sequence[date], new: Iterable[date]) -> dict[_Row, int]:
    """contribution(key, before + new) minus contribution(key, before), from the new days.

    Each run of new days between two stored neighbours splits that one gap into a chain;
    a new day adds its day row, and its week / month row when no stored day had it.
    """
    stored = set(before)
    fresh = sorted(set(new) - stored)
    items: dict[tuple[int, date, date], int] = defaultdict(int)
    weeks, months = {_week(d) for d in before}, {_month(d) for d in before}
    runs: dict[tuple[date, date], list[date]] = defaultdict(list)
    for d in fresh:
        items[(DAY, d, d)] += 1
        for kind, x, seen in ((WEEK, _week(d), weeks), (MONTH, _month(d), months)):
            if x not in seen:
                seen.add(x)
                items[(kind, x, x)] += 1
        i = bisect_left(before, d)
        prev = before[i - 1] if i > 0 else OPEN_START
        nxt = before[i] if i < len(before) else OPEN_END
        runs[(prev, nxt)].append(d)
    for (prev, nxt), inside in runs.items():
        items[(GAP, prev, nxt)] -= 1
        chain = [prev, *inside, nxt]
        for a, b in itertools.pairwise(chain):
            items[(GAP, a, b)] += 1
    return {
        (attr, value, kind, key[0], x, y): n
        for attr, value in _segments(key)
        for (kind, x, y), n in items.items()
    }


# The first of each stage at or after the (new) signup, as activation_store used to
# probe it at query time.
_RECOMPUTE = """
UPDATE user_facts f SET
  integration_connected_us = (SELECT e.ts_us FROM events e
    WHERE e.tenant = f.tenant AND e.user_id = f.user_id AND e.user_id <> ''
      AND e.ts_us >= f.signup_ts_us AND e.event = 'integration.connected'
    ORDER BY e.ts_us LIMIT 1),
  workflow_created_us = (SELECT e.ts_us FROM events e
    WHERE e.tenant = f.tenant AND e.user_id = f.user_id AND e.user_id <> ''
      AND e.ts_us >= f.signup_ts_us AND e.event = 'workflow.created'
    ORDER BY e.ts_us LIMIT 1),
  workflow_run_succeeded_us = (SELECT e.ts_us FROM events e
    WHERE e.tenant = f.tenant AND e.user_id = f.user_id AND e.user_id <> ''
      AND e.ts_us >= f.signup_ts_us AND e.event = 'workflow.run'
      AND e.properties->'status' = '"success"'::jsonb
    ORDER BY e.ts_us LIMIT 1)
FROM unnest($1::text[], $2::text[]) AS k(tenant, user_id)
WHERE f.tenant = k.tenant AND f.user_id = k.user_id
"""

# Lowers each stage's first by the batch's stage events at or after the user's signup
# (least ignores NULLs: a stage without a first takes the batch's).
_LOWER_STAGES = """
UPDATE user_facts f SET
  integration_connected_us = least(f.integration_connected_us, a.s0),
  workflow_created_us = least(f.workflow_created_us, a.s1),
  workflow_run_succeeded_us = least(f.workflow_run_succeeded_us, a.s2)
FROM (
  SELECT k.tenant, k.user_id,
    min(k.ts_us) FILTER (WHERE k.stage = 0) AS s0,
    min(k.ts_us) FILTER (WHERE k.stage = 1) AS s1,
    min(k.ts_us) FILTER (WHERE k.stage = 2) AS s2
  FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS k(tenant, user_id, stage, ts_us)
  JOIN user_facts u ON u.tenant = k.tenant AND u.user_id = k.user_id
    AND k.ts_us >= u.signup_ts_us
  GROUP BY k.tenant, k.user_id
) a
WHERE f.tenant = a.tenant AND f.user_id = a.user_id
"""


def _text(properties: dict[str, object], name: str) -> str | None:
    value = properties.get(name)
    return value if isinstance(value, str) else None


def _stage(event: str, properties_json: bytes) -> int | None:
    stage = _STAGES.get(event)
    if stage == 2:
        status = orjson.loads(properties_json or b"{}").get("status")
        return 2 if status == "success" else None
    return stage


class UserFacts:
    """Keeps `user_facts` and `cohort_counts` up to date from each batch's fresh events."""

    reset = ("user_facts", "cohort_counts", "signup_days")

    async def apply(self, conn: Connection, fresh: Sequence[_Event]) -> None:
        """Fold the batch's signups, stage events and activity days into the read models."""
        earliest: dict[tuple[str, str], _Event] = {}
        stages: list[tuple[str, str, int, int]] = []
        days: dict[tuple[str, str], set[date]] = defaultdict(set)
        for ev in fresh:
            e = ev.event
            if not e.user_id:
                continue
            days[(ev.tenant, e.user_id)].add(day_of(e.timestamp_us))
            if e.event == "user.signup":
                key = (ev.tenant, e.user_id)
                seen = earliest.get(key)
                # Python compares str by code point, as the "C" collation does.
                if seen is None or (e.timestamp_us, e.event_id) < (
                    seen.event.timestamp_us,
                    seen.event.event_id,
                ):
                    earliest[key] = ev
                continue
            stage = _stage(e.event, e.properties_json)
            if stage is not None:
                stages.append((ev.tenant, e.user_id, stage, e.timestamp_us))
        if not days:
            return
        users = sorted(days)  # a fixed lock order between concurrent writers
        tenants, ids = [u[0] for u in users], [u[1] for u in users]
        old_keys: dict[tuple[str, str], _Key] = {
            (r["tenant"], r["user_id"]): (r["signup_day"], r["plan"], r["channel"])
            for r in await conn.fetch(_OLD_FACTS, tenants, ids)
        }
        old_days: dict[tuple[str, str], list[date]] = {
            (r["tenant"], r["user_id"]): list(r["days"])
            for r in await conn.fetch(_OLD_DAYS, tenants, ids)
        }
        new_keys = dict(old_keys)
        if earliest:
            keys = sorted(earliest)
            rows = [earliest[k].event for k in keys]
            props = [orjson.loads(e.properties_json or b"{}") for e in rows]
            moved = await conn.fetch(
                _UPSERT_SIGNUPS,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [e.timestamp_us for e in rows],
                [e.event_id for e in rows],
                [day_of(e.timestamp_us) for e in rows],
                [_text(p, "plan") for p in props],
                [_text(p, "channel") for p in props],
                [e.org_id for e in rows],
            )
            for r in moved:
                new_keys[(r["tenant"], r["user_id"])] = (r["signup_day"], r["plan"], r["channel"])
            await self._signup_days(conn, moved, old_keys)
            if moved:
                await conn.execute(
                    _RECOMPUTE, [r["tenant"] for r in moved], [r["user_id"] for r in moved]
                )
        if stages:
            await conn.execute(_LOWER_STAGES, *(list(c) for c in zip(*stages, strict=True)))
        await self._count(
            conn, users, batch_days=days, old_keys=old_keys, new_keys=new_keys, old_days=old_days
        )

    async def _signup_days(
        self,
        conn: Connection,
        moved: Sequence[asyncpg.Record],
        old_keys: dict[tuple[str, str], _Key],
    ) -> None:
        """Move each user whose signup was inserted or moved to its new signup day."""
        delta: dict[tuple[str, date, bool], int] = defaultdict(int)
        for r in moved:
            old = old_keys.get((r["tenant"], r["user_id"]))
            if old is not None:
                delta[(r["tenant"], old[0], old[2] == REFERRAL)] -= 1
            delta[(r["tenant"], r["signup_day"], r["channel"] == REFERRAL)] += 1
        await add_counts(conn, delta, add=_ADD_SIGNUP_DAYS, drop_zeros=_DROP_SIGNUP_DAYS)

    async def _count(
        self,
        conn: Connection,
        users: list[tuple[str, str]],
        *,
        batch_days: dict[tuple[str, str], set[date]],
        old_keys: dict[tuple[str, str], _Key],
        new_keys: dict[tuple[str, str], _Key],
        old_days: dict[tuple[str, str], list[date]],
    ) -> None:
        """Subtract each changed user's old contribution to `cohort_counts`, add its new one."""
        delta: dict[tuple[str, *_Row], int] = defaultdict(int)
        for user in users:
            before = old_days.get(user, [])
            after = set(before) | batch_days[user]
            old, new = old_keys.get(user), new_keys.get(user)
            if old == new and len(after) == len(before):
                continue  # no new day, same signup: the same contribution
            tenant = user[0]
            if old is not None and old == new:
                for row, n in added_days(old, before, after).items():
                    delta[(tenant, *row)] += n
                continue
            if old is not None:
                for row, n in contribution(old, before).items():
                    delta[(tenant, *row)] -= n
            if new is not None:
                for row, n in contribution(new, after).items():
                    delta[(tenant, *row)] += n
        await add_counts(conn, delta, add=_ADD_COUNTS, drop_zeros=_DROP_ZEROS)
