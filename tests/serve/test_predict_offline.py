"""Offline prediction (`snapid.load(...).predict`, `snapid predict`): the server's own decode → preprocess →
model → answer path without HTTP, so the same photo gets the same probabilities as POST /api/v1/predict;
files, folders, globs, PIL images and arrays; unreadable files reported in their rows, never fatal."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import snapid
from snapid.cli import app
from snapid.config import Settings
from snapid.errors import NotFound, UsageError
from snapid.inference import expand_paths, load
from snapid.serve.app import create_app
from tests.serve.conftest import GREEN, RED, coloured, files, make_bundle
from tests.webapp.conftest import knowledge_bundle

ROOT = Path(__file__).resolve().parents[2]
BLUE = (40, 60, 220)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def photos(tmp_path) -> Path:
    """photos/red.jpg, photos/sub/green.png, photos/sub/deeper/blue.jpg, plus files that are not photos."""
    root = tmp_path / "photos"
    write(root / "red.jpg", coloured(RED))
    write(root / "sub" / "green.png", coloured(GREEN, fmt="PNG"))
    write(root / "sub" / "deeper" / "blue.jpg", coloured(BLUE))
    write(root / "notes.txt", b"not a photo")
    write(root / ".hidden" / "x.jpg", coloured(RED))
    return root


def scores(predictions) -> dict[str, float]:
    """{class id: score} from API predictions or from an Answer's top."""
    if predictions and isinstance(predictions[0], dict):
        return {p["id"]: p["score"] for p in predictions}
    return {label: score for label, _, score in predictions}


# --- the library -------------------------------------------------------------------------------------
def test_files_folders_and_globs_are_expanded(photos):
    assert expand_paths([photos]) == [photos / "red.jpg", photos / "sub" / "deeper" / "blue.jpg",
                                      photos / "sub" / "green.png"]
    assert expand_paths([str(photos / "**" / "*.jpg")]) == [photos / "red.jpg", photos / "sub" / "deeper" / "blue.jpg"]
    # a file named explicitly is always tried (the decoder decides); duplicates dropped; no match is kept to be reported
    named = expand_paths([photos / "notes.txt", photos / "red.jpg", photos, str(photos / "nothing*.jpg")])
    assert named[:2] == [photos / "notes.txt", photos / "red.jpg"] and len(named) == 5
    assert named[-1] == photos / "nothing*.jpg"


def test_paths_pil_images_and_arrays_are_identified(bundle, photos):
    model = snapid.load(bundle)
    red = np.asarray(Image.open(photos / "red.jpg").convert("RGB"))
    grey = np.full((40, 40), 128, np.uint8)
    rgba = np.dstack([np.asarray(Image.open(photos / "sub" / "green.png").convert("RGB")),
                      np.full((48, 64), 255, np.uint8)])
    items = [str(photos / "red.jpg"), photos / "sub" / "green.png", Image.open(photos / "sub" / "deeper" / "blue.jpg"),
             red, grey, rgba]
    answers = model.predict(items, top_k=2)
    assert [a.label for a in answers[:4]] == ["red", "green", "blue", "red"] and answers[5].label == "green"
    assert [a.photo for a in answers] == list(range(6)) and all(a.ok and len(a.top) == 2 for a in answers)
    assert (answers[0].source == str(photos / "red.jpg") and answers[2].source == "<image 2>"
            and answers[3].source == "<array 3>")
    assert answers[0].name == "Red thing" and answers[0].score == answers[0].top[0][2] and not answers[0].unknown
    assert max(scores(answers[4].top).values()) < 0.5   # equal channels: no class stands out
    # a single item gives a list of one; an N x H x W x 3 array is N photos
    assert [a.label for a in model.predict(photos / "red.jpg")] == ["red"]
    assert [a.label for a in model.predict(np.stack([red, red]))] == ["red", "red"]
    with pytest.raises(UsageError, match="float32"):
        model.predict([red.astype(np.float32)])
    with pytest.raises(UsageError, match="mode 'sideways'.*each, one, detect"):
        model.predict([red], mode="sideways")
    with pytest.raises(UsageError, match="no detector"):
        model.predict([red], mode="detect")


def test_unreadable_files_are_answered_with_their_reason_in_order(bundle, photos, tmp_path):
    good = photos / "red.jpg"
    truncated = write(tmp_path / "bad" / "truncated.jpg", good.read_bytes()[:300])
    text = write(tmp_path / "bad" / "text.jpg", b"<html>not an image</html>")
    empty = write(tmp_path / "bad" / "empty.png", b"")
    tiny = write(tmp_path / "bad" / "tiny.png", coloured(RED, size=(8, 8), fmt="PNG"))
    answers = snapid.load(bundle).predict([good, truncated, text, tmp_path / "missing.jpg", empty, tiny, tmp_path,
                                           good])
    assert [a.ok for a in answers] == [True, False, False, False, False, False, False, True]
    assert [a.error.split(":")[0] for a in answers[1:7]] == ["corrupt_image", "unsupported_image", "not_found",
                                                              "empty_file", "image_too_small", "not_a_file"]
    assert str(truncated) not in answers[1].error   # the row names the file; the reason does not repeat it
    assert answers[2].source == str(text) and answers[2].label is None and answers[2].top == ()


def test_batches_and_threads_do_not_change_the_answers(bundle, photos):
    items = [photos / "red.jpg", photos / "sub" / "green.png", photos / "sub" / "deeper" / "blue.jpg"] * 3
    seen = []
    small = load(bundle, batch_size=2, threads=1).predict(items,
                                                          progress=lambda done, total: seen.append((done, total)))
    large = load(bundle, batch_size=32, threads=3).predict(items)
    for a, b in zip(small, large, strict=True):
        assert a.label == b.label and scores(a.top) == pytest.approx(scores(b.top), abs=1e-6)
    assert seen[0] == (0, 9) and seen[-1] == (9, 9) and len(seen) >= 5


def test_same_probabilities_and_names_as_the_http_api(home, tmp_path, photos):
    bundle = knowledge_bundle(tmp_path / "bundles" / "colours", temperature=1.7, threshold=0.6)
    paths = [photos / "red.jpg", photos / "sub" / "green.png", photos / "sub" / "deeper" / "blue.jpg"]
    model = snapid.load(bundle)
    offline = model.predict(paths, top_k=3, lang="ko")
    together = model.predict(paths[:2], top_k=3, lang="ko", mode="one")
    with TestClient(create_app(Settings(home=home.home, reload_poll_s=0), bundle=bundle)) as client:
        for path, answer in zip(paths, offline, strict=True):
            body = client.post("/api/v1/predict?k=3&lang=ko", files=files(path.read_bytes(), name=path.name)).json()
            assert scores(answer.top) == pytest.approx(scores(body["predictions"]), abs=1e-6)
            assert [name for _, name, _ in answer.top] == [p["display_name"] for p in body["predictions"]]
            assert answer.unknown == body["unknown"]
        same = client.post("/api/v1/predict?k=3&lang=ko&mode=same",
                           files=files(*(p.read_bytes() for p in paths[:2]))).json()
    assert offline[0].name == "빨간 알약"    # the knowledge card's name in the asked language
    [combined] = together
    assert combined.photo is None and combined.source == f"{paths[0]}; {paths[1]}"
    assert scores(combined.top) == pytest.approx(scores(same["predictions"]), abs=1e-6)
    assert combined.unknown == same["unknown"]


def test_one_mode_combines_the_readable_photos_and_lists_the_others(bundle, photos, tmp_path):
    bad = write(tmp_path / "bad.jpg", b"garbage")
    model = snapid.load(bundle)
    answers = model.predict([photos / "red.jpg", bad, photos / "red.jpg"], mode="one")
    assert [a.ok for a in answers] == [True, False] and answers[1].photo == 1
    alone = model.predict([photos / "red.jpg"], mode="one")[0]
    assert scores(answers[0].top) == pytest.approx(scores(alone.top), abs=1e-6)


def test_a_snapid_file_loads_as_the_folder_does(bundle, photos, tmp_path):
    from snapid.export.bundle import zip_bundle

    archive = zip_bundle(bundle, tmp_path / "colours.snapid")
    folder, packed = snapid.load(bundle), snapid.load(archive)
    assert packed.sha256 == folder.sha256 and packed.labels == ["red", "green", "blue"]
    assert packed.predict(photos / "red.jpg")[0].top == folder.predict(photos / "red.jpg")[0].top


def test_detect_mode_answers_every_object_as_the_api_does(home, tmp_path):
    from tests.detect_serve.conftest import squares_photo
    from tests.detect_serve.test_two_stage import BOXES, black_photo, detector_bundle

    bundle = detector_bundle(tmp_path / "bundles" / "det")
    squares, dark = write(tmp_path / "squares.png", squares_photo()), write(tmp_path / "dark.png", black_photo())
    answers = snapid.load(bundle).predict([squares, dark, tmp_path / "gone.png"], mode="detect")
    assert [(a.photo, a.label) for a in answers[:2]] == [(0, "red"), (0, "green")]
    assert answers[2].photo == 1 and answers[2].box is None and answers[2].ok   # nothing found: the whole photo
    assert answers[3].photo == 2 and answers[3].error.startswith("not_found")
    with TestClient(create_app(Settings(home=home.home, reload_poll_s=0), bundle=bundle)) as client:
        found = client.post("/api/v1/predict", files=files(squares.read_bytes(), name="p.png")).json()["objects"]
        whole = client.post("/api/v1/predict", files=files(dark.read_bytes(), name="d.png")).json()
    for answer, obj, expected in zip(answers[:2], found, BOXES, strict=True):
        assert list(answer.box) == obj["box"] == pytest.approx(list(expected), abs=0.02)
        assert answer.detector_score == obj["detector_score"]
        assert scores(answer.top) == pytest.approx(scores(obj["predictions"]), abs=1e-6)
    assert scores(answers[2].top) == pytest.approx(scores(whole["predictions"]), abs=1e-6)


# --- what a source names -----------------------------------------------------------------------------
def test_a_run_name_loads_its_newest_exported_bundle(engine, home, tmp_path, photos):
    from snapid.track import runs as track
    from snapid.track.db import transaction

    with transaction(engine) as s:
        track.create_run(s, name="quick", dataset="colours", dataset_version=1, model="tiny", config={}, run_dir="",
                         monitor="top1")
    with pytest.raises(NotFound, match=r"run 'quick' has no exported bundle yet: run `snapid export quick` first"):
        load("quick", home=home.home)
    with pytest.raises(NotFound, match=r"'nosuchrun' is not a bundle folder.*snapid runs list"):
        load("nosuchrun", home=home.home)
    with pytest.raises(NotFound, match="no such bundle"):
        load(str(tmp_path / "nowhere" / "bundle"), home=home.home)
    for version in ("1", "2"):   # exported twice: the record points at the newest
        bundle = make_bundle(tmp_path / "exports" / f"v{version}", version=version)
        with transaction(engine) as s:
            track.record_artifact(s, name="quick", kind="bundle", path=str(bundle), sha256="", meta={"archive": None})
    model = load("quick", home=home.home)
    assert model.version == "2" and model.path == tmp_path / "exports" / "v2"
    assert model.predict(photos / "red.jpg")[0].label == "red"


def test_a_bundle_folder_named_after_a_run_in_the_workspace_loads(home, tmp_path):
    make_bundle(home.bundles / "colours-run")
    assert load("colours-run", home=home.home).name == "colours"


def test_the_library_path_imports_no_torch(bundle, photos):
    script = textwrap.dedent(f"""
        import json, sys
        import snapid
        light = sorted(m for m in ("numpy", "onnxruntime", "torch", "snapid.inference") if m in sys.modules)
        answers = snapid.load({str(bundle)!r}).predict([{str(photos / "red.jpg")!r}])
        heavy = sorted(m for m in ("torch", "torchvision", "timm", "kornia", "fastapi") if m in sys.modules)
        from snapid.cli import app
        app(["predict", {str(bundle)!r}, {str(photos)!r}, "--json"], standalone_mode=False)
        cli = sorted(m for m in ("torch", "torchvision", "timm", "kornia") if m in sys.modules)
        print(json.dumps({{"light": light, "heavy": heavy, "cli": cli, "label": answers[0].label}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"light": [], "heavy": [], "cli": [], "label": "red"}


# --- the command -------------------------------------------------------------------------------------
def run_cli(*args: str):
    return CliRunner().invoke(app, ["predict", *map(str, args)], env={"COLUMNS": "200"})


def test_cli_json_reports_every_row_and_counts_the_unreadable(bundle, photos, tmp_path):
    corrupt = write(tmp_path / "corrupt.jpg", (photos / "red.jpg").read_bytes()[:200])
    result = run_cli(bundle, photos, corrupt, photos / "notes.txt", "--json", "--top-k", "2")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["bundle"] == str(bundle) and doc["photos"] == 5 and doc["failed"] == 2 and doc["images_per_s"] > 0
    rows = {Path(r["path"]).name: r for r in doc["rows"]}
    assert [rows[n]["label"] for n in ("red.jpg", "green.png", "blue.jpg")] == ["red", "green", "blue"]
    assert rows["red.jpg"]["top"][0] == {"label": "red", "name": "Red thing", "score": rows["red.jpg"]["score"]}
    assert len(rows["red.jpg"]["top"]) == 2 and rows["red.jpg"]["error"] is None
    assert rows["corrupt.jpg"]["error"].startswith("corrupt_image") and rows["corrupt.jpg"]["label"] is None
    assert rows["notes.txt"]["error"].startswith("unsupported_image")


def test_cli_csv_is_written_whole(bundle, photos, tmp_path):
    out = tmp_path / "out" / "answers.csv"
    out.parent.mkdir()
    result = run_cli(bundle, str(photos / "**" / "*.jpg"), tmp_path / "missing.png", "--csv", out, "--lang", "ko")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == ["path", "label", "name", "score", "unknown", "top", "error"]
    assert [(Path(r["path"]).name, r["label"]) for r in rows] == [("red.jpg", "red"), ("blue.jpg", "blue"),
                                                                  ("missing.png", "")]
    assert (rows[0]["name"] == "빨강" and rows[0]["unknown"] == "false"
            and rows[0]["top"].startswith(f"red:{rows[0]['score']};"))
    assert len(rows[0]["top"].split(";")) == 3 and rows[2]["error"] == "not_found: no such file"
    assert "1 could not be read (1 not_found)" in result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["answers.csv"]    # no temporary file left


def test_cli_table_is_bounded(bundle, tmp_path):
    folder = tmp_path / "many"
    for i in range(53):
        write(folder / f"p{i:02d}.jpg", coloured(RED if i % 2 else GREEN, size=(40, 32)))
    result = run_cli(bundle, folder)
    assert result.exit_code == 0, result.output
    assert "p49.jpg" in result.stdout and "p50.jpg" not in result.stdout and "… 3 more; use --csv" in result.stdout
    assert "53 photos, 0 could not be read" in result.stderr


def test_cli_fails_only_when_nothing_could_be_read_or_the_bundle_is_bad(bundle, tmp_path):
    bad = write(tmp_path / "bad.jpg", b"nope")
    result = run_cli(bundle, bad, "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["failed"] == 1
    assert "none of the 1 photos could be read" in str(result.exception)
    (bundle / "labels.json").write_text("{}")   # no longer the file the manifest pins
    broken = run_cli(bundle, bad)
    assert broken.exit_code == 1 and "labels.json" in str(broken.exception)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no photos found" in str(run_cli(make_bundle(tmp_path / "b2"), empty).exception)


def test_cli_mode_choices_are_listed(bundle, photos):
    result = run_cli(bundle, photos, "--mode", "sideways")
    assert result.exit_code == 2 and "each" in result.output and "detect" in result.output
    one = run_cli(bundle, photos / "red.jpg", photos / "red.jpg", "--mode", "one", "--json")
    assert one.exit_code == 0 and len(json.loads(one.stdout)["rows"]) == 1


def test_the_cli_errors_name_the_missing_export(home, engine, photos):
    from snapid.track import runs as track
    from snapid.track.db import transaction

    with transaction(engine) as s:
        track.create_run(s, name="fresh", dataset="d", dataset_version=1, model="m", config={}, run_dir="",
                         monitor="top1")
    out = subprocess.run([sys.executable, "-m", "snapid", "predict", "fresh", str(photos)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "SNAPID_HOME": str(home.home)})
    assert out.returncode == 1 and "snapid export fresh" in out.stderr and "Traceback" not in out.stderr
