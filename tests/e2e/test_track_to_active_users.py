"""Track → log → projector → read model → ActiveUsers, through gRPC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import metrics_pb2
from northstar_harness.eventually import assert_eventually

from .conftest import READER_KEY, WRITER_KEY, Suite, auth

# A minute ago, not noon: an event from later today would be refused as from the future.
TODAY = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)


def ts(when: datetime) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(when)
    return t


def event(
    event_id: str, user: str, days_ago: int, name: str = "page.view", **kw: object
) -> ingest_pb2.Event:
    e = ingest_pb2.Event(
        event_id=event_id, event=name, user_id=user, timestamp=ts(TODAY - timedelta(days=days_ago))
    )
    for k, v in kw.items():
        setattr(e, k, v)
    return e


async def active_users(
    suite: Suite, first: datetime, last: datetime
) -> metrics_pb2.ActiveUsersResponse:
    return await suite.metrics.ActiveUsers(
        metrics_pb2.ActiveUsersRequest(
            from_date=first.date().isoformat(), to_date=last.date().isoformat()
        ),
        metadata=auth(READER_KEY),
        timeout=5,
    )


async def test_events_become_active_users(suite: Suite) -> None:
    request = ingest_pb2.TrackRequest(
        events=[
            event("e1", "u1", 0),
            event("e2", "u2", 0),
            event("e3", "u1", 3),
            event("e4", "u3", 10),
            event("e5", "", 0, name="marketing.spend"),
        ]
    )
    response = await suite.ingest.Track(request, metadata=auth(WRITER_KEY), timeout=5)
    assert [r.status for r in response.results] == [ingest_pb2.EVENT_STATUS_ACCEPTED] * 5
    assert response.accepted == 5

    async def counted() -> bool:
        answer = await active_users(suite, TODAY, TODAY)
        day = answer.days[0]
        assert (day.dau, day.wau, day.mau) == (2, 2, 3)
        assert day.stickiness == pytest.approx(2 / 3)
        return True

    await assert_eventually(counted, timeout=30)


async def test_duplicates_and_redelivery_change_nothing(suite: Suite) -> None:
    batch = ingest_pb2.TrackRequest(events=[event("d1", "u1", 1), event("d2", "u2", 1)])
    first = await suite.ingest.Track(batch, metadata=auth(WRITER_KEY), timeout=5)
    assert first.accepted == 2
    retry = await suite.ingest.Track(batch, metadata=auth(WRITER_KEY), timeout=5)
    assert [r.status for r in retry.results] == [ingest_pb2.EVENT_STATUS_DUPLICATE] * 2
    # The same id with another user, in another request: a conflict, the first stands.
    conflict = ingest_pb2.TrackRequest(events=[event("d1", "u9", 1), event("d3", "u3", 1)])
    third = await suite.ingest.Track(conflict, metadata=auth(WRITER_KEY), timeout=5)
    assert [r.status for r in third.results] == [
        ingest_pb2.EVENT_STATUS_DUPLICATE,
        ingest_pb2.EVENT_STATUS_ACCEPTED,
    ]
    yesterday = TODAY - timedelta(days=1)

    async def counted() -> bool:
        answer = await active_users(suite, yesterday, yesterday)
        assert answer.days[0].dau == 3
        return True

    await assert_eventually(counted, timeout=30)


async def test_late_event_changes_the_past(suite: Suite) -> None:
    await suite.ingest.Track(
        ingest_pb2.TrackRequest(events=[event("l1", "u1", 0)]), metadata=auth(WRITER_KEY), timeout=5
    )
    await suite.ingest.Track(
        ingest_pb2.TrackRequest(events=[event("l2", "u2", 20)]),
        metadata=auth(WRITER_KEY),
        timeout=5,
    )
    first = TODAY - timedelta(days=25)

    async def counted() -> bool:
        answer = await active_users(suite, first, TODAY)
        by_date = {d.date: d for d in answer.days}
        late_day = (TODAY - timedelta(days=20)).date().isoformat()
        assert by_date[late_day].dau == 1
        assert by_date[late_day].mau == 1
        assert by_date[TODAY.date().isoformat()].mau == 2
        assert by_date[TODAY.date().isoformat()].wau == 1
        return True

    await assert_eventually(counted, timeout=30)


async def test_read_key_cannot_ingest_and_ingest_key_cannot_read(suite: Suite) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await suite.ingest.Track(
            ingest_pb2.TrackRequest(events=[event("x", "u", 0)]),
            metadata=auth(READER_KEY),
            timeout=5,
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as denied_read:
        await suite.metrics.ActiveUsers(
            metrics_pb2.ActiveUsersRequest(from_date="2026-01-01", to_date="2026-01-02"),
            metadata=auth(WRITER_KEY),
            timeout=5,
        )
    assert denied_read.value.code() == grpc.StatusCode.PERMISSION_DENIED
