"""Alert rules: their shape, their validation, and each tenant's default KPI rules.

Pure: no I/O. A rule names a series, a condition, its timing and where to notify.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

from northstar_runtime.errors import FieldViolation, InvalidArgument

Comparator = Literal["<", "<=", ">", ">="]
COMPARATORS: tuple[Comparator, ...] = ("<", "<=", ">", ">=")

WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (WARNING, CRITICAL)

# The KPI table of metrics.md: name -> (comparator, warning, critical); None = no levels.
KPI_LEVELS: dict[str, tuple[Comparator, float, float] | None] = {
    "d7_retention": ("<", 0.20, 0.15),
    "activation_rate": ("<", 0.30, 0.20),
    "d30_retention": ("<", 0.12, 0.08),
    "ltv_to_cac": ("<", 3.0, 2.0),
    "signup_to_value_30m": None,
    "mrr_growth_mom": None,
    "churn_rate": (">", 0.07, 0.10),
    "viral_coefficient": None,
}
KPIS = tuple(KPI_LEVELS)
METRICS = (
    "dau",
    "wau",
    "mau",
    "mao",
    "signups",
    "workflow_runs",
    "error_rate",
    "mrr",
    "event_count",
)
GRANULARITIES = ("day", "hour")

MIN_INTERVAL_S = 60
DEFAULT_INTERVAL_S = 3600
DEFAULT_REPEAT_S = 86_400
# Rule ids name log subjects (`...rule.<id>`): no dots, wildcards, spaces or control characters.
RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
RULE_ID_RULE = "1-128 letters, digits, '_' or '-', starting with a letter or digit"
_LABEL_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class Series:
    """What a rule watches: a KPI (as of each evaluation) or a metric of the metrics service."""

    kind: Literal["kpi", "metric"]
    name: str
    granularity: str = "day"
    event_name: str = ""


@dataclass(frozen=True, slots=True)
class Threshold:
    """Fires when `value <comparator> level`, per severity that has a level."""

    comparator: Comparator
    warning: float | None = None
    critical: float | None = None


@dataclass(frozen=True, slots=True)
class RelativeChange:
    """Fires on `(current - previous) / previous <comparator> level` (previous period)."""

    comparator: Comparator
    warning: float | None = None
    critical: float | None = None


@dataclass(frozen=True, slots=True)
class Anomaly:
    """The z-score and relative rules of metrics.md's Anomalies, at one severity."""

    z: float = 3.0
    relative: float | None = None
    severity: str = WARNING


Condition = Threshold | RelativeChange | Anomaly


@dataclass(frozen=True, slots=True)
class Channels:
    """Where a rule notifies."""

    webhooks: tuple[str, ...] = ()
    slack: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule of one tenant."""

    rule_id: str
    tenant: str
    name: str
    series: Series
    condition: Condition
    interval_s: int = DEFAULT_INTERVAL_S
    for_s: int = 0
    keep_firing_for_s: int = 0
    repeat_s: int = DEFAULT_REPEAT_S
    labels: dict[str, str] = field(default_factory=dict)
    channels: Channels = field(default_factory=Channels)

    def levels(self) -> dict[str, float]:
        """The level of each severity the rule can raise."""
        cond = self.condition
        if isinstance(cond, Anomaly):
            return {cond.severity: cond.z}
        out: dict[str, float] = {}
        if cond.warning is not None:
            out[WARNING] = cond.warning
        if cond.critical is not None:
            out[CRITICAL] = cond.critical
        return out


def label_key_ok(key: str) -> bool:
    """Whether `key` is a valid label name (as Prometheus': [a-zA-Z_][a-zA-Z0-9_]*)."""
    return bool(_LABEL_KEY.match(key))


def compare(value: float, comparator: Comparator, level: float) -> bool:
    """Whether `value <comparator> level` holds."""
    if comparator == "<":
        return value < level
    if comparator == "<=":
        return value <= level
    if comparator == ">":
        return value > level
    return value >= level


def _url_ok(url: str, *, https_only: bool) -> bool:
    schemes = ("https://",) if https_only else ("http://", "https://")
    return url.startswith(schemes) and len(url) > len("https://") and " " not in url


def _levels_violations(cond: Threshold | RelativeChange) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if cond.comparator not in COMPARATORS:
        out.append(FieldViolation("condition.comparator", f"must be one of {COMPARATORS}"))
    if cond.warning is None and cond.critical is None:
        out.append(FieldViolation("condition", "needs a warning and/or a critical level"))
    for name, level in (("warning", cond.warning), ("critical", cond.critical)):
        if level is not None and not math.isfinite(level):
            out.append(FieldViolation(f"condition.{name}", "must be a finite number"))
    if (
        cond.warning is not None
        and cond.critical is not None
        and cond.comparator in COMPARATORS
        and compare(cond.warning, cond.comparator, cond.critical)
    ):
        # A warning level already past the critical one could never be seen alone.
        out.append(FieldViolation("condition.critical", "must be at least as severe as warning"))
    return out


def validate(rule: Rule) -> None:
    """Raise InvalidArgument naming every bad field of `rule`."""
    v: list[FieldViolation] = []
    if not RULE_ID.match(rule.rule_id):
        v.append(FieldViolation("rule_id", RULE_ID_RULE))
    if not rule.name.strip():
        v.append(FieldViolation("name", "must not be empty"))
    s = rule.series
    if s.kind == "kpi":
        if s.name not in KPIS:
            v.append(FieldViolation("series.name", f"unknown KPI; one of {KPIS}"))
    elif s.kind == "metric":
        if s.name not in METRICS:
            v.append(FieldViolation("series.name", f"unknown metric; one of {METRICS}"))
        if s.granularity not in GRANULARITIES:
            v.append(FieldViolation("series.granularity", "must be day or hour"))
        if s.name == "event_count" and not s.event_name:
            v.append(FieldViolation("series.event_name", "required for event_count"))
    else:
        v.append(FieldViolation("series.kind", "must be kpi or metric"))
    cond = rule.condition
    if isinstance(cond, Threshold | RelativeChange):
        v.extend(_levels_violations(cond))
    else:
        if s.kind == "kpi":
            v.append(FieldViolation("condition", "anomaly rules need a daily metric series"))
        if not (math.isfinite(cond.z) and cond.z > 0):
            v.append(FieldViolation("condition.z", "must be a positive number"))
        if cond.relative is not None and not (math.isfinite(cond.relative) and cond.relative > 0):
            v.append(FieldViolation("condition.relative", "must be a positive number"))
        if cond.severity not in SEVERITIES:
            v.append(FieldViolation("condition.severity", "must be warning or critical"))
    if rule.interval_s < MIN_INTERVAL_S:
        v.append(FieldViolation("interval", "must be at least 1 minute"))
    for name, secs in (("for", rule.for_s), ("keep_firing_for", rule.keep_firing_for_s)):
        if secs < 0:
            v.append(FieldViolation(name, "must not be negative"))
    if rule.repeat_s <= 0:
        v.append(FieldViolation("repeat_interval", "must be positive"))
    for key in rule.labels:
        if not label_key_ok(key):
            v.append(FieldViolation(f"labels.{key}", "must match [a-zA-Z_][a-zA-Z0-9_]*"))
    for i, url in enumerate(rule.channels.webhooks):
        if not _url_ok(url, https_only=False):
            v.append(FieldViolation(f"channels.webhooks[{i}]", "must be an http(s) URL"))
    for i, url in enumerate(rule.channels.slack):
        if not _url_ok(url, https_only=True):
            v.append(FieldViolation(f"channels.slack[{i}]", "must be an https URL"))
    for i, addr in enumerate(rule.channels.emails):
        if not _EMAIL.match(addr):
            v.append(FieldViolation(f"channels.emails[{i}]", "must be an email address"))
    if v:
        raise InvalidArgument("invalid alert rule", violations=v)


def default_rules(tenant: str) -> list[Rule]:
    """The default KPI rules every new tenant gets (KPIs with no levels get none)."""
    rules: list[Rule] = []
    for kpi, levels in KPI_LEVELS.items():
        if levels is None:
            continue
        comparator, warning, critical = levels
        rules.append(
            Rule(
                rule_id=f"default-{kpi}",
                tenant=tenant,
                name=f"{kpi} below its levels" if comparator == "<" else f"{kpi} above its levels",
                series=Series(kind="kpi", name=kpi),
                condition=Threshold(comparator=comparator, warning=warning, critical=critical),
                labels={"kpi": kpi, "source": "default"},
            )
        )
    return rules
