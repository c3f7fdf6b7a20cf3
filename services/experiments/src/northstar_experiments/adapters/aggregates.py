"""The results read model: first exposures, per-user metric values and running sums.

The EVENTS projection refreshes the users a batch touches (one index probe per user: their
exposures and events are re-read and their old contribution is replaced by the new one, so a
late earlier exposure, a user turning multiple-exposure and a duplicate are all exact). The
DOMAIN projection rebuilds one experiment from the stored per-user rows when its definition,
analysis start or analysis end changes. Both take one transaction-scoped advisory lock, so a
rebuild and a refresh never interleave.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from northstar_experiments.adapters.results_sql import Population, per_user_sql
from northstar_experiments.domain.experiment import (
    BINOMIAL,
    Experiment,
    MetricDefinition,
    definition_to_json,
)
from northstar_experiments.domain.stats import CupedMoments, Moments
from northstar_runtime.db import Connection

# The analysis end the sums of a running experiment are kept for: "no end yet".
OPEN_END_US = 10**17
POPULATION = ""  # experiment_sums.metric of the users-per-variant rows

_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':experiment_aggregates'))"

# Per user of the experiment (restricted by the fragment in {users}): the first known-variant
# exposure, whether several known variants were seen, unknown-variant exposures, the latest
# exposure time. $1 tenant, $2 experiment, $3 start, $4 end, $5 variant keys.
_USERS = """
SELECT user_id,
       (array_agg(variant ORDER BY ts_us, event_id) FILTER (WHERE known))[1] AS variant,
       min(ts_us) FILTER (WHERE known) AS first_ts,
       (array_agg(event_id ORDER BY ts_us, event_id) FILTER (WHERE known))[1] AS first_event_id,
       count(DISTINCT variant) FILTER (WHERE known) > 1 AS multiple,
       count(*) FILTER (WHERE NOT known) AS unknown,
       max(ts_us) AS last_ts
FROM (SELECT user_id, variant, ts_us, event_id, variant = ANY($5::text[]) AS known
      FROM exposures WHERE tenant = $1 AND experiment = $2 AND ts_us >= $3 AND ts_us <= $4
      {users}) x
GROUP BY user_id
"""


def metrics_of(state: Experiment) -> list[MetricDefinition]:
    """Goal then guardrail metrics; a metric's key in the sums is its position here."""
    d = state.definition
    return [*d.goal_metrics, *d.guardrail_metrics]


def params_of(state: Experiment) -> str | None:
    """What the aggregates are computed for; None when nothing is analysed (never started)."""
    start = state.analysis_start_us
    if start == 0:
        return None
    d = definition_to_json(state.definition)
    return orjson.dumps(
        {
            "start": start,
            "end": state.stopped_at_us or OPEN_END_US,
            "variants": [v["key"] for v in d["variants"]],
            "metrics": [*d["goal_metrics"], *d["guardrail_metrics"]],
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def _base(tenant: str, state: Experiment) -> list[Any]:
    return [
        tenant,
        state.key,
        state.analysis_start_us,
        state.stopped_at_us or OPEN_END_US,
        [v.key for v in state.definition.variants],
    ]


async def lock(conn: Connection) -> None:
    """Serialise aggregate maintenance for the rest of the transaction."""
    await conn.execute(_LOCK)


async def clear(conn: Connection, tenant: str, key: str) -> None:
    """Remove one experiment's aggregates."""
    for table in (
        "experiment_users",
        "experiment_user_metrics",
        "experiment_sums",
        "experiment_aggregates",
    ):
        await conn.execute(
            f"DELETE FROM {table} WHERE tenant = $1 AND experiment = $2",  # noqa: S608 - fixed names
            tenant,
            key,
        )


async def rebuild(conn: Connection, tenant: str, state: Experiment) -> None:
    """Recompute one experiment's aggregates from the stored exposures and events."""
    await clear(conn, tenant, state.key)
    params = params_of(state)
    if params is None:
        return
    base = _base(tenant, state)
    await conn.execute(
        "INSERT INTO experiment_users (tenant, experiment, user_id, variant, first_ts_us,"  # noqa: S608
        " first_event_id, multiple, unknown_variant_exposures, last_ts_us)"
        " SELECT $1, $2, user_id, variant, first_ts, first_event_id, multiple, unknown, last_ts"
        " FROM (" + _USERS.format(users="") + ") u",
        *base,
    )
    for i, metric in enumerate(metrics_of(state)):
        params_m = list(base)
        sql = per_user_sql(metric, params_m)
        params_m.append(str(i))
        metric_key = f"${len(params_m)}"
        insert = (
            " INSERT INTO experiment_user_metrics (tenant, experiment, metric, user_id, variant,"  # noqa: S608 - placeholders only
            " post, pre, last_ts_us) SELECT $1, $2, " + metric_key + ", user_id, variant, post,"
            " pre, last_ts FROM per_user"
        )
        await conn.execute(sql + insert, *params_m)
    await conn.execute(
        "INSERT INTO experiment_sums (tenant, experiment, metric, variant, users, s, ss, ps,"
        " pss, pp) SELECT $1, $2, '', variant, count(*), 0, 0, 0, 0, 0 FROM experiment_users"
        " WHERE tenant = $1 AND experiment = $2 AND variant IS NOT NULL AND NOT multiple"
        " GROUP BY variant",
        tenant,
        state.key,
    )
    await conn.execute(
        "INSERT INTO experiment_sums (tenant, experiment, metric, variant, users, s, ss, ps,"
        " pss, pp) SELECT $1, $2, metric, variant, count(*), sum(post), sum(post * post),"
        " sum(pre), sum(pre * pre), sum(post * pre) FROM experiment_user_metrics"
        " WHERE tenant = $1 AND experiment = $2 GROUP BY metric, variant",
        tenant,
        state.key,
    )
    await conn.execute(
        "INSERT INTO experiment_aggregates (tenant, experiment, params, multiple_exposures,"
        " unknown_variant_exposures, max_ts_us)"
        " SELECT $1, $2, $3, count(*) FILTER (WHERE multiple),"
        " coalesce(sum(unknown_variant_exposures), 0), greatest(coalesce(max(last_ts_us), 0),"
        " (SELECT coalesce(max(last_ts_us), 0) FROM experiment_user_metrics"
        "  WHERE tenant = $1 AND experiment = $2))"
        " FROM experiment_users WHERE tenant = $1 AND experiment = $2",
        tenant,
        state.key,
        params,
    )


async def on_definition(
    conn: Connection, tenant: str, old: Experiment | None, new: Experiment
) -> None:
    """Keep an experiment's aggregates matching its definition after one of its events."""
    before = params_of(old) if old is not None else None
    after = params_of(new)
    if before == after:
        return
    await lock(conn)
    if old is not None and before is not None and after is not None:
        row = await conn.fetchrow(
            "SELECT params, max_ts_us FROM experiment_aggregates"
            " WHERE tenant = $1 AND experiment = $2",
            tenant,
            new.key,
        )
        only_end = {**orjson.loads(before), "end": 0} == {**orjson.loads(after), "end": 0}
        # Stopping at or after every counted timestamp changes no row: keep them.
        if (
            row is not None
            and row["params"] == before
            and only_end
            and row["max_ts_us"] <= (new.stopped_at_us or OPEN_END_US)
        ):
            await conn.execute(
                "UPDATE experiment_aggregates SET params = $3"
                " WHERE tenant = $1 AND experiment = $2",
                tenant,
                new.key,
                after,
            )
            return
    await rebuild(conn, tenant, new)


@dataclass
class _Delta:
    users: int = 0
    s: float = 0.0
    ss: float = 0.0
    ps: float = 0.0
    pss: float = 0.0
    pp: float = 0.0

    def add(self, sign: int, post: float, pre: float) -> None:
        self.users += sign
        self.s += sign * post
        self.ss += sign * post * post
        self.ps += sign * pre
        self.pss += sign * pre * pre
        self.pp += sign * post * pre


async def refresh(conn: Connection, tenant: str, state: Experiment, users: Sequence[str]) -> None:
    """Recompute these users' rows of one experiment and move the sums by the difference."""
    params = params_of(state)
    if params is None or not users:
        return
    current = await conn.fetchval(
        "SELECT params FROM experiment_aggregates WHERE tenant = $1 AND experiment = $2",
        tenant,
        state.key,
    )
    if current != params:
        return  # the DOMAIN projection has not rebuilt this definition yet; it will
    ids = sorted(set(users))
    base = _base(tenant, state)
    old_users = await conn.fetch(
        "SELECT variant, multiple, unknown_variant_exposures FROM experiment_users"
        " WHERE tenant = $1 AND experiment = $2 AND user_id = ANY($3::text[])",
        tenant,
        state.key,
        ids,
    )
    new_users = await conn.fetch(_USERS.format(users="AND user_id = ANY($6::text[])"), *base, ids)
    deltas: dict[tuple[str, str], _Delta] = defaultdict(_Delta)
    multiple = unknown = 0
    max_ts = 0
    for sign, rows in ((-1, old_users), (1, new_users)):
        for r in rows:
            unknown += sign * int(r["unknown"] if sign > 0 else r["unknown_variant_exposures"])
            if r["multiple"]:
                multiple += sign
            elif r["variant"] is not None:
                deltas[POPULATION, r["variant"]].users += sign
            if sign > 0:
                max_ts = max(max_ts, int(r["last_ts"]))
    metric_rows: list[tuple[str, str, str, str, str, float, float, int]] = []
    for i, metric in enumerate(metrics_of(state)):
        key = str(i)
        old = await conn.fetch(
            "SELECT variant, post, pre FROM experiment_user_metrics WHERE tenant = $1"
            " AND experiment = $2 AND metric = $3 AND user_id = ANY($4::text[])",
            tenant,
            state.key,
            key,
            ids,
        )
        for r in old:
            deltas[key, r["variant"]].add(-1, r["post"], r["pre"])
        params_m = list(base)
        sql = per_user_sql(metric, params_m, ids)
        select = sql + " SELECT * FROM per_user"  # noqa: S608 - placeholders only
        for r in await conn.fetch(select, *params_m):
            deltas[key, r["variant"]].add(1, r["post"], r["pre"])
            max_ts = max(max_ts, int(r["last_ts"]))
            metric_rows.append(
                (
                    tenant,
                    state.key,
                    key,
                    r["user_id"],
                    r["variant"],
                    r["post"],
                    r["pre"],
                    int(r["last_ts"]),
                )
            )
    for table in ("experiment_users", "experiment_user_metrics"):
        await conn.execute(
            f"DELETE FROM {table} WHERE tenant = $1 AND experiment = $2"  # noqa: S608 - fixed names
            " AND user_id = ANY($3::text[])",
            tenant,
            state.key,
            ids,
        )
    await conn.executemany(
        "INSERT INTO experiment_users (tenant, experiment, user_id, variant, first_ts_us,"
        " first_event_id, multiple, unknown_variant_exposures, last_ts_us)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                tenant,
                state.key,
                r["user_id"],
                r["variant"],
                r["first_ts"],
                r["first_event_id"],
                r["multiple"],
                r["unknown"],
                r["last_ts"],
            )
            for r in new_users
        ],
    )
    if metric_rows:
        await conn.executemany(
            "INSERT INTO experiment_user_metrics (tenant, experiment, metric, user_id, variant,"
            " post, pre, last_ts_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            metric_rows,
        )
    await conn.executemany(
        "INSERT INTO experiment_sums (tenant, experiment, metric, variant, users, s, ss, ps,"
        " pss, pp) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (tenant, experiment, metric, variant) DO UPDATE SET"
        " users = experiment_sums.users + EXCLUDED.users, s = experiment_sums.s + EXCLUDED.s,"
        " ss = experiment_sums.ss + EXCLUDED.ss, ps = experiment_sums.ps + EXCLUDED.ps,"
        " pss = experiment_sums.pss + EXCLUDED.pss, pp = experiment_sums.pp + EXCLUDED.pp",
        [
            (tenant, state.key, m, v, d.users, d.s, d.ss, d.ps, d.pss, d.pp)
            for (m, v), d in sorted(deltas.items())
        ],
    )
    await conn.execute(
        "UPDATE experiment_aggregates SET multiple_exposures = multiple_exposures + $3,"
        " unknown_variant_exposures = unknown_variant_exposures + $4,"
        " max_ts_us = greatest(max_ts_us, $5) WHERE tenant = $1 AND experiment = $2",
        tenant,
        state.key,
        multiple,
        unknown,
        max_ts,
    )


async def affected(
    conn: Connection, tenant: str, users: Iterable[str], exposed: Iterable[tuple[str, str]]
) -> dict[str, list[str]]:
    """Per experiment, the users among `users` whose rows a batch may change."""
    out: dict[str, set[str]] = defaultdict(set)
    for experiment, user in exposed:
        out[experiment].add(user)
    rows = await conn.fetch(
        "SELECT experiment, user_id FROM experiment_users"
        " WHERE tenant = $1 AND user_id = ANY($2::text[])",
        tenant,
        sorted(set(users)),
    )
    for r in rows:
        out[r["experiment"]].add(r["user_id"])
    return {k: sorted(v) for k, v in out.items()}


@dataclass(frozen=True, slots=True)
class Aggregated:
    """GetResults' inputs read from the running sums."""

    population: Population
    moments: list[dict[str, CupedMoments]]


async def read(conn: Connection, tenant: str, state: Experiment, end_us: int) -> Aggregated | None:
    """The sums, if they answer an analysis ending at `end_us` exactly; else None."""
    params = params_of(state)
    if params is None:
        return None
    row = await conn.fetchrow(
        "SELECT params, multiple_exposures, unknown_variant_exposures, max_ts_us"
        " FROM experiment_aggregates WHERE tenant = $1 AND experiment = $2",
        tenant,
        state.key,
    )
    # Every counted row is at or before max_ts: an end at or after it (and within the bound
    # the sums were kept for) sees exactly the same rows.
    bound = state.stopped_at_us or OPEN_END_US
    if row is None or row["params"] != params or not row["max_ts_us"] <= end_us <= bound:
        return None
    sums = await conn.fetch(
        "SELECT metric, variant, users, s, ss, ps, pss, pp FROM experiment_sums"
        " WHERE tenant = $1 AND experiment = $2",
        tenant,
        state.key,
    )
    keys = [v.key for v in state.definition.variants]
    metrics = metrics_of(state)
    users = dict.fromkeys(keys, 0)
    moments = []
    for m in metrics:
        b = m.kind == BINOMIAL
        moments.append(
            {k: CupedMoments(Moments(0, 0.0, 0.0, b), Moments(0, 0.0, 0.0, b), 0.0) for k in keys}
        )
    for r in sums:
        if r["variant"] not in users:
            continue
        if r["metric"] == POPULATION:
            users[r["variant"]] = int(r["users"])
            continue
        i = int(r["metric"])
        b = metrics[i].kind == BINOMIAL
        n = int(r["users"])
        moments[i][r["variant"]] = CupedMoments(
            Moments(n, float(r["s"]), float(r["ss"]), b),
            Moments(n, float(r["ps"]), float(r["pss"]), b),
            float(r["pp"]),
        )
    population = Population(
        users, int(row["multiple_exposures"]), int(row["unknown_variant_exposures"])
    )
    return Aggregated(population, moments)
