"""The events stream's two record types: EventBatch and UserErased."""

from __future__ import annotations

import pytest

from northstar.log.v1 import log_pb2
from northstar_runtime.codec import (
    SCHEMA_HEADER,
    TYPE_HEADER,
    UnknownRecord,
    decode_batch,
    decode_events_entry,
    encode_batch,
    encode_erasure,
)


def test_an_events_entry_is_a_batch_or_an_erasure() -> None:
    batch = [log_pb2.StoredEvent(event_id="e1", event="page.view", user_id="u1")]
    data, headers = encode_batch("acme", 3, batch)
    assert decode_events_entry(data, headers) == log_pb2.EventBatch(
        tenant="acme", partition=3, events=batch
    )
    erasure = log_pb2.UserErased(
        tenant="acme", partition=3, user_id="u1", erasure_id="x", erased_at_us=5
    )
    data, headers = encode_erasure(erasure)
    assert headers == {TYPE_HEADER: "UserErased", SCHEMA_HEADER: "1"}
    assert decode_events_entry(data, headers) == erasure
    # A reader that knows only batches refuses an erasure instead of misreading it.
    with pytest.raises(UnknownRecord):
        decode_batch(data, headers)
    with pytest.raises(UnknownRecord):
        decode_events_entry(data, {TYPE_HEADER: "UserErased", SCHEMA_HEADER: "2"})
