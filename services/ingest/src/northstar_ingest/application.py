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
from northstar_ingest.domain.erasure import erasure_id, user_id_problem
from northstar_ingest.domain.limits import RecentIds, TenantRateLimiter
from northstar_ingest.domain.partitioning import partition_key, partition_of
from northstar_ingest.domain.validation import (
    MAX_TIMESTAMP_US,
    Rejection,
    check_request_shape,
    validate_event,
)
from northstar_runtime.codec import encode_built_batch, encode_erasure, new_batch
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

    # Members are singletons compared by identity, so the identity hash (in C) will do;
    # Enum's own hashes the name in Python, and outcomes are looked up per event.
    __hash__ = object.__hash__


@dataclass(frozen=True, slots=True)
class TrackResult:
    """The answer to a Track request, per event by its index in the request.

    Columns rather than an object per event: this is built for 100k events a second.
    """

    event_ids: list[str]
    """The event's id: the client's, or the one assigned to a valid event without one."""
    outcomes: list[Outcome]
    rejections: dict[int, Rejection]
    """Why, for each REJECTED index."""
    accepted: int
    duplicate: int
    rejected: int


@dataclass(frozen=True, slots=True)
class TrackCommand:
    """A Track request, authenticated."""

    tenant: str
    events: Sequence[ingest_pb2.Event]
    request_bytes: int
    sent_at_us: int | None = None
    historical_import: bool = False
    may_import: bool = False


@dataclass(frozen=True, slots=True)
class EraseUserCommand:
    """An EraseUser request, authenticated (admin)."""

    tenant: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Erasure:
    """Where a user's erasure is in the log."""

    erasure_id: str
    log_position: int
    erased_at_us: int
    """This request's time. A retry the log deduplicates answers the first request's
    position, and its own time, a little later than the stored one."""


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

    async def track(self, cmd: TrackCommand, *, timeout: float) -> TrackResult:
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
        if cmd.sent_at_us is not None and not 0 < cmd.sent_at_us <= MAX_TIMESTAMP_US:
            rule = "must be a valid time after 1970 and before year 10000"
            raise InvalidArgument(
                f"sent_at {rule}",
                reason="INVALID_SENT_AT",
                violations=[FieldViolation("sent_at", rule)],
            )
        wait = self._limiter.take(cmd.tenant, len(cmd.events))
        if wait is not None:
            raise ResourceExhausted(
                f"tenant rate limit exceeded; retry in {wait:.3f} s",
                reason="RATE_LIMITED",
                retry_after_seconds=wait,
            )

        received_at = self._now_us()
        tenant = cmd.tenant
        sent_at_us = cmd.sent_at_us
        historical_import = cmd.historical_import
        partitions = self._partitions
        event_ids: list[str] = []
        # ACCEPTED unless found otherwise: REJECTED below, DUPLICATE once the log has
        # answered. Valid events are only ever answered after the log stored them.
        outcomes = [Outcome.ACCEPTED] * len(cmd.events)
        rejected_at: dict[int, Rejection] = {}
        batches: dict[int, _PartitionBatch] = {}
        seen_here: set[str] = set()
        repeated_here: set[int] = set()
        rejections: dict[tuple[str, str], int] = {}
        for i, ev in enumerate(cmd.events):
            checked = validate_event(
                ev,
                received_at_us=received_at,
                sent_at_us=sent_at_us,
                historical_import=historical_import,
                new_event_id=_new_event_id,
            )
            if isinstance(checked, Rejection):
                event_ids.append(ev.event_id)
                outcomes[i] = Outcome.REJECTED
                rejected_at[i] = checked
                key = (checked.field, checked.rule)
                rejections[key] = rejections.get(key, 0) + 1
                continue
            # Every valid event goes to the log, duplicates included: the
            # projections dedup exactly and count id conflicts. The answer is
            # DUPLICATE wherever ingest can already tell.
            event_id = checked.event_id
            event_ids.append(event_id)
            if event_id in seen_here:
                repeated_here.add(i)
            else:
                seen_here.add(event_id)
            p = partition_of(partition_key(checked.user_id, checked.org_id, event_id), partitions)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = _PartitionBatch(new_batch(tenant, p))
            batch.indexes.append(i)
            batch.event_ids.append(event_id)
            stored = batch.add_event(
                event_id=event_id,
                event=checked.event,
                user_id=checked.user_id,
                org_id=checked.org_id,
                session_id=checked.session_id,
                timestamp_us=checked.timestamp_us,
                original_timestamp_us=checked.original_timestamp_us,
                received_at_us=received_at,
                properties_json=checked.properties_json,
            )
            # Set only when not the default: every field set costs, and a default is
            # not stored anyway (proto3), so the bytes are the same.
            if sent_at_us:
                stored.sent_at_us = sent_at_us
            if checked.event_id_assigned:
                stored.event_id_assigned = True
        # Asked once for the request's distinct ids: the memory only changes after the append.
        remembered = self._recent.known(tenant, seen_here)

        groups = sorted(batches.items())
        messages = []
        for p, batch in groups:
            payload, headers = encode_built_batch(batch.batch)
            messages.append(
                OutgoingMessage(
                    self._topology.events_subject(tenant, p),
                    payload,
                    msg_id=_message_id(tenant, p, batch.event_ids),
                    headers=headers,
                )
            )
        duplicate = log_duplicates = 0
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
            for (_, batch), ack in zip(groups, stored_acks, strict=True):
                if ack.duplicate:
                    log_duplicates += len(batch.indexes)
                    duplicates = batch.indexes
                elif repeated_here or remembered:
                    duplicates = [
                        i
                        for i, event_id in zip(batch.indexes, batch.event_ids, strict=True)
                        if i in repeated_here or event_id in remembered
                    ]
                else:
                    # The usual request: nothing known, and no work per event.
                    duplicates = []
                for i in duplicates:
                    outcomes[i] = Outcome.DUPLICATE
                duplicate += len(duplicates)
                self._recent.add_all(tenant, batch.event_ids)

        counts = {
            Outcome.ACCEPTED: len(outcomes) - duplicate - len(rejected_at),
            Outcome.DUPLICATE: duplicate,
            Outcome.REJECTED: len(rejected_at),
        }
        for outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE):
            if counts[outcome]:
                _events.add(counts[outcome], {"outcome": outcome.value})
        # Rejections by rule (a fixed vocabulary; the field may name a user's property).
        by_rule: dict[str, int] = {}
        for (_field, rule), n in rejections.items():
            by_rule[rule] = by_rule.get(rule, 0) + n
        for rule, n in by_rule.items():
            _events.add(n, {"outcome": Outcome.REJECTED.value, "reason": rule})
        if rejections or log_duplicates:
            remaining = timeout - (self._now_us() - received_at) / 1e6
            await self._record_summary(
                cmd, received_at, counts, log_duplicates, rejections, timeout=min(2.0, remaining)
            )
        return TrackResult(
            event_ids,
            outcomes,
            rejected_at,
            accepted=counts[Outcome.ACCEPTED],
            duplicate=duplicate,
            rejected=len(rejected_at),
        )

    async def erase_user(self, cmd: EraseUserCommand, *, timeout: float) -> Erasure:
        """Append the user's erasure to the events log, on the user's partition.

        On the partition every event of the user goes to (rule 5 of DESIGN.md), so every
        reader sees the erasure after the user's events that came before it, on a replay
        too: applying them and then the erasure always ends in the same state.
        """
        problem = user_id_problem(cmd.user_id)
        if problem is not None:
            raise InvalidArgument(
                problem, reason="INVALID_USER_ID", violations=[FieldViolation("user_id", problem)]
            )
        erased_at = self._now_us()
        partition = partition_of(partition_key(cmd.user_id, "", ""), self._partitions)
        erasure = log_pb2.UserErased(
            tenant=cmd.tenant,
            partition=partition,
            user_id=cmd.user_id,
            erasure_id=erasure_id(cmd.tenant, cmd.user_id),
            erased_at_us=erased_at,
        )
        payload, headers = encode_erasure(erasure)
        budget = min(timeout - max(0.05, 0.1 * timeout), self._publish_timeout)
        if budget <= 0:
            raise DeadlineExceeded(
                "too little of the deadline was left to append the erasure",
                reason="DEADLINE_TOO_SHORT",
            )
        try:
            stored = await self._log.append(
                self._topology.events_subject(cmd.tenant, partition),
                payload,
                msg_id=f"{cmd.tenant}:{erasure.erasure_id}",
                headers=headers,
                timeout=budget,
            )
        except LogError as e:
            log.warning("erasure append failed", error=str(e))
            raise Unavailable(
                "the event log is unavailable; the user is not erased yet, retry the request",
                reason="LOG_UNAVAILABLE",
            ) from e
        # Not the user_id: logs are kept longer than the read models and are not erased.
        log.info(
            "user erasure appended",
            erasure_id=erasure.erasure_id,
            position=stored.seq,
            duplicate=stored.duplicate,
        )
        return Erasure(erasure.erasure_id, stored.seq, erased_at)

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


class _PartitionBatch:
    """The EventBatch of one partition being built, and where its events came from."""

    __slots__ = ("add_event", "batch", "event_ids", "indexes")

    def __init__(self, batch: log_pb2.EventBatch) -> None:
        self.batch = batch
        # Bound once: StoredEvents are added in place, 100k times a second.
        self.add_event = batch.events.add
        self.indexes: list[int] = []
        self.event_ids: list[str] = []


def _new_event_id() -> str:
    return str(uuid_utils.uuid7())


def _message_id(tenant: str, partition: int, event_ids: Sequence[str]) -> str:
    """Dedup id of one log message: the same events retried give the same id."""
    # One hash of all ids, each followed by a separator: the same digest as
    # feeding them one by one, in one call.
    separated = "\x1f".join(event_ids) + "\x1f" if event_ids else ""
    digest = hashlib.blake2b(separated.encode(), digest_size=16)
    return f"{tenant}:{partition}:{digest.hexdigest()}"
