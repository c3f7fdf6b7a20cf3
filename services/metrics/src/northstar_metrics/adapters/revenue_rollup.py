"""The revenue read models kept by the projection: states, MRR steps, acquisition.

Maintenance per batch, inside the projection's transaction:

- `subscription_states`: each counted subscription event of the batch (the same
  `counted_state` decision the query path used to take on raw events) is inserted.
- `mrr_days`: for every org with a new state, its old MRR steps (from its stored
  states) are subtracted and its new ones (stored plus the batch's, in the order rule)
  added (`domain.revenue.mrr_steps`). A late state between two stored ones moves the
  steps of a few days; duplicates never reach here (the projection dedups first), so
  a replay of the log rebuilds the same rows.
- `org_months`: the same orgs' `org_month_ends` rows, old ones replaced by new ones.
- `org_acquisition`: the batch's earliest `user.signup` per org replaces the stored
  one only when strictly earlier (timestamp, then event_id), as `user_facts` keeps
  users' signups.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import orjson

from northstar_metrics.adapters.rollups import lock_keys
from northstar_metrics.domain.revenue import (
    SUBSCRIPTION_PREFIX,
    USER_SIGNUP,
    SubscriptionState,
    counted_state,
    mrr_steps,
    org_month_ends,
    text_value,
)
from northstar_runtime.db import Connection

if TYPE_CHECKING:
    from northstar_metrics.adapters.projection import _Event

_STORED_STATES = """
SELECT s.tenant, s.org_id, s.ts_us, s.event_id, s.mrr
FROM subscription_states s JOIN unnest($1::text[], $2::text[]) AS k(tenant, org_id)
  ON s.tenant = k.tenant AND s.org_id = k.org_id
"""
_INSERT_STATES = """
INSERT INTO subscription_states (tenant, ts_us, event_id, org_id, mrr)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::numeric[])
ON CONFLICT DO NOTHING
"""
_ADD_STEPS = """
INSERT INTO mrr_days (tenant, day, mrr, paying)
SELECT * FROM unnest($1::text[], $2::date[], $3::numeric[], $4::bigint[])
ON CONFLICT (tenant, day) DO UPDATE SET
  mrr = mrr_days.mrr + excluded.mrr, paying = mrr_days.paying + excluded.paying
"""
_DROP_ZEROS = """
DELETE FROM mrr_days d USING unnest($1::text[], $2::date[]) AS k(tenant, day)
WHERE d.tenant = k.tenant AND d.day = k.day AND d.mrr = 0 AND d.paying = 0
"""
_PUT_MONTHS = """
INSERT INTO org_months (tenant, month, org_id, mrr_start, mrr_end)
SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::numeric[], $5::numeric[])
ON CONFLICT (tenant, month, org_id) DO UPDATE SET
  mrr_start = excluded.mrr_start, mrr_end = excluded.mrr_end
"""
_DROP_MONTHS = """
DELETE FROM org_months m
USING unnest($1::text[], $2::date[], $3::text[]) AS k(tenant, month, org_id)
WHERE m.tenant = k.tenant AND m.month = k.month AND m.org_id = k.org_id
"""
_UPSERT_ACQUISITION = """
INSERT INTO org_acquisition (tenant, org_id, ts_us, event_id, channel)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
ON CONFLICT (tenant, org_id) DO UPDATE SET
  ts_us = excluded.ts_us, event_id = excluded.event_id, channel = excluded.channel
WHERE (excluded.ts_us, excluded.event_id) < (org_acquisition.ts_us, org_acquisition.event_id)
"""


def _properties(raw: bytes) -> dict[str, object]:
    """The decoded properties object; exact for integers beyond 64 bits too."""
    try:
        value = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        value = json.loads(raw)
    return value if isinstance(value, dict) else {}


class RevenueRollup:
    """Maintains `subscription_states`, `mrr_days` and `org_acquisition` from each batch."""

    reset_tables = ("subscription_states", "mrr_days", "org_acquisition", "org_months")

    async def apply(self, conn: Connection, fresh: Sequence[_Event]) -> None:
        """Fold the batch's counted subscription events and org signups in."""
        states: dict[tuple[str, str], list[SubscriptionState]] = defaultdict(list)
        signups: dict[tuple[str, str], tuple[int, str, str | None]] = {}
        for ev in fresh:
            e = ev.event
            if e.event.startswith(SUBSCRIPTION_PREFIX) and e.org_id:
                s = counted_state(
                    e.event,
                    e.org_id,
                    e.timestamp_us,
                    e.event_id,
                    _properties(e.properties_json).get("mrr"),
                )
                if s is not None:
                    states[(ev.tenant, e.org_id)].append(s)
            elif e.event == USER_SIGNUP and e.org_id and e.user_id:
                key = (ev.tenant, e.org_id)
                seen = signups.get(key)
                # Python compares str by code point, as the "C" collation does.
                if seen is None or (e.timestamp_us, e.event_id) < seen[:2]:
                    channel = text_value(_properties(e.properties_json).get("channel"))
                    signups[key] = (e.timestamp_us, e.event_id, channel)
        if states:
            await self._states(conn, states)
        if signups:
            keys = sorted(signups)
            await conn.execute(
                _UPSERT_ACQUISITION,
                [k[0] for k in keys],
                [k[1] for k in keys],
                *([signups[k][i] for k in keys] for i in range(3)),
            )

    async def _states(
        self, conn: Connection, batch: dict[tuple[str, str], list[SubscriptionState]]
    ) -> None:
        orgs = sorted(batch)  # a fixed lock order between concurrent writers
        await lock_keys(conn, "subscription_states", orgs)
        stored: dict[tuple[str, str], list[SubscriptionState]] = defaultdict(list)
        for r in await conn.fetch(_STORED_STATES, [o[0] for o in orgs], [o[1] for o in orgs]):
            stored[(r[0], r[1])].append(SubscriptionState(r[1], r[2], r[3], int(r[4])))
        await self.move_orgs(
            conn,
            {
                org: (
                    sorted(stored[org], key=lambda s: (s.ts_us, s.event_id)),
                    sorted([*stored[org], *batch[org]], key=lambda s: (s.ts_us, s.event_id)),
                )
                for org in orgs
            },
        )
        new = [(org[0], s) for org in orgs for s in batch[org]]
        await conn.execute(
            _INSERT_STATES,
            [t for t, _ in new],
            [s.ts_us for _, s in new],
            [s.event_id for _, s in new],
            [s.org_id for _, s in new],
            [Decimal(s.mrr) for _, s in new],
        )

    async def move_orgs(
        self,
        conn: Connection,
        changes: dict[tuple[str, str], tuple[list[SubscriptionState], list[SubscriptionState]]],
    ) -> None:
        """Move `mrr_days` and `org_months` for orgs whose states go from before to after.

        Both lists sorted by (ts_us, event_id); the caller holds the orgs' locks and
        writes `subscription_states` itself.
        """
        delta: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0, 0])
        put: list[tuple[str, date, str, int, int]] = []
        drop: list[tuple[str, str, date]] = []
        for org, (before, after) in sorted(changes.items()):
            old_ends, new_ends = org_month_ends(before), org_month_ends(after)
            drop.extend((*org, m) for m in old_ends.keys() - new_ends.keys())
            put.extend((org[0], m, org[1], *e) for m, e in new_ends.items() if old_ends.get(m) != e)
            for sign, states in ((-1, before), (1, after)):
                for day, (mrr, paying) in mrr_steps(states).items():
                    d = delta[(org[0], day)]
                    d[0] += sign * mrr
                    d[1] += sign * paying
        if drop:
            drop.sort()
            await conn.execute(_DROP_MONTHS, *([d[i] for d in drop] for i in (0, 2, 1)))
        if put:
            put.sort()
            await conn.execute(
                _PUT_MONTHS,
                [p[0] for p in put],
                [p[1] for p in put],
                [p[2] for p in put],
                [Decimal(p[3]) for p in put],
                [Decimal(p[4]) for p in put],
            )
        changed = sorted(k for k, v in delta.items() if v != [0, 0])
        if not changed:
            return
        tenants, days = [k[0] for k in changed], [k[1] for k in changed]
        await conn.execute(
            _ADD_STEPS,
            tenants,
            days,
            [Decimal(delta[k][0]) for k in changed],
            [delta[k][1] for k in changed],
        )
        await conn.execute(_DROP_ZEROS, tenants, days)
