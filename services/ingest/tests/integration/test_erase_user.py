"""EraseUser: the erasure lands in the events log on the user's partition, once."""

from __future__ import annotations

import grpc
import nats
import nats.js.errors
import pytest

from northstar.ingest.v1 import ingest_pb2
from northstar.log.v1 import log_pb2
from northstar_ingest.domain.partitioning import partition_of
from northstar_ingest.redaction import Redaction, redact_log
from northstar_runtime.codec import TYPE_HEADER, USER_ERASED, decode_events_entry
from northstar_runtime.log import LogClient

from .conftest import (
    ADMIN_KEY,
    DAY_US,
    OTHER_WRITER_KEY,
    PARTITIONS,
    READER_KEY,
    WRITER_KEY,
    IngestUnderTest,
    LoggedEvent,
    auth,
    error_details,
    event,
    now_us,
    timestamp,
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


async def test_redacting_the_log_deletes_the_messages_of_erased_history_alone(
    ingest: IngestUnderTest,
) -> None:
    erased = "redact-me"
    p = partition_of(erased, PARTITIONS)
    # Another user on the same partition: the two share a message when sent together.
    other = next(u for u in (f"other-{i}" for i in range(100)) if partition_of(u, PARTITIONS) == p)
    day_ago = now_us() - DAY_US
    await ingest.track([event("a1", user_id=erased), event("a2", user_id=erased)])
    await ingest.track([event("a3", user_id=erased), event("b1", user_id=other)])
    await ingest.track([event("b2", user_id=other)])
    done = await ingest.stub.EraseUser(
        ingest_pb2.EraseUserRequest(user_id=erased), metadata=auth(ADMIN_KEY), timeout=10
    )
    # After the erasure: a late retry of old history (dropped by the projections), and a
    # new history.
    await ingest.track([event("a4", user_id=erased, timestamp=timestamp(day_ago))])
    await ingest.track([event("a5", user_id=erased)])
    seqs = {e.event.event_id: e.stream_seq for e in await ingest_logged(ingest)}

    log_client = await LogClient.connect(ingest.nats_url, ingest.topology, name="redactor")
    try:
        assert await redact_log(log_client) == Redaction(erasures=1, deleted=2, kept_shared=1)
        left = await ingest_logged(ingest)
        assert sorted(e.event.event_id for e in left) == ["a3", "a5", "b1", "b2"]
        assert {e.stream_seq for e in left} == {seqs[i] for i in ("a3", "a5", "b1", "b2")}
        _, _, record = await _entry(ingest, done.log_position)  # the erasure itself stays
        assert isinstance(record, log_pb2.UserErased)
        # Again: nothing more to delete.
        assert await redact_log(log_client) == Redaction(erasures=1, deleted=0, kept_shared=1)
    finally:
        await log_client.close()


async def ingest_logged(ingest: IngestUnderTest) -> list[LoggedEvent]:
    """The logged events, erasure entries left out."""
    nc = await nats.connect(ingest.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(ingest.topology.events_stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(ingest.topology.events_stream, seq)
            except nats.js.errors.NotFoundError:
                continue  # deleted
            record = decode_events_entry(msg.data or b"", dict(msg.headers or {}))
            if isinstance(record, log_pb2.EventBatch):
                out += [
                    LoggedEvent(msg.subject, record.tenant, record.partition, seq, e)
                    for e in record.events
                ]
        return out
    finally:
        await nc.close()
