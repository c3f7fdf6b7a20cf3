"""The alert state machine, driven by a manual clock."""

from __future__ import annotations

import pytest

from northstar_alerts.domain.rules import Anomaly, RelativeChange, Rule, Series, Threshold
from northstar_alerts.domain.state import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    AlertState,
    ManualClock,
    Observation,
    Silence,
    acknowledge,
    anomalous,
    evaluate,
)
from northstar_runtime.errors import FailedPrecondition

MIN = 60


def _rule(**kw: object) -> Rule:
    base: dict[str, object] = {
        "rule_id": "r1",
        "tenant": "acme",
        "name": "activation low",
        "series": Series(kind="kpi", name="activation_rate"),
        "condition": Threshold(comparator="<", warning=0.30, critical=0.20),
        "interval_s": MIN,
        "labels": {"team": "growth"},
    }
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


class Driver:
    """Feeds values to `evaluate` at a manual clock, keeping the states."""

    def __init__(self, rule: Rule, silences: tuple[Silence, ...] = ()) -> None:
        self.rule, self.silences = rule, silences
        self.clock = ManualClock(1_000_000.0)
        self.states: dict[str, AlertState] = {}

    def at(self, value: float | None, *, after: float = MIN, error: str = "", **kw: object):  # type: ignore[no-untyped-def]
        obs = Observation(at=self.clock.advance(after), value=value, error=error, **kw)  # type: ignore[arg-type]
        out = evaluate(self.rule, self.states, obs, self.silences)
        self.states = out.states
        return out

    def status(self, sev: str) -> str:
        return self.states[sev].status


def test_for_keeps_pending_until_the_condition_held_long_enough() -> None:
    d = Driver(_rule(for_s=5 * MIN, condition=Threshold(comparator="<", warning=0.30)))
    out = d.at(0.25)
    assert [(t.from_status, t.to_status, t.value, t.threshold) for t in out.transitions] == [
        (INACTIVE, PENDING, 0.25, 0.30)
    ]
    assert out.notifications == []
    for _ in range(4):
        assert d.at(0.25).transitions == []
    assert d.status("warning") == PENDING
    out = d.at(0.26)
    assert [(t.from_status, t.to_status) for t in out.transitions] == [(PENDING, FIRING)]
    assert [(n.kind, n.value) for n in out.notifications] == [("firing", 0.26)]


def test_pending_falls_back_to_inactive_without_notifying() -> None:
    d = Driver(_rule(for_s=5 * MIN, condition=Threshold(comparator="<", warning=0.30)))
    d.at(0.25)
    out = d.at(0.35)
    assert [(t.from_status, t.to_status) for t in out.transitions] == [(PENDING, INACTIVE)]
    assert out.notifications == []


def test_for_zero_fires_at_once_then_resolves_once() -> None:
    d = Driver(_rule(condition=Threshold(comparator="<", warning=0.30)))
    out = d.at(0.25)
    assert [(t.from_status, t.to_status) for t in out.transitions] == [(INACTIVE, FIRING)]
    assert [n.kind for n in out.notifications] == ["firing"]
    assert d.at(0.25).notifications == []
    out = d.at(0.31)
    assert [(t.from_status, t.to_status) for t in out.transitions] == [(FIRING, RESOLVED)]
    assert [n.kind for n in out.notifications] == ["resolved"]
    assert d.at(0.31).notifications == []


def test_keep_firing_for_holds_the_alert_after_the_condition_clears() -> None:
    d = Driver(_rule(keep_firing_for_s=3 * MIN, condition=Threshold(comparator="<", warning=0.30)))
    d.at(0.25)
    assert d.at(0.35).transitions == []
    assert d.at(0.35).transitions == []
    assert d.status("warning") == FIRING
    out = d.at(0.35)
    assert [(t.from_status, t.to_status) for t in out.transitions] == [(FIRING, RESOLVED)]


def test_a_breach_during_keep_firing_for_restarts_the_hold() -> None:
    d = Driver(_rule(keep_firing_for_s=2 * MIN, condition=Threshold(comparator="<", warning=0.30)))
    d.at(0.25)
    d.at(0.35)
    d.at(0.25)
    d.at(0.35)
    assert d.status("warning") == FIRING
    assert [t.to_status for t in d.at(0.35).transitions] == [RESOLVED]


def test_errors_and_missing_values_never_resolve() -> None:
    d = Driver(_rule(condition=Threshold(comparator="<", warning=0.30)))
    d.at(0.25)
    out = d.at(None, error="metrics unavailable")
    assert (out.transitions, out.notifications, out.error) == ([], [], "metrics unavailable")
    out = d.at(None)
    assert (out.transitions, out.error) == ([], "no value")
    assert d.status("warning") == FIRING


def test_critical_suppresses_the_warning_notification() -> None:
    d = Driver(_rule())
    out = d.at(0.10)
    assert sorted((t.severity, t.to_status) for t in out.transitions) == [
        ("critical", FIRING),
        ("warning", FIRING),
    ]
    assert [(n.severity, n.kind) for n in out.notifications] == [("critical", "firing")]
    # Critical clears, warning still holds: now the warning is told.
    out = d.at(0.25)
    assert [(t.severity, t.to_status) for t in out.transitions] == [("critical", RESOLVED)]
    assert sorted((n.severity, n.kind) for n in out.notifications) == [
        ("critical", "resolved"),
        ("warning", "firing"),
    ]


def test_suppressed_warning_resolves_silently() -> None:
    d = Driver(_rule())
    d.at(0.10)
    out = d.at(0.50)
    assert sorted((t.severity, t.to_status) for t in out.transitions) == [
        ("critical", RESOLVED),
        ("warning", RESOLVED),
    ]
    assert [(n.severity, n.kind) for n in out.notifications] == [("critical", "resolved")]


def test_repeat_interval_while_firing() -> None:
    d = Driver(_rule(repeat_s=3 * MIN, condition=Threshold(comparator="<", warning=0.30)))
    assert [n.kind for n in d.at(0.25).notifications] == ["firing"]
    assert d.at(0.25).notifications == []
    assert d.at(0.25).notifications == []
    assert [n.kind for n in d.at(0.25).notifications] == ["repeat"]
    assert d.at(0.25).notifications == []


def test_silence_mutes_notifications_not_evaluation() -> None:
    start = 1_000_000.0
    silence = Silence("s1", {"team": "growth"}, start, start + 2.5 * MIN, "deploy", "ana")
    d = Driver(_rule(condition=Threshold(comparator="<", warning=0.30)), (silence,))
    out = d.at(0.25)
    assert [t.to_status for t in out.transitions] == [FIRING]
    assert out.notifications == []
    assert d.at(0.25).notifications == []
    # The silence has ended: the firing alert is told now.
    assert [n.kind for n in d.at(0.25).notifications] == ["firing"]


def test_silence_matchers_and_expiry() -> None:
    s = Silence("s1", {"team": "growth", "severity": "warning"}, 0.0, 100.0, "r", "a")
    assert s.mutes({"team": "growth", "severity": "warning", "x": "y"}, 50.0)
    assert not s.mutes({"team": "growth", "severity": "critical"}, 50.0)
    assert not s.mutes({"team": "growth", "severity": "warning"}, 100.0)
    expired = Silence("s1", {"team": "growth"}, 0.0, 100.0, "r", "a", expired_at=40.0)
    assert not expired.mutes({"team": "growth"}, 50.0)
    assert expired.mutes({"team": "growth"}, 39.0)


def test_acknowledgement_is_carried_by_the_next_notification() -> None:
    d = Driver(_rule(repeat_s=2 * MIN, condition=Threshold(comparator="<", warning=0.30)))
    d.at(0.25)
    d.states["warning"] = acknowledge(d.states["warning"], "ana", "looking into it")
    d.at(0.25)
    out = d.at(0.25)
    assert [(n.kind, n.acked_by, n.ack_comment) for n in out.notifications] == [
        ("repeat", "ana", "looking into it")
    ]
    out = d.at(0.40)
    assert [(n.kind, n.acked_by) for n in out.notifications] == [("resolved", "ana")]
    assert d.states["warning"].acked_by == ""


def test_acknowledging_an_inactive_alert_fails() -> None:
    with pytest.raises(FailedPrecondition):
        acknowledge(AlertState(severity="warning"), "ana", "")


def test_relative_change_against_the_previous_period() -> None:
    rule = _rule(
        series=Series(kind="metric", name="dau"),
        condition=RelativeChange(comparator="<", critical=-0.5),
    )
    d = Driver(rule)
    assert d.at(40.0, previous=100.0).transitions[0].to_status == FIRING
    assert d.at(None, previous=100.0).transitions == []
    assert d.at(60.0, previous=100.0).transitions[0].to_status == RESOLVED
    assert d.at(60.0, previous=0.0).error == "no value"


def test_anomaly_rules_follow_metrics_md() -> None:
    base = tuple([100.0, 110.0] * 7)
    assert not anomalous(200.0, base[:13], 3.0, None)
    assert anomalous(200.0, base, 3.0, None)
    assert not anomalous(110.0, base, 3.0, None)
    assert not anomalous(5.0, (5.0,) * 14, 3.0, None)
    assert anomalous(6.0, (5.0,) * 14, 3.0, None)
    # Within 3 s.d. (s ~ 5.19, z ~ 2.9) but past the 10 % relative rule.
    assert not anomalous(120.0, base, 3.0, None)
    assert anomalous(120.0, base, 3.0, 0.1)
    rule = _rule(series=Series(kind="metric", name="signups"), condition=Anomaly(z=3.0))
    d = Driver(rule)
    assert [t.to_status for t in d.at(200.0, baseline=base).transitions] == [FIRING]
