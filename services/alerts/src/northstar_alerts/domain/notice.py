"""A notice: one notification due, as the evaluator writes it and every channel reads it.

The evaluator stores a notice in the outbox (`notification_outbox.notice`) in the same
transaction as the alert state that made it due; the dispatcher renders it for each
channel (webhook, Slack, email). It is a snapshot: a rule changed or deleted after the
evaluation does not change what is sent for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from northstar_alerts.domain.rules import Channels


@dataclass(frozen=True, slots=True)
class Notice:
    """What a channel renders for one (rule, severity) notification."""

    tenant: str
    rule_id: str
    rule_name: str
    severity: str  # "warning" | "critical"
    kind: str  # "firing" | "resolved" | "repeat"
    at: float  # the evaluation time, epoch seconds
    starts_at: float  # when the alert started firing, epoch seconds
    value: float | None
    threshold: float | None
    labels: Mapping[str, str]
    channels: Channels
    series: str = ""  # what the rule watches, for people: "kpi activation_rate"
    acked_by: str = ""
    ack_comment: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """Alertmanager's status: "firing" (firing and repeat) or "resolved"."""
        return "resolved" if self.kind == "resolved" else "firing"

    @property
    def dedup_key(self) -> str:
        """Unique per (rule, severity, evaluation): a replayed evaluation adds nothing."""
        return f"{self.rule_id}/{self.severity}/{self.kind}/{self.at:.6f}"

    def to_json(self) -> dict[str, Any]:
        """The jsonb stored in the outbox."""
        return {
            "tenant": self.tenant,
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "severity": self.severity,
            "kind": self.kind,
            "at": self.at,
            "starts_at": self.starts_at,
            "value": self.value,
            "threshold": self.threshold,
            "labels": dict(self.labels),
            "channels": {
                "webhooks": list(self.channels.webhooks),
                "slack": list(self.channels.slack),
                "emails": list(self.channels.emails),
            },
            "series": self.series,
            "acked_by": self.acked_by,
            "ack_comment": self.ack_comment,
            "annotations": dict(self.annotations),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Notice:
        """The notice stored by `to_json`."""
        ch = data.get("channels") or {}
        return cls(
            tenant=data["tenant"],
            rule_id=data["rule_id"],
            rule_name=data["rule_name"],
            severity=data["severity"],
            kind=data["kind"],
            at=float(data["at"]),
            starts_at=float(data["starts_at"]),
            value=data.get("value"),
            threshold=data.get("threshold"),
            labels=dict(data.get("labels") or {}),
            channels=Channels(
                webhooks=tuple(ch.get("webhooks", ())),
                slack=tuple(ch.get("slack", ())),
                emails=tuple(ch.get("emails", ())),
            ),
            series=data.get("series", ""),
            acked_by=data.get("acked_by", ""),
            ack_comment=data.get("ack_comment", ""),
            annotations=dict(data.get("annotations") or {}),
        )
