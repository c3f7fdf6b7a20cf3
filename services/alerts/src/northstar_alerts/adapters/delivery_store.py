"""Deliveries in PostgreSQL: claimed with SKIP LOCKED and a lease, every attempt recorded.

A claim, in one transaction, locks due deliveries (`FOR UPDATE SKIP LOCKED`: a second
dispatcher skips rows the first is claiming instead of waiting for them), records the
attempt as `in_flight` and moves the delivery's `next_attempt_at` to the end of a lease
longer than any send. So the attempt is durable before anything is sent, and no other
dispatcher picks the delivery while the send may still be running; after a crash the
lease ends and the delivery is claimed again (its stale attempt recorded as `unknown`).
See https://www.postgresql.org/docs/current/sql-select.html#SQL-FOR-UPDATE-SHARE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import orjson

from northstar_alerts.domain.delivery import (
    DELIVERED,
    FAILED,
    INTERRUPTED,
    RETRY,
    AttemptResult,
    Decision,
)
from northstar_alerts.domain.notice import Notice

_OUTCOME = {DELIVERED: DELIVERED, FAILED: FAILED}


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for one attempt, with the notice to render."""

    delivery_id: int
    notification_id: int
    tenant: str
    channel: str
    target: str
    attempt: int
    created_at: float
    notice: Notice


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One recorded attempt, for people."""

    attempt: int
    outcome: str
    started_at: datetime
    finished_at: datetime | None
    http_status: int | None
    smtp_reply: str
    error: str
    duration_ms: float | None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """One delivery and its attempts, for people."""

    delivery_id: int
    channel: str
    target: str
    status: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str
    attempt_log: list[AttemptView] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NotificationView:
    """One notification with its deliveries, for people."""

    notification_id: int
    rule_id: str
    severity: str
    kind: str
    due_at: datetime
    deliveries: list[DeliveryView] = field(default_factory=list)


class DeliveryStore:
    """Claims due deliveries and records each attempt's outcome."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def prune(self, *, keep_days: float, limit: int = 10_000) -> int:
        """Forget notifications older than `keep_days` whose every delivery is settled
        (delivered or failed), with their deliveries and attempts; how many (at most
        `limit` per call). A notification still pending is never forgotten."""
        result = await self._pool.execute(
            "DELETE FROM notification_outbox WHERE notification_id IN ("
            " SELECT o.notification_id FROM notification_outbox o"
            " WHERE o.created_at < now() - make_interval(secs => $1)"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d"
            "  WHERE d.notification_id = o.notification_id AND d.status = 'pending')"
            " ORDER BY o.notification_id LIMIT $2)",
            keep_days * 86_400,
            limit,
        )
        return int(result.split()[-1])

    async def claim(
        self, *, limit: int, busy: Mapping[str, int], per_target: int, lease_s: float
    ) -> list[Claimed]:
        """Up to `limit` due deliveries, none to a target already `per_target` times in flight."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT delivery_id, target FROM deliveries"
                " WHERE status = 'pending' AND next_attempt_at <= now()"
                " ORDER BY next_attempt_at, delivery_id LIMIT $1"
                " FOR UPDATE SKIP LOCKED",
                limit * 4,
            )
            counts = dict(busy)
            chosen: list[int] = []
            for row in rows:
                if counts.get(row["target"], 0) >= per_target:
                    continue
                counts[row["target"]] = counts.get(row["target"], 0) + 1
                chosen.append(row["delivery_id"])
                if len(chosen) == limit:
                    break
            if not chosen:
                return []
            # An attempt still in flight here was a sender that died: its result is unknown.
            await conn.execute(
                "UPDATE delivery_attempts SET outcome = 'unknown', finished_at = now()"
                " WHERE delivery_id = ANY($1::bigint[]) AND outcome = 'in_flight'",
                chosen,
            )
            claimed = await conn.fetch(
                "UPDATE deliveries d SET attempts = d.attempts + 1,"
                " next_attempt_at = now() + make_interval(secs => $2)"
                " FROM notification_outbox o"
                " WHERE d.delivery_id = ANY($1::bigint[]) AND o.notification_id = d.notification_id"
                " RETURNING d.delivery_id, d.notification_id, d.tenant, d.channel, d.target,"
                " d.attempts, extract(epoch FROM d.created_at)::float8 AS created_at, o.notice",
                chosen,
                lease_s,
            )
            ready: list[Claimed] = []
            unreadable: list[tuple[int, int, str]] = []
            for r in sorted(claimed, key=lambda r: int(r["delivery_id"])):
                try:
                    notice = Notice.from_json(orjson.loads(r["notice"]))
                except (KeyError, TypeError, ValueError) as e:
                    unreadable.append(
                        (r["delivery_id"], r["attempts"], f"unreadable notice: {e!r}")
                    )
                    continue
                ready.append(
                    Claimed(
                        delivery_id=r["delivery_id"],
                        notification_id=r["notification_id"],
                        tenant=r["tenant"],
                        channel=r["channel"],
                        target=r["target"],
                        attempt=r["attempts"],
                        created_at=r["created_at"],
                        notice=notice,
                    )
                )
            await conn.executemany(
                "INSERT INTO delivery_attempts (delivery_id, attempt) VALUES ($1, $2)",
                [(c.delivery_id, c.attempt) for c in ready],
            )
            # A notice no renderer can read fails its deliveries here, in the claim, so it
            # cannot come back at every poll.
            await conn.executemany(
                "WITH failed AS (UPDATE deliveries SET status = 'failed', last_error = $3"
                " WHERE delivery_id = $1 RETURNING delivery_id)"
                " INSERT INTO delivery_attempts"
                " (delivery_id, attempt, outcome, finished_at, error, duration_ms)"
                " SELECT delivery_id, $2, 'failed', now(), $3, 0 FROM failed",
                unreadable,
            )
        return ready

    async def finish(
        self, claimed: Claimed, result: AttemptResult, decision: Decision, duration_ms: float
    ) -> bool:
        """Record the attempt's outcome and the delivery's next status; False if it was lost.

        The delivery changes only while it is still at this attempt: a sender whose lease
        ran out (another dispatcher took the delivery over) records its attempt, no more.
        """
        outcome = _OUTCOME.get(decision.status, RETRY)
        error = result.error or (decision.reason if decision.status == FAILED else "")
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE delivery_attempts SET outcome = $3, finished_at = now(),"
                " http_status = $4, smtp_reply = $5, error = $6, duration_ms = $7"
                " WHERE delivery_id = $1 AND attempt = $2",
                claimed.delivery_id,
                claimed.attempt,
                outcome,
                result.http_status,
                result.smtp_reply,
                error,
                duration_ms,
            )
            status = await conn.execute(
                "UPDATE deliveries SET status = $3, last_error = $4,"
                " next_attempt_at = COALESCE(to_timestamp($5), next_attempt_at),"
                " delivered_at = CASE WHEN $3 = 'delivered' THEN now() END"
                " WHERE delivery_id = $1 AND attempts = $2 AND status = 'pending'",
                claimed.delivery_id,
                claimed.attempt,
                decision.status,
                error,
                decision.next_attempt_at,
            )
        return bool(status == "UPDATE 1")

    async def interrupt(self, claimed: Claimed, error: str) -> None:
        """The send was stopped before its result: record it and make the delivery due now."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE delivery_attempts SET outcome = $3, finished_at = now(), error = $4"
                " WHERE delivery_id = $1 AND attempt = $2",
                claimed.delivery_id,
                claimed.attempt,
                INTERRUPTED,
                error,
            )
            await conn.execute(
                "UPDATE deliveries SET next_attempt_at = now(), last_error = $3"
                " WHERE delivery_id = $1 AND attempts = $2 AND status = 'pending'",
                claimed.delivery_id,
                claimed.attempt,
                error,
            )

    async def notifications(
        self, tenant: str, *, rule_id: str, limit: int, before: int | None
    ) -> list[NotificationView]:
        """The tenant's notifications below id `before` (all when None), newest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT notification_id, rule_id, severity, kind, due_at FROM notification_outbox"
                " WHERE tenant = $1 AND ($2 = '' OR rule_id = $2)"
                " AND ($3::bigint IS NULL OR notification_id < $3)"
                " ORDER BY notification_id DESC LIMIT $4",
                tenant,
                rule_id,
                before,
                limit,
            )
            ids = [r["notification_id"] for r in rows]
            delivery_rows = await conn.fetch(
                "SELECT delivery_id, notification_id, channel, target, status, attempts,"
                " next_attempt_at, delivered_at, last_error FROM deliveries"
                " WHERE tenant = $1 AND notification_id = ANY($2::bigint[]) ORDER BY delivery_id",
                tenant,
                ids,
            )
            attempt_rows = await conn.fetch(
                "SELECT delivery_id, attempt, outcome, started_at, finished_at, http_status,"
                " smtp_reply, error, duration_ms FROM delivery_attempts"
                " WHERE delivery_id = ANY($1::bigint[]) ORDER BY delivery_id, attempt",
                [r["delivery_id"] for r in delivery_rows],
            )
        log: dict[int, list[AttemptView]] = {}
        for a in attempt_rows:
            fields = {k: v for k, v in a.items() if k != "delivery_id"}
            log.setdefault(a["delivery_id"], []).append(AttemptView(**fields))
        by_notification: dict[int, list[DeliveryView]] = {}
        for d in delivery_rows:
            fields = {k: v for k, v in d.items() if k != "notification_id"}
            view = DeliveryView(**fields, attempt_log=log.get(d["delivery_id"], []))
            by_notification.setdefault(d["notification_id"], []).append(view)
        return [
            NotificationView(**dict(r), deliveries=by_notification.get(r["notification_id"], []))
            for r in rows
        ]
