"""Duplicates: the same (tenant, event_id) again is DUPLICATE, however it arrives."""

from __future__ import annotations

from .conftest import (
    ACCEPTED,
    DUPLICATE,
    OTHER_WRITER_KEY,
    IngestUnderTest,
    StartIngest,
    event,
    statuses,
)


async def test_a_retried_request_is_all_duplicate_and_logged_once(
    ingest: IngestUnderTest,
) -> None:
    # Users spread over several partitions, so the request is several log messages.
    events = [event(f"r-{i}", user_id=f"u-{i}") for i in range(12)]
    first = await ingest.track(events)
    assert statuses(first) == [ACCEPTED] * 12

    for _ in range(2):
        retry = await ingest.track(events)
        assert statuses(retry) == [DUPLICATE] * 12
        assert [r.event_id for r in retry.results] == [f"r-{i}" for i in range(12)]
        assert (retry.accepted, retry.duplicate, retry.rejected) == (0, 12, 0)

    logged = await ingest.logged_by_id()
    assert set(logged) == {f"r-{i}" for i in range(12)}


async def test_a_seen_id_in_another_batch_is_duplicate(ingest: IngestUnderTest) -> None:
    first = await ingest.track([event("a", user_id="u-1"), event("b", user_id="u-2")])
    assert statuses(first) == [ACCEPTED, ACCEPTED]

    second = await ingest.track(
        [
            event("c", user_id="u-3"),
            event("a", user_id="u-1"),
            # Same id, other content: a conflict, still a duplicate; the first stands.
            event("b", "other.name", user_id="u-9"),
        ]
    )
    assert statuses(second) == [ACCEPTED, DUPLICATE, DUPLICATE]
    assert (second.accepted, second.duplicate, second.rejected) == (1, 2, 0)
    logged = await ingest.logged_events()
    first_b = next(e for e in logged if e.event.event_id == "b")
    assert (first_b.event.event, first_b.event.user_id) == ("page.view", "u-2")
    assert {e.event.event_id for e in logged} == {"a", "b", "c"}


async def test_the_same_id_twice_in_one_request(ingest: IngestUnderTest) -> None:
    response = await ingest.track(
        [
            event("twice", user_id="u-1"),
            event("once", user_id="u-2"),
            event("twice", user_id="u-1"),
            # Another user: another partition, same id all the same.
            event("twice", user_id="u-3"),
        ]
    )
    assert statuses(response) == [ACCEPTED, ACCEPTED, DUPLICATE, DUPLICATE]
    assert (response.accepted, response.duplicate, response.rejected) == (2, 2, 0)

    retry = await ingest.track([event("twice", user_id="u-1")])
    assert statuses(retry) == [DUPLICATE]


async def test_ids_are_per_tenant(ingest: IngestUnderTest) -> None:
    assert statuses(await ingest.track([event("shared", user_id="u-1")])) == [ACCEPTED]
    other = await ingest.track([event("shared", user_id="u-1")], key=OTHER_WRITER_KEY)
    assert statuses(other) == [ACCEPTED]
    logged = await ingest.logged_events()
    assert sorted(e.tenant for e in logged if e.event.event_id == "shared") == ["acme", "globex"]


async def test_assigned_ids_are_new_on_every_request(ingest: IngestUnderTest) -> None:
    events = [event("", user_id="u-1"), event("", user_id="u-1")]
    first = await ingest.track(events)
    again = await ingest.track(events)
    assert statuses(first) == statuses(again) == [ACCEPTED, ACCEPTED]
    ids = [r.event_id for r in [*first.results, *again.results]]
    assert len(set(ids)) == 4
    logged = await ingest.logged_by_id()
    assert set(logged) == set(ids)
    assert all(e.event.event_id_assigned for e in logged.values())


async def test_duplicates_are_remembered_across_a_restart_of_ingest(
    ingest: IngestUnderTest, start_ingest: StartIngest
) -> None:
    events = [event(f"k-{i}", user_id=f"u-{i}") for i in range(6)]
    assert statuses(await ingest.track(events)) == [ACCEPTED] * 6
    await ingest.channel.close()
    await ingest.host.stop()

    restarted = await start_ingest()
    # A client retrying its request after the restart: the log's dedup window answers.
    retry = await restarted.track(events)
    assert statuses(retry) == [DUPLICATE] * 6
    assert set(await restarted.logged_by_id()) == {f"k-{i}" for i in range(6)}
