"""Reference photos and the subset selector on the identification page (issue 20), in a real browser
(Debian's headless Chromium driven by Playwright, a real uvicorn server): under each proposed class, its
training photos most like the query, loaded from this server under the strict CSP (the opened() pages fail
on console or CSP errors)."""

from __future__ import annotations

import json

import pytest

from snapid.config import Settings
from tests.helpers import free_port, live_server
from tests.serve.conftest import RED, coloured
from tests.serve.reference_bundle import make_reference_bundle
from tests.serve.test_dashboard_browser import WAIT_MS, browser, until  # noqa: F401  (browser: a fixture)


@pytest.fixture
def site(home, tmp_path):
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0, public_url=f"http://127.0.0.1:{port}")
    subsets = {"subsets.json": json.dumps({"subsets": {"warm colours": ["red", "green"]}}).encode()}
    bundle = make_reference_bundle(tmp_path / "bundles" / "colours", extra=subsets)
    with live_server(settings, bundle, port=port) as base:
        yield base


def test_each_proposed_class_shows_its_nearest_reference_photos(site, opened):
    page = opened()
    page.goto(site + "/")
    page.set_input_files("#file-input", [{"name": "red.jpg", "mimeType": "image/jpeg",
                                          "buffer": coloured(RED, size=(320, 240))}])
    page.wait_for_selector("#answers .scores li .refs img", timeout=WAIT_MS)
    rows = page.locator("#answers .scores li")
    assert rows.count() == 3
    assert sorted(rows.nth(i).locator(".refs img").count() for i in range(3)) == [2, 3, 3]  # blue has 2 photos
    first = rows.nth(0).locator(".refs")
    assert first.get_attribute("aria-label") == "Training photos of Red thing most like yours"
    src = first.locator("img").first.get_attribute("src")
    assert src.startswith("/api/v1/references/")
    assert "Red thing" in first.locator("img").first.get_attribute("alt")
    # the thumbnails really loaded (not broken images), under the page's CSP
    until(page, "[...document.querySelectorAll('#answers .refs img')].every((i) => i.complete && i.naturalWidth > 0)")


def test_the_subset_selector_answers_among_the_chosen_classes(site, opened):
    page = opened()
    page.goto(site + "/")
    page.wait_for_selector("#subset-option:not([hidden])", timeout=WAIT_MS)
    assert page.locator("#subset option").all_text_contents() == ["all classes", "warm colours"]
    # the consent box says what happens to unsure photos (issue 20: the review queue the model fills)
    assert "unsure" in page.locator("#consent-hint").text_content()
    page.select_option("#subset", "warm colours")
    page.set_input_files("#file-input", [{"name": "red.jpg", "mimeType": "image/jpeg",
                                          "buffer": coloured(RED, size=(320, 240))}])
    page.wait_for_selector("#answers .scores li", timeout=WAIT_MS)
    assert page.locator("#answers .scores li .name").all_text_contents() == ["Red thing", "Green thing"]
