"""The page draws the detected boxes over the photo and lists the objects (headless Chromium, real
uvicorn on 127.0.0.1; console errors such as CSP violations fail the test)."""

from __future__ import annotations

import pytest

from snapid.config import Settings
from tests.detect_serve.conftest import squares_photo
from tests.detect_serve.test_two_stage import detector_bundle
from tests.helpers import free_port, live_server
from tests.serve.test_dashboard_browser import WAIT_MS, Page, browser  # noqa: F401  (browser: a fixture)


@pytest.fixture
def page(browser, home, tmp_path):  # noqa: F811
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0, public_url=f"http://127.0.0.1:{port}")
    with live_server(settings, detector_bundle(tmp_path / "bundles" / "det"), port=port) as base:
        opened = Page(browser, locale="en-US")
        opened.page.goto(base + "/")
        yield opened.page
        opened.close()


def test_detected_boxes_are_drawn_over_the_photo_and_listed(page):
    page.set_input_files("#file-input", [{"name": "p.png", "mimeType": "image/png", "buffer": squares_photo()}])
    page.wait_for_selector("#answers .detections .box", timeout=WAIT_MS)
    page.wait_for_function("document.querySelector('#answers .box').style.width !== ''", timeout=WAIT_MS)
    boxes = page.locator("#answers .detections .box")
    assert boxes.count() == 2
    assert boxes.locator(".box-label").all_text_contents() == ["1 Red pill", "2 Green pill"]
    image = page.locator("#answers .boxed img").bounding_box()
    first = boxes.first.bounding_box()
    scale = image["width"] / 200  # the photo is 200 x 120; the red square spans (20, 20)-(70, 70)
    assert first["x"] - image["x"] == pytest.approx(20 * scale, abs=1.5)
    assert first["width"] == pytest.approx(50 * scale, abs=1.5)
    assert page.locator("#answers article.answer").count() == 2
    assert page.locator("#answers article.answer .hint").first.text_content() == "Object 1"
    assert page.locator("#warnings .warning").count() == 1


def test_the_fallback_is_said_on_the_page(page):
    from PIL import Image

    from tests.conftest import encode

    page.set_input_files("#file-input", [{"name": "d.png", "mimeType": "image/png",
                                          "buffer": encode(Image.new("RGB", (80, 60)), "PNG")}])
    page.wait_for_selector("#answers .fallback", timeout=WAIT_MS)
    assert "whole photo" in page.locator("#answers .fallback").text_content()
    assert page.locator("#answers article.answer").count() == 1
