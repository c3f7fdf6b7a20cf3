"""SQL over the stored exposures and events that computes experiment metrics per user."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from northstar_experiments.domain.experiment import BINOMIAL, MetricDefinition, PropertyFilter

CUPED_LOOKBACK_US = 14 * 86_400 * 1_000_000
_FOREVER_US = 10**17


def firsts_sql(user_filter: str = "") -> str:
    """The `firsts` CTE: per user the first known-variant exposure in [$3, $4] ($5: keys).

    `user_filter` is a fixed fragment restricting the users (a placeholder, no values).
    """
    return (
        "WITH exp AS (SELECT user_id, variant, ts_us, event_id FROM exposures"  # noqa: S608
        " WHERE tenant = $1 AND experiment = $2 AND ts_us >= $3 AND ts_us <= $4"
        " AND variant = ANY($5::text[])" + user_filter + "), firsts AS ("
        " SELECT user_id, (array_agg(variant ORDER BY ts_us, event_id))[1] AS variant,"
        " (array_agg(event_id ORDER BY ts_us, event_id))[1] AS first_event_id,"
        " min(ts_us) AS first_ts, max(ts_us) AS last_ts, count(DISTINCT variant) AS variants"
        " FROM exp GROUP BY user_id)"
    )


POPULATION_SQL = (
    firsts_sql()  # noqa: S608 - fixed fragments only
    + " SELECT variant, variants > 1 AS multiple, count(*) AS users FROM firsts GROUP BY 1, 2"
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


def per_user_sql(
    metric: MetricDefinition, params: list[Any], users: Sequence[str] | None = None
) -> str:
    """`firsts` and `per_user` CTEs: each single-variant user's metric value after and before.

    `params` holds tenant, experiment, start, end and the variant keys; this appends the
    metric's (and `users`, restricting the users). Only placeholders and fixed fragments are
    composed; every value is a parameter.
    """
    binomial = metric.kind == BINOMIAL
    window = metric.window_seconds * 1_000_000 if metric.window_seconds else _FOREVER_US
    params.extend([metric.event, window, CUPED_LOOKBACK_US])
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
    user_filter = ""
    if users is not None:
        params.append(list(users))
        user_filter = f" AND user_id = ANY(${len(params)}::text[])"
    return (
        firsts_sql(user_filter)  # noqa: S608 - fixed fragments and placeholders only
        + ", per_user AS (SELECT f.user_id, f.variant, "
        + post
        + " AS post, "
        + pre
        + " AS pre, coalesce(max(e.ts_us) FILTER (WHERE "
        + post_cond
        + "), 0) AS last_ts FROM firsts f LEFT JOIN user_events e ON e.tenant = $1"
        " AND e.user_id = f.user_id AND e.event = $6"
        + filters
        + " AND e.ts_us >= f.first_ts - $8 AND e.ts_us <= least(f.first_ts + $7, $4)"
        " WHERE f.variants = 1 GROUP BY f.user_id, f.variant)"
    )
