"""The dispatcher: a background worker that delivers due notifications to their channels.

It claims due deliveries (the attempt recorded before the send), sends each in its own
task, bounded in number overall and per target, then records the outcome and the next
step (delivered, retried after a backoff, or failed). A slow or failing target holds at
most `delivery_per_target` of the slots, for at most its timeout, and never delays the
others. On stop it claims nothing more, lets sends in flight finish for
`delivery_drain_seconds`, and records the rest as interrupted (due again at once).
docs/alerts-webhook.md states the delivery guarantee this gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import aiohttp
import asyncpg
import structlog
from opentelemetry import metrics

from northstar_alerts.adapters.delivery_store import Claimed, DeliveryStore
from northstar_alerts.adapters.notifiers import USER_AGENT, Notifiers
from northstar_alerts.domain.delivery import AttemptResult, decide
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.db import TRANSIENT_DB_ERRORS

log = structlog.get_logger("northstar.alerts.dispatcher")
PRUNE_EVERY_S = 3600.0  # how often settled notifications past their retention are forgotten
# A database error never ends the loop: it is logged and the next poll tries again.
_DB_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError)
_meter = metrics.get_meter("northstar.alerts")
_attempts = _meter.create_counter(
    "northstar_alerts_delivery_attempts", unit="1", description="attempts, by channel and status"
)
_send_seconds = _meter.create_histogram(
    "northstar_alerts_delivery_send_seconds", unit="s", description="time of one send"
)


class Dispatcher:
    """Delivers the outbox's notifications: a Worker of the service host."""

    name = "alerts-dispatcher"

    def __init__(self, store: DeliveryStore, settings: AlertsSettings) -> None:
        self._store = store
        self._settings = settings
        self._policy = settings.retry_policy()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], Claimed] = {}
        self._pruned_at = float("-inf")

    def stop(self) -> None:
        """Claim nothing more; `run` returns once the sends in flight are settled."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until stopped."""
        connector = aiohttp.TCPConnector(limit=self._settings.delivery_concurrency)
        async with aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": USER_AGENT}
        ) as session:
            notifiers = Notifiers(self._settings, session)
            try:
                while not self._stopping.is_set():
                    await self._prune_if_due()
                    full = await self._claim_and_start(notifiers)
                    if not full:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                self._wake.wait(), self._settings.delivery_poll_seconds
                            )
            finally:
                await self._drain()

    async def _prune_if_due(self) -> None:
        """Hourly: forget settled notifications older than DELIVERY_KEEP_DAYS."""
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        try:
            pruned = await self._store.prune(keep_days=self._settings.delivery_keep_days)
        except _DB_ERRORS as e:
            log.warning("pruning notifications failed", error=repr(e))
            return
        if pruned:
            log.info("settled notifications pruned", count=pruned)

    async def _claim_and_start(self, notifiers: Notifiers) -> bool:
        """Start sends for due deliveries; True when every slot was filled (claim again)."""
        s = self._settings
        free = s.delivery_concurrency - len(self._in_flight)
        if free <= 0:
            return False
        busy = Counter(c.target for c in self._in_flight.values())
        try:
            claimed = await self._store.claim(
                limit=free,
                busy=busy,
                per_target=s.delivery_per_target,
                lease_s=s.delivery_lease_seconds,
            )
        except _DB_ERRORS as e:
            log.warning("claiming deliveries failed", error=repr(e))
            return False
        for c in claimed:
            task = asyncio.create_task(
                self._deliver(notifiers, c), name=f"delivery-{c.delivery_id}"
            )
            self._in_flight[task] = c
            task.add_done_callback(self._done)
        return len(claimed) == free

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._wake.set()

    async def _deliver(self, notifiers: Notifiers, c: Claimed) -> None:
        started = time.monotonic()
        try:
            result = await notifiers.send(c)
        except asyncio.CancelledError:
            # Stopped mid-send: the receiver may have it; it is sent again (same key).
            await self._store.interrupt(c, "interrupted by a stop before the outcome was known")
            log.info("delivery interrupted", delivery_id=c.delivery_id, attempt=c.attempt)
            raise
        except Exception as e:  # a bug in a renderer must not stop the dispatcher
            log.exception("delivery send failed", delivery_id=c.delivery_id)
            result = AttemptResult(ok=False, error=repr(e)[:500])
        duration_ms = (time.monotonic() - started) * 1000
        decision = decide(
            result,
            attempts=c.attempt,
            created_at=c.created_at,
            now=time.time(),
            policy=self._policy,
        )
        try:
            kept = await self._store.finish(c, result, decision, duration_ms)
        except _DB_ERRORS as e:
            # Unrecorded: the lease ends and the delivery is tried again.
            log.warning("recording a delivery failed", delivery_id=c.delivery_id, error=repr(e))
            return
        _attempts.add(1, {"channel": c.channel, "status": decision.status})
        _send_seconds.record(duration_ms / 1000, {"channel": c.channel})
        log.info(
            "delivery attempt",
            delivery_id=c.delivery_id,
            notification_id=c.notification_id,
            tenant=c.tenant,
            channel=c.channel,
            attempt=c.attempt,
            status=decision.status,
            http_status=result.http_status,
            error=result.error,
            duration_ms=round(duration_ms, 1),
            superseded=not kept,
        )

    async def _drain(self) -> None:
        tasks = list(self._in_flight)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self._settings.delivery_drain_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
