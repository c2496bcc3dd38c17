"""Feedback → review → merge → a new dataset version, in a real browser: Debian's headless Chromium driven
by Playwright against a real uvicorn server on 127.0.0.1, serving a bundle whose classes are those of the
imported "shapes" dataset (the tiny colour model: red → disc, green → square, blue → stripes).

A consenting user uploads three photos on `/` and says each answer is wrong; a reviewer opens `/review`,
gives the token in its form, approves one, relabels one and rejects one; `merge_feedback` then makes a new
version whose train split holds the two approved photos with their final labels, and whose test split is
the imported one. Hostile strings (a class name, the user's free text) must show as text and never run.
Every page refuses requests leaving 127.0.0.1 and fails on console errors (a CSP violation shows there).
These tests fail, rather than skip, under CI=true when Chromium or Playwright is missing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from snapid import images
from snapid.config import Settings
from snapid.feedback.merge import feedback_folder, merge_feedback
from snapid.feedback.promote import split_shas
from snapid.track import datasets as dataset_store
from snapid.track import feedback as track
from snapid.track.db import transaction
from tests.helpers import free_port, live_server
from tests.serve.conftest import GREEN, RED, coloured
from tests.serve.test_dashboard_browser import WAIT_MS, browser, until  # noqa: F401  (browser: a fixture)
from tests.webapp.conftest import knowledge_bundle

TOKEN = "review-t0ken-for-the-browser"
HOSTILE = "<script>window.__pwned=1</script>"
HOSTILE_IMG = '<img src=x onerror="window.__pwned=2">'
BLUE = (40, 60, 220)
# The shapes dataset's class ids, in the order of the tiny model's colour outputs; one name is hostile.
SHAPE_CLASSES = [{"index": 0, "id": "disc", "name": "Disc", "display_names": {}},
                 {"index": 1, "id": "square", "name": "Square", "display_names": {}},
                 {"index": 2, "id": "stripes", "name": HOSTILE_IMG, "display_names": {}}]


def upload(name: str, rgb) -> dict:
    return {"name": name, "mimeType": "image/jpeg", "buffer": coloured(rgb, size=(320, 240))}


@pytest.fixture
def site(home, shapes, tmp_path):
    bundle = knowledge_bundle(tmp_path / "bundles" / "shapes", None, classes=SHAPE_CLASSES)
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0, review_token=TOKEN, public_url=f"http://127.0.0.1:{port}")
    with live_server(settings, bundle, port=port) as base:
        yield base


def say_wrong(page, rgb, *, label: str | None = None, text: str = "") -> None:
    """Upload one photo with consent, click "Wrong?", pick ``label`` (None: "not in the list"), send."""
    page.check("#consent")
    page.set_input_files("#file-input", [upload("shot.jpg", rgb)])
    # the previous answer (its status line saying "Thank you") stays until the new one replaces it
    until(page, "[...document.querySelectorAll('#answers .msg')].length === 1"
                " && document.querySelector('#answers .msg').textContent === ''")
    page.click("#answers button.wrong")
    page.wait_for_selector("#wrong-list input[name=label]", timeout=WAIT_MS)  # visible, even after "not in the list"
    if label is None:
        page.check("#wrong-not-listed")
    else:
        page.check(f"#wrong-list input[value={label}]")
    page.fill("#wrong-text", text)
    page.click("#wrong-send")
    page.wait_for_selector("#answers .msg >> text=Thank you", timeout=WAIT_MS)


def card(page, user_label: str):
    """The review card whose "User's label" is exactly ``user_label``."""
    exact = re.compile(rf"^{re.escape(user_label)}$")
    return page.locator("#queue li.card").filter(has=page.locator("dd.user", has_text=exact))


def act(page, item, action: str) -> None:
    item.locator(f"button[data-action={action}]").click()
    page.wait_for_selector(f"#message >> text={action}: done", timeout=WAIT_MS)


def test_feedback_review_merge_makes_a_new_dataset_version(site, opened, engine, home):
    user = opened()
    user.goto(site + "/")
    assert not user.is_checked("#consent")  # consent is off by default
    say_wrong(user, RED, label="square")  # the model says disc; the user says square
    say_wrong(user, GREEN, label=None, text=HOSTILE)  # "not in the list", with hostile free text
    say_wrong(user, BLUE, label="disc")  # will be rejected

    reviewer = opened()
    response = reviewer.goto(site + "/review")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert reviewer.locator("#queue li").count() == 0  # the page holds no data before the token
    reviewer.fill("#token", TOKEN)
    reviewer.click("#login button[type=submit]")
    reviewer.wait_for_selector("#message >> text=3 of 3 pending", timeout=WAIT_MS)

    approved, hostile, rejected = card(reviewer, "square"), card(reviewer, "not in the list"), card(reviewer, "disc")
    assert approved.locator(".answer").text_content().startswith("Disc (")
    assert hostile.locator(".answer").text_content().startswith("Square (")
    assert hostile.locator(".note").text_content() == HOSTILE
    assert rejected.locator(".answer").text_content().startswith(HOSTILE_IMG + " (")
    assert HOSTILE_IMG + " (stripes)" in hostile.locator("select.relabel").text_content()
    for item in (approved, hostile, rejected):  # each thumbnail: fetched with the token, shown as a blob: URL
        assert item.locator(".state").text_content() == "pending"
        assert item.locator(".photos img").get_attribute("alt") == "Photo sent with the feedback"
    until(reviewer, "[...document.querySelectorAll('#queue .photos img')]"
                    ".filter((i) => i.src.startsWith('blob:') && i.naturalWidth > 0).length === 3")
    assert reviewer.evaluate("typeof window.__pwned") == "undefined"
    assert reviewer.locator("img[src=x], #queue script").count() == 0

    act(reviewer, approved, "approve")
    hostile.locator("select.relabel").select_option("stripes")
    act(reviewer, hostile, "relabel")
    act(reviewer, rejected, "reject")
    assert reviewer.locator("#queue li.card").count() == 0
    reviewer.select_option("#status", "approved")
    reviewer.click("#login button[type=submit]")
    reviewer.wait_for_selector("#message >> text=2 of 2 approved", timeout=WAIT_MS)
    reviewer.select_option("#status", "rejected")
    reviewer.click("#login button[type=submit]")
    reviewer.wait_for_selector("#message >> text=1 of 1 rejected", timeout=WAIT_MS)
    assert reviewer.evaluate("typeof window.__pwned") == "undefined"
    assert user.evaluate("typeof window.__pwned") == "undefined"

    with transaction(engine) as s:
        before = dataset_store.load_manifest(s, name="shapes")
        final = {f["prediction_id"]: f["final_label"] for f in track.approved_feedback(s)}
        kept = track.uploads_for_predictions(s, prediction_ids=list(final))
    expected = {(u["sha256"], final[pid]) for pid, uploads in kept.items() for u in uploads}
    assert sorted(label for _, label in expected) == ["square", "stripes"]

    result = merge_feedback("shapes", workspace=home, engine=engine)

    assert result["version"] == before.version + 1 and result["added"] == 2 and result["feedback"] == 2
    with transaction(engine) as s:
        after = dataset_store.load_manifest(s, name="shapes")
    assert after.version == result["version"]
    new = after.samples[len(before.samples):]
    assert [s.path for s in after.samples[:len(before.samples)]] == [s.path for s in before.samples]
    assert {s.split for s in new} == {"train"}
    assert {(s.facts.sha256, s.label) for s in new} == expected
    square = next(s for s in new if s.label == "square")
    assert Path(square.path).parent == feedback_folder(home, "shapes")
    rgb = np.asarray(images.decode_file(Path(square.path))).reshape(-1, 3).mean(0)
    assert rgb[0] > 150 and rgb[1] < 100  # it is the red photo the user uploaded, now labelled square
    assert split_shas(engine, dataset="shapes", version=before.version, split="test") == \
        split_shas(engine, dataset="shapes", version=after.version, split="test")
    assert [s for s in after.samples if s.split == "test"] == [s for s in before.samples if s.split == "test"]


def seed_not_in_list(base: str, rgb, texts: list[str], start: int) -> None:
    """Kept photos with approved "not in the list" feedback, through the API (the upload form is tested above)."""
    import httpx

    from tests.serve.test_review_new_class import shade

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        for i, text in enumerate(texts, start):
            r = c.post("/api/v1/predict?consent=true", files=[("files", ("p.jpg", shade(rgb, i), "image/jpeg"))])
            assert r.json()["kept"] == "kept", r.text
            fid = c.post("/api/v1/feedback", json={"prediction_id": r.json()["prediction_id"], "not_in_list": True,
                                                   "client_key": f"browser-key-{i:04d}", "text": text}).json()
            assert c.post(f"/api/v1/review/{fid['feedback_id']}", json={"action": "approve"}).status_code == 200


def test_a_group_of_five_not_in_list_photos_becomes_a_class(home, tmp_path, opened):
    from tests.export.test_add_class import YELLOW, make

    bundle = make(tmp_path / "bundles" / "colours")  # the colour model with an "embedding" output
    port = free_port()
    settings = Settings(home=home.home, reload_poll_s=0.2, review_token=TOKEN, public_url=f"http://127.0.0.1:{port}")
    with live_server(settings, bundle, port=port) as base:
        seed_not_in_list(base, YELLOW, ["Yellow thing", "yellow thing "] * 2 + ["YELLOW THING"], start=0)
        seed_not_in_list(base, BLUE, ["a lime", "A lime"], start=10)
        reviewer = opened()
        reviewer.goto(base + "/review")
        reviewer.fill("#token", TOKEN)
        reviewer.select_option("#status", "approved")
        reviewer.click("#login button[type=submit]")
        reviewer.wait_for_selector("#groups li.group", timeout=WAIT_MS)
        five, two = reviewer.locator("#groups li.group").nth(0), reviewer.locator("#groups li.group").nth(1)
        assert five.locator("button.make").text_content() == "Make a class from these 5 photos"
        assert five.locator("button.make").is_enabled() and five.locator("input.name").input_value() == "Yellow thing"
        assert two.locator("button.make").is_disabled() and "needs 5 to 20" in two.locator(".result").text_content()
        five.locator("input.name").fill("Yellow blossom")
        five.locator("button.make").click()
        reviewer.wait_for_selector("#groups .result >> text=now served", timeout=WAIT_MS * 3)
        assert 'Class "Yellow blossom" (yellow_blossom) added from 5 photos' in five.locator(".result").text_content()
