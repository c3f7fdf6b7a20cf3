"""The dispatcher against real receivers, PostgreSQL and NATS: retries, channels, restarts,
replicas. Outbox rows are written here as the evaluator writes them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import grpc
import orjson
import pytest

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.adapters.delivery_store import DeliveryStore
from northstar_alerts.domain.notice import Notice
from northstar_alerts.domain.rules import Channels
from northstar_harness.eventually import assert_eventually
from northstar_harness.receivers import HttpReceiver, Route, SmtpReceiver
from northstar_runtime.db import create_pool
from northstar_runtime.topology import Topology

from .conftest import OTHER_ADMIN_KEY, READ_KEY, AlertsHosts, auth, pool_of, violated_fields

_times = itertools.count(1)


@pytest.fixture
async def http() -> AsyncIterator[HttpReceiver]:
    receiver = HttpReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def notice(channels: Channels, *, rule_id: str = "dau-low", kind: str = "firing") -> Notice:
    return Notice(
        tenant="acme",
        rule_id=rule_id,
        rule_name="DAU low",
        severity="critical",
        kind=kind,
        at=1_764_583_200.0 + next(_times),
        starts_at=1_764_579_600.0,
        value=42.0,
        threshold=50.0,
        labels={"team": "growth"},
        channels=channels,
        series="metric dau",
        acked_by="ana",
        ack_comment="on it",
    )


async def write_outbox(pool: asyncpg.Pool, n: Notice) -> int:
    """Insert the outbox row the evaluator would write; its notification id."""
    return int(
        await pool.fetchval(
            "INSERT INTO notification_outbox"
            " (tenant, rule_id, severity, kind, dedup_key, due_at, notice)"
            " VALUES ($1, $2, $3, $4, $5, now(), $6::jsonb) RETURNING notification_id",
            n.tenant,
            n.rule_id,
            n.severity,
            n.kind,
            n.dedup_key,
            orjson.dumps(n.to_json()).decode(),
        )
    )


async def deliveries(pool: asyncpg.Pool, notification_id: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT delivery_id, channel, target, status, attempts, last_error, delivered_at"
        " FROM deliveries WHERE notification_id = $1 ORDER BY delivery_id",
        notification_id,
    )
    return [dict(r) for r in rows]


async def attempts(pool: asyncpg.Pool, delivery_id: int) -> list[tuple[str, int | None, str]]:
    rows = await pool.fetch(
        "SELECT outcome, http_status, smtp_reply FROM delivery_attempts"
        " WHERE delivery_id = $1 ORDER BY attempt",
        delivery_id,
    )
    return [(r["outcome"], r["http_status"], r["smtp_reply"]) for r in rows]


async def settled(pool: asyncpg.Pool, notification_id: int) -> list[dict[str, Any]]:
    """The notification's deliveries once none is pending."""

    async def done() -> list[dict[str, Any]]:
        rows = await deliveries(pool, notification_id)
        assert rows and all(r["status"] != "pending" for r in rows), rows
        return rows

    return await assert_eventually(done, timeout=15)


async def test_a_webhook_failing_twice_is_delivered_once_on_the_third_attempt(
    alerts_hosts: AlertsHosts, http: HttpReceiver
) -> None:
    host = await alerts_hosts.start()
    pool = pool_of(host)
    url = http.url("/flaky", Route(fail=2))
    nid = await write_outbox(pool, notice(Channels(webhooks=(url,))))
    [d] = await settled(pool, nid)
    assert (d["status"], d["attempts"], d["channel"]) == ("delivered", 3, "webhook")
    assert d["delivered_at"] is not None
    assert await attempts(pool, d["delivery_id"]) == [
        ("retry", 500, ""),
        ("retry", 500, ""),
        ("delivered", 200, ""),
    ]
    seen = http.seen("/flaky")
    assert [r.key for r in seen] == [str(d["delivery_id"])] * 3
    assert [r.headers["X-Northstar-Attempt"] for r in seen] == ["1", "2", "3"]
    body = seen[-1].body
    assert (body["version"], body["status"], body["groupKey"]) == (
        "4",
        "firing",
        "acme/dau-low/critical",
    )
    assert body["alerts"][0]["annotations"]["acknowledged_by"] == "ana"


async def test_slack_and_email_are_delivered_with_their_formats(
    alerts_hosts: AlertsHosts, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    host = await alerts_hosts.start(
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_security="none",
        smtp_from="alerts@northstar.test",
        alerts_external_url="https://northstar.test",
    )
    pool = pool_of(host)
    slack = http.url("/services/T0/B0/xyz")
    nid = await write_outbox(
        pool,
        notice(
            Channels(slack=(slack,), emails=("oncall@acme.test", "cto@acme.test")),
            kind="resolved",
        ),
    )
    rows = await settled(pool, nid)
    assert [(r["channel"], r["target"], r["status"]) for r in rows] == [
        ("slack", slack, "delivered"),
        ("email", "oncall@acme.test", "delivered"),
        ("email", "cto@acme.test", "delivered"),
    ]
    [(outcome, status, reply)] = await attempts(pool, rows[1]["delivery_id"])
    assert (outcome, status) == ("delivered", None) and reply.startswith("250")
    [message] = http.seen("/services/T0/B0/xyz")
    assert message.body["text"].startswith("[RESOLVED:critical] DAU low: value 42")
    assert [b["type"] for b in message.body["blocks"]] == ["header", "section", "context"]
    assert sorted(to for to, _ in smtp.messages) == [["cto@acme.test"], ["oncall@acme.test"]]
    for to, mail in smtp.messages:
        assert mail["To"] == to[0] and mail["From"] == "alerts@northstar.test"
        assert mail["Subject"] == "[RESOLVED:critical] DAU low"
        assert mail.get_content_type() == "multipart/alternative"
        parts = {p.get_content_type(): p.get_content() for p in mail.iter_parts()}  # type: ignore[attr-defined]
        assert set(parts) == {"text/plain", "text/html"}
        for part in parts.values():
            assert "42" in part and "50" in part and "ana: on it" in part
            assert "https://northstar.test/alerts/rules/dau-low" in part


async def test_refusals_and_spent_attempts_fail_the_delivery(
    alerts_hosts: AlertsHosts, http: HttpReceiver
) -> None:
    host = await alerts_hosts.start(delivery_max_attempts=2)
    pool = pool_of(host)
    gone, down = http.url("/gone", Route(status=404)), http.url("/down", Route(fail=100))
    nid = await write_outbox(pool, notice(Channels(webhooks=(gone, down))))
    refused, exhausted = await settled(pool, nid)
    assert (refused["status"], refused["attempts"]) == ("failed", 1)
    assert await attempts(pool, refused["delivery_id"]) == [("failed", 404, "")]
    assert (exhausted["status"], exhausted["attempts"]) == ("failed", 2)
    assert exhausted["last_error"] == "try later"
    assert await attempts(pool, exhausted["delivery_id"]) == [
        ("retry", 500, ""),
        ("failed", 500, ""),
    ]


async def test_email_without_an_smtp_server_fails_at_once(alerts_hosts: AlertsHosts) -> None:
    host = await alerts_hosts.start()
    pool = pool_of(host)
    [d] = await settled(pool, await write_outbox(pool, notice(Channels(emails=("a@b.test",)))))
    assert (d["status"], d["attempts"], d["last_error"]) == (
        "failed",
        1,
        "no SMTP server configured",
    )


async def test_a_slow_target_does_not_hold_back_the_others(
    alerts_hosts: AlertsHosts, http: HttpReceiver
) -> None:
    host = await alerts_hosts.start(delivery_concurrency=4, delivery_per_target=1)
    pool = pool_of(host)
    slow = http.url("/slow", Route(delay=8.0))
    for _ in range(3):
        await write_outbox(pool, notice(Channels(webhooks=(slow,))))
    await assert_eventually(lambda: http.seen("/slow"), timeout=10)
    fast = http.url("/fast")
    nid = await write_outbox(pool, notice(Channels(webhooks=(fast,))))
    # Delivered while the slow target still holds its request (8 s).
    [d] = await settled(pool, nid)
    assert d["status"] == "delivered"
    # One send in flight to the slow target at a time: the other two wait their turn.
    assert len(http.seen("/slow")) == 1


async def test_a_restart_mid_delivery_loses_nothing_and_repeats_no_confirmed_one(
    alerts_hosts: AlertsHosts, http: HttpReceiver
) -> None:
    first = await alerts_hosts.start(delivery_drain_seconds=0.2)
    pool = pool_of(first)
    confirmed = await write_outbox(pool, notice(Channels(webhooks=(http.url("/ok"),))))
    [done] = await settled(pool, confirmed)
    # The receiver holds the next request 5 s the first time: the host stops meanwhile.
    slow = http.url("/slow-once", Route(delay=5.0, slow_first=1))
    unconfirmed = await write_outbox(pool, notice(Channels(webhooks=(slow,))))
    await assert_eventually(lambda: http.seen("/slow-once"), timeout=10)
    await alerts_hosts.stop(first)
    second = await alerts_hosts.start()
    [d] = await settled(pool_of(second), unconfirmed)
    assert (d["status"], d["attempts"]) == ("delivered", 2)
    outcomes = [a[0] for a in await attempts(pool_of(second), d["delivery_id"])]
    assert outcomes == ["interrupted", "delivered"]
    # The unconfirmed one was sent again with its key; the confirmed one never again.
    assert [r.key for r in http.seen("/slow-once")] == [str(d["delivery_id"])] * 2
    assert [r.key for r in http.seen("/ok")] == [str(done["delivery_id"])]


async def test_a_delivery_claimed_by_a_dead_dispatcher_is_sent_after_its_lease(
    alerts_hosts: AlertsHosts, http: HttpReceiver, database_url: str, namespace: str
) -> None:
    # The schema, with no dispatcher running: a started host, stopped.
    await alerts_hosts.stop(await alerts_hosts.start())
    pool = await create_pool(database_url, Topology(namespace).schema("alerts"))
    try:
        nid = await write_outbox(pool, notice(Channels(webhooks=(http.url("/ok"),))))
        # A dispatcher that claims and dies: its attempt stays in flight, its lease runs out.
        [claimed] = await DeliveryStore(pool).claim(limit=10, busy={}, per_target=1, lease_s=0.5)
    finally:
        await pool.close()
    assert claimed.notification_id == nid and claimed.attempt == 1
    survivor = await alerts_hosts.start()
    [d] = await settled(pool_of(survivor), nid)
    assert (d["status"], d["attempts"]) == ("delivered", 2)
    assert [a[0] for a in await attempts(pool_of(survivor), d["delivery_id"])] == [
        "unknown",
        "delivered",
    ]
    assert len(http.seen("/ok")) == 1


async def test_two_dispatchers_on_one_schema_send_each_delivery_once(
    alerts_hosts: AlertsHosts, http: HttpReceiver
) -> None:
    a = await alerts_hosts.start(delivery_concurrency=3)
    await alerts_hosts.start(delivery_concurrency=3)
    pool = pool_of(a)
    targets = tuple(http.url(f"/hook-{i}", Route(delay=0.02)) for i in range(4))
    ids = [await write_outbox(pool, notice(Channels(webhooks=targets))) for _ in range(10)]

    async def all_delivered() -> int:
        n = await pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE status = 'delivered'"
            " AND notification_id = ANY($1::bigint[])",
            ids,
        )
        assert n == 40, n
        return int(n)

    await assert_eventually(all_delivered, timeout=20)
    keys = [r.key for r in http.requests]
    assert len(keys) == 40 and len(set(keys)) == 40
    assert await pool.fetchval("SELECT count(*) FROM delivery_attempts") == 40


async def test_list_notifications_shows_each_delivery_and_its_attempts(
    alerts_hosts: AlertsHosts, http: HttpReceiver
) -> None:
    host = await alerts_hosts.start()
    pool = pool_of(host)
    flaky = http.url("/flaky", Route(fail=1))
    first = await write_outbox(pool, notice(Channels(webhooks=(flaky,)), rule_id="a"))
    second = await write_outbox(
        pool, notice(Channels(webhooks=(http.url("/ok"),), emails=("x@y.test",)), rule_id="b")
    )
    await settled(pool, first)
    await settled(pool, second)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    stub = alerts_pb2_grpc.AlertsServiceStub(channel)
    try:
        page = await stub.ListNotifications(
            pb.ListNotificationsRequest(page_size=1), metadata=auth(READ_KEY)
        )
        [newest] = page.notifications
        assert (newest.notification_id, newest.rule_id, newest.kind) == (second, "b", "firing")
        assert newest.severity == pb.SEVERITY_CRITICAL
        assert [(d.channel, d.status) for d in newest.deliveries] == [
            ("webhook", pb.DELIVERY_STATUS_DELIVERED),
            ("email", pb.DELIVERY_STATUS_FAILED),
        ]
        assert newest.deliveries[1].last_error == "no SMTP server configured"
        older = await stub.ListNotifications(
            pb.ListNotificationsRequest(page_size=1, page_token=page.next_page_token),
            metadata=auth(READ_KEY),
        )
        [oldest] = older.notifications
        assert oldest.notification_id == first and older.next_page_token == ""
        [d] = oldest.deliveries
        assert (d.target, d.attempts, d.status) == (flaky, 2, pb.DELIVERY_STATUS_DELIVERED)
        assert d.HasField("delivered_at") and not d.HasField("next_attempt_at")
        assert [(a.attempt, a.outcome, a.http_status) for a in d.attempt_log] == [
            (1, "retry", 500),
            (2, "delivered", 200),
        ]
        assert all(a.HasField("finished_at") and a.duration_ms > 0 for a in d.attempt_log)
        only_a = await stub.ListNotifications(
            pb.ListNotificationsRequest(rule_id="a"), metadata=auth(READ_KEY)
        )
        assert [n.notification_id for n in only_a.notifications] == [first]
        theirs = await stub.ListNotifications(
            pb.ListNotificationsRequest(), metadata=auth(OTHER_ADMIN_KEY)
        )
        assert list(theirs.notifications) == []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListNotifications(
                pb.ListNotificationsRequest(page_token="x1"), metadata=auth(READ_KEY)
            )
        assert violated_fields(err.value) == ["page_token"]
    finally:
        await channel.close()


async def test_an_unreadable_notice_fails_its_delivery_and_blocks_no_other(
    alerts_hosts: AlertsHosts, http: HttpReceiver
) -> None:
    host = await alerts_hosts.start()
    pool = pool_of(host)
    broken = await pool.fetchval(
        "INSERT INTO notification_outbox"
        " (tenant, rule_id, severity, kind, dedup_key, due_at, notice)"
        " VALUES ('acme', 'r', 'warning', 'firing', 'broken', now(), $1::jsonb)"
        " RETURNING notification_id",
        orjson.dumps({"channels": {"webhooks": [http.url("/never")]}}).decode(),
    )
    fine = await write_outbox(pool, notice(Channels(webhooks=(http.url("/ok"),))))
    [d] = await settled(pool, broken)
    assert (d["status"], d["attempts"]) == ("failed", 1)
    assert d["last_error"].startswith("unreadable notice: KeyError")
    assert [a[0] for a in await attempts(pool, d["delivery_id"])] == ["failed"]
    assert [r["status"] for r in await settled(pool, fine)] == ["delivered"]
    assert http.seen("/never") == []


async def test_a_receiver_slower_than_the_timeout_is_retried(
    alerts_hosts: AlertsHosts, http: HttpReceiver
) -> None:
    host = await alerts_hosts.start(http_timeout_seconds=0.3)
    pool = pool_of(host)
    url = http.url("/sluggish", Route(delay=10.0, slow_first=1))
    [d] = await settled(pool, await write_outbox(pool, notice(Channels(webhooks=(url,)))))
    assert (d["status"], d["attempts"]) == ("delivered", 2)
    rows = await pool.fetch(
        "SELECT outcome, http_status, error, duration_ms FROM delivery_attempts"
        " WHERE delivery_id = $1 ORDER BY attempt",
        d["delivery_id"],
    )
    assert [(r["outcome"], r["http_status"]) for r in rows] == [("retry", None), ("delivered", 200)]
    assert rows[0]["error"] == "TimeoutError: no answer within 0.3s"
    assert 250 <= rows[0]["duration_ms"] < 5_000


async def test_settled_notifications_past_their_retention_are_forgotten_pending_ones_kept(
    alerts_hosts: AlertsHosts, database_url: str, namespace: str
) -> None:
    # The schema, with no dispatcher running (it would settle the pending one).
    await alerts_hosts.stop(await alerts_hosts.start())
    pool = await create_pool(database_url, Topology(namespace).schema("alerts"))
    try:
        hook = Channels(webhooks=("http://127.0.0.1:9/hook",))
        old_done, old_failed, old_pending, new_done = [
            await write_outbox(pool, notice(hook)) for _ in range(4)
        ]
        await pool.execute(
            "UPDATE deliveries SET status = 'delivered' WHERE notification_id = ANY($1::bigint[])",
            [old_done, new_done],
        )
        await pool.execute(
            "UPDATE deliveries SET status = 'failed' WHERE notification_id = $1", old_failed
        )
        await pool.execute(
            "UPDATE notification_outbox SET created_at = now() - interval '31 days'"
            " WHERE notification_id = ANY($1::bigint[])",
            [old_done, old_failed, old_pending],
        )
        assert await DeliveryStore(pool).prune(keep_days=30) == 2
        left = await pool.fetch("SELECT notification_id FROM notification_outbox ORDER BY 1")
        assert [r["notification_id"] for r in left] == [old_pending, new_done]
        # Their deliveries went with them; the others' stayed.
        kept = await pool.fetch("SELECT DISTINCT notification_id FROM deliveries ORDER BY 1")
        assert [r["notification_id"] for r in kept] == [old_pending, new_done]
    finally:
        await pool.close()
