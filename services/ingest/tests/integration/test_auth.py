"""Every call is authenticated; scopes decide what a key may do."""

from __future__ import annotations

import grpc
import pytest

from northstar.ingest.v1 import ingest_pb2

from .conftest import (
    ACCEPTED,
    ADMIN_KEY,
    DAY_US,
    READER_KEY,
    REJECTED,
    TENANT,
    WRITER_KEY,
    IngestUnderTest,
    error_details,
    event,
    now_us,
    statuses,
)


def one_event() -> ingest_pb2.TrackRequest:
    return ingest_pb2.TrackRequest(events=[event("auth-1", user_id="u-1")])


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        pytest.param((), "MISSING_API_KEY", id="no-key"),
        pytest.param((("authorization", "Bearer "),), "MISSING_API_KEY", id="empty-key"),
        pytest.param((("authorization", f"Basic {WRITER_KEY}"),), "MISSING_API_KEY", id="basic"),
        pytest.param((("authorization", "Bearer not-a-key"),), "INVALID_API_KEY", id="unknown"),
        pytest.param(
            (("authorization", f"Bearer {WRITER_KEY}x"),), "INVALID_API_KEY", id="near-miss"
        ),
    ],
)
async def test_without_a_valid_key_is_unauthenticated(
    ingest: IngestUnderTest, metadata: tuple[tuple[str, str], ...], reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await ingest.stub.Track(one_event(), metadata=metadata, timeout=10)
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    details = error_details(failed.value)
    assert details.error_info is not None
    assert details.error_info.reason == reason
    assert await ingest.logged_events() == []


async def test_the_stream_needs_a_key_too(ingest: IngestUnderTest) -> None:
    call = ingest.stub.TrackStream(
        iter([ingest_pb2.TrackStreamRequest(events=[event("s-1")], request_id="r")]), timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async for _ in call:
            pass
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await ingest.logged_events() == []


async def test_a_read_key_may_not_ingest(ingest: IngestUnderTest) -> None:
    error = await ingest.track_error(one_event(), key=READER_KEY)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    details = error_details(error)
    assert details.error_info is not None
    assert details.error_info.reason == "MISSING_SCOPE"
    assert await ingest.logged_events() == []


async def test_historical_import_needs_the_admin_scope(ingest: IngestUnderTest) -> None:
    old = now_us() - 500 * DAY_US
    request = ingest_pb2.TrackRequest(
        events=[event("old-1", user_id="u-1", timestamp_us=old)], historical_import=True
    )
    error = await ingest.track_error(request, key=WRITER_KEY)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(error).error_info.reason == "MISSING_SCOPE"  # type: ignore[union-attr]
    assert await ingest.logged_events() == []

    # Outside historical import, 500 days back is out of the window, whatever the key.
    for key in (WRITER_KEY, ADMIN_KEY):
        response = await ingest.track([event("old-1", user_id="u-1", timestamp_us=old)], key=key)
        assert statuses(response) == [REJECTED]
        rejection = response.results[0].rejection
        assert (rejection.field, rejection.rule) == ("timestamp", "out_of_window")

    imported = await ingest.track(
        [event("old-1", user_id="u-1", timestamp_us=old)], key=ADMIN_KEY, historical_import=True
    )
    assert statuses(imported) == [ACCEPTED]
    logged = await ingest.logged_by_id()
    assert set(logged) == {"old-1"}
    assert logged["old-1"].tenant == TENANT
    assert logged["old-1"].event.timestamp_us == logged["old-1"].event.original_timestamp_us == old


async def test_historical_import_still_refuses_the_future(ingest: IngestUnderTest) -> None:
    response = await ingest.track(
        [event("future", user_id="u-1", timestamp_us=now_us() + 2 * 3600 * 1_000_000)],
        key=ADMIN_KEY,
        historical_import=True,
    )
    assert statuses(response) == [REJECTED]
    rejection = response.results[0].rejection
    assert (rejection.field, rejection.rule) == ("timestamp", "out_of_window")


async def test_an_admin_key_may_ingest(ingest: IngestUnderTest) -> None:
    response = await ingest.track([event("admin-1", user_id="u-1")], key=ADMIN_KEY)
    assert statuses(response) == [ACCEPTED]
