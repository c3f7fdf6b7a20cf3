"""Rules and alerts between their protobuf form and the domain's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from google.protobuf import timestamp_pb2

from northstar.alerts.v1 import alerts_pb2 as pb
from northstar_alerts.adapters.delivery_store import DeliveryView, NotificationView
from northstar_alerts.application.alerts import AlertView, Trial
from northstar_alerts.domain import silences
from northstar_alerts.domain.alert_events import TRANSITIONED, AlertEvent
from northstar_alerts.domain.delivery import DELIVERED, FAILED
from northstar_alerts.domain.delivery import PENDING as DELIVERY_PENDING
from northstar_alerts.domain.rules import (
    CRITICAL,
    DEFAULT_INTERVAL_S,
    DEFAULT_REPEAT_S,
    RULE_ID,
    RULE_ID_RULE,
    WARNING,
    Anomaly,
    Channels,
    Comparator,
    Condition,
    RelativeChange,
    Rule,
    Series,
    Threshold,
)
from northstar_alerts.domain.state import FIRING, INACTIVE, PENDING, RESOLVED, Silence
from northstar_runtime.errors import FieldViolation, InvalidArgument

_COMPARATORS: dict[pb.Comparator.ValueType, Comparator] = {
    pb.COMPARATOR_LESS: "<",
    pb.COMPARATOR_LESS_EQUAL: "<=",
    pb.COMPARATOR_GREATER: ">",
    pb.COMPARATOR_GREATER_EQUAL: ">=",
}
_COMPARATOR_PB = {v: k for k, v in _COMPARATORS.items()}
_SEVERITIES = {pb.SEVERITY_WARNING: WARNING, pb.SEVERITY_CRITICAL: CRITICAL}
_SEVERITY_PB = {v: k for k, v in _SEVERITIES.items()}
_KINDS = {pb.SERIES_KIND_KPI: "kpi", pb.SERIES_KIND_METRIC: "metric"}
_KIND_PB = {v: k for k, v in _KINDS.items()}


def _invalid(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field}: {description}", violations=[FieldViolation(field, description)]
    )


def _levels(msg: pb.Levels, field: str) -> tuple[Comparator, float | None, float | None]:
    if msg.comparator not in _COMPARATORS:
        raise _invalid(f"{field}.comparator", "required")
    warning = msg.warning if msg.HasField("warning") else None
    critical = msg.critical if msg.HasField("critical") else None
    return _COMPARATORS[msg.comparator], warning, critical


def _condition(msg: pb.Rule) -> Condition:
    which = msg.WhichOneof("condition")
    if which == "threshold":
        return Threshold(*_levels(msg.threshold, "threshold"))
    if which == "relative_change":
        return RelativeChange(*_levels(msg.relative_change, "relative_change"))
    if which == "anomaly":
        a = msg.anomaly
        return Anomaly(
            z=a.z or 3.0,
            relative=a.relative if a.HasField("relative") else None,
            severity=_SEVERITIES.get(a.severity, WARNING),
        )
    raise _invalid("condition", "one of threshold, relative_change, anomaly is required")


# The domain names a rule's parts by their meaning; a request names them by its fields.
_REQUEST_FIELDS = {
    "interval": "interval_seconds",
    "for": "for_seconds",
    "keep_firing_for": "keep_firing_for_seconds",
    "repeat_interval": "repeat_interval_seconds",
}


def request_field(path: str, msg: pb.Rule, prefix: str) -> str:
    """A domain field path (`condition.critical`) as the request's (`rule.threshold.critical`)."""
    head, dot, rest = path.partition(".")
    if head == "condition":
        head = msg.WhichOneof("condition") or "condition"
    return f"{prefix}.{_REQUEST_FIELDS.get(head, head)}{dot}{rest}"


@contextmanager
def request_fields(msg: pb.Rule, prefix: str) -> Iterator[None]:
    """Re-raise a rule's InvalidArgument with its violations named by the request's fields."""
    try:
        yield
    except InvalidArgument as e:
        violations = [
            FieldViolation(request_field(v.field, msg, prefix), v.description) for v in e.violations
        ]
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(
            f"invalid alert rule: {text}" if text else e.message,
            reason=e.reason,
            violations=violations,
        ) from e


def rule_from_proto(msg: pb.Rule, tenant: str) -> Rule:
    """The domain rule of a request (defaults applied; validated by the domain). Field
    violations name the Rule message's fields; `request_fields` puts the request's path first."""
    if not msg.rule_id:
        raise _invalid("rule_id", "required")
    if msg.series.kind not in _KINDS:
        raise _invalid("series.kind", "required")
    return Rule(
        rule_id=msg.rule_id,
        tenant=tenant,
        name=msg.name,
        series=Series(
            kind=_KINDS[msg.series.kind],  # type: ignore[arg-type]
            name=msg.series.name,
            granularity=msg.series.granularity or "day",
            event_name=msg.series.event_name,
        ),
        condition=_condition(msg),
        interval_s=msg.interval_seconds or DEFAULT_INTERVAL_S,
        for_s=msg.for_seconds,
        keep_firing_for_s=msg.keep_firing_for_seconds,
        repeat_s=msg.repeat_interval_seconds or DEFAULT_REPEAT_S,
        labels=dict(msg.labels),
        channels=Channels(
            webhooks=tuple(msg.channels.webhooks),
            slack=tuple(msg.channels.slack),
            emails=tuple(msg.channels.emails),
        ),
    )


def _levels_proto(cond: Threshold | RelativeChange) -> pb.Levels:
    out = pb.Levels(comparator=_COMPARATOR_PB[cond.comparator])
    if cond.warning is not None:
        out.warning = cond.warning
    if cond.critical is not None:
        out.critical = cond.critical
    return out


def rule_to_proto(rule: Rule) -> pb.Rule:
    """The protobuf form of a rule."""
    out = pb.Rule(
        rule_id=rule.rule_id,
        name=rule.name,
        series=pb.Series(
            kind=_KIND_PB[rule.series.kind],
            name=rule.series.name,
            granularity=rule.series.granularity,
            event_name=rule.series.event_name,
        ),
        interval_seconds=rule.interval_s,
        for_seconds=rule.for_s,
        keep_firing_for_seconds=rule.keep_firing_for_s,
        repeat_interval_seconds=rule.repeat_s,
        labels=rule.labels,
        channels=pb.Channels(
            webhooks=rule.channels.webhooks,
            slack=rule.channels.slack,
            emails=rule.channels.emails,
        ),
    )
    cond = rule.condition
    if isinstance(cond, Threshold):
        out.threshold.CopyFrom(_levels_proto(cond))
    elif isinstance(cond, RelativeChange):
        out.relative_change.CopyFrom(_levels_proto(cond))
    else:
        anomaly = pb.Anomaly(z=cond.z, severity=_SEVERITY_PB[cond.severity])
        if cond.relative is not None:
            anomaly.relative = cond.relative
        out.anomaly.CopyFrom(anomaly)
    return out


_SILENCE_STATUS_PB = {
    silences.PENDING: pb.SILENCE_STATUS_PENDING,
    silences.ACTIVE: pb.SILENCE_STATUS_ACTIVE,
    silences.ENDED: pb.SILENCE_STATUS_EXPIRED,
}


def _seconds(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def _timestamp(at: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(at * 1e9))
    return ts


def silence_from_proto(msg: pb.Silence, silence_id: str, now: float) -> Silence:
    """The domain silence of a request (starts now when unset; validated by the domain)."""
    if not msg.HasField("ends_at"):
        raise _invalid("silence.ends_at", "required")
    return Silence(
        silence_id=silence_id,
        matchers=dict(msg.matchers),
        starts_at=_seconds(msg.starts_at) if msg.HasField("starts_at") else now,
        ends_at=_seconds(msg.ends_at),
        reason=msg.reason,
        author=msg.author,
    )


def silence_to_proto(state: silences.SilenceState, now: float) -> pb.Silence:
    """The protobuf form of a silence, with its status at `now`."""
    s = state.silence
    out = pb.Silence(
        silence_id=s.silence_id,
        matchers=dict(s.matchers),
        starts_at=_timestamp(s.starts_at),
        ends_at=_timestamp(s.ends_at),
        reason=s.reason,
        author=s.author,
        status=_SILENCE_STATUS_PB[silences.status_at(s, now)],
        version=state.version,
    )
    if s.expired_at is not None:
        out.expired_at.CopyFrom(_timestamp(s.expired_at))
    return out


_DELIVERY_STATUS_PB = {
    DELIVERY_PENDING: pb.DELIVERY_STATUS_PENDING,
    DELIVERED: pb.DELIVERY_STATUS_DELIVERED,
    FAILED: pb.DELIVERY_STATUS_FAILED,
}


def _when(at: datetime | None) -> timestamp_pb2.Timestamp | None:
    return None if at is None else _timestamp(at.timestamp())


def _delivery_to_proto(d: DeliveryView) -> pb.Delivery:
    return pb.Delivery(
        delivery_id=d.delivery_id,
        channel=d.channel,
        target=d.target,
        status=_DELIVERY_STATUS_PB[d.status],
        attempts=d.attempts,
        next_attempt_at=_when(d.next_attempt_at if d.status == DELIVERY_PENDING else None),
        delivered_at=_when(d.delivered_at),
        last_error=d.last_error,
        attempt_log=[
            pb.DeliveryAttempt(
                attempt=a.attempt,
                outcome=a.outcome,
                started_at=_when(a.started_at),
                finished_at=_when(a.finished_at),
                http_status=a.http_status or 0,
                smtp_reply=a.smtp_reply,
                error=a.error,
                duration_ms=a.duration_ms or 0.0,
            )
            for a in d.attempt_log
        ],
    )


def notification_to_proto(n: NotificationView) -> pb.Notification:
    """The protobuf form of a notification and its deliveries."""
    return pb.Notification(
        notification_id=n.notification_id,
        rule_id=n.rule_id,
        severity=_SEVERITY_PB[n.severity],
        kind=n.kind,
        due_at=_when(n.due_at),
        deliveries=[_delivery_to_proto(d) for d in n.deliveries],
    )


_STATUS_PB = {
    INACTIVE: pb.ALERT_STATUS_INACTIVE,
    PENDING: pb.ALERT_STATUS_PENDING,
    FIRING: pb.ALERT_STATUS_FIRING,
    RESOLVED: pb.ALERT_STATUS_RESOLVED,
}
MAX_ACK_TEXT = 1000


def _us(at: float | None) -> int:
    return 0 if at is None else round(at * 1_000_000)


def severity_from_proto(value: pb.Severity.ValueType, field: str = "severity") -> str:
    """A request's severity; INVALID_ARGUMENT when unset."""
    if value not in _SEVERITIES:
        raise _invalid(field, "must be SEVERITY_WARNING or SEVERITY_CRITICAL")
    return _SEVERITIES[value]


def required_id(rule_id: str, field: str = "rule_id") -> str:
    """A request's rule id; INVALID_ARGUMENT when empty or malformed."""
    if not rule_id:
        raise _invalid(field, "required")
    if not RULE_ID.match(rule_id):
        raise _invalid(field, RULE_ID_RULE)
    return rule_id


def ack_text(text: str, field: str) -> str:
    """Who or a comment of an acknowledgement, bounded."""
    if len(text) > MAX_ACK_TEXT:
        raise _invalid(field, f"at most {MAX_ACK_TEXT} characters")
    return text


def alert_to_proto(view: AlertView) -> pb.Alert:
    """The protobuf form of a listed alert."""
    st = view.state
    out = pb.Alert(
        rule_id=view.rule.rule_id,
        rule_name=view.rule.name,
        severity=_SEVERITY_PB[st.severity],
        status=_STATUS_PB[st.status],
        since_us=_us(st.since),
        acknowledged_by=st.acked_by,
        ack_comment=st.ack_comment,
        last_evaluated_at_us=_us(view.last_evaluated_at),
        last_error=view.last_error,
    )
    if st.value is not None:
        out.value = st.value
    if st.threshold is not None:
        out.threshold = st.threshold
    return out


def history_entry_to_proto(e: AlertEvent) -> pb.AlertHistoryEntry:
    """The protobuf form of an alert event."""
    out = pb.AlertHistoryEntry(
        kind=pb.ALERT_EVENT_KIND_TRANSITION
        if e.type == TRANSITIONED
        else pb.ALERT_EVENT_KIND_ACKNOWLEDGEMENT,
        severity=_SEVERITY_PB[e.severity],
        from_status=_STATUS_PB.get(e.from_status, pb.ALERT_STATUS_UNSPECIFIED),
        to_status=_STATUS_PB.get(e.to_status, pb.ALERT_STATUS_UNSPECIFIED),
        at_us=_us(e.at),
        acknowledged_by=e.acked_by,
        ack_comment=e.ack_comment,
    )
    if e.value is not None:
        out.value = e.value
    if e.threshold is not None:
        out.threshold = e.threshold
    return out


def trial_to_proto(trial: Trial) -> pb.TestRuleResponse:
    """The protobuf form of a rule's trial."""
    obs = trial.observation
    out = pb.TestRuleResponse(at_us=_us(obs.at), baseline_values=len(obs.baseline), error=obs.error)
    if obs.value is not None:
        out.value = obs.value
    if obs.previous is not None:
        out.previous = obs.previous
    for sev in (WARNING, CRITICAL):
        if sev not in trial.levels:
            continue
        held = None if trial.verdicts is None else trial.verdicts.get(sev)
        verdict = (
            pb.VERDICT_NONE if held is None else (pb.VERDICT_BREACHED if held else pb.VERDICT_CLEAR)
        )
        out.severities.append(
            pb.SeverityVerdict(
                severity=_SEVERITY_PB[sev], verdict=verdict, threshold=trial.levels[sev]
            )
        )
    return out
