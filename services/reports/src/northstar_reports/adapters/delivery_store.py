"""Report deliveries in PostgreSQL: claimed with SKIP LOCKED and a lease, settled once.

A claim, in one transaction, locks due deliveries (`FOR UPDATE SKIP LOCKED`: a second
dispatcher passes over rows the first is claiming), counts the attempt and moves the
delivery's `next_attempt_at` to the end of a lease longer than any send, so no other
dispatcher picks it while the send may still run; after a crash the lease ends and it is
claimed again. An attempt's outcome is recorded only while the delivery is still at that
attempt. A delivery's end (delivered, or failed for good) queues its ReportDelivered event
in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp

from northstar.reports.v1 import reports_pb2 as pb
from northstar_reports.adapters.generation_store import GenerationStore, queue_event
from northstar_reports.domain import events
from northstar_runtime.notify import DELIVERED, FAILED, AttemptResult, Decision

STATUS = {
    "pending": pb.DELIVERY_STATUS_PENDING,
    DELIVERED: pb.DELIVERY_STATUS_DELIVERED,
    FAILED: pb.DELIVERY_STATUS_FAILED,
}


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for one attempt, with the report to send."""

    delivery_id: str
    tenant: str
    report_id: str
    channel: str
    target: str
    attempt: int
    created_at: float
    report: pb.Report


class DeliveryStore:
    """Claims due deliveries and records each attempt's outcome."""

    def __init__(self, pool: asyncpg.Pool, generation: GenerationStore) -> None:
        self._pool = pool
        self._generation = generation

    async def claim(self, *, limit: int, lease_s: float) -> list[Claimed]:
        """Up to `limit` due deliveries, leased for `lease_s` seconds."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "WITH due AS (SELECT delivery_id FROM deliveries"
                "  WHERE status = 'pending' AND next_attempt_at <= now()"
                "  ORDER BY next_attempt_at, delivery_id LIMIT $1 FOR UPDATE SKIP LOCKED)"
                " UPDATE deliveries d SET attempts = d.attempts + 1,"
                "  next_attempt_at = now() + make_interval(secs => $2)"
                " FROM due, report_outbox o"
                " WHERE d.delivery_id = due.delivery_id AND o.report_id = d.report_id"
                "  AND o.type = $3"
                " RETURNING d.delivery_id, d.tenant, d.report_id, d.channel, d.target,"
                "  d.attempts, extract(epoch FROM d.created_at)::float8 AS created_at,"
                "  o.payload",
                limit,
                lease_s,
                events.GENERATED,
            )
        return [
            Claimed(
                delivery_id=r["delivery_id"],
                tenant=r["tenant"],
                report_id=r["report_id"],
                channel=r["channel"],
                target=r["target"],
                attempt=r["attempts"],
                created_at=r["created_at"],
                report=pb.ReportGenerated.FromString(bytes(r["payload"])).report,
            )
            for r in sorted(rows, key=lambda r: str(r["delivery_id"]))
        ]

    async def finish(self, c: Claimed, result: AttemptResult, decision: Decision) -> bool:
        """Record the attempt's outcome; False when another dispatcher had taken the
        delivery over (nothing recorded). A delivery's end queues its ReportDelivered."""
        error = result.error or (decision.reason if decision.status == FAILED else "")
        ids: list[int] = []
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE deliveries SET status = $3, last_error = $4,"
                " next_attempt_at = COALESCE(to_timestamp($5), next_attempt_at),"
                " delivered_at = CASE WHEN $3 = 'delivered' THEN now() END"
                " WHERE delivery_id = $1 AND attempts = $2 AND status = 'pending'"
                " RETURNING delivered_at",
                c.delivery_id,
                c.attempt,
                decision.status,
                error,
                decision.next_attempt_at,
            )
            if row is None:
                return False
            if decision.status in (DELIVERED, FAILED):
                delivery = pb.Delivery(
                    channel=c.channel,
                    target=c.target,
                    status=STATUS[decision.status],
                    attempts=c.attempt,
                    last_error=error,
                )
                if row["delivered_at"] is not None:
                    delivery.delivered_at.CopyFrom(_timestamp(row["delivered_at"]))
                ids = await queue_event(
                    conn,
                    tenant=c.tenant,
                    report_id=c.report_id,
                    subject=self._generation.subject(c.tenant, "delivery", c.report_id),
                    msg_id=f"delivered-{c.delivery_id}",
                    type_=events.DELIVERED,
                    payload=pb.ReportDelivered(
                        report_id=c.report_id, delivery=delivery
                    ).SerializeToString(),
                )
        await self._generation.publish(ids)
        return True

    async def interrupt(self, c: Claimed, error: str) -> None:
        """The send was stopped before its result: make the delivery due again now."""
        await self._pool.execute(
            "UPDATE deliveries SET next_attempt_at = now(), last_error = $3"
            " WHERE delivery_id = $1 AND attempts = $2 AND status = 'pending'",
            c.delivery_id,
            c.attempt,
            error,
        )


def _timestamp(at: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at.astimezone(UTC))
    return ts
