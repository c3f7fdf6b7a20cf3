"""The experiments service's projections: definitions (DOMAIN) and exposures/events (EVENTS)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from northstar.log.v1 import log_pb2
from northstar_experiments.adapters import aggregates
from northstar_experiments.adapters.experiment_store import decode_event
from northstar_experiments.domain.experiment import (
    Experiment,
    definition_from_json,
    definition_to_json,
    event_to_json,
    evolve,
)
from northstar_runtime.codec import TYPE_HEADER, decode_events_entry
from northstar_runtime.db import Connection
from northstar_runtime.erasure import erased_at, is_erased_history, remember_erased
from northstar_runtime.projector import LogEntry

EXPOSURE_EVENT = "experiment.exposure"


def state_to_json(s: Experiment) -> dict[str, Any]:
    """A folded experiment as the read model stores it."""
    return {
        "key": s.key,
        "definition": definition_to_json(s.definition),
        "status": s.status,
        "version": s.version,
        "created_at_us": s.created_at_us,
        "started_at_us": s.started_at_us,
        "stopped_at_us": s.stopped_at_us,
        "winner": s.winner,
        "conclusion_reason": s.conclusion_reason,
    }


def state_from_json(o: dict[str, Any]) -> Experiment:
    """A folded experiment from the read model."""
    return Experiment(
        key=o["key"],
        definition=definition_from_json(o["definition"]),
        status=o["status"],
        version=int(o["version"]),
        created_at_us=int(o["created_at_us"]),
        started_at_us=int(o["started_at_us"]),
        stopped_at_us=int(o["stopped_at_us"]),
        winner=o["winner"],
        conclusion_reason=o["conclusion_reason"],
    )


def _tenant_and_key(subject: str) -> tuple[str, str]:
    # [namespace.]domain.experiments.<tenant>.experiment.<key>
    parts = subject.split(".")
    return parts[-3], parts[-1]


class DefinitionsProjection:
    """Folds experiment events into `experiments` and `experiment_history`."""

    name = "experiments"

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Fold each event into its experiment's row; a redelivered version changes nothing."""
        for entry in entries:
            if not entry.headers.get(TYPE_HEADER, "").startswith("Experiment"):
                continue
            tenant, key = _tenant_and_key(entry.subject)
            event = decode_event(entry.data, dict(entry.headers))
            row = await conn.fetchrow(
                "SELECT version, state FROM experiments WHERE tenant = $1 AND key = $2",
                tenant,
                key,
            )
            if row is not None and row["version"] >= entry.seq:
                continue
            state = state_from_json(orjson.loads(row["state"])) if row is not None else None
            new = evolve(state, event, entry.seq)
            await aggregates.on_definition(conn, tenant, state, new)
            await conn.execute(
                "INSERT INTO experiments (tenant, key, status, version, state)"
                " VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (tenant, key) DO UPDATE"
                " SET status = EXCLUDED.status, version = EXCLUDED.version, state = EXCLUDED.state",
                tenant,
                key,
                new.status,
                new.version,
                orjson.dumps(state_to_json(new)).decode(),
            )
            await conn.execute(
                "INSERT INTO experiment_history (tenant, key, version, type, at_us, actor, event)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT DO NOTHING",
                tenant,
                key,
                entry.seq,
                event.type,
                event.at_us,
                event.actor,
                orjson.dumps(event_to_json(event)).decode(),
            )

    async def reset(self, conn: Connection) -> None:
        """Empty the read model, for a replay of the DOMAIN stream."""
        await conn.execute(
            "TRUNCATE experiments, experiment_history, experiment_aggregates,"
            " experiment_users, experiment_user_metrics, experiment_sums"
        )


class ExposuresProjection:
    """Keeps exposures and every user's events (name, time, properties) from EVENTS."""

    name = "experiment_events"

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Apply the batch's event batches and erasures in log order: the events before
        an erasure, then the erasure."""
        batches: list[log_pb2.EventBatch] = []
        for entry in entries:
            record = decode_events_entry(entry.data, entry.headers)
            if isinstance(record, log_pb2.UserErased):
                await self._apply_batches(conn, batches)
                batches = []
                await self._erase(conn, record)
            else:
                batches.append(record)
        await self._apply_batches(conn, batches)

    async def _apply_batches(self, conn: Connection, batches: Sequence[log_pb2.EventBatch]) -> None:
        """Insert the user events and exposures; duplicates (tenant, event_id) skip."""
        events: list[tuple[str, str, str, str, int, str]] = []
        exposures: list[tuple[str, str, str, str, str, int]] = []
        erased = await erased_at(
            conn, ((b.tenant, e.user_id) for b in batches for e in b.events if e.user_id)
        )
        for batch in batches:
            for e in batch.events:
                if not e.user_id:
                    continue
                if erased and is_erased_history(
                    e.timestamp_us, erased.get((batch.tenant, e.user_id))
                ):
                    continue
                props = e.properties_json.decode() or "{}"
                events.append((batch.tenant, e.event_id, e.user_id, e.event, e.timestamp_us, props))
                if e.event == EXPOSURE_EVENT:
                    exposure = _exposure(batch.tenant, e)
                    if exposure is not None:
                        exposures.append(exposure)
        if events:
            await conn.executemany(
                "INSERT INTO user_events (tenant, event_id, user_id, event, ts_us, properties)"
                " VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT DO NOTHING",
                events,
            )
        if exposures:
            await conn.executemany(
                "INSERT INTO exposures (tenant, event_id, experiment, variant, user_id, ts_us)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                exposures,
            )
        if events:
            await self._refresh(conn, events, exposures)

    async def _erase(self, conn: Connection, erasure: log_pb2.UserErased) -> None:
        """Forget the user's exposures and events; move its experiments' sums without it."""
        tenant, user = erasure.tenant, erasure.user_id
        await aggregates.lock(conn)
        # Before the delete: the experiments the user is counted in, or exposed to.
        touched = await aggregates.affected(
            conn,
            tenant,
            [user],
            [
                (r["experiment"], user)
                for r in await conn.fetch(
                    "SELECT DISTINCT experiment FROM exposures WHERE tenant = $1 AND user_id = $2",
                    tenant,
                    user,
                )
            ],
        )
        for table in ("exposures", "user_events"):
            await conn.execute(
                f"DELETE FROM {table} WHERE tenant = $1 AND user_id = $2",  # noqa: S608 - fixed
                tenant,
                user,
            )
        if touched:
            rows = await conn.fetch(
                "SELECT state FROM experiments WHERE tenant = $1 AND key = ANY($2::text[])"
                " ORDER BY key",
                tenant,
                sorted(touched),
            )
            for row in rows:
                # The user's rows are recomputed from what is left (nothing): its old
                # contribution to the sums is subtracted, its per-user rows deleted.
                state = state_from_json(orjson.loads(row["state"]))
                await aggregates.refresh(conn, tenant, state, [user])
        # An experiment not yet rebuilt for its definition (refresh skips it) is rebuilt
        # later from the stored rows, which no longer hold the user; no row may be left.
        for table in ("experiment_users", "experiment_user_metrics"):
            await conn.execute(
                f"DELETE FROM {table} WHERE tenant = $1 AND user_id = $2",  # noqa: S608 - fixed
                tenant,
                user,
            )
        await remember_erased(conn, tenant, user, erasure.erased_at_us)

    async def _refresh(
        self,
        conn: Connection,
        events: list[tuple[str, str, str, str, int, str]],
        exposures: list[tuple[str, str, str, str, str, int]],
    ) -> None:
        # Every user with an event in the batch may change the experiments they are in;
        # a new exposure may add them to one. Their rows are recomputed from stored rows.
        await aggregates.lock(conn)
        users: dict[str, set[str]] = {}
        for tenant, _id, user, *_rest in events:
            users.setdefault(tenant, set()).add(user)
        exposed: dict[str, set[tuple[str, str]]] = {}
        for tenant, _id, experiment, _variant, user, _ts in exposures:
            exposed.setdefault(tenant, set()).add((experiment, user))
        for tenant in sorted(users):
            touched = await aggregates.affected(
                conn, tenant, users[tenant], exposed.get(tenant, set())
            )
            if not touched:
                continue
            rows = await conn.fetch(
                "SELECT state FROM experiments WHERE tenant = $1 AND key = ANY($2::text[])"
                " ORDER BY key",
                tenant,
                sorted(touched),
            )
            for row in rows:
                state = state_from_json(orjson.loads(row["state"]))
                await aggregates.refresh(conn, tenant, state, touched[state.key])

    async def reset(self, conn: Connection) -> None:
        """Empty the read model, for a replay of the EVENTS stream."""
        await conn.execute(
            "TRUNCATE exposures, user_events, experiment_users, experiment_user_metrics,"
            " experiment_sums, erased_users"
        )
        await conn.execute(
            "UPDATE experiment_aggregates SET multiple_exposures = 0,"
            " unknown_variant_exposures = 0, max_ts_us = 0"
        )


def _exposure(tenant: str, e: log_pb2.StoredEvent) -> tuple[str, str, str, str, str, int] | None:
    try:
        props = orjson.loads(e.properties_json or b"{}")
    except orjson.JSONDecodeError:
        return None
    experiment, variant = props.get("experiment"), props.get("variant")
    if not isinstance(experiment, str) or not isinstance(variant, str):
        return None  # data quality counts it as missing fields; not an exposure here
    return (tenant, e.event_id, experiment, variant, e.user_id, e.timestamp_us)
