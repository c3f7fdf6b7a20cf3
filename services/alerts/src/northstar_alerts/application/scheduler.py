"""The evaluation scheduler: a Worker evaluating each rule at its interval, once.

Every round (each `poll_s`) it claims as many due rules as it has free slots, under a lease
per rule in PostgreSQL (see adapters/schedule.py for why each due evaluation is committed
exactly once across replicas), and evaluates each in its own task:

- bounded concurrency and memory: at most `concurrency` evaluations in flight, and
  nothing is claimed beyond them (rules wait in the table, not in this process);
- one slow or failing rule delays no other beyond its own deadline: each evaluation has
  `timeout_s` for its metrics reads, after which it is recorded as an ERROR evaluation;
- graceful stop: no new claims; evaluations in flight get up to `DRAIN_S` to finish, then
  are cancelled (their leases lapse and another replica redoes them with the same time).

Each round also publishes transition events a crash left in the outbox, (at most every
`install_every_s`) installs the default KPI rules of new tenants, and (hourly) forgets
evaluation records older than `keep_evaluations_days`, so the table stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import asyncpg
import structlog

from northstar_alerts.adapters.alert_store import EventOutbox, prune_evaluations
from northstar_alerts.adapters.schedule import Claim, RuleSchedule
from northstar_alerts.application.defaults import DefaultRulesInstaller
from northstar_alerts.application.evaluation import EvaluationRecorder, Observe
from northstar_alerts.domain.state import Observation
from northstar_runtime.db import TRANSIENT_DB_ERRORS
from northstar_runtime.errors import NorthstarError

log = structlog.get_logger("northstar.alerts.scheduler")

# What a round or an evaluation may meet and live through: the next round tries again.
_PASSING: tuple[type[BaseException], ...] = (
    *TRANSIENT_DB_ERRORS,
    asyncpg.PostgresError,
    NorthstarError,
)
PRUNE_EVERY_S = 3600.0
# Stopping waits at most this for evaluations in flight (the host gives its loops 15 s).
DRAIN_S = 10.0
# Events older than this still in the outbox were left by a crash (or a log outage).
RELAY_AFTER_S = 5.0


class EvaluationScheduler:
    """Claims due rules and evaluates them against metrics."""

    name = "alert-evaluator"

    def __init__(
        self,
        *,
        schedule: RuleSchedule,
        recorder: EvaluationRecorder,
        observe: Observe,
        outbox: EventOutbox,
        concurrency: int = 32,
        timeout_s: float = 30.0,
        poll_s: float = 1.0,
        defaults: DefaultRulesInstaller | None = None,
        install_every_s: float = 30.0,
        keep_evaluations_days: float = 7.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._schedule = schedule
        self._recorder = recorder
        self._observe = observe
        self._outbox = outbox
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self._defaults = defaults
        self._install_every_s = install_every_s
        self._keep_evaluations_days = keep_evaluations_days
        self._clock = clock
        self._in_flight: set[asyncio.Task[bool]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._installed_at = float("-inf")
        self._pruned_at = float("-inf")
        self._relayed_at = float("-inf")

    def stop(self) -> None:
        """Claim nothing more; `run` returns once evaluations in flight end."""
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Evaluate due rules until stopped."""
        log.info("alert evaluator started", owner=self._schedule.owner)
        while not self._stopping.is_set():
            try:
                await self._round()
            except _PASSING as e:
                log.warning("alert evaluation round failed; retrying", error=repr(e))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
        await self._drain()
        log.info("alert evaluator stopped", owner=self._schedule.owner)

    async def _round(self) -> None:
        now = self._clock()
        if self._defaults is not None and now - self._installed_at >= self._install_every_s:
            await self._defaults.install_new()
            self._installed_at = now
        if now - self._pruned_at >= PRUNE_EVERY_S:
            await prune_evaluations(self._schedule.pool, keep_days=self._keep_evaluations_days)
            self._pruned_at = now
        if now - self._relayed_at >= RELAY_AFTER_S:
            await self._outbox.publish(older_than_s=RELAY_AFTER_S)
            self._relayed_at = now
        for claim in await self._schedule.claim(now, self._concurrency - len(self._in_flight)):
            task = asyncio.create_task(self._evaluate(claim), name=f"evaluate {claim.rule.rule_id}")
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[bool]) -> None:
        self._in_flight.discard(task)
        self._wake.set()  # a slot is free: look for more due rules now

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(set(self._in_flight), timeout=min(self._timeout_s, DRAIN_S))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def run_due(self) -> int:
        """Evaluate every rule due now and wait for them all; how many were committed.

        For tests and benchmarks, which drive the clock; the worker loop uses `run`.
        """
        committed = 0
        while claims := await self._schedule.claim(self._clock(), self._concurrency):
            committed += sum(await asyncio.gather(*(self._evaluate(c) for c in claims)))
        return committed

    async def _evaluate(self, claim: Claim) -> bool:
        rule = claim.rule
        try:
            obs = await asyncio.wait_for(self._observe(rule, claim.at), timeout=self._timeout_s)
        except TimeoutError:
            obs = Observation(at=claim.at, error="evaluation deadline exceeded")
        except Exception as e:  # any failure to read is an ERROR evaluation, never a lost one
            log.exception("alert rule read failed", tenant=rule.tenant, rule_id=rule.rule_id)
            obs = Observation(at=claim.at, error=f"evaluation failed: {type(e).__name__}")
        try:
            outcome = await self._recorder.commit(claim, obs, now=self._clock())
        except _PASSING as e:
            # The lease lapses and the rule is claimed again with the same time.
            log.warning("alert evaluation not committed", rule_id=rule.rule_id, error=repr(e))
            return False
        if outcome is None:
            log.warning("alert evaluation lease lost", tenant=rule.tenant, rule_id=rule.rule_id)
            return False
        for t in outcome.transitions:
            log.info(
                "alert transition",
                tenant=rule.tenant,
                rule_id=rule.rule_id,
                severity=t.severity,
                from_status=t.from_status,
                to_status=t.to_status,
                value=t.value,
            )
        return True
