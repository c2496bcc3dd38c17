"""The page says when photos sent with consent were not kept because the server's photo store is full
(the answer's kept: quota_full), in a real browser (see test_page_browser.py)."""

from __future__ import annotations

import pytest

from snapid.config import Settings
from tests.helpers import free_port, live_server
from tests.serve.conftest import RED
from tests.serve.test_dashboard_browser import WAIT_MS, browser, until  # noqa: F401  (browser: a fixture)
from tests.webapp.test_page_browser import photo


@pytest.fixture
def full_site(home, kbundle):
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0, public_url=f"http://127.0.0.1:{port}", photo_quota_bytes=1)
    with live_server(settings, kbundle, port=port) as base:
        yield base


def test_consent_with_a_full_store_answers_and_says_the_photo_was_not_kept(full_site, opened):
    page = opened()
    page.goto(full_site + "/")
    page.check("#consent")
    page.set_input_files("#file-input", [photo("red.jpg", RED)])
    page.wait_for_selector("#answers article.answer", timeout=WAIT_MS)
    assert page.locator("#answers .best").text_content() == "Red pill"
    until(page, "document.getElementById('give-msg').textContent.includes('not kept')")
