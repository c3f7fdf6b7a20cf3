"""The outbox notice survives its JSON round trip and names its Alertmanager status."""

from __future__ import annotations

from northstar_alerts.domain.notice import Notice
from northstar_alerts.domain.rules import Channels


def notice(kind: str) -> Notice:
    return Notice(
        tenant="acme",
        rule_id="r1",
        rule_name="Activation low",
        severity="critical",
        kind=kind,
        at=1_700_000_000.5,
        starts_at=1_699_999_000.0,
        value=0.12,
        threshold=0.2,
        labels={"team": "growth", "severity": "critical"},
        channels=Channels(webhooks=("http://h/x",), slack=(), emails=("a@b.c",)),
        series="kpi activation_rate",
        acked_by="ana",
        ack_comment="looking",
    )


def test_round_trip_keeps_every_field() -> None:
    n = notice("repeat")
    assert Notice.from_json(n.to_json()) == n


def test_status_is_firing_unless_resolved() -> None:
    assert [notice(k).status for k in ("firing", "repeat", "resolved")] == [
        "firing",
        "firing",
        "resolved",
    ]


def test_dedup_key_differs_by_kind_and_time() -> None:
    keys = {notice("firing").dedup_key, notice("repeat").dedup_key, notice("resolved").dedup_key}
    assert len(keys) == 3
