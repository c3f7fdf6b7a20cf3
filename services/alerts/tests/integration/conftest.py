"""The alerts service in-process over real NATS."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import grpc
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

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
from northstar_runtime.service import ServiceHost
from northstar_runtime.topology import Topology

ADMIN_KEY = "alerts-admin-key-01"
READ_KEY = "alerts-read-key-01"
OTHER_ADMIN_KEY = "alerts-admin-key-02"
API_KEYS = f"acme:admin:{ADMIN_KEY},acme:read:{READ_KEY},globex:admin:{OTHER_ADMIN_KEY}"


def violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT's BadRequest detail names, in order."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            return [v.field for v in request.field_violations]
    return []


def auth(key: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


class AlertsHosts:
    """Starts alerts hosts on one namespace (settings overridable) and stops them.

    Delivery is quick here: tiny backoffs without jitter and a short poll.
    """

    def __init__(self, nats_url: str, database_url: str, namespace: str) -> None:
        self._base: dict[str, Any] = {
            "grpc_address": "127.0.0.1:0",
            "nats_url": nats_url,
            "database_url": database_url,
            "northstar_namespace": namespace,
            "northstar_api_keys": API_KEYS,
            "northstar_partitions": 4,
            "shutdown_grace_seconds": 0.5,
            "delivery_poll_seconds": 0.05,
            "delivery_backoff_initial_seconds": 0.05,
            "delivery_backoff_max_seconds": 0.2,
            "delivery_backoff_jitter_seconds": 0,
            "http_timeout_seconds": 5.0,
            # No evaluations here, and nothing listens at metrics' address: TestRule meets
            # an unreachable metrics service.
            "alerts_evaluator_enabled": False,
            "metrics_service_address": "127.0.0.1:1",
            "metrics_service_deadline_seconds": 1.0,
            "metrics_service_attempts": 1,
        }
        self.running: list[ServiceHost] = []

    async def start(self, **overrides: Any) -> ServiceHost:
        """A started host with these settings changed."""
        host = build_host(AlertsSettings(**{**self._base, **overrides}), configure_process=False)
        await host.start()
        self.running.append(host)
        return host

    async def stop(self, host: ServiceHost) -> None:
        """Stop one host (drains its dispatcher)."""
        self.running.remove(host)
        await host.stop()


@pytest.fixture
async def alerts_hosts(
    nats_url: str, database_url: str, namespace: str
) -> AsyncIterator[AlertsHosts]:
    """Alerts hosts for the test; those still running are stopped at the end."""
    hosts = AlertsHosts(nats_url, database_url, namespace)
    try:
        yield hosts
    finally:
        for host in reversed(hosts.running):
            await host.stop()


def pool_of(host: ServiceHost) -> asyncpg.Pool:
    """The host's PostgreSQL pool (its schema on the search path)."""
    assert host.resources is not None and host.resources.pool is not None
    return host.resources.pool


@pytest.fixture
async def stub(alerts_hosts: AlertsHosts) -> AsyncIterator[alerts_pb2_grpc.AlertsServiceStub]:
    """A stub of an alerts service started for the test."""
    host = await alerts_hosts.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
    try:
        yield alerts_pb2_grpc.AlertsServiceStub(channel)
    finally:
        await channel.close()


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
