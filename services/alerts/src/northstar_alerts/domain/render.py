"""What each channel sends for a notice: a webhook body, a Slack message, an email.

Pure: no I/O, no clock. Every renderer shows the same facts (`facts`): the value, the
threshold, the rule, the severity, since when, and the acknowledgement when there is one.

The webhook body is Alertmanager's webhook format, version 4
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), one alert per
body, so a receiver written for Alertmanager reads it unchanged. docs/alerts-webhook.md
has a full example; in short:

- `version` "4"; `status` "firing" (a firing or repeat notification) or "resolved";
- `receiver` "<tenant>/<rule_id>"; `groupKey` "<tenant>/<rule_id>/<severity>" (one group
  per rule and severity); `truncatedAlerts` 0; `externalURL` the service's link setting;
- `groupLabels` {rule_id, severity}; `commonLabels` and `commonAnnotations` those of the
  one alert;
- `alerts[0]`: `status`; `labels` (the rule's labels plus alertname, rule_id, severity);
  `annotations` (summary, value, threshold, series, since, and acknowledged_by /
  ack_comment when acknowledged, plus the notice's own); `startsAt` (when it started
  firing); `endsAt` (the resolution time, or "0001-01-01T00:00:00Z" while firing, as
  Alertmanager); `generatorURL` (the rule's page under externalURL, empty without it);
  `fingerprint` (16 hex digits: FNV-1a 64 of the sorted labels, as Prometheus computes it).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from northstar_alerts.domain.notice import Notice

WEBHOOK_VERSION = "4"
ZERO_TIME = "0001-01-01T00:00:00Z"
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_SEPARATOR = 0xFF


def rfc3339(at: float) -> str:
    """Epoch seconds as an RFC 3339 UTC time with milliseconds ("2026-12-01T09:00:00.000Z")."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint(labels: dict[str, str]) -> str:
    """Prometheus' label-set fingerprint: FNV-1a 64 over sorted name, 0xff, value, 0xff."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in (*part.encode(), _SEPARATOR):
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _number(x: float | None) -> str:
    return "n/a" if x is None else f"{x:g}"


def alert_labels(notice: Notice) -> dict[str, str]:
    """The alert's labels: the notice's, with alertname, rule_id and severity always set."""
    return {
        **notice.labels,
        "alertname": notice.rule_name,
        "rule_id": notice.rule_id,
        "severity": notice.severity,
    }


def title(notice: Notice) -> str:
    """One line: "[FIRING:critical] DAU low" (RESOLVED, or FIRING for a repeat)."""
    return f"[{notice.status.upper()}:{notice.severity}] {notice.rule_name}"


def facts(notice: Notice) -> list[tuple[str, str]]:
    """What every channel shows, in order, as (name, text)."""
    out = [
        ("Value", _number(notice.value)),
        ("Threshold", _number(notice.threshold)),
        ("Rule", f"{notice.rule_name} ({notice.rule_id})"),
        ("Severity", notice.severity),
        ("Since", rfc3339(notice.starts_at)),
    ]
    if notice.series:
        out.append(("Series", notice.series))
    if notice.kind == "resolved":
        out.append(("Resolved at", rfc3339(notice.at)))
    if notice.acked_by:
        ack = notice.acked_by + (f": {notice.ack_comment}" if notice.ack_comment else "")
        out.append(("Acknowledged by", ack))
    return out


def rule_url(notice: Notice, external_url: str) -> str:
    """The rule's page under the external URL; empty without one."""
    return f"{external_url.rstrip('/')}/alerts/rules/{notice.rule_id}" if external_url else ""


def _annotations(notice: Notice) -> dict[str, str]:
    out = {
        **notice.annotations,
        "summary": title(notice),
        "value": _number(notice.value),
        "threshold": _number(notice.threshold),
        "since": rfc3339(notice.starts_at),
    }
    if notice.series:
        out["series"] = notice.series
    if notice.acked_by:
        out["acknowledged_by"] = notice.acked_by
    if notice.ack_comment:
        out["ack_comment"] = notice.ack_comment
    return out


def webhook_body(notice: Notice, *, external_url: str = "") -> dict[str, Any]:
    """The Alertmanager webhook (version 4) body of a notice; see the module docstring."""
    labels = alert_labels(notice)
    annotations = _annotations(notice)
    return {
        "version": WEBHOOK_VERSION,
        "groupKey": f"{notice.tenant}/{notice.rule_id}/{notice.severity}",
        "truncatedAlerts": 0,
        "status": notice.status,
        "receiver": f"{notice.tenant}/{notice.rule_id}",
        "groupLabels": {"rule_id": notice.rule_id, "severity": notice.severity},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": notice.status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(notice.starts_at),
                "endsAt": rfc3339(notice.at) if notice.status == "resolved" else ZERO_TIME,
                "generatorURL": rule_url(notice, external_url),
                "fingerprint": fingerprint(labels),
            }
        ],
    }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters
    # (https://api.slack.com/reference/surfaces/formatting#escaping).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(notice: Notice, *, external_url: str = "") -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (the notification's fallback) and blocks."""
    head = title(notice)
    fields = [
        {"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(text)}"}
        for name, text in facts(notice)
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
        # A section holds at most 10 fields.
        {"type": "section", "fields": fields[:10]},
    ]
    link = rule_url(notice, external_url)
    if link:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the rule>"}],
            }
        )
    summary = ", ".join(f"{name.lower()} {text}" for name, text in facts(notice)[:2])
    return {"text": _slack_escape(f"{head}: {summary}"), "blocks": blocks}


def email_message(
    notice: Notice,
    *,
    sender: str,
    to: str,
    message_id: str,
    external_url: str = "",
) -> EmailMessage:
    """A multipart/alternative email: a plain-text part and an HTML part with the same facts."""
    head = title(notice)
    link = rule_url(notice, external_url)
    rows = facts(notice)
    width = max(len(name) for name, _ in rows)
    plain = "\n".join([head, "", *(f"{name:<{width}}  {text}" for name, text in rows)])
    if link:
        plain += f"\n\n{link}"
    cells = "".join(
        f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(text)}</td></tr>"
        for name, text in rows
    )
    anchor = f"<p><a href='{html.escape(link)}'>Open the rule</a></p>" if link else ""
    page = (
        "<!DOCTYPE html><html><body>"
        f"<h2>{html.escape(head)}</h2><table>{cells}</table>{anchor}"
        "</body></html>"
    )
    msg = EmailMessage()
    msg["Subject"] = head
    msg["From"] = sender
    msg["To"] = to
    msg["Date"] = format_datetime(datetime.fromtimestamp(notice.at, UTC))
    msg["Message-ID"] = message_id
    msg.set_content(plain + "\n")
    msg.add_alternative(page + "\n", subtype="html")
    return msg
