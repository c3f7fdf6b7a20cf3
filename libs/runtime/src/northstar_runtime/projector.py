"""The projector loop: log entries in, read model out, exactly once in effect.

Each batch is applied in one PostgreSQL transaction that also moves the
projection's checkpoint (the last stream sequence applied); entries at or
below the checkpoint are skipped, so redelivery changes nothing (DESIGN.md
rule 3). The checkpoint in PostgreSQL is the truth; the JetStream consumer is
only a cursor, recreated at `checkpoint + 1` on every start, so dropping the
read model (checkpoint gone) replays the log from the beginning.

Only one replica applies a projection at a time: it holds a PostgreSQL
advisory lock for as long as it runs; others wait to take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import nats.errors
import nats.js.errors
import orjson
import structlog
from nats.aio.msg import Msg
from nats.js import api
from opentelemetry import metrics, propagate, trace

from northstar_runtime.db import TRANSIENT_DB_ERRORS, Connection
from northstar_runtime.log import LogClient

log = structlog.get_logger("northstar.projector")
_tracer = trace.get_tracer("northstar.projector")
_meter = metrics.get_meter("northstar.projector")
_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
_applied = _meter.create_counter("northstar_projector_entries_applied", unit="1")
_parked = _meter.create_counter("northstar_projector_dead_letters", unit="1")
_batch_duration = _meter.create_histogram(
    "northstar_projector_batch_duration",
    unit="s",
    description="time to apply one batch of log entries, retries included",
    explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
)
_running: weakref.WeakSet[Projector] = weakref.WeakSet()


def _observe(kind: str) -> Iterable[metrics.Observation]:
    for p in list(_running):
        value: float
        if kind == "lag":
            value = p.status.lag
        elif kind == "lag_seconds":
            value = p.status.lag_seconds(time.time())
        else:
            value = p.status.position
        yield metrics.Observation(value, {"projection": p.name})


_meter.create_observable_gauge(
    "northstar_projector_lag",
    callbacks=[lambda _options: _observe("lag")],
    unit="1",
    description="log entries not yet applied by the projection",
)
_meter.create_observable_gauge(
    "northstar_projector_lag_seconds",
    callbacks=[lambda _options: _observe("lag_seconds")],
    unit="s",
    description="age of the oldest log entry the projection has not applied yet",
)
_meter.create_observable_gauge(
    "northstar_projector_position",
    callbacks=[lambda _options: _observe("position")],
    unit="1",
    description="last log position the projection applied",
)

_SETUP_SQL = """
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    projection text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The projection's version its rows were built by (Projection.version).
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS dead_letters (
    projection text NOT NULL,
    position bigint NOT NULL,
    subject text NOT NULL,
    data bytea NOT NULL,
    headers jsonb NOT NULL,
    error text NOT NULL,
    tries integer NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    PRIMARY KEY (projection, position)
);
"""


def _logged_at(msg: Msg) -> float | None:
    """When JetStream stored the message (epoch seconds), if the metadata says."""
    with contextlib.suppress(Exception):
        return float(msg.metadata.timestamp.timestamp())
    return None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log message as a projection sees it."""

    seq: int
    subject: str
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    # When JetStream stored it (epoch seconds); None where unknown (a replayed dead letter).
    logged_at: float | None = None


class Projection(Protocol):
    """A read model derived from the log.

    A projection may declare `version: int` (1 when absent). Raise it whenever what the
    projection keeps changes so that rows already built are incomplete (a new table, a new
    column filled from the events): the active projector then empties the read model and
    replays the whole log once, instead of leaving old data without the new rows.
    """

    name: str

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Apply entries (in log order) inside the caller's transaction."""

    async def reset(self, conn: Connection) -> None:
        """Empty the read model, for a rebuild from the start of the log."""


@dataclass
class ProjectorStatus:
    """What the projector has done, for health and tests."""

    position: int = 0
    lag: int = 0
    applied: int = 0
    parked: int = 0
    active: bool = False
    # Log timestamps (epoch seconds) for the lag in seconds: the first entry of the batch in
    # hand, while it is applied, and the last entry applied.
    pending_since: float | None = None
    applied_through: float | None = None

    def lag_seconds(self, now: float) -> float:
        """Age of the oldest unapplied entry: the batch in hand, else (entries pending but
        not fetched yet) at most the time since the last applied entry was logged."""
        if self.pending_since is not None:
            return max(0.0, now - self.pending_since)
        if self.lag > 0 and self.applied_through is not None:
            return max(0.0, now - self.applied_through)
        return 0.0


class Projector:
    """Runs one projection over a stream's filtered subjects."""

    def __init__(
        self,
        *,
        log_client: LogClient,
        pool: asyncpg.Pool,
        service: str,
        projection: Projection,
        stream: str,
        filter_subjects: Sequence[str],
        batch_size: int = 2_000,
        max_tries: int = 3,
        fetch_timeout: float = 0.5,
    ) -> None:
        self._log = log_client
        self._pool = pool
        self._service = service
        self._projection = projection
        self._stream = stream
        self._filters = list(filter_subjects)
        self._batch_size = batch_size
        self._max_tries = max_tries
        self._fetch_timeout = fetch_timeout
        self._consumer = log_client.topology.consumer(service, projection.name)
        self._deadletter_subject = log_client.topology.deadletter_subject(service, projection.name)
        self._stopping = asyncio.Event()
        self.status = ProjectorStatus()
        _running.add(self)

    @property
    def name(self) -> str:
        """The projection's name."""
        return self._projection.name

    async def setup(self) -> None:
        """Create the checkpoint and dead-letter tables (idempotent)."""
        async with self._pool.acquire() as conn, conn.transaction():
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in pg_type
            # (https://www.postgresql.org/message-id/CA+TgmoZAdYVtwBfp1FL2sMZbiHCWT4UPrzRLNnX1Nb30Ku3-gg@mail.gmail.com):
            # replicas starting together take turns.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('northstar:projector-setup'))"
            )
            await conn.execute(_SETUP_SQL)

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return."""
        self._stopping.set()

    async def run(self) -> None:
        """Apply the log until stopped; waits for the single-active lock first."""
        await self.setup()
        lock_key = f"projector:{self._consumer}"
        while not self._stopping.is_set():
            try:
                async with self._pool.acquire() as lock_conn:
                    if not await lock_conn.fetchval(
                        "SELECT pg_try_advisory_lock(hashtext($1))", lock_key
                    ):
                        await self._sleep(1.0)
                        continue
                    try:
                        self.status.active = True
                        log.info("projector active", projection=self.name)
                        await self._rebuild_if_outdated()
                        # A new deployment is how a fix arrives: the active replica tries
                        # what earlier versions parked, once, before going on with the log.
                        await self.replay_dead_letters()
                        await self._consume()
                    finally:
                        self.status.active = False
                        with contextlib.suppress(*TRANSIENT_DB_ERRORS):
                            await lock_conn.execute(
                                "SELECT pg_advisory_unlock(hashtext($1))", lock_key
                            )
            except TRANSIENT_DB_ERRORS as e:
                log.warning("projector waiting for the database", error=repr(e))
                await self._sleep(1.0)
            except (nats.errors.Error, nats.js.errors.Error) as e:
                log.warning("projector waiting for the log", error=repr(e))
                await self._sleep(1.0)
            except Exception:
                # A bug must not silently stop the projection: log it, back off, go on.
                log.exception("projector loop failed; restarting")
                await self._sleep(2.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def checkpoint(self) -> int:
        """The last log position applied."""
        async with self._pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT position FROM projection_checkpoints WHERE projection = $1", self.name
            )
        return int(value or 0)

    async def _recreate_consumer(self, start: int) -> None:
        js = self._log.js
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(self._stream, self._consumer)
        config = api.ConsumerConfig(
            durable_name=self._consumer,
            ack_policy=api.AckPolicy.ALL,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start,
            ack_wait=120.0,
            max_ack_pending=100_000,
            max_deliver=-1,
            filter_subjects=self._filters if len(self._filters) > 1 else None,
            filter_subject=self._filters[0] if len(self._filters) == 1 else None,
        )
        await js.add_consumer(self._stream, config)

    async def _consume(self) -> None:
        position = await self.checkpoint()
        self.status.position = position
        await self._recreate_consumer(position + 1)
        sub = await self._log.js.pull_subscribe_bind(self._consumer, stream=self._stream)
        lag_task = asyncio.create_task(self._track_lag())

        def pull() -> asyncio.Task[list[Msg]]:
            return asyncio.create_task(sub.fetch(self._batch_size, timeout=self._fetch_timeout))

        # The next batch is fetched while the current one is applied, so the log and
        # PostgreSQL work at the same time instead of taking turns.
        next_batch = pull()
        try:
            while not self._stopping.is_set():
                try:
                    msgs = await next_batch
                except (nats.errors.TimeoutError, TimeoutError):
                    msgs = []  # an empty pull: nothing new in the log
                next_batch = pull()
                if not msgs:
                    continue
                entries = [
                    LogEntry(
                        m.metadata.sequence.stream,
                        m.subject,
                        m.data,
                        dict(m.headers or {}),
                        _logged_at(m),
                    )
                    for m in msgs
                ]
                self.status.pending_since = _logged_at(msgs[0])
                started = time.perf_counter()
                try:
                    await self._apply_resilient(entries)
                finally:
                    self.status.pending_since = None
                _batch_duration.record(time.perf_counter() - started, {"projection": self.name})
                self.status.applied_through = _logged_at(msgs[-1])
                await msgs[-1].ack()
        finally:
            next_batch.cancel()
            lag_task.cancel()
            for task in (next_batch, lag_task):
                with contextlib.suppress(asyncio.CancelledError, nats.errors.Error, TimeoutError):
                    await task
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _track_lag(self) -> None:
        gauge_value = self.status
        while True:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
                info = await self._log.js.consumer_info(self._stream, self._consumer)
                gauge_value.lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            await asyncio.sleep(2.0)

    async def _apply_resilient(self, entries: Sequence[LogEntry]) -> None:
        """Apply a batch; transient failures wait, poison entries are parked."""
        tries = 0
        while True:
            try:
                await self._apply(entries)
                return
            except TRANSIENT_DB_ERRORS as e:
                log.warning("database unavailable; retrying batch", error=repr(e))
                await self._sleep(0.5)
                if self._stopping.is_set():
                    raise
            except Exception as e:
                tries += 1
                log.warning("batch failed", tries=tries, error=repr(e), size=len(entries))
                if tries >= self._max_tries:
                    break
        # Isolate the poison: apply entries one at a time; park those that keep failing.
        for entry in entries:
            await self._apply_single_or_park(entry)

    async def _apply_single_or_park(self, entry: LogEntry) -> None:
        error: Exception | None = None
        for _ in range(self._max_tries):
            try:
                await self._apply([entry])
                return
            except TRANSIENT_DB_ERRORS:
                raise
            except Exception as e:
                error = e
        assert error is not None
        await self._park(entry, error)

    async def _apply(self, entries: Sequence[LogEntry]) -> None:
        parent = propagate.extract(entries[0].headers) if entries else None
        with _tracer.start_as_current_span(
            f"project {self.name}", context=parent, kind=trace.SpanKind.CONSUMER
        ) as span:
            async with self._pool.acquire() as conn, conn.transaction():
                position = await self._lock_checkpoint(conn)
                fresh = [e for e in entries if e.seq > position]
                span.set_attribute("northstar.entries", len(fresh))
                if not fresh:
                    return
                await self._projection.apply(conn, fresh)
                new_position = fresh[-1].seq
                await self._save_checkpoint(conn, new_position)
            self.status.position = new_position
            self.status.applied += len(fresh)
            _applied.add(len(fresh), {"projection": self.name})

    @property
    def version(self) -> int:
        """The version of the projection's code (Projection.version, default 1)."""
        return int(getattr(self._projection, "version", 1))

    async def _rebuild_if_outdated(self) -> None:
        """A read model built by another version of the projection is emptied and rebuilt.

        Runs on the active replica only, before it consumes. Entries parked by the
        older version are marked replayed: the replay from the start meets them again.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT position, version FROM projection_checkpoints"
                " WHERE projection = $1 FOR UPDATE",
                self.name,
            )
            if row is None or row["version"] == self.version:
                return
            log.warning(
                "projection version changed; rebuilding the read model from the log",
                projection=self.name,
                built_by=row["version"],
                version=self.version,
                position=row["position"],
            )
            await self._projection.reset(conn)
            await self._save_checkpoint(conn, 0)
            await conn.execute(
                "UPDATE dead_letters SET replayed_at = now()"
                " WHERE projection = $1 AND replayed_at IS NULL",
                self.name,
            )
        self.status.position = 0

    async def _lock_checkpoint(self, conn: Connection) -> int:
        value = await conn.fetchval(
            "SELECT position FROM projection_checkpoints WHERE projection = $1 FOR UPDATE",
            self.name,
        )
        return int(value or 0)

    async def _save_checkpoint(self, conn: Connection, position: int) -> None:
        await conn.execute(
            "INSERT INTO projection_checkpoints (projection, position, version)"
            " VALUES ($1, $2, $3) ON CONFLICT (projection) DO UPDATE"
            " SET position = excluded.position, version = excluded.version, updated_at = now()",
            self.name,
            position,
            self.version,
        )

    async def _park(self, entry: LogEntry, error: Exception) -> None:
        """Record a poison entry in the dead-letter table and subject; move past it."""
        detail = "".join(traceback.format_exception_only(error)).strip()
        await self._log.append(
            self._deadletter_subject,
            entry.data,
            msg_id=f"{self._consumer}:{entry.seq}",
            headers={
                "Northstar-Original-Subject": entry.subject,
                "Northstar-Original-Seq": str(entry.seq),
                "Northstar-Error": detail[:1000],
            },
        )
        async with self._pool.acquire() as conn, conn.transaction():
            position = await self._lock_checkpoint(conn)
            if entry.seq <= position:
                return
            await conn.execute(
                "INSERT INTO dead_letters"
                " (projection, position, subject, data, headers, error, tries)"
                " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) ON CONFLICT DO NOTHING",
                self.name,
                entry.seq,
                entry.subject,
                entry.data,
                orjson.dumps(dict(entry.headers)).decode(),
                detail,
                self._max_tries,
            )
            await self._save_checkpoint(conn, entry.seq)
        self.status.position = entry.seq
        self.status.parked += 1
        _parked.add(1, {"projection": self.name})
        log.error("log entry parked", seq=entry.seq, subject=entry.subject, error=detail)

    async def replay_dead_letters(self) -> int:
        """Apply parked entries again (after a fix); returns how many now applied."""
        replayed = 0
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT position, subject, data, headers FROM dead_letters"
                " WHERE projection = $1 AND replayed_at IS NULL ORDER BY position",
                self.name,
            )
        for row in rows:
            entry = LogEntry(
                row["position"], row["subject"], bytes(row["data"]), orjson.loads(row["headers"])
            )
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await self._projection.apply(conn, [entry])
                    await conn.execute(
                        "UPDATE dead_letters SET replayed_at = now()"
                        " WHERE projection = $1 AND position = $2",
                        self.name,
                        entry.seq,
                    )
                replayed += 1
            except TRANSIENT_DB_ERRORS:
                raise
            except Exception as e:
                log.warning("dead letter still fails", seq=entry.seq, error=repr(e))
        if rows:
            log.info(
                "dead letters replayed",
                projection=self.name,
                replayed=replayed,
                still_parked=len(rows) - replayed,
            )
        return replayed

    async def reset(self) -> None:
        """Empty the read model and the checkpoint: the next run replays the whole log."""
        await self.setup()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._projection.reset(conn)
            await conn.execute(
                "DELETE FROM projection_checkpoints WHERE projection = $1", self.name
            )
        self.status.position = 0
