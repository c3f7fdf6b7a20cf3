"""A report's renderings: proto3 JSON, Markdown, a standalone HTML page, email and Slack.

Pure: no I/O, no clock. Only the sections listed in `Report.sections` are rendered, in
that order; a section listed in `Report.errors` shows a visible note instead of its
content. docs/reports.md says what each rendering shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import json_format

from northstar.reports.v1 import reports_pb2
from northstar_reports.domain.render import view
from northstar_reports.domain.render.html import render_html
from northstar_reports.domain.render.markdown import render_markdown
from northstar_reports.domain.render.slack import render_slack_text

__all__ = ["EmailParts", "Rendering", "render", "render_email", "render_slack"]

JSON = "application/json"
MARKDOWN = "text/markdown"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Rendering:
    """One rendering of a report: its text and its media type."""

    content: str
    content_type: str


@dataclass(frozen=True)
class EmailParts:
    """What a report email carries: its subject, a plain-text and an HTML part."""

    subject: str
    text: str
    html: str


def to_json(report: reports_pb2.Report) -> str:
    """The report in proto3 JSON, fields in field-number order, two-space indent."""
    return json_format.MessageToJson(report, indent=2, ensure_ascii=False)


def render(report: reports_pb2.Report, fmt: reports_pb2.Format.ValueType) -> Rendering:
    """The report in the asked format (UNSPECIFIED: JSON)."""
    if fmt == reports_pb2.FORMAT_MARKDOWN:
        return Rendering(render_markdown(view.build(report)), MARKDOWN)
    if fmt == reports_pb2.FORMAT_HTML:
        return Rendering(render_html(view.build(report)), HTML)
    return Rendering(to_json(report), JSON)


def subject(v: view.ReportView) -> str:
    """The email subject: "Weekly business report — Mon 23 Nov – Sun 29 Nov 2026"."""
    return f"{v.title} — {v.period}".replace("\r", " ").replace("\n", " ")


def render_email(report: reports_pb2.Report) -> EmailParts:
    """The report as an email: the HTML page, with the Markdown as its plain-text part."""
    v = view.build(report)
    return EmailParts(subject=subject(v), text=render_markdown(v), html=render_html(v))


def render_slack(report: reports_pb2.Report) -> str:
    """The report's summary in Slack mrkdwn."""
    return render_slack_text(view.build(report))
