"""A new class from the review page (issue 20): approved "not in the list" feedback → `snapid add-class` run as a
child process on the served bundle folder → the server serves the new class, and the feedback records it.
Real app, real photo store, real child process; the refusals leave the bundle as it was."""

from __future__ import annotations

import threading
import time
import zipfile

import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.export.bundle import load_bundle, zip_bundle
from snapid.serve.app import create_app
from tests.export.test_add_class import YELLOW, make
from tests.feedback.conftest import TOKEN, auth, predict_and_keep
from tests.serve.conftest import coloured, files

LIME = (150, 230, 40)


def settings_for(home, **kw) -> Settings:
    return Settings(home=home.home, reload_poll_s=kw.pop("reload_poll_s", 0.1), review_token=TOKEN, drain_s=0.2, **kw)


def shade(rgb, i: int) -> bytes:
    """A distinct photo of one colour (the store keeps one file per content)."""
    return coloured(tuple(max(0, min(255, c + 6 * i - 15)) for c in rgb))


def not_in_list(client, rgb, texts: list[str], *, approve: bool = True, start: int = 0) -> list[str]:
    """One kept photo and one "not in the list" feedback per text; approved by the reviewer unless told not."""
    ids = []
    for i, text in enumerate(texts, start):
        pid, kept = predict_and_keep(client, shade(rgb, i))
        assert kept
        r = client.post("/api/v1/feedback", json={"prediction_id": pid, "client_key": f"client-key-{i:04d}",
                                                   "not_in_list": True, "text": text})
        assert r.status_code == 201, r.text
        ids.append(r.json()["feedback_id"])
        if approve:
            assert client.post(f"/api/v1/review/{ids[-1]}", json={"action": "approve"},
                               headers=auth()).status_code == 200
    return ids


def new_class(client, name: str, ids: list[str], token: str = TOKEN):
    return client.post("/api/v1/review/new-class", json={"name": name, "feedback_ids": ids}, headers=auth(token))


def groups(client) -> dict[str, dict]:
    r = client.get("/api/v1/review/new-classes", headers=auth())
    assert r.status_code == 200, r.text
    return {g["key"]: g for g in r.json()["groups"]}


def top(client, photo: bytes) -> str:
    r = client.post("/api/v1/predict", files=files(photo))
    return r.json()["predictions"][0]["display_name"]


def test_approved_not_in_list_feedback_becomes_a_served_class(tmp_path, home):
    bundle = make(tmp_path / "bundles" / "colours")
    with TestClient(create_app(settings_for(home), bundle=bundle), raise_server_exceptions=False) as client:
        yellow = not_in_list(client, YELLOW, ["Yellow thing", " yellow  THING", "Yellow thing", "yellow thing",
                                              "Yellow Thing"])
        lime = not_in_list(client, LIME, ["a lime", "A lime"], start=10)
        pending = not_in_list(client, YELLOW, ["Yellow thing"], approve=False, start=20)
        found = groups(client)
        assert found["yellow thing"]["feedback_ids"] == yellow and found["yellow thing"]["photos"] == 5
        assert found["yellow thing"]["ready"] and found["yellow thing"]["name"] == "Yellow thing"
        assert found["a lime"]["photos"] == 2 and not found["a lime"]["ready"]
        before = load_bundle(bundle).sha256

        r = new_class(client, "Yellow thing", yellow + pending)  # a pending item: refused, naming it
        assert r.status_code == 409 and r.json()["error"] == "feedback_not_eligible"
        assert pending[0] in r.json()["message"] and "pending" in r.json()["message"]
        r = new_class(client, "Lime", lime)  # too few photos: how many there are and how many are needed
        assert r.status_code == 422 and r.json()["error"] == "photo_count"
        assert "2 distinct saved photos" in r.json()["message"] and "5 to 20" in r.json()["message"]
        assert new_class(client, "Yellow thing", yellow, token="wrong-token-wrong-token").status_code == 401
        r = new_class(client, " red ", yellow)  # a class the model has
        assert r.status_code == 422 and r.json()["error"] == "invalid_name"
        assert load_bundle(bundle).sha256 == before

        result: dict = {}
        first = threading.Thread(target=lambda: result.update(r=new_class(client, "Yellow thing", yellow)))
        first.start()
        deadline = time.monotonic() + 10
        while not client.app.state.new_classes._busy.locked() and first.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        second = new_class(client, "Yellow thing", yellow)  # one at a time
        first.join(60)
        assert second.status_code == 409 and second.json()["error"] == "add_class_running", second.text
        assert int(second.headers["retry-after"]) > 0
        r = result["r"]
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["class"] == {"id": "yellow_thing", "name": "Yellow thing", "index": 3}
        assert body["photos"] == 5 and body["served"] is True and body["feedback_ids"] == yellow
        served = client.get("/api/v1/model").json()
        assert served["version"] == body["bundle"]["version"] == load_bundle(bundle).version
        assert served["classes"] == 4
        assert "yellow_thing" in [c["id"] for c in client.get("/api/v1/classes").json()["classes"]]
        assert top(client, shade(YELLOW, 2)) == "Yellow thing"
        assert top(client, coloured((220, 40, 40))) == "Red thing"  # the old classes still answer

        approved = client.get("/api/v1/review?status=approved&limit=200", headers=auth()).json()["items"]
        assert {i["final_label"] for i in approved if i["id"] in yellow} == {"yellow_thing"}
        assert "yellow thing" not in groups(client) and "a lime" in groups(client)  # not offered again
        r = new_class(client, "Yellow again", yellow)
        assert r.status_code == 409 and "already became class 'yellow_thing'" in r.json()["message"]


def test_a_refusal_of_add_class_is_its_own_message_and_the_bundle_is_untouched(tmp_path, home):
    bundle = make(tmp_path / "bundles" / "colours", hidden=True)  # an MLP head: add-class refuses it
    with TestClient(create_app(settings_for(home), bundle=bundle), raise_server_exceptions=False) as client:
        ids = not_in_list(client, YELLOW, ["Yellow thing"] * 5)
        before = load_bundle(bundle).sha256
        r = new_class(client, "Yellow thing", ids)
        assert r.status_code == 422 and r.json()["error"] == "add_class_refused", r.text
        assert "not one linear layer" in r.json()["message"]
        assert load_bundle(bundle).sha256 == before and client.get("/api/v1/model").json()["classes"] == 3
        assert groups(client)["yellow thing"]["feedback_ids"] == ids  # still offered


def test_add_class_missing_from_this_install_is_501_naming_the_extra(tmp_path, home, monkeypatch):
    """A lean install (snapid[serve]) has no onnx: the child process says so, and the answer passes it on."""
    shadow = tmp_path / "lean"
    (shadow / "onnx").mkdir(parents=True)
    (shadow / "onnx" / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'onnx\'", name="onnx")\n')
    monkeypatch.setenv("PYTHONPATH", str(shadow))  # the child's onnx is this one, which is not there
    bundle = make(tmp_path / "bundles" / "colours")
    with TestClient(create_app(settings_for(home), bundle=bundle), raise_server_exceptions=False) as client:
        ids = not_in_list(client, YELLOW, ["Yellow thing"] * 5)
        before = load_bundle(bundle).sha256
        r = new_class(client, "Yellow thing", ids)
        assert r.status_code == 501 and r.json()["error"] == "add_class_unavailable", r.text
        assert "onnx" in r.json()["message"] and "snapid[train]" in r.json()["message"]
        assert load_bundle(bundle).sha256 == before


@pytest.mark.parametrize("case", ["packed", "reload_off"])
def test_a_packed_bundle_or_reload_off_is_refused_clearly(tmp_path, home, case):
    folder = make(tmp_path / "bundles" / "colours")
    bundle = zip_bundle(folder, tmp_path / "colours.snapid") if case == "packed" else folder
    before = load_bundle(folder).sha256
    settings = settings_for(home, reload_poll_s=0 if case == "reload_off" else 0.1)
    with TestClient(create_app(settings, bundle=bundle), raise_server_exceptions=False) as client:
        ids = not_in_list(client, YELLOW, ["Yellow thing"] * 5)
        r = new_class(client, "Yellow thing", ids)
    expected = {"packed": "bundle_not_editable", "reload_off": "reload_off"}[case]
    assert r.status_code == 409 and r.json()["error"] == expected, r.text
    if case == "packed":
        assert "unpack" in r.json()["message"]
        with zipfile.ZipFile(bundle) as zf:
            assert "labels.json" in zf.namelist()
    assert load_bundle(folder).sha256 == before


def test_bad_bodies_are_422_or_413(tmp_path, home):
    bundle = make(tmp_path / "bundles" / "colours")
    with TestClient(create_app(settings_for(home), bundle=bundle), raise_server_exceptions=False) as client:
        post = client.post
        assert post("/api/v1/review/new-class", json={"name": "x", "feedback_ids": ["nope"]},
                    headers=auth()).status_code == 422
        empty = {"name": "", "feedback_ids": []}
        assert post("/api/v1/review/new-class", json=empty, headers=auth()).status_code == 422
        assert post("/api/v1/review/new-class", content=b"{" * 20_000,
                    headers={**auth(), "Content-Type": "application/json"}).status_code == 413
        r = new_class(client, "x" * 101, ["00000000-0000-0000-0000-000000000000"])
        assert r.status_code == 422
        r = new_class(client, "Yellow", ["00000000-0000-0000-0000-000000000000"])
        assert r.status_code == 404 and "00000000-0000-0000-0000-000000000000" in r.json()["message"]


def test_a_retry_after_the_recording_failed_finishes_the_job_without_a_second_class(tmp_path, home):
    """The bundle got the class but the items were not recorded (the database failed right after the write): the
    same request again recognises the class add-class made from these very photos, records the items and serves
    it, instead of refusing the name as taken."""
    from snapid.export.add_class import add_class
    from snapid.feedback import new_class as feedback_new_class

    bundle = make(tmp_path / "bundles" / "colours")
    with TestClient(create_app(settings_for(home), bundle=bundle), raise_server_exceptions=False) as client:
        ids = not_in_list(client, YELLOW, ["Yellow thing"] * 5)
        state = client.app.state.new_classes
        photos = feedback_new_class.photos_for(state.engine(), state.photo_store(), ids)
        add_class(bundle, "Yellow thing", photos)          # what the first attempt wrote before it failed
        written = load_bundle(bundle)
        r = new_class(client, "Yellow thing", ids)
        assert r.status_code == 200, r.text
        assert r.json()["bundle"]["sha256"] == written.sha256 == load_bundle(bundle).sha256  # no second edit
        assert r.json()["feedback_ids"] == ids and r.json()["skipped"] == [] and r.json()["served"] is True
        assert client.get("/api/v1/model").json()["classes"] == 4
        assert "yellow thing" not in groups(client)
        other = not_in_list(client, LIME, ["Yellow thing"] * 5, start=30)  # the same name from other photos
        r = new_class(client, "Yellow thing", other)
        assert r.status_code == 422 and r.json()["error"] == "invalid_name"  # that one is a different class


def test_items_a_reviewer_rejected_while_the_class_was_made_keep_the_reviewers_word(tmp_path, home):
    from snapid.feedback import new_class as feedback_new_class

    bundle = make(tmp_path / "bundles" / "colours")
    with TestClient(create_app(settings_for(home), bundle=bundle), raise_server_exceptions=False) as client:
        ids = not_in_list(client, YELLOW, ["Yellow thing"] * 5)
        assert client.post(f"/api/v1/review/{ids[0]}", json={"action": "reject"}, headers=auth()).status_code == 200
        skipped = feedback_new_class.mark(client.app.state.new_classes.engine(), ids, "yellow_thing")
        assert skipped == [ids[0]]
        rejected = client.get("/api/v1/review?status=rejected&limit=50", headers=auth()).json()["items"]
        assert [i["id"] for i in rejected] == [ids[0]] and not rejected[0]["final_label"]
        approved = client.get("/api/v1/review?status=approved&limit=50", headers=auth()).json()["items"]
        assert {i["id"]: i["final_label"] for i in approved} == {i: "yellow_thing" for i in ids[1:]}
