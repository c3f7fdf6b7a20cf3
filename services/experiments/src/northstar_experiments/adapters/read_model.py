"""Queries over the experiments service's read models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from northstar_experiments.adapters import aggregates
from northstar_experiments.adapters.projections import state_from_json
from northstar_experiments.adapters.results_sql import (
    POPULATION_SQL,
    Population,
    per_user_sql,
)
from northstar_experiments.domain.experiment import (
    BINOMIAL,
    Experiment,
    ExperimentEvent,
    MetricDefinition,
    event_from_json,
)
from northstar_experiments.domain.stats import CupedMoments, Moments

EXPOSURES_PROJECTION = "experiment_events"


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

    async def aggregated(
        self, tenant: str, experiment: Experiment, end_us: int
    ) -> aggregates.Aggregated | None:
        """The running sums, when they answer an analysis ending at `end_us` exactly."""
        async with self._pool.acquire() as conn:
            return await aggregates.read(conn, tenant, experiment, end_us)

    async def population(
        self, tenant: str, experiment: Experiment, start_us: int, end_us: int
    ) -> Population:
        """Users per variant by first exposure in [start, end], multi-variant users apart."""
        keys = [v.key for v in experiment.definition.variants]
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                POPULATION_SQL,
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
        params: list[Any] = [tenant, experiment.key, start_us, end_us, keys]
        sql = (
            per_user_sql(metric, params)  # noqa: S608 - fixed fragments and placeholders only
            + " SELECT variant, count(*) AS n, sum(post) AS s, sum(post * post) AS ss,"
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
