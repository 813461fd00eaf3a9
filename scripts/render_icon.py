"""Renders limen's icon (src/limen/web/static/img/limen.svg) to the PNG the pages name as their favicon:
``.venv/bin/python scripts/render_icon.py`` after changing the SVG, then commit both.

Why a PNG beside the SVG: Chromium decodes a page's favicon in the page's renderer, on its main thread, and an
SVG one needs a whole SVG document made for it: 2-10 ms, measured on the console page right before
DOMContentLoaded (bench/RESULTS.md, round 11). A 32x32 PNG decodes in a fraction of a millisecond.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from playwright.sync_api import sync_playwright
from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "src/limen/web/static/img/limen.svg"
ICON_SIZE = 32
TARGET = REPO / f"src/limen/web/static/img/limen-{ICON_SIZE}.png"


def main() -> int:
    svg = base64.b64encode(SOURCE.read_bytes()).decode()
    page_html = (f'<html><body style="margin:0;background:transparent">'
                 f'<img src="data:image/svg+xml;base64,{svg}" '
                 f'width="{ICON_SIZE}" height="{ICON_SIZE}" style="display:block"></body></html>')
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": ICON_SIZE, "height": ICON_SIZE})
        page.set_content(page_html)
        page.locator("img").wait_for()
        TARGET.write_bytes(page.screenshot(omit_background=True, clip={
            "x": 0, "y": 0, "width": ICON_SIZE, "height": ICON_SIZE}))
        browser.close()
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
