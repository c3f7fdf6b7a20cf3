"""The Slack rendering: a short mrkdwn summary for an incoming webhook.

Title and period, each key metric with its change, the alignment score and status, the
top three priority actions and the alert counts; the full report stays in email and in
GetReport. Slack asks only that `&`, `<` and `>` be escaped in text
(https://api.slack.com/reference/surfaces/formatting#escaping).
"""

from __future__ import annotations

from northstar_reports.domain.render.bidi import isolate
from northstar_reports.domain.render.view import (
    ActionsView,
    AlertsView,
    AlignmentView,
    KeyMetricsView,
    ReportView,
)

TOP_ACTIONS = 3


def escape(s: str) -> str:
    """Text for mrkdwn: the three characters Slack reads as markup as entities, RTL isolated."""
    return isolate(s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def render_slack_text(v: ReportView) -> str:
    """The summary, one line per fact."""
    lines = [
        f"*{escape(v.title)}*",
        f"{escape(v.kind)} · {escape(v.period)} ({escape(v.time_zone)})",
    ]
    for s in v.sections:
        c = s.content
        if s.error is not None:
            lines += ["", f"*{s.heading}*: not available ({escape(s.error)})"]
        elif isinstance(c, KeyMetricsView) and c.rows:
            lines += ["", "*Key metrics*"]
            lines += [
                f"• {escape(r.label)}: *{r.value}* ({f'{r.arrow} {r.change}'.strip()})"
                for r in c.rows
            ]
        elif isinstance(c, AlignmentView):
            lines += ["", f"*Alignment*: *{c.score}* / 100, {c.status}"]
        elif isinstance(c, ActionsView) and c.rows:
            lines += ["", "*Top actions*"]
            lines += [
                f"{i}. `{escape(a.kpi)}` ({a.impact}): {escape(a.action)}"
                for i, a in enumerate(c.rows[:TOP_ACTIONS], 1)
            ]
        elif isinstance(c, AlertsView):
            lines += [
                "",
                f"*Alerts*: {c.fired} fired, {c.resolved} resolved, {c.firing_at_end} still firing",
            ]
    for heading, message in v.other_errors:
        lines += ["", f"*{heading}*: not available ({escape(message)})"]
    return "\n".join(lines)
