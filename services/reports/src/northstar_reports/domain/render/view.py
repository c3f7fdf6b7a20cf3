"""A report as its renderings show it: every number already printed, in section order.

Markdown, HTML and Slack read the same `ReportView`, so they never disagree on what a
number says. Text here is raw (not escaped): each rendering escapes for its own syntax.
Chart geometry comes from `svg`, sized for the HTML page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf.message import Message

from northstar.alerts.v1 import alerts_pb2
from northstar.experiments.v1 import experiments_pb2
from northstar.metrics.v1 import kpis_pb2, quality_pb2, retention_pb2
from northstar.reports.v1 import reports_pb2
from northstar_reports.domain.render import numbers, svg
from northstar_reports.domain.render.numbers import DASH

SPARK = svg.Box(width=120, height=28, pad=3)
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_GAP = "·"
GAUGE_W, GAUGE_H, GAUGE_R, GAUGE_STROKE = 220.0, 126.0, 90.0, 18.0
FUNNEL_W, FUNNEL_LABEL_W, FUNNEL_ROW_H, FUNNEL_BAR_H = 600.0, 200.0, 34.0, 20.0
FUNNEL_VALUE_W = 130.0

HEADINGS: dict[int, str] = {
    reports_pb2.SECTION_KEY_METRICS: "Key metrics",
    reports_pb2.SECTION_ALIGNMENT: "Alignment",
    reports_pb2.SECTION_PRIORITY_ACTIONS: "Priority actions",
    reports_pb2.SECTION_ALERTS: "Alerts",
    reports_pb2.SECTION_EXPERIMENTS: "Experiments",
    reports_pb2.SECTION_RETENTION: "Retention",
    reports_pb2.SECTION_FUNNEL: "Funnel",
    reports_pb2.SECTION_DATA_QUALITY: "Data quality",
}
KINDS = {
    reports_pb2.REPORT_KIND_DAILY: "Daily report",
    reports_pb2.REPORT_KIND_WEEKLY: "Weekly report",
    reports_pb2.REPORT_KIND_CUSTOM: "Report",
}
STATUS_TEXT = {
    kpis_pb2.ALIGNMENT_STATUS_ON_TRACK: "On track",
    kpis_pb2.ALIGNMENT_STATUS_AT_RISK: "At risk",
    kpis_pb2.ALIGNMENT_STATUS_OFF_TRACK: "Off track",
    kpis_pb2.ALIGNMENT_STATUS_NO_DATA: "No data",
}
KPI_STATES = {
    kpis_pb2.KPI_STATE_OK: ("OK", "good"),
    kpis_pb2.KPI_STATE_WARNING: ("Warning", "warn"),
    kpis_pb2.KPI_STATE_CRITICAL: ("Critical", "bad"),
    kpis_pb2.KPI_STATE_MISSING: ("Missing", "none"),
}
SEVERITIES = {alerts_pb2.SEVERITY_WARNING: "warning", alerts_pb2.SEVERITY_CRITICAL: "critical"}
CHANGES = {reports_pb2.ALERT_CHANGE_FIRED: "fired", reports_pb2.ALERT_CHANGE_RESOLVED: "resolved"}
EXPERIMENT_STATUS = {
    experiments_pb2.EXPERIMENT_STATUS_DRAFT: "draft",
    experiments_pb2.EXPERIMENT_STATUS_RUNNING: "running",
    experiments_pb2.EXPERIMENT_STATUS_STOPPED: "stopped",
    experiments_pb2.EXPERIMENT_STATUS_CONCLUDED: "concluded",
    experiments_pb2.EXPERIMENT_STATUS_ARCHIVED: "archived",
}
DECISIONS = {
    experiments_pb2.DECISION_KIND_SHIP: "Ship",
    experiments_pb2.DECISION_KIND_KEEP_RUNNING: "Keep running",
    experiments_pb2.DECISION_KIND_STOP_GUARDRAIL: "Stop (guardrail)",
}
QUALITY_ISSUES = {
    quality_pb2.QUALITY_ISSUE_REJECTED: "Rejected events",
    quality_pb2.QUALITY_ISSUE_MISSING_FIELDS: "Missing fields",
    quality_pb2.QUALITY_ISSUE_ID_CONFLICTS: "Id conflicts",
    quality_pb2.QUALITY_ISSUE_DUPLICATES: "Duplicates",
    quality_pb2.QUALITY_ISSUE_CLOCK_SKEW: "Clock skew",
    quality_pb2.QUALITY_ISSUE_ORPHAN_ACTIVITY: "Orphan activity",
    quality_pb2.QUALITY_ISSUE_SUSPECTED_BOTS: "Suspected bots",
}


def _opt(msg: Message, name: str) -> float | None:
    """An optional scalar field's value, None when unset (never its default 0)."""
    return float(getattr(msg, name)) if msg.HasField(name) else None


# ---------------------------------------------------------------------------- views


@dataclass(frozen=True)
class KeyMetricRow:
    """One headline number, its change and its sparkline."""

    name: str
    label: str
    value: str
    previous: str
    change: str
    tone: str  # good, bad, flat or none
    arrow: str
    spark_text: str
    spark_path: str
    spark_last: tuple[float, float] | None
    spark_title: str
    spark_range: str


@dataclass(frozen=True)
class KeyMetricsView:
    """The key metrics section."""

    rows: list[KeyMetricRow]


@dataclass(frozen=True)
class KpiRow:
    """One KPI against its target."""

    name: str
    value: str
    target: str
    attainment: str
    state: str
    tone: str
    window: str


@dataclass(frozen=True)
class GaugeBand:
    """One status band of the gauge: its arc and colour."""

    path: str
    colour: str
    label: str


@dataclass(frozen=True)
class AlignmentView:
    """The alignment section: score, status, gauge and the KPI table."""

    as_of: str
    score: str
    status: str
    colour: str
    bands: list[GaugeBand]
    value_arc: str
    needle: tuple[float, float] | None
    kpis: list[KpiRow]
    missing: list[str]


@dataclass(frozen=True)
class ActionRow:
    """One priority action."""

    kpi: str
    impact: str
    gap: str
    action: str


@dataclass(frozen=True)
class ActionsView:
    """The priority actions section."""

    rows: list[ActionRow]


@dataclass(frozen=True)
class AlertRow:
    """One alert transition."""

    at: str
    rule: str
    rule_id: str
    severity: str
    change: str
    value: str
    threshold: str


@dataclass(frozen=True)
class AlertsView:
    """The alerts section and its counts."""

    rows: list[AlertRow]
    fired: int
    resolved: int
    firing_at_end: int


@dataclass(frozen=True)
class ExperimentRow:
    """One experiment and its headline result."""

    key: str
    name: str
    status: str
    users: str
    metric: str
    variant: str
    lift: str
    interval: str
    evidence: str
    decision: str
    warnings: list[str]


@dataclass(frozen=True)
class ExperimentsView:
    """Running and concluded experiments."""

    running: list[ExperimentRow]
    concluded: list[ExperimentRow]


@dataclass(frozen=True)
class HeatCell:
    """One retention cell: its text and shade (blank when immature)."""

    text: str
    background: str
    colour: str
    title: str


@dataclass(frozen=True)
class CohortRow:
    """One cohort of the retention table."""

    label: str
    size: str
    cells: list[HeatCell]


@dataclass(frozen=True)
class RetentionView:
    """The retention cohort table."""

    granularity: str
    periods: list[int]
    rows: list[CohortRow]
    combined: CohortRow | None


@dataclass(frozen=True)
class FunnelStep:
    """One funnel step: its numbers and its bar."""

    step: int
    event: str
    users: str
    conversion_previous: str
    conversion_first: str
    median: str
    bar_x: float
    bar_y: float
    bar_w: float
    label_y: float
    value_x: float
    value_inside: bool


@dataclass(frozen=True)
class FunnelView:
    """The main funnel and its chart's size."""

    window: str
    steps: list[FunnelStep]
    chart_h: float
    overall: str


@dataclass(frozen=True)
class QualityView:
    """The data quality section."""

    score: str
    colour: str
    facts: list[tuple[str, str]]
    rejections: list[tuple[str, str, str]]
    penalties: list[tuple[str, str, str]]


@dataclass(frozen=True)
class SectionView:
    """One asked section: its heading, and its content or why it is missing."""

    key: str
    heading: str
    error: str | None
    content: object | None


@dataclass(frozen=True)
class ReportView:
    """The whole report as its renderings show it."""

    title: str
    kind: str
    period: str
    time_zone: str
    generated: str
    report_id: str
    sections: list[SectionView]
    other_errors: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------- builders


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name) if name else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _when(seconds: int, nanos: int, zone: tzinfo) -> str:
    if seconds == 0 and nanos == 0:
        return DASH
    at = datetime.fromtimestamp(seconds + nanos / 1e9, UTC).astimezone(zone)
    return at.strftime("%Y-%m-%d %H:%M")


def _date(text: str) -> str:
    """`YYYY-MM-DD` as "Mon 30 Nov 2026"; anything else as it is."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").strftime("%a %-d %b %Y")
    except ValueError:
        return text or DASH


def period_text(period: reports_pb2.Period) -> str:
    """The period for people: one day, or first – last day."""
    if not period.start_date:
        return DASH
    if period.end_date in ("", period.start_date):
        return _date(period.start_date)
    return f"{_date(period.start_date)} – {_date(period.end_date)}"


def spark_text(values: Sequence[float | None]) -> str:
    """A sparkline of Unicode blocks; an absent point is a middle dot."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    if not present:
        return ""
    lo, hi = min(present), max(present)
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(SPARK_GAP)
        else:
            t = svg.scale(v, lo, hi) if hi > lo else 0.5
            out.append(SPARK_BLOCKS[min(len(SPARK_BLOCKS) - 1, int(t * len(SPARK_BLOCKS)))])
    return "".join(out)


def _key_metrics(section: reports_pb2.KeyMetricsSection) -> KeyMetricsView:
    rows = []
    for m in section.metrics:
        value, previous, change = _opt(m, "value"), _opt(m, "previous"), _opt(m, "change")
        if change is None or not numbers.present(change):
            tone, arrow = "none", ""
        elif change == 0:
            tone, arrow = "flat", "▶"
        else:
            rising = change > 0
            tone = "good" if rising == m.higher_is_better else "bad"
            arrow = "▲" if rising else "▼"
        series = [_opt(p, "value") for p in m.sparkline]
        shown = [v for v in series if v is not None and math.isfinite(v)]
        points = svg.sparkline_points(series, SPARK)
        last = next((p for p in reversed(points) if p is not None), None)
        dates = [p.date for p in m.sparkline]
        span = f"{dates[0]} to {dates[-1]}" if dates else "no periods"
        values_text = ", ".join(numbers.by_unit(v, m.unit) for v in series)
        rows.append(
            KeyMetricRow(
                name=m.name,
                label=m.label or m.name,
                value=numbers.by_unit(value, m.unit),
                previous=numbers.by_unit(previous, m.unit),
                change=numbers.percent(change, signed=True),
                tone=tone,
                arrow=arrow,
                spark_text=spark_text(series),
                spark_path=svg.sparkline_path(series, SPARK),
                spark_last=last,
                spark_title=f"{m.label or m.name}, {span}: {values_text or 'no values'}",
                spark_range=(
                    f"{numbers.by_unit(min(shown), m.unit)} – {numbers.by_unit(max(shown), m.unit)}"
                    if shown
                    else DASH
                ),
            )
        )
    return KeyMetricsView(rows=rows)


def _alignment(section: reports_pb2.AlignmentSection) -> AlignmentView:
    k = section.kpis
    score = _opt(k, "alignment_score")
    cx, cy = GAUGE_W / 2, GAUGE_R + GAUGE_STROKE / 2 + 4
    bands = [
        GaugeBand(svg.gauge_arc(0.0, 0.5, cx, cy, GAUGE_R), svg.RED, "Off track, below 50"),
        GaugeBand(svg.gauge_arc(0.5, 0.8, cx, cy, GAUGE_R), svg.AMBER, "At risk, 50 to 80"),
        GaugeBand(svg.gauge_arc(0.8, 1.0, cx, cy, GAUGE_R), svg.GREEN, "On track, 80 and up"),
    ]
    shown = score is not None and math.isfinite(score)
    fraction = min(1.0, max(0.0, score / 100)) if shown and score is not None else 0.0
    rows = []
    for kpi in k.kpis:
        state, tone = KPI_STATES.get(kpi.state, ("—", "none"))
        rows.append(
            KpiRow(
                name=kpi.name,
                value=numbers.kpi_value(kpi.name, _opt(kpi, "value")),
                target=numbers.kpi_value(kpi.name, kpi.target),
                attainment=numbers.percent(_opt(kpi, "attainment"), decimals=0),
                state=state,
                tone=tone,
                window=kpi.window or DASH,
            )
        )
    return AlignmentView(
        as_of=section.as_of_date or k.as_of_date or DASH,
        score=numbers.plain(score, decimals=1),
        status=STATUS_TEXT.get(k.status, DASH),
        colour=svg.status_colour(score),
        bands=bands,
        value_arc=svg.gauge_arc(0.0, fraction, cx, cy, GAUGE_R) if shown and fraction > 0 else "",
        needle=svg.gauge_point(fraction, cx, cy, GAUGE_R) if shown else None,
        kpis=rows,
        missing=list(k.missing),
    )


def _actions(section: reports_pb2.PriorityActionsSection) -> ActionsView:
    return ActionsView(
        rows=[
            ActionRow(
                kpi=a.kpi,
                impact=f"{numbers.plain(a.impact, decimals=1)} pts",
                gap=numbers.kpi_gap(a.kpi, a.gap),
                action=a.recommended_action or DASH,
            )
            for a in section.actions
        ]
    )


def _alerts(section: reports_pb2.AlertsSection, zone: tzinfo) -> AlertsView:
    rows = [
        AlertRow(
            at=_when(e.at.seconds, e.at.nanos, zone),
            rule=e.rule_name or e.rule_id,
            rule_id=e.rule_id,
            severity=SEVERITIES.get(e.severity, DASH),
            change=CHANGES.get(e.change, DASH),
            value=numbers.plain(_opt(e, "value"), decimals=4),
            threshold=numbers.plain(_opt(e, "threshold"), decimals=4),
        )
        for e in section.entries
    ]
    return AlertsView(
        rows=rows,
        fired=sum(1 for e in section.entries if e.change == reports_pb2.ALERT_CHANGE_FIRED),
        resolved=sum(1 for e in section.entries if e.change == reports_pb2.ALERT_CHANGE_RESOLVED),
        firing_at_end=section.firing_at_end,
    )


def _experiment(entry: reports_pb2.ExperimentEntry) -> ExperimentRow:
    """The headline of one experiment: its first goal metric's best treatment."""
    exp = entry.experiment
    name = exp.definition.name or exp.key
    status = EXPERIMENT_STATUS.get(exp.status, DASH)
    winner = f"Winner: {exp.winner}" if exp.winner else ""
    if not entry.HasField("results"):
        return ExperimentRow(
            exp.key,
            name,
            status,
            DASH,
            DASH,
            DASH,
            DASH,
            DASH,
            DASH,
            winner or DASH,
            [f"No results: {entry.error}" if entry.error else "No results"],
        )
    res = entry.results
    warnings = []
    if res.srm.mismatch:
        warnings.append(f"Sample ratio mismatch (p = {res.srm.p_value:.4f})")
    goals = [m for m in res.metrics if m.role == experiments_pb2.METRIC_ROLE_GOAL]
    metric = goals[0] if goals else (res.metrics[0] if res.metrics else None)
    users = sum(res.srm.users) if res.srm.users else None
    if metric is None:
        treatment = None
    else:
        if users is None:
            users = sum(v.users for v in metric.variants)
        treatments = [v for v in metric.variants if not v.control]
        treatment = max(treatments, key=lambda v: v.lift) if treatments else None
    bayesian = res.engine == experiments_pb2.STATS_ENGINE_BAYESIAN
    if treatment is None or treatment.error_message:
        lift = interval = evidence = DASH
        if treatment is not None:
            warnings.append(treatment.error_message)
    else:
        lift = numbers.percent(treatment.lift, signed=True)
        interval = (
            f"{numbers.percent(treatment.ci_lower, signed=True)} to "
            f"{numbers.percent(treatment.ci_upper, signed=True)}"
        )
        evidence = (
            f"{numbers.percent(treatment.chance_to_win, decimals=0)} to win"
            if bayesian
            else f"p = {treatment.p_value:.3f}"
        )
    d = res.decision
    decision = DECISIONS.get(d.kind, DASH)
    if d.variant_key and d.kind != experiments_pb2.DECISION_KIND_KEEP_RUNNING:
        decision = f"{decision}: {d.variant_key}"
    if winner:
        decision = winner
    return ExperimentRow(
        key=exp.key,
        name=name,
        status=status,
        users=numbers.count(users),
        metric=metric.metric if metric is not None else DASH,
        variant=treatment.variant_key if treatment is not None else DASH,
        lift=lift,
        interval=interval,
        evidence=evidence,
        decision=decision,
        warnings=warnings,
    )


def _experiments(section: reports_pb2.ExperimentsSection) -> ExperimentsView:
    return ExperimentsView(
        running=[_experiment(e) for e in section.running],
        concluded=[_experiment(e) for e in section.concluded],
    )


def _cohort(
    label: str, size: str, cells: Sequence[retention_pb2.RetentionCell], periods: list[int]
) -> CohortRow:
    by_period = {c.period: c for c in cells}
    out = []
    for p in periods:
        cell = by_period.get(p)
        value = _opt(cell, "retention") if cell is not None else None
        if value is None or not math.isfinite(value):
            out.append(HeatCell("", "#ffffff", "#1f2328", f"{label}, period {p}: not yet"))
            continue
        background, colour = svg.heat_colour(value)
        text = numbers.percent(value)
        retained = cell.retained if cell is not None else 0
        out.append(
            HeatCell(text, background, colour, f"{label}, period {p}: {text} ({retained:,})")
        )
    return CohortRow(label=label, size=size, cells=out)


def _retention(section: reports_pb2.RetentionSection) -> RetentionView:
    r = section.retention
    periods = sorted(
        {c.period for cohort in r.cohorts for c in cohort.cells} | {c.period for c in r.combined}
    )
    granularity = {1: "day", 2: "week", 3: "month"}.get(r.granularity, "period")
    rows = [
        _cohort(c.cohort_start or DASH, numbers.count(c.size), list(c.cells), periods)
        for c in r.cohorts
    ]
    combined = None
    if r.combined:
        combined = _cohort(
            "All cohorts", numbers.count(sum(c.size for c in r.cohorts)), list(r.combined), periods
        )
    return RetentionView(granularity=granularity, periods=periods, rows=rows, combined=combined)


def _funnel(section: reports_pb2.FunnelSection) -> FunnelView:
    f = section.funnel
    steps = list(f.overall.steps)
    first = float(steps[0].users) if steps else 0.0
    bar_room = FUNNEL_W - FUNNEL_LABEL_W - 8
    out = []
    for i, s in enumerate(steps):
        y = 6 + i * FUNNEL_ROW_H
        bar_w = max(1.0, svg.bar_length(float(s.users), first, bar_room)) if s.users else 0.0
        # The users and conversion go inside the bar when it has room, after it otherwise.
        inside = bar_w > FUNNEL_VALUE_W
        out.append(
            FunnelStep(
                step=s.step or i + 1,
                event=s.event or (section.steps[i].event if i < len(section.steps) else DASH),
                users=numbers.count(s.users),
                conversion_previous=numbers.percent(_opt(s, "conversion_from_previous")),
                conversion_first=numbers.percent(_opt(s, "conversion_from_first")),
                median=numbers.seconds(_opt(s, "median_seconds_from_first")),
                bar_x=FUNNEL_LABEL_W,
                bar_y=y,
                bar_w=bar_w,
                label_y=y + FUNNEL_BAR_H / 2 + 4,
                value_x=FUNNEL_LABEL_W + (6 if inside else bar_w + 6),
                value_inside=inside,
            )
        )
    overall = _opt(steps[-1], "conversion_from_first") if len(steps) > 1 else None
    return FunnelView(
        window=numbers.seconds(float(f.window_seconds)) if f.window_seconds else DASH,
        steps=out,
        chart_h=12 + len(steps) * FUNNEL_ROW_H,
        overall=numbers.percent(overall),
    )


def _quality(section: reports_pb2.DataQualitySection) -> QualityView:
    q = section.quality
    score = _opt(q, "score")
    facts = [
        ("Received", numbers.count(q.received)),
        ("Accepted", numbers.count(q.accepted)),
        ("Duplicates", numbers.count(q.duplicates)),
        ("Rejected", numbers.count(q.rejected)),
        ("Id conflicts", numbers.count(q.id_conflicts)),
        ("Missing fields", numbers.count(q.missing_fields)),
        ("Orphan activity", numbers.count(q.orphan_activity)),
        ("Clock skew", numbers.count(q.clock_skew)),
        ("Suspected bots", numbers.count(q.suspected_bots)),
        ("Freshness", numbers.seconds(_opt(q, "freshness_seconds"))),
    ]
    return QualityView(
        score=numbers.plain(score, decimals=1),
        colour=svg.status_colour(score),
        facts=facts,
        rejections=[(r.field, r.rule, numbers.count(r.count)) for r in q.rejection_reasons],
        penalties=[
            (
                QUALITY_ISSUES.get(p.issue, DASH),
                numbers.percent(p.share, decimals=2),
                f"{p.penalty:.1f}",
            )
            for p in q.penalties
            if p.penalty > 0
        ],
    )


SECTION_KEYS = {
    reports_pb2.SECTION_KEY_METRICS: "key_metrics",
    reports_pb2.SECTION_ALIGNMENT: "alignment",
    reports_pb2.SECTION_PRIORITY_ACTIONS: "priority_actions",
    reports_pb2.SECTION_ALERTS: "alerts",
    reports_pb2.SECTION_EXPERIMENTS: "experiments",
    reports_pb2.SECTION_RETENTION: "retention",
    reports_pb2.SECTION_FUNNEL: "funnel",
    reports_pb2.SECTION_DATA_QUALITY: "data_quality",
}


def build(report: reports_pb2.Report) -> ReportView:
    """The report's view: the asked sections in order, each with its content or its error."""
    summary = report.summary
    zone = _zone(summary.period.time_zone)
    errors: dict[int, list[str]] = {}
    for e in report.errors:
        errors.setdefault(e.section, []).append(e.message or "unavailable")
    sections: list[SectionView] = []
    seen: set[int] = set()
    for s in report.sections:
        if s in seen or s not in SECTION_KEYS:
            continue
        seen.add(s)
        key = SECTION_KEYS[s]
        if s in errors:
            sections.append(SectionView(key, HEADINGS[s], "; ".join(errors[s]), None))
            continue
        # An unset section message reads as an empty one: "no alerts", not missing.
        sections.append(SectionView(key, HEADINGS[s], None, _content(report, s, zone)))
    other = [
        (HEADINGS.get(s, "Unknown section"), "; ".join(m))
        for s, m in errors.items()
        if s not in seen
    ]
    return ReportView(
        title=summary.title or KINDS.get(summary.kind, "Report"),
        kind=KINDS.get(summary.kind, "Report"),
        period=period_text(summary.period),
        time_zone=summary.period.time_zone or "UTC",
        generated=_when(summary.generated_at.seconds, summary.generated_at.nanos, zone),
        report_id=summary.report_id,
        sections=sections,
        other_errors=other,
    )


def _content(report: reports_pb2.Report, section: int, zone: tzinfo) -> object:
    if section == reports_pb2.SECTION_KEY_METRICS:
        return _key_metrics(report.key_metrics)
    if section == reports_pb2.SECTION_ALIGNMENT:
        return _alignment(report.alignment)
    if section == reports_pb2.SECTION_PRIORITY_ACTIONS:
        return _actions(report.priority_actions)
    if section == reports_pb2.SECTION_ALERTS:
        return _alerts(report.alerts, zone)
    if section == reports_pb2.SECTION_EXPERIMENTS:
        return _experiments(report.experiments)
    if section == reports_pb2.SECTION_RETENTION:
        return _retention(report.retention)
    if section == reports_pb2.SECTION_FUNNEL:
        return _funnel(report.funnel)
    return _quality(report.data_quality)
