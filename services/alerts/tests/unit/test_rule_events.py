"""Rule events survive their JSON form, and the decisions guard the rule's life."""

from __future__ import annotations

import pytest

from northstar_alerts.domain.rule_events import (
    CREATED,
    RuleEvent,
    decide_create,
    event_from_json,
    event_to_json,
    evolve,
)
from northstar_alerts.domain.rules import (
    Anomaly,
    Channels,
    RelativeChange,
    Rule,
    Series,
    Threshold,
    default_rules,
)
from northstar_runtime.errors import InvalidArgument


@pytest.mark.parametrize(
    "rule",
    [
        *default_rules("acme"),
        Rule(
            "r2",
            "acme",
            "signups spike",
            Series(kind="metric", name="event_count", granularity="hour", event_name="x.y"),
            Anomaly(z=2.5, relative=0.5, severity="critical"),
            interval_s=60,
            for_s=120,
            keep_firing_for_s=300,
            repeat_s=600,
            labels={"a": "b"},
            channels=Channels(("http://h/1",), ("https://s/2",), ("a@b.io",)),
        ),
        Rule("r3", "acme", "mrr drop", Series("metric", "mrr"), RelativeChange("<", -0.1, -0.2)),
    ],
)
def test_events_round_trip_through_json(rule: Rule) -> None:
    event = RuleEvent(CREATED, rule.rule_id, rule, "ana")
    assert event_from_json(event_to_json(event)) == event
    state = evolve(None, event, 7)
    assert state is not None and (state.rule, state.version, state.deleted) == (rule, 7, False)


def test_an_invalid_rule_is_not_created() -> None:
    bad = Rule("r", "acme", "x", Series("metric", "dau"), Threshold("<"), interval_s=10)
    with pytest.raises(InvalidArgument) as err:
        decide_create(None, bad, "ana")
    assert [v.field for v in err.value.violations] == ["condition", "interval"]
