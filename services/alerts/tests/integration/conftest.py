"""The alerts service in-process over real NATS."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import grpc
import orjson
import pytest

from northstar.alerts.v1 import alerts_pb2_grpc
from northstar_alerts.adapters.alert_store import EventOutbox
from northstar_alerts.adapters.schedule import RuleSchedule, RulesProjection
from northstar_alerts.application.evaluation import EvaluationRecorder
from northstar_alerts.bootstrap import MIGRATIONS, build_host
from northstar_alerts.domain.rule_events import CREATED, RuleEvent
from northstar_alerts.domain.rule_events import event_to_json as rule_event_to_json
from northstar_alerts.domain.rules import Rule
from northstar_alerts.settings import AlertsSettings
from northstar_runtime.codec import TYPE_HEADER
from northstar_runtime.db import create_pool, load_migrations, migrate
from northstar_runtime.log import LogClient
from northstar_runtime.projector import LogEntry
from northstar_runtime.topology import Topology

ADMIN_KEY = "alerts-admin-key-01"
READ_KEY = "alerts-read-key-01"
OTHER_ADMIN_KEY = "alerts-admin-key-02"
API_KEYS = f"acme:admin:{ADMIN_KEY},acme:read:{READ_KEY},globex:admin:{OTHER_ADMIN_KEY}"


def auth(key: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


@pytest.fixture
async def stub(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[alerts_pb2_grpc.AlertsServiceStub]:
    """A stub of an alerts service started for the test."""
    settings = AlertsSettings(
        grpc_address="127.0.0.1:0",
        nats_url=nats_url,
        database_url=database_url,
        northstar_namespace=namespace,
        northstar_api_keys=API_KEYS,
        northstar_partitions=4,
        shutdown_grace_seconds=1.0,
        alerts_evaluator_enabled=False,
        # Nothing listens there: TestRule meets an unreachable metrics service.
        metrics_service_address="127.0.0.1:1",
        metrics_service_deadline_seconds=1.0,
        metrics_service_attempts=1,
    )
    host = build_host(settings, configure_process=False)
    port = await host.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield alerts_pb2_grpc.AlertsServiceStub(channel)
    finally:
        await channel.close()
        await host.stop()


@dataclass
class AlertsDb:
    """The alerts schema migrated in a fresh namespace, with the log beside it."""

    pool: asyncpg.Pool
    log: LogClient
    outbox: EventOutbox
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def schedule(self, owner: str, *, lease_s: float = 30.0) -> RuleSchedule:
        """A schedule claiming for `owner`."""
        return RuleSchedule(self.pool, owner=owner, lease_s=lease_s)

    def recorder(self, schedule: RuleSchedule) -> EvaluationRecorder:
        """A recorder committing for `schedule`'s owner."""
        return EvaluationRecorder(self.pool, schedule, self.outbox)

    async def install(self, rule: Rule) -> None:
        """Put a rule in the schedule as the projection does for its AlertRuleCreated."""
        event = RuleEvent(CREATED, rule.rule_id, rule)
        entry = LogEntry(
            seq=next(self._seq),
            subject=self.log.topology.domain_subject("alerts", rule.tenant, "rule", rule.rule_id),
            data=orjson.dumps(rule_event_to_json(event)),
            headers={TYPE_HEADER: CREATED},
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await RulesProjection().apply(conn, [entry])


@pytest.fixture
async def alerts_db(nats_url: str, database_url: str, namespace: str) -> AsyncIterator[AlertsDb]:
    """The alerts schema and the log of a fresh namespace."""
    topology = Topology(namespace)
    log = await LogClient.connect(nats_url, topology, name="alerts-db-test")
    await log.ensure_streams()
    schema = topology.schema("alerts")
    pool = await create_pool(database_url, schema)
    await migrate(pool, schema, load_migrations(MIGRATIONS))
    try:
        yield AlertsDb(pool, log, EventOutbox(pool, log))
    finally:
        await pool.close()
        await log.close()
