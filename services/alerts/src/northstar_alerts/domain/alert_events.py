"""The alert aggregate's events: transitions and acknowledgements of a rule's alerts.

Pure: no I/O. They live on one subject per rule (`domain.alerts.<tenant>.alert.<rule_id>`),
so AlertHistory reads a rule's whole life, oldest first, by folding that subject. Each is
published with a msg-id derived from what it records, so a retry after a crash stores it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from northstar_alerts.domain.state import Transition

SCHEMA_VERSION = "1"
TRANSITIONED = "AlertTransitioned"
ACKNOWLEDGED = "AlertAcknowledged"
EVENT_TYPES = (TRANSITIONED, ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One fact of a (rule, severity) alert's life.

    A transition has from/to status, value and threshold; an acknowledgement has who and
    comment (and `to_status` = the status it acknowledged).
    """

    type: str
    key: str  # the rule id (the aggregate's key)
    severity: str
    at: float
    from_status: str = ""
    to_status: str = ""
    value: float | None = None
    threshold: float | None = None
    acked_by: str = ""
    ack_comment: str = ""

    def msg_id(self, tenant: str) -> str:
        """The log dedup id: one event per (tenant, rule, severity, time, type)."""
        return f"{tenant}/{self.key}/{self.severity}/{self.at:.6f}/{self.type}"


def transitioned(t: Transition) -> AlertEvent:
    """The event of a transition decided by an evaluation."""
    return AlertEvent(
        TRANSITIONED,
        t.rule_id,
        t.severity,
        t.at,
        from_status=t.from_status,
        to_status=t.to_status,
        value=t.value,
        threshold=t.threshold,
    )


def acknowledged(
    rule_id: str, severity: str, status: str, *, at: float, who: str, comment: str
) -> AlertEvent:
    """The event of an acknowledgement of a pending or firing alert."""
    return AlertEvent(
        ACKNOWLEDGED, rule_id, severity, at, to_status=status, acked_by=who, ack_comment=comment
    )


def event_to_json(e: AlertEvent) -> dict[str, Any]:
    """An event as JSON-ready data."""
    return {
        "type": e.type,
        "rule_id": e.key,
        "severity": e.severity,
        "at": e.at,
        "from": e.from_status,
        "to": e.to_status,
        "value": e.value,
        "threshold": e.threshold,
        "acked_by": e.acked_by,
        "ack_comment": e.ack_comment,
    }


def event_from_json(data: dict[str, Any]) -> AlertEvent:
    """The event `event_to_json` wrote."""
    return AlertEvent(
        type=data["type"],
        key=data["rule_id"],
        severity=data["severity"],
        at=float(data["at"]),
        from_status=data.get("from", ""),
        to_status=data.get("to", ""),
        value=data.get("value"),
        threshold=data.get("threshold"),
        acked_by=data.get("acked_by", ""),
        ack_comment=data.get("ack_comment", ""),
    )
