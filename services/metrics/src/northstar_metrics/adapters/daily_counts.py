"""Per-day counts kept by the projection: workflow runs per workflow, events per name.

And `workflow_spans` (migration 0008, domain/spans.py): for every workflow that gets a
new run day, the difference between its span rows with and without the batch's days
(its stored run days read before the batch's are added).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

import orjson

from northstar.log.v1 import log_pb2
from northstar_metrics.adapters.rollups import add_counts, lock_keys
from northstar_metrics.domain.spans import spans_delta
from northstar_metrics.domain.time import day_of
from northstar_metrics.domain.workflows import FAILED, SUCCESS, WORKFLOW_RUN
from northstar_runtime.db import Connection

if TYPE_CHECKING:
    from northstar_metrics.adapters.projection import _Event

# The key of the runs that name no workflow (absent, empty or not a string).
NO_WORKFLOW = ""

_STORED_DAYS = """
SELECT r.tenant, r.workflow_id, array_agg(r.day ORDER BY r.day) AS days
FROM run_days r JOIN unnest($1::text[], $2::text[]) AS k(tenant, workflow_id)
  ON r.tenant = k.tenant AND r.workflow_id = k.workflow_id
GROUP BY r.tenant, r.workflow_id
"""
_ADD_SPANS = """
INSERT INTO workflow_spans (tenant, kind, y, x, workflows)
SELECT * FROM unnest($1::text[], $2::smallint[], $3::date[], $4::date[], $5::bigint[])
ON CONFLICT (tenant, kind, y, x) DO UPDATE SET
  workflows = workflow_spans.workflows + excluded.workflows
"""
_DROP_ZERO_SPANS = """
DELETE FROM workflow_spans w
USING unnest($1::text[], $2::smallint[], $3::date[], $4::date[]) AS k(tenant, kind, y, x)
WHERE w.workflows = 0 AND w.tenant = k.tenant AND w.kind = k.kind AND w.y = k.y AND w.x = k.x
"""


def run_key(e: log_pb2.StoredEvent) -> tuple[str, str] | None:
    """(workflow id or '', status) of a run with a valid status; None for anything else.

    Reads the properties exactly as `domain.workflows.run_status` and
    `workflow_id_of` do: status is the JSON string `success` or `failed`.
    """
    if e.event != WORKFLOW_RUN:
        return None
    props = orjson.loads(e.properties_json or b"{}")
    if not isinstance(props, dict):
        return None
    status = props.get("status")
    if not isinstance(status, str) or status not in (SUCCESS, FAILED):
        return None
    workflow = props.get("workflow_id")
    return (workflow if isinstance(workflow, str) and workflow else NO_WORKFLOW), status


class DailyCounts:
    """Maintains `run_days`, `run_day_totals` and `event_days` from each batch."""

    reset_tables = ("run_days", "run_day_totals", "event_days", "workflow_spans")

    async def apply(self, conn: Connection, fresh: Sequence[_Event]) -> None:
        """Add the batch's events to the per-day counts (one statement per table)."""
        runs: Counter[tuple[str, date, str, str]] = Counter()
        events: Counter[tuple[str, str, date]] = Counter()
        for ev in fresh:
            e = ev.event
            day = day_of(e.timestamp_us)
            events[(ev.tenant, e.event, day)] += 1
            key = run_key(e)
            if key is not None:
                runs[(ev.tenant, day, *key)] += 1
        if events:
            keys = sorted(events)
            await conn.execute(
                "INSERT INTO event_days (tenant, event, day, n)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[])"
                " ON CONFLICT (tenant, event, day) DO UPDATE SET n = event_days.n + excluded.n",
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [events[k] for k in keys],
            )
        if runs:
            await self._spans(conn, {(t, w, day) for t, day, w, _ in runs if w != NO_WORKFLOW})
            cells: dict[tuple[str, date, str], list[int]] = {}
            for (tenant, day, workflow, status), n in runs.items():
                c = cells.setdefault((tenant, day, workflow), [0, 0])
                c[0 if status == SUCCESS else 1] += n
            keys3 = sorted(cells)
            await conn.execute(
                "INSERT INTO run_days (tenant, day, workflow_id, successful, failed)"
                " SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::bigint[],"
                " $5::bigint[])"
                " ON CONFLICT (tenant, day, workflow_id) DO UPDATE SET"
                " successful = run_days.successful + excluded.successful,"
                " failed = run_days.failed + excluded.failed",
                [k[0] for k in keys3],
                [k[1] for k in keys3],
                [k[2] for k in keys3],
                [cells[k][0] for k in keys3],
                [cells[k][1] for k in keys3],
            )
            totals: dict[tuple[str, date], list[int]] = {}
            for (tenant, day, _), (successful, failed) in cells.items():
                t = totals.setdefault((tenant, day), [0, 0])
                t[0] += successful
                t[1] += failed
            keys2 = sorted(totals)
            await conn.execute(
                "INSERT INTO run_day_totals (tenant, day, successful, failed)"
                " SELECT * FROM unnest($1::text[], $2::date[], $3::bigint[], $4::bigint[])"
                " ON CONFLICT (tenant, day) DO UPDATE SET"
                " successful = run_day_totals.successful + excluded.successful,"
                " failed = run_day_totals.failed + excluded.failed",
                [k[0] for k in keys2],
                [k[1] for k in keys2],
                [totals[k][0] for k in keys2],
                [totals[k][1] for k in keys2],
            )

    async def _spans(self, conn: Connection, runs: set[tuple[str, str, date]]) -> None:
        """Move `workflow_spans` by the workflows' new run days (before run_days has them)."""
        if not runs:
            return
        batch: dict[tuple[str, str], set[date]] = defaultdict(set)
        for tenant, workflow, day in runs:
            batch[(tenant, workflow)].add(day)
        keys = sorted(batch)
        await lock_keys(conn, "workflow_spans", keys)
        stored = {
            (r[0], r[1]): list(r[2])
            for r in await conn.fetch(_STORED_DAYS, [k[0] for k in keys], [k[1] for k in keys])
        }
        delta: Counter[tuple[str, int, date, date]] = Counter()
        for key in keys:
            before = stored.get(key, [])
            if batch[key] <= set(before):
                continue
            after = sorted(set(before) | batch[key])
            for (kind, x, y), n in spans_delta(before, after).items():
                delta[(key[0], kind, y, x)] += n
        await add_counts(conn, delta, add=_ADD_SPANS, drop_zeros=_DROP_ZERO_SPANS)
