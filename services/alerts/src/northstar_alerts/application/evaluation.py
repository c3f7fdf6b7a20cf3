"""Evaluations of rules, committed: the state machine's outcomes made durable.

The observations (metrics) are read before the transaction; inside it each rule's lease is
checked and its states locked, the pure state machine folds its observation into them,
and the new states, the notices due and the transition events are written together with
the evaluation's record and the next due time. Many evaluations share one transaction of
a few statements (a rule whose lease was lost is left out of it), so the cost of a commit
is paid per batch, not per rule. Only then are the events published: the
log gets them after the states that made them are durable, never before, and their
msg-ids make a republish (after a crash between commit and publish) a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncpg

from northstar_alerts.adapters.alert_store import (
    EventOutbox,
    add_notices,
    load_states_of,
    save_states_of,
)
from northstar_alerts.adapters.schedule import Claim, RuleSchedule
from northstar_alerts.domain.alert_events import AlertEvent, transitioned
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
from northstar_runtime.db import Connection

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
        [outcome] = await self.commit_many([(claim, obs)], now=now)
        return outcome

    async def commit_many(
        self, results: Sequence[tuple[Claim, Observation]], *, now: float
    ) -> list[Outcome | None]:
        """Fold each observation into its claimed rule's states, all in one transaction of
        a few statements, whatever the number of rules; each rule's outcome, in order, or
        None for a rule whose lease was lost (nothing is written for it, the others are
        committed). A failure commits none of them."""
        if not results:
            return []
        # Read before the transaction, once per tenant and time (silences are in the log).
        wanted = list(dict.fromkeys((c.rule.tenant, obs.at) for c, obs in results))
        found = await asyncio.gather(*(self._silences(t, at) for t, at in wanted))
        silences = dict(zip(wanted, found, strict=True))
        outcomes: list[Outcome | None] = [None] * len(results)
        async with self._pool.acquire() as conn, conn.transaction():
            held = await self._schedule.hold_of(conn, [c for c, _ in results])
            befores = await load_states_of(conn, sorted(held), lock=True)
            states: list[tuple[str, str, AlertState]] = []
            notices: list[Notice] = []
            events: list[tuple[str, AlertEvent]] = []
            done: list[tuple[Claim, Observation, Outcome]] = []
            for i, (claim, obs) in enumerate(results):
                rule = claim.rule
                if (rule.tenant, rule.rule_id) not in held:
                    continue
                before = befores.get((rule.tenant, rule.rule_id), {})
                outcome = evaluate(rule, before, obs, silences[rule.tenant, obs.at])
                full = {sev: before.get(sev, AlertState(severity=sev)) for sev in outcome.states}
                states += [
                    (rule.tenant, rule.rule_id, st)
                    for sev, st in outcome.states.items()
                    if full[sev] != st
                ]
                notices += notices_for(rule, full, outcome)
                events += [(rule.tenant, transitioned(t)) for t in outcome.transitions]
                done.append((claim, obs, outcome))
                outcomes[i] = outcome
            await save_states_of(conn, states)
            await add_notices(conn, notices)
            ids = await self._outbox.add_of(conn, events)
            await self._record(conn, done)
            await self._schedule.complete_of(conn, [(c, obs.error) for c, obs, _ in done], now=now)
        await self._outbox.publish(ids)
        return outcomes

    async def _record(
        self, conn: Connection, done: Sequence[tuple[Claim, Observation, Outcome]]
    ) -> None:
        """The evaluations' records, in one statement."""
        if not done:
            return
        await conn.execute(
            "INSERT INTO alert_evaluations (tenant, rule_id, evaluated_at, outcome, value,"
            " error, evaluator) SELECT tenant, rule_id, evaluated_at, outcome, value, error, $7"
            " FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::float8[],"
            " $6::text[]) AS e(tenant, rule_id, evaluated_at, outcome, value, error)"
            " ON CONFLICT DO NOTHING",
            [c.rule.tenant for c, _, _ in done],
            [c.rule.rule_id for c, _, _ in done],
            [obs.at for _, obs, _ in done],
            [outcome_label(obs, o) for _, obs, o in done],
            [obs.value for _, obs, _ in done],
            [obs.error for _, obs, _ in done],
            self._schedule.owner,
        )
