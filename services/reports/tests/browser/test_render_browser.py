"""The HTML rendering in a real headless Chromium: it loads with no error and fetches
nothing, every chart is drawn, and the email part shows the same with images turned off.

Needs Debian's chromium at /usr/bin/chromium (`make setup` installs it); with
NORTHSTAR_SKIP_BROWSER=1 the tests are skipped instead of failing without it. The
screenshots land in test-artifacts/ (NORTHSTAR_TEST_ARTIFACTS to change), their paths
logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from northstar.reports.v1 import reports_pb2 as rp
from northstar_reports.domain.render import render, render_email
from northstar_reports.domain.render.sample import sample_report

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[4]
EMAIL_WIDTH = 680  # the 640 px page and its margins
NUMBERS = ["3,787.1", "+12.7%", "202,645.00", "81.7", "On track", "6.8 pp", "4,810",
           "46.0%", "2,199", "64.0%", "16.3%", "1,284,310", "95.3 / 100"]  # fmt: skip
PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
CHARTS = {"ns-sparkline": 6, "ns-gauge": 1, "ns-funnel": 1}
log = logging.getLogger(__name__)


def artifacts() -> Path:
    out = Path(os.environ.get("NORTHSTAR_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        if os.environ.get("NORTHSTAR_SKIP_BROWSER") == "1":
            pytest.skip(f"{CHROMIUM} missing and NORTHSTAR_SKIP_BROWSER=1")
        pytest.fail(
            f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium; CI does),"
            " or set NORTHSTAR_SKIP_BROWSER=1 to skip the browser tests"
        )
    with sync_playwright() as p:
        yield p


def launch(p: Playwright, *args: str) -> Browser:
    return p.chromium.launch(executable_path=str(CHROMIUM), args=list(args))


class Visit:
    """A page opened from a file, with every console error, page error and request seen."""

    def __init__(self, browser: Browser, html: str, name: str) -> None:
        path = artifacts() / f"{name}.html"
        path.write_text(html, encoding="utf-8")
        self.url = path.as_uri()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.page: Page = browser.new_page(viewport={"width": EMAIL_WIDTH, "height": 900})
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.url, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.errors.append(f"console {msg.type}: {msg.text}")

    def screenshot(self, name: str) -> Path:
        path = artifacts() / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        log.info("screenshot: %s", path)
        return path


def charts(page: Page) -> list[dict[str, Any]]:
    """Each chart's class, box on the page and drawn shapes with a non-empty box."""
    return page.evaluate(
        """() => [...document.querySelectorAll('svg.ns-chart')].map(svg => {
            const r = svg.getBoundingClientRect();
            const shapes = [...svg.querySelectorAll('path, rect, circle, line')]
                .map(e => e.getBBox())
                .filter(b => b.width > 0 || b.height > 0).length;
            const title = svg.querySelector(':scope > title');
            return {cls: svg.getAttribute('class'), width: r.width, height: r.height,
                    visible: r.width > 0 && r.height > 0 &&
                             getComputedStyle(svg).visibility !== 'hidden',
                    shapes, title: title ? title.textContent : ''};
        })"""
    )


def assert_charts_drawn(page: Page) -> None:
    found = charts(page)
    for cls, n in CHARTS.items():
        assert sum(1 for c in found if cls in c["cls"]) == n, (cls, found)
    for c in found:
        assert c["visible"], c
        assert c["shapes"] > 0, c
        assert c["title"].strip(), c


def image_loads(page: Page) -> bool:
    """Whether this browser loads an (inline, 1×1) image at all."""
    page.set_content(f'<img id="probe" src="{PIXEL}">')
    page.wait_for_load_state("load")
    return bool(page.evaluate("document.getElementById('probe').naturalWidth === 1"))


def test_the_page_loads_clean_fetches_nothing_and_draws_every_chart(
    playwright: Playwright,
) -> None:
    browser = launch(playwright)
    try:
        visit = Visit(browser, render(sample_report(), rp.FORMAT_HTML).content, "report")
        shot = visit.screenshot("report")
        assert visit.errors == []
        assert visit.failed == []
        assert visit.requests == [visit.url]  # the page itself, nothing else
        assert_charts_drawn(visit.page)
        width = visit.page.evaluate("document.documentElement.scrollWidth")
        assert width <= EMAIL_WIDTH  # readable at email width, no sideways scrolling
        text = visit.page.inner_text("body")
        for n in NUMBERS:
            assert n in text, n
        assert shot.stat().st_size > 10_000
    finally:
        browser.close()


def test_the_email_part_shows_the_same_charts_and_numbers_with_images_off(
    playwright: Playwright,
) -> None:
    browser = launch(playwright, "--blink-settings=imagesEnabled=false")
    try:
        html = render_email(sample_report()).html
        visit = Visit(browser, html, "report-email-no-images")
        visit.screenshot("report-email-no-images")
        assert visit.errors == []
        assert visit.requests == [visit.url]
        assert_charts_drawn(visit.page)
        text = visit.page.inner_text("body")
        for n in NUMBERS:
            assert n in text, n
        assert not image_loads(visit.page)  # the setting is in force
    finally:
        browser.close()


def test_images_load_when_not_turned_off(playwright: Playwright) -> None:
    """The control of the test above: the same probe sees an image load normally."""
    browser = launch(playwright)
    try:
        assert image_loads(browser.new_page())
    finally:
        browser.close()


def test_a_hostile_report_runs_no_script_and_keeps_its_width(playwright: Playwright) -> None:
    report = sample_report()
    report.retention.retention.cohorts[0].cohort_start = "x" * 300  # one long word
    report.errors.add(section=rp.SECTION_FUNNEL, message="metrics: " + "y" * 400)
    report.summary.title = "<script>window.__pwned = 1</script><img src=x onerror=window.__pwned=2>"
    report.key_metrics.metrics[0].label = '"><svg onload="window.__pwned=3">'
    browser = launch(playwright)
    try:
        visit = Visit(browser, render(report, rp.FORMAT_HTML).content, "report-hostile")
        assert visit.page.evaluate("window.__pwned === undefined")
        assert visit.requests == [visit.url]
        assert visit.page.title().startswith("<script>")  # shown as text
        visit.screenshot("report-hostile")
        assert visit.page.evaluate("document.documentElement.scrollWidth") <= EMAIL_WIDTH
    finally:
        browser.close()
