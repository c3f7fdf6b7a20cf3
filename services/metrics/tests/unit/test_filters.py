"""Property filters: JSON-equality semantics, numeric comparisons, and the proto converter."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from northstar.metrics.v1 import filters_pb2
from northstar_metrics.domain.events import EventRow
from northstar_metrics.domain.filters import (
    EventMatcher,
    Operator,
    PropertyFilter,
    breakdown_label,
    compile_filter,
    filter_matches,
    matcher_from_proto,
)
from northstar_runtime.errors import InvalidArgument

from ..reference_funnel import RefFilter, label
from ..reference_funnel import _holds as reference_holds

_OPS = {
    "eq": Operator.EQUALS,
    "ne": Operator.NOT_EQUALS,
    "in": Operator.IN,
    "<": Operator.LESS_THAN,
    "<=": Operator.LESS_THAN_OR_EQUAL,
    ">": Operator.GREATER_THAN,
    ">=": Operator.GREATER_THAN_OR_EQUAL,
}

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 2**53, 2**53 + 1]),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 2.0, 9007199254740992.0]),
    st.sampled_from(["", "1", "a", "true", "null"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xy"), inner),
    max_leaves=5,
)


@given(
    value=st.one_of(st.just("absent"), _json.map(lambda v: ("present", v))),
    op=st.sampled_from(sorted(_OPS)),
    operands=st.lists(_json, min_size=1, max_size=3),
)
def test_filters_match_the_reference(value: Any, op: str, operands: list[Any]) -> None:
    props = {} if value == "absent" else {"p": value[1]}
    if op in {"<", "<=", ">", ">="}:
        number = operands[0]
        if isinstance(number, bool) or not isinstance(number, int | float):
            return  # the converter refuses non-numeric bounds
    values = tuple(operands if op == "in" else operands[:1])
    f = PropertyFilter("p", _OPS[op], values)
    expected = reference_holds(RefFilter("p", op, values), props)
    assert filter_matches(f, props) == expected
    assert compile_filter(f)(props) == expected


@pytest.mark.parametrize(
    ("props", "op", "value", "expected"),
    [
        ({"p": 1}, Operator.EQUALS, 1.0, True),
        ({"p": 1.0}, Operator.EQUALS, 1, True),
        ({"p": "1"}, Operator.EQUALS, 1, False),
        ({"p": True}, Operator.EQUALS, 1, False),
        ({"p": 1}, Operator.EQUALS, True, False),
        ({"p": None}, Operator.EQUALS, None, True),
        ({}, Operator.EQUALS, None, False),
        ({}, Operator.NOT_EQUALS, "x", True),
        ({"p": "x"}, Operator.NOT_EQUALS, "x", False),
        ({"p": [1, {"a": 2}]}, Operator.EQUALS, [1.0, {"a": 2.0}], True),
        ({"p": "5"}, Operator.GREATER_THAN, 1, False),
        ({"p": True}, Operator.GREATER_THAN_OR_EQUAL, 1, False),
        ({"p": 2**53 + 1}, Operator.GREATER_THAN, float(2**53), True),
        ({"p": 3}, Operator.LESS_THAN_OR_EQUAL, 3.0, True),
        ({}, Operator.LESS_THAN, 3, False),
    ],
)
def test_filter_semantics_by_hand(
    props: dict[str, Any], op: Operator, value: Any, expected: bool
) -> None:
    f = PropertyFilter("p", op, (value,))
    assert filter_matches(f, props) is expected
    assert compile_filter(f)(props) is expected


def test_in_matches_any_listed_value() -> None:
    f = PropertyFilter("plan", Operator.IN, ("pro", 2))
    assert [filter_matches(f, {"plan": v}) for v in ["pro", 2.0, "2", None]] == [
        True,
        True,
        False,
        False,
    ]
    assert not filter_matches(f, {})


def test_matcher_needs_the_name_and_every_filter() -> None:
    m = EventMatcher("a", (PropertyFilter("p", Operator.EQUALS, (1,)),))
    row = EventRow("1", "a", "u", "", 0, {"p": 1})
    assert m.matches(row)
    assert not m.matches(EventRow("1", "b", "u", "", 0, {"p": 1}))
    assert not m.matches(EventRow("1", "a", "u", "", 0, {"p": 2}))
    assert EventMatcher("").matches(row)


@given(value=_json)
def test_breakdown_labels_match_the_reference_on_scalars(value: Any) -> None:
    if isinstance(value, list | dict) or (isinstance(value, int) and abs(value) > 2**52):
        return
    assert breakdown_label({"p": value}, "p") == label({"p": value}, "p")[0]


def test_breakdown_labels_by_hand() -> None:
    assert [
        breakdown_label({"p": v}, "p")
        for v in ["x", 1, 1.0, 2.5, True, False, [1, "a"], {"b": 1.0, "a": None}, 1e-7, 1e20]
    ] == [
        "x",
        "1",
        "1",
        "2.5",
        "true",
        "false",
        '[1,"a"]',
        '{"a":null,"b":1}',
        "0.0000001",
        "100000000000000000000",
    ]
    assert breakdown_label({}, "p") == "$none"
    assert breakdown_label({"p": None}, "p") == "$none"


def _value(**kwargs: Any) -> struct_pb2.Value:
    return struct_pb2.Value(**kwargs)


def test_proto_matchers_convert() -> None:
    proto = filters_pb2.EventMatcher(
        event="workflow.run",
        filters=[
            filters_pb2.PropertyFilter(
                property="status",
                operator=filters_pb2.FILTER_OPERATOR_IN,
                values=[_value(string_value="success"), _value(number_value=1)],
            ),
            filters_pb2.PropertyFilter(
                property="n",
                operator=filters_pb2.FILTER_OPERATOR_LESS_THAN,
                values=[_value(number_value=2.5)],
            ),
        ],
    )
    assert matcher_from_proto(proto, "steps[0]") == EventMatcher(
        "workflow.run",
        (
            PropertyFilter("status", Operator.IN, ("success", 1.0)),
            PropertyFilter("n", Operator.LESS_THAN, (2.5,)),
        ),
    )


@pytest.mark.parametrize(
    ("proto", "fields"),
    [
        (filters_pb2.EventMatcher(event=""), ["steps[1].event"]),
        (
            filters_pb2.EventMatcher(
                event="a",
                filters=[filters_pb2.PropertyFilter(property="p", values=[_value(number_value=1)])],
            ),
            ["steps[1].filters[0].operator"],
        ),
        (
            filters_pb2.EventMatcher(
                event="a",
                filters=[
                    filters_pb2.PropertyFilter(
                        property="",
                        operator=filters_pb2.FILTER_OPERATOR_GREATER_THAN,
                        values=[_value(string_value="5")],
                    )
                ],
            ),
            ["steps[1].filters[0].property", "steps[1].filters[0].values[0]"],
        ),
        (
            filters_pb2.EventMatcher(
                event="a",
                filters=[
                    filters_pb2.PropertyFilter(
                        property="p", operator=filters_pb2.FILTER_OPERATOR_IN
                    ),
                    filters_pb2.PropertyFilter(
                        property="p",
                        operator=filters_pb2.FILTER_OPERATOR_EQUALS,
                        values=[_value(string_value="a"), _value(string_value="b")],
                    ),
                ],
            ),
            ["steps[1].filters[0].values", "steps[1].filters[1].values"],
        ),
    ],
)
def test_malformed_proto_matchers_name_their_fields(
    proto: filters_pb2.EventMatcher, fields: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        matcher_from_proto(proto, "steps[1]")
    assert [v.field for v in caught.value.violations] == fields
    assert caught.value.reason == "INVALID_FILTER"
