"""Each tenant's default KPI rules, installed once when the evaluator first sees it.

Tenants are those holding an API key for their own data (the key store every replica
reads): a tenant exists for Northstar from its first key, before it has sent an event or
made a rule. Installing is idempotent across replicas and restarts: the rule ids are fixed
per KPI (`default-<kpi>`), each is created only at version 0 (a second writer gets
ALREADY_EXISTS and moves on), and `alert_tenants` remembers tenants done, so a default rule
a tenant deleted is never brought back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import asyncpg
import structlog

from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.domain.rule_events import decide_create
from northstar_alerts.domain.rules import default_rules
from northstar_runtime.errors import AlreadyExists

log = structlog.get_logger("northstar.alerts.defaults")

ACTOR = "northstar-defaults"


class DefaultRulesInstaller:
    """Creates the KPI table's rules for tenants not yet given them."""

    def __init__(
        self, pool: asyncpg.Pool, store: RuleStore, tenants: Callable[[], Iterable[str]]
    ) -> None:
        self._pool = pool
        self._store = store
        self._tenants = tenants
        self._done: set[str] | None = None

    async def install_new(self) -> list[str]:
        """Install the defaults of every tenant seen for the first time; those tenants."""
        if self._done is None:
            rows = await self._pool.fetch("SELECT tenant FROM alert_tenants")
            self._done = {r["tenant"] for r in rows}
        fresh = sorted(set(self._tenants()) - self._done)
        for tenant in fresh:
            await self._install(tenant)
            self._done.add(tenant)
        return fresh

    async def _install(self, tenant: str) -> None:
        if await self._pool.fetchval("SELECT true FROM alert_tenants WHERE tenant = $1", tenant):
            return  # another replica did it
        for rule in default_rules(tenant):
            state, _ = await self._store.load(tenant, rule.rule_id)
            if state is not None:
                continue
            try:
                await self._store.append(tenant, decide_create(None, rule, ACTOR), 0)
            except AlreadyExists:
                continue  # created concurrently by another replica
        await self._pool.execute(
            "INSERT INTO alert_tenants (tenant) VALUES ($1) ON CONFLICT DO NOTHING", tenant
        )
        log.info("default alert rules installed", tenant=tenant)
