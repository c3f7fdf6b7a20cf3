"""The columnar copy of `events` follows the read model exactly: appends, erasures, replayed
dead letters and rebuilds, over the real PostgreSQL and log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import duckdb
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from northstar_harness.eventually import assert_eventually
from northstar_metrics.adapters import columnar
from northstar_metrics.adapters.columnar import SPELLED, ColumnarEvents, filter_sql
from northstar_metrics.adapters.projection import ActivityProjection
from northstar_metrics.adapters.sql_filters import Params
from northstar_metrics.domain.filters import Operator, PropertyFilter, filter_matches
from northstar_metrics.domain.trend import breakdown_key
from northstar_runtime.codec import encode_batch
from northstar_runtime.projector import LogEntry

from ..reference import Ev
from .conftest import MetricsUnderTest, stored
from .replay import applied
from .test_erasure import erase

DAY_US = 86_400 * 1_000_000
START_US = 1_772_409_600_000_000  # 2026-03-02


@pytest.fixture
async def copy(metrics: MetricsUnderTest) -> AsyncIterator[ColumnarEvents]:
    """A copy of the service's read model, synced by the test, step by step."""
    assert metrics.host.resources.pool is not None
    c = ColumnarEvents(
        metrics.host.resources.pool, memory_limit="256MB", threads=1, compact_min_rows=1
    )
    try:
        yield c
    finally:
        c.close()


async def pg_rows(m: MetricsUnderTest, tenant: str) -> list[tuple[object, ...]]:
    """The tenant's events in PostgreSQL, with each property spelled as the copy spells it."""
    pool = m.host.resources.pool
    assert pool is not None
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_id, event, user_id, ts_us, properties::text FROM events"
            " WHERE tenant = $1 ORDER BY event_id",
            tenant,
        )
    return [(r[0], r[1], r[2], r[3], _spelled(orjson.loads(r[4]))) for r in rows]


def _spelled(properties: dict[str, object]) -> dict[str, str]:
    """Spelled independently of the copy's SQL: the documented one-letter types."""
    out = {}
    for k, v in properties.items():
        if isinstance(v, bool):
            out[k] = "btrue" if v else "bfalse"
        elif v is None:
            out[k] = "z"
        elif isinstance(v, str):
            out[k] = "s" + v
        elif isinstance(v, int):
            out[k] = f"n{v}"
        elif isinstance(v, float):
            out[k] = "n" + (f"{v:.0f}" if v.is_integer() else repr(v))
        else:
            out[k] = "c"
    return out


async def copy_rows(c: ColumnarEvents, tenant: str) -> list[tuple[object, ...]]:
    rows = await c.fetch(
        "SELECT event_id, event, user_id, ts_us, m FROM events WHERE tenant = $1 ORDER BY event_id",
        [tenant],
    )
    return [(*r[:4], dict(r[4])) for r in rows]


async def test_appends_with_every_json_type_and_empty_users(
    metrics: MetricsUnderTest, copy: ColumnarEvents
) -> None:
    tenant = "t185"
    events = [
        Ev("a1", "page.view", "u1", "", START_US, '{"page": "home", "n": 1.0, "ok": true}'),
        Ev("a2", "page.view", "", "", START_US + 1, '{"page": "", "n": -0.5, "x": null}'),
        Ev("a3", "page.view", "u2", "", START_US + 2, '{"n": 100000000000000000000, "l": [1]}'),
        Ev("a4", "signup", "u2", "", START_US + 3, '{"o": {"a": 1}, "q": "say \\"hi\\",\\n"}'),
        Ev("a1", "page.view", "u1", "", START_US + 4, '{"page": "duplicate"}'),
    ]
    position = await metrics.append(tenant, events, per_message=2)
    await applied(metrics, position)
    assert not await copy.covering(position)  # not loaded yet: PostgreSQL answers
    await copy.sync()
    assert copy.position >= position
    assert await copy.covering(position)
    expected = await pg_rows(metrics, tenant)
    assert len(expected) == 4
    assert await copy_rows(copy, tenant) == expected
    assert expected[0][4] == {"page": "shome", "n": "n1", "ok": "btrue"}
    assert expected[1][2] == ""  # an empty user id stays a string, not NULL
    # Rewritten sorted, every property of these rows is common enough for a column.
    assert set(copy.columns) == {"page", "n", "ok", "x", "l", "o", "q"}
    got = await copy.fetch(
        f"SELECT event_id, {copy.columns['page']} FROM events WHERE tenant = $1 ORDER BY 1",
        [tenant],
    )
    assert got == [("a1", "shome"), ("a2", "s"), ("a3", None), ("a4", None)]

    more = [Ev("b1", "page.view", "u3", "", START_US + 5, '{"page": "late", "new": 1}')]
    position = await metrics.append(tenant, more)
    await applied(metrics, position)
    assert await copy.covering(position)  # a small gap: caught up on demand
    assert await copy_rows(copy, tenant) == await pg_rows(metrics, tenant)
    assert await copy.fetch(
        f"SELECT {copy.columns['page']}, m['new'] FROM events WHERE event_id = 'b1'", []
    ) == [("slate", "n1")]


async def test_a_large_load_goes_in_steps_of_rows_not_positions(
    metrics: MetricsUnderTest, copy: ColumnarEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = "t186"
    monkeypatch.setattr(columnar, "LOAD_ROWS", 3)
    # One position of 5 events, then five positions of one: a step ends past a position's
    # rows, never inside them.
    events = [
        Ev(f"e{i}", "page.view", f"u{i}", "", START_US + i, '{"page": "home"}') for i in range(10)
    ]
    await metrics.append(tenant, events[:5], per_message=5)
    position = await metrics.append(tenant, events[5:], per_message=1)
    await applied(metrics, position)
    expected = await pg_rows(metrics, tenant)
    held: list[int] = []
    behind = True
    while behind:
        behind = await copy.sync()
        rows = await copy_rows(copy, tenant)
        assert rows == expected[: len(rows)]  # whole positions, in log order
        held.append(len(rows))
    # Past row 3 of the first message: all its 5; past 3 more single-event positions: 9.
    assert held == [5, 9, 10]
    assert copy.position >= position
    assert await copy_rows(copy, tenant) == await pg_rows(metrics, tenant)


async def test_erasures_remove_the_users_rows_and_keep_a_new_history(
    metrics: MetricsUnderTest, copy: ColumnarEvents
) -> None:
    tenant = "t186"
    user, other = "erased-c-1", "kept-c-1"
    position = await metrics.append(
        tenant,
        [
            Ev("c1", "page.view", user, "", START_US, "{}"),
            Ev("c2", "page.view", other, "", START_US, "{}"),
            Ev("c3", "page.view", user, "", START_US + DAY_US, "{}"),
        ],
    )
    await applied(metrics, position)
    await copy.sync()
    assert [r[0] for r in await copy_rows(copy, tenant)] == ["c1", "c2", "c3"]

    erased_at = START_US + 2 * DAY_US
    await erase(metrics, tenant, user, erased_at)
    new = Ev("c4", "page.view", user, "", erased_at + 1, "{}")  # a new history
    position = await metrics.append(tenant, [new])
    await applied(metrics, position)
    await copy.sync()
    assert [r[0] for r in await copy_rows(copy, tenant)] == ["c2", "c4"]
    assert await copy_rows(copy, tenant) == await pg_rows(metrics, tenant)

    # The same user erased again later: the new history goes too.
    await erase(metrics, tenant, user, erased_at + DAY_US)
    position = await metrics.append(tenant, [Ev("c5", "page.view", other, "", erased_at, "{}")])
    await applied(metrics, position)
    await copy.sync()
    assert [r[0] for r in await copy_rows(copy, tenant)] == ["c2", "c5"]


async def test_a_replayed_dead_letter_below_the_copys_position_is_added(
    metrics: MetricsUnderTest, copy: ColumnarEvents
) -> None:
    tenant = "t187"
    # Position 1 stores nothing (an empty batch): the parked entry's place in the log.
    payload, headers = encode_batch(tenant, 0, [])
    parked = await metrics.log.append(
        metrics.log.topology.events_subject(tenant, 0), payload, headers=headers
    )
    assert parked.seq == 1
    position = await metrics.append(tenant, [Ev("d1", "page.view", "u1", "", START_US, "{}")])
    await applied(metrics, position)
    await copy.sync()
    # What Projector.replay_dead_letters leaves: the parked entry applied at its own
    # (lower) position after the checkpoint passed it, and marked replayed.
    late = Ev("d0", "page.view", "u2", "", START_US, '{"page": "parked"}')
    payload, headers = encode_batch(tenant, 0, [stored(late)])
    pool = metrics.host.resources.pool
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        await ActivityProjection().apply(conn, [LogEntry(1, "parked", payload, headers)])
        await conn.execute(
            "INSERT INTO dead_letters (projection, position, subject, data, headers, error,"
            " tries, replayed_at) VALUES ('activity', 1, 'parked', $1, '{}', 'fixed', 3, now())",
            payload,
        )
    await copy.sync()
    assert [r[0] for r in await copy_rows(copy, tenant)] == ["d0", "d1"]
    assert await copy_rows(copy, tenant) == await pg_rows(metrics, tenant)


async def test_a_rebuilt_read_model_makes_the_copy_start_again(
    metrics: MetricsUnderTest, copy: ColumnarEvents
) -> None:
    tenant = "t188"
    position = await metrics.append(tenant, [Ev("r1", "page.view", "u1", "", START_US, "{}")])
    await applied(metrics, position)
    await copy.sync()
    assert await copy_rows(copy, tenant) != []
    await metrics.host.parts.projectors[0].reset()  # type: ignore[union-attr]
    await copy.sync()
    assert copy.position == 0
    assert not await copy.covering(1)
    assert await copy_rows(copy, tenant) == await pg_rows(metrics, tenant) == []


async def test_a_reset_meeting_a_copy_step_waits_for_it_instead_of_deadlocking(
    metrics: MetricsUnderTest,
) -> None:
    # A copy step's snapshot reads erased_users, then events (columnar.sync). A reset
    # that locked events before erased_users would hold what the step is about to read
    # while waiting for what it holds: PostgreSQL would abort one of them.
    pool = metrics.host.resources.pool
    assert pool is not None
    async with pool.acquire() as step, pool.acquire() as reset:
        snapshot = step.transaction(isolation="repeatable_read", readonly=True)
        await snapshot.start()
        await step.fetchval("SELECT count(*) FROM erased_users")
        emptying = reset.transaction()
        await emptying.start()
        resetting = asyncio.create_task(ActivityProjection().reset(reset))
        pid = reset.get_server_pid()

        async def reset_waits() -> bool:
            waits = await step.fetchval(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid
            )
            return bool(waits)

        await assert_eventually(reset_waits, timeout=5)
        assert await asyncio.wait_for(step.fetchval("SELECT count(*) FROM events"), 5) >= 0
        await snapshot.commit()
        await asyncio.wait_for(resetting, 5)
        await emptying.rollback()


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.integers(2**53 - 2, 2**53 + 2)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "1", "true", "null", "a", "b"]),
    lambda inner: st.lists(inner, max_size=2),
    max_leaves=3,
)
_filter_values = (
    st.none()
    | st.booleans()
    | st.sampled_from(["", "1", "a"])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-3, 3).map(float)
)


async def test_spelled_filters_and_breakdown_keys_equal_the_domains(database_url: str) -> None:
    """PostgreSQL's spelling plus DuckDB's conditions decide as domain/filters.py does."""
    conn = await asyncpg.connect(database_url)
    db = duckdb.connect()
    try:

        @settings(max_examples=300, deadline=None)
        @given(
            value=_json_values,
            present=st.booleans(),
            operator=st.sampled_from(list(Operator)),
            bounds=st.lists(_filter_values, min_size=1, max_size=3),
        )
        def check(value: object, present: bool, operator: Operator, bounds: list[object]) -> None:
            properties = {"p": value} if present else {}
            # Stored as ingest stores it: orjson's text (floats in their shortest form).
            text = orjson.dumps(properties).decode()
            row = asyncio.run_coroutine_threadsafe(
                conn.fetchval(f"SELECT {SPELLED} FROM (SELECT $1::jsonb AS properties) e", text),
                loop,
            ).result(timeout=10)
            decoded = orjson.loads(text)
            if operator in (Operator.EQUALS, Operator.NOT_EQUALS) or not isinstance(
                bounds[0], float
            ):
                values = tuple(bounds[:1]) if operator is not Operator.IN else tuple(bounds)
            else:
                values = (bounds[0],)
            if operator not in (Operator.EQUALS, Operator.NOT_EQUALS, Operator.IN) and not (
                isinstance(values[0], float)
            ):
                return  # numeric comparisons take a number (validated at the API)
            f = PropertyFilter("p", operator, values)
            # From the map, and from a promoted column (c0).
            for columns in ({}, {"p": "c0"}):
                sql = Params()
                condition = filter_sql(f, sql, columns)
                assert condition is not None
                spelled_map = f"CAST(CAST({sql.bind(row)} AS JSON) AS MAP(VARCHAR, VARCHAR))"
                key = sql.bind("p")
                got = db.execute(
                    f"SELECT {condition}, CASE WHEN v = 'z' THEN NULL ELSE substr(v, 2) END,"
                    f" v = 'c' FROM (SELECT m, m[{key}] AS v, m[{key}] AS c0"
                    f" FROM (SELECT {spelled_map} AS m))",
                    sql.args,
                ).fetchone()
                assert got is not None
                assert got[0] is filter_matches(f, decoded)
                if got[2] is not True:  # lists and objects are left to PostgreSQL
                    assert got[1] == breakdown_key(decoded, "p")

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(check)
    finally:
        db.close()
        await conn.close()
