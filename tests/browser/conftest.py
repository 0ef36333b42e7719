"""Real headless Chromium (Debian's) driven by Playwright for Python.

Every page opened through `card` blocks and counts any request other than
the card's own file, and collects console errors, page errors and dialogs;
the fixture fails the test if any of them happened.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    # imported here, not at the top: the other test folders collect this
    # conftest on interpreters that have no playwright (-m "not browser")
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


@pytest.fixture(scope="session")
def shot_dir(tmp_path_factory):
    d = os.environ.get("MFP_SCREENSHOT_DIR")
    path = Path(d) if d else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Card:
    """One page showing one card, with what it did on the side."""

    def __init__(self, page, url):
        self.page = page
        self.url = url
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def state(self) -> dict:
        return self.page.evaluate("window.__mfp.state()")

    def wait_search(self, query: str, timeout_s: float = 20.0) -> str:
        """Wait until the (debounced, sliced) search for `query` is done;
        the match line's text. Polls from Python: the CSP forbids the eval
        behind wait_for_function."""
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.state()
            if st.get("query") == query and not st.get("searching"):
                return self.page.locator("#mfp-match").inner_text()
            if time.monotonic() > deadline:
                raise AssertionError(f"search for {query!r} not done after {timeout_s} s: {st}")
            time.sleep(0.02)

    def search(self, query: str) -> str:
        self.page.locator("#mfp-search").fill(query)
        return self.wait_search(query)

    def boxes(self) -> list[dict]:
        return self.page.evaluate("window.__mfp.boxes()")

    def box(self, name: str) -> dict:
        for b in self.boxes():
            if b["name"] == name:
                return b
        raise AssertionError(f"no box named {name!r}")

    def click_box(self, name: str) -> None:
        b = self.box(name)
        canvas = self.page.locator("#mfp-panel-flame canvas.flame-canvas")
        canvas.click(position={"x": b["x"] + min(b["w"] / 2, 20), "y": b["depth"] * 18 + 9})

    def hover_box(self, name: str) -> None:
        b = self.box(name)
        canvas = self.page.locator("#mfp-panel-flame canvas.flame-canvas")
        canvas.hover(position={"x": b["x"] + min(b["w"] / 2, 20), "y": b["depth"] * 18 + 9})


@pytest.fixture
def card(browser, tmp_path):
    pages: list[Card] = []

    def open_card(html: str, *, scheme: str = "light", width: int = 1280, name="card.html"):
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        url = path.as_uri()
        ctx = browser.new_context(
            viewport={"width": width, "height": 900}, color_scheme=scheme, device_scale_factor=1
        )
        page = ctx.new_page()
        c = Card(page, url)

        def route(r):
            if r.request.url == url:
                r.continue_()
            else:
                c.blocked.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("request", lambda req: None if req.url == url else c.blocked.append(req.url))
        page.on("console", lambda m: c.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: c.errors.append(str(e)))

        def on_dialog(d):
            c.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", on_dialog)
        page.goto(url)
        # the card's CSP forbids eval, so wait on an attribute, not a JS predicate
        page.wait_for_selector("html[data-mfp-ready]", state="attached", timeout=15000)
        # and what it draws after the first frame (SAMPLES of a big profile)
        page.wait_for_selector("html[data-mfp-complete]", state="attached", timeout=15000)
        pages.append(c)
        return c

    yield open_card
    for c in pages:
        try:
            assert c.errors == [], f"console/page errors: {c.errors}"
            assert c.blocked == [], f"network requests: {c.blocked}"
            assert c.dialogs == [], f"dialogs fired: {c.dialogs}"
        finally:
            c.page.context.close()
