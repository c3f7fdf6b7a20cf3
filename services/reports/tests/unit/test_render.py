"""A report's renderings: JSON round-trips, Markdown and HTML show every asked section and
only those, absent values as "—", errors visibly, hostile strings escaped; Slack mrkdwn."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import html5lib
import pytest
from google.protobuf import json_format

from northstar.reports.v1 import reports_pb2 as rp
from northstar_reports.domain.render import (
    EmailParts,
    Rendering,
    render,
    render_email,
    render_slack,
)
from northstar_reports.domain.render.sample import WEEKLY_SECTIONS, sample_report

HOSTILE = "<script>alert('x')</script> \"q\" & 'a' <b>bold</b> ünï 🚀 עברית \u202eRTL"
SVG_NS = "{http://www.w3.org/2000/svg}"
HEADINGS = {
    rp.SECTION_KEY_METRICS: "Key metrics",
    rp.SECTION_ALIGNMENT: "Alignment",
    rp.SECTION_PRIORITY_ACTIONS: "Priority actions",
    rp.SECTION_ALERTS: "Alerts",
    rp.SECTION_EXPERIMENTS: "Experiments",
    rp.SECTION_RETENTION: "Retention",
    rp.SECTION_FUNNEL: "Funnel",
    rp.SECTION_DATA_QUALITY: "Data quality",
}


def hostile_report() -> rp.Report:
    """The sample with data-borne strings replaced by markup, quotes, & and bidi text."""
    r = sample_report()
    r.summary.title = f"Weekly {HOSTILE}"
    r.key_metrics.metrics[0].label = f"DAU {HOSTILE}"
    r.alignment.kpis.kpis[0].window = HOSTILE
    r.alignment.kpis.missing.append(HOSTILE)
    r.priority_actions.actions[0].recommended_action = HOSTILE
    r.alerts.entries[0].rule_name = HOSTILE
    r.experiments.running[0].experiment.definition.name = HOSTILE
    r.experiments.running[0].experiment.key = "k<&>"
    r.experiments.concluded[0].error = HOSTILE
    r.funnel.funnel.overall.steps[1].event = HOSTILE
    r.data_quality.quality.rejection_reasons[0].field = HOSTILE
    r.retention.retention.cohorts[0].cohort_start = HOSTILE
    return r


def html_of(report: rp.Report) -> str:
    return render(report, rp.FORMAT_HTML).content


def parse_html(content: str) -> ET.Element:
    """The page parsed strictly (any HTML parse error fails the test)."""
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    return parser.parse(content)


def svgs(content: str) -> list[ET.Element]:
    """Every inline SVG of the page, each parsed as a standalone XML document."""
    return [ET.fromstring(m) for m in re.findall(r"<svg\b.*?</svg>", content, flags=re.DOTALL)]


def text_outside_svg(root: ET.Element) -> str:
    """The page's text as a client that drops SVG would show it."""

    def walk(e: ET.Element) -> list[str]:
        if e.tag in ("svg", f"{SVG_NS}svg", "style", "title", "head"):
            return [e.tail or ""]
        out = [e.text or ""]
        for child in e:
            out += walk(child)
        out.append(e.tail or "")
        return out

    body = root.find("body")
    assert body is not None
    return re.sub(r"\s+", " ", "".join(walk(body)))


# ---------------------------------------------------------------------------- JSON


@pytest.mark.parametrize("fmt", [rp.FORMAT_JSON, rp.FORMAT_UNSPECIFIED])
def test_json_is_proto3_json_that_parses_back_to_the_same_report(fmt: int) -> None:
    report = hostile_report()
    out = render(report, fmt)  # type: ignore[arg-type]
    assert isinstance(out, Rendering) and out.content_type == "application/json"
    assert json_format.Parse(out.content, rp.Report()) == report
    doc = json.loads(out.content)
    assert list(doc)[:3] == ["summary", "sections", "keyMetrics"]  # field-number order
    assert doc["summary"]["title"] == report.summary.title
    assert render(report, fmt).content == out.content  # stable


# ---------------------------------------------------------------------------- Markdown


def markdown_sections(md: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", md, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_markdown_has_every_asked_section_in_order_with_a_table_each() -> None:
    out = render(sample_report(), rp.FORMAT_MARKDOWN)
    assert out.content_type == "text/markdown"
    md = out.content
    assert md.startswith("# Weekly business report\n")
    assert "Mon 23 Nov 2026 – Sun 29 Nov 2026" in md
    headings = re.findall(r"^## (.+)$", md, flags=re.MULTILINE)
    assert headings == [HEADINGS[s] for s in WEEKLY_SECTIONS]
    for heading, body in markdown_sections(md).items():
        assert re.search(r"^\| .+ \|\n\| (-{3}:?|---) ", body, flags=re.MULTILINE), heading


def test_markdown_prints_the_numbers_as_the_services_gave_them() -> None:
    md = render(sample_report(), rp.FORMAT_MARKDOWN).content
    s = markdown_sections(md)
    assert "| Signups | 561 | 498 | ▲ +12.7% | ▁▃▂▅▄▆▅█ |" in s["Key metrics"]
    assert "| MRR (end of period) | 202,645.00 | 199,300.00 |" in s["Key metrics"]
    assert "| Activation rate | 35.2% | 37.0% | ▼ -4.9% |" in s["Key metrics"]
    assert "**Alignment score: 81.7 / 100 — On track**" in s["Alignment"]
    assert "| `d30_retention` | 10.8% | 15.0% | 72% | Warning |" in s["Alignment"]
    assert "| 1 | `mrr_growth_mom` | 4.5 pts | 6.8 pp |" in s["Priority actions"]
    counts = "Fired: **3** · Resolved: **2** · Still firing at the end of the period: **1**"
    assert counts in s["Alerts"]
    assert "| 2026-11-28 06:15 | Signups dropped | critical | fired | 38 | 45 |" in s["Alerts"]
    assert "+10.6% (+4.1% to +17.0%) | p = 0.001 | Ship: checklist" in s["Experiments"]
    assert "| 2026-11-23 | 561 | 100.0% | — | — |" in s["Retention"]
    assert "| 5 | `subscription_started` | 214 | 16.3% | 6.2% | 4.2 d |" in s["Funnel"]
    assert "**Quality score: 95.3 / 100**" in s["Data quality"]
    assert "| Received | 1,284,310 |" in s["Data quality"]


def test_absent_values_print_as_a_dash_never_zero() -> None:
    report = sample_report()
    m = report.key_metrics.metrics[1]
    m.ClearField("value")
    m.ClearField("change")
    report.data_quality.quality.ClearField("score")
    md = render(report, rp.FORMAT_MARKDOWN).content
    s = markdown_sections(md)
    assert "| Signups | — | 498 | — |" in s["Key metrics"]
    assert "| `viral_coefficient` | — | 0.5 | — | Missing |" in s["Alignment"]
    assert "**Quality score: — / 100**" in s["Data quality"]
    # DAU's sparkline has an absent week: a gap, not a bottom block.
    assert "| Daily active users (average) | 3,787.1 | 3,630.4 | ▲ +4.3% | ▁▂▁▄▅·▇█ |" in md
    html = html_of(report)
    assert "— / 100" in html and "was 498" in html


def test_only_the_asked_sections_are_rendered_in_their_order() -> None:
    report = sample_report()
    del report.sections[:]
    report.sections.extend([rp.SECTION_FUNNEL, rp.SECTION_KEY_METRICS])
    md = render(report, rp.FORMAT_MARKDOWN).content
    assert re.findall(r"^## (.+)$", md, flags=re.MULTILINE) == ["Funnel", "Key metrics"]
    root = parse_html(html_of(report))
    ids = [e.get("id") for e in root.iter() if (e.get("id") or "").startswith("section-")]
    assert ids == ["section-funnel", "section-key_metrics"]
    slack = render_slack(report)
    assert "*Key metrics*" in slack and "Alignment" not in slack


def test_a_section_that_could_not_be_gathered_shows_why() -> None:
    report = sample_report()
    report.ClearField("funnel")
    report.errors.add(section=rp.SECTION_FUNNEL, message="metrics: UNAVAILABLE connection refused")
    md = render(report, rp.FORMAT_MARKDOWN).content
    funnel = markdown_sections(md)["Funnel"]
    assert "> **Not available:** metrics: UNAVAILABLE connection refused" in funnel
    root = parse_html(html_of(report))
    section = next(e for e in root.iter() if e.get("id") == "section-funnel")
    assert "Not available. metrics: UNAVAILABLE connection refused" in "".join(section.itertext())
    assert "ns-funnel" not in html_of(report)
    slack = render_slack(report)
    assert "*Funnel*: not available (metrics: UNAVAILABLE connection refused)" in slack


def test_an_error_for_a_section_not_asked_for_is_still_shown() -> None:
    report = sample_report()
    report.errors.add(section=rp.SECTION_UNSPECIFIED, message="gathering: deadline")
    md = render(report, rp.FORMAT_MARKDOWN).content
    assert "## Notes" in md and "gathering: deadline" in md
    assert "gathering: deadline" in html_of(report)


def test_an_empty_section_says_so() -> None:
    report = rp.Report()
    report.summary.title = "Daily"
    report.sections.extend(WEEKLY_SECTIONS)
    md = render(report, rp.FORMAT_MARKDOWN).content
    assert "No alert fired or resolved in the period." in md
    assert "No key metrics for this period." in md
    assert "No funnel steps." in md
    parse_html(html_of(report))
    assert render_slack(report).startswith("*Daily*")


def test_markdown_escapes_data_so_it_stays_text() -> None:
    md = render(hostile_report(), rp.FORMAT_MARKDOWN).content
    prose = re.sub(r"(`+).*?\1", "", md)  # code spans are literal in every Markdown
    assert "<script>" not in prose and "<b>" not in prose
    assert r"""\<script\>alert('x')\</script\> "q" \& 'a' \<b\>bold\</b\> ünï 🚀 עברית""" in md
    assert "`k<&>`" in md  # identifiers are code spans, literal everywhere
    # No data-borne pipe splits a table row: every row has its header's cell count.
    for block in re.findall(r"(?:^\|.*\|$\n?)+", md, flags=re.MULTILINE):
        rows = block.strip().splitlines()
        assert len({len(re.findall(r"(?<!\\)\|", row)) for row in rows}) == 1, rows


# ---------------------------------------------------------------------------- HTML


def test_html_is_a_well_formed_standalone_page() -> None:
    out = render(sample_report(), rp.FORMAT_HTML)
    assert out.content_type == "text/html; charset=utf-8"
    root = parse_html(out.content)
    assert root.find("head/meta[@charset='utf-8']") is not None
    assert [e.tag for e in root.iter() if e.tag in ("script", "link", "img", "iframe")] == []
    for e in root.iter():
        for name, value in e.attrib.items():
            assert name.split("}")[-1] not in ("src", "href", "srcset", "action"), (e.tag, name)
            assert "url(" not in value, (e.tag, name)
            assert not name.startswith("on"), (e.tag, name)
    style = "".join(e.text or "" for e in root.iter("style"))
    assert "@import" not in style and "url(" not in style and "http" not in style


def test_html_escapes_every_string_from_the_data() -> None:
    content = html_of(hostile_report())
    root = parse_html(content)
    assert [e for e in root.iter() if e.tag in ("script", "b")] == []
    assert "<script>" not in content and "<b>bold" not in content
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &#34;q&#34; &amp; &#39;a&#39;"
    assert escaped in content
    text = "".join(root.itertext())
    assert HOSTILE in text  # shown as it is, in text
    assert "ünï 🚀 עברית \u202eRTL" in content
    # Attributes too: the sparkline's label carries the metric's label.
    labels = [e.get("aria-label", "") for e in root.iter()]
    assert any(HOSTILE in x for x in labels)
    for svg in svgs(content):
        assert svg.tag == f"{SVG_NS}svg"


def test_each_chart_is_valid_svg_with_a_title_and_geometry() -> None:
    content = html_of(sample_report())
    charts = svgs(content)
    classes = [c.get("class", "") for c in charts]
    assert classes.count("ns-chart ns-sparkline") == 6
    assert classes.count("ns-chart ns-gauge") == 1
    assert classes.count("ns-chart ns-funnel") == 1
    for chart in charts:
        first = next(iter(chart))
        assert first.tag == f"{SVG_NS}title" and (first.text or "").strip()
        _, _, w, h = (float(x) for x in chart.get("viewBox", "").split())
        drawn = [e for e in chart.iter() if e.tag in (f"{SVG_NS}path", f"{SVG_NS}rect")]
        assert drawn, chart.get("class")
        for e in chart.iter():
            for name in ("x", "y", "cx", "cy", "width", "x1", "x2", "y1", "y2"):
                if name in e.attrib and not e.attrib[name].endswith("%"):
                    v = float(e.attrib[name])
                    assert 0 <= v <= max(w, h), (chart.get("class"), e.tag, name, v)
            d = e.get("d", "")
            assert "nan" not in d.lower() and "inf" not in d.lower()
    spark_titles = [next(iter(c)).text or "" for c in charts if "sparkline" in c.get("class", "")]
    assert spark_titles[1].startswith("Signups, 2026-10-05 to 2026-11-23: 412, 455,")


def test_every_number_is_also_text_outside_the_charts() -> None:
    text = text_outside_svg(parse_html(html_of(sample_report())))
    for number in [
        "3,787.1", "▲ +12.7%", "202,645.00", "was 199,300.00", "412 – 561",  # key metrics
        "81.7 / 100", "On track",  # the gauge's score and status
        "10.8%", "Warning", "4.6×",  # KPIs
        "4.5 pts", "6.8 pp",  # actions
        "0.031", "Fired 3",  # alerts
        "+10.6%", "4,810",  # experiments
        "100.0%", "46.0%", "3,837",  # retention
        "3,435", "2,199", "64.0%", "16.3%", "Overall conversion 6.2%",  # funnel
        "1,284,310", "95.3 / 100",  # quality
    ]:  # fmt: skip
        assert number in text, number


def test_retention_cells_are_shaded_by_value_and_blank_when_immature() -> None:
    root = parse_html(html_of(sample_report()))
    table = next(e for e in root.iter("table") if "ns-heat" in (e.get("class") or ""))
    rows = table.findall(".//tr")
    newest = rows[8].findall("td")  # header, seven older cohorts, then the newest
    assert newest[0].text == "2026-11-23"
    assert [c.text for c in newest[2:]] == ["100.0%", *([None] * 7)]
    assert newest[3].get("bgcolor") == "#ffffff"
    shades = {c.get("bgcolor") for c in rows[1].findall("td")[2:]}
    assert len(shades) > 3  # different values, different shades


# ---------------------------------------------------------------------------- email, Slack


def test_the_email_is_the_page_with_the_markdown_as_its_text_part() -> None:
    report = sample_report()
    parts = render_email(report)
    assert isinstance(parts, EmailParts)
    assert parts.subject == "Weekly business report — Mon 23 Nov 2026 – Sun 29 Nov 2026"
    assert parts.text == render(report, rp.FORMAT_MARKDOWN).content
    assert parts.html == render(report, rp.FORMAT_HTML).content
    report.summary.title = "Line\r\nBcc: x@example.com"
    assert "\n" not in render_email(report).subject and "\r" not in render_email(report).subject


def test_slack_summary_has_the_headlines() -> None:
    out = render_slack(sample_report())
    lines = out.splitlines()
    assert lines[0] == "*Weekly business report*"
    assert lines[1] == "Weekly report · Mon 23 Nov 2026 – Sun 29 Nov 2026 (Europe/Paris)"
    assert "• Signups: *561* (▲ +12.7%)" in lines
    assert "*Alignment*: *81.7* / 100, On track" in lines
    assert "1. `mrr_growth_mom` (4.5 pts): Prompt teams near their run quota to upgrade" in lines
    assert "*Alerts*: 3 fired, 2 resolved, 1 still firing" in lines
    assert sum(1 for x in lines if re.match(r"\d\. `", x)) == 3


def test_slack_escapes_ampersand_and_angle_brackets() -> None:
    out = render_slack(hostile_report())
    assert "<" not in out and ">" not in out
    assert "&lt;script&gt;alert('x')&lt;/script&gt; \"q\" &amp; 'a'" in out
    assert "&amp;lt;" not in out  # escaped once


def test_an_experiment_row_carries_its_warnings_and_its_engine_evidence() -> None:
    report = sample_report()
    running = report.experiments.running
    running[0].results.srm.mismatch = True
    running[0].results.srm.p_value = 0.0004
    md = markdown_sections(render(report, rp.FORMAT_MARKDOWN).content)["Experiments"]
    assert "Ship: checklist — ⚠ Sample ratio mismatch (p = 0.0004)" in md
    assert "| +4.8% (-21.0% to +33.0%) | 61% to win | Keep running |" in md  # Bayesian
    assert "| — | — | — | — | Winner: autosave — ⚠ No results: experiments: DEADLINE" in md
    html = html_of(report)
    assert "⚠ Sample ratio mismatch (p = 0.0004)" in html


def test_identifiers_with_backticks_and_pipes_stay_one_code_span_in_one_cell() -> None:
    report = sample_report()
    report.funnel.funnel.overall.steps[0].event = "a`b|c"
    md = markdown_sections(render(report, rp.FORMAT_MARKDOWN).content)["Funnel"]
    assert "| 1 | ``a`b¦c`` | 3,435 |" in md


def test_right_to_left_data_is_isolated_in_every_rendering() -> None:
    report = hostile_report()
    html = html_of(report)
    assert "\u2068DAU &lt;script&gt;" in html and "RTL\u2069" in html
    slack = render_slack(report)
    assert "\u2068DAU &lt;script&gt;" in slack
    md = render(report, rp.FORMAT_MARKDOWN).content
    assert "\u2068DAU \\<script\\>" in md
    # Left-to-right data is left as it is.
    plain = render(sample_report(), rp.FORMAT_MARKDOWN).content
    assert "\u2068" not in plain and "\u2068" not in html_of(sample_report())
    # An identifier in a code span is isolated too (code spans are literal).
    report.funnel.funnel.overall.steps[0].event = "הרשמה"
    funnel = markdown_sections(render(report, rp.FORMAT_MARKDOWN).content)["Funnel"]
    assert "| 1 | \u2068`הרשמה`\u2069 | 3,435 |" in funnel
