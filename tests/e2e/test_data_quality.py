"""Ingest's answers reach DataQuality: rejections by reason, duplicates, id conflicts."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from northstar.ingest.v1 import ingest_pb2
from northstar.metrics.v1 import quality_pb2
from northstar_harness.eventually import assert_eventually

from .conftest import READER_KEY, WRITER_KEY, Suite, auth


def event(event_id: str, user: str, name: str = "page.view") -> ingest_pb2.Event:
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(datetime.now(UTC))
    return ingest_pb2.Event(event_id=event_id, event=name, user_id=user, timestamp=t)


async def test_rejections_duplicates_and_conflicts_are_counted(suite: Suite) -> None:
    batch = ingest_pb2.TrackRequest(
        events=[
            event("q1", "u1"),
            event("q2", "u2"),
            event("q3", "u3"),
            event("q4", "u4", "bad name!"),
        ]
    )
    first = await suite.ingest.Track(batch, metadata=auth(WRITER_KEY), timeout=5)
    assert (first.accepted, first.duplicate, first.rejected) == (3, 0, 1)
    retry = await suite.ingest.Track(batch, metadata=auth(WRITER_KEY), timeout=5)
    assert (retry.accepted, retry.duplicate, retry.rejected) == (0, 3, 1)
    conflict = await suite.ingest.Track(
        ingest_pb2.TrackRequest(events=[event("q1", "someone-else")]),
        metadata=auth(WRITER_KEY),
        timeout=5,
    )
    assert conflict.duplicate == 1
    today = datetime.now(UTC).date().isoformat()

    async def counted() -> quality_pb2.DataQualityResponse:
        answer = await suite.metrics.DataQuality(
            quality_pb2.DataQualityRequest(from_date=today, to_date=today),
            metadata=auth(READER_KEY),
            timeout=5,
        )
        assert (answer.accepted, answer.duplicates, answer.rejected, answer.id_conflicts) == (
            3,
            4,
            2,
            1,
        )
        return answer

    answer = await assert_eventually(counted, timeout=20)
    assert [(r.field, r.rule, r.count) for r in answer.rejection_reasons] == [
        ("event", "pattern", 2)
    ]
    assert answer.orphan_activity == 3  # u1, u2, u3 never signed up
