"""Default KPI rules: installed once per tenant across replicas and restarts."""

from __future__ import annotations

import asyncio

from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.application.defaults import DefaultRulesInstaller
from northstar_alerts.domain.rule_events import decide_delete
from northstar_alerts.domain.rules import default_rules

from .conftest import AlertsDb

DEFAULT_IDS = sorted(r.rule_id for r in default_rules("acme"))


async def test_two_replicas_install_each_tenants_defaults_once(alerts_db: AlertsDb) -> None:
    store = RuleStore(alerts_db.log)
    tenants = {"acme", "globex"}
    a = DefaultRulesInstaller(alerts_db.pool, store, lambda: tenants)
    b = DefaultRulesInstaller(alerts_db.pool, store, lambda: tenants)

    await asyncio.gather(a.install_new(), b.install_new())

    for tenant in tenants:
        assert await store.rule_ids(tenant) == DEFAULT_IDS
        for rule_id in DEFAULT_IDS:
            state, history = await store.load(tenant, rule_id)
            assert state is not None and len(history) == 1
            assert state.rule.labels == {
                "kpi": rule_id.removeprefix("default-"),
                "source": "default",
            }
    assert await a.install_new() == []
    rows = await alerts_db.pool.fetch("SELECT tenant FROM alert_tenants ORDER BY tenant")
    assert [r["tenant"] for r in rows] == ["acme", "globex"]


async def test_a_restart_neither_reinstalls_nor_brings_back_a_deleted_default(
    alerts_db: AlertsDb,
) -> None:
    store = RuleStore(alerts_db.log)
    first = DefaultRulesInstaller(alerts_db.pool, store, lambda: ["acme"])
    assert await first.install_new() == ["acme"]
    state, _ = await store.load("acme", "default-churn_rate")
    assert state is not None
    await store.append("acme", decide_delete(state, "default-churn_rate", "ana"), state.version)

    restarted = DefaultRulesInstaller(alerts_db.pool, store, lambda: ["acme", "initech"])
    assert await restarted.install_new() == ["initech"]

    state, history = await store.load("acme", "default-churn_rate")
    assert state is not None and state.deleted and len(history) == 2
    assert await store.rule_ids("initech") == DEFAULT_IDS
