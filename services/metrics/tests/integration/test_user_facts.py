"""The per-user facts read model: late earlier signups, and a rebuild equal to live."""

from __future__ import annotations

import json
import random
from datetime import date

from northstar.log.v1 import log_pb2
from northstar_metrics.adapters.projection import _Event
from northstar_metrics.adapters.user_facts import UserFacts

from ..reference import Ev
from ..reference_activation import activation
from ..reference_retention import retention
from .conftest import MetricsUnderTest
from .test_activation import settled
from .test_retention import at, d, matrix, matrix_tuples

FACTS_SQL = (
    "SELECT user_id, signup_ts_us, signup_event_id, signup_day, plan, channel, org_id,"
    " integration_connected_us, workflow_created_us, workflow_run_succeeded_us"
    " FROM user_facts WHERE tenant = $1 ORDER BY user_id"
)
COUNTS_SQL = (
    "SELECT attr, value, kind, signup_day, x, y, users FROM cohort_counts"
    " WHERE tenant = $1 ORDER BY attr, value, kind, signup_day, x, y"
)
OK = json.dumps({"status": "success"})
PRO = json.dumps({"plan": "pro", "channel": "seo"})
FREE = json.dumps({"plan": "free", "channel": "ads"})


async def test_a_late_earlier_signup_moves_the_user_and_its_stage_firsts(
    metrics: MetricsUnderTest,
) -> None:
    tenant = "t195"
    on_time = [
        Ev("s10", "user.signup", "u1", "o1", at(10), PRO),
        Ev("i5", "integration.connected", "u1", "", at(5)),  # before the signup: no stage
        Ev("c12", "workflow.created", "u1", "", at(12)),
        Ev("r4", "workflow.run", "u1", "o1", at(4), OK),
        Ev("a11", "page.viewed", "u1", "", at(11)),
    ]
    position = await metrics.append(tenant, on_time)
    args = {"granularity": "day", "periods": 3, "as_of": d(40)}
    before = await matrix(metrics, tenant, first=d(3), last=d(10), position=position, **args)
    rows, _ = matrix_tuples(before)
    assert [(r[0], r[2]) for r in rows if r[2]] == [(d(10).isoformat(), 1)]
    assert [c[:3] for c in rows[-1][3]] == [(0, 1, 1), (1, 1, 1), (2, 1, 1)]

    # An earlier signup of u1 arrives late (with another plan), then a later one that
    # changes nothing: u1 now signed up on day 3, its integration on day 5 counts.
    late = [
        Ev("s3", "user.signup", "u1", "o1", at(3), FREE),
        Ev("s20", "user.signup", "u1", "o9", at(20), PRO),
    ]
    events = [*on_time, *late]
    position = await metrics.append(tenant, late)
    after = await matrix(metrics, tenant, first=d(3), last=d(10), position=position, **args)
    expected = retention(events, first=d(3), last=d(10), **args)
    assert matrix_tuples(after) == expected
    rows, _ = matrix_tuples(after)
    assert [(r[0], r[2]) for r in rows if r[2]] == [(d(3).isoformat(), 1)]
    free = await matrix(
        metrics, tenant, first=d(3), last=d(3), segment=("plan", "free"), position=position, **args
    )
    assert [r.size for r in free.cohorts] == [1]

    overall, _ = await settled(metrics, tenant, position, d(3), d(3))
    assert overall == activation(events, d(3), d(3))[0]
    signups, _, _, stages = overall[:4]
    assert signups == 1
    day = 86_400.0
    # The run of day 4, before the old signup, is now u1's first successful run.
    assert stages == [(1, 2 * day, 2 * day), (1, 9 * day, 9 * day), (1, day, day)]
    pool = metrics.host.resources.pool
    assert pool is not None
    async with pool.acquire() as conn:
        row = await conn.fetchrow(FACTS_SQL, tenant)
    assert row is not None
    assert tuple(row) == ("u1", at(3), "s3", d(3), "free", "ads", "o1", at(5), at(12), at(4))


def _events(tenant: str, events: list[Ev]) -> list[_Event]:
    return [
        _Event(
            tenant,
            i,
            log_pb2.StoredEvent(
                event_id=e.event_id,
                event=e.event,
                user_id=e.user_id,
                org_id=e.org_id,
                timestamp_us=e.timestamp_us,
                properties_json=e.properties.encode(),
            ),
        )
        for i, e in enumerate(events)
    ]


async def test_a_rebuild_from_the_log_equals_the_live_rows(metrics: MetricsUnderTest) -> None:
    tenant = "t196"
    rng = random.Random(7)
    names = ["user.signup", "integration.connected", "workflow.created", "workflow.run"]
    events = []
    for i in range(300):
        name = rng.choice(names)
        props = rng.choice([PRO, FREE, "{}"]) if name == "user.signup" else OK
        if name == "workflow.run" and rng.random() < 0.3:
            props = json.dumps({"status": "failed"})
        user = f"u{rng.randrange(25)}"
        ts = at(rng.randrange(30), rng.choice([0, 0, 1, 3600]))
        events.append(Ev(f"e{i:03d}", name, user, f"o{rng.randrange(5)}", ts, props))
    position = await metrics.append(tenant, events, per_message=3)
    first, last = d(0), d(29)
    live, _ = await settled(metrics, tenant, position, first, last)
    assert live == activation(events, first, last)[0]
    pool = metrics.host.resources.pool
    assert pool is not None
    async with pool.acquire() as conn:
        rows = [tuple(r) for r in await conn.fetch(FACTS_SQL, tenant)]
        counts = [tuple(r) for r in await conn.fetch(COUNTS_SQL, tenant)]
        assert len(rows) == len({e.user_id for e in events if e.event == "user.signup"})
        sizes = sum(r[-1] for r in counts if r[:3] == ("", "", 0) and r[5] == date.max)
        assert sizes == len(rows)
        # Replaying the log rebuilds the same rows: all at once, and one event at a
        # time in reverse order (every event late), each inside a rolled-back transaction.
        for batches in ([events], [[e] for e in reversed(events)]):
            tr = conn.transaction()
            await tr.start()
            try:
                for table in ("user_facts", "cohort_counts", "user_days"):
                    await conn.execute(f"DELETE FROM {table} WHERE tenant = $1", tenant)
                for batch in batches:
                    await UserFacts().apply(conn, _events(tenant, batch))
                    # What the projection does next: store the batch's activity days.
                    await conn.execute(
                        "INSERT INTO user_days SELECT $1, e.user_id, e.day"
                        " FROM unnest($2::text[], $3::date[]) AS e(user_id, day)"
                        " ON CONFLICT DO NOTHING",
                        tenant,
                        [e.user_id for e in batch],
                        [e.day for e in batch],
                    )
                assert [tuple(r) for r in await conn.fetch(FACTS_SQL, tenant)] == rows
                assert [tuple(r) for r in await conn.fetch(COUNTS_SQL, tenant)] == counts
            finally:
                await tr.rollback()
