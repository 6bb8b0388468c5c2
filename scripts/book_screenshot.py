"""Screenshot of a page of the built book with the system chromium (for the README).

Usage: python scripts/book_screenshot.py reports/book/html/ledger.html docs/img/ledger.png
"""

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(page_path: str, out: str, width: int = 1200, height: int = 900) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(Path(page_path).resolve().as_uri())
        page.wait_for_timeout(1500)  # MathJax
        page.screenshot(path=out, full_page=False)
        browser.close()
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
