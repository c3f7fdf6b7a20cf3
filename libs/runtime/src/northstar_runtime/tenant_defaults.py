"""What every tenant starts with (default alert rules, default report schedules), installed
once.

Tenants are those holding an API key for their own data (the key store every replica
reads): a tenant exists for Northstar from its first key, before it has sent an event.
Installing is idempotent across replicas and restarts: each default aggregate has a fixed
key and is created only at version 0 (a second writer gets ALREADY_EXISTS and moves on),
and a table of the service's (one `tenant` primary-key column) remembers the tenants done,
so a default a tenant deleted is never brought back.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import asyncpg
import structlog

from northstar_runtime.errors import AlreadyExists

log = structlog.get_logger("northstar.defaults")
_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class Aggregates(Protocol):
    """The part of an aggregate store that installing needs."""

    async def load(self, tenant: str, key: str) -> tuple[Any, Any]: ...

    async def append(self, tenant: str, event: Any, expected_version: int) -> Any: ...


async def create_if_missing(store: Aggregates, tenant: str, key: str, event: Any) -> bool:
    """Append `event` as version 1 of aggregate `key` unless it exists; whether it did."""
    state, _ = await store.load(tenant, key)
    if state is not None:
        return False
    try:
        await store.append(tenant, event, 0)
    except AlreadyExists:
        return False  # created concurrently by another replica
    return True


class TenantDefaults(ABC):
    """Installs a service's defaults for the tenants not yet given them."""

    def __init__(
        self, pool: asyncpg.Pool, table: str, tenants: Callable[[], Iterable[str]], what: str
    ) -> None:
        if not _TABLE.match(table):
            raise ValueError(f"not a table name: {table!r}")
        self._pool = pool
        # The table is a checked identifier of the service's own, never client input.
        self._select_all = f"SELECT tenant FROM {table}"  # noqa: S608
        self._select_one = f"SELECT true FROM {table} WHERE tenant = $1"  # noqa: S608
        self._insert = f"INSERT INTO {table} (tenant) VALUES ($1) ON CONFLICT DO NOTHING"  # noqa: S608
        self._tenants = tenants
        self._what = what
        self._done: set[str] | None = None

    @abstractmethod
    async def install(self, tenant: str) -> None:
        """Create the tenant's default aggregates that do not exist yet."""

    async def install_new(self) -> list[str]:
        """Install the defaults of every tenant seen for the first time; those tenants."""
        if self._done is None:
            rows = await self._pool.fetch(self._select_all)
            self._done = {r["tenant"] for r in rows}
        fresh = sorted(set(self._tenants()) - self._done)
        for tenant in fresh:
            await self._install_once(tenant)
            self._done.add(tenant)
        return fresh

    async def _install_once(self, tenant: str) -> None:
        if await self._pool.fetchval(self._select_one, tenant):
            return  # another replica did it
        await self.install(tenant)
        await self._pool.execute(self._insert, tenant)
        log.info(f"{self._what} installed", tenant=tenant)
