"""The per-tenant rate limit: RESOURCE_EXHAUSTED with a RetryInfo, nothing stored."""

from __future__ import annotations

import grpc
import pytest

from northstar.ingest.v1 import ingest_pb2

from .conftest import (
    ACCEPTED,
    OTHER_WRITER_KEY,
    IngestUnderTest,
    StartIngest,
    error_details,
    event,
    statuses,
)


def batch(n: int, prefix: str) -> list[ingest_pb2.Event]:
    return [event(f"{prefix}-{i}", user_id=f"u-{i % 7}") for i in range(n)]


@pytest.fixture
async def limited(start_ingest: StartIngest) -> IngestUnderTest:
    """Ingest allowing 100 events per second per tenant, in bursts of 100."""
    return await start_ingest(ingest_rate_limit=100, ingest_rate_burst=100)


def retry_delay_seconds(error: grpc.aio.AioRpcError) -> float:
    details = error_details(error)
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.error_info is not None
    assert details.error_info.reason == "RATE_LIMITED"
    assert details.retry_info is not None, "RESOURCE_EXHAUSTED without RetryInfo"
    return float(details.retry_info.retry_delay.ToNanoseconds()) / 1e9


async def test_a_batch_over_the_burst_passes_once_and_leaves_a_debt(
    limited: IngestUnderTest,
) -> None:
    # A batch larger than the burst could never pass if it had to fit; it passes on a
    # full bucket and the next request waits for the overdraft (50) plus its own 10.
    big = await limited.track(batch(150, "big"))
    assert statuses(big) == [ACCEPTED] * 150
    error = await limited.track_error(ingest_pb2.TrackRequest(events=batch(10, "next")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0.4 < retry_delay_seconds(error) <= 0.6
    assert set(await limited.logged_by_id()) == {f"big-{i}" for i in range(150)}


async def test_a_second_batch_beyond_the_rate_waits_for_tokens(limited: IngestUnderTest) -> None:
    first = await limited.track(batch(100, "first"))
    assert statuses(first) == [ACCEPTED] * 100

    error = await limited.track_error(ingest_pb2.TrackRequest(events=batch(50, "second")))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # 50 tokens at 100 per second: at most half a second, less what refilled meanwhile.
    assert 0 < retry_delay_seconds(error) <= 0.5
    assert set(await limited.logged_by_id()) == {f"first-{i}" for i in range(100)}

    # The limit is per tenant: another tenant still has its whole burst.
    other = await limited.track(batch(100, "other"), key=OTHER_WRITER_KEY)
    assert statuses(other) == [ACCEPTED] * 100
