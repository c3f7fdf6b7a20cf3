"""An evaluation's result committed on real PostgreSQL and NATS: states, outboxes, events."""

from __future__ import annotations

import time
import uuid

from northstar_alerts.adapters.alert_store import AlertLog, load_states, prune_evaluations
from northstar_alerts.adapters.silence_store import SilenceStore
from northstar_alerts.application.evaluation import EvaluationRecorder
from northstar_alerts.domain import silences
from northstar_alerts.domain.alert_events import TRANSITIONED, transitioned
from northstar_alerts.domain.rules import Rule, Series, Threshold
from northstar_alerts.domain.state import (
    FIRING,
    INACTIVE,
    RESOLVED,
    Observation,
    Silence,
    Transition,
)

from .conftest import AlertsDb


def _rule(rule_id: str = "activation") -> Rule:
    return Rule(
        rule_id=rule_id,
        tenant="acme",
        name="activation low",
        series=Series(kind="kpi", name="activation_rate"),
        condition=Threshold("<", warning=0.30, critical=0.20),
    )


async def _count(db: AlertsDb, sql: str) -> int:
    return int(await db.pool.fetchval(sql))


async def test_firing_commits_states_one_notice_and_published_transitions(
    alerts_db: AlertsDb,
) -> None:
    rule = _rule()
    await alerts_db.install(rule)
    schedule = alerts_db.schedule("a")
    [claim] = await schedule.claim(1000.0, 10)
    assert claim.at == 1000.0

    outcome = await alerts_db.recorder(schedule).commit(
        claim, Observation(at=1000.0, value=0.1), now=1000.5
    )

    assert outcome is not None
    async with alerts_db.pool.acquire() as conn:
        states = await load_states(conn, "acme", rule.rule_id)
    assert {s: st.status for s, st in states.items()} == {"warning": FIRING, "critical": FIRING}
    # The critical alert suppresses the warning's notification.
    rows = await alerts_db.pool.fetch("SELECT severity, kind, notice FROM notification_outbox")
    assert [(r["severity"], r["kind"]) for r in rows] == [("critical", "firing")]
    assert (
        await _count(alerts_db, "SELECT count(*) FROM event_outbox WHERE published_at IS NULL") == 0
    )
    history = await AlertLog(alerts_db.log).history("acme", rule.rule_id)
    assert sorted((e.type, e.severity, e.from_status, e.to_status, e.value) for e in history) == [
        (TRANSITIONED, "critical", INACTIVE, FIRING, 0.1),
        (TRANSITIONED, "warning", INACTIVE, FIRING, 0.1),
    ]
    assert {e.threshold for e in history} == {0.2, 0.3}
    row = await alerts_db.pool.fetchrow(
        "SELECT next_due_at, last_evaluated_at, lease_owner, eval_at FROM alert_rules"
    )
    assert (row["next_due_at"], row["last_evaluated_at"]) == (1000.0 + rule.interval_s, 1000.0)
    assert (row["lease_owner"], row["eval_at"]) == (None, None)
    assert await schedule.claim(1000.0 + rule.interval_s - 1, 10) == []


async def test_a_lost_lease_writes_nothing_and_the_taker_writes_once(alerts_db: AlertsDb) -> None:
    await alerts_db.install(_rule())
    slow, taker = alerts_db.schedule("slow", lease_s=30), alerts_db.schedule("taker", lease_s=30)
    [first] = await slow.claim(1000.0, 10)
    assert await taker.claim(1010.0, 10) == []  # leased
    [second] = await taker.claim(1031.0, 10)  # the lease expired: same evaluation time
    assert second.at == first.at == 1000.0

    obs = Observation(at=1000.0, value=0.1)
    assert await alerts_db.recorder(slow).commit(first, obs, now=1032.0) is None
    assert await alerts_db.recorder(taker).commit(second, obs, now=1032.0) is not None

    assert await _count(alerts_db, "SELECT count(*) FROM notification_outbox") == 1
    assert await _count(alerts_db, "SELECT count(*) FROM event_outbox") == 2
    assert await _count(alerts_db, "SELECT count(*) FROM alert_evaluations") == 1
    assert len(await AlertLog(alerts_db.log).history("acme", "activation")) == 2


async def test_a_batch_commits_the_rules_it_holds_and_nothing_for_one_whose_lease_was_lost(
    alerts_db: AlertsDb,
) -> None:
    for i in range(3):
        await alerts_db.install(_rule(f"r{i}"))
    slow, taker = alerts_db.schedule("slow", lease_s=30), alerts_db.schedule("taker", lease_s=30)
    claims = sorted(await slow.claim(1000.0, 10), key=lambda c: c.rule.rule_id)
    assert [c.rule.rule_id for c in claims] == ["r0", "r1", "r2"]
    # r1's lease lapses (its evaluator stalled) and another evaluator takes it.
    await alerts_db.pool.execute("UPDATE alert_rules SET lease_until = 1001 WHERE rule_id = 'r1'")
    [taken] = await taker.claim(1002.0, 10)
    assert (taken.rule.rule_id, taken.at) == ("r1", 1000.0)

    outcomes = await alerts_db.recorder(slow).commit_many(
        [(c, Observation(at=1000.0, value=0.1)) for c in claims], now=1032.0
    )

    assert [o is not None for o in outcomes] == [True, False, True]
    rows = await alerts_db.pool.fetch("SELECT rule_id, evaluator FROM alert_evaluations")
    assert sorted(tuple(r) for r in rows) == [("r0", "slow"), ("r2", "slow")]
    rows = await alerts_db.pool.fetch("SELECT DISTINCT rule_id FROM notification_outbox")
    assert sorted(r["rule_id"] for r in rows) == ["r0", "r2"]
    assert await _count(alerts_db, "SELECT count(*) FROM event_outbox") == 4
    assert await _count(alerts_db, "SELECT count(*) FROM alert_state WHERE rule_id = 'r1'") == 0
    rows = await alerts_db.pool.fetch(
        "SELECT rule_id, lease_owner, eval_at, next_due_at FROM alert_rules ORDER BY rule_id"
    )
    assert [tuple(r) for r in rows] == [
        ("r0", None, None, 4600.0),
        ("r1", "taker", 1000.0, float("-inf")),  # still the taker's to commit
        ("r2", None, None, 4600.0),
    ]
    assert len(await AlertLog(alerts_db.log).history("acme", "r0")) == 2
    assert await AlertLog(alerts_db.log).history("acme", "r1") == []
    assert await alerts_db.recorder(taker).commit(
        taken, Observation(at=1000.0, value=0.1), now=1033.0
    )


async def test_a_republished_transition_is_stored_once(alerts_db: AlertsDb) -> None:
    event = transitioned(Transition("r1", "warning", FIRING, RESOLVED, 2000.0, 0.5, 0.3))
    async with alerts_db.pool.acquire() as conn, conn.transaction():
        ids = await alerts_db.outbox.add(conn, "acme", [event])
        assert await alerts_db.outbox.add(conn, "acme", [event]) == []  # same msg-id
    assert await alerts_db.outbox.publish(ids) == 1
    # A crash after the log stored it and before the row was marked: published again.
    await alerts_db.pool.execute("UPDATE event_outbox SET published_at = NULL")
    assert await alerts_db.outbox.publish() == 1
    assert await alerts_db.outbox.publish() == 0

    assert await AlertLog(alerts_db.log).history("acme", "r1") == [event]


async def test_a_metrics_error_is_recorded_and_changes_no_state(alerts_db: AlertsDb) -> None:
    rule = _rule()
    await alerts_db.install(rule)
    schedule = alerts_db.schedule("a")
    recorder = alerts_db.recorder(schedule)
    [claim] = await schedule.claim(1000.0, 10)
    await recorder.commit(claim, Observation(at=1000.0, value=0.1), now=1000.0)
    [claim] = await schedule.claim(4600.0, 10)

    outcome = await recorder.commit(
        claim, Observation(at=4600.0, error="metrics unavailable"), now=4600.0
    )

    assert outcome is not None and outcome.transitions == []
    async with alerts_db.pool.acquire() as conn:
        states = await load_states(conn, "acme", rule.rule_id)
    assert {st.status for st in states.values()} == {FIRING}
    rows = await alerts_db.pool.fetch(
        "SELECT evaluated_at, outcome, error FROM alert_evaluations ORDER BY evaluated_at"
    )
    assert [tuple(r) for r in rows] == [
        (1000.0, "ok", ""),
        (4600.0, "error", "metrics unavailable"),
    ]
    assert await alerts_db.pool.fetchval("SELECT last_error FROM alert_rules") == (
        "metrics unavailable"
    )
    assert await _count(alerts_db, "SELECT count(*) FROM notification_outbox") == 1


async def test_old_evaluation_records_are_pruned(alerts_db: AlertsDb) -> None:
    await alerts_db.pool.executemany(
        "INSERT INTO alert_evaluations (tenant, rule_id, evaluated_at, outcome, evaluator,"
        " recorded_at) VALUES ('acme', 'r', $1, 'ok', 'a', now() - make_interval(days => $2))",
        [(1.0, 8), (2.0, 8), (3.0, 6)],
    )
    assert await prune_evaluations(alerts_db.pool, keep_days=7, limit=1) == 1
    assert await prune_evaluations(alerts_db.pool, keep_days=7) == 1
    rows = await alerts_db.pool.fetch("SELECT evaluated_at FROM alert_evaluations")
    assert [r["evaluated_at"] for r in rows] == [3.0]


async def test_a_silence_in_the_log_mutes_the_notice_not_the_evaluation(
    alerts_db: AlertsDb,
) -> None:
    rule = _rule("silenced")
    await alerts_db.install(rule)
    now = time.time()
    store = SilenceStore(alerts_db.log)
    silence = Silence(
        silence_id=uuid.uuid4().hex,
        matchers={"rule_id": rule.rule_id},
        starts_at=now - 60,
        ends_at=now + 3600,
        reason="maintenance",
        author="ana",
    )
    await store.append("acme", silences.decide_create(silence, now, "key-1"), 0)
    schedule = alerts_db.schedule("a")
    [claim] = await schedule.claim(now, 10)
    recorder = EvaluationRecorder(alerts_db.pool, schedule, alerts_db.outbox, silences=store.active)

    assert await recorder.commit(claim, Observation(at=claim.at, value=0.1), now=now) is not None

    async with alerts_db.pool.acquire() as conn:
        states = await load_states(conn, "acme", rule.rule_id)
    assert {st.status for st in states.values()} == {FIRING}
    assert await _count(alerts_db, "SELECT count(*) FROM notification_outbox") == 0
