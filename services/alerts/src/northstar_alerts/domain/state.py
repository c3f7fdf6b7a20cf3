"""Alert state per rule and severity, with Prometheus semantics.

Pure: no I/O, no wall clock. Every function takes the evaluation time `at` (seconds), so
tests drive time with a `ManualClock`. `evaluate` folds one evaluation of a rule into its
states and returns the transitions (domain events: value, threshold, time) and the
notifications due. States: INACTIVE -> PENDING -> FIRING -> RESOLVED.

Readings (also in docs/spec-readings.md):
- an evaluation that failed (metrics unavailable) or found no value changes nothing: it
  never resolves nor starts an alert; the caller records it as an ERROR evaluation;
- `for = 0` goes from INACTIVE straight to FIRING (one transition, as Prometheus);
- a critical alert suppresses the warning's notifications while it fires; the warning's
  state is still kept and listed;
- a RESOLVED notification is sent only when its FIRING one was (muted or suppressed
  firing alerts resolve silently, as Alertmanager does);
- a silence mutes notifications; a repeat missed while silenced is sent at the first
  evaluation after the silence ends.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from northstar_alerts.domain.rules import (
    CRITICAL,
    WARNING,
    Anomaly,
    RelativeChange,
    Rule,
    compare,
)
from northstar_runtime.errors import FailedPrecondition

INACTIVE = "INACTIVE"
PENDING = "PENDING"
FIRING = "FIRING"
RESOLVED = "RESOLVED"


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward and answer the new time."""
        self.now += seconds
        return self.now


@dataclass(frozen=True, slots=True)
class AlertState:
    """The current state of one (rule, severity)."""

    severity: str
    status: str = INACTIVE
    since: float | None = None
    active_at: float | None = None
    last_breach_at: float | None = None
    value: float | None = None
    threshold: float | None = None
    last_notified_at: float | None = None
    notified_firing: bool = False
    acked_by: str = ""
    ack_comment: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change: the domain event recorded in the log."""

    rule_id: str
    severity: str
    from_status: str
    to_status: str
    at: float
    value: float | None
    threshold: float | None


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification due: kind is firing, resolved or repeat."""

    rule_id: str
    severity: str
    kind: str
    at: float
    value: float | None
    threshold: float | None
    acked_by: str = ""
    ack_comment: str = ""


@dataclass(frozen=True, slots=True)
class Observation:
    """One reading of a rule's series: value (and previous / baseline where needed) or error."""

    at: float
    value: float | None = None
    previous: float | None = None
    baseline: tuple[float, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes notifications of alerts whose labels match every matcher, within a time range."""

    silence_id: str
    matchers: Mapping[str, str]
    starts_at: float
    ends_at: float
    reason: str
    author: str
    expired_at: float | None = None

    def mutes(self, labels: Mapping[str, str], at: float) -> bool:
        """Whether this silence mutes an alert with `labels` at `at`."""
        end = self.ends_at if self.expired_at is None else min(self.ends_at, self.expired_at)
        if not self.starts_at <= at < end:
            return False
        return all(labels.get(k) == v for k, v in self.matchers.items())


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one evaluation produced."""

    states: dict[str, AlertState]
    transitions: list[Transition]
    notifications: list[Notification]
    error: str = ""


def anomalous(x: float, baseline: Sequence[float], z: float, relative: float | None) -> bool:
    """metrics.md Anomalies: |z| >= z, or |x - m| / m > r; no verdict under 14 baseline days."""
    if len(baseline) < 14:
        return False
    m = statistics.fmean(baseline)
    s = statistics.stdev(baseline)
    if s == 0:
        # A flat baseline: any departure from it is anomalous (infinite z).
        return x != m
    if abs((x - m) / s) >= z:
        return True
    return relative is not None and m != 0 and abs(x - m) / m > relative


def breaches(rule: Rule, obs: Observation) -> dict[str, bool] | None:
    """Which severities' conditions hold; None when the observation has no verdict."""
    if obs.error or obs.value is None:
        return None
    cond = rule.condition
    if isinstance(cond, Anomaly):
        return {cond.severity: anomalous(obs.value, obs.baseline, cond.z, cond.relative)}
    value = obs.value
    if isinstance(cond, RelativeChange):
        if obs.previous is None or obs.previous == 0:
            return None
        value = (obs.value - obs.previous) / obs.previous
    return {sev: compare(value, cond.comparator, lvl) for sev, lvl in rule.levels().items()}


def labels_of(rule: Rule, severity: str) -> dict[str, str]:
    """An alert's labels: the rule's plus alertname, rule_id and severity."""
    return {**rule.labels, "alertname": rule.name, "rule_id": rule.rule_id, "severity": severity}


def _step(rule: Rule, st: AlertState, held: bool, obs: Observation) -> AlertState:
    at, level = obs.at, rule.levels()[st.severity]
    seen = replace(st, value=obs.value, threshold=level)
    if held:
        seen = replace(seen, last_breach_at=at)
        if st.status in (INACTIVE, RESOLVED):
            if rule.for_s == 0:
                return replace(seen, status=FIRING, since=at, active_at=at, notified_firing=False)
            return replace(seen, status=PENDING, since=at, active_at=at)
        if st.status == PENDING and at - (st.active_at or at) >= rule.for_s:
            return replace(seen, status=FIRING, since=at, notified_firing=False)
        return seen
    if st.status == PENDING:
        return replace(seen, status=INACTIVE, since=at, active_at=None)
    if st.status == FIRING:
        last = st.last_breach_at if st.last_breach_at is not None else at
        if at - last < rule.keep_firing_for_s:
            return seen
        return replace(seen, status=RESOLVED, since=at, active_at=None)
    return seen


def evaluate(
    rule: Rule,
    states: Mapping[str, AlertState],
    obs: Observation,
    silences: Sequence[Silence] = (),
) -> Outcome:
    """Fold one evaluation into the rule's states; answer transitions and notifications."""
    current = {sev: states.get(sev, AlertState(severity=sev)) for sev in rule.levels()}
    verdict = breaches(rule, obs)
    if verdict is None:
        return Outcome(dict(current), [], [], error=obs.error or "no value")
    new = {sev: _step(rule, st, verdict[sev], obs) for sev, st in current.items()}
    transitions = [
        Transition(
            rule.rule_id, sev, current[sev].status, st.status, obs.at, st.value, st.threshold
        )
        for sev, st in new.items()
        if st.status != current[sev].status
    ]
    changed = {t.severity for t in transitions}
    critical_firing = CRITICAL in new and new[CRITICAL].status == FIRING
    notifications: list[Notification] = []
    for sev, st in new.items():
        kind = _due(rule, st, sev in changed, obs.at)
        if kind is None:
            continue
        suppressed = sev == WARNING and critical_firing
        muted = any(s.mutes(labels_of(rule, sev), obs.at) for s in silences)
        if suppressed or muted:
            continue
        notifications.append(
            Notification(
                rule.rule_id, sev, kind, obs.at, st.value, st.threshold, st.acked_by, st.ack_comment
            )
        )
        if kind == "resolved":
            new[sev] = replace(
                st, last_notified_at=obs.at, notified_firing=False, acked_by="", ack_comment=""
            )
        else:
            new[sev] = replace(st, last_notified_at=obs.at, notified_firing=True)
    for sev, st in new.items():
        if st.status == RESOLVED and sev in changed and (st.acked_by or st.ack_comment):
            new[sev] = replace(st, acked_by="", ack_comment="")
    return Outcome(new, transitions, notifications)


def _due(rule: Rule, st: AlertState, changed: bool, at: float) -> str | None:
    if st.status == FIRING:
        if not st.notified_firing:
            return "firing"
        if st.last_notified_at is not None and at - st.last_notified_at >= rule.repeat_s:
            return "repeat"
        return None
    if st.status == RESOLVED and changed and st.notified_firing:
        return "resolved"
    return None


def acknowledge(st: AlertState, who: str, comment: str) -> AlertState:
    """Record who acknowledged a pending or firing alert (shown in the next notification)."""
    if st.status not in (PENDING, FIRING):
        raise FailedPrecondition(
            f"alert is {st.status}, only a pending or firing one can be acknowledged"
        )
    return replace(st, acked_by=who, ack_comment=comment)
