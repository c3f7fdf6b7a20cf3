"""DataQuality through gRPC equals the reference, with ingest's request summaries projected."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from northstar.log.v1 import log_pb2
from northstar.metrics.v1 import quality_pb2
from northstar_harness.eventually import assert_eventually
from northstar_metrics.adapters import quality_store
from northstar_metrics.adapters.ingest_requests import IngestRequestsProjection
from northstar_runtime.codec import encode_batch
from northstar_runtime.log import OutgoingMessage
from northstar_runtime.projector import LogEntry, Projector

from ..reference import Ev
from ..reference_series import Received, quality
from .conftest import MetricsUnderTest, auth

US = 1_000_000
HOUR = 3_600 * US
R1, R2, R3 = date(2026, 4, 10), date(2026, 4, 11), date(2026, 4, 12)


def at(day: date, seconds: float = 0) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * US + seconds * US)


@pytest.fixture
async def summaries(metrics: MetricsUnderTest) -> AsyncIterator[Projector]:
    """The ingest_requests projection on the DOMAIN stream, next to the service."""
    pool = metrics.host.resources.pool
    assert pool is not None
    topology = metrics.log.topology
    projector = Projector(
        log_client=metrics.log,
        pool=pool,
        service="metrics",
        projection=IngestRequestsProjection(),
        stream=topology.domain_stream,
        filter_subjects=[topology.domain_service_filter("ingest")],
        batch_size=50,
    )
    task = asyncio.create_task(projector.run())
    try:
        yield projector
    finally:
        projector.stop()
        await task


async def append_received(m: MetricsUnderTest, tenant: str, items: Sequence[Received]) -> int:
    """Append events as ingest stores them (receive time, sent_at), in order."""
    messages = []
    for i in range(0, len(items), 40):
        stored = [
            log_pb2.StoredEvent(
                event_id=r.ev.event_id,
                event=r.ev.event,
                user_id=r.ev.user_id,
                org_id=r.ev.org_id,
                timestamp_us=r.ev.timestamp_us,
                original_timestamp_us=r.ev.timestamp_us,
                received_at_us=r.received_at_us,
                sent_at_us=r.sent_at_us,
                properties_json=r.ev.properties.encode(),
            )
            for r in items[i : i + 40]
        ]
        payload, headers = encode_batch(tenant, 0, stored)
        messages.append(
            OutgoingMessage(m.log.topology.events_subject(tenant, 0), payload, headers=headers)
        )
    acks = await m.log.publish_many(messages, timeout=20)
    return max(a.seq for a in acks)


async def append_summary(
    m: MetricsUnderTest,
    tenant: str,
    *,
    received_at_us: int,
    sent_at_us: int = 0,
    duplicate: int = 0,
    rejections: Sequence[tuple[str, str, int]] = (),
) -> int:
    summary = log_pb2.RequestReceived(
        tenant=tenant,
        received_at_us=received_at_us,
        sent_at_us=sent_at_us,
        accepted=1,
        duplicate=duplicate,
        rejections=[log_pb2.RejectionCount(field=f, rule=r, count=n) for f, r, n in rejections],
    )
    stored = await m.log.append(
        m.log.topology.domain_subject("ingest", tenant, "received"),
        summary.SerializeToString(),
        headers={"Northstar-Type": "RequestReceived", "Northstar-Schema": "1"},
    )
    return stored.seq


def scenario() -> list[Received]:
    """Every data-quality case, in log order, received on R1..R3."""
    items: list[Received] = []

    def ev(event_id: str, event: str, user: str, org: str, ts: int, props: object = None) -> Ev:
        return Ev(event_id, event, user, org, ts, json.dumps(props or {}))

    # Signups: u1 in the period, u2 before it (received on R3, after: still not an orphan).
    items.append(Received(ev("s1", "user.signup", "u1", "o1", at(R1, 10)), at(R1, 20)))
    items.append(Received(ev("s2", "user.signup", "u2", "o1", at(R1, 30)), at(R3, 20)))
    # Activity of u1, u2 and of orphans u3, u4.
    for i, user in enumerate(["u1", "u2", "u3", "u4", "u3"]):
        items.append(Received(ev(f"v{i}", "page.view", user, "", at(R1, 100 + i)), at(R1, 200)))
    # Late event (30 days old, honest clock): not skew. Skewed requests: 2 h ahead and
    # 1 h + 1 us behind; exactly 1 h is not skew.
    items.append(
        Received(
            ev("late", "page.view", "u1", "", at(R1 - timedelta(days=30))), at(R2, 5), at(R2, 4)
        )
    )
    items.append(
        Received(ev("k1", "page.view", "u1", "", at(R2, 1)), at(R2, 10), at(R2, 10) + 2 * HOUR)
    )
    items.append(
        Received(ev("k2", "page.view", "u1", "", at(R2, 1)), at(R2, 10), at(R2, 10) - HOUR - 1)
    )
    items.append(
        Received(ev("k3", "page.view", "u1", "", at(R2, 1)), at(R2, 10), at(R2, 10) - HOUR)
    )
    # Incomplete well-known events (and a complete one of each kind).
    items += [
        Received(ev("m1", "workflow.run", "u1", "o1", at(R2, 50), {"status": "ok"}), at(R2, 60)),
        Received(ev("m2", "workflow.run", "u1", "", at(R2, 50), {"status": "success"}), at(R2, 60)),
        Received(
            ev("m3", "workflow.run", "u1", "o1", at(R2, 50), {"status": "failed"}), at(R2, 60)
        ),
        Received(
            ev("m4", "subscription.started", "", "o1", at(R2, 50), {"mrr": "100"}), at(R2, 60)
        ),
        Received(ev("m5", "subscription.changed", "", "o1", at(R2, 50), {"mrr": 100}), at(R2, 60)),
        Received(ev("m6", "subscription.canceled", "", "", at(R2, 50)), at(R2, 60)),
        Received(ev("m7", "marketing.spend", "", "", at(R2, 50), {"amount": 1.5}), at(R2, 60)),
        Received(ev("m8", "marketing.spend", "", "", at(R2, 50), {"amount": 15}), at(R2, 60)),
        Received(ev("m9", "user.signup", "", "", at(R2, 50)), at(R2, 60)),
        Received(ev("m10", "experiment.exposure", "", "", at(R2, 50)), at(R2, 60)),
        Received(ev("m11", "custom.thing", "", "", at(R2, 50)), at(R2, 60)),
        # events.md: org_id is required for every subscription.*, a name not listed too.
        Received(ev("m12", "subscription.renewed", "", "", at(R2, 50)), at(R2, 60)),
    ]
    # Duplicates: same content (retry) and other content (conflict), in and after the period.
    items.append(Received(ev("v0", "page.view", "u1", "", at(R1, 100)), at(R2, 70)))
    items.append(Received(ev("v1", "page.view", "u9", "", at(R1, 101)), at(R2, 70)))
    items.append(Received(ev("v2", "page.view", "u9", "", at(R1, 102)), at(R3, 70)))
    # A bot: 601 events within exactly 60 s; a busy user with 600.
    for i in range(600):
        items.append(
            Received(ev(f"b{i}", "page.view", "bot", "", at(R2, 1000 + i / 10)), at(R2, 2000))
        )
        items.append(
            Received(ev(f"n{i}", "page.view", "busy", "", at(R2, 1000 + i / 10)), at(R2, 2000))
        )
    items.append(Received(ev("b600", "page.view", "bot", "", at(R2, 1060)), at(R2, 2000)))
    return items


async def test_data_quality_equals_the_reference(
    metrics: MetricsUnderTest, summaries: Projector
) -> None:
    tenant = "t160"
    items = scenario()
    position = await append_received(metrics, tenant, items)
    await append_summary(
        metrics,
        tenant,
        received_at_us=at(R1, 500),
        sent_at_us=at(R1, 500) - 3 * HOUR,
        rejections=[("timestamp", "out_of_window", 2), ("event", "required", 1)],
    )
    await append_summary(metrics, tenant, received_at_us=at(R2, 500), duplicate=4)
    await append_summary(
        metrics,
        tenant,
        received_at_us=at(R2, 600),
        sent_at_us=at(R2, 600) + HOUR,
        rejections=[("event", "required", 5)],
    )
    domain_position = await append_summary(
        metrics,
        tenant,
        received_at_us=at(R3, 1),
        duplicate=7,
        rejections=[("event", "required", 9)],
    )
    request = quality_pb2.DataQualityRequest(from_date=R1.isoformat(), to_date=R2.isoformat())

    async def caught_up() -> tuple[quality_pb2.DataQualityResponse, int, int]:
        before = time.time_ns() // 1000
        answer = await metrics.stub.DataQuality(request, metadata=auth(tenant), timeout=20)
        after = time.time_ns() // 1000
        assert answer.log_position >= position
        assert answer.domain_log_position >= domain_position
        return answer, before, after

    answer, before, after = await assert_eventually(caught_up, timeout=60)
    ref = quality(items, R1, R2)

    assert answer.accepted == ref.accepted
    assert answer.duplicates == ref.duplicates + 4 == 2 + 4
    assert answer.id_conflicts == ref.id_conflicts == 1
    assert answer.rejected == 3 + 5
    assert [(r.field, r.rule, r.count) for r in answer.rejection_reasons] == [
        ("event", "required", 6),
        ("timestamp", "out_of_window", 2),
    ]
    assert answer.received == ref.accepted + 6 + 8
    assert answer.missing_fields == ref.missing_fields == 8
    assert {m.event_name: m.events for m in answer.missing_fields_by_event} == ref.missing_by_event
    by_event = {
        m.event_name: {f.field: f.events for f in m.fields} for m in answer.missing_fields_by_event
    }
    assert by_event == {
        "experiment.exposure": {"user_id": 1},
        "marketing.spend": {"properties.amount": 1},
        "subscription.canceled": {"org_id": 1},
        "subscription.renewed": {"org_id": 1},
        "subscription.started": {"properties.mrr": 1},
        "user.signup": {"user_id": 1},
        "workflow.run": {"org_id": 1, "properties.status": 1},
    }
    assert answer.active_users == ref.active_users == 6
    assert answer.orphan_activity == ref.orphan_activity == 4  # u3, u4, bot, busy
    assert answer.clock_skew == ref.clock_skew_accepted + 3 == 2 + 3
    assert answer.suspected_bots == len(ref.suspected_bots) == 1
    assert [(b.user_id, b.max_events_in_window) for b in answer.suspected_bot_users] == [
        ("bot", 601)
    ]
    first_copies = {r.ev.event_id: r for r in reversed(items)}.values()
    newest = max(r.received_at_us for r in first_copies)
    assert (before - newest) / 1e6 <= answer.freshness_seconds <= (after - newest) / 1e6

    # The score by the documented table.
    received = answer.received
    expected_penalties = [
        (quality_pb2.QUALITY_ISSUE_REJECTED, 8 / received, 25, 0.10),
        (quality_pb2.QUALITY_ISSUE_MISSING_FIELDS, 8 / answer.accepted, 20, 0.10),
        (quality_pb2.QUALITY_ISSUE_ID_CONFLICTS, 1 / received, 10, 0.01),
        (quality_pb2.QUALITY_ISSUE_DUPLICATES, 6 / received, 5, 0.20),
        (quality_pb2.QUALITY_ISSUE_CLOCK_SKEW, 5 / received, 10, 0.10),
        (quality_pb2.QUALITY_ISSUE_ORPHAN_ACTIVITY, 4 / 6, 15, 0.20),
        (quality_pb2.QUALITY_ISSUE_SUSPECTED_BOTS, 1 / 6, 15, 0.01),
    ]
    assert [(p.issue, p.share, p.weight, p.full_at) for p in answer.penalties] == [
        pytest.approx(e) for e in expected_penalties
    ]
    points = [w * min(1.0, s / f) for _, s, w, f in expected_penalties]
    assert [p.penalty for p in answer.penalties] == pytest.approx(points)
    assert answer.score == pytest.approx(max(0.0, 100 - sum(points)))

    # A period with nothing received has no score; the later day has its own numbers.
    empty = await metrics.stub.DataQuality(
        quality_pb2.DataQualityRequest(from_date="2026-05-01", to_date="2026-05-02"),
        metadata=auth(tenant),
        timeout=20,
    )
    assert (empty.received, empty.HasField("score")) == (0, False)
    later = await metrics.stub.DataQuality(
        quality_pb2.DataQualityRequest(from_date=R3.isoformat(), to_date=R3.isoformat()),
        metadata=auth(tenant),
        timeout=20,
    )
    ref3 = quality(items, R3, R3)
    assert (later.accepted, later.duplicates, later.id_conflicts, later.rejected) == (
        ref3.accepted,
        ref3.duplicates + 7,
        ref3.id_conflicts,
        9,
    )
    assert later.orphan_activity == ref3.orphan_activity == 0


async def test_bot_candidates_are_read_from_the_busy_days_index(
    metrics: MetricsUnderTest,
) -> None:
    # The query repeats the partial index's predicate as a literal: were they to differ,
    # PostgreSQL could not use the index and would read every user's days.
    pool = metrics.host.resources.pool
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(
            f"EXPLAIN {quality_store.BOT_CANDIDATES_SQL}",
            "t1",
            date(2026, 3, 1),
            date(2026, 3, 7),
            601,
            0,
            1,
        )
    plan = "\n".join(r[0] for r in rows)
    assert "user_days_busy" in plan, plan


async def test_suspected_bots_across_midnight_and_receive_days(
    metrics: MetricsUnderTest,
) -> None:
    """A 60-second window can straddle midnight; a user busy over many days is no bot."""
    tenant = "t162"
    items: list[Received] = []

    def views(user: str, start_us: int, n: int, step_us: int, received: date) -> None:
        for i in range(n):
            ts = start_us + i * step_us
            event = Ev(f"{user}-{ts}", "page.view", user, "", ts, "{}")
            items.append(Received(event, at(received, 7_200)))

    # 300 events in R1's last 30 s and 301 in R2's first 30 s (00:00:00 to 00:00:30):
    # 601 within exactly 60 s. "split" has the same times, its R1 half received on R1.
    views("midnight", at(R1, 86_370), 300, US // 10, R2)
    views("midnight", at(R2, 0), 301, US // 10, R2)
    views("split", at(R1, 86_370), 300, US // 10, R1)
    views("split", at(R2, 0), 301, US // 10, R2)
    # 100 events on each of R2's seven days up to it: 700 in the period, 200 at most on
    # two consecutive days.
    for d in range(7):
        views("spread", at(R2 - timedelta(days=d), 3_600), 100, US, R2)
    # 601 events on two consecutive days, one a minute: two at most within 60 s.
    views("steady", at(R1, 60_000), 601, 60 * US, R2)
    position = await append_received(metrics, tenant, items)

    async def bots(first: date, last: date) -> list[tuple[str, int]]:
        request = quality_pb2.DataQualityRequest(
            from_date=first.isoformat(), to_date=last.isoformat()
        )

        async def caught_up() -> quality_pb2.DataQualityResponse:
            answer = await metrics.stub.DataQuality(request, metadata=auth(tenant), timeout=20)
            assert answer.log_position >= position
            return answer

        answer = await assert_eventually(caught_up, timeout=60)
        got = [(b.user_id, b.max_events_in_window) for b in answer.suspected_bot_users]
        assert answer.suspected_bots == len(got)
        assert dict(got) == quality(items, first, last).suspected_bots
        return got

    assert await bots(R2, R2) == [("midnight", 601)]
    assert await bots(R1, R2) == [("midnight", 601), ("split", 601)]
    assert await bots(R1, R1) == []


async def test_the_projection_is_idempotent_and_resets(
    metrics: MetricsUnderTest, summaries: Projector
) -> None:
    tenant = "t161"
    seq = await append_summary(
        metrics, tenant, received_at_us=at(R1, 1), rejections=[("event", "too_long", 3)]
    )
    pool = metrics.host.resources.pool
    assert pool is not None

    async def applied() -> bool:
        return await summaries.checkpoint() >= seq

    await assert_eventually(applied, timeout=60)
    entry = await metrics.log.js.get_msg(metrics.log.topology.domain_stream, seq)
    projection = IngestRequestsProjection()
    again = LogEntry(seq, entry.subject, entry.data or b"", dict(entry.headers or {}))
    async with pool.acquire() as conn, conn.transaction():
        await projection.apply(conn, [again])
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT rejections::text FROM ingest_requests WHERE tenant = $1", tenant
        )
    assert [json.loads(r[0]) for r in rows] == [
        [{"field": "event", "rule": "too_long", "count": 3}]
    ]
