"""Answers as rich tables with sparklines, or as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from northstar.alerts.v1 import alerts_pb2 as al
from northstar.experiments.v1 import experiments_pb2 as xp
from northstar.metrics.v1 import (
    activation_pb2,
    funnel_pb2,
    kpis_pb2,
    metrics_pb2,
    quality_pb2,
    retention_pb2,
    revenue_pb2,
    series_pb2,
    trend_pb2,
)
from northstar.reports.v1 import reports_pb2 as rp

__all__ = ["as_json", "print_answer", "print_plain", "render", "sparkline"]

_BARS = "▁▂▃▄▅▆▇█"
_STATE_STYLE = {
    kpis_pb2.KPI_STATE_OK: "green",
    kpis_pb2.KPI_STATE_WARNING: "yellow",
    kpis_pb2.KPI_STATE_CRITICAL: "red",
    kpis_pb2.KPI_STATE_MISSING: "dim",
}
_STATUS_STYLE = {
    kpis_pb2.ALIGNMENT_STATUS_ON_TRACK: "green",
    kpis_pb2.ALIGNMENT_STATUS_AT_RISK: "yellow",
    kpis_pb2.ALIGNMENT_STATUS_OFF_TRACK: "red",
    kpis_pb2.ALIGNMENT_STATUS_NO_DATA: "dim",
}


def as_json(message: Message) -> str:
    """The answer as JSON: field names as in the proto, absent values omitted, 0s kept."""
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )
    return json.dumps(data, indent=2, ensure_ascii=False)


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled between the series' min and max; gaps blank."""
    present = [v for v in values if v is not None]
    if not present:
        return ""
    low, high = min(present), max(present)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif span == 0:
            out.append(_BARS[len(_BARS) // 2] if high else _BARS[0])
        else:
            out.append(_BARS[min(len(_BARS) - 1, int((v - low) / span * len(_BARS)))])
    return "".join(out)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits or 2}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _money(minor: float | None) -> str:
    return "–" if minor is None else f"{minor / 100:,.2f}"


def _secs(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.0f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    if value < 172_800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86_400:.1f}d"


def _opt(message: Message, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def _enum(enum_name: str, value: int, prefix: str) -> str:
    descriptor = kpis_pb2.DESCRIPTOR.pool.FindEnumTypeByName(f"northstar.metrics.v1.{enum_name}")
    name = descriptor.values_by_number[value].name if value in descriptor.values_by_number else ""
    return name.removeprefix(prefix).lower().replace("_", " ") or "–"


def render(message: Message) -> RenderableType:
    """A rich renderable for any metrics answer."""
    renderers: dict[type[Message], Any] = {
        metrics_pb2.ActiveUsersResponse: _active_users,
        retention_pb2.RetentionResponse: _retention,
        retention_pb2.RetentionTrendResponse: _retention_trend,
        activation_pb2.ActivationResponse: _activation,
        activation_pb2.WorkflowsResponse: _workflows,
        funnel_pb2.FunnelResponse: _funnel,
        trend_pb2.TrendResponse: _trend,
        revenue_pb2.RevenueResponse: _revenue,
        kpis_pb2.KpisResponse: _kpis,
        kpis_pb2.GetKpiConfigResponse: _kpi_config,
        kpis_pb2.UpdateKpiConfigResponse: _kpi_config,
        series_pb2.AnomaliesResponse: _anomalies,
        series_pb2.ForecastResponse: _forecast,
        quality_pb2.DataQualityResponse: _data_quality,
        xp.ListExperimentsResponse: _experiments,
        xp.GetExperimentResponse: _experiment_answer,
        xp.CreateExperimentResponse: _experiment_answer,
        xp.UpdateExperimentResponse: _experiment_answer,
        xp.StartExperimentResponse: _experiment_answer,
        xp.StopExperimentResponse: _experiment_answer,
        xp.ConcludeExperimentResponse: _experiment_answer,
        xp.ArchiveExperimentResponse: _experiment_answer,
        xp.AssignResponse: _assignment,
        xp.GetResultsResponse: _results,
        al.ListRulesResponse: _rules,
        al.GetRuleResponse: _rule_answer,
        al.CreateRuleResponse: _rule_version,
        al.UpdateRuleResponse: _rule_version,
        al.DeleteRuleResponse: _rule_version,
        al.ListAlertsResponse: _alerts,
        al.AcknowledgeAlertResponse: lambda r: _alerts(al.ListAlertsResponse(alerts=[r.alert])),
        al.AlertHistoryResponse: _alert_history,
        al.TestRuleResponse: _trial,
        al.ListSilencesResponse: _silences,
        al.CreateSilenceResponse: lambda r: _silences(
            al.ListSilencesResponse(silences=[r.silence])
        ),
        al.ExpireSilenceResponse: lambda r: _silences(
            al.ListSilencesResponse(silences=[r.silence])
        ),
        al.ListNotificationsResponse: _notifications,
        rp.ListSchedulesResponse: lambda r: _schedules(list(r.schedules)),
        rp.GetScheduleResponse: lambda r: _schedules([r.schedule]),
        rp.CreateScheduleResponse: lambda r: _schedules([r.schedule]),
        rp.UpdateScheduleResponse: lambda r: _schedules([r.schedule]),
        rp.DeleteScheduleResponse: lambda r: Text.assemble(("version ", "bold"), str(r.version)),
        rp.ListReportsResponse: _reports,
        rp.GenerateReportResponse: lambda r: _reports(
            rp.ListReportsResponse(reports=[r.report.summary])
        ),
    }
    renderer = renderers.get(type(message))
    if renderer is None:
        return Text(as_json(message))
    result: RenderableType = renderer(message)
    return result


def _listing(table: Table, rows: int, empty: str) -> RenderableType:
    """The table, saying `empty` under it when it has no rows."""
    return table if rows else Group(table, Text(empty, style="dim"))


def _footer(position: int) -> Text:
    return Text(f"log position {position}", style="dim")


def _active_users(r: metrics_pb2.ActiveUsersResponse) -> RenderableType:
    table = Table(title="Active users", caption=_caption("DAU", [float(d.dau) for d in r.days]))
    for col in ("date", "DAU", "WAU", "MAU", "stickiness", "MAO"):
        table.add_column(col, justify="left" if col == "date" else "right")
    for d in r.days:
        table.add_row(
            d.date, _num(d.dau), _num(d.wau), _num(d.mau), _pct(_opt(d, "stickiness")), _num(d.mao)
        )
    return Group(table, _footer(r.log_position))


def _caption(label: str, values: Sequence[float | None]) -> str:
    return f"{label} {sparkline(values)}" if values else ""


def _retention(r: retention_pb2.RetentionResponse) -> RenderableType:
    periods = max((len(c.cells) for c in r.cohorts), default=len(r.combined))
    table = Table(title=f"Retention (as of {r.as_of_date})")
    table.add_column("cohort")
    table.add_column("size", justify="right")
    for p in range(periods):
        table.add_column(f"P{p}", justify="right")
    for c in r.cohorts:
        cells = [_pct(_opt(cell, "retention")) for cell in c.cells]
        table.add_row(c.cohort_start, _num(c.size), *cells, *[""] * (periods - len(cells)))
    if r.combined:
        combined = [_pct(_opt(cell, "retention")) for cell in r.combined]
        table.add_row(Text("all", style="bold"), "", *combined, *[""] * (periods - len(combined)))
    curve = [_opt(cell, "retention") for cell in r.combined]
    return Group(table, Text(f"curve {sparkline(curve)}"), _footer(r.log_position))


def _retention_trend(r: retention_pb2.RetentionTrendResponse) -> RenderableType:
    table = Table(title=f"Retention P{r.period} by cohort (as of {r.as_of_date})")
    for col in ("cohort", "size", "retained", "retention"):
        table.add_column(col, justify="left" if col == "cohort" else "right")
    values: list[float | None] = []
    for p in r.points:
        cell = p.cell if p.HasField("cell") else None
        value = _opt(cell, "retention") if cell is not None else None
        values.append(value)
        table.add_row(
            p.cohort_start, _num(p.size), _num(cell.retained) if cell else "–", _pct(value)
        )
    combined = _opt(r.combined, "retention") if r.HasField("combined") else None
    table.caption = f"{sparkline(values)}  combined {_pct(combined)}"
    return Group(table, _footer(r.log_position))


def _summary_rows(table: Table, label: str, s: activation_pb2.ActivationSummary) -> None:
    table.add_row(
        label,
        _num(s.signups),
        _pct(_opt(s, "activation_rate")),
        _secs(_opt(s.integration_connected, "median_seconds")),
        _secs(_opt(s.workflow_created, "median_seconds")),
        _secs(_opt(s.workflow_run_succeeded, "median_seconds")),
        _pct(_opt(s, "signup_to_value_30m")),
        _pct(_opt(s, "paid_conversion_rate")),
    )


def _activation(r: activation_pb2.ActivationResponse) -> RenderableType:
    table = Table(title="Activation")
    for col in (
        "segment",
        "signups",
        "activated (7d)",
        "→ integration",
        "→ workflow",
        "→ successful run",
        "value ≤30m",
        "paid conversion",
    ):
        table.add_column(col, justify="left" if col == "segment" else "right")
    _summary_rows(table, "all", r.overall)
    for seg in r.segments:
        _summary_rows(table, seg.value if seg.HasField("value") else "(none)", seg.summary)
    return Group(
        table, Text("→ columns: median time from signup", style="dim"), _footer(r.log_position)
    )


def _workflows(r: activation_pb2.WorkflowsResponse) -> RenderableType:
    table = Table(title="Workflows", caption=_caption("runs", [float(p.runs) for p in r.periods]))
    for col in ("period", "runs", "successful", "failed", "error rate", "active workflows"):
        table.add_column(col, justify="left" if col == "period" else "right")
    for p in [*r.periods, r.total]:
        label = p.period_start if p is not r.total else Text("total", style="bold")
        table.add_row(
            label,
            _num(p.runs),
            _num(p.successful_runs),
            _num(p.failed_runs),
            _pct(_opt(p, "error_rate")),
            _num(p.active_workflows),
        )
    return Group(table, _footer(r.log_position))


def _funnel_table(title: str, result: funnel_pb2.FunnelResult) -> Table:
    table = Table(title=title)
    for col in ("step", "event", "users", "from previous", "from first", "median time"):
        table.add_column(col, justify="left" if col in ("step", "event") else "right")
    for s in result.steps:
        table.add_row(
            str(s.step),
            s.event,
            _num(s.users),
            _pct(_opt(s, "conversion_from_previous")),
            _pct(_opt(s, "conversion_from_first")),
            _secs(_opt(s, "median_seconds_from_first")),
        )
    return table


def _funnel(r: funnel_pb2.FunnelResponse) -> RenderableType:
    parts: list[RenderableType] = [
        _funnel_table(f"Funnel (window {_secs(float(r.window_seconds))})", r.overall)
    ]
    if r.breakdowns:
        table = Table(title="By breakdown")
        table.add_column("value")
        table.add_column("entered", justify="right")
        table.add_column("converted", justify="right")
        table.add_column("conversion", justify="right")
        table.add_column("steps")
        for b in r.breakdowns:
            steps = b.result.steps
            if not steps:
                continue
            users = [float(s.users) for s in steps]
            table.add_row(
                b.breakdown_value,
                _num(steps[0].users),
                _num(steps[-1].users),
                _pct(_opt(steps[-1], "conversion_from_first")),
                sparkline([0.0, *users])[1:],
            )
        parts.append(table)
    parts.append(_footer(r.log_position))
    return Group(*parts)


def _trend(r: trend_pb2.TrendResponse) -> RenderableType:
    interval = _enum("TrendInterval", r.interval, "TREND_INTERVAL_")
    measure = _enum("TrendMeasure", r.measure, "TREND_MEASURE_")
    first = r.buckets[0].start if r.buckets else ""
    last = r.buckets[-1].start if r.buckets else ""
    table = Table(title=f"Trend: {measure} per {interval}, {first} … {last}")
    for col in ("series", "total", "last", "trend"):
        table.add_column(col, justify="left" if col in ("series", "trend") else "right")
    for s in r.series:
        values = [_opt(p, "value") for p in s.points]
        name = s.breakdown_value or "all events"
        table.add_row(
            name,
            _num(_opt(s, "total"), 2),
            _num(values[-1] if values else None, 2),
            sparkline(values),
        )
    if not r.series:
        table.caption = "nothing matched"
    return Group(table, _footer(r.log_position))


def _revenue(r: revenue_pb2.RevenueResponse) -> RenderableType:
    mrr = [float(d.mrr) for d in r.days]
    table = Table(title="Revenue (amounts in currency units)", caption=_caption("MRR", mrr))
    cols = (
        "month",
        "MRR start",
        "MRR end",
        "new",
        "expansion",
        "contraction",
        "churned",
        "churn",
        "ARPU",
        "LTV",
        "CAC",
        "growth",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "month" else "right")
    for m in r.months:
        table.add_row(
            m.month,
            _money(m.mrr_start),
            _money(m.mrr_end),
            _money(m.new_mrr),
            _money(m.expansion_mrr),
            _money(-m.contraction_mrr if m.contraction_mrr else 0),
            _money(-m.churned_mrr if m.churned_mrr else 0),
            _pct(_opt(m, "churn_rate")),
            _money(_opt(m, "arpu_end")),
            _money(_opt(m, "ltv")),
            _money(_opt(m, "cac")),
            _pct(_opt(m, "mrr_growth")),
        )
    return Group(table, _footer(r.log_position))


def _kpis(r: kpis_pb2.KpisResponse) -> RenderableType:
    score = _opt(r, "alignment_score")
    status = _enum("AlignmentStatus", r.status, "ALIGNMENT_STATUS_")
    headline = Text.assemble(
        ("Alignment score ", "bold"),
        (f"{score:.1f}" if score is not None else "–", "bold " + _STATUS_STYLE.get(r.status, "")),
        f"  {status}  (as of {r.as_of_date}, config v{r.config_version})",
    )
    table = Table(title="KPIs")
    for col in ("kpi", "value", "target", "attainment", "state", "window"):
        table.add_column(col, justify="left" if col in ("kpi", "state", "window") else "right")
    for k in r.kpis:
        state = _enum("KpiState", k.state, "KPI_STATE_")
        table.add_row(
            k.name,
            _num(_opt(k, "value"), 3),
            _num(k.target, 3),
            _pct(_opt(k, "attainment")),
            Text(state, style=_STATE_STYLE.get(k.state, "")),
            k.window,
        )
    parts: list[RenderableType] = [headline, table]
    if r.priority_actions:
        actions = Table(title="Priority actions")
        for col in ("kpi", "impact", "gap", "recommended action"):
            actions.add_column(col, justify="right" if col in ("impact", "gap") else "left")
        for a in r.priority_actions:
            actions.add_row(a.kpi, f"{a.impact:.2f}", f"{a.gap:,.3f}", a.recommended_action)
        parts.append(actions)
    parts.append(_footer(r.log_position))
    return Group(*parts)


def _kpi_config(
    r: kpis_pb2.GetKpiConfigResponse | kpis_pb2.UpdateKpiConfigResponse,
) -> RenderableType:
    table = Table(title=f"KPI configuration v{r.version}")
    for col in ("kpi", "target", "weight", "warning", "critical"):
        table.add_column(col, justify="left" if col == "kpi" else "right")
    for t in r.config.targets:
        table.add_row(
            t.name,
            _num(t.target, 3),
            _num(t.weight, 2),
            _num(_opt(t, "warning"), 3),
            _num(_opt(t, "critical"), 3),
        )
    return table


def _anomalies(r: series_pb2.AnomaliesResponse) -> RenderableType:
    table = Table(
        title=f"Anomalies ({r.days_judged} days judged, |z| ≥ {r.z_threshold:g})",
        caption="no anomalous day" if not r.anomalies else None,
    )
    for col in ("date", "value", "baseline", "z", "relative", "direction", "rules"):
        table.add_column(col, justify="left" if col in ("date", "direction", "rules") else "right")
    for a in r.anomalies:
        direction = "spike" if a.direction == series_pb2.ANOMALY_DIRECTION_SPIKE else "drop"
        rules = ", ".join(_enum("AnomalyRule", rule, "ANOMALY_RULE_") for rule in a.rules)
        table.add_row(
            a.date,
            _num(a.value, 2),
            f"{a.baseline_mean:,.2f} ± {a.baseline_stddev:,.2f}",
            ("∞" if a.z > 0 else "-∞") if a.infinite_z else f"{a.z:.2f}",
            _pct(_opt(a, "relative_deviation")),
            Text(direction, style="red" if direction == "drop" else "green"),
            rules,
        )
    return Group(table, _footer(r.log_position))


def _forecast(r: series_pb2.ForecastResponse) -> RenderableType:
    method = _enum("ForecastMethod", r.model.method, "FORECAST_METHOD_")
    history = [_opt(h, "value") for h in r.history]
    ahead = [p.value for p in r.points]
    head = Text.assemble(
        ("Forecast ", "bold"),
        f"after {r.as_of_date or '–'} with {method}: ",
        (sparkline(history), "cyan"),
        (sparkline([*history, *ahead])[len(history) :], "magenta"),
    )
    table = Table()
    for col in ("date", "forecast", "80% interval", "95% interval"):
        table.add_column(col, justify="left" if col == "date" else "right")
    for p in r.points:
        table.add_row(
            p.date,
            _num(p.value, 2),
            f"{_num(_opt(p, 'lower_80'), 2)} … {_num(_opt(p, 'upper_80'), 2)}",
            f"{_num(_opt(p, 'lower_95'), 2)} … {_num(_opt(p, 'upper_95'), 2)}",
        )
    overall = r.accuracy.overall
    accuracy = Text(
        f"backtest: {r.accuracy.origins} origins, MAE {_num(_opt(overall, 'mae'), 2)},"
        f" MAPE {_pct(_opt(overall, 'mape'))}, 80% coverage {_pct(_opt(overall, 'coverage_80'))}"
    )
    return Group(head, table, accuracy, _footer(r.log_position))


def _data_quality(r: quality_pb2.DataQualityResponse) -> RenderableType:
    score = _opt(r, "score")
    table = Table(title=f"Data quality: score {'–' if score is None else f'{score:.1f}'}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in (
        ("received", _num(r.received)),
        ("accepted", _num(r.accepted)),
        ("duplicates", _num(r.duplicates)),
        ("rejected", _num(r.rejected)),
        ("id conflicts", _num(r.id_conflicts)),
        ("events missing fields", _num(r.missing_fields)),
        ("active users", _num(r.active_users)),
        ("orphan activity", _num(r.orphan_activity)),
        ("clock skew", _num(r.clock_skew)),
        ("freshness", _secs(_opt(r, "freshness_seconds"))),
        ("suspected bots", _num(r.suspected_bots)),
    ):
        table.add_row(label, value)
    parts: list[RenderableType] = [table]
    if r.rejection_reasons:
        reasons = Table(title="Rejections")
        for col in ("field", "rule", "count"):
            reasons.add_column(col, justify="right" if col == "count" else "left")
        for reason in r.rejection_reasons:
            reasons.add_row(reason.field, reason.rule, _num(reason.count))
        parts.append(reasons)
    if r.penalties:
        penalties = Table(title="Score penalties")
        for col in ("issue", "share", "penalty"):
            penalties.add_column(col, justify="left" if col == "issue" else "right")
        for p in r.penalties:
            issue = _enum("QualityIssue", p.issue, "QUALITY_ISSUE_")
            penalties.add_row(issue, _pct(p.share), f"{p.penalty:.2f}")
        parts.append(penalties)
    parts.append(_footer(r.log_position))
    return Group(*parts)


# ------------------------------------------------------------------------- experiments

_EXPERIMENT_STYLE: dict[int, str] = {
    xp.EXPERIMENT_STATUS_DRAFT: "cyan",
    xp.EXPERIMENT_STATUS_RUNNING: "green",
    xp.EXPERIMENT_STATUS_STOPPED: "yellow",
    xp.EXPERIMENT_STATUS_CONCLUDED: "blue",
    xp.EXPERIMENT_STATUS_ARCHIVED: "dim",
}
_DECISION_STYLE: dict[int, str] = {
    xp.DECISION_KIND_SHIP: "green",
    xp.DECISION_KIND_KEEP_RUNNING: "yellow",
    xp.DECISION_KIND_STOP_GUARDRAIL: "red",
}


def _xenum(enum: Any, value: int, prefix: str) -> str:
    name = enum.Name(value) if value in enum.values() else ""
    return str(name).removeprefix(prefix).lower().replace("_", " ") or "–"


def _status(value: int) -> Text:
    label = _xenum(xp.ExperimentStatus, value, "EXPERIMENT_STATUS_")
    return Text(label, style=_EXPERIMENT_STYLE.get(value, ""))


def _when(us: int) -> str:
    if not us:
        return "–"
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _split(d: xp.ExperimentDefinition) -> str:
    return " / ".join(f"{v.key} {v.weight * 100:g}%" for v in d.variants)


def _experiments(r: xp.ListExperimentsResponse) -> RenderableType:
    table = Table(title="Experiments")
    for col in ("key", "name", "status", "variants", "coverage", "goals", "started", "version"):
        table.add_column(
            col,
            justify="right" if col in {"coverage", "version"} else "left",
            no_wrap=col in {"key", "status", "started"},
        )
    for e in r.experiments:
        d = e.definition
        table.add_row(
            e.key,
            d.name,
            _status(e.status),
            _split(d),
            _pct(d.coverage),
            ", ".join(m.name for m in d.goal_metrics) or "–",
            _when(e.started_at_us),
            str(e.version),
        )
    return _listing(table, len(r.experiments), "no experiments")


def _metric_text(m: xp.Metric) -> str:
    kind = _xenum(xp.MetricKind, m.kind, "METRIC_KIND_")
    what = f"sum of {m.property} on {m.event}" if m.property else m.event
    extras = [f"{len(m.filters)} filter(s)"] if m.filters else []
    if m.window_seconds:
        extras.append(f"within {_secs(m.window_seconds)}")
    if m.inverse:
        extras.append("lower is better")
    return f"{kind}: {what}" + (f" ({', '.join(extras)})" if extras else "")


def _experiment(e: xp.Experiment) -> RenderableType:
    d = e.definition
    head = Table(title=f"Experiment {e.key}", show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value")
    head.add_row("name", d.name or "–")
    head.add_row("status", _status(e.status))
    if d.hypothesis:
        head.add_row("hypothesis", d.hypothesis)
    head.add_row("coverage", _pct(d.coverage))
    head.add_row("seed", e.effective_seed)
    head.add_row("version", str(e.version))
    head.add_row("created", _when(e.created_at_us))
    head.add_row("started", _when(e.started_at_us))
    if e.stopped_at_us:
        head.add_row("stopped", _when(e.stopped_at_us))
    if e.winner:
        head.add_row("winner", Text(e.winner, style="bold green"))
        head.add_row("reason", e.conclusion_reason or "–")
    variants = Table(title="Variants")
    for col in ("#", "key", "name", "weight"):
        variants.add_column(col, justify="right" if col in {"#", "weight"} else "left")
    for i, v in enumerate(d.variants):
        variants.add_row(str(i), v.key + (" (control)" if i == 0 else ""), v.name, _pct(v.weight))
    parts: list[RenderableType] = [head, variants]
    if d.goal_metrics or d.guardrail_metrics:
        metrics = Table(title="Metrics")
        for col in ("metric", "role", "definition"):
            metrics.add_column(col)
        for role, group in (("goal", d.goal_metrics), ("guardrail", d.guardrail_metrics)):
            for m in group:
                metrics.add_row(m.name, role, _metric_text(m))
        parts.append(metrics)
    if e.history:
        history = Table(title="History")
        for col in ("version", "change", "at", "by"):
            history.add_column(col, justify="right" if col == "version" else "left")
        for h in e.history:
            history.add_row(str(h.version), h.type, _when(h.at_us), h.actor)
        parts.append(history)
    return Group(*parts)


def _experiment_answer(r: Any) -> RenderableType:
    return _experiment(r.experiment)


def _assignment(r: xp.AssignResponse) -> RenderableType:
    a = r.assignment
    if not a.in_experiment:
        return Text.assemble(
            (a.user_id, "bold"),
            " is not in ",
            (a.experiment_key, "bold"),
            (f"  (hash {a.hash_value:.4f})" if a.hash_value else "", "dim"),
        )
    text = Text.assemble(
        (a.user_id, "bold"),
        " → ",
        (a.variant_key, "bold green"),
        f"  (variant {a.variant_index} of {a.experiment_key}, hash {a.hash_value:.4f})",
    )
    if a.exposure_event_id:
        text.append(f"\nexposure logged: {a.exposure_event_id}", style="dim")
    return text


def _lift(v: xp.VariantResult) -> Text:
    if v.control:
        return Text("control", style="dim")
    if v.error_message:
        return Text(v.error_message, style="dim")
    style = "green" if v.ci_lower > 0 else "red" if v.ci_upper < 0 else ""
    return Text(f"{v.lift * 100:+.1f}%", style=style)


def _result_table(m: xp.MetricResult, bayes: bool) -> Table:
    role = _xenum(xp.MetricRole, m.role, "METRIC_ROLE_")
    caption = f"CUPED theta {m.cuped_theta:.3f}" if m.cuped_theta else None
    table = Table(title=f"{m.metric} ({role})", caption=caption)
    columns = ["variant", "users", "sum", "mean", "lift", "95% CI"]
    columns += ["chance to win", "risk"] if bayes else ["p-value", "adj. p"]
    for col in columns:
        table.add_column(col, justify="left" if col == "variant" else "right")
    for v in m.variants:
        interval = (
            "–"
            if v.control or v.error_message
            else f"[{v.ci_lower * 100:+.1f}%, {v.ci_upper * 100:+.1f}%]"
        )
        if v.control or v.error_message:
            stats = ["–", "–"]
        elif bayes:
            stats = [_pct(v.chance_to_win), f"{v.risk_variant:.4f}"]
        else:
            stats = [f"{v.p_value:.4f}", f"{v.adjusted_p_value:.4f}" if v.adjusted_p_value else "–"]
        table.add_row(
            v.variant_key, _num(v.users), _num(v.sum), f"{v.mean:.4f}", _lift(v), interval, *stats
        )
    return table


def _results(r: xp.GetResultsResponse) -> RenderableType:
    bayes = r.engine == xp.STATS_ENGINE_BAYESIAN
    engine = _xenum(xp.StatsEngine, r.engine, "STATS_ENGINE_")
    head = Text.assemble(
        (f"Results of {r.experiment_key}", "bold"),
        f"  {engine}, {_when(r.analysis_start_us)} → {_when(r.analysis_end_us)} UTC",
    )
    srm = r.srm
    users = ", ".join(f"{u:,}" for u in srm.users)
    srm_line = Text.assemble(
        "sample ratio: ",
        (users or "–", "bold"),
        f" users (p = {srm.p_value:.4f}) ",
        ("MISMATCH", "bold red") if srm.mismatch else ("ok", "green"),
    )
    if r.multiple_exposures or r.unknown_variant_exposures:
        srm_line.append(
            f"; excluded: {r.multiple_exposures} in several variants,"
            f" {r.unknown_variant_exposures} unknown-variant exposures",
            style="yellow",
        )
    parts: list[RenderableType] = [head, srm_line]
    parts += [_result_table(m, bayes) for m in r.metrics]
    if not r.metrics:
        parts.append(Text("no goal or guardrail metrics defined", style="dim"))
    d = r.decision
    kind = _xenum(xp.DecisionKind, d.kind, "DECISION_KIND_")
    decision = Text.assemble(
        ("Decision: ", "bold"), (kind, f"bold {_DECISION_STYLE.get(d.kind, '')}")
    )
    if d.variant_key:
        decision.append(f" {d.variant_key}")
    if d.reason:
        decision.append(f" — {d.reason}")
    parts += [decision, _footer(r.log_position)]
    return Group(*parts)


# ------------------------------------------------------------------------------ alerts

_ALERT_STYLE: dict[int, str] = {
    al.ALERT_STATUS_INACTIVE: "dim",
    al.ALERT_STATUS_PENDING: "yellow",
    al.ALERT_STATUS_FIRING: "bold red",
    al.ALERT_STATUS_RESOLVED: "green",
}
_SEVERITY_STYLE: dict[int, str] = {al.SEVERITY_WARNING: "yellow", al.SEVERITY_CRITICAL: "red"}
_VERDICT_STYLE: dict[int, str] = {al.VERDICT_BREACHED: "bold red", al.VERDICT_CLEAR: "green"}
_DELIVERY_STYLE: dict[int, str] = {
    al.DELIVERY_STATUS_DELIVERED: "green",
    al.DELIVERY_STATUS_PENDING: "yellow",
    al.DELIVERY_STATUS_FAILED: "red",
}
_SILENCE_STYLE: dict[int, str] = {
    al.SILENCE_STATUS_ACTIVE: "green",
    al.SILENCE_STATUS_PENDING: "cyan",
    al.SILENCE_STATUS_EXPIRED: "dim",
}
_COMPARATOR = {
    al.COMPARATOR_LESS: "<",
    al.COMPARATOR_LESS_EQUAL: "<=",
    al.COMPARATOR_GREATER: ">",
    al.COMPARATOR_GREATER_EQUAL: ">=",
}


def _styled(enum: Any, value: int, prefix: str, styles: dict[int, str]) -> Text:
    return Text(_xenum(enum, value, prefix), style=styles.get(value, ""))


def _severity(value: int) -> Text:
    return _styled(al.Severity, value, "SEVERITY_", _SEVERITY_STYLE)


def _alert_status(value: int) -> Text:
    return _styled(al.AlertStatus, value, "ALERT_STATUS_", _ALERT_STYLE)


def _stamp(ts: timestamp_pb2.Timestamp) -> str:
    return _when(ts.seconds * 1_000_000 + ts.nanos // 1_000) if ts.seconds or ts.nanos else "–"


def _series(s: al.Series) -> str:
    kind = _xenum(al.SeriesKind, s.kind, "SERIES_KIND_")
    text = f"{kind} {s.name}" + (f" ({s.event_name})" if s.event_name else "")
    return text + (f" per {s.granularity}" if s.granularity and s.granularity != "day" else "")


def _condition(r: al.Rule) -> str:
    which = r.WhichOneof("condition")
    if which == "anomaly":
        a = r.anomaly
        relative = f" or relative > {a.relative:g}" if a.HasField("relative") else ""
        severity = _xenum(al.Severity, a.severity, "SEVERITY_")
        return f"anomaly |z| >= {a.z or 3:g}{relative} ({severity})"
    if which is None:
        return "–"
    levels: al.Levels = getattr(r, which)
    op = _COMPARATOR.get(levels.comparator, "?")
    subject = "value" if which == "threshold" else "change"
    parts = [
        f"{name} {subject} {op} {getattr(levels, name):g}"
        for name in ("warning", "critical")
        if levels.HasField(name)
    ]
    return ", ".join(parts) or "–"


def _channels(c: al.Channels) -> str:
    parts = [(len(c.webhooks), "webhook"), (len(c.slack), "slack"), (len(c.emails), "email")]
    return ", ".join(f"{n} {label}" for n, label in parts if n) or "none"


def _rules(r: al.ListRulesResponse) -> RenderableType:
    table = Table(title="Alert rules")
    for col in ("rule", "name", "series", "condition", "every", "for", "channels", "version"):
        table.add_column(col, justify="right" if col in {"every", "for", "version"} else "left")
    for entry in r.rules:
        rule = entry.rule
        table.add_row(
            rule.rule_id,
            rule.name,
            _series(rule.series),
            _condition(rule),
            _secs(rule.interval_seconds),
            _secs(rule.for_seconds),
            _channels(rule.channels),
            str(entry.version),
        )
    return _listing(table, len(r.rules), "no rules")


def _rule_answer(r: al.GetRuleResponse) -> RenderableType:
    rule = r.rule
    table = Table(title=f"Rule {rule.rule_id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for label, value in (
        ("name", rule.name or "–"),
        ("series", _series(rule.series)),
        ("condition", _condition(rule)),
        ("every", _secs(rule.interval_seconds)),
        ("for", _secs(rule.for_seconds)),
        ("keep firing for", _secs(rule.keep_firing_for_seconds)),
        ("repeat every", _secs(rule.repeat_interval_seconds)),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(rule.labels.items())) or "–"),
        ("webhooks", ", ".join(rule.channels.webhooks) or "–"),
        ("slack", ", ".join(rule.channels.slack) or "–"),
        ("emails", ", ".join(rule.channels.emails) or "–"),
        ("version", str(r.version)),
    ):
        table.add_row(label, value)
    return table


def _rule_version(
    r: al.CreateRuleResponse | al.UpdateRuleResponse | al.DeleteRuleResponse,
) -> RenderableType:
    return Text.assemble(("version ", "bold"), str(r.version))


def _alerts(r: al.ListAlertsResponse) -> RenderableType:
    table = Table(title="Alerts")
    columns = ("rule", "name", "severity", "status", "value", "threshold", "since")
    for col in (*columns, "acknowledged", "evaluated", "error"):
        table.add_column(col, justify="right" if col in {"value", "threshold"} else "left")
    for a in r.alerts:
        ack = a.acknowledged_by + (f": {a.ack_comment}" if a.ack_comment else "")
        table.add_row(
            a.rule_id,
            a.rule_name,
            _severity(a.severity),
            _alert_status(a.status),
            _num(_opt(a, "value"), 3),
            _num(_opt(a, "threshold"), 3),
            _when(a.since_us),
            ack or "–",
            _when(a.last_evaluated_at_us),
            Text(a.last_error, style="red") if a.last_error else "",
        )
    return _listing(table, len(r.alerts), "no alerts")


def _alert_history(r: al.AlertHistoryResponse) -> RenderableType:
    table = Table(title="Alert history")
    for col in ("at", "severity", "event", "value", "threshold", "by"):
        table.add_column(col, justify="right" if col in {"value", "threshold"} else "left")
    for e in r.entries:
        if e.kind == al.ALERT_EVENT_KIND_ACKNOWLEDGEMENT:
            event = Text(f"acknowledged ({_xenum(al.AlertStatus, e.to_status, 'ALERT_STATUS_')})")
            by = e.acknowledged_by + (f": {e.ack_comment}" if e.ack_comment else "")
        else:
            event = Text.assemble(_alert_status(e.from_status), " → ", _alert_status(e.to_status))
            by = ""
        table.add_row(
            _when(e.at_us),
            _severity(e.severity),
            event,
            _num(_opt(e, "value"), 3),
            _num(_opt(e, "threshold"), 3),
            by or "–",
        )
    return _listing(table, len(r.entries), "no transitions yet")


def _trial(r: al.TestRuleResponse) -> RenderableType:
    head = Text.assemble(
        ("Test at ", "bold"),
        f"{_when(r.at_us)} UTC: value ",
        (_num(_opt(r, "value"), 3), "bold"),
    )
    if r.HasField("previous"):
        head.append(f", previous {_num(r.previous, 3)}")
    if r.baseline_values:
        head.append(f", {r.baseline_values} baseline values")
    table = Table()
    for col in ("severity", "threshold", "verdict"):
        table.add_column(col, justify="right" if col == "threshold" else "left")
    for v in r.severities:
        verdict = _styled(al.Verdict, v.verdict, "VERDICT_", _VERDICT_STYLE)
        table.add_row(_severity(v.severity), _num(v.threshold, 3), verdict)
    parts: list[RenderableType] = [head, table]
    if r.error:
        parts.append(Text(f"no value: {r.error}", style="red"))
    return Group(*parts)


def _silences(r: al.ListSilencesResponse) -> RenderableType:
    table = Table(title="Silences")
    for col in ("silence", "matchers", "status", "starts", "ends", "reason", "author"):
        table.add_column(col, no_wrap=col == "silence")
    for s in r.silences:
        ends = (
            _stamp(s.expired_at) + " (expired)" if s.HasField("expired_at") else _stamp(s.ends_at)
        )
        table.add_row(
            s.silence_id,
            ", ".join(f"{k}={v}" for k, v in sorted(s.matchers.items())),
            _styled(al.SilenceStatus, s.status, "SILENCE_STATUS_", _SILENCE_STYLE),
            _stamp(s.starts_at),
            ends,
            s.reason,
            s.author,
        )
    return _listing(table, len(r.silences), "no silences")


def _notifications(r: al.ListNotificationsResponse) -> RenderableType:
    table = Table(title="Notifications")
    columns = ("id", "rule", "severity", "kind", "due", "channel", "target", "status")
    for col in (*columns, "attempts", "last error"):
        table.add_column(col, justify="right" if col in {"id", "attempts"} else "left")
    for n in r.notifications:
        head = (str(n.notification_id), n.rule_id, _severity(n.severity), n.kind, _stamp(n.due_at))
        for i, d in enumerate(n.deliveries or [al.Delivery()]):
            status = _styled(al.DeliveryStatus, d.status, "DELIVERY_STATUS_", _DELIVERY_STYLE)
            table.add_row(
                *(head if i == 0 else ("",) * len(head)),
                d.channel or "–",
                d.target or "–",
                status,
                str(d.attempts),
                Text(d.last_error, style="red") if d.last_error else "",
            )
    parts: list[RenderableType] = [table]
    if not r.notifications:
        parts.append(Text("no notifications", style="dim"))
    if r.next_page_token:
        parts.append(Text(f"older: --page-token {r.next_page_token}", style="dim"))
    return Group(*parts)


def _schedule_what(s: rp.Schedule) -> str:
    if s.kind == rp.REPORT_KIND_CUSTOM:
        return ", ".join(_xenum(rp.Section, v, "SECTION_") for v in s.sections) or "–"
    return _xenum(rp.ReportKind, s.kind, "REPORT_KIND_")


def _period(p: rp.Period) -> str:
    if not p.start_date:
        return "–"
    span = p.start_date if p.start_date == p.end_date else f"{p.start_date}..{p.end_date}"
    return f"{span} {p.time_zone}".strip()


def _report_channels(c: rp.Channels) -> str:
    parts = [(len(c.emails), "email"), (len(c.slack), "slack"), (len(c.webhooks), "webhook")]
    return ", ".join(f"{n} {label}" for n, label in parts if n) or "none"


def _schedules(states: Sequence[rp.ScheduleState]) -> RenderableType:
    table = Table(title="Report schedules")
    columns = ("schedule", "name", "what", "cron", "zone", "channels", "next run", "last period")
    for col in (*columns, "version"):
        table.add_column(col, justify="right" if col == "version" else "left")
    for state in states:
        s = state.schedule
        table.add_row(
            s.schedule_id,
            s.name or "–",
            _schedule_what(s),
            s.cron + (" (paused)" if s.paused else ""),
            s.time_zone or "UTC",
            _report_channels(s.channels),
            _stamp(state.next_run) if state.HasField("next_run") else "–",
            _period(state.last_period) if state.HasField("last_period") else "–",
            str(state.version),
        )
    return _listing(table, len(states), "no schedules")


def _delivery_summary(deliveries: Sequence[rp.Delivery]) -> Text:
    if not deliveries:
        return Text("none", style="dim")
    counts: dict[str, int] = {}
    for d in deliveries:
        name = _xenum(rp.DeliveryStatus, d.status, "DELIVERY_STATUS_")
        counts[name] = counts.get(name, 0) + 1
    styles = {"delivered": "green", "pending": "yellow", "failed": "red"}
    text = Text()
    for i, (name, n) in enumerate(sorted(counts.items())):
        text.append((", " if i else "") + f"{n} {name}", style=styles.get(name, ""))
    return text


def _reports(r: rp.ListReportsResponse) -> RenderableType:
    table = Table(title="Reports")
    for col in ("report", "schedule", "title", "period", "generated", "on demand", "deliveries"):
        table.add_column(col)
    for s in r.reports:
        table.add_row(
            s.report_id,
            s.schedule_id or "–",
            s.title or "–",
            _period(s.period),
            _stamp(s.generated_at),
            "yes" if s.on_demand else "",
            _delivery_summary(s.deliveries),
        )
    parts: list[RenderableType] = [table]
    if not r.reports:
        parts.append(Text("no reports", style="dim"))
    if r.next_page_token:
        parts.append(Text(f"older: --page-token {r.next_page_token}", style="dim"))
    return Group(*parts)


def print_answer(console: Console, message: Message, *, json_output: bool) -> None:
    """Print an answer as a table or as JSON."""
    if json_output:
        print_plain(console, as_json(message))
    else:
        console.print(render(message))


def print_plain(console: Console, text: str) -> None:
    """Write text as is (no markup, no wrapping): machine-readable output."""
    console.file.write(text + "\n")
    console.file.flush()
