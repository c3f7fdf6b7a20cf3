"""Each tenant's default schedules (daily and weekly), installed once.

Tenants are those holding an API key for their own data. Installing is idempotent across
replicas and restarts: the schedule ids are fixed (`daily`, `weekly`), each is created only
at version 0 (a second writer gets ALREADY_EXISTS and moves on), and `report_tenants`
remembers tenants done, so a default schedule a tenant deleted is never brought back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import asyncpg
import structlog

from northstar_reports.adapters.schedule_store import ScheduleStore
from northstar_reports.domain.events import decide_create, schedule_key
from northstar_reports.domain.schedules import default_schedules
from northstar_runtime.errors import AlreadyExists

log = structlog.get_logger("northstar.reports.defaults")


class DefaultSchedulesInstaller:
    """Creates the default schedules of tenants not yet given them."""

    def __init__(
        self, pool: asyncpg.Pool, store: ScheduleStore, tenants: Callable[[], Iterable[str]]
    ) -> None:
        self._pool = pool
        self._store = store
        self._tenants = tenants
        self._done: set[str] | None = None

    async def install_new(self) -> list[str]:
        """Install the defaults of every tenant seen for the first time; those tenants."""
        if self._done is None:
            rows = await self._pool.fetch("SELECT tenant FROM report_tenants")
            self._done = {r["tenant"] for r in rows}
        fresh = sorted(set(self._tenants()) - self._done)
        for tenant in fresh:
            await self._install(tenant)
            self._done.add(tenant)
        return fresh

    async def _install(self, tenant: str) -> None:
        if await self._pool.fetchval("SELECT true FROM report_tenants WHERE tenant = $1", tenant):
            return  # another replica did it
        for schedule in default_schedules():
            state, _ = await self._store.load(tenant, schedule_key(schedule.schedule_id))
            if state is not None:
                continue
            try:
                await self._store.append(tenant, decide_create(None, schedule), 0)
            except AlreadyExists:
                continue  # created concurrently by another replica
        await self._pool.execute(
            "INSERT INTO report_tenants (tenant) VALUES ($1) ON CONFLICT DO NOTHING", tenant
        )
        log.info("default report schedules installed", tenant=tenant)
