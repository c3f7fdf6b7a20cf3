"""Renderings of a report (a minimal stand-in until the real renderers land)."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import json_format

from northstar.reports.v1 import reports_pb2 as pb


@dataclass(frozen=True, slots=True)
class Rendering:
    """A rendered report and its media type."""

    content: str
    content_type: str


@dataclass(frozen=True, slots=True)
class EmailParts:
    """An email's subject, plain-text part and HTML part."""

    subject: str
    text: str
    html: str


def _title(report: pb.Report) -> str:
    s = report.summary
    return f"{s.title} {s.period.start_date}..{s.period.end_date}"


def render(report: pb.Report, fmt: pb.Format.ValueType) -> Rendering:
    """The report in `fmt` (UNSPECIFIED: JSON)."""
    if fmt == pb.FORMAT_MARKDOWN:
        return Rendering(f"# {_title(report)}\n", "text/markdown")
    if fmt == pb.FORMAT_HTML:
        return Rendering(f"<!doctype html><title>{_title(report)}</title>", "text/html")
    return Rendering(json_format.MessageToJson(report), "application/json")


def render_email(report: pb.Report) -> EmailParts:
    """The report as an email."""
    return EmailParts(
        _title(report), f"# {_title(report)}\n", f"<html><h1>{_title(report)}</h1></html>"
    )


def render_slack(report: pb.Report) -> str:
    """The report's summary in Slack mrkdwn."""
    return f"*{_title(report)}*"
