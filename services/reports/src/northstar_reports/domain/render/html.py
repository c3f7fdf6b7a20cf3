"""The HTML rendering: one standalone page (also the email's HTML part) from a Jinja template.

Autoescaping is on for the whole template, so every string that comes from data (names,
labels, event names, error messages) is escaped once, in text and in attributes alike;
the SVG charts are part of the same template, escaped the same way.
"""

from __future__ import annotations

import math

import jinja2
import markupsafe

from northstar_reports.domain.render import view
from northstar_reports.domain.render.bidi import isolate
from northstar_reports.domain.render.view import ReportView


def _n(x: float) -> str:
    """A coordinate for an SVG attribute: two decimals at most, never NaN."""
    if not math.isfinite(x):
        return "0"
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _finalize(x: object) -> object:
    """Every interpolated value, before escaping: right-to-left data stays in its place.

    Markup (a macro's output) is left alone: the values inside it went through here.
    """
    if isinstance(x, str) and not isinstance(x, markupsafe.Markup):
        return isolate(x)
    return x


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("northstar_reports.domain.render", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    finalize=_finalize,
)
_ENV.filters["n"] = _n
_TEMPLATE = _ENV.get_template("report.html.j2")
_GEOMETRY = {
    "spark": view.SPARK,
    "gauge": {"w": view.GAUGE_W, "h": view.GAUGE_H, "stroke": view.GAUGE_STROKE},
    "funnel": {"w": view.FUNNEL_W, "label_w": view.FUNNEL_LABEL_W, "bar_h": view.FUNNEL_BAR_H},
}


def render_html(v: ReportView) -> str:
    """The whole report as a standalone HTML page."""
    return _TEMPLATE.render(v=v, **_GEOMETRY)
