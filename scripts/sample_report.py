"""Render the sample weekly report and photograph it for the README (make report-sample).

Writes docs/report-sample.html (not committed) and docs/report-sample.png: the HTML
rendering of northstar_reports.domain.render.sample at email width, in the machine's
Chromium (`make setup` installs it), with nothing fetched from the network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from northstar.reports.v1 import reports_pb2
from northstar_reports.domain.render import render
from northstar_reports.domain.render.sample import sample_report

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")


def main() -> int:
    """Render, open, screenshot; the PNG's path is printed on success."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report-sample.png")
    parser.add_argument("--width", type=int, default=688, help="viewport width in CSS px")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.stderr.write(f"{CHROMIUM} is missing: run `make setup` first\n")
        return 1
    html = render(sample_report(), reports_pb2.FORMAT_HTML).content
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_file = Path(tmp) / "report.html"
        page_file.write_text(html, encoding="utf-8")
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(
            viewport={"width": args.width, "height": 900}, device_scale_factor=1
        )
        page.route(
            "**/*",
            lambda route: (
                route.continue_() if route.request.url.startswith("file:") else route.abort()
            ),
        )
        page.goto(page_file.as_uri())
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    sys.stdout.write(f"{args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
