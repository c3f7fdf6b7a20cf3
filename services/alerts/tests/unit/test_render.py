"""Each channel's rendering of a notice: the Alertmanager body, Slack blocks, a two-part email."""

from __future__ import annotations

from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage

from northstar_alerts.domain.notice import Notice
from northstar_alerts.domain.render import (
    ZERO_TIME,
    email_message,
    fingerprint,
    rfc3339,
    slack_body,
    webhook_body,
)
from northstar_alerts.domain.rules import Channels

URL = "https://northstar.example.com"


def notice(kind: str = "firing", acked_by: str = "", ack_comment: str = "") -> Notice:
    return Notice(
        tenant="acme",
        rule_id="act-low",
        rule_name="Activation <low> & falling",
        severity="critical",
        kind=kind,
        at=1_764_583_200.0,  # 2025-12-01T10:00:00Z
        starts_at=1_764_579_600.0,  # 2025-12-01T09:00:00Z
        value=0.12,
        threshold=0.2,
        labels={"team": "growth"},
        channels=Channels(webhooks=("http://h/x",)),
        series="kpi activation_rate",
        acked_by=acked_by,
        ack_comment=ack_comment,
        annotations={"runbook": "https://wiki/act"},
    )


def test_rfc3339_is_utc_with_milliseconds() -> None:
    assert rfc3339(1_764_579_600.25) == "2025-12-01T09:00:00.250Z"


def test_fingerprint_is_prometheus_fnv1a_of_sorted_labels() -> None:
    assert fingerprint({}) == "cbf29ce484222325"  # the FNV-1a 64 offset basis
    # prometheus/common model's signature test: 5799056148416392346.
    pair = {"name": "garland, briggs", "fear": "love is not enough"}
    assert fingerprint(pair) == f"{5799056148416392346:016x}"
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1", "b": "2"}) != fingerprint({"a": "12"})
    assert len(fingerprint({"alertname": "x"})) == 16


def test_webhook_body_is_alertmanager_version_4() -> None:
    body = webhook_body(notice(), external_url=URL)
    labels = {
        "team": "growth",
        "alertname": "Activation <low> & falling",
        "rule_id": "act-low",
        "severity": "critical",
    }
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert (body["version"], body["status"], body["truncatedAlerts"]) == ("4", "firing", 0)
    assert body["groupKey"] == "acme/act-low/critical"
    assert body["groupLabels"] == {"rule_id": "act-low", "severity": "critical"}
    assert body["commonLabels"] == labels
    assert body["externalURL"] == URL
    [alert] = body["alerts"]
    assert alert["labels"] == labels
    assert alert["annotations"] == {
        "runbook": "https://wiki/act",
        "summary": "[FIRING:critical] Activation <low> & falling",
        "value": "0.12",
        "threshold": "0.2",
        "since": "2025-12-01T09:00:00.000Z",
        "series": "kpi activation_rate",
    }
    assert body["commonAnnotations"] == alert["annotations"]
    assert (alert["startsAt"], alert["endsAt"]) == ("2025-12-01T09:00:00.000Z", ZERO_TIME)
    assert alert["generatorURL"] == f"{URL}/alerts/rules/act-low"
    assert alert["fingerprint"] == fingerprint(labels)


def test_resolved_webhook_ends_at_the_resolution_and_shows_the_acknowledgement() -> None:
    body = webhook_body(notice("resolved", "ana", "on it"))
    [alert] = body["alerts"]
    assert (body["status"], alert["status"]) == ("resolved", "resolved")
    assert alert["endsAt"] == "2025-12-01T10:00:00.000Z"
    assert alert["annotations"]["acknowledged_by"] == "ana"
    assert alert["annotations"]["ack_comment"] == "on it"
    assert (body["externalURL"], alert["generatorURL"]) == ("", "")


def test_a_repeat_is_firing() -> None:
    assert webhook_body(notice("repeat"))["status"] == "firing"


def test_slack_message_has_fallback_text_and_escaped_fields() -> None:
    body = slack_body(notice(acked_by="ana", ack_comment="<looking>"), external_url=URL)
    assert body["text"] == (
        "[FIRING:critical] Activation &lt;low&gt; &amp; falling: value 0.12, threshold 0.2"
    )
    header, section, context = body["blocks"]
    assert header["text"] == {
        "type": "plain_text",
        "text": "[FIRING:critical] Activation <low> & falling",
    }
    texts = [f["text"] for f in section["fields"]]
    assert texts == [
        "*Value*\n0.12",
        "*Threshold*\n0.2",
        "*Rule*\nActivation &lt;low&gt; &amp; falling (act-low)",
        "*Severity*\ncritical",
        "*Since*\n2025-12-01T09:00:00.000Z",
        "*Series*\nkpi activation_rate",
        "*Acknowledged by*\nana: &lt;looking&gt;",
    ]
    assert context["elements"][0]["text"] == f"<{URL}/alerts/rules/act-low|Open the rule>"


def test_slack_without_external_url_has_no_link() -> None:
    assert [b["type"] for b in slack_body(notice())["blocks"]] == ["header", "section"]


def _parts(msg: EmailMessage) -> dict[str, str]:
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    return {p.get_content_type(): p.get_content() for p in parsed.iter_parts()}  # type: ignore[attr-defined]


def test_email_is_multipart_alternative_with_the_same_facts() -> None:
    msg = email_message(
        notice("resolved", "ana", "fixed the funnel"),
        sender="alerts@northstar.example.com",
        to="oncall@acme.example.com",
        message_id="<d-42@northstar>",
        external_url=URL,
    )
    assert msg["Subject"] == "[RESOLVED:critical] Activation <low> & falling"
    assert (msg["From"], msg["To"]) == ("alerts@northstar.example.com", "oncall@acme.example.com")
    assert msg["Message-ID"] == "<d-42@northstar>"
    parts = _parts(msg)
    assert set(parts) == {"text/plain", "text/html"}
    plain, page = parts["text/plain"], parts["text/html"]
    for text in ("0.12", "0.2", "act-low", "critical", "2025-12-01T09:00:00.000Z"):
        assert text in plain and text in page
    assert "Acknowledged by  ana: fixed the funnel" in plain
    assert "Resolved at" in plain
    assert "Activation &lt;low&gt; &amp; falling" in page
    assert "<low>" not in page
    assert f"{URL}/alerts/rules/act-low" in plain and f"href='{URL}/alerts/rules/act-low'" in page


def test_email_without_acknowledgement_omits_it() -> None:
    msg = email_message(replace(notice()), sender="a@b.c", to="d@e.f", message_id="<x@y>")
    assert "Acknowledged" not in _parts(msg)["text/plain"]
