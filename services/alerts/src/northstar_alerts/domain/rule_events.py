"""The alert rule aggregate: its events, how they fold, and the decisions of its life.

Pure: no I/O. `decide_*` take the current state and a command's input and return the
event to append (or raise a domain error); `evolve` folds an event into the state. The
version of a rule is the log position of its last event (set by the store).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from northstar_alerts.domain.rules import (
    Anomaly,
    Channels,
    Condition,
    RelativeChange,
    Rule,
    Series,
    Threshold,
    validate,
)
from northstar_runtime.errors import AlreadyExists, FailedPrecondition, NotFound

SCHEMA_VERSION = "1"
CREATED = "AlertRuleCreated"
UPDATED = "AlertRuleUpdated"
DELETED = "AlertRuleDeleted"
EVENT_TYPES = (CREATED, UPDATED, DELETED)


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """One change of a rule; `rule` is the full definition after it (None on delete)."""

    type: str
    key: str
    rule: Rule | None
    actor: str = ""


@dataclass(frozen=True, slots=True)
class RuleState:
    """A rule as folded from its events."""

    rule: Rule
    version: int
    deleted: bool = False


def decide_create(state: RuleState | None, rule: Rule, actor: str) -> RuleEvent:
    """A new rule; AlreadyExists when its id was ever used."""
    if state is not None:
        raise AlreadyExists(f"alert rule {rule.rule_id!r} exists", reason="RULE_EXISTS")
    validate(rule)
    return RuleEvent(CREATED, rule.rule_id, rule, actor)


def decide_update(state: RuleState | None, rule: Rule, actor: str) -> RuleEvent:
    """A new definition of an existing rule."""
    _live(state, rule.rule_id)
    validate(rule)
    return RuleEvent(UPDATED, rule.rule_id, rule, actor)


def decide_delete(state: RuleState | None, rule_id: str, actor: str) -> RuleEvent:
    """The end of a rule."""
    _live(state, rule_id)
    return RuleEvent(DELETED, rule_id, None, actor)


def _live(state: RuleState | None, rule_id: str) -> RuleState:
    if state is None:
        raise NotFound(f"alert rule {rule_id!r} does not exist", reason="RULE_NOT_FOUND")
    if state.deleted:
        raise FailedPrecondition(f"alert rule {rule_id!r} was deleted", reason="RULE_DELETED")
    return state


def evolve(state: RuleState | None, event: RuleEvent, version: int) -> RuleState | None:
    """Fold one event into the state."""
    if event.type in (CREATED, UPDATED) and event.rule is not None:
        return RuleState(event.rule, version)
    if event.type == DELETED and state is not None:
        return RuleState(state.rule, version, deleted=True)
    return state


def _condition_to_json(cond: Condition) -> dict[str, Any]:
    kind = {Threshold: "threshold", RelativeChange: "relative_change", Anomaly: "anomaly"}
    return {"kind": kind[type(cond)], **asdict(cond)}


def _condition_from_json(data: dict[str, Any]) -> Condition:
    fields = {k: v for k, v in data.items() if k != "kind"}
    if data["kind"] == "threshold":
        return Threshold(**fields)
    if data["kind"] == "relative_change":
        return RelativeChange(**fields)
    return Anomaly(**fields)


def rule_to_json(rule: Rule) -> dict[str, Any]:
    """A rule as JSON-ready data."""
    return {
        "rule_id": rule.rule_id,
        "tenant": rule.tenant,
        "name": rule.name,
        "series": asdict(rule.series),
        "condition": _condition_to_json(rule.condition),
        "interval_s": rule.interval_s,
        "for_s": rule.for_s,
        "keep_firing_for_s": rule.keep_firing_for_s,
        "repeat_s": rule.repeat_s,
        "labels": dict(rule.labels),
        "channels": {k: list(v) for k, v in asdict(rule.channels).items()},
    }


def rule_from_json(data: dict[str, Any]) -> Rule:
    """The rule `rule_to_json` wrote."""
    ch = data["channels"]
    return Rule(
        rule_id=data["rule_id"],
        tenant=data["tenant"],
        name=data["name"],
        series=Series(**data["series"]),
        condition=_condition_from_json(data["condition"]),
        interval_s=int(data["interval_s"]),
        for_s=int(data["for_s"]),
        keep_firing_for_s=int(data["keep_firing_for_s"]),
        repeat_s=int(data["repeat_s"]),
        labels=dict(data["labels"]),
        channels=Channels(
            webhooks=tuple(ch["webhooks"]), slack=tuple(ch["slack"]), emails=tuple(ch["emails"])
        ),
    )


def event_to_json(event: RuleEvent) -> dict[str, Any]:
    """An event as JSON-ready data."""
    return {
        "type": event.type,
        "key": event.key,
        "actor": event.actor,
        "rule": None if event.rule is None else rule_to_json(event.rule),
    }


def event_from_json(data: dict[str, Any]) -> RuleEvent:
    """The event `event_to_json` wrote."""
    rule = data.get("rule")
    return RuleEvent(
        data["type"], data["key"], None if rule is None else rule_from_json(rule), data["actor"]
    )
