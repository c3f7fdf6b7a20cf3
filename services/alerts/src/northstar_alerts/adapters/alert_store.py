"""Alert state in PostgreSQL, the outboxes it is written with, and alert events in the log.

`alert_state` holds the current state of each (tenant, rule, severity). An evaluation's
result is one transaction: its states, its notices (`notification_outbox`, deduplicated by
the notice's key) and its transition events (`event_outbox`, unique msg-id). The events
are published to the log after the commit (`EventOutbox.publish`): the row is the promise,
the log message its delivery, and the msg-id makes a second delivery after a crash a no-op
(the log's duplicate window). A crash after the commit and before the publish leaves rows
that the scheduler's relay publishes on its next round, in event order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg
import orjson
import structlog

from northstar_alerts.domain.alert_events import (
    SCHEMA_VERSION,
    AlertEvent,
    event_from_json,
    event_to_json,
)
from northstar_alerts.domain.notice import Notice
from northstar_alerts.domain.state import AlertState
from northstar_runtime.aggregates import AggregateStore
from northstar_runtime.codec import SCHEMA_HEADER, TYPE_HEADER, UnknownRecord
from northstar_runtime.db import Connection
from northstar_runtime.log import LogClient, LogError, OutgoingMessage

log = structlog.get_logger("northstar.alerts.store")

# How long the log has to confirm a publish of pending events (at most 500 of them).
PUBLISH_TIMEOUT_S = 10.0
_STATE_FIELDS = (
    "severity",
    "status",
    "since",
    "active_at",
    "last_breach_at",
    "value",
    "threshold",
    "last_notified_at",
    "notified_firing",
    "acked_by",
    "ack_comment",
)
_STATE_COLUMNS = ", ".join(_STATE_FIELDS)


def state_of(row: asyncpg.Record) -> AlertState:
    """An AlertState from a row holding its columns."""
    return AlertState(**{k: row[k] for k in _STATE_FIELDS})


RuleKey = tuple[str, str]  # (tenant, rule_id)


async def load_states(
    conn: Connection, tenant: str, rule_id: str, *, lock: bool = False
) -> dict[str, AlertState]:
    """The states of a rule's severities (absent ones are INACTIVE); `lock` holds them."""
    return (await load_states_of(conn, [(tenant, rule_id)], lock=lock)).get((tenant, rule_id), {})


async def load_states_of(
    conn: Connection, rules: Sequence[RuleKey], *, lock: bool = False
) -> dict[RuleKey, dict[str, AlertState]]:
    """The states of many rules' severities in one statement, by rule (a rule without any
    is absent); `lock` holds them, in key order, as every writer of states locks them, so
    that two transactions locking several never wait on each other in a cycle."""
    rows = await conn.fetch(
        f"SELECT s.tenant, s.rule_id, {_STATE_COLUMNS} FROM alert_state s"  # noqa: S608 - constant columns
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, rule_id)"
        " ON s.tenant = k.tenant AND s.rule_id = k.rule_id"
        " ORDER BY s.tenant, s.rule_id, s.severity" + (" FOR UPDATE OF s" if lock else ""),
        [t for t, _ in rules],
        [r for _, r in rules],
    )
    out: dict[RuleKey, dict[str, AlertState]] = {}
    for r in rows:
        out.setdefault((r["tenant"], r["rule_id"]), {})[r["severity"]] = state_of(r)
    return out


async def save_states(
    conn: Connection, tenant: str, rule_id: str, states: Iterable[AlertState]
) -> None:
    """Write the states of a rule's severities."""
    await save_states_of(conn, [(tenant, rule_id, s) for s in states])


async def save_states_of(conn: Connection, states: Iterable[tuple[str, str, AlertState]]) -> None:
    """Write the states of severities of any rules: (tenant, rule_id, state) each."""
    await conn.executemany(
        "INSERT INTO alert_state (tenant, rule_id, severity, status, since, active_at,"
        " last_breach_at, value, threshold, last_notified_at, notified_firing, acked_by,"
        " ack_comment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (tenant, rule_id, severity) DO UPDATE SET status = EXCLUDED.status,"
        " since = EXCLUDED.since, active_at = EXCLUDED.active_at,"
        " last_breach_at = EXCLUDED.last_breach_at, value = EXCLUDED.value,"
        " threshold = EXCLUDED.threshold, last_notified_at = EXCLUDED.last_notified_at,"
        " notified_firing = EXCLUDED.notified_firing, acked_by = EXCLUDED.acked_by,"
        " ack_comment = EXCLUDED.ack_comment",
        [
            (
                tenant,
                rule_id,
                s.severity,
                s.status,
                s.since,
                s.active_at,
                s.last_breach_at,
                s.value,
                s.threshold,
                s.last_notified_at,
                s.notified_firing,
                s.acked_by,
                s.ack_comment,
            )
            for tenant, rule_id, s in states
        ],
    )


async def add_notices(conn: Connection, notices: Sequence[Notice]) -> None:
    """Queue notices for the dispatcher; one already queued (same dedup key) is kept."""
    await conn.executemany(
        "INSERT INTO notification_outbox (tenant, rule_id, severity, kind, dedup_key, due_at,"
        " notice) VALUES ($1, $2, $3, $4, $5, to_timestamp($6), $7::jsonb)"
        " ON CONFLICT (tenant, dedup_key) DO NOTHING",
        [
            (
                n.tenant,
                n.rule_id,
                n.severity,
                n.kind,
                n.dedup_key,
                n.at,
                orjson.dumps(n.to_json()).decode(),
            )
            for n in notices
        ],
    )


def decode_event(data: bytes, headers: dict[str, str] | None) -> AlertEvent:
    """An alert event from a log message; UnknownRecord for another schema."""
    schema = (headers or {}).get(SCHEMA_HEADER, SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise UnknownRecord(f"alert event schema v{schema}")
    return event_from_json(orjson.loads(data))


class AlertLog(AggregateStore[AlertEvent, None]):
    """A rule's alert events in the log (`domain.alerts.<tenant>.alert.<rule_id>`)."""

    def __init__(self, log_client: LogClient) -> None:
        super().__init__(
            log_client,
            service="alerts",
            aggregate="alert",
            noun="alert",
            exists_reason="ALERT_EXISTS",
            schema_version=SCHEMA_VERSION,
            decode=decode_event,
            encode=lambda event: orjson.dumps(event_to_json(event)),
            evolve=lambda _state, _event, _version: None,
        )

    async def history(self, tenant: str, rule_id: str) -> list[AlertEvent]:
        """Every event of the rule's alerts, oldest first (by time, then log order)."""
        _, entries = await self.load(tenant, rule_id)
        return [e for _, e in sorted(entries, key=lambda item: (item[1].at, item[0]))]


class EventOutbox:
    """Alert events decided in a transaction, published to the log after it commits."""

    def __init__(self, pool: asyncpg.Pool, log_client: LogClient) -> None:
        self._pool = pool
        self._log = log_client
        self._alert_log = AlertLog(log_client)

    async def add(self, conn: Connection, tenant: str, events: Sequence[AlertEvent]) -> list[int]:
        """Queue events in the caller's transaction; the ids of the rows added."""
        return await self.add_of(conn, [(tenant, e) for e in events])

    async def add_of(self, conn: Connection, events: Sequence[tuple[str, AlertEvent]]) -> list[int]:
        """Queue (tenant, event) pairs in one statement, in the caller's transaction; the ids
        of the rows added, in the pairs' order (an event already queued adds none)."""
        if not events:
            return []
        rows = await conn.fetch(
            "INSERT INTO event_outbox (subject, msg_id, type, payload)"
            " SELECT subject, msg_id, type, payload"
            " FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) WITH ORDINALITY"
            " AS e(subject, msg_id, type, payload, n) ORDER BY n"
            " ON CONFLICT (msg_id) DO NOTHING RETURNING event_id",
            [self._alert_log.subject(t, e.key) for t, e in events],
            [e.msg_id(t) for t, e in events],
            [e.type for _, e in events],
            [orjson.dumps(event_to_json(e)) for _, e in events],
        )
        return sorted(int(r["event_id"]) for r in rows)

    async def publish(self, ids: Sequence[int] | None = None, *, older_than_s: float = 0) -> int:
        """Publish pending rows (these ids, or every one older than `older_than_s`) in
        event order; answers how many. A row the log did not confirm stays pending."""
        if ids is not None and not ids:
            return 0
        async with self._pool.acquire() as conn, conn.transaction():
            # SKIP LOCKED: another replica publishing the same rows leaves them to it.
            rows = await conn.fetch(
                "SELECT event_id, subject, msg_id, type, payload FROM event_outbox"
                " WHERE published_at IS NULL AND ($1::bigint[] IS NULL OR event_id = ANY($1))"
                " AND created_at <= now() - make_interval(secs => $2)"
                " ORDER BY event_id LIMIT 500 FOR UPDATE SKIP LOCKED",
                None if ids is None else list(ids),
                older_than_s,
            )
            if not rows:
                return 0
            # Sent in event order on one connection, confirmed together: one round trip for
            # the lot, not one per event. On a failure every row stays pending; those the
            # log did store are dropped as duplicates (same msg-id) when they are sent again.
            try:
                await self._log.publish_many(
                    [
                        OutgoingMessage(
                            r["subject"],
                            bytes(r["payload"]),
                            msg_id=r["msg_id"],
                            headers={TYPE_HEADER: r["type"], SCHEMA_HEADER: SCHEMA_VERSION},
                        )
                        for r in rows
                    ],
                    timeout=PUBLISH_TIMEOUT_S,
                )
            except LogError as e:
                log.warning("alert events not published; kept for retry", error=str(e))
                return 0
            done = [int(r["event_id"]) for r in rows]
            if done:
                await conn.execute(
                    "UPDATE event_outbox SET published_at = now() WHERE event_id = ANY($1)", done
                )
        return len(done)


async def prune_evaluations(pool: asyncpg.Pool, *, keep_days: float, limit: int = 10_000) -> int:
    """Forget evaluation records older than `keep_days` (at most `limit` per call); how many."""
    result = await pool.execute(
        "DELETE FROM alert_evaluations WHERE ctid IN (SELECT ctid FROM alert_evaluations"
        " WHERE recorded_at < now() - make_interval(secs => $1) LIMIT $2)",
        keep_days * 86_400,
        limit,
    )
    return int(result.split()[-1])
