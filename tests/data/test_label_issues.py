"""`snapid data issues` and `snapid data relabel` (issue 19): planted label errors are found and suggested
back, relabel makes a new version and leaves the old one intact, a bad decisions file is refused whole,
the gallery escapes hostile names, and the CLI's --json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from snapid.data.decisions import COLUMNS
from snapid.errors import DatasetError
from snapid.evaluate.issues_report import render_issues_html
from snapid.evaluate.label_issues import find_issues, label_conflicts, label_issues, out_of_fold, outliers
from snapid.relabel import relabel
from snapid.track import datasets as dataset_store
from snapid.track.db import transaction
from tests.helpers import shapes_dataset

TINY = dict(model="mobilenet_v2", size=64)  # pretrained features of 64 px shapes: a second or two on a CPU


def write_decisions(path: Path, rows: list[dict], header: tuple[str, ...] = COLUMNS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(header), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def manifest(engine, name="shapes", version=None):
    with transaction(engine) as s:
        return dataset_store.load_manifest(s, name=name, version=version)


@pytest.fixture
def shapes20(tmp_path, engine) -> str:
    from snapid.importer import import_dataset

    import_dataset(shapes_dataset(tmp_path / "shapes", per_class=20), name="shapes", engine=engine)
    return "shapes"


def planted(engine, tmp_path) -> dict[str, tuple[str, str]]:
    """Two training photos given a wrong label (by relabel itself): path → (true, wrong)."""
    m = manifest(engine)
    wrong = {"disc": "square", "square": "stripes", "stripes": "disc"}
    chosen = [next(s for s in m.samples if s.split == "train" and s.label == c) for c in ("disc", "square")]
    rows = [{"path": s.path, "action": "relabel", "label": wrong[s.label], "reason": "planted"} for s in chosen]
    relabel("shapes", write_decisions(tmp_path / "plant.csv", rows), engine=engine)
    return {s.path: (s.label, wrong[s.label]) for s in chosen}


# ----------------------------------------------------------------------------- pure parts

def clusters(n_per_class=40, classes=4, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, size=(classes, dim))  # same-class cosine about 0.8
    labels = np.repeat(np.arange(classes), n_per_class)
    return (centres[labels] + rng.normal(0, 1, size=(len(labels), dim))).astype(np.float32), labels


def test_out_of_fold_confident_learning_finds_flipped_labels():
    x, true = clusters()
    given = true.copy()
    flipped = [3, 50, 97, 130, 151]
    for i in flipped:
        given[i] = (given[i] + 1) % 4
    probs, weight_decay = out_of_fold(x, given, 4, folds=5)
    assert probs.shape == (160, 4) and np.allclose(probs.sum(1), 1, atol=1e-5) and weight_decay > 0
    rows = label_issues(given, probs)
    top = [r["position"] for r in rows[: 2 * len(flipped)]]
    assert set(flipped) <= set(top)
    assert all(r["confident"] for r in rows if r["position"] in flipped)  # flagged by cleanlab itself
    for r in rows:
        if r["position"] in flipped:
            assert r["suggested"] == true[r["position"]] and r["given"] == given[r["position"]]
            assert 0 <= r["score"] <= 1 and r["suggested"] != r["given"]


def test_outliers_and_conflicting_near_duplicates():
    x, labels = clusters()
    x[7] = 60.0  # far from every cluster
    x[100] = x[20] + 1e-4  # a copy of a class-0 photo, labelled class 2
    unusual, limit = outliers(x)
    assert unusual and unusual[0]["position"] == 7 and unusual[0]["distance"] > limit
    pairs = label_conflicts(x, labels)
    assert [(p["a"], p["b"]) for p in pairs] == [(20, 100)] and pairs[0]["similarity"] > 0.999


# ----------------------------------------------------------------------------- end to end

def test_planted_label_errors_are_found_and_relabel_puts_them_back(shapes20, engine, home, tmp_path):
    errors = planted(engine, tmp_path)
    gallery = tmp_path / "issues.html"
    result = find_issues("shapes", workspace=home, engine=engine, html=gallery, **TINY)
    assert result["version"] == 2 and result["images"] >= 45
    suspects = {r["path"]: r for r in result["label_issues"][: 2 * len(errors)]}
    assert set(errors) <= set(suspects), result["label_issues"][:6]
    assert all(suspects[p]["confident"] for p in errors)
    for path, (true, wrong) in errors.items():
        assert (suspects[path]["given"], suspects[path]["suggested"]) == (wrong, true)
    page = gallery.read_text()
    assert page.count('src="data:image/jpeg;base64,') >= len(errors) and "data-row=" in page

    # the gallery's decision rows are what relabel reads: accept the two suggestions
    rows = [{"path": p, "action": "relabel", "label": suspects[p]["suggested"], "given": suspects[p]["given"],
             "reason": "suspected label error"} for p in errors]
    done = relabel("shapes", write_decisions(tmp_path / "accept.csv", rows), engine=engine)
    assert (done["from_version"], done["version"], done["relabelled"]) == (2, 3, 2)
    labels = {s.path: s.label for s in manifest(engine).samples}
    assert all(labels[p] == true for p, (true, _) in errors.items())
    again = find_issues("shapes", workspace=home, engine=engine, **TINY)  # features reused: same photos
    assert not set(errors) & {r["path"] for r in again["label_issues"] if r["confident"]}


def test_relabel_makes_a_new_version_and_leaves_the_old_one(shapes, engine, tmp_path):
    before = manifest(engine)
    train = [s for s in before.samples if s.split == "train"]
    rows = [{"path": train[0].path, "action": "relabel", "label": "stripes" if train[0].label != "stripes" else "disc",
             "given": train[0].label, "reason": "looked again"},
            {"path": train[1].path, "action": "drop", "reason": "a screenshot"},
            {"path": train[2].path, "action": "keep"}]
    result = relabel("shapes", write_decisions(tmp_path / "d.csv", rows), engine=engine)
    assert (result["version"], result["relabelled"], result["dropped"], result["kept"]) == (2, 1, 1, 1)

    old, new = manifest(engine, version=1), manifest(engine, version=2)
    assert [(s.path, s.label) for s in old.samples] == [(s.path, s.label) for s in before.samples]
    assert len(new.samples) == len(old.samples) - 1 and train[1].path not in {s.path for s in new.samples}
    assert {s.path: s.label for s in new.samples}[train[0].path] == rows[0]["label"]
    dropped = [r for r in new.rejected if r.path == train[1].path]
    assert dropped and dropped[0].reason == "dropped_by_review" and "a screenshot" in dropped[0].detail
    log = new.params["relabel"]
    assert (log["file"], log["from_version"], log["relabelled"], log["dropped"]) == ("d.csv", 1, 1, 1)
    assert {c["action"]: c["reason"] for c in log["changes"]} == {"relabel": "looked again", "drop": "a screenshot"}
    assert any("1 relabelled, 1 dropped" in note for note in new.notes)
    # nothing to change: no version
    keep = write_decisions(tmp_path / "k.csv", [{"path": train[3].path, "action": "keep"}])
    assert relabel("shapes", keep, engine=engine)["version"] is None


BAD = [
    ([{"path": "nowhere.png", "action": "drop"}], COLUMNS, "row 2, column 'path'"),
    ([{"path": "{0}", "action": "delete"}], COLUMNS, "row 2, column 'action'"),
    ([{"path": "{0}", "action": "relabel", "label": "hexagon"}], COLUMNS, "row 2, column 'label'"),
    ([{"path": "{0}", "action": "relabel"}], COLUMNS, "row 2, column 'label'"),
    ([{"path": "{0}", "action": "relabel", "label": "square", "given": "hexagon"}], COLUMNS, "row 2, column 'given'"),
    ([{"path": "{0}", "action": "keep"}, {"path": "{0}", "action": "drop"}], COLUMNS, "row 3, column 'path'"),
    ([{"path": "{0}", "action": "drop", "box": "4"}], COLUMNS, "row 2, column 'box'"),
    ([{"path": "{0}", "label": "disc"}], ("path", "label"), "row 1, column 'action'"),
]


@pytest.mark.parametrize("rows, header, where", BAD)
def test_a_bad_decisions_file_is_refused_whole(shapes, engine, tmp_path, rows, header, where):
    samples = manifest(engine).samples
    rows = [{k: v.format(samples[0].path) for k, v in r.items()} for r in rows]
    path = write_decisions(tmp_path / "bad.csv", rows, header)
    with pytest.raises(DatasetError) as caught:
        relabel("shapes", path, engine=engine)
    assert str(path) in caught.value.message and where in caught.value.message, caught.value.message
    assert manifest(engine).version == 1  # nothing written


def test_a_good_row_before_a_bad_one_is_not_applied(shapes, engine, tmp_path):
    samples = manifest(engine).samples
    path = tmp_path / "half.csv"
    path.write_text(f"path,action,label\n{samples[0].path},drop,\n{samples[1].path},relabel,square,extra\n")
    with pytest.raises(DatasetError, match="row 3"):
        relabel("shapes", path, engine=engine)
    assert manifest(engine).version == 1 and len(manifest(engine).samples) == len(samples)


def hostile_result():
    hostile = '<script>alert("x")</script>'
    item = {"path": 'a/"><img src=x onerror=alert(1)>.jpg', "box": None, "split": "train", "item": 0,
            "label": hostile, "label_name": hostile}
    result = {"dataset": "<b>ds</b>", "version": 1, "run": None, "model": "m", "size": 64, "images": 2, "classes": 2,
              "folds": 2, "out_of_fold_top1": 0.5,
              "label_issues": [{"rank": 1, "path": item["path"], "box": None, "split": "train", "item": 0,
                                "given": hostile, "given_name": hostile, "suggested": "</textarea><i>",
                                "suggested_name": "</textarea><i>", "score": 0.9, "label_quality": 0.1,
                                "given_probability": 0.1, "suggested_probability": 0.8}],
              "outliers": [{"rank": 1, **item, "score": 0.1, "distance": 2.0}],
              "conflicts": [{"similarity": 0.99, "a": item,
                             "b": {**item, "item": 1, "label": "ok", "label_name": "ok"}}]}
    return result


def test_the_gallery_escapes_hostile_names():
    page = render_issues_html(hostile_result(), thumbnails={0: "javascript:alert(1)", 1: "data:image/png;base64,AAAA"})
    assert page.count("<script>") == 1  # ours, at the end
    assert "<img src=x" not in page and "</textarea><i>" not in page and "<b>ds</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "javascript:" not in page and 'src="data:image/png;base64,AAAA"' in page


def test_cli_issues_json_and_relabel(shapes20, engine, tmp_path):
    from tests.test_cli import snapid

    home = Path(engine.url.database).parent
    errors = planted(engine, tmp_path)
    out = snapid("data", "issues", "shapes", "--model", "mobilenet_v2", "--size", "64", "--json",
                 "--html", str(tmp_path / "g.html"), home=home)
    result = json.loads(out.stdout)
    assert set(errors) <= {r["path"] for r in result["label_issues"]} and (tmp_path / "g.html").is_file()
    assert {"label_issues", "outliers", "conflicts", "out_of_fold_top1"} <= set(result)
    first = result["label_issues"][0]
    decisions = write_decisions(tmp_path / "d.csv", [{"path": first["path"], "action": "relabel",
                                                      "label": first["suggested"], "given": first["given"]}])
    done = json.loads(snapid("data", "relabel", "shapes", str(decisions), "--json", home=home).stdout)
    assert (done["version"], done["relabelled"]) == (3, 1)
    stale = snapid("data", "relabel", "shapes", str(decisions), home=home, check=False)  # given no longer holds
    assert stale.returncode == 1 and "column 'given'" in stale.stderr and str(decisions) in stale.stderr


def test_a_click_in_the_gallery_adds_its_decision_row(tmp_path):
    """In a real browser: one decision per photo (a second click replaces it), rows relabel reads, names as text."""
    from tests.serve.test_dashboard_browser import CHROMIUM, _need

    _need(CHROMIUM.exists(), f"{CHROMIUM} is not installed (Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    result = hostile_result()
    result["outliers"][0]["path"] = 'b/<img src=x onerror="window.pwned=1">.jpg'
    gallery = tmp_path / "gallery.html"
    gallery.write_text(render_issues_html(result, thumbnails={}), encoding="utf-8")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(gallery.as_uri())
            tile = page.locator("#label-issues .tile").first
            tile.locator("button", has_text="relabel").click()
            page.locator("#outliers .tile").first.locator("button", has_text="drop").click()
            tile.locator("button", has_text="keep").click()  # replaces the relabel of the same photo
            text = page.locator("#decision-rows").input_value()
            assert page.evaluate("window.pwned") is None
            assert "relabel" not in tile.locator("button.chosen").inner_text()
        finally:
            browser.close()
    rows = list(csv.DictReader(text.splitlines()))
    assert [(r["path"], r["action"], r["given"]) for r in rows] == [
        (result["label_issues"][0]["path"], "keep", '<script>alert("x")</script>'),
        (result["outliers"][0]["path"], "drop", '<script>alert("x")</script>')]


def test_a_run_lends_its_backbone_and_dataset_version(make_run, engine, home):
    from snapid.errors import UsageError

    run = make_run("tiny")
    result = find_issues("shapes", workspace=home, engine=engine, run=run)
    assert (result["run"], result["model"], result["version"], result["size"]) == ("tiny", "custom_cnn", 1, 32)
    assert result["images"] > 0 and 0 <= result["out_of_fold_top1"] <= 1
    with pytest.raises(UsageError, match="trained on dataset 'shapes'"):
        find_issues("other", workspace=home, engine=engine, run=run)
    with pytest.raises(UsageError, match="--model"):
        find_issues("shapes", workspace=home, engine=engine, run=run, model="mobilenet_v2")
