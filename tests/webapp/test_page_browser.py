"""The identification page in a real browser: Debian's headless Chromium driven by Playwright, against a
real uvicorn server on 127.0.0.1. Every page refuses requests that leave 127.0.0.1 and fails on console
errors (a CSP violation shows there); polling is done from outside the page (the CSP forbids eval).
These tests fail, rather than skip, under CI=true when Chromium or Playwright is missing."""

from __future__ import annotations

import json

import pytest

from snapid.config import Settings
from tests.helpers import free_port, live_server
from tests.serve.conftest import CLASSES, GREEN, RED, coloured
from tests.serve.test_dashboard_browser import WAIT_MS, browser, until  # noqa: F401  (browser: a fixture)
from tests.webapp.conftest import KNOWLEDGE, RULE_MESSAGE, knowledge_bundle

HOSTILE = "<script>window.__pwned=1</script>"
HOSTILE_IMG = '<img src=x onerror="window.__pwned=2">'


def photo(name: str, rgb, size=(320, 240)) -> dict:
    return {"name": name, "mimeType": "image/jpeg", "buffer": coloured(rgb, size=size)}


@pytest.fixture
def site(home, kbundle):
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0, public_url=f"http://127.0.0.1:{port}")
    with live_server(settings, kbundle, port=port) as base:
        yield base


def test_upload_shows_the_result_card_with_scores_and_knowledge(site, opened):
    page = opened()
    response = page.goto(site + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.set_input_files("#file-input", [photo("red.jpg", RED)])
    page.wait_for_selector("#answers article.answer", timeout=WAIT_MS)
    assert page.locator("#answers .best").text_content() == "Red pill"
    assert page.locator("#answers .scores li").count() == 3
    assert page.locator("#answers .scores meter").first.get_attribute("value") is not None
    card = page.locator("#answers .card")
    assert "A fictional red pill" in card.text_content() and "Rubrum testum" in card.text_content()
    assert card.locator(".taxonomy").text_content() == "Classification: Rubrales › reds (Rubraceae) › Rubrum testum"
    assert card.locator("table.fields th").all_text_contents() == ["ingredient", "maker", "price"]
    assert card.locator("img").count() == 0  # a remote picture is offered as a link, never loaded
    assert card.locator("a", has_text="Picture").get_attribute("href") == "https://example.org/red.png"
    assert "Red is a colour." in card.locator(".wikipedia").text_content()
    assert page.locator("#result").get_attribute("aria-live") == "polite"
    assert page.locator("#loading").is_hidden()


def test_different_items_mode_shows_the_interaction_warning(site, opened):
    page = opened()
    page.goto(site + "/")
    page.check("#each")
    page.set_input_files("#file-input", [photo("a.jpg", RED), photo("b.jpg", GREEN)])
    page.wait_for_selector("#warnings .warning", timeout=WAIT_MS)
    assert RULE_MESSAGE["en"] in page.locator("#warnings").text_content()
    assert page.locator("#answers article.answer").count() == 2


def test_wrong_answer_sends_feedback_from_the_searchable_list(site, opened):
    page = opened()
    page.goto(site + "/")
    page.set_input_files("#file-input", [photo("red.jpg", RED)])
    page.wait_for_selector("#answers button.wrong", timeout=WAIT_MS)
    page.click("#answers button.wrong")
    page.fill("#wrong-search", "gre")
    until(page, "document.querySelectorAll('#wrong-list input').length === 1")
    page.check("#wrong-list input[value=green]")
    page.click("#wrong-send")
    page.wait_for_selector("#answers .msg >> text=Thank you", timeout=WAIT_MS)


def test_refused_camera_falls_back_to_the_file_picker(site, opened):
    page = opened()  # no camera permission granted and no fake media UI: getUserMedia is refused
    page.goto(site + "/")
    page.click("#camera-open")
    page.wait_for_selector("#capture-label:not([hidden])", timeout=WAIT_MS)
    assert "camera is not available" in page.locator("#give-msg").text_content()
    assert page.locator("#capture-input").get_attribute("capture") == "environment"
    page.set_input_files("#capture-input", [photo("shot.jpg", GREEN)])
    page.wait_for_selector("#answers .best >> text=Green pill", timeout=WAIT_MS)


def test_phone_hand_off_by_qr_shows_the_phone_photo_on_the_desktop(site, opened):
    desktop = opened()
    desktop.goto(site + "/")
    desktop.click("#phone-open")
    desktop.wait_for_selector("#phone:not([hidden])", timeout=WAIT_MS)
    until(desktop, "document.getElementById('qr').naturalWidth > 0")  # the server's SVG, via a blob: URL
    phone_url = desktop.locator("#phone-url").text_content()
    assert phone_url.startswith(site + "/m/")
    phone = opened(viewport={"width": 390, "height": 800}, is_mobile=True, has_touch=True)
    phone.goto(phone_url)
    phone.set_input_files("#take", [photo("p1.jpg", RED, size=(1600, 1200))])
    phone.wait_for_selector("#status >> text=Sent", timeout=WAIT_MS)
    desktop.wait_for_selector("#answers .best >> text=Red pill", timeout=WAIT_MS)  # arrived by SSE
    assert desktop.locator("#answers .photos img").get_attribute("src").startswith("data:image/jpeg;base64,")
    phone.set_input_files("#choose", [photo("p2.jpg", GREEN)])
    desktop.wait_for_selector("#warnings .warning", timeout=WAIT_MS)
    assert "2 photo(s) received" in desktop.locator("#phone-status").text_content()


def test_korean_and_english_switch_changes_every_visible_string(site, opened):
    page = opened(locale="ko-KR")
    page.goto(site + "/")
    assert page.locator("h1").text_content() == "이것은 무엇일까요?"  # default from the browser's languages
    assert page.locator("html").get_attribute("lang") == "ko"
    page.set_input_files("#file-input", [photo("red.jpg", RED)])
    page.wait_for_selector("#answers .best >> text=빨간 알약", timeout=WAIT_MS)
    assert "빨간 가상의 알약" in page.locator("#answers .card").text_content()
    page.click("#lang-en")
    assert page.locator("h1").text_content() == "What is this?"
    assert page.locator("#answers .best").text_content() == "Red pill"  # class names follow, from the card
    assert "A fictional red pill" in page.locator("#answers .card").text_content()
    assert page.locator("label[for=file-input]").text_content() == "Choose photos"
    page.reload()
    assert page.locator("h1").text_content() == "What is this?"  # the choice is remembered


def test_a_hostile_class_label_shows_as_text_and_never_runs(opened, home, tmp_path):
    classes = [dict(CLASSES[0], name=HOSTILE, display_names={"en": HOSTILE}), dict(CLASSES[1], name=HOSTILE_IMG),
               CLASSES[2]]
    knowledge = json.loads(json.dumps(KNOWLEDGE))
    knowledge["cards"]["red"]["names"] = {"en": HOSTILE}
    knowledge["cards"]["red"]["descriptions"] = {"en": HOSTILE_IMG}
    knowledge["cards"]["red"]["fields"] = {HOSTILE: HOSTILE_IMG}
    knowledge["cards"]["red"]["links"] = [{"label": HOSTILE, "url": "javascript:window.__pwned=3"}]
    bundle = knowledge_bundle(tmp_path / "hostile", knowledge, classes=classes)
    with live_server(Settings(home=home.home, reload_poll_s=0), bundle) as base:
        page = opened()
        page.goto(base + "/")
        page.set_input_files("#file-input", [photo("red.jpg", RED)])
        page.wait_for_selector("#answers article.answer", timeout=WAIT_MS)
        assert page.locator("#answers .best").text_content() == HOSTILE
        assert HOSTILE_IMG in page.locator("#answers .card").text_content()
        assert page.locator("#answers a[href^=javascript]").count() == 0
        page.click("#answers button.wrong")
        page.wait_for_selector("#wrong-list label", timeout=WAIT_MS)
        assert HOSTILE_IMG in page.locator("#wrong-list").text_content()
        page.click("#wrong-cancel")
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("img[src=x]").count() == 0


def test_narrow_screen_has_no_page_wide_horizontal_scroll(site, opened):
    page = opened(viewport={"width": 360, "height": 740})
    page.goto(site + "/")
    page.set_input_files("#file-input", [photo("red.jpg", RED)])
    page.wait_for_selector("#answers .card", timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
