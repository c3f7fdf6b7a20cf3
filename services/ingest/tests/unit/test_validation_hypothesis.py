"""Property tests: validation accepts what the spec allows, and never raises."""

from __future__ import annotations

import math
import string
from typing import Any

import orjson
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from northstar.ingest.v1 import ingest_pb2
from northstar_ingest.domain.validation import (
    MAX_FUTURE_US,
    MAX_PAST_US,
    Rejection,
    ValidEvent,
    validate_event,
)

RECEIVED = 1_760_000_000_000_000
SECOND = 1_000_000

RULES = {
    "event_id": {"too_long", "nul_character"},
    "event": {"required", "too_long", "pattern"},
    "user_id": {"too_long", "nul_character"},
    "org_id": {"too_long", "nul_character"},
    "session_id": {"too_long", "nul_character"},
    "timestamp": {"invalid", "out_of_window"},
    "properties": {
        "conflicting_fields",
        "invalid_json",
        "not_an_object",
        "too_many_keys",
        "too_large",
        "too_deep",
        "nul_character",
    },
}
VALUE_RULES = {"too_deep", "not_finite", "out_of_range"}

EVENT_NAME_CHARS = string.ascii_letters + string.digits + "._:$-"

event_names = st.text(alphabet=EVENT_NAME_CHARS, min_size=1, max_size=200)
# Valid text: anything but U+0000, which no read model can store (validation.py `_nul`).
valid_text = st.characters(codec="utf-8", exclude_characters="\x00")
ids = st.text(valid_text, max_size=200)


def json_objects(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Small property objects at most 8 deep (values at most 7 levels of containers)."""
    nested = st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.text(valid_text, max_size=8), inner, max_size=3)
        ),
        max_leaves=12,
    )
    return st.dictionaries(
        st.text(valid_text, max_size=10), nested.filter(lambda v: depth_of(v) <= 7), max_size=8
    )


# Valid properties: finite numbers and int64 integers.
valid_properties = json_objects(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(valid_text, max_size=20)
)
# Struct numbers are doubles, so valid Struct properties have no int beyond 2**53.
valid_struct_properties = json_objects(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(valid_text, max_size=20)
)

# Anything at all: any floats, any depth, any text.
any_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=30,
)


def depth_of(value: Any) -> int:
    """Container levels in `value` (a scalar is 0)."""
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def validate(
    ev: ingest_pb2.Event,
    *,
    sent_at_us: int | None = None,
    historical_import: bool = False,
) -> ValidEvent | Rejection:
    return validate_event(
        ev,
        received_at_us=RECEIVED,
        sent_at_us=sent_at_us,
        historical_import=historical_import,
        new_event_id=lambda: "assigned-id",
    )


def set_timestamp(ev: ingest_pb2.Event, us: int) -> None:
    ev.timestamp.seconds = us // SECOND
    ev.timestamp.nanos = us % SECOND * 1000


def assert_known_rule(rejection: Rejection) -> None:
    assert rejection.description
    if rejection.field.startswith("properties."):
        assert rejection.rule in VALUE_RULES
    else:
        assert rejection.rule in RULES[rejection.field]


@given(
    event_id=st.text(valid_text, min_size=1, max_size=64),
    name=event_names,
    user_id=ids,
    org_id=ids,
    session_id=ids,
    offset_us=st.integers(min_value=-MAX_PAST_US, max_value=MAX_FUTURE_US),
    properties=valid_properties,
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_valid_event_is_accepted_and_round_trips(
    event_id: str,
    name: str,
    user_id: str,
    org_id: str,
    session_id: str,
    offset_us: int,
    properties: dict[str, Any],
) -> None:
    ev = ingest_pb2.Event(
        event_id=event_id,
        event=name,
        user_id=user_id,
        org_id=org_id,
        session_id=session_id,
        properties_json=orjson.dumps(properties).decode(),
    )
    set_timestamp(ev, RECEIVED + offset_us)
    result = validate(ev)
    assert result == ValidEvent(
        event_id=event_id,
        event_id_assigned=False,
        event=name,
        user_id=user_id,
        org_id=org_id,
        session_id=session_id,
        timestamp_us=RECEIVED + offset_us,
        original_timestamp_us=RECEIVED + offset_us,
        properties_json=orjson.dumps(properties, option=orjson.OPT_SORT_KEYS),
    )


@given(properties=valid_struct_properties)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_valid_struct_round_trips_with_integral_numbers_as_ints(
    properties: dict[str, Any],
) -> None:
    ev = ingest_pb2.Event(event_id="e", event="a")
    ev.properties.update(properties)
    result = validate(ev)
    assert isinstance(result, ValidEvent), result
    stored = orjson.loads(result.properties_json)
    assert stored == properties
    assert no_integral_floats(stored)


def no_integral_floats(value: Any) -> bool:
    if isinstance(value, float):
        return not (value.is_integer() and abs(value) <= 2**53)
    if isinstance(value, dict):
        return all(no_integral_floats(v) for v in value.values())
    if isinstance(value, list):
        return all(no_integral_floats(v) for v in value)
    return True


@given(properties=st.dictionaries(st.text(max_size=5), any_values, max_size=5))
def test_struct_outcome_depends_on_content_not_key_order(properties: dict[str, Any]) -> None:
    forward = ingest_pb2.Event(event_id="e", event="a")
    forward.properties.update(properties)
    backward = ingest_pb2.Event(event_id="e", event="a")
    backward.properties.update(dict(reversed(list(properties.items()))))
    first, second = validate(forward), validate(backward)
    assert first == second
    if isinstance(first, ValidEvent):
        assert depth_of(properties) <= 7
        assert all(math.isfinite(x) for x in floats_in(properties))
    elif first.field == "properties":
        assert first.rule == "nul_character"
    else:
        assert first.field.startswith("properties.")
        assert first.rule in {"too_deep", "not_finite"}


def floats_in(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [x for v in value.values() for x in floats_in(v)]
    if isinstance(value, list):
        return [x for v in value for x in floats_in(v)]
    return []


@given(
    event_id=st.text(max_size=80),
    name=st.text(max_size=220),
    user_id=st.text(max_size=220),
    org_id=st.text(max_size=220),
    session_id=st.text(max_size=220),
    seconds=st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
    nanos=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    sent_at_us=st.none() | st.integers(min_value=-(2**70), max_value=2**70),
    historical_import=st.booleans(),
    struct=st.none() | st.dictionaries(st.text(max_size=5), any_values, max_size=5),
    text=st.none() | st.text(max_size=50) | any_values.map(lambda v: orjson.dumps(v).decode()),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
# A sent_at so far off that the skew-corrected timestamp lies beyond what a timedelta can
# hold: the out-of-window message once raised OverflowError instead of rejecting.
@example("", "0", "", "", "", 0, 0, -86_400_000_000_000_000_000, False, None, None)
@example("", "0", "", "", "", 0, 0, 86_400_000_000_000_000_000, False, None, None)
def test_validation_never_raises_and_names_a_known_rule(
    event_id: str,
    name: str,
    user_id: str,
    org_id: str,
    session_id: str,
    seconds: int | None,
    nanos: int,
    sent_at_us: int | None,
    historical_import: bool,
    struct: dict[str, Any] | None,
    text: str | None,
) -> None:
    ev = ingest_pb2.Event(
        event_id=event_id, event=name, user_id=user_id, org_id=org_id, session_id=session_id
    )
    if seconds is not None:
        ev.timestamp.seconds = seconds
        ev.timestamp.nanos = nanos
    if struct is not None:
        ev.properties.update(struct)
    if text is not None:
        ev.properties_json = text
    result = validate(ev, sent_at_us=sent_at_us, historical_import=historical_import)
    if isinstance(result, Rejection):
        assert_known_rule(result)
    else:
        assert isinstance(result, ValidEvent)
        assert isinstance(orjson.loads(result.properties_json), dict)
        assert result.timestamp_us - RECEIVED >= -MAX_PAST_US or historical_import
        assert result.timestamp_us - RECEIVED <= MAX_FUTURE_US


@given(
    offset_us=st.integers(min_value=-2 * MAX_PAST_US, max_value=2 * MAX_FUTURE_US),
    skew_us=st.integers(min_value=-MAX_PAST_US, max_value=MAX_PAST_US),
    historical_import=st.booleans(),
)
def test_the_window_holds_exactly_on_the_corrected_timestamp(
    offset_us: int, skew_us: int, historical_import: bool
) -> None:
    ev = ingest_pb2.Event(event_id="e", event="a")
    set_timestamp(ev, RECEIVED + offset_us)
    result = validate(ev, sent_at_us=RECEIVED - skew_us, historical_import=historical_import)
    corrected = offset_us + skew_us
    in_window = corrected <= MAX_FUTURE_US and (historical_import or corrected >= -MAX_PAST_US)
    if in_window:
        assert isinstance(result, ValidEvent), result
        assert result.timestamp_us == RECEIVED + corrected
        assert result.original_timestamp_us == RECEIVED + offset_us
    else:
        assert isinstance(result, Rejection)
        assert (result.field, result.rule) == ("timestamp", "out_of_window")


@given(value=st.integers())
def test_json_integers_are_accepted_exactly_within_int64(value: int) -> None:
    result = validate(ingest_pb2.Event(event_id="e", event="a", properties_json=f'{{"n":{value}}}'))
    if -(2**63) <= value < 2**63:
        assert isinstance(result, ValidEvent), result
        assert orjson.loads(result.properties_json) == {"n": value}
    else:
        assert result == Rejection(
            "properties.n", "out_of_range", "property integers must fit in a signed 64-bit integer"
        )


def test_struct_value_kinds_are_all_covered() -> None:
    # A guard: if protobuf ever adds a Value kind, the walker must learn it.
    kinds = {f.name for f in struct_pb2.Value.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert kinds == {
        "null_value",
        "number_value",
        "string_value",
        "bool_value",
        "struct_value",
        "list_value",
    }
