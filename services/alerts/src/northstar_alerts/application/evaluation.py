"""One evaluation of one rule, committed: the state machine's outcome made durable.

The observation (metrics) is read before the transaction; inside it the rule's lease is
checked and its states locked, the pure state machine folds the observation into them,
and the new states, the notices due and the transition events are written together with
the evaluation's record and the next due time. Only then are the events published: the
log gets them after the states that made them are durable, never before, and their
msg-ids make a republish (after a crash between commit and publish) a no-op.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncpg

from northstar_alerts.adapters.alert_store import (
    EventOutbox,
    add_notices,
    load_states,
    save_states,
)
from northstar_alerts.adapters.schedule import Claim, RuleSchedule
from northstar_alerts.domain.alert_events import transitioned
from northstar_alerts.domain.notice import Notice
from northstar_alerts.domain.rules import Rule
from northstar_alerts.domain.state import (
    AlertState,
    Observation,
    Outcome,
    Silence,
    evaluate,
    labels_of,
)

# The silences in force for a tenant at a time (the silences store plugs in here).
Silences = Callable[[str, float], Awaitable[Sequence[Silence]]]
# A rule's series read as of a time (the metrics client, or a fake in unit tests).
Observe = Callable[[Rule, float], Awaitable[Observation]]


async def no_silences(tenant: str, at: float) -> Sequence[Silence]:
    """No silences: the default until the silences store is wired."""
    return ()


def describe_series(rule: Rule) -> str:
    """What a rule watches, for people: "kpi activation_rate", "metric event_count(x) day"."""
    s = rule.series
    if s.kind == "kpi":
        return f"kpi {s.name}"
    name = f"{s.name}({s.event_name})" if s.event_name else s.name
    return f"metric {name} {s.granularity}"


def notices_for(rule: Rule, before: Mapping[str, AlertState], outcome: Outcome) -> list[Notice]:
    """The outbox notices of an outcome's notifications (a snapshot of the rule)."""
    out: list[Notice] = []
    for n in outcome.notifications:
        st = outcome.states[n.severity]
        # A resolved notice tells when the alert it ends had started firing.
        started = before[n.severity].since if n.kind == "resolved" else st.since
        out.append(
            Notice(
                tenant=rule.tenant,
                rule_id=rule.rule_id,
                rule_name=rule.name,
                severity=n.severity,
                kind=n.kind,
                at=n.at,
                starts_at=started if started is not None else n.at,
                value=n.value,
                threshold=n.threshold,
                labels=labels_of(rule, n.severity),
                channels=rule.channels,
                series=describe_series(rule),
                acked_by=n.acked_by,
                ack_comment=n.ack_comment,
            )
        )
    return out


def outcome_label(obs: Observation, outcome: Outcome) -> str:
    """How an evaluation is recorded: ok, no_value or error."""
    if obs.error:
        return "error"
    return "no_value" if outcome.error else "ok"


class EvaluationRecorder:
    """Commits evaluations of claimed rules, once each."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schedule: RuleSchedule,
        outbox: EventOutbox,
        *,
        silences: Silences = no_silences,
    ) -> None:
        self._pool = pool
        self._schedule = schedule
        self._outbox = outbox
        self._silences = silences

    async def commit(self, claim: Claim, obs: Observation, *, now: float) -> Outcome | None:
        """Fold `obs` into the claimed rule's states; None when the lease was lost."""
        rule = claim.rule
        silences = await self._silences(rule.tenant, obs.at)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await self._schedule.hold(conn, claim):
                return None
            before = await load_states(conn, rule.tenant, rule.rule_id, lock=True)
            outcome = evaluate(rule, before, obs, silences)
            full_before = {sev: before.get(sev, AlertState(severity=sev)) for sev in outcome.states}
            changed = [st for sev, st in outcome.states.items() if full_before[sev] != st]
            await save_states(conn, rule.tenant, rule.rule_id, changed)
            await add_notices(conn, notices_for(rule, full_before, outcome))
            ids = await self._outbox.add(
                conn, rule.tenant, [transitioned(t) for t in outcome.transitions]
            )
            await conn.execute(
                "INSERT INTO alert_evaluations (tenant, rule_id, evaluated_at, outcome, value,"
                " error, evaluator) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                rule.tenant,
                rule.rule_id,
                obs.at,
                outcome_label(obs, outcome),
                obs.value,
                obs.error,
                self._schedule.owner,
            )
            await self._schedule.complete(conn, claim, now=now, error=obs.error)
        await self._outbox.publish(ids)
        return outcome
