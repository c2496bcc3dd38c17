"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright (no browser download),
against a real uvicorn server on 127.0.0.1 and a temporary workspace.

Playwright's sync API runs in plain test functions (no asyncio fixtures); the server has its own thread and loop.
These tests fail, rather than skip, under CI=true when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from snapid.config import Settings
from snapid.track.db import transaction
from tests.helpers import live_server
from tests.serve.test_dashboard_api import HOSTILE, HOSTILE_IMG, T0, add_epoch, seed_run, write_eval

CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 10_000


def _need(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must provide this: {why} (see .ci/run)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    _need(CHROMIUM.exists(), f"{CHROMIUM} is not installed (Debian package `chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def server(home):
    """A real uvicorn server (dashboard only, no bundle) in a thread; yields its base URL."""
    with live_server(Settings(home=home.home), None) as base:
        yield base


def until(page, expression: str, timeout_s: float = WAIT_MS / 1000) -> None:
    """Poll a JS expression from outside the page: wait_for_function would need eval, which the CSP forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


class Page:
    """A browser page that refuses every request not addressed to 127.0.0.1 and records console errors."""

    def __init__(self, browser, **context):
        self.context = browser.new_context(**context)
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._only_loopback)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _only_loopback(self, route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def close(self):
        errors = list(self.errors)  # before closing: a stream cut by the close is not the page's error
        self.context.close()
        self.errors = errors
        assert self.outside == [], f"requests left 127.0.0.1: {self.outside}"
        assert self.errors == [], f"console errors (a CSP violation shows here): {self.errors}"


@pytest.fixture
def page(browser, server):  # needs the server, so the page closes before the server stops
    opened = Page(browser)
    yield opened.page
    opened.close()


def test_runs_page_lists_runs_with_a_csp_header(page, server, engine):
    seed_run(engine, "alpha", dataset="flowers", best=0.8)
    seed_run(engine, "beta", dataset="pills", status="running", best=0.5)
    response = page.goto(f"{server}/runs")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector("#runs tbody tr >> text=alpha", timeout=WAIT_MS)
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 2
    assert page.locator("#runs tbody tr[data-status=running] >> text=beta").count() == 1
    assert "2 runs" in page.locator("#count").text_content()
    # filter by dataset through the form: the list and the URL follow
    page.select_option("select[name=dataset]", "pills")
    until(page, "document.querySelectorAll('#runs tbody tr').length === 1")
    assert "dataset=pills" in page.url
    # sort with the keyboard: focus the Name header's button and press Enter
    page.locator("th[data-sort=name] button").focus()
    page.keyboard.press("Enter")
    until(page, "location.search.includes('sort=name')")


def test_a_training_run_shows_new_epochs_without_a_reload(page, server, engine):
    seed_run(engine, "live", status="running", epochs=2, best=0.4)
    page.goto(f"{server}/runs/live")
    until(page, "document.getElementById('epoch-count').textContent === '2'")
    assert "Live" in page.locator("#live").text_content()
    page.evaluate("window.__sameDocument = true")  # survives only if the page is never reloaded
    with transaction(engine) as s:
        add_epoch(s, "live", 2)
        add_epoch(s, "live", 3, is_best=True, best=0.45)
    until(page, "document.getElementById('epoch-count').textContent === '4'")
    assert page.evaluate("window.__sameDocument") is True
    label = page.locator("#chart-top1 svg").get_attribute("aria-label")
    assert "45" in label  # the top-1 chart now ends at epoch 3 (45 %)
    assert page.locator("#epochs tbody tr").count() == 4
    with transaction(engine) as s:
        from snapid.track import runs as track
        track.finish_run(s, name="live", status="completed")
    until(page, "document.getElementById('live').textContent.includes('completed')")


def test_hostile_names_and_labels_show_as_text(page, server, engine, tmp_path):
    run_dir = tmp_path / "runs" / "hostile"
    seed_run(engine, "plain-run", best=0.5)
    run_id = seed_run(engine, HOSTILE, dataset=HOSTILE_IMG, run_dir=str(run_dir), best=0.9,
                      created=T0 + timedelta(hours=1))
    write_eval(engine, HOSTILE, run_dir, [HOSTILE, HOSTILE_IMG, "plain"])
    page.goto(f"{server}/runs")
    page.wait_for_selector("#runs tbody tr >> text=plain-run", timeout=WAIT_MS)
    assert page.locator("#runs tbody th").first.text_content() == HOSTILE
    assert HOSTILE_IMG in page.locator("#runs tbody").text_content()
    page.locator("#runs tbody a", has_text="window.__pwned").click()  # the link goes by id: the name holds a '/'
    page.wait_for_url(f"**/runs/{run_id}", timeout=WAIT_MS)
    page.wait_for_selector("text=Per-class results", timeout=WAIT_MS)
    per_class = page.locator("#evaluation table", has_text="Per-class").text_content()
    assert HOSTILE in per_class and HOSTILE_IMG in per_class
    assert page.locator("#title .name").text_content() == HOSTILE
    assert HOSTILE in page.locator(".gallery figcaption").first.text_content()
    page.goto(f"{server}/runs/compare?names=plain-run")
    page.wait_for_selector("#summary table >> text=plain-run", timeout=WAIT_MS)
    for url in (f"{server}/runs", f"{server}/runs/{run_id}"):
        page.goto(url)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("img[src=x]").count() == 0
        assert page.evaluate("[...document.scripts].every(s => s.src.startsWith(location.origin + '/static/'))")


def test_narrow_screen_has_no_page_wide_horizontal_scroll(browser, server, engine, tmp_path):
    run_dir = tmp_path / "runs" / "narrow"
    name = "narrow-" + "x" * 80
    seed_run(engine, name, run_dir=str(run_dir), best=0.7)
    opened = Page(browser, viewport={"width": 360, "height": 740})
    try:
        for path in ("/runs", "/runs/1", f"/runs/compare?names={name}"):
            opened.page.goto(f"{server}{path}")
            opened.page.wait_for_load_state("networkidle")
            assert opened.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
    finally:
        opened.close()
