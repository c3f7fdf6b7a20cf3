"""The Markdown rendering (GitHub flavour): a heading per section, a table per table.

It is also the plain-text part of the report email, so it stays readable unrendered:
sparklines are Unicode blocks, identifiers are code spans, and data is escaped with
backslashes only where Markdown would otherwise read it as syntax or raw HTML.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from northstar_reports.domain.render.bidi import isolate
from northstar_reports.domain.render.numbers import DASH
from northstar_reports.domain.render.view import (
    ActionsView,
    AlertsView,
    AlignmentView,
    ExperimentRow,
    ExperimentsView,
    FunnelView,
    KeyMetricsView,
    QualityView,
    ReportView,
    RetentionView,
    SectionView,
)

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that can
# start emphasis, links, raw HTML, entities, tables or code.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|&!#~])")
_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def text(s: str) -> str:
    """Data as literal Markdown text on one line."""
    return isolate(_SPECIAL.sub(r"\\\1", _BREAKS.sub(" ", s)))


def code(s: str) -> str:
    """Data as a code span (literal in every Markdown), fenced past any backticks inside."""
    s = _BREAKS.sub(" ", s).replace("|", "¦")  # a pipe would end the table cell even here
    if not s:
        return DASH
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return isolate(f"{fence}{pad}{s}{pad}{fence}")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A GFM table; cells are already Markdown. `align` has one of l/r per column."""
    marks = [("---:" if a == "r" else "---") for a in align.ljust(len(header), "l")]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    out += ["| " + " | ".join(c or " " for c in row) + " |" for row in rows]
    return out


def _key_metrics(v: KeyMetricsView) -> list[str]:
    if not v.rows:
        return ["No key metrics for this period."]
    rows = [
        [text(r.label), r.value, r.previous, f"{r.arrow} {r.change}".strip(), r.spark_text or DASH]
        for r in v.rows
    ]
    return table(["Metric", "Value", "Previous", "Change", "Trend"], rows, "lrrrl")


def _alignment(v: AlignmentView) -> list[str]:
    out = [f"**Alignment score: {v.score} / 100 — {v.status}** (KPIs as of {text(v.as_of)})", ""]
    rows = [
        [code(k.name), k.value, k.target, k.attainment, k.state, text(k.window)] for k in v.kpis
    ]
    out += table(["KPI", "Value", "Target", "Attainment", "State", "Window"], rows, "lrrrll")
    if v.missing:
        out += ["", "Missing (not counted): " + ", ".join(code(m) for m in v.missing)]
    return out


def _actions(v: ActionsView) -> list[str]:
    if not v.rows:
        return ["No priority actions: every KPI meets its target."]
    rows = [[str(i), code(a.kpi), a.impact, a.gap, text(a.action)] for i, a in enumerate(v.rows, 1)]
    return table(["#", "KPI", "Impact", "Gap", "Recommended action"], rows, "rlrrl")


def _alerts(v: AlertsView) -> list[str]:
    out = [
        f"Fired: **{v.fired}** · Resolved: **{v.resolved}** · "
        f"Still firing at the end of the period: **{v.firing_at_end}**",
        "",
    ]
    if not v.rows:
        return [*out, "No alert fired or resolved in the period."]
    rows = [[a.at, text(a.rule), a.severity, a.change, a.value, a.threshold] for a in v.rows]
    return out + table(["When", "Rule", "Severity", "Change", "Value", "Threshold"], rows, "llllrr")


def _experiment_rows(rows: Sequence[ExperimentRow]) -> list[str]:
    cells = []
    for e in rows:
        decision = text(e.decision)
        if e.warnings:
            warning = "⚠ " + text("; ".join(e.warnings))
            decision = warning if e.decision == DASH else f"{decision} — {warning}"
        cells.append(
            [
                f"{text(e.name)} ({code(e.key)})",
                e.users,
                code(e.metric) if e.metric != DASH else DASH,
                f"{e.lift} ({e.interval})" if e.lift != DASH else DASH,
                e.evidence,
                decision,
            ]
        )
    return table(
        ["Experiment", "Users", "Goal metric", "Lift (95% CI)", "Evidence", "Decision"],
        cells,
        "lrlrrl",
    )


def _experiments(v: ExperimentsView) -> list[str]:
    out = ["### Running", ""]
    out += _experiment_rows(v.running) if v.running else ["No experiment running."]
    out += ["", "### Concluded in the period", ""]
    out += _experiment_rows(v.concluded) if v.concluded else ["No experiment concluded."]
    return out


def _retention(v: RetentionView) -> list[str]:
    if not v.rows:
        return ["No cohorts in the period."]
    header = ["Cohort", "Users", *(f"{v.granularity.title()} {p}" for p in v.periods)]
    rows = [[text(r.label), r.size, *(c.text or DASH for c in r.cells)] for r in v.rows]
    if v.combined is not None:
        c = v.combined
        rows.append([f"**{c.label}**", c.size, *(x.text or DASH for x in c.cells)])
    return [
        *table(header, rows, "lr" + "r" * len(v.periods)),
        "",
        "— : not yet measured (the cohort is too recent).",
    ]


def _funnel(v: FunnelView) -> list[str]:
    if not v.steps:
        return ["No funnel steps."]
    rows = [
        [str(s.step), code(s.event), s.users, s.conversion_previous, s.conversion_first, s.median]
        for s in v.steps
    ]
    return [
        f"Overall conversion: **{v.overall}** (conversion window {v.window})",
        "",
        *table(
            ["Step", "Event", "Users", "From previous", "From first", "Median time"],
            rows,
            "rlrrrr",
        ),
    ]


def _quality(v: QualityView) -> list[str]:
    out = [f"**Quality score: {v.score} / 100**", ""]
    out += table(["Measure", "Events"], [[k, x] for k, x in v.facts], "lr")
    if v.rejections:
        out += ["", "Rejections:", ""]
        out += table(
            ["Field", "Rule", "Events"], [[code(f), code(r), n] for f, r, n in v.rejections], "llr"
        )
    if v.penalties:
        out += ["", "Score penalties:", ""]
        out += table(["Issue", "Share", "Penalty"], [list(p) for p in v.penalties], "lrr")
    return out


def _section(s: SectionView) -> list[str]:
    out = [f"## {s.heading}", ""]
    if s.error is not None:
        return [*out, f"> **Not available:** {text(s.error)}"]
    c = s.content
    if isinstance(c, KeyMetricsView):
        return out + _key_metrics(c)
    if isinstance(c, AlignmentView):
        return out + _alignment(c)
    if isinstance(c, ActionsView):
        return out + _actions(c)
    if isinstance(c, AlertsView):
        return out + _alerts(c)
    if isinstance(c, ExperimentsView):
        return out + _experiments(c)
    if isinstance(c, RetentionView):
        return out + _retention(c)
    if isinstance(c, FunnelView):
        return out + _funnel(c)
    if isinstance(c, QualityView):
        return out + _quality(c)
    return [*out, "No data."]


def render_markdown(v: ReportView) -> str:
    """The whole report as Markdown, ending with a newline."""
    lines = [
        f"# {text(v.title)}",
        "",
        f"{v.kind} · **{v.period}** ({text(v.time_zone)}) · generated {v.generated}",
    ]
    for s in v.sections:
        lines += ["", *_section(s)]
    if v.other_errors:
        lines += ["", "## Notes", ""]
        lines += [f"- **{h}** not available: {text(m)}" for h, m in v.other_errors]
    if v.report_id:
        lines += ["", "---", f"Report {code(v.report_id)}"]
    return "\n".join(lines).rstrip("\n") + "\n"
