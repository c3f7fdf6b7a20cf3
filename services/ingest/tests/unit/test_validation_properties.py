"""Event validation: the properties rules, in both wire forms (spec/events.md)."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from google.protobuf import struct_pb2

from northstar.ingest.v1 import ingest_pb2
from northstar_ingest.domain.validation import Rejection, ValidEvent, validate_event

RECEIVED = 1_760_000_000_000_000


def validate(ev: ingest_pb2.Event) -> ValidEvent | Rejection:
    return validate_event(
        ev,
        received_at_us=RECEIVED,
        sent_at_us=None,
        historical_import=False,
        new_event_id=lambda: "assigned-id",
    )


def from_struct(properties: dict[str, Any]) -> ValidEvent | Rejection:
    ev = ingest_pb2.Event(event_id="e-1", event="user.signup")
    ev.properties.update(properties)
    return validate(ev)


def from_json(text: str) -> ValidEvent | Rejection:
    return validate(ingest_pb2.Event(event_id="e-1", event="user.signup", properties_json=text))


def stored(result: ValidEvent | Rejection) -> bytes:
    assert isinstance(result, ValidEvent), result
    return result.properties_json


def rejected(result: ValidEvent | Rejection) -> tuple[str, str]:
    assert isinstance(result, Rejection), result
    assert result.description
    return result.field, result.rule


def nested_lists(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def nested_objects(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value


BOTH_FORMS = pytest.mark.parametrize(
    "validate_properties",
    [from_struct, lambda p: from_json(json.dumps(p))],
    ids=["struct", "json"],
)


# Forms


def test_no_properties_store_an_empty_object() -> None:
    assert stored(validate(ingest_pb2.Event(event_id="e", event="a"))) == b"{}"


def test_an_empty_but_present_struct_stores_an_empty_object() -> None:
    ev = ingest_pb2.Event(event_id="e", event="a")
    ev.properties.SetInParent()
    assert stored(validate(ev)) == b"{}"


def test_an_empty_struct_beside_json_text_uses_the_text() -> None:
    ev = ingest_pb2.Event(event_id="e", event="a", properties_json='{"plan": "pro"}')
    ev.properties.SetInParent()
    assert stored(validate(ev)) == b'{"plan":"pro"}'


def test_both_forms_set_is_a_conflict() -> None:
    ev = ingest_pb2.Event(event_id="e", event="a", properties_json='{"plan":"pro"}')
    ev.properties.update({"plan": "pro"})
    assert validate(ev) == Rejection(
        "properties",
        "conflicting_fields",
        "set either properties or properties_json, not both",
    )


def test_stored_json_is_compact_sorted_utf8() -> None:
    text = '{ "z": 1,\n "a": {"y": [true, null], "b": "é😀"} }'
    expected = '{"a":{"b":"é😀","y":[true,null]},"z":1}'.encode()
    assert stored(from_json(text)) == expected
    assert stored(from_struct({"z": 1, "a": {"y": [True, None], "b": "é😀"}})) == expected


def test_struct_and_json_of_the_same_object_store_the_same_bytes() -> None:
    properties = {"plan": "pro", "mrr": 1200, "tags": ["a", "b"], "ok": True, "x": None}
    assert stored(from_struct(properties)) == stored(from_json(json.dumps(properties)))


# invalid_json, not_an_object


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "x",
        " ",
        "{'a': 1}",
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": -Infinity}',
        '{"a": 1,}',
        '{"a": "\\ud800"}',
        '{"a": 1} x',
        '{"a": 01}',
    ],
)
def test_text_that_is_not_json_is_rejected(text: str) -> None:
    assert from_json(text) == Rejection(
        "properties", "invalid_json", "properties_json must be valid JSON"
    )


@pytest.mark.parametrize("text", ["[]", "[1]", "1", '"s"', "null", "true", "1.5"])
def test_json_that_is_not_an_object_is_rejected(text: str) -> None:
    assert from_json(text) == Rejection(
        "properties", "not_an_object", "properties_json must be a JSON object"
    )


# too_many_keys


@BOTH_FORMS
def test_200_keys_are_accepted(validate_properties: Any) -> None:
    properties = {f"k{i:03}": i for i in range(200)}
    assert orjson.loads(stored(validate_properties(properties))) == properties


@BOTH_FORMS
def test_201_keys_are_rejected(validate_properties: Any) -> None:
    result = validate_properties({f"k{i:03}": i for i in range(201)})
    assert result == Rejection(
        "properties", "too_many_keys", "properties may have at most 200 top-level keys, got 201"
    )


def test_nested_keys_do_not_count_toward_the_key_limit() -> None:
    properties = {"a": {f"k{i:03}": i for i in range(300)}}
    assert orjson.loads(stored(from_struct(properties))) == properties


# too_large: 32 KiB as compact UTF-8 JSON; '{"a":""}' is 8 bytes of overhead.


@BOTH_FORMS
def test_exactly_32768_bytes_are_accepted(validate_properties: Any) -> None:
    assert len(stored(validate_properties({"a": "x" * 32760}))) == 32768


@BOTH_FORMS
def test_32769_bytes_are_rejected(validate_properties: Any) -> None:
    assert validate_properties({"a": "x" * 32761}) == Rejection(
        "properties",
        "too_large",
        "properties must be at most 32,768 bytes as compact JSON, got 32,769",
    )


@BOTH_FORMS
def test_size_is_measured_in_utf8_bytes_not_characters(validate_properties: Any) -> None:
    assert len(stored(validate_properties({"a": "é" * 16380}))) == 32768
    assert rejected(validate_properties({"a": "é" * 16381})) == ("properties", "too_large")


def test_size_is_measured_on_compact_json_not_the_text_sent() -> None:
    text = '{   "a"  :  "' + "x" * 32760 + '"   }' + " " * 1000
    assert len(stored(from_json(text))) == 32768


# too_deep: the properties object is depth 1; each nested object or list adds one.


@BOTH_FORMS
@pytest.mark.parametrize("nest", [nested_lists, nested_objects])
def test_depth_8_is_accepted(validate_properties: Any, nest: Any) -> None:
    properties = {"a": nest(7)}
    assert orjson.loads(stored(validate_properties(properties))) == properties


@BOTH_FORMS
@pytest.mark.parametrize("nest", [nested_lists, nested_objects])
def test_depth_9_is_rejected(validate_properties: Any, nest: Any) -> None:
    assert validate_properties({"ok": 1, "a": nest(8)}) == Rejection(
        "properties.a", "too_deep", "properties must be nested at most 8 deep"
    )


@BOTH_FORMS
def test_empty_containers_count_toward_depth(validate_properties: Any) -> None:
    assert stored(validate_properties({"a": {"b": []}})) == b'{"a":{"b":[]}}'
    assert rejected(validate_properties({"a": [[[[[[[[]]]]]]]]})) == (
        "properties.a",
        "too_deep",
    )


def test_the_depth_reading_matches_the_documented_example() -> None:
    # {"a":{"b":1}} is depth 2, so seven more levels under it make depth 9.
    assert stored(from_json('{"a":{"b":1}}')) == b'{"a":{"b":1}}'
    assert rejected(from_json('{"a":{"b":' + "[" * 7 + "1" + "]" * 7 + "}}")) == (
        "properties.a",
        "too_deep",
    )


def test_json_deeper_than_any_parser_holds_is_too_deep() -> None:
    text = '{"a":' + "[" * 5000 + "]" * 5000 + "}"
    assert from_json(text) == Rejection(
        "properties", "too_deep", "properties must be nested at most 8 deep"
    )


# not_finite


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_struct_numbers_must_be_finite(number: float) -> None:
    assert from_struct({"ok": 1.5, "score": number}) == Rejection(
        "properties.score", "not_finite", "property numbers must be finite"
    )


def test_not_finite_names_the_top_level_key_of_a_nested_number() -> None:
    assert rejected(from_struct({"stats": {"values": [1, math.nan]}})) == (
        "properties.stats",
        "not_finite",
    )


@pytest.mark.parametrize("literal", ["1e400", "-1e400", "1.8e308"])
def test_json_numbers_overflowing_a_double_are_not_finite(literal: str) -> None:
    assert rejected(from_json('{"n": ' + literal + "}")) == ("properties.n", "not_finite")


def test_the_first_bad_key_in_sorted_order_is_reported() -> None:
    for order in (["b", "a", "c"], ["c", "a", "b"], ["a", "b", "c"]):
        ev = ingest_pb2.Event(event_id="e", event="a")
        for key in order:
            ev.properties.fields[key].number_value = 1.0 if key == "a" else math.inf
        assert rejected(validate(ev)) == ("properties.b", "not_finite")


# out_of_range: JSON integers must fit in a signed 64-bit integer.


@pytest.mark.parametrize(
    "literal", ["9223372036854775807", "-9223372036854775808", "0", "-0", "1e19", "-1e19"]
)
def test_json_numbers_within_range_are_accepted(literal: str) -> None:
    assert stored(from_json('{"n":' + literal + "}")) == orjson.dumps({"n": json.loads(literal)})


@pytest.mark.parametrize(
    "literal",
    [
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "-18446744073709551617",
        "1" + "0" * 30,
        "9" * 5000,
    ],
)
def test_json_integers_outside_int64_are_out_of_range(literal: str) -> None:
    assert from_json('{"ok": 1, "n": ' + literal + "}") == Rejection(
        "properties.n", "out_of_range", "property integers must fit in a signed 64-bit integer"
    )


def test_out_of_range_is_found_inside_lists_and_objects() -> None:
    text = '{"a": [1, {"b": 9223372036854775808}]}'
    assert rejected(from_json(text)) == ("properties.a", "out_of_range")


def test_large_json_floats_stay_floats() -> None:
    assert stored(from_json('{"n": 9223372036854775808.0}')) == b'{"n":9.223372036854776e+18}'


# Struct numbers are doubles


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1200, b'{"mrr":1200}'),
        (1200.0, b'{"mrr":1200}'),
        (-5.0, b'{"mrr":-5}'),
        (-0.0, b'{"mrr":0}'),
        (2**53, b'{"mrr":9007199254740992}'),
        (-(2**53), b'{"mrr":-9007199254740992}'),
        (2**53 + 2, b'{"mrr":9007199254740994.0}'),
        (1200.5, b'{"mrr":1200.5}'),
        (1e300, b'{"mrr":1e+300}'),
        (0.1, b'{"mrr":0.1}'),
    ],
)
def test_integral_struct_doubles_up_to_2_53_are_stored_as_integers(
    number: float, expected: bytes
) -> None:
    assert stored(from_struct({"mrr": number})) == expected


def test_struct_values_map_to_json_values() -> None:
    properties = {
        "s": "text",
        "n": 2.5,
        "i": 7,
        "t": True,
        "f": False,
        "z": None,
        "l": [1, "two", None, [3.5]],
        "o": {"k": {"m": "v"}},
    }
    result = orjson.loads(stored(from_struct(properties)))
    assert result == properties
    assert type(result["i"]) is int
    assert type(result["l"][0]) is int


def test_a_struct_value_with_no_kind_is_null() -> None:
    ev = ingest_pb2.Event(event_id="e", event="a")
    ev.properties.fields["empty"].CopyFrom(struct_pb2.Value())
    assert stored(validate(ev)) == b'{"empty":null}'


# Order within properties


def test_too_many_keys_is_checked_before_values() -> None:
    properties: dict[str, Any] = {f"k{i:03}": i for i in range(201)}
    properties["k000"] = math.nan
    assert rejected(from_struct(properties)) == ("properties", "too_many_keys")


def test_value_rules_are_checked_before_size() -> None:
    assert rejected(from_struct({"a": "x" * 40_000, "b": math.inf})) == (
        "properties.b",
        "not_finite",
    )
