"""`Tracker`: fire-and-forget event tracking with a bounded background batching queue."""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from northstar_client.clients import MAX_TRACK_EVENTS, IngestClient, prepare_track_request
from northstar_client.config import ClientConfig
from northstar_client.errors import NorthstarClientError
from northstar_client.events import Event, new_event_id

__all__ = ["DropPolicy", "Tracker", "TrackerStats"]

log = logging.getLogger("northstar_client.tracker")

DropPolicy = Literal["newest", "oldest"]


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """What happened to the events handed to a tracker so far."""

    enqueued: int
    accepted: int
    duplicate: int
    rejected: int
    dropped: int
    failed: int
    pending: int
    batches: int


class Tracker:
    """Queue events in memory and send them in batches from a background thread.

    Batches leave when `batch_size` events are queued or `flush_interval` seconds after the
    first of them, whichever comes first. The queue holds at most `max_queue_size` events:
    when full, the `drop` policy discards the new event (`"newest"`) or the oldest queued
    one (`"oldest"`), and `stats().dropped` counts them. Each event gets its id when it is
    queued, so the retries of a batch (UNAVAILABLE, RESOURCE_EXHAUSTED, a lost answer) are
    answered DUPLICATE rather than counted twice. A batch that still fails after the retry
    policy is counted in `stats().failed` and passed to `on_error`. The queue is flushed
    on `close()`, on leaving a `with` block, and at interpreter exit.
    """

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        batch_size: int = 250,
        flush_interval: float = 0.5,
        max_queue_size: int = 10_000,
        drop: DropPolicy = "newest",
        shutdown_timeout: float = 10.0,
        on_error: Callable[[NorthstarClientError, list[Event]], None] | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_TRACK_EVENTS:
            raise ValueError(f"batch_size must be 1 to {MAX_TRACK_EVENTS}")
        if max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        if drop not in ("newest", "oldest"):
            raise ValueError("drop must be 'newest' or 'oldest'")
        self._client = IngestClient(config)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue_size
        self._drop = drop
        self._shutdown_timeout = shutdown_timeout
        self._on_error = on_error
        self._queue: deque[Event] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._flush_requested = False
        self._closing = False
        self._closed = False
        self._counts = dict.fromkeys(
            ("enqueued", "accepted", "duplicate", "rejected", "dropped", "failed", "batches"), 0
        )
        self._thread = threading.Thread(target=self._run, name="northstar-tracker", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def track(
        self,
        event: str,
        *,
        user_id: str = "",
        org_id: str = "",
        session_id: str = "",
        properties: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Queue one event; False when the queue was full and it was dropped."""
        return self.enqueue(
            Event(
                event=event,
                user_id=user_id,
                org_id=org_id,
                session_id=session_id,
                properties=dict(properties or {}),
                timestamp=timestamp,
                event_id=event_id or new_event_id(),
            )
        )

    def enqueue(self, event: Event) -> bool:
        """Queue a built event; never blocks. False when it was dropped."""
        with self._cond:
            if self._closing:
                self._counts["dropped"] += 1
                return False
            if len(self._queue) >= self._max_queue:
                self._counts["dropped"] += 1
                if self._drop == "newest":
                    return False
                self._queue.popleft()
            self._queue.append(event)
            self._counts["enqueued"] += 1
            if len(self._queue) == 1 or len(self._queue) >= self._batch_size:
                self._cond.notify_all()
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; True once all of it was answered (or failed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()
            while self._queue or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the worker and close the channel. True when nothing was left."""
        if self._closed:
            return True
        timeout = self._shutdown_timeout if timeout is None else timeout
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if not flushed:
            # A stalled server: cancel the call in flight so the worker can stop.
            self._client.close()
        self._thread.join(max(1.0, timeout))
        with self._cond:
            abandoned = len(self._queue)
            self._queue.clear()
            self._counts["dropped"] += abandoned
            self._closed = True
            self._cond.notify_all()
        self._client.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self._at_exit)
        return flushed and abandoned == 0

    def stats(self) -> TrackerStats:
        """A consistent snapshot of the counters."""
        with self._cond:
            return TrackerStats(**self._counts, pending=len(self._queue) + self._in_flight)

    def queue_size(self) -> int:
        """Events queued, not counting the batch being sent."""
        with self._cond:
            return len(self._queue)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _at_exit(self) -> None:
        if not self._closed:
            self.close()

    def _next_batch(self) -> list[Event] | None:
        """Block until a batch is due; None when closing with nothing left."""
        with self._cond:
            while True:
                if self._queue:
                    oldest_wait_until = time.monotonic() + self._flush_interval
                    while (
                        len(self._queue) < self._batch_size
                        and not self._flush_requested
                        and not self._closing
                    ):
                        remaining = oldest_wait_until - time.monotonic()
                        if remaining <= 0 or not self._queue:
                            break
                        self._cond.wait(remaining)
                    if not self._queue:
                        continue
                    n = min(self._batch_size, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(n)]
                    self._in_flight = n
                    if not self._queue:
                        self._flush_requested = False
                    return batch
                self._flush_requested = False
                if self._closing:
                    return None
                self._cond.notify_all()
                self._cond.wait()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._send(batch)

    def _send(self, batch: list[Event]) -> None:
        counts: dict[str, int] = {}
        try:
            response = self._client.track_request(prepare_track_request(batch))
            counts = {
                "accepted": response.accepted,
                "duplicate": response.duplicate,
                "rejected": response.rejected,
            }
        except NorthstarClientError as e:
            counts = {"failed": len(batch)}
            log.warning("dropping a batch of %d events: %s", len(batch), e)
            if self._on_error is not None:
                with contextlib.suppress(Exception):
                    self._on_error(e, batch)
        except Exception:
            counts = {"failed": len(batch)}
            log.exception("dropping a batch of %d events", len(batch))
        finally:
            with self._cond:
                for name, n in counts.items():
                    self._counts[name] += n
                self._counts["batches"] += 1
                self._in_flight = 0
                self._cond.notify_all()
