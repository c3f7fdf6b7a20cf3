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

From the columnar copy, a plain-greedy funnel (domain/funnel.plain_greedy: no
exclusions, steps naming distinct events) has its chains computed where the events are:
from every e1, one as-of join per step takes the earliest event of that step at or after
the previous one, within the window, and each user keeps the chain from the earliest e1
(by timestamp, then event_id) among the deepest. Only one row per user reaches Python.
"""

from __future__ import annotations

import asyncio
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
from northstar_metrics.domain.funnel import (
    Conversion,
    FunnelAnswer,
    FunnelEvent,
    FunnelQuery,
    answer,
    funnel_of_users,
    matched_events,
    measured,
    plain_greedy,
)

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

    async def funnel(self, tenant: str, query: FunnelQuery, *, position: int) -> FunnelAnswer:
        """The funnel of the tenant's events, covering at least `position`.

        Chains computed in the copy when the query is plain greedy, else each user's
        events from the copy or PostgreSQL and the domain's chain search.
        """
        copy = self._copy
        if copy is not None and plain_greedy(query) and await copy.covering(position):
            chains = await _copy_chains(copy, tenant, query)
            if chains is not None:
                copy.answered("funnel", source=columnar.CHAINS)
                # Pure CPU work: off the event loop, so other RPCs keep flowing.
                return await asyncio.to_thread(answer, query, chains)
        users = await self.user_events(tenant, query, position=position)
        return await asyncio.to_thread(funnel_of_users, users, query)

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
            self._copy.answered(
                "funnel", source=columnar.ROWS if found is not None else columnar.POSTGRESQL
            )
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


def _copy_chains_sql(
    tenant: str, query: FunnelQuery, columns: Mapping[str, str]
) -> tuple[str, list[object]] | None:
    """Each entering user's measured chain of a plain-greedy funnel (module docstring):
    u, depth d, the step times t1 … tn (0 past the depth) and e1's breakdown value v."""
    sql = Params()
    t, since = sql.bind(tenant), sql.bind(query.since_us)
    window = sql.bind(query.window_us)
    ends = [sql.bind(query.entry_until_us), *[sql.bind(query.until_us)] * (len(query.steps) - 1)]
    steps = []
    for m, end in zip(query.steps, ends, strict=True):
        conditions = columnar.filters_sql(m.filters, sql, columns)
        if conditions is None:
            return None
        steps.append(
            " AND ".join(
                [
                    f"tenant = {t}",
                    f"event = {sql.bind(m.event)}",
                    f"ts_us >= {since}",
                    f"ts_us < {end}",
                    "user_id <> ''",
                    *conditions,
                ]
            )
        )
    value = "NULL::VARCHAR"
    if query.breakdown_property:
        value = columnar.property_sql(query.breakdown_property, sql, columns)
    chains = [
        f"c1 AS (SELECT user_id, event_id, ts_us AS t1, {value} AS v FROM events WHERE {steps[0]})"  # noqa: S608 - fixed fragments, values bound
    ]
    for k in range(2, len(steps) + 1):
        chains.append(
            f"s{k} AS (SELECT user_id, ts_us FROM events WHERE {steps[k - 1]}),"  # noqa: S608 - fixed fragments, values bound
            f" c{k} AS (SELECT c.*, CASE WHEN s.ts_us <= c.t1 + {window} THEN s.ts_us END AS t{k}"
            f" FROM c{k - 1} c ASOF LEFT JOIN s{k} s"
            f" ON c.user_id = s.user_id AND s.ts_us >= c.t{k - 1})"
        )
    n = len(steps)
    # A chain stops at its first missing step, and every later one is missing too.
    depth = " + ".join(["1", *(f"(t{k} IS NOT NULL)::INTEGER" for k in range(2, n + 1))])
    times = ", ".join(f"coalesce(t{k}, 0) AS t{k}" for k in range(1, n + 1))
    text = (
        f"WITH {', '.join(chains)} SELECT user_id AS u, d, {times}, v FROM ("  # noqa: S608 - fixed fragments, values bound
        f"SELECT *, {depth} AS d FROM c{n}) QUALIFY row_number() OVER"
        " (PARTITION BY user_id ORDER BY d DESC, t1, event_id) = 1 ORDER BY user_id"
    )
    return text, sql.args


async def _copy_chains(
    copy: ColumnarEvents, tenant: str, query: FunnelQuery
) -> list[Conversion] | None:
    """Every entering user's measured chain from the copy, or None when it cannot answer."""
    statement = _copy_chains_sql(tenant, query, copy.columns)
    if statement is None:
        return None
    found = await copy.fetch_columns(*statement)
    users, depths = found["u"].tolist(), found["d"].tolist()
    times = [found[f"t{k}"].tolist() for k in range(1, len(query.steps) + 1)]
    # `v` is NULL throughout without a breakdown. A list or an object (`c`) is not
    # spelled: the other paths answer.
    values = found["v"].tolist()
    if "c" in values:
        return None
    name = query.breakdown_property
    return [
        measured(
            user, [step[i] for step in times[:depth]], _copy_properties(name, values[i]), query
        )
        for i, (user, depth) in enumerate(zip(users, depths, strict=True))
    ]
