"""Trends aggregated in PostgreSQL from the `events` table.

Reading every event of a 90-day range into Python is seconds; PostgreSQL aggregates the
same rows, with exactly the definitions of domain/trend.py (whose in-memory `trend` is
the executable definition the tests hold both to), in one pass per phase.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

import asyncpg
import orjson

from northstar_metrics.adapters.event_store import EventStore
from northstar_metrics.domain.filters import Operator, PropertyFilter
from northstar_metrics.domain.time import US_PER_DAY, range_us
from northstar_metrics.domain.trend import (
    ALL,
    NONE_SERIES,
    OTHER_SERIES,
    US_PER_HOUR,
    Aggregate,
    Interval,
    Measure,
    SeriesId,
    SeriesKind,
    Trend,
    TrendQuery,
    assemble,
    buckets,
    plan_series,
    trend,
)
from northstar_runtime.db import Connection

WORK_MEM = "128MB"

# The breakdown key as domain/trend.breakdown_key spells it: strings as is, numbers in plain
# decimal form (trim_scale: 1.0 -> 1, numeric text never uses exponents), bools as JSON.
# Lists and objects (sorted, compact JSON) are not spelled here: the query says whether it
# met one, and the caller then takes the in-memory path.
_KEY = """CASE jsonb_typeof(properties -> {p})
    WHEN 'string' THEN properties ->> {p}
    WHEN 'number' THEN trim_scale((properties -> {p})::numeric)::text
    WHEN 'boolean' THEN properties ->> {p}
  END"""
_COMPLEX = "jsonb_typeof(properties -> {p}) IN ('array', 'object')"
# A CASE, not an AND: PostgreSQL may evaluate AND operands in any order, and a string
# cast to numeric is an error.
_NUMBER = (
    "CASE WHEN jsonb_typeof(properties -> {p}) = 'number' THEN (properties -> {p})::numeric END"
)
_COMPARE = {
    Operator.LESS_THAN: "<",
    Operator.LESS_THAN_OR_EQUAL: "<=",
    Operator.GREATER_THAN: ">",
    Operator.GREATER_THAN_OR_EQUAL: ">=",
}


class _Sql:
    """A statement's positional arguments, bound as $n: values never enter the text."""

    def __init__(self) -> None:
        self.args: list[object] = []

    def bind(self, value: object) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def name(self, value: str | None) -> str:
        """A property name: typed, since `jsonb -> $n` could also take an array index."""
        return f"{self.bind(value)}::text"


def _filter_sql(f: PropertyFilter, sql: _Sql) -> str:
    """domain/filters.py's semantics in SQL: jsonb equality is JSON equality (1 = 1.0)."""
    value = f"(properties -> {sql.name(f.property)})"
    if f.operator is Operator.EQUALS:
        return f"({value} = {sql.bind(orjson.dumps(f.values[0]).decode())}::jsonb) IS TRUE"
    if f.operator is Operator.NOT_EQUALS:
        # Absent: NULL, so IS NOT TRUE matches it, as the negation of EQUALS must.
        return f"({value} = {sql.bind(orjson.dumps(f.values[0]).decode())}::jsonb) IS NOT TRUE"
    if f.operator is Operator.IN:
        texts = [orjson.dumps(v).decode() for v in f.values]
        return f"({value} = ANY({sql.bind(texts)}::jsonb[])) IS TRUE"
    # The stored number is the shortest text of its double, and so is repr(bound): decimal
    # comparison orders them exactly as the doubles compare.
    bound = sql.bind(Decimal(repr(f.values[0])))
    return (
        f"(CASE WHEN jsonb_typeof({value}) = 'number'"
        f" THEN {value}::numeric {_COMPARE[f.operator]} {bound}::numeric END) IS TRUE"
    )


def _where(
    tenant: str, query: TrendQuery, filters: Sequence[PropertyFilter], sql: _Sql
) -> tuple[str, str]:
    """The WHERE clause of the matching events, and the bound start of the range."""
    since_us, until_us = range_us(query.first, query.last)
    since = sql.bind(since_us)
    clauses = [f"tenant = {sql.bind(tenant)}", f"ts_us >= {since}", f"ts_us < {sql.bind(until_us)}"]
    if query.event:
        clauses.append(f"event = {sql.bind(query.event)}")
    clauses.extend(_filter_sql(f, sql) for f in filters)
    return " AND ".join(clauses), since


def _bucket(query: TrendQuery, since: str, sql: _Sql) -> str:
    """The bucket index of an event: its hour, or its day's bucket (week, month) by lookup."""
    if query.interval is Interval.HOUR:
        return f"((ts_us - {since}) / {US_PER_HOUR})::int"
    _, day_index = buckets(query.first, query.last, query.interval)
    return f"({sql.bind(day_index)}::int[])[((ts_us - {since}) / {US_PER_DAY})::int + 1]"


def _aggregate(row: asyncpg.Record) -> Aggregate:
    return Aggregate(
        events=int(row["events"]),
        users=int(row["users"]),
        numbers=int(row["numbers"]),
        total=Fraction(row["total"]) if row["total"] is not None else Fraction(0),
        minimum=row["minimum"],
        maximum=row["maximum"],
    )


def _extreme(a: Decimal | None, b: Decimal | None, *, largest: bool) -> Decimal | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b) if largest else min(a, b)


def _combined(a: Aggregate, b: Aggregate) -> Aggregate:
    """The aggregate of two disjoint sets of events (not for distinct users)."""
    return Aggregate(
        events=a.events + b.events,
        users=0,
        numbers=a.numbers + b.numbers,
        total=a.total + b.total,
        minimum=_extreme(a.minimum, b.minimum, largest=False),
        maximum=_extreme(a.maximum, b.maximum, largest=True),
    )


def _grouped(inner: str, *, by_bucket: bool, distinct_users: bool) -> str:
    """Aggregates per series and bucket, plus per series over the range (bucket NULL).

    `inner` yields s_kind, s_value, b (bucket), u (user_id), x (the number or NULL).
    """
    series = "s_kind, s_value"
    if not distinct_users:
        # A plain GROUP BY (several times faster than grouping sets): without distinct
        # users, the range aggregate of a series is the sum of its buckets' (`_combined`).
        keys = f"{series}, b" if by_bucket else series
        bucket = "b" if by_bucket else "NULL::int AS b"
        return (
            f"SELECT {series}, {bucket}, count(*) AS events, 0 AS users, count(x) AS numbers,"  # noqa: S608 - fixed fragments, values bound
            " sum(x) AS total, min(x) AS minimum, max(x) AS maximum"
            f" FROM ({inner}) m GROUP BY {keys}"
        )
    # Distinct users by grouping on the user first (a hash aggregate), where
    # count(DISTINCT) would sort every group.
    sets = f"({series}, b, u), ({series}, u)" if by_bucket else f"({series}, u)"
    bucket = "b" if by_bucket else "NULL::int AS b"
    return (
        f"SELECT {series}, b, sum(n)::bigint AS events,"  # noqa: S608 - fixed fragments, values bound
        " count(*) FILTER (WHERE u <> '') AS users, sum(nx)::bigint AS numbers,"
        " sum(sx) AS total, min(mn) AS minimum, max(mx) AS maximum FROM ("
        f"SELECT {series}, {bucket}, u, count(*) AS n, count(x) AS nx, sum(x) AS sx,"
        " min(x) AS mn, max(x) AS mx"
        f" FROM ({inner}) m GROUP BY GROUPING SETS ({sets})"
        f") g GROUP BY {series}, b"
    )


class TrendStore:
    """Trends aggregated in PostgreSQL from the `events` table, per tenant."""

    def __init__(self, pool: asyncpg.Pool, events: EventStore) -> None:
        self._pool = pool
        self._events = events

    async def trend(
        self, tenant: str, query: TrendQuery, filters: Sequence[PropertyFilter]
    ) -> Trend:
        """The trend of domain/trend.py, computed where the events are."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(
                # One snapshot for both phases: an event projected in between must not
                # rank in one and be missing from the other.
                isolation="repeatable_read",
                readonly=True,
            ),
        ):
            # The per-user hash aggregates of a 90-day range outgrow the default work_mem
            # and spill to disk: several times slower.
            await conn.execute("SELECT set_config('work_mem', $1, true)", WORK_MEM)
            if query.breakdown is None:
                series = [ALL]
            else:
                planned = await self._plan(conn, tenant, query, filters)
                if planned is None:
                    return await self._in_memory(tenant, query, filters)
                series = planned
            cells, totals = await self._cells(conn, tenant, query, filters, series)
        return assemble(query, series, cells, totals)

    async def _in_memory(
        self, tenant: str, query: TrendQuery, filters: Sequence[PropertyFilter]
    ) -> Trend:
        """The rows path, for breakdown values SQL does not spell (lists, objects): rare."""
        since_us, until_us = range_us(query.first, query.last)
        rows = await self._events.events(
            tenant,
            names=[query.event] if query.event else None,
            since_us=since_us,
            until_us=until_us,
        )
        return trend(rows, query, filters)

    async def _plan(
        self,
        conn: Connection,
        tenant: str,
        query: TrendQuery,
        filters: Sequence[PropertyFilter],
    ) -> list[SeriesId] | None:
        """Phase 1: rank the breakdown values over the range; None if one is a list or object."""
        sql = _Sql()
        where, _ = _where(tenant, query, filters, sql)
        p = sql.name(query.breakdown)
        number = _NUMBER.format(p=sql.name(query.property)) if query.property else "NULL::numeric"
        inner = (
            f"SELECT {_COMPLEX.format(p=p)} AS s_kind, {_KEY.format(p=p)} AS s_value,"  # noqa: S608 - fixed fragments, values bound
            f" NULL::int AS b, user_id AS u, {number} AS x FROM events WHERE {where}"
        )
        distinct = query.measure is Measure.UNIQUE_USERS
        text = _grouped(inner, by_bucket=False, distinct_users=distinct)
        rows = await conn.fetch(text, *sql.args)
        if any(r["s_kind"] for r in rows):
            return None
        key_totals = {r["s_value"]: _aggregate(r) for r in rows if r["s_value"] is not None}
        has_none = any(r["s_value"] is None for r in rows)
        return plan_series(key_totals, has_none, query.measure)

    async def _cells(
        self,
        conn: Connection,
        tenant: str,
        query: TrendQuery,
        filters: Sequence[PropertyFilter],
        series: list[SeriesId],
    ) -> tuple[dict[tuple[SeriesId, int], Aggregate], dict[SeriesId, Aggregate]]:
        """Phase 2: each series per bucket and over the range."""
        sql = _Sql()
        where, since = _where(tenant, query, filters, sql)
        bucket = _bucket(query, since, sql)
        number = _NUMBER.format(p=sql.name(query.property)) if query.property else "NULL::numeric"
        if query.breakdown is None:
            key, kind, value = "NULL::text", "0", "''"
        else:
            key = _KEY.format(p=sql.name(query.breakdown))
            top = sql.bind([s.value for s in series if s.kind is SeriesKind.VALUE])
            # 0: a top value (or ALL), 1: $other, 2: $none.
            kind = f"CASE WHEN k IS NULL THEN 2 WHEN k = ANY({top}::text[]) THEN 0 ELSE 1 END"
            value = f"CASE WHEN k = ANY({top}::text[]) THEN k ELSE '' END"
        inner = (
            f"SELECT {kind} AS s_kind, {value} AS s_value, b, u, x FROM ("  # noqa: S608 - fixed fragments, values bound
            f"SELECT {bucket} AS b, user_id AS u, {number} AS x, {key} AS k"
            f" FROM events WHERE {where}) e"
        )
        distinct = query.measure is Measure.UNIQUE_USERS
        text = _grouped(inner, by_bucket=True, distinct_users=distinct)
        rows = await conn.fetch(text, *sql.args)
        cells: dict[tuple[SeriesId, int], Aggregate] = {}
        totals: dict[SeriesId, Aggregate] = {}
        for r in rows:
            if query.breakdown is None:
                s = ALL
            elif r["s_kind"] == 0:
                s = SeriesId(SeriesKind.VALUE, r["s_value"])
            else:
                s = OTHER_SERIES if r["s_kind"] == 1 else NONE_SERIES
            if r["b"] is None:
                totals[s] = _aggregate(r)
            else:
                cells[(s, r["b"])] = _aggregate(r)
        if not distinct:
            for (s, _), a in cells.items():
                totals[s] = _combined(totals[s], a) if s in totals else a
        return cells, totals
