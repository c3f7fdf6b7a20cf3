"""The experiment aggregate: its definition, its events, and the rules of its life.

Pure: no I/O. `decide_*` functions take the current state and a command's input and
return the event to append (or raise a domain error); `evolve` folds an event into the
state. The command side and the read-model projection fold with the same `evolve`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

from northstar_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)

SCHEMA_VERSION = "1"
CREATED = "ExperimentCreated"
UPDATED = "ExperimentUpdated"
STARTED = "ExperimentStarted"
STOPPED = "ExperimentStopped"
CONCLUDED = "ExperimentConcluded"
ARCHIVED = "ExperimentArchived"
EVENT_TYPES = (CREATED, UPDATED, STARTED, STOPPED, CONCLUDED, ARCHIVED)

DRAFT = "draft"
RUNNING = "running"
STOPPED_STATUS = "stopped"
CONCLUDED_STATUS = "concluded"
ARCHIVED_STATUS = "archived"

BINOMIAL = "binomial"
CONTINUOUS = "continuous"
OPERATORS = ("equals", "not_equals", "in", "<", "<=", ">", ">=")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}\Z")  # \Z: "$" would admit a final newline
WEIGHT_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    """One condition on a top-level event property (semantics of funnels' filters)."""

    property: str
    operator: str
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    """A goal or guardrail metric: which events count, and how."""

    name: str
    kind: str
    event: str
    filters: tuple[PropertyFilter, ...] = ()
    property: str = ""
    window_seconds: int = 0
    inverse: bool = False


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm: key, display name and weight."""

    key: str
    name: str
    weight: float


@dataclass(frozen=True, slots=True)
class Definition:
    """The editable part of an experiment."""

    name: str
    hypothesis: str
    variants: tuple[Variant, ...]
    coverage: float
    seed: str = ""
    goal_metrics: tuple[MetricDefinition, ...] = ()
    guardrail_metrics: tuple[MetricDefinition, ...] = ()
    analysis_start_us: int | None = None

    def moves_users_from(self, other: Definition) -> bool:
        """Whether switching from `other` would move users between variants."""
        return (
            self.seed != other.seed
            or [v.key for v in self.variants] != [v.key for v in other.variants]
            or [v.weight for v in self.variants] != [v.weight for v in other.variants]
        )


@dataclass(frozen=True, slots=True)
class Experiment:
    """The aggregate's state after its events."""

    key: str
    definition: Definition
    status: str = DRAFT
    version: int = 0
    created_at_us: int = 0
    started_at_us: int = 0
    stopped_at_us: int = 0
    winner: str = ""
    conclusion_reason: str = ""

    @property
    def seed(self) -> str:
        """The hash seed in force: the definition's, else the key."""
        return self.definition.seed or self.key

    @property
    def analysis_start_us(self) -> int:
        """The definition's analysis start, else the first start."""
        if self.definition.analysis_start_us is not None:
            return self.definition.analysis_start_us
        return self.started_at_us


@dataclass(frozen=True, slots=True)
class ExperimentEvent:
    """One change of an experiment as it is stored in the log."""

    type: str
    key: str
    at_us: int
    actor: str
    definition: Definition | None = None
    winner: str = ""
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- validation -------------------------------------------------------------------------


def _bad(violations: list[FieldViolation], reason: str = "INVALID_EXPERIMENT") -> InvalidArgument:
    return InvalidArgument(
        "; ".join(f"{v.field}: {v.description}" for v in violations),
        reason=reason,
        violations=violations,
    )


def validate_key(key: str, field_name: str = "key") -> str:
    """The key, if 1-100 of letters, digits, `_` and `-`; else INVALID_ARGUMENT."""
    if not KEY_PATTERN.match(key):
        raise _bad([FieldViolation(field_name, "1-100 characters of A-Z, a-z, 0-9, _ and -")])
    return key


def _metric_violations(m: MetricDefinition, where: str) -> list[FieldViolation]:
    out = []
    if not m.name:
        out.append(FieldViolation(f"{where}.name", "must be set"))
    if m.kind not in (BINOMIAL, CONTINUOUS):
        out.append(FieldViolation(f"{where}.kind", "must be BINOMIAL or CONTINUOUS"))
    if not m.event:
        out.append(FieldViolation(f"{where}.event", "must name an event"))
    if m.kind == CONTINUOUS and not m.property:
        out.append(FieldViolation(f"{where}.property", "a continuous metric sums a property"))
    if m.window_seconds < 0:
        out.append(FieldViolation(f"{where}.window_seconds", "must be >= 0"))
    for i, f in enumerate(m.filters):
        fw = f"{where}.filters[{i}]"
        if not f.property:
            out.append(FieldViolation(f"{fw}.property", "must name a property"))
        if f.operator not in OPERATORS:
            out.append(FieldViolation(f"{fw}.operator", "must be set"))
        elif f.operator == "in":
            if not f.values:
                out.append(FieldViolation(f"{fw}.values", "IN needs at least one value"))
        elif len(f.values) != 1:
            out.append(FieldViolation(f"{fw}.values", "needs exactly one value"))
        elif f.operator in ("<", "<=", ">", ">=") and (
            isinstance(f.values[0], bool) or not isinstance(f.values[0], int | float)
        ):
            out.append(FieldViolation(f"{fw}.values", "a numeric comparison needs a number"))
        for j, v in enumerate(f.values):
            if isinstance(v, float) and not math.isfinite(v):
                out.append(FieldViolation(f"{fw}.values[{j}]", "must be finite"))
    return out


def validate_definition(d: Definition) -> Definition:
    """The definition, if valid (spec/experiments.md); else INVALID_ARGUMENT naming each field."""
    out: list[FieldViolation] = []
    if not 2 <= len(d.variants) <= 10:
        out.append(FieldViolation("definition.variants", "an experiment has 2-10 variants"))
    keys = [v.key for v in d.variants]
    if len(set(keys)) != len(keys):
        out.append(FieldViolation("definition.variants", "variant keys must be unique"))
    for i, v in enumerate(d.variants):
        if not KEY_PATTERN.match(v.key):
            out.append(
                FieldViolation(f"definition.variants[{i}].key", "1-100 of A-Z, a-z, 0-9, _, -")
            )
        if not math.isfinite(v.weight) or v.weight < 0:
            out.append(FieldViolation(f"definition.variants[{i}].weight", "must be >= 0"))
    if d.variants and abs(math.fsum(v.weight for v in d.variants) - 1) > WEIGHT_TOLERANCE:
        out.append(FieldViolation("definition.variants", "weights must sum to 1"))
    if not (math.isfinite(d.coverage) and 0 <= d.coverage <= 1):
        out.append(FieldViolation("definition.coverage", "must be between 0 and 1"))
    names = [m.name for m in (*d.goal_metrics, *d.guardrail_metrics)]
    if len(set(names)) != len(names):
        out.append(FieldViolation("definition", "metric names must be unique"))
    for i, m in enumerate(d.goal_metrics):
        out.extend(_metric_violations(m, f"definition.goal_metrics[{i}]"))
    for i, m in enumerate(d.guardrail_metrics):
        out.extend(_metric_violations(m, f"definition.guardrail_metrics[{i}]"))
    # 0 is how a state says "never started" (Experiment.analysis_start_us): an explicit
    # start there would read as no analysis at all, so a start is after the epoch.
    if d.analysis_start_us is not None and d.analysis_start_us <= 0:
        out.append(FieldViolation("definition.analysis_start_us", "must be > 0"))
    if out:
        raise _bad(out)
    return d


# --- commands ---------------------------------------------------------------------------


def _exists(state: Experiment | None, key: str) -> Experiment:
    if state is None:
        raise NotFound(
            f"experiment {key!r} does not exist",
            reason="EXPERIMENT_NOT_FOUND",
            resource_type="experiment",
            resource_name=key,
        )
    return state


def _refuse(state: Experiment, what: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"experiment {state.key!r} is {state.status}: cannot {what}",
        reason="EXPERIMENT_STATE",
        subject=f"experiments/{state.key}",
    )


def decide_create(
    state: Experiment | None, key: str, definition: Definition, at_us: int, actor: str
) -> ExperimentEvent:
    """ExperimentCreated, unless the key is taken."""
    if state is not None:
        raise AlreadyExists(f"experiment {key!r} exists", reason="EXPERIMENT_EXISTS")
    return ExperimentEvent(CREATED, key, at_us, actor, definition=validate_definition(definition))


def decide_update(
    state: Experiment | None, key: str, definition: Definition, at_us: int, actor: str
) -> ExperimentEvent:
    """ExperimentUpdated; refused when concluded/archived or when it would move users."""
    current = _exists(state, key)
    validate_definition(definition)
    if current.status in (CONCLUDED_STATUS, ARCHIVED_STATUS):
        raise _refuse(current, "edit it")
    if current.status == RUNNING and definition.moves_users_from(current.definition):
        raise FailedPrecondition(
            "changing variants, weights or seed of a running experiment would move users",
            reason="WOULD_MOVE_USERS",
            subject=f"experiments/{key}",
        )
    return ExperimentEvent(UPDATED, key, at_us, actor, definition=definition)


def decide_start(state: Experiment | None, key: str, at_us: int, actor: str) -> ExperimentEvent:
    """ExperimentStarted, from DRAFT only."""
    current = _exists(state, key)
    if current.status != DRAFT:
        raise _refuse(current, "start it")
    return ExperimentEvent(STARTED, key, at_us, actor)


def decide_stop(state: Experiment | None, key: str, at_us: int, actor: str) -> ExperimentEvent:
    """ExperimentStopped, from RUNNING only."""
    current = _exists(state, key)
    if current.status != RUNNING:
        raise _refuse(current, "stop it")
    return ExperimentEvent(STOPPED, key, at_us, actor)


def decide_conclude(
    state: Experiment | None, key: str, *, winner: str, reason: str, at_us: int, actor: str
) -> ExperimentEvent:
    """ExperimentConcluded, from STOPPED, naming one of its variants."""
    current = _exists(state, key)
    if winner not in [v.key for v in current.definition.variants]:
        raise _bad([FieldViolation("winner", "must be one of the experiment's variant keys")])
    if current.status != STOPPED_STATUS:
        raise _refuse(current, "conclude it")
    return ExperimentEvent(CONCLUDED, key, at_us, actor, winner=winner, reason=reason)


def decide_archive(state: Experiment | None, key: str, at_us: int, actor: str) -> ExperimentEvent:
    """ExperimentArchived, unless running or archived already."""
    current = _exists(state, key)
    if current.status in (RUNNING, ARCHIVED_STATUS):
        raise _refuse(current, "archive it")
    return ExperimentEvent(ARCHIVED, key, at_us, actor)


def evolve(state: Experiment | None, event: ExperimentEvent, version: int) -> Experiment:
    """The state after `event`, stored at log position `version`."""
    if event.type == CREATED:
        assert event.definition is not None
        return Experiment(event.key, event.definition, DRAFT, version, created_at_us=event.at_us)
    assert state is not None, f"{event.type} before {CREATED}"
    if event.type == UPDATED:
        assert event.definition is not None
        return replace(state, definition=event.definition, version=version)
    if event.type == STARTED:
        return replace(
            state, status=RUNNING, version=version, started_at_us=state.started_at_us or event.at_us
        )
    if event.type == STOPPED:
        return replace(state, status=STOPPED_STATUS, version=version, stopped_at_us=event.at_us)
    if event.type == CONCLUDED:
        return replace(
            state,
            status=CONCLUDED_STATUS,
            version=version,
            winner=event.winner,
            conclusion_reason=event.reason,
        )
    if event.type == ARCHIVED:
        return replace(state, status=ARCHIVED_STATUS, version=version)
    raise ValueError(f"unknown experiment event {event.type}")


# --- JSON form (the log's payload) -------------------------------------------------------


def _metric_json(m: MetricDefinition) -> dict[str, Any]:
    return {
        "name": m.name,
        "kind": m.kind,
        "event": m.event,
        "filters": [
            {"property": f.property, "operator": f.operator, "values": list(f.values)}
            for f in m.filters
        ],
        "property": m.property,
        "window_seconds": m.window_seconds,
        "inverse": m.inverse,
    }


def definition_to_json(d: Definition) -> dict[str, Any]:
    """The definition as a JSON object."""
    return {
        "name": d.name,
        "hypothesis": d.hypothesis,
        "variants": [{"key": v.key, "name": v.name, "weight": v.weight} for v in d.variants],
        "coverage": d.coverage,
        "seed": d.seed,
        "goal_metrics": [_metric_json(m) for m in d.goal_metrics],
        "guardrail_metrics": [_metric_json(m) for m in d.guardrail_metrics],
        "analysis_start_us": d.analysis_start_us,
    }


def _metric_from_json(o: dict[str, Any]) -> MetricDefinition:
    return MetricDefinition(
        name=o["name"],
        kind=o["kind"],
        event=o["event"],
        filters=tuple(
            PropertyFilter(f["property"], f["operator"], tuple(f["values"])) for f in o["filters"]
        ),
        property=o.get("property", ""),
        window_seconds=int(o.get("window_seconds", 0)),
        inverse=bool(o.get("inverse", False)),
    )


def definition_from_json(o: dict[str, Any]) -> Definition:
    """A definition from its JSON object."""
    return Definition(
        name=o["name"],
        hypothesis=o["hypothesis"],
        variants=tuple(Variant(v["key"], v["name"], float(v["weight"])) for v in o["variants"]),
        coverage=float(o["coverage"]),
        seed=o.get("seed", ""),
        goal_metrics=tuple(_metric_from_json(m) for m in o.get("goal_metrics", [])),
        guardrail_metrics=tuple(_metric_from_json(m) for m in o.get("guardrail_metrics", [])),
        analysis_start_us=o.get("analysis_start_us"),
    )


def event_to_json(e: ExperimentEvent) -> dict[str, Any]:
    """The event as a JSON object (its type travels in a header too)."""
    out: dict[str, Any] = {"type": e.type, "key": e.key, "at_us": e.at_us, "actor": e.actor}
    if e.definition is not None:
        out["definition"] = definition_to_json(e.definition)
    if e.type == CONCLUDED:
        out["winner"] = e.winner
        out["reason"] = e.reason
    return out


def event_from_json(o: dict[str, Any]) -> ExperimentEvent:
    """An event from its JSON object."""
    d = o.get("definition")
    return ExperimentEvent(
        type=o["type"],
        key=o["key"],
        at_us=int(o["at_us"]),
        actor=o.get("actor", ""),
        definition=definition_from_json(d) if d is not None else None,
        winner=o.get("winner", ""),
        reason=o.get("reason", ""),
    )
