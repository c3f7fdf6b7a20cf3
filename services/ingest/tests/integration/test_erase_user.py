"""EraseUser: the erasure lands in the events log on the user's partition, once."""

from __future__ import annotations

import grpc
import nats
import pytest

from northstar.ingest.v1 import ingest_pb2
from northstar.log.v1 import log_pb2
from northstar_runtime.codec import TYPE_HEADER, USER_ERASED, decode_events_entry

from .conftest import (
    ADMIN_KEY,
    OTHER_WRITER_KEY,
    READER_KEY,
    WRITER_KEY,
    IngestUnderTest,
    auth,
    error_details,
    event,
    now_us,
)


async def _entry(ingest: IngestUnderTest, seq: int) -> tuple[str, dict[str, str], object]:
    """The events-stream message at `seq`: subject, headers, decoded record."""
    nc = await nats.connect(ingest.nats_url)
    try:
        msg = await nc.jetstream().get_msg(ingest.topology.events_stream, seq)
    finally:
        await nc.close()
    headers = dict(msg.headers or {})
    return msg.subject, headers, decode_events_entry(msg.data or b"", headers)


async def test_the_erasure_follows_the_users_events_on_its_partition(
    ingest: IngestUnderTest,
) -> None:
    user = "user-to-erase"
    assert (await ingest.track([event("e1", user_id=user)])).accepted == 1
    (logged,) = await ingest.logged_events()
    before = now_us()
    erased = await ingest.stub.EraseUser(
        ingest_pb2.EraseUserRequest(user_id=user), metadata=auth(ADMIN_KEY), timeout=10
    )
    assert erased.log_position == logged.stream_seq + 1
    subject, headers, record = await _entry(ingest, erased.log_position)
    assert subject == logged.subject  # the partition of the user's events
    assert headers[TYPE_HEADER] == USER_ERASED
    assert record == log_pb2.UserErased(
        tenant="acme",
        partition=logged.partition,
        user_id=user,
        erasure_id=erased.erasure_id,
        erased_at_us=erased.erased_at.ToMicroseconds(),
    )
    assert before <= erased.erased_at.ToMicroseconds() <= now_us()

    # A repeated request is the same erasure, and the log keeps one entry of it.
    again = await ingest.stub.EraseUser(
        ingest_pb2.EraseUserRequest(user_id=user), metadata=auth(ADMIN_KEY), timeout=10
    )
    assert (again.erasure_id, again.log_position) == (erased.erasure_id, erased.log_position)
    # Another user, or the same id in another tenant, is another erasure.
    other = await ingest.stub.EraseUser(
        ingest_pb2.EraseUserRequest(user_id="someone-else"), metadata=auth(ADMIN_KEY), timeout=10
    )
    assert other.erasure_id != erased.erasure_id
    assert other.log_position == erased.log_position + 1


async def test_only_an_admin_key_erases(ingest: IngestUnderTest) -> None:
    request = ingest_pb2.EraseUserRequest(user_id="u1")
    for metadata, code, reason in (
        ((), grpc.StatusCode.UNAUTHENTICATED, "MISSING_API_KEY"),
        (auth("not-a-key-0123456789"), grpc.StatusCode.UNAUTHENTICATED, "INVALID_API_KEY"),
        (auth(WRITER_KEY), grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE"),
        (auth(READER_KEY), grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE"),
        (auth(OTHER_WRITER_KEY), grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ingest.stub.EraseUser(request, metadata=metadata, timeout=10)
        details = error_details(refused.value)
        assert details.code == code
        assert details.error_info is not None and details.error_info.reason == reason


@pytest.mark.parametrize("user_id", ["", "x" * 201, "a\x00b"])
async def test_an_invalid_user_id_is_refused_with_the_field(
    ingest: IngestUnderTest, user_id: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await ingest.stub.EraseUser(
            ingest_pb2.EraseUserRequest(user_id=user_id), metadata=auth(ADMIN_KEY), timeout=10
        )
    details = error_details(refused.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.error_info is not None and details.error_info.reason == "INVALID_USER_ID"
    assert details.violated_fields == ["user_id"]
    assert await ingest.logged_events() == []
