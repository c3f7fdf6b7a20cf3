"""The report scheduler: a background worker generating each due (schedule, period) once.

Every poll it installs new tenants' default schedules, publishes events a crash left in
the outbox, then, for every live unpaused schedule, enumerates the periods its fires since
it became active cover (`domain.periods.due_periods`, at most REPORTS_CATCH_UP_LIMIT of
the newest), skips those recorded already, and claims, generates and records the others,
oldest first. A service down at 09:00 thus catches up on its return: the missed days are
generated then, up to the limit; older ones are left (GenerateReport makes them on demand).
Claims and records are what make generation happen once across replicas and crashes
(adapters/generation_store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import structlog

from northstar_reports.adapters.generation_store import GenerationStore, Run
from northstar_reports.adapters.report_store import ActiveSchedule, ReportBook
from northstar_reports.application.defaults import DefaultSchedulesInstaller
from northstar_reports.application.generation import ReportGenerator
from northstar_reports.domain.events import report_id
from northstar_reports.domain.periods import due_periods
from northstar_reports.domain.schedules import unit_of
from northstar_runtime.db import TRANSIENT_DB_ERRORS
from northstar_runtime.errors import NorthstarError

log = structlog.get_logger("northstar.reports.scheduler")
# Outbox rows older than this are the relay's: younger ones are being published by the
# transaction that wrote them.
RELAY_AFTER_S = 5.0
_ERRORS: tuple[type[BaseException], ...] = (
    *TRANSIENT_DB_ERRORS,
    asyncpg.PostgresError,
    NorthstarError,
)


class ReportScheduler:
    """Generates due reports: a Worker of the service host."""

    name = "reports-scheduler"

    def __init__(
        self,
        *,
        book: ReportBook,
        store: GenerationStore,
        generator: ReportGenerator,
        clock: Callable[[], float],
        poll_s: float,
        catch_up_limit: int,
        concurrency: int = 4,
        defaults: DefaultSchedulesInstaller | None = None,
    ) -> None:
        self._book = book
        self._store = store
        self._generator = generator
        self._clock = clock
        self._poll_s = poll_s
        self._limit = catch_up_limit
        self._defaults = defaults
        self._stopping = asyncio.Event()
        # Generations in progress, by (tenant, schedule_id), across rounds.
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(concurrency)

    def stop(self) -> None:
        """Start nothing more; `run` returns after the generations in progress."""
        self._stopping.set()

    async def run(self) -> None:
        """Poll until stopped, then wait for the generations in progress."""
        try:
            while not self._stopping.is_set():
                await self.poll()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll_s)
        finally:
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def poll(self) -> int:
        """One round: starts every active schedule not generating yet; how many it started.

        A schedule still generating from an earlier round (a slow tenant's gathering, up to
        its deadline) keeps going and is not started twice; the others are not held back
        by it, whichever round saw them first. At most `concurrency` gather at once.
        """
        self._reap()
        try:
            if self._defaults is not None:
                await self._defaults.install_new()
            await self._store.publish(older_than_s=RELAY_AFTER_S)
            schedules = await self._book.active_schedules()
        except _ERRORS as e:
            log.warning("report scheduling round failed", error=repr(e))
            return 0
        started = 0
        for active in schedules:
            key = (active.tenant, active.schedule.schedule_id)
            if key not in self._running:
                self._running[key] = asyncio.create_task(self._one(active))
                started += 1
        return started

    def _reap(self) -> None:
        """Forget the generations that ended; one that died of an unexpected error ends
        the worker with it (the service host reports it), as before it started."""
        for key, task in list(self._running.items()):
            if task.done():
                del self._running[key]
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise error

    async def _one(self, active: ActiveSchedule) -> None:
        async with self._slots:
            if self._stopping.is_set():
                return
            try:
                await self._generate_due(active)
            except _ERRORS as e:
                log.warning(
                    "report generation failed; retried next round",
                    tenant=active.tenant,
                    schedule_id=active.schedule.schedule_id,
                    error=repr(e),
                )

    async def _generate_due(self, active: ActiveSchedule) -> int:
        s = active.schedule
        periods = due_periods(
            s.cron,
            s.time_zone,
            unit_of(s),
            after=datetime.fromtimestamp(active.active_since, UTC),
            until=datetime.fromtimestamp(self._clock(), UTC),
            limit=self._limit,
        )
        done = await self._store.done(active.tenant, s.schedule_id, periods)
        recorded = 0
        for period in periods:
            if period in done or self._stopping.is_set():
                continue
            run = Run(active.tenant, s, period, report_id(active.tenant, s.schedule_id, period))
            if not await self._store.claim(run):
                continue  # another replica has it (or just recorded it)
            if await self._generator.scheduled(run):
                recorded += 1
                log.info(
                    "report generated",
                    tenant=run.tenant,
                    schedule_id=s.schedule_id,
                    period_start=period.start.isoformat(),
                    report_id=run.report_id,
                )
        return recorded
