"""The evaluation scheduler on real PostgreSQL and NATS: leases, deadlines, stop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from northstar_alerts.adapters.alert_store import AlertLog
from northstar_alerts.adapters.schedule import Claim
from northstar_alerts.application.evaluation import EvaluationRecorder
from northstar_alerts.application.scheduler import EvaluationScheduler
from northstar_alerts.domain.alert_events import transitioned
from northstar_alerts.domain.rules import Rule, Series, Threshold
from northstar_alerts.domain.state import (
    FIRING,
    INACTIVE,
    ManualClock,
    Observation,
    Outcome,
    Transition,
)
from northstar_harness.eventually import assert_eventually

from .conftest import AlertsDb


def _rules(n: int, tenant: str = "acme") -> list[Rule]:
    return [
        Rule(
            rule_id=f"r{i}",
            tenant=tenant,
            name=f"rule {i}",
            series=Series(kind="kpi", name="activation_rate"),
            condition=Threshold("<", warning=0.30, critical=0.20),
            interval_s=60,
        )
        for i in range(n)
    ]


class Metrics:
    """A stand-in for the metrics service: a value per rule, counting reads."""

    def __init__(
        self,
        slow: set[str] = frozenset(),  # type: ignore[assignment]
        broken: set[str] = frozenset(),  # type: ignore[assignment]
        unstorable: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        self.reads: Counter[tuple[str, float]] = Counter()
        self._slow = slow
        self._broken = broken
        self._unstorable = unstorable

    async def observe(self, rule: Rule, at: float) -> Observation:
        self.reads[rule.rule_id, at] += 1
        if rule.rule_id in self._broken:
            raise ValueError("a bug in reading")
        await asyncio.sleep(60 if rule.rule_id in self._slow else 0.001 * (hash(rule.rule_id) % 7))
        if rule.rule_id in self._unstorable:
            return Observation(at=at, error="a NUL \x00 PostgreSQL text refuses")
        return Observation(at=at, value=0.1)


class CountingRecorder(EvaluationRecorder):
    """A recorder noting the size of each batch it is asked to commit."""

    batches: list[int]

    async def commit_many(
        self, results: Sequence[tuple[Claim, Observation]], *, now: float
    ) -> list[Outcome | None]:
        self.batches.append(len(results))
        return await super().commit_many(results, now=now)


def _scheduler(
    db: AlertsDb,
    owner: str,
    metrics: Metrics,
    clock: ManualClock,
    recorder: EvaluationRecorder | None = None,
    **kw: float,
) -> EvaluationScheduler:
    schedule = db.schedule(owner)
    return EvaluationScheduler(
        schedule=schedule,
        recorder=recorder or db.recorder(schedule),
        observe=metrics.observe,
        outbox=db.outbox,
        clock=clock,
        concurrency=int(kw.get("concurrency", 4)),
        batch_size=int(kw.get("batch_size", 100)),
        timeout_s=kw.get("timeout_s", 10.0),
        poll_s=0.05,
    )


async def test_two_evaluators_evaluate_each_due_rule_exactly_once(alerts_db: AlertsDb) -> None:
    for rule in _rules(30):
        await alerts_db.install(rule)
    metrics, clock = Metrics(), ManualClock(1000.0)
    a = _scheduler(alerts_db, "a", metrics, clock)
    b = _scheduler(alerts_db, "b", metrics, clock)

    for _ in range(3):
        done = await asyncio.gather(a.run_due(), b.run_due())
        assert sum(done) == 30
        clock.advance(60)

    assert sorted(metrics.reads.values()) == [1] * 90
    assert {at for _, at in metrics.reads} == {1000.0, 1060.0, 1120.0}
    rows = await alerts_db.pool.fetch(
        "SELECT evaluator, count(*) AS n FROM alert_evaluations GROUP BY evaluator"
    )
    assert sum(r["n"] for r in rows) == 90
    assert {r["evaluator"] for r in rows} == {"a", "b"}  # both took part
    # One firing notice and two transition events per rule, once each.
    assert await alerts_db.pool.fetchval("SELECT count(*) FROM notification_outbox") == 30
    assert await alerts_db.pool.fetchval("SELECT count(*) FROM event_outbox") == 60


async def test_a_slow_or_failing_rule_is_an_error_evaluation_and_delays_no_other(
    alerts_db: AlertsDb,
) -> None:
    for rule in _rules(6):
        await alerts_db.install(rule)
    metrics, clock = Metrics(slow={"r0"}, broken={"r1"}), ManualClock(1000.0)
    scheduler = _scheduler(alerts_db, "a", metrics, clock, concurrency=6, timeout_s=0.5)

    assert await scheduler.run_due() == 6

    rows = await alerts_db.pool.fetch("SELECT rule_id, outcome, error FROM alert_evaluations")
    assert {r["rule_id"]: (r["outcome"], r["error"]) for r in rows} == {
        "r0": ("error", "evaluation deadline exceeded"),
        "r1": ("error", "evaluation failed: ValueError"),
        **{f"r{i}": ("ok", "") for i in range(2, 6)},
    }
    states = await alerts_db.pool.fetch(
        "SELECT DISTINCT rule_id FROM alert_state WHERE status = 'FIRING'"
    )
    assert sorted(r["rule_id"] for r in states) == [f"r{i}" for i in range(2, 6)]


async def test_evaluations_are_committed_in_batches(alerts_db: AlertsDb) -> None:
    for rule in _rules(20):
        await alerts_db.install(rule)
    schedule = alerts_db.schedule("a")
    recorder = CountingRecorder(alerts_db.pool, schedule, alerts_db.outbox)
    recorder.batches = []
    scheduler = _scheduler(
        alerts_db, "a", Metrics(), ManualClock(1000.0), recorder, concurrency=20, batch_size=8
    )

    assert await scheduler.run_due() == 20

    assert recorder.batches == [8, 8, 4]
    assert await alerts_db.pool.fetchval("SELECT count(*) FROM alert_evaluations") == 20
    assert await alerts_db.pool.fetchval("SELECT count(*) FROM notification_outbox") == 20


async def test_a_rule_that_cannot_be_committed_holds_back_no_other_in_its_batch(
    alerts_db: AlertsDb,
) -> None:
    for rule in _rules(6):
        await alerts_db.install(rule)
    metrics, clock = Metrics(unstorable={"r2"}), ManualClock(1000.0)
    scheduler = _scheduler(alerts_db, "a", metrics, clock, concurrency=6)

    assert await scheduler.run_due() == 5  # the batch failed, then each was tried alone

    rows = await alerts_db.pool.fetch("SELECT rule_id FROM alert_evaluations")
    assert sorted(r["rule_id"] for r in rows) == ["r0", "r1", "r3", "r4", "r5"]
    # r2 keeps its lease, which lapses: it is evaluated again with the same time.
    row = await alerts_db.pool.fetchrow(
        "SELECT lease_owner, eval_at FROM alert_rules WHERE rule_id = 'r2'"
    )
    assert tuple(row) == ("a", 1000.0)


async def test_the_worker_loop_evaluates_due_rules_and_stops(alerts_db: AlertsDb) -> None:
    for rule in _rules(10):
        await alerts_db.install(rule)
    metrics = Metrics()
    scheduler = _scheduler(alerts_db, "a", metrics, ManualClock(1000.0), concurrency=3)
    task = asyncio.create_task(scheduler.run())

    async def all_evaluated() -> bool:
        return await alerts_db.pool.fetchval("SELECT count(*) FROM alert_evaluations") == 10

    await assert_eventually(all_evaluated, timeout=20)
    scheduler.stop()
    await asyncio.wait_for(task, timeout=10)
    assert sorted(metrics.reads.values()) == [1] * 10  # not due again at the same time


async def test_stopping_commits_the_reads_that_end_within_the_drain(alerts_db: AlertsDb) -> None:
    for rule in _rules(4):
        await alerts_db.install(rule)
    released = asyncio.Event()

    class Held(Metrics):
        async def observe(self, rule: Rule, at: float) -> Observation:
            if rule.rule_id == "r0":
                await released.wait()
            return await super().observe(rule, at)

    scheduler = _scheduler(alerts_db, "a", Held(), ManualClock(1000.0), concurrency=4)
    task = asyncio.create_task(scheduler.run())

    async def others_evaluated() -> bool:
        return await alerts_db.pool.fetchval("SELECT count(*) FROM alert_evaluations") == 3

    await assert_eventually(others_evaluated, timeout=20)
    scheduler.stop()
    released.set()  # r0's read ends while the evaluator drains
    await asyncio.wait_for(task, timeout=15)

    rows = await alerts_db.pool.fetch("SELECT rule_id FROM alert_evaluations")
    assert sorted(r["rule_id"] for r in rows) == ["r0", "r1", "r2", "r3"]
    assert (
        await alerts_db.pool.fetchval(
            "SELECT count(*) FROM alert_rules WHERE lease_owner IS NOT NULL"
        )
        == 0
    )


async def test_the_worker_publishes_events_a_crash_left_in_the_outbox(alerts_db: AlertsDb) -> None:
    event = transitioned(Transition("r1", "critical", INACTIVE, FIRING, 1000.0, 0.1, 0.2))
    async with alerts_db.pool.acquire() as conn, conn.transaction():
        await alerts_db.outbox.add(conn, "acme", [event])
    # Committed a minute ago, never published: the process died in between.
    await alerts_db.pool.execute("UPDATE event_outbox SET created_at = now() - interval '1 minute'")
    scheduler = _scheduler(alerts_db, "a", Metrics(), ManualClock(1000.0))
    task = asyncio.create_task(scheduler.run())

    async def published() -> bool:
        return await alerts_db.pool.fetchval("SELECT published_at IS NOT NULL FROM event_outbox")

    await assert_eventually(published, timeout=20)
    scheduler.stop()
    await asyncio.wait_for(task, timeout=10)
    assert await AlertLog(alerts_db.log).history("acme", "r1") == [event]
