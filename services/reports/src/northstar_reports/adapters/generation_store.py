"""Generation runs, the event outbox and the deliveries it creates, in PostgreSQL.

Why a scheduled report is recorded once per (schedule, period):

- A replica claims a run with one statement: it inserts the run's row (primary key
  tenant + schedule + period unit + period start), or takes over a `pending` row whose lease
  has ended. Two replicas racing insert one row; the loser's statement returns nothing.
- The report is recorded in one transaction that first locks the run's row and checks this
  replica still holds its lease, then marks it `done`, adds the ReportGenerated event to
  `report_outbox` (msg-id = report id) and adds one delivery per channel target. A replica
  that was slow and lost its lease writes nothing. A crash before the commit leaves the run
  pending: once its lease ends another replica generates the same report id again.
- After the commit the event is published. A crash between the commit and the publish
  leaves the row pending; the relay (every scheduler poll) publishes it. A publish is
  deduplicated by its msg-id within the DOMAIN stream's duplicate window (10 minutes by
  default) and, after that, refused by the expected-version-0 check on the report's own
  subject: the log holds one ReportGenerated per report whatever the retries.

See https://docs.nats.io/nats-concepts/jetstream/model_deep_dive#message-deduplication and
https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from northstar.reports.v1 import reports_pb2 as pb
from northstar_reports.domain import events
from northstar_reports.domain.periods import Period
from northstar_runtime.codec import SCHEMA_HEADER, TYPE_HEADER
from northstar_runtime.db import Connection
from northstar_runtime.log import LogClient, LogConflict, LogError

log = structlog.get_logger("northstar.reports.generation")
PUBLISH_TIMEOUT_S = 10.0
PUBLISH_BATCH = 200


@dataclass(frozen=True, slots=True)
class Run:
    """One (schedule, period) a replica claimed, and the id its report gets."""

    tenant: str
    schedule: pb.Schedule
    period: Period
    report_id: str


class GenerationStore:
    """Claims runs under a lease, records reports with their deliveries, publishes events."""

    def __init__(self, pool: asyncpg.Pool, log_client: LogClient, *, owner: str, lease_s: float):
        self.pool = pool
        self._log = log_client
        self.owner = owner
        self._lease_s = lease_s

    def subject(self, tenant: str, aggregate: str, report_id: str) -> str:
        """The subject of a report's generation (`report`) or deliveries (`delivery`)."""
        return self._log.topology.domain_subject("reports", tenant, aggregate, report_id)

    async def done(self, tenant: str, schedule_id: str, periods: Sequence[Period]) -> set[Period]:
        """Those of `periods` whose report was recorded already."""
        if not periods:
            return set()
        rows = await self.pool.fetch(
            "SELECT period_unit, period_start FROM report_runs"
            " WHERE tenant = $1 AND schedule_id = $2 AND status = 'done'"
            " AND (period_unit, period_start) IN"
            "  (SELECT * FROM unnest($3::integer[], $4::date[]))",
            tenant,
            schedule_id,
            [int(p.unit) for p in periods],
            [p.start for p in periods],
        )
        recorded = {(int(r["period_unit"]), r["period_start"]) for r in rows}
        return {p for p in periods if (int(p.unit), p.start) in recorded}

    async def claim(self, run: Run) -> bool:
        """Lease the run to this replica: True unless it is done or another holds it."""
        row = await self.pool.fetchval(
            "INSERT INTO report_runs (tenant, schedule_id, period_unit, period_start,"
            " lease_owner, lease_until, report_id)"
            " VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7)"
            " ON CONFLICT (tenant, schedule_id, period_unit, period_start) DO UPDATE"
            " SET lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until"
            " WHERE report_runs.status = 'pending' AND report_runs.lease_until < now()"
            " RETURNING true",
            run.tenant,
            run.schedule.schedule_id,
            int(run.period.unit),
            run.period.start,
            self.owner,
            self._lease_s,
            run.report_id,
        )
        return bool(row)

    async def release(self, run: Run) -> None:
        """Give a claimed run back (its generation failed): another poll may take it."""
        await self.pool.execute(
            "UPDATE report_runs SET lease_until = now() - interval '1 second'"
            " WHERE tenant = $1 AND schedule_id = $2 AND period_unit = $3"
            " AND period_start = $4 AND status = 'pending' AND lease_owner = $5",
            run.tenant,
            run.schedule.schedule_id,
            int(run.period.unit),
            run.period.start,
            self.owner,
        )

    async def record(self, tenant: str, report: pb.Report, *, run: Run | None) -> list[int] | None:
        """Record a generated report: its run done (when scheduled, only while this replica
        holds the lease), its event queued and its deliveries created, in one transaction.
        The outbox rows to publish next; None when the lease was lost (nothing written)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if run is not None and not await self._hold(conn, run):
                return None
            ids = await self._queue(conn, tenant, report)
            await conn.executemany(
                "INSERT INTO deliveries (delivery_id, tenant, report_id, channel, target)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (report_id, channel, target) DO NOTHING",
                [
                    (
                        events.delivery_id(report.summary.report_id, d.channel, d.target),
                        tenant,
                        report.summary.report_id,
                        d.channel,
                        d.target,
                    )
                    for d in report.summary.deliveries
                ],
            )
        return ids

    async def _hold(self, conn: Connection, run: Run) -> bool:
        # The row lock orders this commit after any concurrent claim of the same run.
        held = await conn.fetchval(
            "SELECT true FROM report_runs WHERE tenant = $1 AND schedule_id = $2"
            " AND period_unit = $3 AND period_start = $4 AND status = 'pending'"
            " AND lease_owner = $5 FOR UPDATE",
            run.tenant,
            run.schedule.schedule_id,
            int(run.period.unit),
            run.period.start,
            self.owner,
        )
        if not held:
            return False
        await conn.execute(
            "UPDATE report_runs SET status = 'done', done_at = now(), lease_owner = NULL,"
            " lease_until = NULL WHERE tenant = $1 AND schedule_id = $2 AND period_unit = $3"
            " AND period_start = $4",
            run.tenant,
            run.schedule.schedule_id,
            int(run.period.unit),
            run.period.start,
        )
        return True

    async def _queue(self, conn: Connection, tenant: str, report: pb.Report) -> list[int]:
        report_id = report.summary.report_id
        return await queue_event(
            conn,
            tenant=tenant,
            report_id=report_id,
            subject=self.subject(tenant, "report", report_id),
            msg_id=f"generated-{report_id}",
            type_=events.GENERATED,
            payload=pb.ReportGenerated(report=report).SerializeToString(),
        )

    async def publish(self, ids: Sequence[int] | None = None, *, older_than_s: float = 0) -> int:
        """Publish pending events (these ids, or every one older than `older_than_s`) in
        event order; how many. One the log did not confirm stays pending, with those after it."""
        if ids is not None and not ids:
            return 0
        done: list[int] = []
        async with self.pool.acquire() as conn, conn.transaction():
            # SKIP LOCKED: rows another replica is publishing are left to it.
            rows = await conn.fetch(
                "SELECT event_id, subject, msg_id, type, payload FROM report_outbox"
                " WHERE published_at IS NULL AND ($1::bigint[] IS NULL OR event_id = ANY($1))"
                " AND created_at <= now() - make_interval(secs => $2)"
                " ORDER BY event_id LIMIT $3 FOR UPDATE SKIP LOCKED",
                None if ids is None else list(ids),
                older_than_s,
                PUBLISH_BATCH,
            )
            for r in rows:
                try:
                    stored = await self._log.append(
                        r["subject"],
                        bytes(r["payload"]),
                        msg_id=r["msg_id"],
                        # A report's generation is the first message of its subject.
                        expected_version=0 if r["type"] == events.GENERATED else None,
                        headers={TYPE_HEADER: r["type"], SCHEMA_HEADER: events.SCHEMA_VERSION},
                        timeout=PUBLISH_TIMEOUT_S,
                    )
                    if stored.duplicate:
                        log.info("report event was in the log already", msg_id=r["msg_id"])
                except LogConflict:
                    # Past the duplicate window: the subject holds this report already.
                    log.info("report already generated in the log", msg_id=r["msg_id"])
                except LogError as e:
                    log.warning("report event not published; kept for retry", error=str(e))
                    break
                done.append(int(r["event_id"]))
            if done:
                await conn.execute(
                    "UPDATE report_outbox SET published_at = now() WHERE event_id = ANY($1)", done
                )
        return len(done)

    async def queued_report(self, report_id: str) -> pb.Report | None:
        """The report recorded under this id (from its outbox row), if any."""
        payload = await self.pool.fetchval(
            "SELECT payload FROM report_outbox WHERE report_id = $1 AND type = $2",
            report_id,
            events.GENERATED,
        )
        return None if payload is None else pb.ReportGenerated.FromString(payload).report


async def queue_event(
    conn: Connection,
    *,
    tenant: str,
    report_id: str,
    subject: str,
    msg_id: str,
    type_: str,
    payload: bytes,
) -> list[int]:
    """Add one event to the outbox in the caller's transaction; its row id (none when the
    msg-id was queued already)."""
    rows = await conn.fetch(
        "INSERT INTO report_outbox (tenant, report_id, subject, msg_id, type, payload)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (msg_id) DO NOTHING RETURNING event_id",
        tenant,
        report_id,
        subject,
        msg_id,
        type_,
        payload,
    )
    return [int(r["event_id"]) for r in rows]
