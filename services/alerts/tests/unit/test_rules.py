"""Rule validation and each tenant's default KPI rules."""

from __future__ import annotations

import pytest

from northstar_alerts.domain.rules import (
    Anomaly,
    Channels,
    Rule,
    Series,
    Threshold,
    default_rules,
    validate,
)
from northstar_runtime.errors import InvalidArgument


def _rule(**kw: object) -> Rule:
    base: dict[str, object] = {
        "rule_id": "r1",
        "tenant": "acme",
        "name": "dau drop",
        "series": Series(kind="metric", name="dau"),
        "condition": Threshold(comparator="<", warning=100.0, critical=50.0),
    }
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


def _fields(rule: Rule) -> list[str]:
    with pytest.raises(InvalidArgument) as err:
        validate(rule)
    return [v.field for v in err.value.violations]


def test_a_valid_rule_passes_with_the_defaults() -> None:
    rule = _rule(
        channels=Channels(
            webhooks=("http://hooks.example/a",),
            slack=("https://hooks.slack.com/services/T/B/X",),
            emails=("ops@example.com",),
        )
    )
    validate(rule)
    assert (rule.interval_s, rule.repeat_s, rule.for_s) == (3600, 86_400, 0)


def test_every_bad_field_is_named() -> None:
    rule = _rule(
        name=" ",
        interval_s=59,
        for_s=-1,
        keep_firing_for_s=-1,
        repeat_s=0,
        labels={"bad-key": "x"},
        channels=Channels(
            webhooks=("ftp://x",), slack=("http://hooks.slack.com/x",), emails=("nope",)
        ),
    )
    assert _fields(rule) == [
        "name",
        "interval",
        "for",
        "keep_firing_for",
        "repeat_interval",
        "labels.bad-key",
        "channels.webhooks[0]",
        "channels.slack[0]",
        "channels.emails[0]",
    ]


def test_series_must_be_known() -> None:
    assert _fields(_rule(series=Series(kind="kpi", name="nps"))) == ["series.name"]
    assert _fields(_rule(series=Series(kind="metric", name="event_count"))) == ["series.event_name"]
    assert _fields(_rule(series=Series(kind="metric", name="dau", granularity="week"))) == [
        "series.granularity"
    ]


def test_levels_must_be_present_and_ordered() -> None:
    assert _fields(_rule(condition=Threshold(comparator="<"))) == ["condition"]
    assert _fields(_rule(condition=Threshold(comparator="<", warning=50.0, critical=100.0))) == [
        "condition.critical"
    ]
    assert _fields(_rule(condition=Threshold(comparator="<", warning=float("nan")))) == [
        "condition.warning"
    ]
    validate(_rule(condition=Threshold(comparator=">", warning=0.07, critical=0.10)))


def test_anomaly_rules_need_a_metric_and_sane_parameters() -> None:
    kpi = Series(kind="kpi", name="activation_rate")
    assert _fields(_rule(series=kpi, condition=Anomaly())) == ["condition"]
    assert _fields(_rule(condition=Anomaly(z=0.0, relative=-1.0, severity="info"))) == [
        "condition.z",
        "condition.relative",
        "condition.severity",
    ]


def test_default_rules_are_the_kpi_table_levels() -> None:
    rules = default_rules("acme")
    got = [
        (r.series.name, r.condition.comparator, r.condition.warning, r.condition.critical)  # type: ignore[union-attr]
        for r in rules
    ]
    assert got == [
        ("d7_retention", "<", 0.20, 0.15),
        ("activation_rate", "<", 0.30, 0.20),
        ("d30_retention", "<", 0.12, 0.08),
        ("ltv_to_cac", "<", 3.0, 2.0),
        ("churn_rate", ">", 0.07, 0.10),
    ]
    for rule in rules:
        validate(rule)
        assert (rule.tenant, rule.interval_s, rule.repeat_s) == ("acme", 3600, 86_400)


@pytest.mark.parametrize("rule_id", ["", "a.b", "a b", "a*", "-a", "x\x00", "é", "a" * 129])
def test_rule_ids_must_be_safe_in_a_log_subject(rule_id: str) -> None:
    assert _fields(_rule(rule_id=rule_id)) == ["rule_id"]


def test_default_rule_ids_are_valid() -> None:
    for rule in default_rules("acme"):
        validate(rule)
