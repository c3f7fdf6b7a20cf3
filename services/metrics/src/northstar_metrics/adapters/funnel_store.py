"""The events a funnel reads, matched and grouped by user in PostgreSQL.

domain/funnel.py stays the one definition of the semantics; this store evaluates in SQL
only what the domain would compute first for every event, and leaves out events that
cannot change its answer:

- A user without a step-1 event (by name) whose day is in the entry range enters no
  chain, so only the events of users with one are read (a semi-join). The name alone
  is a superset of the users whose step-1 filters match: the domain still decides.
- Each event's step and exclusion masks are computed where it is stored, with the same
  filter semantics (sql_filters.py); an event matching neither is never sent.
- Each user's events come as arrays in (timestamp, event_id) order, event_id compared
  byte-wise (as Python compares code points): one row per user instead of per event.
- Properties are decoded only for step-1 events, and only when the breakdown reads them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import asyncpg
import orjson

from northstar_metrics.adapters import columnar
from northstar_metrics.adapters.columnar import ColumnarEvents
from northstar_metrics.adapters.sql_filters import Params, filter_sql
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.filters import EventMatcher
from northstar_metrics.domain.funnel import FunnelEvent, FunnelQuery, matched_events

# A mask is a bigint: exclusions beyond this many are rare enough for the rows path.
MAX_SQL_EXCLUSIONS = 63

_ROWS_SQL = """SELECT event_id, event, user_id, ts_us, properties::text
FROM events
WHERE tenant = $1 AND event = ANY($2::text[]) AND ts_us >= $3 AND ts_us < $4
  AND user_id <> ''
  AND user_id IN (
    SELECT user_id FROM events
    WHERE tenant = $1 AND event = $5 AND ts_us >= $3 AND ts_us < $6 AND user_id <> ''
  )"""

# The sort of a 90-day funnel's events outgrows the default and spills to disk.
WORK_MEM = "64MB"

_EMPTY: dict[str, object] = {}


def _bits(matchers: list[EventMatcher], filters: list[list[str]], sql: Params) -> str:
    """The bits of the matchers an event satisfies, as a bigint expression (PostgreSQL
    and DuckDB alike), given each matcher's filter conditions."""
    if not matchers:
        return "0::bigint"
    terms = []
    for bit, (m, conditions) in enumerate(zip(matchers, filters, strict=True)):
        condition = " AND ".join([f"event = {sql.bind(m.event)}", *conditions])
        terms.append(f"CASE WHEN {condition} THEN {1 << bit}::bigint ELSE 0 END")
    return " | ".join(terms)


def _mask(matchers: list[EventMatcher], sql: Params) -> str:
    """The bits of the matchers an event satisfies, over `events.properties`."""
    return _bits(matchers, [[filter_sql(f, sql) for f in m.filters] for m in matchers], sql)


def _user_events_sql(tenant: str, query: FunnelQuery) -> tuple[str, list[object]]:
    sql = Params()
    t, names = sql.bind(tenant), sql.bind(query.event_names)
    since, until = sql.bind(query.since_us), sql.bind(query.until_us)
    first, entry_until = sql.bind(query.steps[0].event), sql.bind(query.entry_until_us)
    steps = _mask(list(query.steps), sql)
    exclusions = _mask([x.matcher for x in query.exclusions], sql)
    order = 'ORDER BY ts_us, event_id COLLATE "C"'
    # Without a breakdown no properties are read at all.
    props, props_agg = "NULL::text", "NULL::text[]"
    if query.breakdown_property:
        props = f"CASE WHEN event = {first} THEN properties::text END"
        props_agg = f"array_agg(p {order})"
    text = (
        f"SELECT user_id, array_agg(ts_us {order}) AS ts, array_agg(s {order}) AS steps,"  # noqa: S608 - fixed fragments, values bound
        f" array_agg(x {order}) AS exclusions, {props_agg} AS props FROM ("
        f"SELECT user_id, event_id, ts_us, {steps} AS s, {exclusions} AS x, {props} AS p"
        f" FROM events WHERE tenant = {t} AND event = ANY({names}::text[])"
        f" AND ts_us >= {since} AND ts_us < {until} AND user_id <> ''"
        f" AND user_id IN (SELECT user_id FROM events WHERE tenant = {t} AND event = {first}"
        f" AND ts_us >= {since} AND ts_us < {entry_until} AND user_id <> '')"
        # Sorted once here, as every aggregate wants it: PostgreSQL then feeds them the
        # presorted rows instead of sorting each user's events four times.
        f' ORDER BY user_id, ts_us, event_id COLLATE "C") e WHERE s <> 0 OR x <> 0'
        " GROUP BY user_id"
    )
    return text, sql.args


def _properties(text: str | None) -> dict[str, object]:
    return orjson.loads(text) if text is not None else _EMPTY


class FunnelStore:
    """A tenant's events that can take part in a funnel, per query."""

    def __init__(self, pool: asyncpg.Pool, copy: ColumnarEvents | None = None) -> None:
        self._pool = pool
        self._copy = copy

    async def user_events(
        self, tenant: str, query: FunnelQuery, *, position: int = 0
    ) -> list[tuple[str, list[FunnelEvent]]]:
        """Each entering user's events matching a step or exclusion, ordered, masks computed.

        Exactly what domain/funnel.conversions derives from the rows, for user_conversions.
        From the columnar copy when it covers `position` and spells what the query reads.
        """
        if self._copy is not None:
            found = None
            if len(query.exclusions) <= MAX_SQL_EXCLUSIONS and await self._copy.covering(position):
                found = await _copy_user_events(self._copy, tenant, query)
            self._copy.answered("funnel", columnar=found is not None)
            if found is not None:
                return found
        if len(query.exclusions) > MAX_SQL_EXCLUSIONS:
            return await self._from_rows(tenant, query)
        text, args = _user_events_sql(tenant, query)
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute("SELECT set_config('work_mem', $1, true)", WORK_MEM)
            rows = await conn.fetch(text, *args)
        if not query.breakdown_property:
            return [(r[0], list(map(FunnelEvent, r[1], r[2], r[3], repeat(_EMPTY)))) for r in rows]
        return [
            (r[0], list(map(FunnelEvent, r[1], r[2], r[3], map(_properties, r[4])))) for r in rows
        ]

    async def _from_rows(
        self, tenant: str, query: FunnelQuery
    ) -> list[tuple[str, list[FunnelEvent]]]:
        """The same from every event row, matched in Python: for many exclusions."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                _ROWS_SQL,
                tenant,
                query.event_names,
                query.since_us,
                query.until_us,
                query.steps[0].event,
                query.entry_until_us,
            )
        events = (
            EventRow(
                event_id=r[0],
                event=r[1],
                user_id=r[2],
                org_id="",
                ts_us=r[3],
                properties=orjson.loads(r[4]),
            )
            for r in rows
        )
        return matched_events(events, query)


def _copy_mask(matchers: list[EventMatcher], sql: Params, columns: Mapping[str, str]) -> str | None:
    """_mask over the columnar copy; None when a filter value is not spelled there."""
    filters = [columnar.filters_sql(m.filters, sql, columns) for m in matchers]
    if any(f is None for f in filters):
        return None
    return _bits(matchers, [f for f in filters if f is not None], sql)


def _copy_user_events_sql(
    tenant: str, query: FunnelQuery, columns: Mapping[str, str]
) -> tuple[str, list[object]] | None:
    """_user_events_sql over the columnar copy (DuckDB compares strings byte-wise)."""
    sql = Params()
    t, names = sql.bind(tenant), sql.bind(query.event_names)
    since, until = sql.bind(query.since_us), sql.bind(query.until_us)
    first, entry_until = sql.bind(query.steps[0].event), sql.bind(query.entry_until_us)
    steps = _copy_mask(list(query.steps), sql, columns)
    exclusions = _copy_mask([x.matcher for x in query.exclusions], sql, columns)
    if steps is None or exclusions is None:
        return None
    value = "NULL::VARCHAR"
    if query.breakdown_property:
        breakdown = columnar.property_sql(query.breakdown_property, sql, columns)
        value = f"CASE WHEN event = {first} THEN {breakdown} END"
    # Flat rows, each user's together in (timestamp, event_id) order: DuckDB builds
    # per-user lists fast, but hands them to Python several times slower than columns.
    text = (
        "SELECT user_id AS u, ts_us AS t, s, x, v FROM ("  # noqa: S608 - fixed fragments, values bound
        f"SELECT user_id, event_id, ts_us, {steps} AS s, {exclusions} AS x, {value} AS v"
        f" FROM events WHERE tenant = {t} AND list_contains({names}::VARCHAR[], event)"
        f" AND ts_us >= {since} AND ts_us < {until} AND user_id <> ''"
        f" AND user_id IN (SELECT user_id FROM events WHERE tenant = {t} AND event = {first}"
        f" AND ts_us >= {since} AND ts_us < {entry_until} AND user_id <> '')"
        ") e WHERE s <> 0 OR x <> 0 ORDER BY user_id, ts_us, event_id"
    )
    return text, sql.args


def _decoded(text: str) -> Any:
    """A spelled value (adapters/columnar.py) as the JSON decoder would have read it."""
    kind, rest = text[0], text[1:]
    if kind == "s":
        return rest
    if kind == "b":
        return rest == "true"
    if kind == "n":
        return int(rest) if rest.lstrip("-").isdigit() else float(rest)
    return None  # z: null


def _copy_properties(name: str, value: str | None) -> dict[str, Any]:
    return _EMPTY if value is None else {name: _decoded(value)}


async def _copy_user_events(
    copy: ColumnarEvents, tenant: str, query: FunnelQuery
) -> list[tuple[str, list[FunnelEvent]]] | None:
    """FunnelStore.user_events from the copy, or None when the copy cannot answer."""
    statement = _copy_user_events_sql(tenant, query, copy.columns)
    if statement is None:
        return None
    found = await copy.fetch_columns(*statement)
    users = found["u"].tolist()
    if not users:
        return []
    ts, steps, exclusions = found["t"].tolist(), found["s"].tolist(), found["x"].tolist()
    name = query.breakdown_property
    properties: Sequence[Mapping[str, Any]]
    if name:
        values = found["v"].tolist()
        # A list or an object (`c`) is not spelled: the PostgreSQL path answers.
        if "c" in values:
            return None
        properties = [_copy_properties(name, v) for v in values]
    else:
        properties = [_EMPTY] * len(users)
    # Each user's rows are consecutive: cut where the user changes.
    starts = [0, *(i for i in range(1, len(users)) if users[i] != users[i - 1]), len(users)]
    return [
        (
            users[a],
            list(map(FunnelEvent, ts[a:b], steps[a:b], exclusions[a:b], properties[a:b])),
        )
        for a, b in itertools.pairwise(starts)
    ]
