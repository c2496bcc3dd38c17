"""Rows valid now and places on a map (issue 21) in a real browser (Playwright + Debian's Chromium): tiles from
a stub tile server on 127.0.0.1 (the CSP's img-src names that origin and no other), then with no tile server
(the list with distances and a line of text instead of the map; nothing breaks), and the visitor's location
used only after a click. Every page refuses requests that leave 127.0.0.1."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from snapid.config import Settings
from tests.helpers import free_port, live_server
from tests.serve.conftest import RED, coloured
from tests.serve.test_dashboard_browser import WAIT_MS, browser, until  # noqa: F401  (browser: a fixture)
from tests.webapp.conftest import KNOWLEDGE, knowledge_bundle

PLACES = [
    {"category": "food", "lat": 37.5781, "lon": 126.9706, "names": {"en": "Tosokchon", "ko": "토속촌"},
     "addresses": {"en": "5 Jahamun-ro 5-gil"}, "link": "https://example.org/tosokchon"},
    {"category": "lodging", "lat": 37.5826, "lon": 126.9836, "names": {"en": "Hanok <b>Stay</b>"}, "addresses": {},
     "link": ""},
    {"category": "sight", "lat": 37.5826, "lon": 126.9850, "names": {"en": "Bukchon"}, "addresses": {}, "link": ""},
]
TABLE = {"version": 3, "rows": [
    {"class_id": "red", "valid_from": "2000-01-01", "valid_to": "2099-12-31",
     "fields": {"store": "CU", "offer_en": "1+1"}},
    {"class_id": "red", "valid_from": "", "valid_to": "2001-01-01", "fields": {"store": "GS25", "offer_en": "2+1"}},
]}


def _knowledge() -> dict:
    cards = {**KNOWLEDGE["cards"]}
    cards["red"] = {**cards["red"], "fields": {**cards["red"]["fields"], "lat": "37.5796", "lon": "126.9770"}}
    return {**KNOWLEDGE, "version": 3, "cards": cards, "tables": {"discounts": TABLE}, "places": PLACES}


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 220, 200)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def tiles():
    """A stub tile server on 127.0.0.1: every path answers one PNG; yields (URL template, requests seen)."""
    seen, body = [], _png()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png", seen
    server.shutdown()


def _site(home, tmp_path, tile_url: str):
    bundle = knowledge_bundle(tmp_path / "bundles" / "colours", _knowledge())
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0, knowledge_poll_s=0, public_url=f"http://127.0.0.1:{port}",
                        tile_url=tile_url, tile_attribution="© Stub <tiles>")
    return live_server(settings, bundle, port=port)


def _ask(page, site):
    response = page.goto(site + "/")
    page.set_input_files("#file-input", [{"name": "red.jpg", "mimeType": "image/jpeg",
                                          "buffer": coloured(RED, size=(320, 240))}])
    page.wait_for_selector("#answers .card .places", timeout=WAIT_MS)
    return response


def test_the_map_shows_places_with_tiles_from_the_configured_server(home, tmp_path, tiles, opened):
    tile_url, seen = tiles
    origin = tile_url.split("/{z}")[0]
    with _site(home, tmp_path, tile_url) as site:
        page = opened(geolocation={"latitude": 37.5700, "longitude": 126.9920}, permissions=[])
        response = _ask(page, site)
        csp = response.headers["content-security-policy"]
        assert f"img-src 'self' data: blob: {origin};" in csp and "script-src 'self';" in csp
        card = page.locator("#answers .card")
        assert card.locator(".rows li").all_text_contents() == ["CU · 1+1 until December 31"]  # GS25's is over
        until(page, "document.querySelector('#answers .map').dataset.tiles === 'loaded'")
        assert seen and all(p.endswith(".png") for p in seen)
        assert card.locator(".map-fallback").is_hidden()
        assert "© Stub <tiles>" in card.locator(".leaflet-control-attribution").text_content()
        assert page.evaluate("window.__pwned") is None
        places = card.locator(".place")
        assert places.count() == 3
        assert places.nth(0).text_content() == "Tosokchon 588 m · 5 Jahamun-ro 5-gil"
        assert places.nth(1).locator("span").first.text_content() == "Hanok <b>Stay</b>"  # text, never HTML
        assert card.locator(".places-origin").text_content() == "Distances are from Red pill."
        assert card.locator(".leaflet-interactive").count() == 4  # the place and three places around it
        page.context.grant_permissions(["geolocation"])  # the prompt, answered yes, after the click
        card.locator("button.use-location").click()
        until(page, "document.querySelector('#answers .places-origin').textContent === 'Distances are from you.'")
        assert card.locator(".leaflet-interactive").count() == 5


def test_without_a_tile_server_the_list_and_a_text_fallback_show(home, tmp_path, browser):  # noqa: F811
    from tests.serve.test_dashboard_browser import Page

    closed = free_port()  # nothing listens there: every tile fails
    with _site(home, tmp_path, f"http://127.0.0.1:{closed}/{{z}}/{{x}}/{{y}}.png") as site:
        opened = Page(browser, locale="en-US")
        try:
            page = opened.page
            _ask(page, site)
            card = page.locator("#answers .card")
            until(page, "!document.querySelector('#answers .map-fallback').hidden")
            assert "cannot be shown" in card.locator(".map-fallback").text_content()
            assert card.locator(".place").count() == 3 and card.locator(".rows li").count() == 1
            assert card.locator(".place .distance").first.text_content().strip().endswith(" m")
        finally:
            # the refused tile requests are the only console errors allowed
            opened.errors = [e for e in opened.errors if "ERR_CONNECTION_REFUSED" not in e]
            opened.close()


def test_with_no_tile_url_there_is_no_map_and_nothing_is_fetched_elsewhere(home, tmp_path, opened):
    with _site(home, tmp_path, "") as site:
        page = opened()
        response = _ask(page, site)
        assert "img-src 'self' data: blob:;" in response.headers["content-security-policy"]
        card = page.locator("#answers .card")
        until(page, "document.querySelector('#answers .map').dataset.map === 'none'")
        assert card.locator(".map").is_hidden() and card.locator(".map-fallback").is_visible()
        assert card.locator(".place").count() == 3
