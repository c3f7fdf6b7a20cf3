"""Track: per-event results in request order, and accepted events really in the log."""

from __future__ import annotations

import uuid
import zlib

import orjson
from google.protobuf import struct_pb2

from .conftest import (
    ACCEPTED,
    OTHER_TENANT,
    OTHER_WRITER_KEY,
    PARTITIONS,
    REJECTED,
    SECOND_US,
    TENANT,
    IngestUnderTest,
    event,
    now_us,
    statuses,
    timestamp,
)


def expected_partition(key: str) -> int:
    """The contract: CRC-32 of the UTF-8 key, modulo the partition count."""
    return zlib.crc32(key.encode("utf-8")) % PARTITIONS


def subject(ingest: IngestUnderTest, tenant: str, partition: int) -> str:
    return f"{ingest.topology.namespace}.events.{tenant}.{partition}"


async def test_accepted_events_are_in_the_log_with_their_fields(ingest: IngestUnderTest) -> None:
    properties = struct_pb2.Struct()
    properties.update({"plan": "pro", "mrr": 1200, "tags": ["a", "b"], "nested": {"z": 1, "a": 2}})
    events = [
        event("e-user", "user.signup", user_id="u-1", org_id="o-1", session_id="s-1"),
        event("e-org", "subscription.started", org_id="o-7", properties=properties),
        event("e-none", "marketing.spend", properties_json='{"amount": 500, "channel": "seo"}'),
        event("", "page.view", user_id="u-2"),
        event("e-user-2", "workflow.run", user_id="u-1", org_id="o-2"),
    ]
    before = now_us()
    response = await ingest.track(events)
    after = now_us()

    assert statuses(response) == [ACCEPTED] * 5
    assert [r.index for r in response.results] == [0, 1, 2, 3, 4]
    assert [r.event_id for r in response.results[:3]] == ["e-user", "e-org", "e-none"]
    assert response.results[4].event_id == "e-user-2"
    assigned = response.results[3].event_id
    assert uuid.UUID(assigned).version == 7
    assert (response.accepted, response.duplicate, response.rejected) == (5, 0, 0)
    assert all(not r.HasField("rejection") for r in response.results)

    logged = await ingest.logged_by_id()
    assert set(logged) == {"e-user", "e-org", "e-none", assigned, "e-user-2"}
    keys = {"e-user": "u-1", "e-org": "o-7", "e-none": "e-none", assigned: "u-2", "e-user-2": "u-1"}
    for event_id, key in keys.items():
        entry = logged[event_id]
        p = expected_partition(key)
        assert (entry.tenant, entry.partition, entry.subject) == (
            TENANT,
            p,
            subject(ingest, TENANT, p),
        ), event_id
        stored = entry.event
        assert before <= stored.received_at_us <= after
        # No timestamp: the receive time, nothing to correct.
        assert stored.timestamp_us == stored.original_timestamp_us == stored.received_at_us
        assert stored.sent_at_us == 0
        assert stored.event_id_assigned == (event_id == assigned)

    signup = logged["e-user"].event
    assert (signup.event, signup.user_id, signup.org_id, signup.session_id) == (
        "user.signup",
        "u-1",
        "o-1",
        "s-1",
    )
    assert signup.properties_json == b"{}"
    # Properties stored as compact JSON with sorted keys; integral numbers as integers.
    assert logged["e-org"].event.properties_json == (
        b'{"mrr":1200,"nested":{"a":2,"z":1},"plan":"pro","tags":["a","b"]}'
    )
    assert logged["e-none"].event.properties_json == b'{"amount":500,"channel":"seo"}'
    assert orjson.loads(logged["e-none"].event.properties_json) == {"amount": 500, "channel": "seo"}
    # One user's events stay in one partition, in request order.
    same_user = [e for e in await ingest.logged_events() if e.event.user_id == "u-1"]
    assert [e.event.event_id for e in same_user] == ["e-user", "e-user-2"]


async def test_tenant_comes_from_the_api_key(ingest: IngestUnderTest) -> None:
    await ingest.track([event("t-acme", user_id="u-1")])
    await ingest.track([event("t-globex", user_id="u-1")], key=OTHER_WRITER_KEY)

    logged = await ingest.logged_by_id()
    p = expected_partition("u-1")
    assert logged["t-acme"].subject == subject(ingest, TENANT, p)
    assert logged["t-acme"].tenant == TENANT
    assert logged["t-globex"].subject == subject(ingest, OTHER_TENANT, p)
    assert logged["t-globex"].tenant == OTHER_TENANT


async def test_timestamps_are_corrected_for_client_clock_skew(ingest: IngestUnderTest) -> None:
    hour = 3600 * SECOND_US
    # The client's clock runs two hours fast: its "now" is two hours ahead of ours.
    client_now = now_us() + 2 * hour
    sent_at_us = client_now - client_now % SECOND_US + 250_000
    events = [
        # Microsecond precision: the nanoseconds beyond are dropped.
        event("skew-1", user_id="u-1", timestamp_us=sent_at_us - 60 * SECOND_US - 7),
        # 2 h ahead of the server by the client's clock, but 1 min before sending.
        event("skew-2", user_id="u-1", timestamp_us=sent_at_us - 60 * SECOND_US),
        event("skew-3", user_id="u-2"),
    ]
    events[0].timestamp.nanos += 789
    before = now_us()
    response = await ingest.track(events, sent_at=timestamp(sent_at_us))
    after = now_us()
    assert statuses(response) == [ACCEPTED] * 3

    logged = await ingest.logged_by_id()
    for event_id, original in [
        ("skew-1", sent_at_us - 60 * SECOND_US - 7),
        ("skew-2", sent_at_us - 60 * SECOND_US),
    ]:
        stored = logged[event_id].event
        assert stored.original_timestamp_us == original
        assert stored.sent_at_us == sent_at_us
        assert before <= stored.received_at_us <= after
        skew = stored.received_at_us - sent_at_us
        assert stored.timestamp_us == original + skew
        # Corrected, the event happened about a minute before it was received.
        assert 59 * SECOND_US <= stored.received_at_us - stored.timestamp_us <= 61 * SECOND_US
    untimed = logged["skew-3"].event
    assert untimed.timestamp_us == untimed.original_timestamp_us == untimed.received_at_us


async def test_the_window_applies_to_the_corrected_timestamp(ingest: IngestUnderTest) -> None:
    hour = 3600 * SECOND_US
    client_now = now_us() - 3 * hour  # the client's clock is three hours slow
    response = await ingest.track(
        [
            # Two hours after the client's send time: in the future even corrected.
            event("w-future", user_id="u-1", timestamp_us=client_now + 2 * hour),
            # Half an hour after its send time: within the hour of tolerance.
            event("w-ok", user_id="u-1", timestamp_us=client_now + hour // 2),
        ],
        sent_at=timestamp(client_now),
    )
    assert statuses(response) == [REJECTED, ACCEPTED]
    rejection = response.results[0].rejection
    assert (rejection.field, rejection.rule) == ("timestamp", "out_of_window")
    assert set(await ingest.logged_by_id()) == {"w-ok"}


async def test_lengths_are_counted_in_code_points(ingest: IngestUnderTest) -> None:
    emoji_user = "\U0001f600" * 200  # 200 code points, 800 UTF-8 bytes
    response = await ingest.track(
        [
            event("cp-1", user_id=emoji_user),
            event("cp-2", user_id=emoji_user + "x"),
            event("\u00e9" * 64, user_id="u-1"),
        ]
    )
    assert statuses(response) == [ACCEPTED, REJECTED, ACCEPTED]
    rejection = response.results[1].rejection
    assert (rejection.field, rejection.rule) == ("user_id", "too_long")
    logged = await ingest.logged_by_id()
    assert set(logged) == {"cp-1", "\u00e9" * 64}
    assert logged["cp-1"].partition == expected_partition(emoji_user)
    assert logged["cp-1"].event.user_id == emoji_user
