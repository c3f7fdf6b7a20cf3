"""Each tenant's default KPI rules, installed once when the evaluator first sees it.

The rule ids are fixed per KPI (`default-<kpi>`); `alert_tenants` remembers the tenants
done (northstar_runtime.tenant_defaults says why that makes installing idempotent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import asyncpg

from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.domain.rule_events import decide_create
from northstar_alerts.domain.rules import default_rules
from northstar_runtime.tenant_defaults import TenantDefaults, create_if_missing

ACTOR = "northstar-defaults"


class DefaultRulesInstaller(TenantDefaults):
    """Creates the KPI table's rules for tenants not yet given them."""

    def __init__(
        self, pool: asyncpg.Pool, store: RuleStore, tenants: Callable[[], Iterable[str]]
    ) -> None:
        super().__init__(pool, "alert_tenants", tenants, "default alert rules")
        self._store = store

    async def install(self, tenant: str) -> None:
        """Create the tenant's default rules that do not exist yet."""
        for rule in default_rules(tenant):
            event = decide_create(None, rule, ACTOR)
            await create_if_missing(self._store, tenant, rule.rule_id, event)
