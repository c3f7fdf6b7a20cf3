"""Trends aggregated in PostgreSQL from the `events` table.

Reading every event of a 90-day range into Python is seconds; PostgreSQL aggregates the
same rows, with exactly the definitions of domain/trend.py (whose in-memory `trend` is
the executable definition the tests hold both to), in one pass per phase. Phase 1 ranks
the breakdown values and yields every value's cells; phase 2 (a second pass) is needed
only when values beyond the top ones fold into `$other`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg

from northstar_metrics.adapters import columnar
from northstar_metrics.adapters.columnar import ColumnarEvents
from northstar_metrics.adapters.event_store import EventStore
from northstar_metrics.adapters.sql_filters import Params, filter_sql
from northstar_metrics.domain.filters import PropertyFilter
from northstar_metrics.domain.time import US_PER_DAY, range_us
from northstar_metrics.domain.trend import (
    ALL,
    BREAKDOWN_LIMIT,
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

# A row of the aggregates: an asyncpg record, or a dict of the columnar copy's columns.
_Row = asyncpg.Record | Mapping[str, Any]
_Cells = tuple[dict[tuple[SeriesId, int], Aggregate], dict[SeriesId, Aggregate]]

# The breakdown key as domain/trend.breakdown_key spells it: strings as is, numbers in plain
# decimal form (trim_scale: 1.0 -> 1, numeric text never uses exponents), bools as JSON.
# Lists and objects (sorted, compact JSON) are not spelled here: the query says whether it
# met one, and the caller then takes the in-memory path. False, never NULL: an absent
# property (NULL) and a JSON null ('null') must fall into one $none group.
_KEY = """CASE jsonb_typeof(properties -> {p})
    WHEN 'string' THEN properties ->> {p}
    WHEN 'number' THEN trim_scale((properties -> {p})::numeric)::text
    WHEN 'boolean' THEN properties ->> {p}
  END"""
_COMPLEX = "coalesce(jsonb_typeof(properties -> {p}) IN ('array', 'object'), false)"
# A CASE, not an AND: PostgreSQL may evaluate AND operands in any order, and a string
# cast to numeric is an error.
_NUMBER = (
    "CASE WHEN jsonb_typeof(properties -> {p}) = 'number' THEN (properties -> {p})::numeric END"
)


def _where(
    tenant: str, query: TrendQuery, filters: Sequence[PropertyFilter], sql: Params
) -> tuple[str, str]:
    """The WHERE clause of the matching events, and the bound start of the range."""
    since_us, until_us = range_us(query.first, query.last)
    since = sql.bind(since_us)
    clauses = [f"tenant = {sql.bind(tenant)}", f"ts_us >= {since}", f"ts_us < {sql.bind(until_us)}"]
    if query.event:
        clauses.append(f"event = {sql.bind(query.event)}")
    clauses.extend(filter_sql(f, sql) for f in filters)
    return " AND ".join(clauses), since


def _bucket(query: TrendQuery, since: str, sql: Params) -> str:
    """The bucket index of an event: its hour, or its day's bucket (week, month) by lookup."""
    if query.interval is Interval.HOUR:
        return f"((ts_us - {since}) / {US_PER_HOUR})::int"
    _, day_index = buckets(query.first, query.last, query.interval)
    return f"({sql.bind(day_index)}::int[])[((ts_us - {since}) / {US_PER_DAY})::int + 1]"


def _aggregate(row: _Row) -> Aggregate:
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


# What a trend without a numeric property aggregates of its numbers: nothing.
_NO_NUMBERS = (
    "0::bigint AS numbers, NULL::numeric AS total, NULL::numeric AS minimum,"
    " NULL::numeric AS maximum"
)


def _grouped(inner: str, *, by_bucket: bool, distinct_users: bool, numbers: bool) -> str:
    """Aggregates per series and bucket, plus per series over the range (bucket NULL).

    `inner` yields s_kind, s_value, b (bucket), u (user_id), x (the number or NULL).
    Without `numbers` (x is always NULL) their aggregates are constants, not computed.
    """
    series = "s_kind, s_value"
    if not distinct_users:
        # A plain GROUP BY (several times faster than grouping sets): without distinct
        # users, the range aggregate of a series is the sum of its buckets' (`_combined`).
        keys = f"{series}, b" if by_bucket else series
        bucket = "b" if by_bucket else "NULL::int AS b"
        of_numbers = (
            "count(x) AS numbers, sum(x) AS total, min(x) AS minimum, max(x) AS maximum"
            if numbers
            else _NO_NUMBERS
        )
        return (
            f"SELECT {series}, {bucket}, count(*) AS events, 0 AS users, {of_numbers}"  # noqa: S608 - fixed fragments, values bound
            f" FROM ({inner}) m GROUP BY {keys}"
        )
    # Distinct users by grouping on the user first (a hash aggregate), where
    # count(DISTINCT) would sort every group. Unique users never aggregate numbers.
    sets = f"({series}, b, u), ({series}, u)" if by_bucket else f"({series}, u)"
    bucket = "b" if by_bucket else "NULL::int AS b"
    return (
        f"SELECT {series}, b, sum(n)::bigint AS events,"  # noqa: S608 - fixed fragments, values bound
        f" count(*) FILTER (WHERE u <> '') AS users, {_NO_NUMBERS} FROM ("
        f"SELECT {series}, {bucket}, u, count(*) AS n"
        f" FROM ({inner}) m GROUP BY GROUPING SETS ({sets})"
        f") g GROUP BY {series}, b"
    )


class TrendStore:
    """Trends aggregated in PostgreSQL from the `events` table, per tenant."""

    def __init__(
        self, pool: asyncpg.Pool, events: EventStore, copy: ColumnarEvents | None = None
    ) -> None:
        self._pool = pool
        self._events = events
        self._copy = copy

    async def trend(
        self,
        tenant: str,
        query: TrendQuery,
        filters: Sequence[PropertyFilter],
        *,
        position: int = 0,
    ) -> Trend:
        """The trend of domain/trend.py, computed where the events are.

        Counts and unique users come from the columnar copy when it covers `position`
        and spells everything the query reads; the numeric measures (exact decimal sums
        and extremes) and every other case from PostgreSQL.
        """
        if self._copy is not None:
            answer = None
            if not query.measure.numeric and await self._copy.covering(position):
                answer = await ColumnarTrend(self._copy).trend(tenant, query, filters)
            self._copy.answered(
                "trend", source=columnar.ROWS if answer is not None else columnar.POSTGRESQL
            )
            if answer is not None:
                return answer
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
            # Every grouping here can hash; sorting 100k+ rows by text keys instead (what the
            # planner picks when its estimates are low, as without statistics) is 2-3x slower.
            await conn.execute("SELECT set_config('enable_sort', 'off', true)")
            if query.breakdown is None:
                series = [ALL]
            else:
                planned = await self._plan(conn, tenant, query, filters)
                if planned is None:
                    return await self._in_memory(tenant, query, filters)
                series, by_key = planned
                if OTHER_SERIES not in series:
                    # Every value is a series of its own: phase 1 already has the cells.
                    cells, totals = by_key
                    return assemble(query, series, cells, totals)
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
    ) -> tuple[list[SeriesId], _Cells] | None:
        """Phase 1: rank the breakdown values over the range; None if one is a list or object.

        Also every value's cells (its own series, or $none), so that phase 2 is needed only
        when some values fold into $other.
        """
        sql = Params()
        where, since = _where(tenant, query, filters, sql)
        bucket = _bucket(query, since, sql)
        p = sql.name(query.breakdown)
        number = _NUMBER.format(p=sql.name(query.property)) if query.property else "NULL::numeric"
        inner = (
            f"SELECT {_COMPLEX.format(p=p)} AS s_kind, {_KEY.format(p=p)} AS s_value,"  # noqa: S608 - fixed fragments, values bound
            f" {bucket} AS b, user_id AS u, {number} AS x FROM events WHERE {where}"
        )
        distinct = query.measure is Measure.UNIQUE_USERS
        cells = _grouped(
            inner, by_bucket=True, distinct_users=distinct, numbers=bool(query.property)
        )
        # Each value's range aggregate (rows with b NULL; without distinct users, the sum of
        # its buckets'), and its cells only when no value folds into $other: with more
        # values than a breakdown shows, the cells would be thrown away, and are many.
        ranked = (
            "SELECT * FROM c WHERE b IS NULL"
            if distinct
            else "SELECT s_kind, s_value, NULL::int AS b, sum(events)::bigint AS events,"
            " 0 AS users, sum(numbers)::bigint AS numbers, sum(total) AS total,"
            " min(minimum) AS minimum, max(maximum) AS maximum FROM c GROUP BY s_kind, s_value"
        )
        rows = await conn.fetch(_ranked_text(cells, ranked, sql.bind(BREAKDOWN_LIMIT)), *sql.args)
        return _planned(query, rows)

    async def _cells(
        self,
        conn: Connection,
        tenant: str,
        query: TrendQuery,
        filters: Sequence[PropertyFilter],
        series: list[SeriesId],
    ) -> _Cells:
        """Phase 2: each series per bucket and over the range."""
        sql = Params()
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
            # OFFSET 0: the key is computed once per event, not once per reference to k.
            f" FROM events WHERE {where} OFFSET 0) e"
        )
        distinct = query.measure is Measure.UNIQUE_USERS
        text = _grouped(
            inner, by_bucket=True, distinct_users=distinct, numbers=bool(query.property)
        )
        rows = await conn.fetch(text, *sql.args)
        return _collect(rows, lambda r: _series_of(query, r), sum_buckets=not distinct)


def _ranked_text(cells: str, ranked: str, limit: str) -> str:
    """Phase 1's statement: each value's range aggregate, and every value's cells only
    when no value folds into $other (with more, the cells would be thrown away)."""
    return (
        f"WITH c AS MATERIALIZED ({cells}), t AS ({ranked})"  # noqa: S608 - fixed fragments, values bound
        " SELECT * FROM t UNION ALL SELECT * FROM c WHERE b IS NOT NULL"
        f" AND (SELECT count(*) FROM t WHERE s_value IS NOT NULL) <= {limit}"
    )


def _planned(query: TrendQuery, rows: Sequence[_Row]) -> tuple[list[SeriesId], _Cells] | None:
    """The series phase 1's rows rank, with their cells; None if a value is a list or
    an object (s_kind true), which the SQL does not spell."""
    if any(r["s_kind"] for r in rows):
        return None
    by_key = _collect(
        rows,
        lambda r: NONE_SERIES if r["s_value"] is None else SeriesId(SeriesKind.VALUE, r["s_value"]),
        sum_buckets=False,
    )
    _, totals = by_key
    key_totals = {s.value: a for s, a in totals.items() if s.kind is SeriesKind.VALUE}
    return plan_series(key_totals, NONE_SERIES in totals, query.measure), by_key


def _series_of(query: TrendQuery, r: _Row) -> SeriesId:
    """Phase 2's series of a row: 0 a top value (or ALL), 1 $other, 2 $none."""
    if query.breakdown is None:
        return ALL
    if r["s_kind"] == 0:
        return SeriesId(SeriesKind.VALUE, r["s_value"])
    return OTHER_SERIES if r["s_kind"] == 1 else NONE_SERIES


def _collect(
    rows: Sequence[_Row],
    series_of: Callable[[_Row], SeriesId],
    *,
    sum_buckets: bool,
) -> _Cells:
    """Cells per (series, bucket) and totals per series (rows with b NULL, or with
    `sum_buckets` the sum of the series' cells)."""
    cells: dict[tuple[SeriesId, int], Aggregate] = {}
    totals: dict[SeriesId, Aggregate] = {}
    for r in rows:
        s = series_of(r)
        if r["b"] is None:
            totals[s] = _aggregate(r)
        else:
            cells[(s, r["b"])] = _aggregate(r)
    if sum_buckets:
        for (s, _), a in cells.items():
            totals[s] = _combined(totals[s], a) if s in totals else a
    return cells, totals


# The columnar copy's rows, named as the PostgreSQL statements name theirs.
_COPY_COLUMNS = ("s_kind", "s_value", "b", "events", "users")
# The breakdown key of a spelled value `v` (columnar.py): NULL ($none) for absent or null.
_COPY_KEY = "CASE WHEN v = 'z' THEN NULL ELSE substr(v, 2) END"
_NO_NUMBER_COLUMNS = {"numbers": 0, "total": None, "minimum": None, "maximum": None}


def _records(rows: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(_COPY_COLUMNS, r, strict=True), **_NO_NUMBER_COLUMNS) for r in rows]


def _copy_grouped(inner: str, *, distinct_users: bool) -> str:
    """Counts (and distinct users) per series and bucket, and per series (b NULL)."""
    series = "s_kind, s_value"
    if not distinct_users:
        return (
            f"SELECT {series}, b, count(*) AS events, 0 AS users"  # noqa: S608 - fixed fragments, values bound
            f" FROM ({inner}) m GROUP BY {series}, b"
        )
    return (
        f"SELECT {series}, b, count(*) AS events,"  # noqa: S608 - fixed fragments, values bound
        " count(DISTINCT u) FILTER (WHERE u <> '') AS users"
        f" FROM ({inner}) m GROUP BY GROUPING SETS (({series}, b), ({series}))"
    )


class ColumnarTrend:
    """Counts and unique users over the columnar copy, with trend_store's two phases."""

    def __init__(self, copy: ColumnarEvents) -> None:
        self._copy = copy

    def _scan(
        self, tenant: str, query: TrendQuery, filters: Sequence[PropertyFilter], sql: Params
    ) -> str | None:
        """The matching events' bucket and `v` (the breakdown's spelled value) as a
        subquery, or None when a filter value is not spelled."""
        since_us, until_us = range_us(query.first, query.last)
        since = sql.bind(since_us)
        clauses = [
            f"tenant = {sql.bind(tenant)}",
            f"ts_us >= {since}",
            f"ts_us < {sql.bind(until_us)}",
        ]
        if query.event:
            clauses.append(f"event = {sql.bind(query.event)}")
        columns = self._copy.columns
        conditions = columnar.filters_sql(filters, sql, columns)
        if conditions is None:
            return None
        clauses.extend(conditions)
        if query.interval is Interval.HOUR:
            bucket = f"((ts_us - {since}) // {US_PER_HOUR})::INTEGER"
        else:
            _, day_index = buckets(query.first, query.last, query.interval)
            day = f"((ts_us - {since}) // {US_PER_DAY})::INTEGER"
            bucket = f"({sql.bind(day_index)}::INTEGER[])[{day} + 1]"
        value = (
            columnar.property_sql(query.breakdown, sql, columns)
            if query.breakdown
            else "NULL::VARCHAR"
        )
        scan = (
            f"SELECT {bucket} AS b, user_id AS u, {value} AS v"  # noqa: S608 - fixed fragments, values bound
            f" FROM events WHERE {' AND '.join(clauses)}"
        )
        return scan

    async def trend(
        self, tenant: str, query: TrendQuery, filters: Sequence[PropertyFilter]
    ) -> Trend | None:
        """The trend, or None when the copy cannot answer it exactly (PostgreSQL will)."""
        if query.breakdown is None:
            series = [ALL]
        else:
            planned = await self._plan(tenant, query, filters)
            if planned is None:
                return None
            series, by_key = planned
            if OTHER_SERIES not in series:
                cells, totals = by_key
                return assemble(query, series, cells, totals)
        found = await self._cells(tenant, query, filters, series)
        if found is None:
            return None
        cells, totals = found
        return assemble(query, series, cells, totals)

    async def _plan(
        self, tenant: str, query: TrendQuery, filters: Sequence[PropertyFilter]
    ) -> tuple[list[SeriesId], _Cells] | None:
        sql = Params()
        scan = self._scan(tenant, query, filters, sql)
        if scan is None:
            return None
        # A list or an object is not spelled (`c`): the PostgreSQL path answers.
        inner = (
            "SELECT coalesce(v = 'c', false) AS s_kind,"  # noqa: S608 - fixed fragments, values bound
            f" {_COPY_KEY} AS s_value, b, u FROM ({scan}) e"
        )
        distinct = query.measure is Measure.UNIQUE_USERS
        cells = _copy_grouped(inner, distinct_users=distinct)
        ranked = (
            "SELECT * FROM c WHERE b IS NULL"
            if distinct
            else "SELECT s_kind, s_value, NULL::INTEGER AS b, sum(events)::BIGINT AS events,"
            " 0 AS users FROM c GROUP BY s_kind, s_value"
        )
        text = _ranked_text(cells, ranked, sql.bind(BREAKDOWN_LIMIT))
        return _planned(query, _records(await self._copy.fetch(text, sql.args)))

    async def _cells(
        self,
        tenant: str,
        query: TrendQuery,
        filters: Sequence[PropertyFilter],
        series: list[SeriesId],
    ) -> _Cells | None:
        sql = Params()
        scan = self._scan(tenant, query, filters, sql)
        if scan is None:
            return None
        if query.breakdown is None:
            kind, value = "0", "''"
        else:
            top = sql.bind([s.value for s in series if s.kind is SeriesKind.VALUE])
            # 0: a top value (or ALL), 1: $other, 2: $none.
            kind = (
                f"CASE WHEN k IS NULL THEN 2 WHEN list_contains({top}::VARCHAR[], k) THEN 0"
                " ELSE 1 END"
            )
            value = f"CASE WHEN list_contains({top}::VARCHAR[], k) THEN k ELSE '' END"
        inner = (
            f"SELECT {kind} AS s_kind, {value} AS s_value, b, u FROM ("  # noqa: S608 - fixed fragments, values bound
            f"SELECT {_COPY_KEY} AS k, b, u FROM ({scan}) e) k"
        )
        distinct = query.measure is Measure.UNIQUE_USERS
        text = _copy_grouped(inner, distinct_users=distinct)
        rows = _records(await self._copy.fetch(text, sql.args))
        return _collect(rows, lambda r: _series_of(query, r), sum_buckets=not distinct)
