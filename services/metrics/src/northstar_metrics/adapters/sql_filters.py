"""domain/filters.py's property filters as SQL over `events.properties`, values bound as $n.

The trend and funnel stores evaluate filters where the events are; both build their
statements with `Params`, so a value never enters the text.
"""

from __future__ import annotations

from decimal import Decimal

import orjson

from northstar_metrics.domain.filters import Operator, PropertyFilter

_COMPARE = {
    Operator.LESS_THAN: "<",
    Operator.LESS_THAN_OR_EQUAL: "<=",
    Operator.GREATER_THAN: ">",
    Operator.GREATER_THAN_OR_EQUAL: ">=",
}


class Params:
    """A statement's positional arguments, bound as $n (PostgreSQL and DuckDB alike)."""

    def __init__(self) -> None:
        self.args: list[object] = []

    def bind(self, value: object) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def name(self, value: str | None) -> str:
        """A property name: typed, since `jsonb -> $n` could also take an array index."""
        return f"{self.bind(value)}::text"


def filter_sql(f: PropertyFilter, sql: Params) -> str:
    """domain/filters.py's semantics in SQL: jsonb equality is JSON equality (1 = 1.0).

    The condition is never NULL and never fails (a string is not cast to numeric), so it
    may sit in any AND, CASE or aggregate FILTER.
    """
    value = f"(properties -> {sql.name(f.property)})"
    if f.operator is Operator.EQUALS:
        return f"({value} = {sql.bind(orjson.dumps(f.values[0]).decode())}::jsonb) IS TRUE"
    if f.operator is Operator.NOT_EQUALS:
        # Absent: NULL, so IS NOT TRUE matches it, as the negation of EQUALS must.
        return f"({value} = {sql.bind(orjson.dumps(f.values[0]).decode())}::jsonb) IS NOT TRUE"
    if f.operator is Operator.IN:
        texts = [orjson.dumps(v).decode() for v in f.values]
        return f"({value} = ANY({sql.bind(texts)}::jsonb[])) IS TRUE"
    # The stored number is the shortest text of its double, and so is repr(bound): decimal
    # comparison orders them exactly as the doubles compare.
    bound = sql.bind(Decimal(repr(f.values[0])))
    return (
        f"(CASE WHEN jsonb_typeof({value}) = 'number'"
        f" THEN {value}::numeric {_COMPARE[f.operator]} {bound}::numeric END) IS TRUE"
    )
