"""Alert queries and commands for the API: current states, history, acknowledgements, tries.

An acknowledgement is written like an evaluation: the state and its event in one
transaction (the state row locked, so it serialises with an evaluation of the same rule),
then the event published. Trying a rule reads metrics and judges, and writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import orjson

from northstar_alerts.adapters.alert_store import (
    AlertLog,
    EventOutbox,
    load_states,
    save_states,
    state_of,
)
from northstar_alerts.adapters.rule_store import RuleStore
from northstar_alerts.application.evaluation import Observe
from northstar_alerts.domain.alert_events import AlertEvent, acknowledged
from northstar_alerts.domain.rule_events import rule_from_json
from northstar_alerts.domain.rules import SEVERITIES, Rule
from northstar_alerts.domain.state import AlertState, Observation, acknowledge, breaches
from northstar_runtime.errors import FailedPrecondition, NotFound


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as listed: the rule it belongs to, its state, the last evaluation."""

    rule: Rule
    state: AlertState
    last_evaluated_at: float | None
    last_error: str


@dataclass(frozen=True, slots=True)
class Trial:
    """A rule evaluated now without consequence: the reading and each severity's verdict."""

    observation: Observation
    levels: dict[str, float]
    verdicts: dict[str, bool] | None  # None: no verdict


def _not_found(rule_id: str) -> NotFound:
    return NotFound(f"alert rule {rule_id!r} does not exist", reason="RULE_NOT_FOUND")


def _views(rule: Rule, states: dict[str, AlertState], row: asyncpg.Record) -> list[AlertView]:
    return [
        AlertView(
            rule,
            states.get(sev, AlertState(severity=sev)),
            row["last_evaluated_at"],
            row["last_error"],
        )
        for sev in SEVERITIES
        if sev in rule.levels()
    ]


class AlertBook:
    """The alerts of a tenant's rules."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        outbox: EventOutbox,
        alert_log: AlertLog,
        rules: RuleStore,
        observe: Observe,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._alert_log = alert_log
        self._rules = rules
        self._observe = observe
        self._clock = clock

    async def alerts(self, tenant: str, rule_id: str = "") -> list[AlertView]:
        """The alerts of the tenant's live rules (or of one), by rule id then severity."""
        rules = await self._pool.fetch(
            "SELECT rule_id, rule, last_evaluated_at, last_error FROM alert_rules"
            " WHERE tenant = $1 AND NOT deleted AND ($2 = '' OR rule_id = $2) ORDER BY rule_id",
            tenant,
            rule_id,
        )
        states = await self._pool.fetch(
            "SELECT * FROM alert_state WHERE tenant = $1 AND ($2 = '' OR rule_id = $2)",
            tenant,
            rule_id,
        )
        by_rule: dict[str, dict[str, AlertState]] = {}
        for s in states:
            by_rule.setdefault(s["rule_id"], {})[s["severity"]] = state_of(s)
        out: list[AlertView] = []
        for row in rules:
            rule = rule_from_json(orjson.loads(row["rule"]))
            out.extend(_views(rule, by_rule.get(rule.rule_id, {}), row))
        return out

    async def history(self, tenant: str, rule_id: str) -> list[AlertEvent]:
        """Every transition and acknowledgement of the rule's alerts, oldest first."""
        state, _ = await self._rules.load(tenant, rule_id)
        if state is None:
            raise _not_found(rule_id)
        return await self._alert_log.history(tenant, rule_id)

    async def acknowledge(
        self, tenant: str, rule_id: str, severity: str, *, who: str, comment: str
    ) -> AlertView:
        """Acknowledge a pending or firing alert; FAILED_PRECONDITION for any other."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT rule, last_evaluated_at, last_error FROM alert_rules"
                " WHERE tenant = $1 AND rule_id = $2 AND NOT deleted",
                tenant,
                rule_id,
            )
            if row is None:
                raise _not_found(rule_id)
            rule = rule_from_json(orjson.loads(row["rule"]))
            if severity not in rule.levels():
                raise FailedPrecondition(
                    f"alert rule {rule_id!r} has no {severity} level", reason="NO_SUCH_ALERT"
                )
            states = await load_states(conn, tenant, rule_id, lock=True)
            before = states.get(severity, AlertState(severity=severity))
            after = acknowledge(before, who, comment)
            await save_states(conn, tenant, rule_id, [after])
            event = acknowledged(
                rule_id, severity, before.status, at=self._clock(), who=who, comment=comment
            )
            ids = await self._outbox.add(conn, tenant, [event])
        await self._outbox.publish(ids)
        return AlertView(rule, after, row["last_evaluated_at"], row["last_error"])

    async def stored_rule(self, tenant: str, rule_id: str) -> Rule:
        """A live stored rule, for TestRule."""
        state, _ = await self._rules.load(tenant, rule_id)
        if state is None or state.deleted:
            raise _not_found(rule_id)
        return state.rule

    async def trial(self, rule: Rule) -> Trial:
        """Evaluate `rule` now against metrics; nothing is written."""
        obs = await self._observe(rule, self._clock())
        return Trial(obs, rule.levels(), breaches(rule, obs))
