"""The dispatcher: a background worker delivering generated reports to their channels.

It claims due deliveries (leased, the attempt counted before the send), sends each in its
own task, bounded in number, then records the outcome: delivered, retried after a backoff,
or failed once the attempts or the age are spent (northstar_runtime.notify.decide). On stop
it claims nothing more, lets sends in flight finish for `delivery_drain_seconds`, and makes
the rest due again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import asyncpg
import structlog

from northstar_reports.adapters.delivery_store import Claimed, DeliveryStore
from northstar_reports.adapters.notifiers import USER_AGENT, Notifiers
from northstar_reports.settings import ReportsSettings
from northstar_runtime.db import TRANSIENT_DB_ERRORS
from northstar_runtime.notify import AttemptResult, decide

log = structlog.get_logger("northstar.reports.dispatcher")
_DB_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError)


class Dispatcher:
    """Delivers the reports' deliveries: a Worker of the service host."""

    name = "reports-dispatcher"

    def __init__(self, store: DeliveryStore, settings: ReportsSettings) -> None:
        self._store = store
        self._settings = settings
        self._policy = settings.retry_policy()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Claim nothing more; `run` returns once the sends in flight are settled."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and send until stopped."""
        async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
            notifiers = Notifiers(self._settings, session)
            try:
                while not self._stopping.is_set():
                    full = await self._claim_and_start(notifiers)
                    if not full:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                self._wake.wait(), self._settings.delivery_poll_seconds
                            )
            finally:
                await self._drain()

    async def _claim_and_start(self, notifiers: Notifiers) -> bool:
        free = self._settings.delivery_concurrency - len(self._in_flight)
        if free <= 0:
            return False
        try:
            claimed = await self._store.claim(
                limit=free, lease_s=self._settings.delivery_lease_seconds
            )
        except _DB_ERRORS as e:
            log.warning("claiming deliveries failed", error=repr(e))
            return False
        for c in claimed:
            task = asyncio.create_task(
                self._deliver(notifiers, c), name=f"delivery-{c.delivery_id}"
            )
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        return len(claimed) == free

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    async def _deliver(self, notifiers: Notifiers, c: Claimed) -> None:
        try:
            result = await notifiers.send(c)
        except asyncio.CancelledError:
            # Stopped mid-send: the receiver may have it; it is sent again (same key).
            await self._store.interrupt(c, "interrupted by a stop before the outcome was known")
            raise
        except Exception as e:  # a bug in a renderer must not stop the dispatcher
            log.exception("delivery send failed", delivery_id=c.delivery_id)
            result = AttemptResult(ok=False, error=repr(e)[:500])
        decision = decide(
            result,
            attempts=c.attempt,
            created_at=c.created_at,
            now=time.time(),
            policy=self._policy,
        )
        try:
            kept = await self._store.finish(c, result, decision)
        except _DB_ERRORS as e:
            # Unrecorded: the lease ends and the delivery is tried again.
            log.warning("recording a delivery failed", delivery_id=c.delivery_id, error=repr(e))
            return
        log.info(
            "report delivery attempt",
            delivery_id=c.delivery_id,
            report_id=c.report_id,
            tenant=c.tenant,
            channel=c.channel,
            attempt=c.attempt,
            status=decision.status,
            http_status=result.http_status,
            error=result.error,
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
