"""Opening a Snakemake HTML report in Debian's Chromium through Playwright.

Playwright comes from PyPI (pinned in requirements.lock) and drives the system
``/usr/bin/chromium``; it never downloads a browser of its own. The Makefile's
``browser`` target installs Chromium with apt-get; the ``chromium`` fixture
skips the browser tests when it is missing, and fails them in CI.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DATA_URI = re.compile(r"data:([\w.+/-]+)((?:;[\w.+-]+=[^;,\"']*)*);base64,([A-Za-z0-9+/=]+)")
REPORT_ITEM = re.compile(r"\b(report|faces_in_report)\(\s*\"([^\"]+)\"")


def declared_results(show_faces: bool, workdir: Path) -> set[str]:
    """Paths the rule files mark for the report that the run in ``workdir`` made.

    Face items count only when ``show_faces``; items of optional targets
    outside ``all`` (e.g. the power study) only where their file exists.
    """
    declared = set()
    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for kind, path in REPORT_ITEM.findall(rules.read_text(encoding="utf-8")):
            if (kind == "report" or show_faces) and (workdir / path).exists():
                declared.add(path)
    return declared


def embedded_payloads(text: str) -> dict[str, str]:
    """sha256 -> mime type of every base64 data URI in ``text``, recursing into embedded HTML/SVG."""
    found: dict[str, str] = {}
    for mime, _, payload in DATA_URI.findall(text):
        data = base64.b64decode(payload + "=" * (-len(payload) % 4))
        digest = hashlib.sha256(data).hexdigest()
        if digest in found:
            continue
        found[digest] = mime
        if mime in ("text/html", "image/svg+xml"):
            found.update(embedded_payloads(data.decode("utf-8", errors="replace")))
    return found


def file_hashes(paths) -> dict[str, str]:
    """sha256 -> path of files."""
    return {hashlib.sha256(Path(path).read_bytes()).hexdigest(): str(path) for path in paths}


def normalise(text: str) -> str:
    """Lower case with runs of white space as one space (for text comparisons)."""
    return re.sub(r"\s+", " ", text).strip().lower()


@dataclass
class Visit:
    """What a browser saw of a report: listed results per category, page texts, errors."""

    landing: str = ""
    categories: list[str] = field(default_factory=list)
    listed: dict[str, list[str]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


def visit_report(report: Path, screenshots: Path, chromium: Path) -> Visit:
    """Open ``report``, click every category and every result in it, and record what showed.

    The landing page's text is kept (``landing``). For an HTML result the
    text of its frame is kept (``texts[path]``); an
    image result must have loaded (natural width > 0). Requests that leave the
    file (http/https) are blocked and recorded. One screenshot per result.
    """
    from playwright.sync_api import sync_playwright

    visit = Visit()
    screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})

            def block(route) -> None:
                visit.requests.append(route.request.url)
                route.abort()

            context.route(re.compile(r"^https?://"), block)
            page = context.new_page()
            page.on("pageerror", lambda error: visit.page_errors.append(str(error)))
            page.on(
                "console",
                lambda message: message.type == "error" and visit.console_errors.append(message.text),
            )
            page.goto(report.resolve().as_uri())
            page.wait_for_selector("nav")
            page.locator(".prose").first.wait_for()
            visit.landing = page.locator(".prose").first.inner_text()
            shot = screenshots / "landing.png"
            page.screenshot(path=str(shot))
            visit.screenshots.append(shot)
            visit.categories = page.evaluate("Object.keys(categories).sort((a, b) => a.localeCompare(b))")
            for number, category in enumerate(visit.categories):
                page.evaluate("app.setView({navbarMode: 'menu'})")
                page.locator("nav li", has_text=category).first.click()
                rows = page.locator("nav tr", has_text="results/")
                rows.first.wait_for()
                listed = [rows.nth(i).locator("td").first.inner_text().strip() for i in range(rows.count())]
                visit.listed[category] = listed
                for index, path in enumerate(listed):
                    page.locator("nav tr", has_text=path).first.locator("a").first.click()
                    if path.endswith(".html"):
                        frame = page.frame_locator("iframe").first
                        frame.locator("h1").first.wait_for()
                        visit.texts[path] = frame.locator("body").inner_text()
                    else:
                        image = page.locator("img[src^='data:image']").last
                        image.wait_for()
                        assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) > 0, path
                    shot = screenshots / f"{number:02d}_{index:02d}_{Path(path).stem}.png"
                    page.screenshot(path=str(shot))
                    visit.screenshots.append(shot)
        finally:
            browser.close()
    return visit
