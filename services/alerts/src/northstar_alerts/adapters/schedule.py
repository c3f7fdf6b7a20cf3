"""The evaluation schedule: every rule of every tenant, projected from the log, with a lease.

`RulesProjection` folds rule events (`domain.alerts.<tenant>.rule.<id>`) into `alert_rules`;
a created or changed rule is due at once. `RuleSchedule` hands due rules to evaluators.

Leases, and why evaluations happen once. A claim is one statement: it locks due rows whose
lease is free or expired (`FOR UPDATE SKIP LOCKED`: rows another replica is claiming are
passed over, not waited for), and sets `lease_owner`, `lease_until` and `eval_at` (the
evaluation's time). The evaluator commits its result in a transaction that first checks,
with the row locked, that it still owns the lease for that `eval_at`, and in the same
transaction frees the lease and moves `next_due_at` past it. So:

- two replicas never claim one rule at once (row locks, then the lease);
- a replica that dies mid-evaluation loses nothing: once `lease_until` passes, another
  claims the rule with the same `eval_at`, and writes the notices and publishes the
  transition ids the first would have (deduplicated if the first had got that far);
- a replica that is merely slow and lost its lease to another finds it no longer owns it
  and writes nothing: each scheduled evaluation's result is committed exactly once.

The lease is longer than the per-rule evaluation deadline, so a live evaluator never loses
it. An evaluator far behind (service down for hours) evaluates once, now, and schedules the
next run an interval later: missed evaluations are not replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import orjson

from northstar_alerts.adapters.rule_store import decode_event
from northstar_alerts.domain import rule_events
from northstar_alerts.domain.rule_events import rule_from_json, rule_to_json
from northstar_alerts.domain.rules import Rule
from northstar_runtime.codec import TYPE_HEADER
from northstar_runtime.db import Connection
from northstar_runtime.projector import LogEntry


def _tenant_and_key(subject: str) -> tuple[str, str, str]:
    # [namespace.]domain.alerts.<tenant>.<aggregate>.<key>
    parts = subject.split(".")
    return parts[-3], parts[-2], parts[-1]


class RulesProjection:
    """Folds rule events into `alert_rules`; alert events on the same stream are skipped."""

    name = "rules"

    async def apply(self, conn: Connection, entries: Sequence[LogEntry]) -> None:
        """Upsert each rule's definition; a redelivered version changes nothing."""
        for entry in entries:
            if entry.headers.get(TYPE_HEADER) not in rule_events.EVENT_TYPES:
                continue
            tenant, aggregate, rule_id = _tenant_and_key(entry.subject)
            if aggregate != "rule":
                continue
            event = decode_event(entry.data, dict(entry.headers))
            if event.type == rule_events.DELETED:
                await conn.execute(
                    "UPDATE alert_rules SET deleted = true, version = $3"
                    " WHERE tenant = $1 AND rule_id = $2 AND version < $3",
                    tenant,
                    rule_id,
                    entry.seq,
                )
                continue
            assert event.rule is not None
            await conn.execute(
                "INSERT INTO alert_rules (tenant, rule_id, version, rule, interval_s)"
                " VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (tenant, rule_id) DO UPDATE"
                " SET version = EXCLUDED.version, rule = EXCLUDED.rule,"
                " interval_s = EXCLUDED.interval_s, next_due_at = '-Infinity'"
                " WHERE alert_rules.version < EXCLUDED.version",
                tenant,
                rule_id,
                entry.seq,
                orjson.dumps(rule_to_json(event.rule)).decode(),
                event.rule.interval_s,
            )

    async def reset(self, conn: Connection) -> None:
        """Forget the rules (a replay refolds them); states and history are kept."""
        await conn.execute("TRUNCATE alert_rules")


@dataclass(frozen=True, slots=True)
class Claim:
    """A rule handed to one evaluator, to evaluate as of `at`."""

    rule: Rule
    at: float


class RuleSchedule:
    """Claims due rules under a lease and completes their evaluations."""

    def __init__(self, pool: asyncpg.Pool, *, owner: str, lease_s: float) -> None:
        self.pool = pool
        self.owner = owner
        self._lease_s = lease_s

    async def claim(self, now: float, limit: int) -> list[Claim]:
        """Up to `limit` rules due at `now`, leased to this owner."""
        if limit <= 0:
            return []
        rows = await self.pool.fetch(
            "WITH due AS (SELECT tenant, rule_id FROM alert_rules"
            "  WHERE NOT deleted AND next_due_at <= $1"
            "  AND (lease_until IS NULL OR lease_until < $1)"
            "  ORDER BY next_due_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            " UPDATE alert_rules r SET lease_owner = $3, lease_until = $1 + $4,"
            "  eval_at = COALESCE(r.eval_at, CASE WHEN $1 - r.next_due_at >= r.interval_s"
            "   THEN $1 ELSE r.next_due_at END)"
            " FROM due WHERE r.tenant = due.tenant AND r.rule_id = due.rule_id"
            " RETURNING r.rule, r.eval_at",
            now,
            limit,
            self.owner,
            self._lease_s,
        )
        return [Claim(rule_from_json(orjson.loads(r["rule"])), float(r["eval_at"])) for r in rows]

    async def hold(self, conn: Connection, claim: Claim) -> bool:
        """In the caller's transaction: lock the rule's row if this owner still leases it."""
        return bool(await self.hold_of(conn, [claim]))

    async def hold_of(self, conn: Connection, claims: Sequence[Claim]) -> set[tuple[str, str]]:
        """In the caller's transaction: lock the rows of the claims this owner still leases
        (for their evaluation time), in key order; their (tenant, rule_id)s."""
        rows = await conn.fetch(
            "SELECT r.tenant, r.rule_id FROM alert_rules r"
            " JOIN unnest($1::text[], $2::text[], $3::float8[]) AS c(tenant, rule_id, eval_at)"
            " ON r.tenant = c.tenant AND r.rule_id = c.rule_id AND r.eval_at = c.eval_at"
            " WHERE r.lease_owner = $4 ORDER BY r.tenant, r.rule_id FOR UPDATE OF r",
            [c.rule.tenant for c in claims],
            [c.rule.rule_id for c in claims],
            [c.at for c in claims],
            self.owner,
        )
        return {(r["tenant"], r["rule_id"]) for r in rows}

    async def complete(self, conn: Connection, claim: Claim, *, now: float, error: str) -> None:
        """In the caller's transaction (after `hold`): free the lease, schedule the next run."""
        await self.complete_of(conn, [(claim, error)], now=now)

    async def complete_of(
        self, conn: Connection, done: Sequence[tuple[Claim, str]], *, now: float
    ) -> None:
        """In the caller's transaction (after `hold_of`), for each (claim, error): free the
        lease, schedule the next run."""
        if not done:
            return
        await conn.execute(
            "UPDATE alert_rules r SET next_due_at = GREATEST(r.eval_at + r.interval_s, $4),"
            " last_evaluated_at = r.eval_at, last_error = c.error, eval_at = NULL,"
            " lease_owner = NULL, lease_until = NULL"
            " FROM unnest($1::text[], $2::text[], $3::text[]) AS c(tenant, rule_id, error)"
            " WHERE r.tenant = c.tenant AND r.rule_id = c.rule_id",
            [c.rule.tenant for c, _ in done],
            [c.rule.rule_id for c, _ in done],
            [e for _, e in done],
            now,
        )
