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
from dataclasses import dataclass

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


class DeliveryStore:
    """Claims due deliveries and records each attempt's outcome."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

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
            await conn.executemany(
                "INSERT INTO delivery_attempts (delivery_id, attempt) VALUES ($1, $2)",
                [(r["delivery_id"], r["attempts"]) for r in claimed],
            )
        return [
            Claimed(
                delivery_id=r["delivery_id"],
                notification_id=r["notification_id"],
                tenant=r["tenant"],
                channel=r["channel"],
                target=r["target"],
                attempt=r["attempts"],
                created_at=r["created_at"],
                notice=Notice.from_json(orjson.loads(r["notice"])),
            )
            for r in sorted(claimed, key=lambda r: int(r["delivery_id"]))
        ]

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
