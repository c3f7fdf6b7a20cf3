"""Use case: track a batch of events (validate, partition, append, answer per event)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

import structlog
import uuid_utils
from opentelemetry import metrics

from northstar.ingest.v1 import ingest_pb2
from northstar.log.v1 import log_pb2
from northstar_ingest.domain.limits import RecentIds, TenantRateLimiter
from northstar_ingest.domain.partitioning import partition_key, partition_of
from northstar_ingest.domain.validation import Rejection, check_request_shape, validate_event
from northstar_runtime.codec import encode_batch
from northstar_runtime.errors import (
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from northstar_runtime.log import LogClient, LogError, OutgoingMessage
from northstar_runtime.topology import Topology

log = structlog.get_logger("northstar.ingest")
_meter = metrics.get_meter("northstar.ingest")
_events = _meter.create_counter("northstar_ingest_events", unit="1")
_summary_failures = _meter.create_counter("northstar_ingest_summary_failures", unit="1")


class Outcome(Enum):
    """What happened to one event."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class EventResult:
    """The answer for one event of a request."""

    index: int
    event_id: str
    outcome: Outcome
    rejection: Rejection | None = None


@dataclass(frozen=True, slots=True)
class TrackCommand:
    """A Track request, authenticated."""

    tenant: str
    events: Sequence[ingest_pb2.Event]
    request_bytes: int
    sent_at_us: int | None = None
    historical_import: bool = False
    may_import: bool = False


class Ingestor:
    """Validates events, appends them to the log, and answers per event."""

    def __init__(
        self,
        *,
        log_client: LogClient,
        topology: Topology,
        partitions: int,
        limiter: TenantRateLimiter,
        recent: RecentIds,
        publish_timeout: float,
        now_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self._log = log_client
        self._topology = topology
        self._partitions = partitions
        self._limiter = limiter
        self._recent = recent
        self._publish_timeout = publish_timeout
        self._now_us = now_us

    async def track(self, cmd: TrackCommand, *, timeout: float) -> list[EventResult]:
        """Append the valid events of a batch; ACCEPTED only once the log stored them."""
        problems = check_request_shape(len(cmd.events), cmd.request_bytes)
        if problems:
            raise InvalidArgument(
                "; ".join(d for _, d in problems),
                reason="REQUEST_LIMITS",
                violations=[FieldViolation(f, d) for f, d in problems],
            )
        if cmd.historical_import and not cmd.may_import:
            raise PermissionDenied(
                "historical_import needs the 'admin' scope", reason="MISSING_SCOPE"
            )
        if cmd.sent_at_us is not None and cmd.sent_at_us <= 0:
            raise InvalidArgument(
                "sent_at must be a valid time after 1970",
                reason="INVALID_SENT_AT",
                violations=[FieldViolation("sent_at", "must be a valid time after 1970")],
            )
        wait = self._limiter.take(cmd.tenant, len(cmd.events))
        if wait is not None:
            raise ResourceExhausted(
                f"tenant rate limit exceeded; retry in {wait:.3f} s",
                reason="RATE_LIMITED",
                retry_after_seconds=wait,
            )

        received_at = self._now_us()
        results: list[EventResult | None] = [None] * len(cmd.events)
        by_partition: dict[int, list[tuple[int, log_pb2.StoredEvent]]] = {}
        seen_here: set[str] = set()
        known_duplicates: set[int] = set()
        rejections: dict[tuple[str, str], int] = {}
        for i, ev in enumerate(cmd.events):
            checked = validate_event(
                ev,
                received_at_us=received_at,
                sent_at_us=cmd.sent_at_us,
                historical_import=cmd.historical_import,
                new_event_id=lambda: str(uuid_utils.uuid7()),
            )
            if isinstance(checked, Rejection):
                results[i] = EventResult(i, ev.event_id, Outcome.REJECTED, checked)
                key = (checked.field, checked.rule)
                rejections[key] = rejections.get(key, 0) + 1
                continue
            # Every valid event goes to the log, duplicates included: the
            # projections dedup exactly and count id conflicts. The answer is
            # DUPLICATE wherever ingest can already tell.
            if checked.event_id in seen_here or (cmd.tenant, checked.event_id) in self._recent:
                known_duplicates.add(i)
            seen_here.add(checked.event_id)
            stored = log_pb2.StoredEvent(
                event_id=checked.event_id,
                event=checked.event,
                user_id=checked.user_id,
                org_id=checked.org_id,
                session_id=checked.session_id,
                timestamp_us=checked.timestamp_us,
                original_timestamp_us=checked.original_timestamp_us,
                received_at_us=received_at,
                sent_at_us=cmd.sent_at_us or 0,
                properties_json=checked.properties_json,
                event_id_assigned=checked.event_id_assigned,
            )
            p = partition_of(
                partition_key(ev.user_id, ev.org_id, checked.event_id), self._partitions
            )
            by_partition.setdefault(p, []).append((i, stored))

        groups = sorted(by_partition.items())
        messages = []
        for p, items in groups:
            payload, headers = encode_batch(cmd.tenant, p, [s for _, s in items])
            messages.append(
                OutgoingMessage(
                    self._topology.events_subject(cmd.tenant, p),
                    payload,
                    msg_id=_message_id(cmd.tenant, p, [s.event_id for _, s in items]),
                    headers=headers,
                )
            )
        log_duplicates = 0
        if messages:
            # Keep a margin of the caller's deadline, so that a log that does not
            # answer is reported as UNAVAILABLE (retry) before the caller gives up.
            margin = max(0.05, 0.1 * timeout)
            budget = min(timeout - margin, self._publish_timeout)
            if budget <= 0:
                raise DeadlineExceeded(
                    "too little of the deadline was left to append the events",
                    reason="DEADLINE_TOO_SHORT",
                )
            try:
                stored_acks = await self._log.publish_many(messages, timeout=budget)
            except LogError as e:
                log.warning("log append failed", error=str(e))
                raise Unavailable(
                    "the event log is unavailable; nothing was accepted, retry the request",
                    reason="LOG_UNAVAILABLE",
                ) from e
            for (_, items), ack in zip(groups, stored_acks, strict=True):
                for i, s in items:
                    duplicate = ack.duplicate or i in known_duplicates
                    if ack.duplicate:
                        log_duplicates += 1
                    results[i] = EventResult(
                        i, s.event_id, Outcome.DUPLICATE if duplicate else Outcome.ACCEPTED
                    )
                    self._recent.add((cmd.tenant, s.event_id))

        final = [r for r in results if r is not None]
        counts = {o: 0 for o in Outcome}
        for r in final:
            counts[r.outcome] += 1
        for outcome, n in counts.items():
            if n:
                _events.add(n, {"outcome": outcome.value})
        if rejections or log_duplicates:
            remaining = timeout - (self._now_us() - received_at) / 1e6
            await self._record_summary(
                cmd, received_at, counts, log_duplicates, rejections, timeout=min(2.0, remaining)
            )
        return final

    async def _record_summary(
        self,
        cmd: TrackCommand,
        received_at: int,
        counts: dict[Outcome, int],
        log_duplicates: int,
        rejections: dict[tuple[str, str], int],
        *,
        timeout: float,
    ) -> None:
        """Append what the log would not otherwise show: rejections and whole-message
        duplicates (events the log did not store again), for data quality."""
        summary = log_pb2.RequestReceived(
            tenant=cmd.tenant,
            received_at_us=received_at,
            sent_at_us=cmd.sent_at_us or 0,
            accepted=counts[Outcome.ACCEPTED],
            duplicate=log_duplicates,
            rejections=[
                log_pb2.RejectionCount(field=f, rule=r, count=n)
                for (f, r), n in sorted(rejections.items())
            ],
        )
        if timeout <= 0:
            _summary_failures.add(1)
            log.warning("request summary not recorded: no time left")
            return
        try:
            await self._log.append(
                self._topology.domain_subject("ingest", cmd.tenant, "received"),
                summary.SerializeToString(),
                headers={"Northstar-Type": "RequestReceived", "Northstar-Schema": "1"},
                timeout=timeout,
            )
        except LogError as e:
            # The events themselves are stored; only the data-quality tally is lost.
            _summary_failures.add(1)
            log.warning("request summary not recorded", error=str(e))


def _message_id(tenant: str, partition: int, event_ids: Sequence[str]) -> str:
    """Dedup id of one log message: the same events retried give the same id."""
    digest = hashlib.blake2b(digest_size=16)
    for event_id in event_ids:
        digest.update(event_id.encode())
        digest.update(b"\x1f")
    return f"{tenant}:{partition}:{digest.hexdigest()}"
