"""Each tenant's default schedules (daily and weekly), installed once.

The schedule ids are fixed (`daily`, `weekly`); `report_tenants` remembers the tenants done
(northstar_runtime.tenant_defaults says why that makes installing idempotent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import asyncpg

from northstar_reports.adapters.schedule_store import ScheduleStore
from northstar_reports.domain.events import decide_create, schedule_key
from northstar_reports.domain.schedules import default_schedules
from northstar_runtime.tenant_defaults import TenantDefaults, create_if_missing


class DefaultSchedulesInstaller(TenantDefaults):
    """Creates the default schedules of tenants not yet given them."""

    def __init__(
        self, pool: asyncpg.Pool, store: ScheduleStore, tenants: Callable[[], Iterable[str]]
    ) -> None:
        super().__init__(pool, "report_tenants", tenants, "default report schedules")
        self._store = store

    async def install(self, tenant: str) -> None:
        """Create the tenant's default schedules that do not exist yet."""
        for schedule in default_schedules():
            key = schedule_key(schedule.schedule_id)
            await create_if_missing(self._store, tenant, key, decide_create(None, schedule))
