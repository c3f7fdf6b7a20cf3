"""Proto ⇄ domain conversions of the experiments API."""

from __future__ import annotations

import math
from typing import Any

import orjson
from google.protobuf import struct_pb2

from northstar.experiments.v1 import experiments_pb2 as pb
from northstar_experiments.domain import experiment as dom
from northstar_runtime.errors import FieldViolation, InvalidArgument

_OPERATORS = {
    pb.FILTER_OPERATOR_EQUALS: "equals",
    pb.FILTER_OPERATOR_NOT_EQUALS: "not_equals",
    pb.FILTER_OPERATOR_IN: "in",
    pb.FILTER_OPERATOR_LESS_THAN: "<",
    pb.FILTER_OPERATOR_LESS_THAN_OR_EQUAL: "<=",
    pb.FILTER_OPERATOR_GREATER_THAN: ">",
    pb.FILTER_OPERATOR_GREATER_THAN_OR_EQUAL: ">=",
}
_OPERATOR_PROTO = {v: k for k, v in _OPERATORS.items()}
_KINDS = {pb.METRIC_KIND_BINOMIAL: dom.BINOMIAL, pb.METRIC_KIND_CONTINUOUS: dom.CONTINUOUS}
_KIND_PROTO = {v: k for k, v in _KINDS.items()}
STATUS_PROTO = {
    dom.DRAFT: pb.EXPERIMENT_STATUS_DRAFT,
    dom.RUNNING: pb.EXPERIMENT_STATUS_RUNNING,
    dom.STOPPED_STATUS: pb.EXPERIMENT_STATUS_STOPPED,
    dom.CONCLUDED_STATUS: pb.EXPERIMENT_STATUS_CONCLUDED,
    dom.ARCHIVED_STATUS: pb.EXPERIMENT_STATUS_ARCHIVED,
}
STATUS_DOMAIN = {v: k for k, v in STATUS_PROTO.items()}


def _python(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        n = value.number_value
        return int(n) if math.isfinite(n) and n.is_integer() and abs(n) < 2**53 else n
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: _python(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_python(v) for v in value.list_value.values]
    if kind == "null_value":
        return None
    raise InvalidArgument(
        "a filter value must be set", violations=[FieldViolation("values", "unset")]
    )


def _value(x: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    if x is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(x, bool):
        v.bool_value = x
    elif isinstance(x, int | float):
        v.number_value = float(x)
    elif isinstance(x, str):
        v.string_value = x
    elif isinstance(x, list):
        v.list_value.values.extend(_value(i) for i in x)
    elif isinstance(x, dict):
        for k, i in x.items():
            v.struct_value.fields[k].CopyFrom(_value(i))
    return v


def _metric(m: pb.Metric) -> dom.MetricDefinition:
    return dom.MetricDefinition(
        name=m.name,
        kind=_KINDS.get(m.kind, ""),
        event=m.event,
        filters=tuple(
            dom.PropertyFilter(
                f.property, _OPERATORS.get(f.operator, ""), tuple(_python(v) for v in f.values)
            )
            for f in m.filters
        ),
        property=m.property,
        window_seconds=m.window_seconds,
        inverse=m.inverse,
    )


def definition(d: pb.ExperimentDefinition) -> dom.Definition:
    """The domain definition of a request's (validated by the domain)."""
    return dom.Definition(
        name=d.name,
        hypothesis=d.hypothesis,
        variants=tuple(dom.Variant(v.key, v.name, v.weight) for v in d.variants),
        coverage=d.coverage,
        seed=d.seed,
        goal_metrics=tuple(_metric(m) for m in d.goal_metrics),
        guardrail_metrics=tuple(_metric(m) for m in d.guardrail_metrics),
        analysis_start_us=d.analysis_start_us if d.HasField("analysis_start_us") else None,
    )


def _metric_proto(m: dom.MetricDefinition) -> pb.Metric:
    return pb.Metric(
        name=m.name,
        kind=_KIND_PROTO.get(m.kind, pb.METRIC_KIND_UNSPECIFIED),
        event=m.event,
        filters=[
            pb.PropertyFilter(
                property=f.property,
                operator=_OPERATOR_PROTO.get(f.operator, pb.FILTER_OPERATOR_UNSPECIFIED),
                values=[_value(v) for v in f.values],
            )
            for f in m.filters
        ],
        property=m.property,
        window_seconds=m.window_seconds,
        inverse=m.inverse,
    )


def definition_proto(d: dom.Definition) -> pb.ExperimentDefinition:
    """The proto form of a definition."""
    out = pb.ExperimentDefinition(
        name=d.name,
        hypothesis=d.hypothesis,
        variants=[pb.Variant(key=v.key, name=v.name, weight=v.weight) for v in d.variants],
        coverage=d.coverage,
        seed=d.seed,
        goal_metrics=[_metric_proto(m) for m in d.goal_metrics],
        guardrail_metrics=[_metric_proto(m) for m in d.guardrail_metrics],
    )
    if d.analysis_start_us is not None:
        out.analysis_start_us = d.analysis_start_us
    return out


def experiment_proto(
    s: dom.Experiment, history: list[tuple[int, dom.ExperimentEvent]]
) -> pb.Experiment:
    """The proto form of an experiment with its history."""
    return pb.Experiment(
        key=s.key,
        definition=definition_proto(s.definition),
        status=STATUS_PROTO[s.status],
        version=s.version,
        created_at_us=s.created_at_us,
        started_at_us=s.started_at_us,
        stopped_at_us=s.stopped_at_us,
        winner=s.winner,
        conclusion_reason=s.conclusion_reason,
        effective_seed=s.seed,
        history=[
            pb.HistoryEntry(
                version=v,
                type=e.type,
                at_us=e.at_us,
                actor=e.actor,
                event_json=orjson.dumps(dom.event_to_json(e)).decode(),
            )
            for v, e in history
        ],
    )
