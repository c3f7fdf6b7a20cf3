"""Queries over the experiments service's read models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from northstar_experiments.adapters.projections import state_from_json
from northstar_experiments.domain.experiment import (
    BINOMIAL,
    Experiment,
    ExperimentEvent,
    MetricDefinition,
    PropertyFilter,
    event_from_json,
)
from northstar_experiments.domain.stats import CupedMoments, Moments

CUPED_LOOKBACK_US = 14 * 86_400 * 1_000_000
_FOREVER_US = 10**17
EXPOSURES_PROJECTION = "experiment_events"

_FIRSTS = """
WITH exp AS (
    SELECT user_id, variant, ts_us, event_id FROM exposures
    WHERE tenant = $1 AND experiment = $2 AND ts_us >= $3 AND ts_us <= $4
      AND variant = ANY($5::text[])
), firsts AS (
    SELECT user_id, (array_agg(variant ORDER BY ts_us, event_id))[1] AS variant,
           min(ts_us) AS first_ts, count(DISTINCT variant) AS variants
    FROM exp GROUP BY user_id
)
"""


_POPULATION = (
    _FIRSTS  # noqa: S608
    + "SELECT variant, variants > 1 AS multiple, count(*) AS users FROM firsts GROUP BY 1, 2"
)


@dataclass(frozen=True, slots=True)
class Population:
    """Who is in the analysis: users per variant, and what was left out."""

    users: dict[str, int]
    multiple_exposures: int
    unknown_variant_exposures: int


def _filter_sql(f: PropertyFilter, params: list[Any]) -> str:
    params.append(f.property)
    k = f"${len(params)}"
    if f.operator in ("equals", "not_equals"):
        params.append(orjson.dumps(f.values[0]).decode())
        v = f"${len(params)}"
        equal = f"(e.properties ? {k} AND e.properties -> {k} = {v}::jsonb)"
        return equal if f.operator == "equals" else f"NOT {equal}"
    if f.operator == "in":
        params.append([orjson.dumps(x).decode() for x in f.values])
        v = f"${len(params)}"
        return f"(e.properties ? {k} AND e.properties -> {k} = ANY({v}::text[]::jsonb[]))"
    params.append(repr(f.values[0]) if isinstance(f.values[0], float) else str(f.values[0]))
    v = f"${len(params)}"
    return (
        f"(jsonb_typeof(e.properties -> {k}) = 'number'"
        f" AND (e.properties ->> {k})::numeric {f.operator} {v}::numeric)"
    )


class ReadModel:
    """Experiments, their history, and the sufficient statistics of their metrics."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(
        self, tenant: str, key: str
    ) -> tuple[Experiment, list[tuple[int, ExperimentEvent]]] | None:
        """An experiment and its history, or None."""
        found = await self.list(tenant, keys=[key])
        return found[0] if found else None

    async def list(
        self, tenant: str, *, status: str | None = None, keys: Sequence[str] | None = None
    ) -> list[tuple[Experiment, list[tuple[int, ExperimentEvent]]]]:
        """Experiments by key, optionally of one status or keys, each with its history."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT key, state FROM experiments WHERE tenant = $1"
                " AND ($2::text IS NULL OR status = $2)"
                " AND ($3::text[] IS NULL OR key = ANY($3::text[])) ORDER BY key",
                tenant,
                status,
                list(keys) if keys is not None else None,
            )
            history = await conn.fetch(
                "SELECT key, version, event FROM experiment_history WHERE tenant = $1"
                " AND key = ANY($2::text[]) ORDER BY key, version",
                tenant,
                [r["key"] for r in rows],
            )
        by_key: dict[str, list[tuple[int, ExperimentEvent]]] = {}
        for h in history:
            by_key.setdefault(h["key"], []).append(
                (h["version"], event_from_json(orjson.loads(h["event"])))
            )
        return [(state_from_json(orjson.loads(r["state"])), by_key.get(r["key"], [])) for r in rows]

    async def position(self) -> int:
        """The EVENTS position the exposures projection has applied."""
        async with self._pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT position FROM projection_checkpoints WHERE projection = $1",
                EXPOSURES_PROJECTION,
            )
        return int(value or 0)

    async def population(
        self, tenant: str, experiment: Experiment, start_us: int, end_us: int
    ) -> Population:
        """Users per variant by first exposure in [start, end], multi-variant users apart."""
        keys = [v.key for v in experiment.definition.variants]
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                _POPULATION,
                tenant,
                experiment.key,
                start_us,
                end_us,
                keys,
            )
            unknown = await conn.fetchval(
                "SELECT count(*) FROM exposures WHERE tenant = $1 AND experiment = $2"
                " AND ts_us >= $3 AND ts_us <= $4 AND NOT (variant = ANY($5::text[]))",
                tenant,
                experiment.key,
                start_us,
                end_us,
                keys,
            )
        users = dict.fromkeys(keys, 0)
        multiple = 0
        for r in rows:
            if r["multiple"]:
                multiple += int(r["users"])
            else:
                users[r["variant"]] = int(r["users"])
        return Population(users, multiple, int(unknown or 0))

    async def metric_moments(
        self,
        tenant: str,
        experiment: Experiment,
        metric: MetricDefinition,
        start_us: int,
        end_us: int,
    ) -> dict[str, CupedMoments]:
        """Per variant: the metric's post-exposure moments, pre-exposure moments, products."""
        binomial = metric.kind == BINOMIAL
        keys = [v.key for v in experiment.definition.variants]
        window = metric.window_seconds * 1_000_000 if metric.window_seconds else _FOREVER_US
        params: list[Any] = [
            tenant,
            experiment.key,
            start_us,
            end_us,
            keys,
            metric.event,
            window,
            CUPED_LOOKBACK_US,
        ]
        if binomial:
            value = "1.0"
        else:
            params.append(metric.property)
            p = f"${len(params)}"
            value = (
                f"CASE WHEN jsonb_typeof(e.properties -> {p}) = 'number'"
                f" THEN (e.properties ->> {p})::float8 ELSE 0 END"
            )
        filters = "".join(f" AND {_filter_sql(f, params)}" for f in metric.filters)
        post_cond = "e.ts_us >= f.first_ts AND e.ts_us <= least(f.first_ts + $7, $4)"
        pre_cond = "e.ts_us >= f.first_ts - $8 AND e.ts_us < f.first_ts"
        post = f"coalesce(sum({value}) FILTER (WHERE {post_cond}), 0)"
        pre = f"coalesce(sum({value}) FILTER (WHERE {pre_cond}), 0)"
        if binomial:
            post = f"(({post}) > 0)::int::float8"
            pre = f"(({pre}) > 0)::int::float8"
        # Only placeholders and fixed fragments are composed here; every value is a parameter.
        sql = (
            _FIRSTS  # noqa: S608 - fixed fragments and $n placeholders only
            + ", per_user AS (SELECT f.variant, "
            + post
            + " AS post, "
            + pre
            + " AS pre FROM firsts f LEFT JOIN user_events e ON e.tenant = $1"
            " AND e.user_id = f.user_id AND e.event = $6"
            + filters
            + " AND e.ts_us >= f.first_ts - $8 AND e.ts_us <= least(f.first_ts + $7, $4)"
            " WHERE f.variants = 1 GROUP BY f.user_id, f.variant)"
            " SELECT variant, count(*) AS n, sum(post) AS s, sum(post * post) AS ss,"
            " sum(pre) AS ps, sum(pre * pre) AS pss, sum(post * pre) AS pp"
            " FROM per_user GROUP BY variant"
        )
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *params)
        out = {
            k: CupedMoments(Moments(0, 0.0, 0.0, binomial), Moments(0, 0.0, 0.0, binomial), 0.0)
            for k in keys
        }
        for r in rows:
            n = int(r["n"])
            out[r["variant"]] = CupedMoments(
                Moments(n, float(r["s"]), float(r["ss"]), binomial),
                Moments(n, float(r["ps"]), float(r["pss"]), binomial),
                float(r["pp"]),
            )
        return out
