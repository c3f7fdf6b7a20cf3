"""The reports service in-process over real NATS and PostgreSQL, with a fixed section
source (a fake of our own collaborator), an injectable clock and a fault point."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from northstar.reports.v1 import reports_pb2 as pb
from northstar.reports.v1 import reports_pb2_grpc
from northstar_reports.bootstrap import build_host
from northstar_reports.settings import ReportsSettings
from northstar_runtime.service import ServiceHost

ADMIN_KEY = "reports-admin-key-01"
READ_KEY = "reports-read-key-01"
OTHER_ADMIN_KEY = "reports-admin-key-02"
API_KEYS = f"acme:admin:{ADMIN_KEY},acme:read:{READ_KEY},globex:admin:{OTHER_ADMIN_KEY}"


def auth(key: str = ADMIN_KEY) -> tuple[tuple[str, str]]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


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


class Clock:
    """A settable clock (epoch seconds), real time unless set."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self) -> float:
        return time.time() if self.at is None else self.at

    def set(self, at: datetime) -> None:
        """Read `at` from now on."""
        self.at = at.timestamp()


class FixedSections:
    """A section source answering one key metric per section asked, and counting calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        # A schedule id here gathers only once its event is set.
        self.hold: dict[str, asyncio.Event] = {}

    async def gather(
        self,
        *,
        tenant: str,
        schedule: pb.Schedule,
        period: pb.Period,
        sections: Sequence[pb.Section.ValueType],
    ) -> pb.Report:
        self.calls.append((tenant, schedule.schedule_id, period.start_date))
        if schedule.schedule_id in self.hold:
            await self.hold[schedule.schedule_id].wait()
        report = pb.Report()
        report.key_metrics.metrics.add(name="dau", label="Daily active users", value=42.0)
        report.errors.add(section=pb.SECTION_ALERTS, message="alerts: UNAVAILABLE test")
        return report


class ReportsHosts:
    """Starts reports hosts on one namespace (settings overridable) and stops them.

    Scheduling and delivery are quick here: short polls, tiny backoffs, no jitter; the
    default schedules are off unless a test asks for them.
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
            "reports_poll_seconds": 0.1,
            "reports_default_schedules": False,
            "reports_lease_margin_seconds": 1.0,
            "reports_generation_timeout_seconds": 5.0,
            "delivery_poll_seconds": 0.05,
            "delivery_backoff_initial_seconds": 0.05,
            "delivery_backoff_max_seconds": 0.2,
            "delivery_backoff_jitter_seconds": 0,
            "delivery_lease_margin_seconds": 1.0,
            "http_timeout_seconds": 5.0,
            "smtp_timeout_seconds": 5.0,
            "smtp_security": "none",
        }
        self.running: list[ServiceHost] = []
        self.sections = FixedSections()
        self.clock = Clock()

    async def start(
        self, *, fault: Callable[[str], Awaitable[None]] | None = None, **overrides: Any
    ) -> ServiceHost:
        """A started host with these settings changed."""
        host = build_host(
            ReportsSettings(**{**self._base, **overrides}),
            configure_process=False,
            sections=self.sections,
            clock=self.clock,
            fault=fault,
        )
        await host.start()
        self.running.append(host)
        return host

    async def stop(self, host: ServiceHost) -> None:
        """Stop one host."""
        self.running.remove(host)
        await host.stop()


@pytest.fixture
async def hosts(nats_url: str, database_url: str, namespace: str) -> AsyncIterator[ReportsHosts]:
    """Reports hosts for the test; those still running are stopped at the end."""
    h = ReportsHosts(nats_url, database_url, namespace)
    try:
        yield h
    finally:
        for host in reversed(h.running):
            await host.stop()


def pool_of(host: ServiceHost) -> asyncpg.Pool:
    """The host's PostgreSQL pool (its schema on the search path)."""
    assert host.resources is not None and host.resources.pool is not None
    return host.resources.pool


def stub_of(host: ServiceHost) -> reports_pb2_grpc.ReportsServiceStub:
    """A stub of the host's ReportsService (its channel closes with the test's loop)."""
    return reports_pb2_grpc.ReportsServiceStub(grpc.aio.insecure_channel(f"127.0.0.1:{host.port}"))


async def subject_counts(host: ServiceHost, aggregate: str) -> dict[str, int]:
    """Messages per subject of the reports' `aggregate` subjects (report, delivery, ...)."""
    assert host.resources is not None
    log = host.resources.log
    prefix = log.topology.domain_subject("reports", "*", aggregate, "")
    info = await log.js.stream_info(log.topology.domain_stream, subjects_filter=f"{prefix}*")
    return dict(info.state.subjects or {})


def daily(schedule_id: str = "ops", **fields: Any) -> pb.Schedule:
    """A daily schedule at 09:00 UTC."""
    base: dict[str, Any] = {
        "schedule_id": schedule_id,
        "name": "Ops daily",
        "kind": pb.REPORT_KIND_DAILY,
        "cron": "0 9 * * *",
        "time_zone": "UTC",
    }
    return pb.Schedule(**{**base, **fields})


def utc(*args: int) -> datetime:
    """An aware UTC datetime."""
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
