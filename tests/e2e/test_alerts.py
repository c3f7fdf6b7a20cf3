"""Alerts over the suite: ingest -> metrics -> the alerts evaluator, through gRPC."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import kpis_pb2
from northstar_alerts.adapters.metrics_client import MetricsClient
from northstar_alerts.domain.rules import Anomaly, RelativeChange, Rule, Series, Threshold
from northstar_harness.eventually import assert_eventually

from .conftest import READER_KEY, SERVICE_KEY, WRITER_KEY, Suite, auth

# A minute ago: an event from later today would be refused as from the future.
NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(when)
    return t


def _event(event_id: str, name: str, user: str, when: datetime) -> ingest_pb2.Event:
    return ingest_pb2.Event(event_id=event_id, event=name, user_id=user, timestamp=_ts(when))


async def _track(suite: Suite, events: list[ingest_pb2.Event]) -> None:
    response = await suite.ingest.Track(
        ingest_pb2.TrackRequest(events=events), metadata=auth(WRITER_KEY), timeout=10
    )
    assert response.accepted == len(events)


async def _activation(suite: Suite) -> float | None:
    answer = await suite.metrics.Kpis(
        kpis_pb2.KpisRequest(as_of_date=NOW.date().isoformat()),
        metadata=auth(READER_KEY),
        timeout=10,
    )
    [kpi] = [k for k in answer.kpis if k.name == "activation_rate"]
    return kpi.value if kpi.HasField("value") else None


def _rule(series: Series, condition: Threshold | RelativeChange | Anomaly) -> Rule:
    return Rule(rule_id="r", tenant="acme", name="r", series=series, condition=condition)


@pytest.fixture
async def metrics_client(suite: Suite) -> AsyncIterator[MetricsClient]:
    """A metrics client of the suite's metrics service, with the service key."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{suite.metrics_host.port}")
    client = MetricsClient(channel, SERVICE_KEY, deadline_s=10)
    try:
        yield client
    finally:
        await client.close()


async def test_the_metrics_client_reads_kpis_and_daily_metrics(
    suite: Suite, metrics_client: MetricsClient
) -> None:
    signup = NOW - timedelta(days=10)
    events = [_event(f"s{i}", "user.signup", f"u{i}", signup) for i in range(4)]
    events.append(_event("w0", "workflow.created", "u0", signup + timedelta(minutes=5)))
    # DAU: 3 users yesterday, 1 the day before.
    events += [_event(f"v{i}", "page.view", f"u{i}", NOW - timedelta(days=1)) for i in range(3)]
    events.append(_event("v9", "page.view", "u0", NOW - timedelta(days=2)))
    await _track(suite, events)

    async def projected() -> bool:
        return await _activation(suite) == 0.25

    await assert_eventually(projected, timeout=30)
    at = NOW.timestamp()

    kpi = await metrics_client.observe(
        _rule(Series("kpi", "activation_rate"), Threshold("<", critical=0.2)), at
    )
    assert (kpi.value, kpi.previous, kpi.error) == (0.25, None, "")

    async def dau_counted() -> bool:
        dau = await metrics_client.observe(
            _rule(Series("metric", "dau"), RelativeChange(">", warning=1.0)), at
        )
        assert (dau.value, dau.previous, dau.error) == (3.0, 1.0, "")
        return True

    await assert_eventually(dau_counted, timeout=30)
    anomaly = await metrics_client.observe(_rule(Series("metric", "dau"), Anomaly()), at)
    # The series starts 10 days ago: the 9 days before yesterday are the baseline.
    assert anomaly.value == 3.0
    assert anomaly.baseline == (4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


async def test_an_unreachable_metrics_service_is_an_error_observation() -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    client = MetricsClient(channel, SERVICE_KEY, deadline_s=1, attempts=2, backoff_s=0.01)
    rule = _rule(Series("kpi", "activation_rate"), Threshold("<", critical=0.2))
    try:
        obs = await client.observe(rule, time.time())
    finally:
        await client.close()
    assert obs.value is None
    assert obs.error.startswith("metrics UNAVAILABLE")
