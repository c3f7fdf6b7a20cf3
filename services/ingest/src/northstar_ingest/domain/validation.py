"""Validation of product events against spec/events.md, and the request size limits.

Pure rules, no I/O: a wire `Event` goes in, a `ValidEvent` ready for the log or the
first `Rejection` found comes out.

Checks run in field order (event_id, event, user_id, org_id, session_id, timestamp,
properties) and the first problem rejects the event, so the reason is deterministic.
Within properties the order is: conflicting_fields, invalid_json / not_an_object,
too_many_keys, then each top-level key in sorted order (too_deep, not_finite,
out_of_range, first one met depth-first), then too_large on the serialized object.

Rules (the stable `Rejection.rule` ids): `event_id` too_long; `event` required, too_long,
pattern; `user_id`, `org_id`, `session_id` too_long; `timestamp` invalid (not a valid
Timestamp), out_of_window; `properties` conflicting_fields, invalid_json, not_an_object,
too_many_keys, too_large, and on `properties.<key>` too_deep, not_finite, out_of_range.
Lengths are counted in Unicode code points (`len` of a `str`).

Struct numbers are doubles: an integral one with magnitude at most 2**53 is stored as a
JSON integer (`mrr: 1200` stays `1200`), any other as a float. A Struct `Value` with no
kind set is stored as null.

Nesting depth: the properties object itself is depth 1 and every object or list nested
in it adds one, so `{"a": 1}` is depth 1, `{"a": {"b": 1}}` and `{"a": [1]}` are depth 2,
and `{"a": [{"b": 1}]}` is depth 3. Empty containers count like full ones. At most 8.
Per-value rules name the top-level key (`properties.mrr`); JSON text nested so deeply
(about a thousand levels) that no parser here will hold it is `too_deep` on `properties`.

Stored properties are compact UTF-8 JSON with keys sorted at every level, so the same
content always gives the same bytes whatever order a client's map arrived in: a retry
that changes nothing is never mistaken for an id conflict.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeAlias

import orjson
from google.protobuf import struct_pb2

from northstar.ingest.v1 import ingest_pb2

__all__ = [
    "MAX_EVENTS",
    "MAX_EVENT_ID_CHARS",
    "MAX_EVENT_NAME_CHARS",
    "MAX_FUTURE_US",
    "MAX_ID_CHARS",
    "MAX_PAST_US",
    "MAX_PROPERTIES_BYTES",
    "MAX_PROPERTIES_DEPTH",
    "MAX_PROPERTIES_KEYS",
    "MAX_REQUEST_BYTES",
    "Rejection",
    "ValidEvent",
    "check_request_shape",
    "validate_event",
]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"

MAX_EVENTS = 1000
MAX_REQUEST_BYTES = 4 * 1024 * 1024

MAX_EVENT_ID_CHARS = 64
MAX_EVENT_NAME_CHARS = 200
MAX_ID_CHARS = 200
MAX_PAST_US = 400 * 24 * 3600 * 1_000_000
MAX_FUTURE_US = 3600 * 1_000_000
MAX_PROPERTIES_KEYS = 200
MAX_PROPERTIES_BYTES = 32 * 1024
MAX_PROPERTIES_DEPTH = 8

# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP_SECONDS = -62_135_596_800
_MAX_TIMESTAMP_SECONDS = 253_402_300_799
_MIN_TIMESTAMP_US = _MIN_TIMESTAMP_SECONDS * 1_000_000
MAX_TIMESTAMP_US = _MAX_TIMESTAMP_SECONDS * 1_000_000 + 999_999

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Doubles up to 2**53 in magnitude are exact integers, so storing them as JSON integers
# loses nothing; above that a double is only an approximation of what the client meant.
_MAX_EXACT_DOUBLE_INT = 2**53
# orjson parses an integer literal beyond 64 bits as a float; a float this large may be
# one, so only the exact parser can say whether the client sent an integer.
_AMBIGUOUS_FLOAT = float(2**63)
# A JSON integer literal with more than 19 digits is outside int64 whatever its digits.
_MAX_INT_LITERAL_CHARS = 20

_EVENT_NAME = re.compile(r"[A-Za-z0-9._:$-]{1,200}")

_EVENT_NAME_RULE = "event must be 1-200 characters of ASCII letters, digits and ._:$-"

# Names that passed the checks: a product has a few dozen event names, so remembering
# them skips the pattern match for nearly every event. Bounded: odd clients can't grow it.
_known_event_names: set[str] = set()
_MAX_KNOWN_EVENT_NAMES = 10_000


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was rejected: the field, a stable rule id and a human sentence."""

    field: str
    rule: str
    description: str


# Slotted, not frozen: a frozen dataclass sets each field through object.__setattr__,
# and one of these is built per event, 100k times a second. Treat it as immutable.
@dataclass(slots=True)
class ValidEvent:
    """An event that passed validation, normalized for the log."""

    event_id: str
    event_id_assigned: bool
    event: str
    user_id: str
    org_id: str
    session_id: str
    timestamp_us: int
    original_timestamp_us: int
    properties_json: bytes


class _PropertyError(Exception):
    """A problem inside one property value, raised out of the recursive walk."""

    def __init__(self, rule: str, description: str) -> None:
        super().__init__(rule, description)
        self.rule = rule
        self.description = description


class _AmbiguousNumberError(Exception):
    """orjson turned an integer literal beyond 64 bits into a float: re-parse exactly."""


_TOO_DEEP = f"properties must be nested at most {MAX_PROPERTIES_DEPTH} deep"
_NOT_FINITE = "property numbers must be finite"
_OUT_OF_RANGE = "property integers must fit in a signed 64-bit integer"


def validate_event(
    ev: ingest_pb2.Event,
    *,
    received_at_us: int,
    sent_at_us: int | None,
    historical_import: bool,
    new_event_id: Callable[[], str],
) -> ValidEvent | Rejection:
    """Validate one wire event; `new_event_id` is called only for a valid event without an id."""
    event_id = ev.event_id
    if len(event_id) > MAX_EVENT_ID_CHARS:
        return Rejection(
            "event_id", "too_long", f"event_id must be at most {MAX_EVENT_ID_CHARS} characters"
        )

    name = ev.event
    if name not in _known_event_names:
        if not name:
            return Rejection("event", "required", _EVENT_NAME_RULE)
        if len(name) > MAX_EVENT_NAME_CHARS:
            return Rejection("event", "too_long", _EVENT_NAME_RULE)
        if _EVENT_NAME.fullmatch(name) is None:
            return Rejection("event", "pattern", _EVENT_NAME_RULE)
        if len(_known_event_names) < _MAX_KNOWN_EVENT_NAMES:
            _known_event_names.add(name)

    user_id = ev.user_id
    if len(user_id) > MAX_ID_CHARS:
        return _id_too_long("user_id")
    org_id = ev.org_id
    if len(org_id) > MAX_ID_CHARS:
        return _id_too_long("org_id")
    session_id = ev.session_id
    if len(session_id) > MAX_ID_CHARS:
        return _id_too_long("session_id")
    for field, text in (
        ("event_id", event_id),
        ("user_id", user_id),
        ("org_id", org_id),
        ("session_id", session_id),
    ):
        if "\x00" in text:
            return _nul(field)

    if ev.HasField("timestamp"):
        ts = ev.timestamp
        seconds = ts.seconds
        nanos = ts.nanos
        if not (
            _MIN_TIMESTAMP_SECONDS <= seconds <= _MAX_TIMESTAMP_SECONDS
            and 0 <= nanos <= 999_999_999
        ):
            return Rejection(
                "timestamp",
                "invalid",
                "timestamp must be a valid Timestamp between 0001-01-01 and 9999-12-31",
            )
        original_us = seconds * 1_000_000 + nanos // 1000
        timestamp_us = (
            original_us if sent_at_us is None else original_us + (received_at_us - sent_at_us)
        )
        ahead = timestamp_us - received_at_us
        if not -MAX_PAST_US <= ahead <= MAX_FUTURE_US:
            window = _check_window(timestamp_us, received_at_us, historical_import)
            if window is not None:
                return window
    else:
        # The receive time is already server time, so there is no skew to correct.
        original_us = timestamp_us = received_at_us

    properties = _properties_json(ev)
    if isinstance(properties, Rejection):
        return properties

    if event_id:
        assigned = False
    else:
        event_id = new_event_id()
        assigned = True
    return ValidEvent(
        event_id,
        assigned,
        name,
        user_id,
        org_id,
        session_id,
        timestamp_us,
        original_us,
        properties,
    )


def check_request_shape(n_events: int, n_bytes: int) -> list[tuple[str, str]]:
    """Return the (field, description) violations of a request's size limits; empty if fine."""
    violations: list[tuple[str, str]] = []
    if n_events == 0:
        violations.append(("events", "a request must carry at least one event"))
    elif n_events > MAX_EVENTS:
        violations.append(
            ("events", f"a request carries at most {MAX_EVENTS:,} events, got {n_events:,}")
        )
    if n_bytes > MAX_REQUEST_BYTES:
        violations.append(
            (
                "request",
                f"a request is at most 4 MiB ({MAX_REQUEST_BYTES:,} bytes), got {n_bytes:,}",
            )
        )
    return violations


def _id_too_long(field: str) -> Rejection:
    return Rejection(field, "too_long", f"{field} must be at most {MAX_ID_CHARS} characters")


def _duration(us: int) -> str:
    """`us` microseconds for people: as a timedelta prints it, or in days past its range
    (a skew-corrected timestamp can lie further away than timedelta can hold)."""
    try:
        return str(timedelta(microseconds=us))
    except OverflowError:
        return f"{us // 86_400_000_000:,} days"


def _check_window(
    timestamp_us: int, received_at_us: int, historical_import: bool
) -> Rejection | None:
    ahead = timestamp_us - received_at_us
    if ahead > MAX_FUTURE_US:
        return Rejection(
            "timestamp",
            "out_of_window",
            f"timestamp is {_duration(ahead)} after the receive time;"
            " at most 1 hour ahead is accepted",
        )
    if historical_import:
        # Without the 400-day bound, the floor is the earliest time a Timestamp can hold.
        if timestamp_us < _MIN_TIMESTAMP_US:
            return Rejection(
                "timestamp",
                "out_of_window",
                "timestamp is before 0001-01-01 after clock-skew correction",
            )
        return None
    if -ahead > MAX_PAST_US:
        return Rejection(
            "timestamp",
            "out_of_window",
            f"timestamp is {_duration(-ahead)} before the receive time;"
            " at most 400 days back is accepted outside historical import",
        )
    return None


def _properties_json(ev: ingest_pb2.Event) -> bytes | Rejection:
    text = ev.properties_json
    # HasField first: reading `ev.properties.fields` builds wrappers even when unset.
    has_struct = ev.HasField("properties")
    if text:
        if has_struct and ev.properties.fields:
            return Rejection(
                "properties",
                "conflicting_fields",
                "set either properties or properties_json, not both",
            )
        return _from_json_text(text)
    if not has_struct:
        return b"{}"
    fields = ev.properties.fields
    if not fields:
        return b"{}"
    if len(fields) > MAX_PROPERTIES_KEYS:
        return _too_many_keys(len(fields))
    obj: dict[str, JsonValue] = {}
    try:
        # Map order is fine here: the output is serialized with sorted keys.
        for key in fields:
            value = fields[key]
            # Most properties are strings: skipping the call for them is measurable.
            # A non-empty string_value is the one kind set (kind is a oneof).
            string = value.string_value
            obj[key] = string if string else _from_struct_value(value, 1)
    except _PropertyError:
        # Name the first bad key in sorted order, not in whatever order the map iterates.
        for key in sorted(fields):
            try:
                _from_struct_value(fields[key], 1)
            except _PropertyError as problem:
                return Rejection(f"properties.{key}", problem.rule, problem.description)
        raise
    return _serialize(obj)


def _from_json_text(text: str) -> bytes | Rejection:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson refuses some valid JSON (a number overflowing a double, very deep
        # nesting): the exact parser tells those apart from text that is not JSON.
        return _from_json_text_exact(text)
    if not isinstance(parsed, dict):
        return _not_an_object()
    if len(parsed) > MAX_PROPERTIES_KEYS:
        return _too_many_keys(len(parsed))
    if _all_plain_scalars(parsed):
        return _serialize(parsed)
    try:
        return _check_json_object(parsed)
    except _AmbiguousNumberError:
        return _from_json_text_exact(text)


def _all_plain_scalars(parsed: dict[str, JsonValue]) -> bool:
    """True when every top-level value is a string, bool, null, int64 or unambiguous float.

    The common flat object: none of its values can break a rule, so it needs no walk
    in sorted-key order (that order only decides which problem is reported first).
    """
    for value in parsed.values():
        # Exact type checks are cheaper than isinstance; anything else takes the walk.
        if type(value) is str or value is None or type(value) is bool:
            continue
        if type(value) is int:
            if _INT64_MIN <= value <= _INT64_MAX:
                continue
        # Comparisons with NaN are false, and infinities are out of range: both walk.
        elif type(value) is float and -_AMBIGUOUS_FLOAT < value < _AMBIGUOUS_FLOAT:
            continue
        return False
    return True


def _from_json_text_exact(text: str) -> bytes | Rejection:
    try:
        parsed = json.loads(text, parse_int=_parse_int, parse_constant=_refuse_constant)
    except RecursionError:
        return Rejection("properties", "too_deep", _TOO_DEEP)
    except ValueError:
        return Rejection("properties", "invalid_json", "properties_json must be valid JSON")
    if not isinstance(parsed, dict):
        return _not_an_object()
    if len(parsed) > MAX_PROPERTIES_KEYS:
        return _too_many_keys(len(parsed))
    return _check_json_object(parsed, exact=True)


def _parse_int(literal: str) -> int:
    # Python refuses to convert very long digit strings; any this long is out of range.
    if len(literal) > _MAX_INT_LITERAL_CHARS:
        return _INT64_MAX + 1
    return int(literal)


def _refuse_constant(literal: str) -> object:
    raise ValueError(f"{literal} is not JSON")


def _check_json_object(parsed: dict[str, JsonValue], *, exact: bool = False) -> bytes | Rejection:
    for key in sorted(parsed):
        try:
            _check_json_value(parsed[key], 1, exact)
        except _PropertyError as problem:
            return Rejection(f"properties.{key}", problem.rule, problem.description)
    return _serialize(parsed)


def _check_json_value(value: JsonValue, depth: int, exact: bool) -> None:
    """Check a parsed JSON value held by a container at `depth`."""
    if isinstance(value, str) or value is None:
        return
    # bool is an int subclass, and True and False are in range, so it needs no case.
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _PropertyError("out_of_range", _OUT_OF_RANGE)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _PropertyError("not_finite", _NOT_FINITE)
        if not exact and abs(value) >= _AMBIGUOUS_FLOAT:
            raise _AmbiguousNumberError
    elif isinstance(value, dict):
        if depth >= MAX_PROPERTIES_DEPTH:
            raise _PropertyError("too_deep", _TOO_DEEP)
        for key in sorted(value):
            _check_json_value(value[key], depth + 1, exact)
    else:
        if depth >= MAX_PROPERTIES_DEPTH:
            raise _PropertyError("too_deep", _TOO_DEEP)
        for item in value:
            _check_json_value(item, depth + 1, exact)


def _from_struct_value(value: struct_pb2.Value, depth: int) -> JsonValue:
    """Convert a Struct value held by a container at `depth` to a Python JSON value."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise _PropertyError("not_finite", _NOT_FINITE)
        if number.is_integer() and -_MAX_EXACT_DOUBLE_INT <= number <= _MAX_EXACT_DOUBLE_INT:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        if depth >= MAX_PROPERTIES_DEPTH:
            raise _PropertyError("too_deep", _TOO_DEEP)
        fields = value.struct_value.fields
        return {key: _from_struct_value(fields[key], depth + 1) for key in sorted(fields)}
    if kind == "list_value":
        if depth >= MAX_PROPERTIES_DEPTH:
            raise _PropertyError("too_deep", _TOO_DEEP)
        return [_from_struct_value(item, depth + 1) for item in value.list_value.values]
    # null_value, or a Value with no kind set, which carries nothing else to mean.
    return None


def _serialize(obj: dict[str, JsonValue]) -> bytes | Rejection:
    try:
        data = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # Only a string that is not valid Unicode (a lone surrogate escape) gets here.
        return Rejection("properties", "invalid_json", "properties_json must be valid JSON")
    # orjson writes U+0000 as the escape \u0000; the bytes can also come from a backslash
    # followed by "u0000", so the (rare) hit is confirmed on the values themselves.
    if b"\\u0000" in data and _holds_nul(obj):
        return _nul("properties")
    if len(data) > MAX_PROPERTIES_BYTES:
        return Rejection(
            "properties",
            "too_large",
            f"properties must be at most {MAX_PROPERTIES_BYTES:,} bytes as compact JSON,"
            f" got {len(data):,}",
        )
    return data


def _nul(field: str) -> Rejection:
    # PostgreSQL, which keeps every read model, can store U+0000 neither in text nor in
    # jsonb: an accepted event holding one would poison its whole log batch downstream.
    return Rejection(field, "nul_character", f"{field} must not contain the character U+0000")


def _holds_nul(value: JsonValue) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


def _too_many_keys(n: int) -> Rejection:
    return Rejection(
        "properties",
        "too_many_keys",
        f"properties may have at most {MAX_PROPERTIES_KEYS} top-level keys, got {n}",
    )


def _not_an_object() -> Rejection:
    return Rejection("properties", "not_an_object", "properties_json must be a JSON object")
