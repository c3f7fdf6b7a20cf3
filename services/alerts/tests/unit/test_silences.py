"""The silence aggregate: validation, expiry, status over time, the JSON round trip."""

from __future__ import annotations

import pytest

from northstar_alerts.domain.silences import (
    ACTIVE,
    CREATED,
    ENDED,
    PENDING,
    SilenceState,
    decide_create,
    decide_expire,
    event_from_json,
    event_to_json,
    evolve,
    status_at,
)
from northstar_alerts.domain.state import Silence
from northstar_runtime.errors import FailedPrecondition, InvalidArgument, NotFound

NOW = 1_764_583_200.0


def silence(**changes: object) -> Silence:
    values: dict[str, object] = {
        "silence_id": "s1",
        "matchers": {"team": "growth"},
        "starts_at": NOW,
        "ends_at": NOW + 3600,
        "reason": "maintenance",
        "author": "ana",
    }
    values.update(changes)
    return Silence(**values)  # type: ignore[arg-type]


def violations(s: Silence) -> list[str]:
    with pytest.raises(InvalidArgument) as err:
        decide_create(s, NOW, "key-1")
    return [v.field for v in err.value.violations]


def test_a_valid_silence_is_created() -> None:
    event = decide_create(silence(), NOW, "key-1")
    assert (event.type, event.key, event.actor) == (CREATED, "s1", "key-1")
    state = evolve(None, event, 7)
    assert state == SilenceState(silence(), 7)


def test_every_bad_field_is_named() -> None:
    bad = silence(matchers={}, ends_at=NOW - 10, reason=" ", author="")
    assert violations(bad) == [
        "silence.matchers",
        "silence.ends_at",
        "silence.reason",
        "silence.author",
    ]
    assert violations(silence(matchers={"9x": "a", "team": ""})) == [
        "silence.matchers.9x",
        "silence.matchers.team",
    ]
    assert violations(silence(starts_at=NOW + 7200)) == ["silence.ends_at"]
    assert violations(silence(starts_at=float("nan"), ends_at=1e300)) == [
        "silence.starts_at",
        "silence.ends_at",
    ]


def test_status_follows_the_time_range_and_the_expiry() -> None:
    s = silence(starts_at=NOW + 60)
    assert [status_at(s, t) for t in (NOW, NOW + 60, NOW + 3599, NOW + 3600)] == [
        PENDING,
        ACTIVE,
        ACTIVE,
        ENDED,
    ]
    state = SilenceState(s, 1)
    expired = evolve(state, decide_expire(state, "s1", NOW + 120, "key-2"), 2)
    assert expired is not None and expired.silence.expired_at == NOW + 120
    assert status_at(expired.silence, NOW + 119) == ACTIVE
    assert status_at(expired.silence, NOW + 120) == ENDED
    assert not expired.silence.mutes({"team": "growth"}, NOW + 120)


def test_only_a_live_silence_can_be_expired() -> None:
    with pytest.raises(NotFound):
        decide_expire(None, "nope", NOW, "k")
    state = SilenceState(silence(), 1)
    with pytest.raises(FailedPrecondition) as err:
        decide_expire(state, "s1", NOW + 3600, "k")
    assert err.value.reason == "SILENCE_ENDED"


def test_events_survive_their_json_round_trip() -> None:
    created = decide_create(silence(), NOW, "key-1")
    assert event_from_json(event_to_json(created)) == created
    expired = decide_expire(SilenceState(silence(), 1), "s1", NOW + 5, "key-1")
    assert event_from_json(event_to_json(expired)) == expired
