"""A user's erasure (UserErased log entry) across every metrics read model.

The check is exact at the table level: after the erasure, each of the tenant's read-model
tables equals what a projection of the same log with the user's events taken out
builds; no table of the schema holds the user's id; a replay of the real log (the
user's events, then the erasure) builds the same tables again.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from northstar.log.v1 import log_pb2
from northstar_metrics.adapters.projection import ActivityProjection
from northstar_runtime.codec import TYPE_HEADER as TYPE
from northstar_runtime.codec import (
    USER_ERASED,
    decode_batch,
    encode_batch,
    encode_erasure,
)
from northstar_runtime.projector import LogEntry

from ..reference import Ev
from .conftest import TENANTS, MetricsUnderTest
from .replay import applied, rebuilt_tables, snapshot_tables

ERASED = "erased-user-7f3a"
START_US = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1_000_000)
DAY_US = 86_400_000_000

# Every table the activity projection keeps, as rows of tenant $1 in a fixed order.
# Left out: quality_daily's duplicates / id_conflicts (retries counted when they came,
# kept by day: not the user's data, see adapters/erasure.py) and the all-zero rows the
# difference arrays may hold (they change no answer).
TABLES = {
    "events": "SELECT * FROM events WHERE tenant = $1 ORDER BY event_id",
    "events_seen": "SELECT * FROM events_seen WHERE tenant = $1 ORDER BY event_id",
    "user_days": "SELECT * FROM user_days WHERE tenant = $1 ORDER BY user_id, day",
    "org_success_days": "SELECT * FROM org_success_days WHERE tenant = $1 ORDER BY org_id, day",
    # DAU, WAU, MAU and MAO of every day the events can reach (the sums of the deltas).
    "active": "SELECT g::date, coalesce(sum(a.dau), 0), coalesce(sum(a.wau), 0),"
    " coalesce(sum(a.mau), 0), coalesce(sum(a.mao), 0)"
    " FROM generate_series('2026-03-01'::date, '2026-06-30'::date, '1 day') g"
    " LEFT JOIN active_deltas a ON a.tenant = $1 AND a.day <= g GROUP BY g ORDER BY g",
    "quality_daily": "SELECT day, accepted, skewed FROM quality_daily WHERE tenant = $1"
    " AND (accepted, skewed) <> (0, 0) ORDER BY day",
    "user_facts": "SELECT * FROM user_facts WHERE tenant = $1 ORDER BY user_id",
    "cohort_counts": "SELECT * FROM cohort_counts WHERE tenant = $1"
    " ORDER BY attr, value, kind, signup_day, x, y",
    "signup_days": "SELECT * FROM signup_days WHERE tenant = $1 ORDER BY day, referral",
    "run_days": "SELECT * FROM run_days WHERE tenant = $1 ORDER BY day, workflow_id",
    "run_day_totals": "SELECT * FROM run_day_totals WHERE tenant = $1 ORDER BY day",
    "event_days": "SELECT * FROM event_days WHERE tenant = $1 ORDER BY event, day",
    "workflow_spans": "SELECT * FROM workflow_spans WHERE tenant = $1 ORDER BY kind, y, x",
    "subscription_states": "SELECT * FROM subscription_states WHERE tenant = $1"
    " ORDER BY ts_us, event_id",
    "mrr_days": "SELECT * FROM mrr_days WHERE tenant = $1 ORDER BY day",
    "org_acquisition": "SELECT * FROM org_acquisition WHERE tenant = $1 ORDER BY org_id",
    "org_months": "SELECT * FROM org_months WHERE tenant = $1 ORDER BY month, org_id",
    "user_received_days": "SELECT * FROM user_received_days WHERE tenant = $1"
    " ORDER BY user_id, day",
    "received_spans": "SELECT * FROM received_spans WHERE tenant = $1 ORDER BY orphan, kind, y, x",
    "missing_fields_days": "SELECT * FROM missing_fields_days WHERE tenant = $1"
    " ORDER BY day, event, field",
}

_PROPS = {
    "user.signup": st.sampled_from(
        [
            {"plan": "pro", "channel": "seo"},
            {"plan": "free", "channel": "referral"},
            {"channel": "ads"},
            {},
        ]
    ),
    "integration.connected": st.just({}),
    "workflow.created": st.just({"workflow_id": "w1"}),
    "workflow.run": st.sampled_from(
        [
            {"status": "success", "workflow_id": "w1"},
            {"status": "success", "workflow_id": "w2"},
            {"status": "failed", "workflow_id": "w1"},
            {"status": "success"},
            {"status": "odd"},
        ]
    ),
    "subscription.started": st.sampled_from([{"mrr": 100}, {"mrr": 250}, {}]),
    "subscription.changed": st.sampled_from([{"mrr": 50}, {"mrr": 400}]),
    "subscription.canceled": st.just({}),
    "page.view": st.just({}),
}


@st.composite
def an_event(draw: st.DrawFn, user: str) -> Ev:
    """An event of `user` (or, for subscriptions, sometimes of its org alone)."""
    name = draw(st.sampled_from(sorted(_PROPS)))
    props = draw(_PROPS[name])
    acting = user
    if name.startswith("subscription.") and draw(st.booleans()):
        acting = ""  # the org's own event: it stays after the user's erasure
    # Ids by user, a few of them repeated: duplicates and id conflicts of one user.
    prefix = acting or "org"
    event_id = f"{prefix}-e{draw(st.integers(0, 14))}"
    ts = START_US + draw(st.integers(0, 40)) * DAY_US + draw(st.integers(0, DAY_US - 1))
    org = draw(st.sampled_from(["o1", "o2", ""]))
    return Ev(event_id, name, acting, org, ts, json.dumps(props))


def events_of(*users: str) -> st.SearchStrategy[list[Ev]]:
    """Several users' events interleaved in arrival order."""
    return st.lists(st.one_of(*(an_event(u) for u in users)), max_size=40)


async def erase(m: MetricsUnderTest, tenant: str, user: str, erased_at_us: int) -> int:
    """Append a user's erasure to the log, as ingest does; returns its position."""
    payload, headers = encode_erasure(
        log_pb2.UserErased(
            tenant=tenant,
            partition=0,
            user_id=user,
            erasure_id=f"erasure-{tenant}-{user}",
            erased_at_us=erased_at_us,
        )
    )
    subject = m.log.topology.events_subject(tenant, 0)
    stored = await m.log.append(subject, payload, headers=headers)
    return stored.seq


async def without_user(
    m: MetricsUnderTest, tenant: str, position: int, user: str, *, batch: int = 3
) -> dict[str, list]:
    """The tables a log without the user's events (and without erasures) builds."""
    pool = m.host.resources.pool
    assert pool is not None
    stream = m.log.topology.events_stream
    entries = []
    for seq in range(1, position + 1):
        msg = await m.log.js.get_msg(stream, seq)
        headers = dict(msg.headers or {})
        if headers.get(TYPE) == USER_ERASED:
            continue
        record = decode_batch(msg.data or b"", headers)
        kept = [e for e in record.events if e.user_id != user]
        data, headers = encode_batch(record.tenant, record.partition, kept)
        entries.append(LogEntry(seq, msg.subject, data, headers))
    projection = ActivityProjection()
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await projection.reset(conn)
            for i in range(0, len(entries), batch):
                await projection.apply(conn, entries[i : i + batch])
            return {t: [tuple(r) for r in await conn.fetch(q, tenant)] for t, q in TABLES.items()}
        finally:
            await tx.rollback()


async def tables_holding(m: MetricsUnderTest, text: str) -> dict[str, int]:
    """Rows of every table of the service's schema whose text form holds `text`."""
    pool = m.host.resources.pool
    assert pool is not None
    async with pool.acquire() as conn:
        names = [
            r[0]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
        ]
        found = {}
        for name in names:
            # A row's text form shows bytea as hex: search the id's hex too.
            n = await conn.fetchval(
                f'SELECT count(*) FROM "{name}" t WHERE strpos(t::text, $1) > 0'
                " OR strpos(t::text, $2) > 0",
                text,
                text.encode().hex(),
            )
            if n:
                found[name] = n
        return found


async def test_an_erasure_equals_a_log_that_never_held_the_user(
    metrics: MetricsUnderTest,
) -> None:
    loop = asyncio.get_running_loop()
    tenants = iter(TENANTS[20:110])

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        before=events_of(ERASED, "u-b", "u-c"),
        after=events_of(ERASED, "u-b"),
        back=events_of(ERASED, "u-c"),
        per_message=st.integers(1, 6),
        batch=st.integers(1, 4),
    )
    def check_one(
        before: list[Ev], after: list[Ev], back: list[Ev], per_message: int, batch: int
    ) -> None:
        tenant = next(tenants)

        async def check() -> None:
            if before:
                await metrics.append(tenant, before, per_message=per_message)
            # Erased at the end of the range: every event of `after` is erased history
            # retried (its timestamp is before), so it must be dropped.
            position = await erase(metrics, tenant, ERASED, START_US + 41 * DAY_US)
            if after:
                position = await metrics.append(tenant, after, per_message=per_message)
            if back:
                # The user came back (timestamps after the first erasure: a new history),
                # then was erased again: nothing of either history may be left.
                later = [
                    Ev(
                        e.event_id + "-back",
                        e.event,
                        e.user_id,
                        e.org_id,
                        e.timestamp_us + 42 * DAY_US,
                        e.properties,
                    )
                    for e in back
                ]
                await metrics.append(tenant, later, per_message=per_message)
                position = await erase(metrics, tenant, ERASED, START_US + 100 * DAY_US)
            await applied(metrics, position)
            live = await snapshot_tables(metrics, tenant, TABLES)
            assert await without_user(metrics, tenant, position, ERASED, batch=batch) == live
            assert await rebuilt_tables(metrics, tenant, position, TABLES, batch=batch) == live
            async with metrics.host.resources.pool.acquire() as conn:  # type: ignore[union-attr]
                for name, query in TABLES.items():
                    for row in await conn.fetch(query, tenant):
                        assert ERASED not in str(tuple(row)), name

        asyncio.run_coroutine_threadsafe(check(), loop).result(timeout=120)

    await asyncio.to_thread(check_one)


async def test_late_history_is_dropped_and_a_new_history_counts(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t111"
    user = "erased-user-late-1"
    signup = Ev("l-1", "user.signup", user, "o9", START_US, '{"channel":"seo"}')
    view = Ev("l-2", "page.view", user, "", START_US + DAY_US)
    await metrics.append(tenant, [signup, view])
    erased_at = START_US + 2 * DAY_US
    await erase(metrics, tenant, user, erased_at)
    retried = Ev("l-1", "user.signup", user, "o9", START_US, '{"channel":"seo"}')
    old = Ev("l-3", "page.view", user, "", erased_at)  # at the erasure time: dropped
    new = Ev("l-4", "page.view", user, "", erased_at + 1)  # after it: a new history
    position = await metrics.append(tenant, [retried, old, new], per_message=1)
    await applied(metrics, position)
    tables = await snapshot_tables(
        metrics,
        tenant,
        {
            "events": "SELECT event_id, ts_us FROM events WHERE tenant = $1 ORDER BY event_id",
            "users": "SELECT user_id, day FROM user_days WHERE tenant = $1",
            "facts": "SELECT user_id FROM user_facts WHERE tenant = $1",
            "acq": "SELECT org_id FROM org_acquisition WHERE tenant = $1",
        },
    )
    assert tables == {
        "events": [("l-4", erased_at + 1)],
        "users": [(user, datetime.fromtimestamp((erased_at + 1) / 1e6, tz=UTC).date())],
        "facts": [],
        "acq": [],
    }
    # The schema keeps the user's id only in its new history (the one event and its
    # activity day and receive day), never in the erasure record itself.
    found = await tables_holding(metrics, user)
    assert found == {"events": 1, "user_days": 1, "user_received_days": 1}
