"""The page's "Why?" toggle in a real browser (issue 19): with a bundle whose graph gives class activation maps, the
answer's heatmap is drawn on a canvas from the JSON grid (no image URL, so the CSP stays as strict as it is) and laid
over the square of the photo the model saw; unchecking hides it. Debian's headless Chromium driven by Playwright,
against a real uvicorn server, failing on console or CSP errors (the `opened` fixture)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from snapid.config import Settings
from snapid.export.bundle import write_bundle
from tests.conftest import encode
from tests.helpers import free_port, live_server
from tests.serve.conftest import RED, bundle_files
from tests.serve.test_dashboard_browser import WAIT_MS, browser, until  # noqa: F401  (browser: a fixture)
from tests.serve.test_predict_explain import EXPLAIN, cam_onnx
from tests.webapp.conftest import KNOWLEDGE


def wide_photo(row: int, col: int) -> dict:
    """96 x 64, grey and noisy, a red square filling cell (row, col) of the 4 x 4 grid over the centred 64 x 64
    square the model sees (resize=crop): the map must be placed over that square, not over the whole photo."""
    rng = np.random.default_rng(row * 4 + col)
    arr = np.clip(128 + rng.integers(-25, 25, (64, 96, 3)), 0, 255).astype(np.uint8)
    left = (96 - 64) // 2
    arr[row * 16:(row + 1) * 16, left + col * 16:left + (col + 1) * 16] = RED
    return {"name": "wide.png", "mimeType": "image/png", "buffer": encode(Image.fromarray(arr), "PNG")}


@pytest.fixture
def site(home, tmp_path):
    files = bundle_files(model=cam_onnx())
    files["knowledge.json"] = json.dumps(KNOWLEDGE, ensure_ascii=False).encode()
    path = tmp_path / "bundles" / "colours"
    write_bundle(path, files, info={"name": "colours", "version": "1", "explain": EXPLAIN})
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0, public_url=f"http://127.0.0.1:{port}")
    with live_server(settings, path, port=port) as base:
        yield base


BRIGHTEST = """() => {
  const c = document.querySelector('#answers .why-frame canvas.heat');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let best = -1, at = -1;
  for (let i = 0; i < c.width * c.height; i++) if (d[4 * i + 3] > best) { best = d[4 * i + 3]; at = i; }
  return [Math.floor(at / c.width), at % c.width, c.width, c.height];
}"""


def test_why_overlays_the_heatmap_on_the_photo_and_hides_it_again(site, opened):
    page = opened()
    page.goto(site + "/")
    until(page, "!document.getElementById('why-option').hidden")  # GET /api/v1/model said explain: true
    page.check("#why")
    with page.expect_request(lambda r: "/api/v1/predict" in r.url) as asked:
        page.set_input_files("#file-input", [wide_photo(2, 1)])
    assert "explain=true" in asked.value.url
    page.wait_for_selector("#answers .why-frame canvas.heat", timeout=WAIT_MS)
    assert page.locator("#answers .best").text_content() == "Red pill"
    frame = page.locator("#answers .why-frame")
    assert frame.get_attribute("data-peak") == "2,1"
    row, col, width, height = page.evaluate(BRIGHTEST)
    assert (width, height) == (4, 4) and (row, col) == (2, 1)  # the strongest cell drawn where the red square is
    canvas = page.locator("#answers canvas.heat")
    assert "Where the model looked for Red pill" in canvas.get_attribute("aria-label")
    until(page, "document.querySelector('#answers .why-frame img').complete")
    img_box, heat_box = page.locator("#answers .why-frame img").bounding_box(), canvas.bounding_box()
    # the centred square of a 3:2 photo: a third narrower than the photo, starting a sixth in, full height
    assert heat_box["width"] == pytest.approx(img_box["width"] * 2 / 3, abs=1.5)
    assert heat_box["x"] - img_box["x"] == pytest.approx(img_box["width"] / 6, abs=1.5)
    assert heat_box["height"] == pytest.approx(img_box["height"], abs=1.5) and heat_box["y"] == pytest.approx(
        img_box["y"], abs=1.5)
    assert canvas.is_visible()

    page.uncheck("#why")
    assert canvas.is_hidden()
    page.check("#why")
    assert canvas.is_visible()


def test_the_toggle_asks_again_when_the_answer_on_screen_has_no_heatmap(site, opened):
    page = opened()
    page.goto(site + "/")
    until(page, "!document.getElementById('why-option').hidden")
    page.set_input_files("#file-input", [wide_photo(0, 3)])
    page.wait_for_selector("#answers article.answer", timeout=WAIT_MS)
    assert page.locator("#answers canvas.heat").count() == 0
    page.check("#why")
    page.wait_for_selector("#answers .why-frame canvas.heat", timeout=WAIT_MS)
    assert page.locator("#answers .why-frame").get_attribute("data-peak") == "0,3"


def test_the_toggle_is_hidden_when_the_bundle_cannot_explain(home, kbundle, opened):
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0, public_url=f"http://127.0.0.1:{port}")
    with live_server(settings, kbundle, port=port) as base:
        page = opened()
        page.goto(base + "/")
        until(page, "document.getElementById('model-line').textContent.includes('colours')")
        assert page.locator("#why-option").is_hidden()
