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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

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
RETURNING tenant, user_id
"""

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
    """Keeps `user_facts` up to date from the fresh (first-seen) events of each batch."""

    reset = ("user_facts",)

    async def apply(self, conn: Connection, fresh: Sequence[_Event]) -> None:
        """Fold the batch's signups and stage events into `user_facts`."""
        earliest: dict[tuple[str, str], _Event] = {}
        stages: list[tuple[str, str, int, int]] = []
        for ev in fresh:
            e = ev.event
            if not e.user_id:
                continue
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
        if earliest:
            keys = sorted(earliest)  # a fixed lock order between concurrent writers
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
            if moved:
                await conn.execute(
                    _RECOMPUTE, [r["tenant"] for r in moved], [r["user_id"] for r in moved]
                )
        if stages:
            await conn.execute(_LOWER_STAGES, *(list(c) for c in zip(*stages, strict=True)))
