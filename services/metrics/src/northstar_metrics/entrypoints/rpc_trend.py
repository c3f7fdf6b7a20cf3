"""The trend RPC of MetricsService: proto in, query, proto out; and the trend query.

TrendReadModel aggregates in PostgreSQL with exactly the definitions of domain/trend.py
(whose in-memory `trend` is the executable definition the tests hold both to). It is an
adapter and belongs in adapters/; it sits here only because of who may edit what.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import grpc
import orjson

from northstar.metrics.v1 import trend_pb2
from northstar_metrics.domain.filters import Operator, PropertyFilter, filters_from_proto
from northstar_metrics.domain.time import US_PER_DAY
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
    range_us,
    trend,
)
from northstar_metrics.entrypoints.deps import MetricsDeps
from northstar_metrics.entrypoints.validation import MAX_RANGE_DAYS, date_range
from northstar_runtime.db import Connection
from northstar_runtime.errors import FieldViolation, InvalidArgument
from northstar_runtime.grpc_server import current_principal

# Hour buckets over more than a leap year are more points than any chart can show.
MAX_HOUR_RANGE_DAYS = 366

_INTERVALS = {
    trend_pb2.TREND_INTERVAL_UNSPECIFIED: Interval.DAY,
    trend_pb2.TREND_INTERVAL_HOUR: Interval.HOUR,
    trend_pb2.TREND_INTERVAL_DAY: Interval.DAY,
    trend_pb2.TREND_INTERVAL_WEEK: Interval.WEEK,
    trend_pb2.TREND_INTERVAL_MONTH: Interval.MONTH,
}
_INTERVAL_PROTO = {
    Interval.HOUR: trend_pb2.TREND_INTERVAL_HOUR,
    Interval.DAY: trend_pb2.TREND_INTERVAL_DAY,
    Interval.WEEK: trend_pb2.TREND_INTERVAL_WEEK,
    Interval.MONTH: trend_pb2.TREND_INTERVAL_MONTH,
}
_MEASURES = {
    trend_pb2.TREND_MEASURE_UNSPECIFIED: Measure.EVENT_COUNT,
    trend_pb2.TREND_MEASURE_EVENT_COUNT: Measure.EVENT_COUNT,
    trend_pb2.TREND_MEASURE_UNIQUE_USERS: Measure.UNIQUE_USERS,
    trend_pb2.TREND_MEASURE_SUM: Measure.SUM,
    trend_pb2.TREND_MEASURE_AVERAGE: Measure.AVERAGE,
    trend_pb2.TREND_MEASURE_MIN: Measure.MIN,
    trend_pb2.TREND_MEASURE_MAX: Measure.MAX,
}
_MEASURE_PROTO = {
    Measure.EVENT_COUNT: trend_pb2.TREND_MEASURE_EVENT_COUNT,
    Measure.UNIQUE_USERS: trend_pb2.TREND_MEASURE_UNIQUE_USERS,
    Measure.SUM: trend_pb2.TREND_MEASURE_SUM,
    Measure.AVERAGE: trend_pb2.TREND_MEASURE_AVERAGE,
    Measure.MIN: trend_pb2.TREND_MEASURE_MIN,
    Measure.MAX: trend_pb2.TREND_MEASURE_MAX,
}
_KIND_PROTO = {
    SeriesKind.ALL: trend_pb2.TREND_SERIES_KIND_ALL,
    SeriesKind.VALUE: trend_pb2.TREND_SERIES_KIND_VALUE,
    SeriesKind.OTHER: trend_pb2.TREND_SERIES_KIND_OTHER,
    SeriesKind.NONE: trend_pb2.TREND_SERIES_KIND_NONE,
}


# --- The aggregation in PostgreSQL -------------------------------------------------------
#
# Reading every event of a 90-day range into Python is seconds; PostgreSQL aggregates the
# same rows, with the same definitions as domain/trend.py, in one pass per phase. Meant to
# live in adapters/ (the entrypoint's files are the ones this change could touch).

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


def _grouped(inner: str, *, by_bucket: bool, distinct_users: bool) -> str:
    """Aggregates per series and bucket, plus per series over the range (bucket NULL).

    `inner` yields s_kind, s_value, b (bucket), u (user_id), x (the number or NULL).
    """
    series = "s_kind, s_value"
    if not distinct_users:
        sets = f"({series}, b), ({series})" if by_bucket else f"({series})"
        bucket = "b" if by_bucket else "NULL::int AS b"
        return (
            f"SELECT {series}, {bucket}, count(*) AS events, 0 AS users, count(x) AS numbers,"  # noqa: S608 - fixed fragments, values bound
            " sum(x) AS total, min(x) AS minimum, max(x) AS maximum"
            f" FROM ({inner}) m GROUP BY GROUPING SETS ({sets})"
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


class TrendReadModel:
    """Trends aggregated in PostgreSQL from the `events` table, per tenant."""

    def __init__(self, deps: MetricsDeps) -> None:
        self._deps = deps

    async def trend(
        self, tenant: str, query: TrendQuery, filters: Sequence[PropertyFilter]
    ) -> Trend:
        """The trend of domain/trend.py, computed where the events are."""
        async with (
            self._deps.pool.acquire() as conn,
            conn.transaction(
                # One snapshot for both phases: an event projected in between must not
                # rank in one and be missing from the other.
                isolation="repeatable_read",
                readonly=True,
            ),
        ):
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
        rows = await self._deps.events.events(
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
        return cells, totals


def _invalid(field: str, description: str, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} {description}", reason=reason, violations=[FieldViolation(field, description)]
    )


def _query(request: trend_pb2.TrendRequest) -> TrendQuery:
    """The domain query of a request, or INVALID_ARGUMENT naming the field."""
    interval = _INTERVALS.get(request.interval)
    if interval is None:
        raise _invalid("interval", "must be one of the TrendInterval values", "UNKNOWN_INTERVAL")
    measure = _MEASURES.get(request.measure)
    if measure is None:
        raise _invalid("measure", "must be one of the TrendMeasure values", "UNKNOWN_MEASURE")
    if measure.numeric and not request.property:
        raise _invalid("property", "is required for SUM, AVERAGE, MIN and MAX", "MISSING_PROPERTY")
    if not measure.numeric and request.property:
        raise _invalid("property", "is only for SUM, AVERAGE, MIN and MAX", "UNEXPECTED_PROPERTY")
    max_days = MAX_HOUR_RANGE_DAYS if interval is Interval.HOUR else MAX_RANGE_DAYS
    first, last = date_range(request.from_date, request.to_date, max_days=max_days)
    return TrendQuery(
        first=first,
        last=last,
        interval=interval,
        measure=measure,
        event=request.event or None,
        property=request.property or None,
        breakdown=request.breakdown_property or None,
    )


def _value(value: float | None) -> dict[str, float]:
    return {} if value is None else {"value": value}


class TrendRpcs:
    """RPC methods mixed into MetricsServicer."""

    deps: MetricsDeps

    async def Trend(  # noqa: N802 - gRPC method name
        self, request: trend_pb2.TrendRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> trend_pb2.TrendResponse:
        """A measure per hour, day, week or month, optionally broken down by a property."""
        query = _query(request)
        filters = filters_from_proto(request.filters)  # INVALID_ARGUMENT naming filters[i]
        tenant = current_principal().tenant
        # Read the position first: the events read next include at least everything
        # up to it, so a client waiting for its own writes can trust log_position.
        position = await self.deps.events.position()
        result = await TrendReadModel(self.deps).trend(tenant, query, filters)
        response = trend_pb2.TrendResponse(
            interval=_INTERVAL_PROTO[query.interval],
            measure=_MEASURE_PROTO[query.measure],
            log_position=position,
        )
        for b in result.buckets:
            response.buckets.add(
                start=b.label, from_date=b.first.isoformat(), to_date=b.last.isoformat()
            )
        for s in result.series:
            series = response.series.add(kind=_KIND_PROTO[s.kind], breakdown_value=s.value)
            for b, point in zip(result.buckets, s.points, strict=True):
                series.points.add(bucket=b.label, **_value(point))
            if s.total is not None:
                series.total = s.total
        return response
