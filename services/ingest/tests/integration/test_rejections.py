"""Invalid events are REJECTED with the field and rule; the rest of the batch is stored."""

from __future__ import annotations

import json

import pytest

from .conftest import (
    ACCEPTED,
    DAY_US,
    DUPLICATE,
    REJECTED,
    SECOND_US,
    IngestUnderTest,
    event,
    now_us,
    statuses,
)


def nested(depth: int) -> str:
    """A properties object nested `depth` deep (the object itself is depth 1)."""
    value: object = 1
    for _ in range(depth - 1):
        value = {"k": value}
    return json.dumps({"deep": value})


async def test_a_mixed_batch_rejects_the_invalid_and_stores_the_rest(
    ingest: IngestUnderTest,
) -> None:
    now = now_us()
    events = [
        event("ok-1", "user.signup", user_id="u-1"),
        event("bad-name", "user signup", user_id="u-1"),
        event("bad-user", "page.view", user_id="u" * 201),
        event("ok-2", "page.view", user_id="u-2", properties_json=nested(8)),
        event("bad-past", "page.view", user_id="u-3", timestamp_us=now - 401 * DAY_US),
        event("bad-deep", "page.view", user_id="u-4", properties_json=nested(9)),
        event("bad-future", "page.view", user_id="u-5", timestamp_us=now + 2 * 3600 * SECOND_US),
        event("ok-3", "page.view", user_id="u-6", timestamp_us=now - 399 * DAY_US),
        event("bad-empty-name", "", user_id="u-7"),
        event("x" * 65, "page.view", user_id="u-8"),
        event("bad-json", "page.view", properties_json="{not json"),
        event("bad-nan", "page.view", properties_json='{"amount": NaN}'),
    ]
    response = await ingest.track(events)

    assert [r.index for r in response.results] == list(range(len(events)))
    assert [r.event_id for r in response.results] == [e.event_id for e in events]
    got = [
        (r.status, r.rejection.field, r.rejection.rule) if r.status == REJECTED else r.status
        for r in response.results
    ]
    assert got == [
        ACCEPTED,
        (REJECTED, "event", "pattern"),
        (REJECTED, "user_id", "too_long"),
        ACCEPTED,
        (REJECTED, "timestamp", "out_of_window"),
        (REJECTED, "properties.deep", "too_deep"),
        (REJECTED, "timestamp", "out_of_window"),
        ACCEPTED,
        (REJECTED, "event", "required"),
        (REJECTED, "event_id", "too_long"),
        (REJECTED, "properties", "invalid_json"),
        (REJECTED, "properties", "invalid_json"),
    ]
    assert all(r.rejection.description for r in response.results if r.status == REJECTED)
    assert all(not r.HasField("rejection") for r in response.results if r.status == ACCEPTED)
    assert (response.accepted, response.duplicate, response.rejected) == (3, 0, 9)
    assert set(await ingest.logged_by_id()) == {"ok-1", "ok-2", "ok-3"}


@pytest.mark.parametrize(
    ("fields", "field", "rule"),
    [
        ({"name": "a" * 201}, "event", "too_long"),
        ({"name": "user/signup"}, "event", "pattern"),
        ({"org_id": "o" * 201}, "org_id", "too_long"),
        ({"session_id": "s" * 201}, "session_id", "too_long"),
        ({"properties_json": "[1, 2]"}, "properties", "not_an_object"),
        (
            {"properties_json": json.dumps({f"k{i}": i for i in range(201)})},
            "properties",
            "too_many_keys",
        ),
        ({"properties_json": json.dumps({"blob": "x" * 33_000})}, "properties", "too_large"),
        ({"properties_json": '{"n": 1e999}'}, "properties.n", "not_finite"),
        ({"properties_json": '{"n": 9223372036854775808}'}, "properties.n", "out_of_range"),
    ],
)
async def test_each_rule_is_named(
    ingest: IngestUnderTest, fields: dict[str, str], field: str, rule: str
) -> None:
    response = await ingest.track([event("only", **fields)])
    assert statuses(response) == [REJECTED]
    assert (response.results[0].rejection.field, response.results[0].rejection.rule) == (
        field,
        rule,
    )
    assert await ingest.logged_events() == []


async def test_an_invalid_event_with_a_seen_id_is_rejected_not_duplicate(
    ingest: IngestUnderTest,
) -> None:
    first = await ingest.track([event("seen", "user.signup", user_id="u-1")])
    assert statuses(first) == [ACCEPTED]

    again = await ingest.track(
        [
            event("seen", "not a valid name", user_id="u-1"),
            event("seen", "user.signup", user_id="u-1"),
        ]
    )
    assert statuses(again) == [REJECTED, DUPLICATE]
    assert (again.results[0].rejection.field, again.results[0].rejection.rule) == (
        "event",
        "pattern",
    )
    assert (again.accepted, again.duplicate, again.rejected) == (0, 1, 1)


async def test_a_rejected_event_leaves_its_id_unused(ingest: IngestUnderTest) -> None:
    first = await ingest.track([event("retry-me", "bad name", user_id="u-1")])
    assert statuses(first) == [REJECTED]
    fixed = await ingest.track([event("retry-me", "good.name", user_id="u-1")])
    assert statuses(fixed) == [ACCEPTED]
    logged = await ingest.logged_by_id()
    assert set(logged) == {"retry-me"}
    assert logged["retry-me"].event.event == "good.name"
