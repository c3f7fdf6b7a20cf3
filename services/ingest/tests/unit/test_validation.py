"""Event validation: ids, names, timestamps, check order and request limits (spec/events.md)."""

from __future__ import annotations

from typing import Any

import pytest

from northstar.ingest.v1 import ingest_pb2
from northstar_ingest.domain.validation import (
    MAX_EVENTS,
    MAX_REQUEST_BYTES,
    Rejection,
    ValidEvent,
    check_request_shape,
    validate_event,
)

RECEIVED = 1_760_000_000_123_456  # 2025-10-09, with a sub-second part
SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
EVENT_NAME_RULE = "event must be 1-200 characters of ASCII letters, digits and ._:$-"


def event(*, timestamp_us: int | None = None, **fields: Any) -> ingest_pb2.Event:
    fields.setdefault("event_id", "evt-1")
    fields.setdefault("event", "user.signup")
    ev = ingest_pb2.Event(**fields)
    if timestamp_us is not None:
        ev.timestamp.seconds = timestamp_us // SECOND
        ev.timestamp.nanos = timestamp_us % SECOND * 1000
    return ev


def validate(
    ev: ingest_pb2.Event,
    *,
    sent_at_us: int | None = None,
    historical_import: bool = False,
    new_event_id: Any = None,
) -> ValidEvent | Rejection:
    return validate_event(
        ev,
        received_at_us=RECEIVED,
        sent_at_us=sent_at_us,
        historical_import=historical_import,
        new_event_id=new_event_id or (lambda: "assigned-id"),
    )


def accepted(result: ValidEvent | Rejection) -> ValidEvent:
    assert isinstance(result, ValidEvent), result
    return result


def rejected(result: ValidEvent | Rejection) -> tuple[str, str]:
    assert isinstance(result, Rejection), result
    assert result.description
    return result.field, result.rule


def must_not_be_called() -> str:
    raise AssertionError("new_event_id called")


# event_id


def test_a_valid_event_is_normalized_for_the_log() -> None:
    ev = event(
        event_id="e-1",
        event="workflow.run",
        user_id="u-1",
        org_id="o-1",
        session_id="s-1",
        timestamp_us=RECEIVED - 5 * SECOND,
    )
    assert validate(ev, new_event_id=must_not_be_called) == ValidEvent(
        event_id="e-1",
        event_id_assigned=False,
        event="workflow.run",
        user_id="u-1",
        org_id="o-1",
        session_id="s-1",
        timestamp_us=RECEIVED - 5 * SECOND,
        original_timestamp_us=RECEIVED - 5 * SECOND,
        properties_json=b"{}",
    )


def test_an_empty_event_id_is_assigned_by_the_server() -> None:
    result = accepted(validate(event(event_id=""), new_event_id=lambda: "0190-uuid7"))
    assert (result.event_id, result.event_id_assigned) == ("0190-uuid7", True)


def test_no_id_is_assigned_to_a_rejected_event() -> None:
    ev = event(event_id="", event="")
    assert rejected(validate(ev, new_event_id=must_not_be_called)) == ("event", "required")


@pytest.mark.parametrize("event_id", ["a" * 64, "é" * 64, "😀" * 64, "x"])
def test_event_id_up_to_64_code_points_is_accepted(event_id: str) -> None:
    result = accepted(validate(event(event_id=event_id)))
    assert (result.event_id, result.event_id_assigned) == (event_id, False)


@pytest.mark.parametrize("event_id", ["a" * 65, "é" * 65, "😀" * 65])
def test_event_id_over_64_code_points_is_rejected(event_id: str) -> None:
    result = validate(event(event_id=event_id))
    assert result == Rejection("event_id", "too_long", "event_id must be at most 64 characters")


# event


@pytest.mark.parametrize(
    "name",
    ["user.signup", "a", "A-Z_a.z:0$9-", "$pageview", "subscription.started", "x" * 200],
)
def test_event_names_of_allowed_characters_are_accepted(name: str) -> None:
    assert accepted(validate(event(event=name))).event == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "required"),
        ("x" * 201, "too_long"),
        ("é" * 201, "too_long"),
        ("user signup", "pattern"),
        ("événement", "pattern"),
        ("user.signup\n", "pattern"),
        ("user/signup", "pattern"),
        ("user.sign€up", "pattern"),
        ("ｕser", "pattern"),
        ("user\x00", "pattern"),
        ("٣", "pattern"),
    ],
)
def test_bad_event_names_are_rejected(name: str, rule: str) -> None:
    assert validate(event(event=name)) == Rejection("event", rule, EVENT_NAME_RULE)


# user_id, org_id, session_id


@pytest.mark.parametrize("field", ["user_id", "org_id", "session_id"])
@pytest.mark.parametrize("value", ["", "u" * 200, "ü" * 200, "😀" * 200])
def test_ids_up_to_200_code_points_are_accepted(field: str, value: str) -> None:
    result = accepted(validate(event(**{field: value})))
    assert getattr(result, field) == value


@pytest.mark.parametrize("field", ["user_id", "org_id", "session_id"])
@pytest.mark.parametrize("value", ["u" * 201, "😀" * 201])
def test_ids_over_200_code_points_are_rejected(field: str, value: str) -> None:
    assert validate(event(**{field: value})) == Rejection(
        field, "too_long", f"{field} must be at most 200 characters"
    )


@pytest.mark.parametrize("field", ["event_id", "user_id", "org_id", "session_id"])
def test_ids_holding_u0000_are_rejected(field: str) -> None:
    # PostgreSQL stores no U+0000: accepted, such an event would poison its log batch.
    assert rejected(validate(event(**{field: "u\x00x"}))) == (field, "nul_character")


@pytest.mark.parametrize(
    "properties_json",
    ['{"a": "x\\u0000y"}', '{"a": {"b\\u0000": 1}}', '{"a": [1, ["\\u0000"]]}'],
)
def test_properties_holding_u0000_are_rejected(properties_json: str) -> None:
    assert rejected(validate(event(properties_json=properties_json))) == (
        "properties",
        "nul_character",
    )


def test_a_struct_string_holding_u0000_is_rejected() -> None:
    ev = event()
    ev.properties.update({"page": "a\x00"})
    assert rejected(validate(ev)) == ("properties", "nul_character")


def test_a_backslash_followed_by_u0000_text_is_plain_data() -> None:
    # The JSON text "\\u0000" is a backslash and five characters, not U+0000.
    result = accepted(validate(event(properties_json='{"a": "\\\\u0000"}')))
    assert result.properties_json == b'{"a":"\\\\u0000"}'


# Order of checks


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"event_id": "a" * 65, "event": ""}, ("event_id", "too_long")),
        ({"event": "bad name", "user_id": "u" * 201}, ("event", "pattern")),
        ({"user_id": "u" * 201, "org_id": "o" * 201}, ("user_id", "too_long")),
        ({"org_id": "o" * 201, "session_id": "s" * 201}, ("org_id", "too_long")),
        ({"session_id": "s" * 201, "timestamp_us": RECEIVED + DAY}, ("session_id", "too_long")),
        (
            {"timestamp_us": RECEIVED + DAY, "properties_json": "not json"},
            ("timestamp", "out_of_window"),
        ),
    ],
)
def test_the_first_problem_in_field_order_rejects(
    fields: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert rejected(validate(event(**fields))) == expected


# timestamp


def test_an_absent_timestamp_is_the_receive_time() -> None:
    result = accepted(validate(event()))
    assert (result.timestamp_us, result.original_timestamp_us) == (RECEIVED, RECEIVED)


def test_an_absent_timestamp_is_not_skew_corrected() -> None:
    result = accepted(validate(event(), sent_at_us=RECEIVED - HOUR))
    assert (result.timestamp_us, result.original_timestamp_us) == (RECEIVED, RECEIVED)


@pytest.mark.parametrize(
    ("seconds", "nanos", "expected_us"),
    [
        (1_760_000_000, 0, 1_760_000_000_000_000),
        (1_760_000_000, 999, 1_760_000_000_000_000),
        (1_760_000_000, 1_999, 1_760_000_000_000_001),
        (1_760_000_000, 999_999_999, 1_760_000_000_999_999),
    ],
)
def test_timestamps_are_truncated_to_microseconds(
    seconds: int, nanos: int, expected_us: int
) -> None:
    ev = event()
    ev.timestamp.seconds = seconds
    ev.timestamp.nanos = nanos
    result = accepted(validate(ev))
    assert (result.timestamp_us, result.original_timestamp_us) == (expected_us, expected_us)


def test_timestamps_before_1970_truncate_toward_the_past() -> None:
    ev = event()
    ev.timestamp.seconds = -1
    ev.timestamp.nanos = 500_000_999
    result = accepted(validate(ev, historical_import=True))
    assert result.timestamp_us == -500_000


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (1_760_000_000, -1),
        (1_760_000_000, 1_000_000_000),
        (MIN_SECONDS - 1, 0),
        (MAX_SECONDS + 1, 0),
        (2**63 - 1, 0),
        (-(2**63), 0),
    ],
)
def test_invalid_timestamps_are_rejected(seconds: int, nanos: int) -> None:
    ev = event()
    ev.timestamp.seconds = seconds
    ev.timestamp.nanos = nanos
    assert rejected(validate(ev, historical_import=True)) == ("timestamp", "invalid")


def test_the_earliest_valid_timestamp_is_accepted_in_historical_import() -> None:
    ev = event()
    ev.timestamp.seconds = MIN_SECONDS
    assert accepted(validate(ev, historical_import=True)).timestamp_us == MIN_SECONDS * SECOND


def test_the_latest_valid_timestamp_is_valid_but_out_of_window() -> None:
    ev = event()
    ev.timestamp.seconds = MAX_SECONDS
    ev.timestamp.nanos = 999_999_999
    assert rejected(validate(ev, historical_import=True)) == ("timestamp", "out_of_window")


@pytest.mark.parametrize("offset_us", [-400 * DAY, -400 * DAY + 1, -DAY, -1, 0, 1, HOUR - 1, HOUR])
def test_timestamps_inside_the_window_are_accepted(offset_us: int) -> None:
    result = accepted(validate(event(timestamp_us=RECEIVED + offset_us)))
    assert result.timestamp_us == RECEIVED + offset_us


def test_400_days_and_a_microsecond_back_is_rejected() -> None:
    result = validate(event(timestamp_us=RECEIVED - 400 * DAY - 1))
    assert result == Rejection(
        "timestamp",
        "out_of_window",
        "timestamp is 400 days, 0:00:00.000001 before the receive time;"
        " at most 400 days back is accepted outside historical import",
    )


def test_an_hour_and_a_microsecond_ahead_is_rejected() -> None:
    result = validate(event(timestamp_us=RECEIVED + HOUR + 1))
    assert result == Rejection(
        "timestamp",
        "out_of_window",
        "timestamp is 1:00:00.000001 after the receive time; at most 1 hour ahead is accepted",
    )


@pytest.mark.parametrize("offset_us", [-400 * DAY - 1, -10 * 365 * DAY, -RECEIVED])
def test_historical_import_lifts_the_400_day_bound(offset_us: int) -> None:
    result = accepted(validate(event(timestamp_us=RECEIVED + offset_us), historical_import=True))
    assert result.timestamp_us == RECEIVED + offset_us


def test_historical_import_keeps_the_one_hour_bound() -> None:
    ev = event(timestamp_us=RECEIVED + HOUR + 1)
    assert rejected(validate(ev, historical_import=True)) == ("timestamp", "out_of_window")
    ev = event(timestamp_us=RECEIVED + HOUR)
    assert accepted(validate(ev, historical_import=True)).timestamp_us == RECEIVED + HOUR


def test_skew_correction_adds_receive_minus_sent_and_keeps_the_original() -> None:
    # The client's clock is 3 s behind: its "now" reads 3 s earlier than ours.
    client_ts = RECEIVED - 10 * SECOND
    result = accepted(validate(event(timestamp_us=client_ts), sent_at_us=RECEIVED - 3 * SECOND))
    assert result.timestamp_us == client_ts + 3 * SECOND
    assert result.original_timestamp_us == client_ts


def test_skew_correction_with_a_clock_ahead_moves_the_timestamp_back() -> None:
    client_ts = RECEIVED + 2 * DAY
    result = accepted(validate(event(timestamp_us=client_ts), sent_at_us=RECEIVED + 2 * DAY))
    assert (result.timestamp_us, result.original_timestamp_us) == (RECEIVED, client_ts)


def test_the_window_applies_to_the_corrected_timestamp() -> None:
    ahead = event(timestamp_us=RECEIVED + HOUR + 1)
    assert rejected(validate(ahead)) == ("timestamp", "out_of_window")
    corrected = accepted(validate(ahead, sent_at_us=RECEIVED + 1))
    assert (corrected.timestamp_us, corrected.original_timestamp_us) == (
        RECEIVED + HOUR,
        RECEIVED + HOUR + 1,
    )

    inside = event(timestamp_us=RECEIVED - 400 * DAY)
    assert accepted(validate(inside)).timestamp_us == RECEIVED - 400 * DAY
    assert rejected(validate(inside, sent_at_us=RECEIVED + 1)) == ("timestamp", "out_of_window")


def test_historical_import_still_needs_a_corrected_time_after_year_1() -> None:
    ev = event()
    ev.timestamp.seconds = MIN_SECONDS
    result = validate(ev, historical_import=True, sent_at_us=RECEIVED + 1)
    assert result == Rejection(
        "timestamp",
        "out_of_window",
        "timestamp is before 0001-01-01 after clock-skew correction",
    )


# Request limits


def test_request_limits_are_1000_events_and_4_mib() -> None:
    assert (MAX_EVENTS, MAX_REQUEST_BYTES) == (1000, 4_194_304)


@pytest.mark.parametrize(
    ("n_events", "n_bytes", "fields"),
    [
        (1, 100, []),
        (1000, MAX_REQUEST_BYTES, []),
        (0, 0, ["events"]),
        (1001, 100, ["events"]),
        (1, MAX_REQUEST_BYTES + 1, ["request"]),
        (1001, MAX_REQUEST_BYTES + 1, ["events", "request"]),
    ],
)
def test_request_shape(n_events: int, n_bytes: int, fields: list[str]) -> None:
    violations = check_request_shape(n_events, n_bytes)
    assert [field for field, _ in violations] == fields
    assert all(description for _, description in violations)


def test_request_shape_descriptions() -> None:
    assert check_request_shape(0, 0) == [("events", "a request must carry at least one event")]
    assert check_request_shape(1001, MAX_REQUEST_BYTES + 1) == [
        ("events", "a request carries at most 1,000 events, got 1,001"),
        ("request", "a request is at most 4 MiB (4,194,304 bytes), got 4,194,305"),
    ]
