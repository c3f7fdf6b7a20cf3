"""Property filters and event matchers (spec/metrics.md, Funnels and Trends): pure matching.

Readings of the spec, chosen where it is silent:

- A filter reads one top-level property of the event.
- Equality is JSON equality: numbers compare by value whatever their JSON spelling
  (`1 == 1.0`), but a number never equals a string (`1 != "1"`) and a bool is not a number
  (`true != 1`); lists and objects compare element by element with the same rule; `null`
  equals `null`.
- EQUALS and IN need the property to be present: an absent property equals nothing, not even
  `null`. NOT_EQUALS is the exact negation of EQUALS, so it matches events that lack the
  property.
- The numeric comparisons (<, <=, >, >=) only match when the property is a JSON number (not a
  bool, not a numeric string); anything else never matches. Comparisons are exact (a Python
  int against a float compares mathematically, without rounding the int).

`filter_matches` states the rules plainly; `compile_filter` is the same rule specialised on
the filter's value, for the millions of events an ad-hoc query reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson
from google.protobuf import struct_pb2

from northstar.metrics.v1 import filters_pb2
from northstar_metrics.domain.events import EventRow
from northstar_runtime.errors import FieldViolation, InvalidArgument

NONE_LABEL = "$none"


class Operator(Enum):
    """How a filter compares the property with its values."""

    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    IN = "in"
    LESS_THAN = "<"
    LESS_THAN_OR_EQUAL = "<="
    GREATER_THAN = ">"
    GREATER_THAN_OR_EQUAL = ">="


_NUMERIC = {
    Operator.LESS_THAN,
    Operator.LESS_THAN_OR_EQUAL,
    Operator.GREATER_THAN,
    Operator.GREATER_THAN_OR_EQUAL,
}


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    """One condition on a top-level property; `values` holds one value except for IN."""

    property: str
    operator: Operator
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class EventMatcher:
    """An event name (empty: any name) and filters that must all hold."""

    event: str
    filters: tuple[PropertyFilter, ...] = ()

    def matches(self, row: EventRow) -> bool:
        """Whether the event has this name and satisfies every filter."""
        if self.event and row.event != self.event:
            return False
        return all(filter_matches(f, row.properties) for f in self.filters)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(a: object, b: object) -> bool:
    """JSON equality: numbers by value (1 == 1.0), never across types (1 != "1", 1 != true)."""
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


def _compare(operator: Operator, value: float, bound: float) -> bool:
    if operator is Operator.LESS_THAN:
        return value < bound
    if operator is Operator.LESS_THAN_OR_EQUAL:
        return value <= bound
    if operator is Operator.GREATER_THAN:
        return value > bound
    return value >= bound


def filter_matches(f: PropertyFilter, properties: Mapping[str, Any]) -> bool:
    """Whether properties satisfy one filter, with the semantics of the module docstring."""
    present = f.property in properties
    value = properties.get(f.property)
    if f.operator is Operator.EQUALS:
        return present and json_equal(value, f.values[0])
    if f.operator is Operator.NOT_EQUALS:
        return not (present and json_equal(value, f.values[0]))
    if f.operator is Operator.IN:
        return present and any(json_equal(value, v) for v in f.values)
    if not present or isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return _compare(f.operator, value, f.values[0])


Predicate = Callable[[Mapping[str, Any]], bool]
_MISSING = object()


def _equals_predicate(name: str, value: Any) -> Predicate:
    """EQUALS specialised on the value's JSON type: the hot path of funnels over many events."""
    if isinstance(value, str):
        # Only a str equals a str in Python, and an absent property reads as None.
        return lambda p: p.get(name) == value
    if isinstance(value, bool):
        # JSON true/false decode to the bool singletons.
        return lambda p: p.get(name, _MISSING) is value
    if _is_number(value):
        return lambda p: (x := p.get(name)) == value and x.__class__ is not bool
    if value is None:
        return lambda p: name in p and p[name] is None
    return lambda p: name in p and json_equal(p[name], value)


def compile_filter(f: PropertyFilter) -> Predicate:
    """A fast predicate equal to `filter_matches(f, ...)` (unit tests compare the two)."""
    name = f.property
    if f.operator is Operator.EQUALS:
        return _equals_predicate(name, f.values[0])
    if f.operator is Operator.NOT_EQUALS:
        equals = _equals_predicate(name, f.values[0])
        return lambda p: not equals(p)
    if f.operator is Operator.IN:
        if all(isinstance(v, str) for v in f.values):
            strings = frozenset(f.values)
            return lambda p: (x := p.get(name)).__class__ is str and x in strings
        alternatives = [_equals_predicate(name, v) for v in f.values]
        return lambda p: any(a(p) for a in alternatives)
    bound = f.values[0]
    numeric = (int, float)
    if f.operator is Operator.LESS_THAN:
        return lambda p: (x := p.get(name)).__class__ in numeric and x < bound
    if f.operator is Operator.LESS_THAN_OR_EQUAL:
        return lambda p: (x := p.get(name)).__class__ in numeric and x <= bound
    if f.operator is Operator.GREATER_THAN:
        return lambda p: (x := p.get(name)).__class__ in numeric and x > bound
    return lambda p: (x := p.get(name)).__class__ in numeric and x >= bound


def compile_filters(filters: Sequence[PropertyFilter]) -> Predicate | None:
    """One predicate for all filters of a matcher; None when there is none to check."""
    if not filters:
        return None
    if len(filters) == 1:
        return compile_filter(filters[0])
    compiled = [compile_filter(f) for f in filters]
    return lambda p: all(c(p) for c in compiled)


def plain_number(value: int | float) -> str:
    """A number in plain decimal form, as PostgreSQL's trim_scale(numeric) spells it."""
    if isinstance(value, int) or value == 0:
        return str(int(value))
    return format(Decimal(repr(value)).normalize(), "f")


def _compact(value: object) -> str:
    if _is_number(value):
        return plain_number(value)  # type: ignore[arg-type]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "[" + ",".join(_compact(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_compact(k)}:{_compact(v)}" for k, v in items) + "}"
    return str(value)


def breakdown_label(properties: Mapping[str, Any], name: str) -> str:
    """A breakdown value as text: strings as is, other JSON compact (1.0 is "1"), else `$none`."""
    value = properties.get(name)
    if value is None:
        return NONE_LABEL
    if isinstance(value, str):
        return value
    return _compact(value)


_OPERATORS = {
    filters_pb2.FILTER_OPERATOR_EQUALS: Operator.EQUALS,
    filters_pb2.FILTER_OPERATOR_NOT_EQUALS: Operator.NOT_EQUALS,
    filters_pb2.FILTER_OPERATOR_IN: Operator.IN,
    filters_pb2.FILTER_OPERATOR_LESS_THAN: Operator.LESS_THAN,
    filters_pb2.FILTER_OPERATOR_LESS_THAN_OR_EQUAL: Operator.LESS_THAN_OR_EQUAL,
    filters_pb2.FILTER_OPERATOR_GREATER_THAN: Operator.GREATER_THAN,
    filters_pb2.FILTER_OPERATOR_GREATER_THAN_OR_EQUAL: Operator.GREATER_THAN_OR_EQUAL,
}


def _python_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return value.number_value
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: _python_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_python_value(v) for v in value.list_value.values]
    return None


def _filter_violations(f: filters_pb2.PropertyFilter, field: str) -> list[FieldViolation]:
    violations = []
    if not f.property:
        violations.append(FieldViolation(f"{field}.property", "must name a property"))
    operator = _OPERATORS.get(f.operator)
    if operator is None:
        violations.append(
            FieldViolation(f"{field}.operator", "must be one of the FilterOperator values")
        )
        return violations
    if operator is Operator.IN:
        if not f.values:
            violations.append(FieldViolation(f"{field}.values", "IN needs at least one value"))
    elif len(f.values) != 1:
        violations.append(FieldViolation(f"{field}.values", "needs exactly one value"))
    for i, v in enumerate(f.values):
        kind = v.WhichOneof("kind")
        if kind is None:
            violations.append(FieldViolation(f"{field}.values[{i}]", "must be set"))
        elif kind == "number_value" and not math.isfinite(v.number_value):
            violations.append(FieldViolation(f"{field}.values[{i}]", "must be finite"))
        elif operator in _NUMERIC and kind != "number_value":
            violations.append(
                FieldViolation(f"{field}.values[{i}]", "a numeric comparison needs a number")
            )
    return violations


def matcher_violations(
    matcher: filters_pb2.EventMatcher, field: str, *, require_event: bool
) -> list[FieldViolation]:
    """What is wrong with a proto EventMatcher, each violation named under `field`."""
    violations = []
    if require_event and not matcher.event:
        violations.append(FieldViolation(f"{field}.event", "must name an event"))
    for i, f in enumerate(matcher.filters):
        violations.extend(_filter_violations(f, f"{field}.filters[{i}]"))
    return violations


def filters_from_proto(
    filters: Iterable[filters_pb2.PropertyFilter], field: str = "filters"
) -> tuple[PropertyFilter, ...]:
    """Domain filters from proto ones; INVALID_ARGUMENT naming `field[i]...` when malformed."""
    protos = list(filters)
    violations = [v for i, f in enumerate(protos) for v in _filter_violations(f, f"{field}[{i}]")]
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field} {v.description}" for v in violations),
            reason="INVALID_FILTER",
            violations=violations,
        )
    return tuple(
        PropertyFilter(
            property=f.property,
            operator=_OPERATORS[f.operator],
            values=tuple(_python_value(v) for v in f.values),
        )
        for f in protos
    )


def matcher_from_proto(
    matcher: filters_pb2.EventMatcher, field: str, *, require_event: bool = True
) -> EventMatcher:
    """A domain EventMatcher from a proto one; INVALID_ARGUMENT naming fields under `field`."""
    violations = matcher_violations(matcher, field, require_event=require_event)
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field} {v.description}" for v in violations),
            reason="INVALID_FILTER",
            violations=violations,
        )
    return EventMatcher(
        event=matcher.event, filters=filters_from_proto(matcher.filters, f"{field}.filters")
    )


def all_match(filters: Sequence[PropertyFilter], row: EventRow) -> bool:
    """Whether an event satisfies every filter (no name check)."""
    return all(filter_matches(f, row.properties) for f in filters)
