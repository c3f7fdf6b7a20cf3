"""A columnar copy of the `events` read model in an embedded DuckDB, for the ad-hoc scans.

Funnel and Trend read every event of a range; PostgreSQL's rows with jsonb properties
make that seconds at 10M events, where a column store scans the few columns it needs
(BENCHMARKS.md has the measurements). This copy is another projection of the log, kept
per replica in memory and never written by anything else: it follows `events` (itself
rebuilt from the log), is built again from it when the process starts, and a pod that is
replaced loses nothing. PostgreSQL stays the store of record; whenever the copy cannot
answer exactly (still loading, behind the position the request must cover, a property
it does not spell), the stores fall back to their PostgreSQL path.

What it keeps of an event: tenant, name, user, timestamp, id, log position, and its
properties as a map from name to a *spelled* value: a one-letter JSON type, then the
value as domain/trend.breakdown_key and domain/filters spell it (`s` a string as is,
`n` a number in plain decimal form, `b` true/false, `z` null; `c` marks a list or an
object, which the copy does not spell: queries that meet one fall back). The spelling is
done by PostgreSQL, with the same expressions as trend_store's breakdown key.

Following `events` exactly, in one snapshot per sync:

- rows with a position above the copy's and at most the watermark (the lowest
  checkpoint of the activity projection's replicas: every row at or below it is
  committed) are appended;
- a new erasure (`erased_users`, by digest) deletes the erased user's rows the copy had;
- a dead letter replayed since (`dead_letters.replayed_at`) adds its rows, which were
  stored below the copy's position after the copy passed it;
- a watermark below the copy's position means the read model was rebuilt: the copy
  starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import structlog
from opentelemetry import metrics

from northstar_metrics.adapters.sql_filters import Params
from northstar_metrics.domain.filters import Operator, PropertyFilter, plain_number
from northstar_runtime.db import Connection
from northstar_runtime.erasure import user_digest

log = structlog.get_logger(__name__)
_meter = metrics.get_meter("northstar.metrics")
_answers = _meter.create_counter(
    "northstar_metrics_ad_hoc_answers",
    unit="1",
    description=(
        "Funnel and Trend answers, by what computed them (source): rows of the columnar"
        " copy, chains computed in the copy, or PostgreSQL"
    ),
)
# Where an answer came from: the copy's rows (the domain computed the answer from them),
# chains the copy computed itself, or PostgreSQL.
ROWS, CHAINS, POSTGRESQL = "columnar", "columnar_chains", "postgresql"
_copies: weakref.WeakSet[ColumnarEvents] = weakref.WeakSet()


def _observe_position(_options: object) -> Iterable[metrics.Observation]:
    for c in list(_copies):
        yield metrics.Observation(c.position, {"loaded": str(c.loaded).lower()})


_meter.create_observable_gauge(
    "northstar_metrics_columnar_position",
    callbacks=[_observe_position],
    unit="1",
    description="the events read model's position the columnar copy holds everything up to",
)

_CHECKPOINTS = "projection = 'activity' OR projection LIKE 'activity\\_p%'"
_WATERMARK_SQL = f"SELECT min(position) FROM projection_checkpoints WHERE {_CHECKPOINTS}"  # noqa: S608 - fixed fragment
_ERASURES_FINGERPRINT_SQL = (
    "SELECT count(*)::text || ':' || coalesce(sum(erased_at_us), 0)::text FROM erased_users"
)
_ERASURES_SQL = "SELECT tenant, user_digest, erased_at_us FROM erased_users"
_REPLAYED_FINGERPRINT_SQL = (
    "SELECT count(*) FROM dead_letters WHERE replayed_at IS NOT NULL AND ("  # noqa: S608 - fixed fragment
    f"{_CHECKPOINTS})"
)
_REPLAYED_SQL = (
    "SELECT position FROM dead_letters WHERE replayed_at IS NOT NULL AND ("  # noqa: S608 - fixed fragment
    f"{_CHECKPOINTS})"
)

# The spelled properties (module docstring), as JSON text for DuckDB's MAP cast.
SPELLED = """coalesce((SELECT jsonb_object_agg(key, CASE jsonb_typeof(value)
    WHEN 'string' THEN 's' || (value #>> '{}')
    WHEN 'number' THEN 'n' || trim_scale(value::numeric)::text
    WHEN 'boolean' THEN 'b' || (value #>> '{}')
    WHEN 'null' THEN 'z'
    ELSE 'c' END) FROM jsonb_each(properties)), '{}')::text"""
_ROWS = f"SELECT tenant, event, user_id, ts_us, event_id, position, {SPELLED} FROM events"  # noqa: S608 - fixed fragment
_RANGE_SQL = f"{_ROWS} WHERE position > $1 AND position <= $2"
_AT_SQL = f"{_ROWS} WHERE position = ANY($1::bigint[])"

_TABLE = """CREATE TABLE events (
    tenant VARCHAR NOT NULL, event VARCHAR NOT NULL, user_id VARCHAR NOT NULL,
    ts_us BIGINT NOT NULL, event_id VARCHAR NOT NULL, position BIGINT NOT NULL,
    m MAP(VARCHAR, VARCHAR) NOT NULL)"""
# PostgreSQL's CSV: "" is an empty string (a user_id may be one), never NULL.
_CSV = """SELECT tenant, event, user_id, ts_us, event_id, position,
    CAST(CAST(m AS JSON) AS MAP(VARCHAR, VARCHAR)) AS m
  FROM read_csv($1, header = false, quote = '"', escape = '"', allow_quoted_nulls = false,
    columns = {'tenant': 'VARCHAR', 'event': 'VARCHAR', 'user_id': 'VARCHAR',
               'ts_us': 'BIGINT', 'event_id': 'VARCHAR', 'position': 'BIGINT', 'm': 'VARCHAR'})"""
_BASE_COLUMNS = "tenant, event, user_id, ts_us, event_id, position, m"

# Compaction rewrites the table sorted by (tenant, event, ts_us), so that a query's name
# and time range skip most row groups by their min/max, and gives the most common
# properties a column of their own (a map lookup per row costs more than the scan).
# It runs when the copy is caught up and the rows appended since the last one reach a
# quarter of the table (at least COMPACT_MIN_ROWS): amortised, a few rewrites per row.
COMPACT_MIN_ROWS = 50_000
# A property is promoted when at least this share of the rows has it, up to MAX_COLUMNS.
PROMOTE_SHARE = 0.001
MAX_COLUMNS = 64


def _literal(text: str) -> str:
    """A DuckDB string literal (no backslash escapes in DuckDB's strings)."""
    return "'" + text.replace("'", "''") + "'"


def _promoted(columns: Mapping[str, str]) -> str:
    """The promoted columns computed from the map, for a SELECT list."""
    return "".join(f", m[{_literal(k)}] AS {c}" for k, c in columns.items())


# A load is done in steps of about this many rows, each its own spool file (a log
# position holds one batch: from one event to thousands).
LOAD_ROWS = 100_000
# The last position of a step: the one LOAD_ROWS rows on (by the index on position).
_STEP_SQL = (
    "SELECT position FROM events WHERE position > $1 AND position <= $2"
    " ORDER BY position OFFSET $3 LIMIT 1"
)
# A request waits for the copy to catch up only over this many positions (about one
# step at 50-event batches); beyond, the PostgreSQL path answers while the background
# sync closes the gap.
MAX_WAIT_POSITIONS = 2_000
SYNC_INTERVAL_SECONDS = 1.0


def spelled(value: object) -> str | None:
    """A filter value as the copy spells stored values; None for lists and objects."""
    if isinstance(value, str):
        return "s" + value
    if isinstance(value, bool):
        return "btrue" if value else "bfalse"
    if value is None:
        return "z"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return "n" + plain_number(value)
    return None


_COMPARE = {
    Operator.LESS_THAN: "<",
    Operator.LESS_THAN_OR_EQUAL: "<=",
    Operator.GREATER_THAN: ">",
    Operator.GREATER_THAN_OR_EQUAL: ">=",
}


def property_sql(name: str, sql: Params, columns: Mapping[str, str]) -> str:
    """A property's spelled value: its own column once promoted, else the map's entry."""
    column = columns.get(name)
    return column if column is not None else f"m[{sql.bind(name)}]"


def filter_sql(f: PropertyFilter, sql: Params, columns: Mapping[str, str]) -> str | None:
    """domain/filters.py's semantics over the spelled values; None if one is not spelled.

    Equality is equality of spellings: the type letter keeps 1 and "1" apart, the plain
    decimal form makes 1 and 1.0 one. The condition is never NULL.
    """
    value = property_sql(f.property, sql, columns)
    if f.operator in (Operator.EQUALS, Operator.NOT_EQUALS):
        text = spelled(f.values[0])
        if text is None:
            return None
        truth = "IS TRUE" if f.operator is Operator.EQUALS else "IS NOT TRUE"
        return f"({value} = {sql.bind(text)}) {truth}"
    if f.operator is Operator.IN:
        texts = [spelled(v) for v in f.values]
        if any(t is None for t in texts):
            return None
        return f"list_contains({sql.bind(texts)}::VARCHAR[], {value}) IS TRUE"
    # A stored number is an integer (up to 64 bits) or the shortest text of a double.
    # Integers compare exactly, as Python compares an int with a float: x < b is
    # x <= ceil(b) - 1, and so on, in HUGEINT. Other numbers read back as doubles are the
    # doubles stored, which compare with the bound as the domain's floats do.
    b = float(f.values[0])
    integer = sql.bind(_integer_threshold(f.operator, b))
    bound = sql.bind(b)
    op = _COMPARE[f.operator]
    int_op = ">=" if f.operator in (Operator.GREATER_THAN, Operator.GREATER_THAN_OR_EQUAL) else "<="
    return (
        f"(CASE WHEN starts_with({value}, 'n') THEN"
        f" CASE WHEN length({value}) <= 21 AND NOT contains({value}, '.')"
        f" THEN CAST(substr({value}, 2) AS HUGEINT) {int_op} {integer}::HUGEINT"
        f" ELSE CAST(substr({value}, 2) AS DOUBLE) {op} {bound} END END) IS TRUE"
    )


# Beyond every 64-bit integer, within HUGEINT.
_HUGE = 2**100


def _integer_threshold(operator: Operator, bound: float) -> int:
    """The integer t with: x op bound  <=>  x >= t (for > and >=) or x <= t (< and <=)."""
    if operator is Operator.LESS_THAN:
        t = math.ceil(bound) - 1
    elif operator is Operator.LESS_THAN_OR_EQUAL:
        t = math.floor(bound)
    elif operator is Operator.GREATER_THAN:
        t = math.floor(bound) + 1
    else:
        t = math.ceil(bound)
    return max(-_HUGE, min(_HUGE, t))


def filters_sql(
    filters: Sequence[PropertyFilter], sql: Params, columns: Mapping[str, str]
) -> list[str] | None:
    """Every filter's condition, or None when one cannot be evaluated here."""
    out = []
    for f in filters:
        text = filter_sql(f, sql, columns)
        if text is None:
            return None
        out.append(text)
    return out


@dataclass
class _State:
    """What the copy has followed of the read model."""

    position: int = 0
    erasures: set[tuple[str, bytes, int]] = field(default_factory=set)
    erasures_fingerprint: str = ""
    replayed: set[int] = field(default_factory=set)
    replayed_count: int = 0
    # Promoted properties and their columns: only ever added to (a statement built
    # against an older mapping stays valid), replaced whole, never changed in place.
    columns: Mapping[str, str] = field(default_factory=dict)
    rows: int = 0
    rows_at_compaction: int = 0


class ColumnarEvents:
    """The per-replica columnar copy of `events`, kept in step by a background loop."""

    name = "columnar-events"

    def __init__(
        self,
        pool: Any,
        *,
        memory_limit: str = "4GB",
        threads: int = 2,
        spool_dir: str | None = None,
        compact_min_rows: int = COMPACT_MIN_ROWS,
    ) -> None:
        self._pool = pool
        # Past the memory limit DuckDB spills to the spool directory instead of failing.
        spill = os.path.join(spool_dir or tempfile.gettempdir(), "northstar-columnar-spill")
        self._db = duckdb.connect(
            ":memory:",
            config={"threads": threads, "memory_limit": memory_limit, "temp_directory": spill},
        )
        self._db.execute(_TABLE)
        self._spool = spool_dir
        self._compact_min_rows = compact_min_rows
        self._state = _State()
        self._loaded = False
        self._compacting = False
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        # Answers per (query, source): what the tests and the counter see.
        self.answers: Counter[tuple[str, str]] = Counter()
        _copies.add(self)

    @property
    def position(self) -> int:
        """The read model's position the copy holds everything up to."""
        return self._state.position

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def columns(self) -> Mapping[str, str]:
        """The promoted properties' columns, for the statements the stores build."""
        return self._state.columns

    async def run(self) -> None:
        """Load the copy, then follow the read model until stopped."""
        while not self._stopping.is_set():
            behind = False
            try:
                behind = await self.sync()
            except Exception as e:  # the loop must outlive a failed sync
                log.warning("columnar copy sync failed; retrying", error=repr(e))
            if behind:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SYNC_INTERVAL_SECONDS)

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._db.close()

    async def covering(self, position: int) -> bool:
        """Whether the copy holds at least everything up to `position`, catching up
        first when the gap is small; False means: answer from PostgreSQL."""
        if not self._loaded:
            return False
        if self._state.position >= position:
            return True
        if position - self._state.position > MAX_WAIT_POSITIONS or self._compacting:
            return False
        await self.sync()
        return self._loaded and self._state.position >= position

    def answered(self, query: str, *, source: str) -> None:
        """Count an answer of `query` (funnel, trend) by `source` (ROWS, CHAINS, POSTGRESQL)."""
        self.answers[(query, source)] += 1
        _answers.add(1, {"query": query, "source": source})

    async def fetch(self, text: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
        """A query's rows, run in a worker thread (DuckDB releases the GIL)."""
        rows: list[tuple[Any, ...]] = await self._run(
            lambda c: c.execute(text, list(args)).fetchall()
        )
        return rows

    async def fetch_columns(self, text: str, args: Sequence[object]) -> dict[str, Any]:
        """A query's result as numpy arrays by column name (no Python object per row)."""
        return dict(await self._run(lambda c: c.execute(text, list(args)).fetchnumpy()))

    async def sync(self) -> bool:
        """One step towards the read model's watermark (module docstring), in one
        snapshot; True while the copy is still more than a step behind."""
        async with self._lock:
            started = time.monotonic()
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                watermark = int(await conn.fetchval(_WATERMARK_SQL) or 0)
                state = self._state
                if watermark < state.position:
                    log.warning(
                        "events read model rebuilt; columnar copy starts again",
                        position=state.position,
                        watermark=watermark,
                    )
                    await self._run(lambda c: c.execute(f"CREATE OR REPLACE {_TABLE[7:]}"))
                    self._state = state = _State()
                    self._loaded = False
                await self._follow_erasures(conn, state)
                await self._follow_replays(conn, state)
                upto = watermark
                if watermark > state.position:
                    step_end = await conn.fetchval(_STEP_SQL, state.position, watermark, LOAD_ROWS)
                    upto = int(step_end) if step_end is not None else watermark
                appended = 0
                if upto > state.position:
                    appended = await self._append(conn, _RANGE_SQL, [state.position, upto])
                    state.position = upto
            if upto < watermark:
                log.info(
                    "columnar copy loading",
                    position=upto,
                    watermark=watermark,
                    events=appended,
                    seconds=round(time.monotonic() - started, 2),
                )
                return True
            if state.rows - state.rows_at_compaction >= max(
                self._compact_min_rows, state.rows // 4
            ):
                await self._compact(state)
            if not self._loaded:
                self._loaded = True
                log.info("columnar copy caught up", position=state.position, events=state.rows)
            return False

    async def _compact(self, state: _State) -> None:
        """Rewrite the table sorted, with new columns for common properties (see above)."""
        started = time.monotonic()
        self._compacting = True
        try:
            counts = await self._run(
                lambda c: c.execute(
                    "SELECT k, count(*) AS n FROM (SELECT unnest(map_keys(m)) AS k FROM events)"
                    " GROUP BY k ORDER BY n DESC, k"
                ).fetchall()
            )
            rows = int(
                await self._run(lambda c: c.execute("SELECT count(*) FROM events").fetchone()[0])
            )
            columns = dict(state.columns)
            for key, n in counts:
                if len(columns) >= MAX_COLUMNS or n < PROMOTE_SHARE * rows:
                    break
                if key not in columns:
                    columns[key] = f"c{len(columns)}"
            rewrite = (
                f"CREATE OR REPLACE TABLE events_compacted AS SELECT {_BASE_COLUMNS}"  # noqa: S608 - keys as escaped literals
                f"{_promoted(columns)} FROM events ORDER BY tenant, event, ts_us"
            )

            def swap(c: Any) -> None:
                c.execute(rewrite)
                c.execute("BEGIN")
                c.execute("DROP TABLE events")
                c.execute("ALTER TABLE events_compacted RENAME TO events")
                c.execute("COMMIT")

            await self._run(swap)
            state.columns = columns
            state.rows = state.rows_at_compaction = rows
        finally:
            self._compacting = False
        log.info(
            "columnar copy compacted",
            events=rows,
            columns=len(columns),
            seconds=round(time.monotonic() - started, 2),
        )

    async def _run(self, work: Any) -> Any:
        """`work(cursor)` on a cursor of its own, in a worker thread."""

        def run() -> Any:
            cursor = self._db.cursor()
            try:
                return work(cursor)
            finally:
                cursor.close()

        return await asyncio.to_thread(run)

    async def _append(self, conn: Connection, text: str, args: list[object]) -> int:
        """Copy the rows of a statement from PostgreSQL (CSV through a spool file)."""
        fd, path = tempfile.mkstemp(prefix="northstar-columnar-", suffix=".csv", dir=self._spool)
        os.close(fd)
        try:
            await conn.copy_from_query(text, *args, output=Path(path), format="csv")
            if not await asyncio.to_thread(os.path.getsize, path):
                return 0
            insert = (
                f"INSERT INTO events BY NAME SELECT {_BASE_COLUMNS}"  # noqa: S608 - keys as escaped literals
                f"{_promoted(self._state.columns)} FROM ({_CSV})"
            )
            rows = await self._run(lambda c: c.execute(insert, [path]).fetchone())
            added = int(rows[0]) if rows else 0
            self._state.rows += added
            return added
        finally:
            os.unlink(path)

    async def _follow_erasures(self, conn: Connection, state: _State) -> None:
        fingerprint = str(await conn.fetchval(_ERASURES_FINGERPRINT_SQL))
        if fingerprint == state.erasures_fingerprint:
            return
        current = {(r[0], bytes(r[1]), int(r[2])) for r in await conn.fetch(_ERASURES_SQL)}
        new = current - state.erasures
        if new and state.position > 0:
            digests = {(t, d) for t, d, _ in new}
            users = await self._run(
                lambda c: c.execute(
                    "SELECT DISTINCT tenant, user_id FROM events WHERE user_id <> ''"
                ).fetchall()
            )
            erased = [(t, u) for t, u in users if (t, user_digest(t, u)) in digests]
            if erased:
                position = state.position

                def delete(c: Any) -> None:
                    c.execute(
                        "DELETE FROM events USING (SELECT unnest($1::VARCHAR[]) AS t,"
                        " unnest($2::VARCHAR[]) AS u) e"
                        " WHERE events.tenant = e.t AND events.user_id = e.u AND position <= $3",
                        [[t for t, _ in erased], [u for _, u in erased], position],
                    )

                await self._run(delete)
                log.info("columnar copy: erased users removed", users=len(erased))
        state.erasures = current
        state.erasures_fingerprint = fingerprint

    async def _follow_replays(self, conn: Connection, state: _State) -> None:
        count = int(await conn.fetchval(_REPLAYED_FINGERPRINT_SQL))
        if count == state.replayed_count:
            return
        current = {int(r[0]) for r in await conn.fetch(_REPLAYED_SQL)}
        # Rows above the copy's position come with the range that follows.
        late = sorted(p for p in current - state.replayed if p <= state.position)
        if late:
            # Idempotent: whatever the copy holds at those positions is replaced.
            await self._run(
                lambda c: c.execute("DELETE FROM events WHERE list_contains($1, position)", [late])
            )
            added = await self._append(conn, _AT_SQL, [late])
            log.info("columnar copy: replayed dead letters added", events=added)
        state.replayed = current
        state.replayed_count = count
