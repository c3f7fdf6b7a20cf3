"""The evaluation scheduler: a Worker evaluating each rule at its interval, once.

Every round (each `poll_s`, and whenever a commit frees slots) it claims, in one
statement, as many due rules as it has free slots, under a lease per rule in PostgreSQL
(see adapters/schedule.py for why each due evaluation is committed exactly once across
replicas), and reads each rule's metrics in its own task. Finished reads wait for the
committer, which commits whatever is ready in one transaction per batch (at most
`batch_size`; see application/evaluation.py): the cost of a commit is paid per batch, and
while one batch commits the next one gathers.

- bounded concurrency and memory: at most `concurrency` rules between claim and commit
  (reading or waiting to commit), and nothing is claimed beyond them (rules wait in the
  table, not in this process);
- one slow or failing rule delays no other beyond its own deadline: each read has
  `timeout_s`, after which it is recorded as an ERROR evaluation, and a batch takes only
  the reads that are done;
- one rule whose commit fails does not hold back the others: a batch that fails is tried
  again rule by rule, and a rule that still fails is left to its lease, which lapses;
- graceful stop: no new claims; reads in flight get up to `DRAIN_S` to finish and are
  committed, the rest are cancelled (their leases lapse and another replica redoes them
  with the same time).

Each round also publishes transition events a crash left in the outbox, (at most every
`install_every_s`) installs the default KPI rules of new tenants, and (hourly) forgets
evaluation records older than `keep_evaluations_days`, so the table stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

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
Result = tuple[Claim, Observation]  # a claimed rule's reading, ready to commit

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
    """Claims due rules, reads their metrics and commits their evaluations in batches."""

    name = "alert-evaluator"

    def __init__(
        self,
        *,
        schedule: RuleSchedule,
        recorder: EvaluationRecorder,
        observe: Observe,
        outbox: EventOutbox,
        concurrency: int = 32,
        batch_size: int = 100,
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
        self._batch_size = batch_size
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self._defaults = defaults
        self._install_every_s = install_every_s
        self._keep_evaluations_days = keep_evaluations_days
        self._clock = clock
        self._reading: set[asyncio.Task[None]] = set()
        self._ready: list[Result] = []  # read, waiting for the committer
        self._committing = 0  # in the batch being committed
        self._drained = False  # stopped, and no read in flight any more
        self._has_ready = asyncio.Event()
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
        committer = asyncio.create_task(self._commit_ready(), name="commit evaluations")
        try:
            while not self._stopping.is_set():
                try:
                    await self._round()
                except _PASSING as e:
                    log.warning("alert evaluation round failed; retrying", error=repr(e))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll_s)
            await self._drain()
        finally:
            # No read is left: the committer commits what is ready, then ends.
            self._drained = True
            self._has_ready.set()
            await committer
        log.info("alert evaluator stopped", owner=self._schedule.owner)

    def _free(self) -> int:
        return self._concurrency - len(self._reading) - len(self._ready) - self._committing

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
        for claim in await self._schedule.claim(now, self._free()):
            task = asyncio.create_task(
                self._read_into_ready(claim), name=f"read {claim.rule.rule_id}"
            )
            self._reading.add(task)
            task.add_done_callback(self._reading.discard)

    async def _read_into_ready(self, claim: Claim) -> None:
        self._ready.append(await self._read(claim))
        self._has_ready.set()

    async def _commit_ready(self) -> None:
        """The committer: commits ready results in batches until the reads are drained."""
        while True:
            await self._has_ready.wait()
            self._has_ready.clear()
            while self._ready:
                batch = self._ready[: self._batch_size]
                del self._ready[: self._batch_size]
                self._committing = len(batch)
                try:
                    await self._commit(batch)
                except Exception:  # a bug must not stop every evaluation: leases lapse
                    log.exception("alert evaluations not committed", n=len(batch))
                finally:
                    self._committing = 0
                self._wake.set()  # slots are free: look for more due rules now
            if self._drained:
                return

    async def _drain(self) -> None:
        if not self._reading:
            return
        _, pending = await asyncio.wait(set(self._reading), timeout=min(self._timeout_s, DRAIN_S))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def run_due(self) -> int:
        """Evaluate every rule due now and wait for them all; how many were committed.

        For tests and benchmarks, which drive the clock; the worker loop uses `run`.
        """
        committed = 0
        while claims := await self._schedule.claim(self._clock(), self._concurrency):
            results = await asyncio.gather(*(self._read(c) for c in claims))
            for i in range(0, len(results), self._batch_size):
                committed += await self._commit(results[i : i + self._batch_size])
        return committed

    async def _read(self, claim: Claim) -> Result:
        rule = claim.rule
        try:
            obs = await asyncio.wait_for(self._observe(rule, claim.at), timeout=self._timeout_s)
        except TimeoutError:
            obs = Observation(at=claim.at, error="evaluation deadline exceeded")
        except Exception as e:  # any failure to read is an ERROR evaluation, never a lost one
            log.exception("alert rule read failed", tenant=rule.tenant, rule_id=rule.rule_id)
            obs = Observation(at=claim.at, error=f"evaluation failed: {type(e).__name__}")
        return claim, obs

    async def _commit(self, batch: Sequence[Result]) -> int:
        """Commit a batch (rule by rule if it fails as a whole); how many were committed."""
        try:
            outcomes = await self._recorder.commit_many(batch, now=self._clock())
        except _PASSING as e:
            if len(batch) > 1:
                log.warning("alert evaluations not committed together", n=len(batch), error=repr(e))
                return sum([await self._commit([result]) for result in batch])
            # The lease lapses and the rule is claimed again with the same time.
            rule = batch[0][0].rule
            log.warning("alert evaluation not committed", rule_id=rule.rule_id, error=repr(e))
            return 0
        for (claim, _), outcome in zip(batch, outcomes, strict=True):
            rule = claim.rule
            if outcome is None:
                log.warning("alert evaluation lease lost", tenant=rule.tenant, rule_id=rule.rule_id)
                continue
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
        return sum(1 for outcome in outcomes if outcome is not None)
