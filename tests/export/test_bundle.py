"""Bundle verification: any changed, extra or missing file, or a foreign manifest, is refused as a whole;
`.snapid` archives round-trip and cannot write outside their folder; pickles are never unpickled."""

from __future__ import annotations

import builtins
import hashlib
import json
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from snapid.errors import SnapidError
from snapid.export.bundle import BundleError, load_bundle
from snapid.export.from_run import export_run
from snapid.train.checkpoint import CheckpointError


@pytest.fixture
def exported(make_run, home, engine, tmp_path) -> Path:
    make_run("a", probe_epochs=1)
    export_run("a", tmp_path / "good", workspace=home, engine=engine, zip_=True)
    return tmp_path / "good"


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))


TAMPERING = {
    "flipped byte in model.onnx": (lambda b: _flip_byte(b / "model.onnx", 5000),
                                   "model.onnx: does not match the sha256"),
    "flipped byte in labels.json": (lambda b: _flip_byte(b / "labels.json", 20),
                                    "labels.json: does not match the sha256"),
    "same size, other labels": (lambda b: (b / "labels.json").write_text(
                                    (b / "labels.json").read_text().replace("disc", "dusc")),
                                "labels.json: does not match"),
    "extra file": (lambda b: (b / "model.bin").write_bytes(b"x"), "files not in the manifest: ['model.bin']"),
    "missing file": (lambda b: (b / "card.md").unlink(), "card.md: missing from the bundle"),
    "symlink in place of a file": (lambda b: ((b / "card.md").unlink(), (b / "card.md").symlink_to("/etc/hostname")),
                                   "card.md: missing from the bundle"),
    "TorchScript manifest": (lambda b: _edit_manifest(b, format="snapid-torchscript"),
                             "the server runs ONNX bundles only"),
    "foreign format": (lambda b: _edit_manifest(b, format="tflite-bundle"), "not a snapid bundle manifest"),
    "future format version": (lambda b: _edit_manifest(b, format_version=99), "bundle format 99 is not supported"),
    "unlisted name in the manifest": (lambda b: _edit_manifest(b, files={
                                          **json.loads((b / "manifest.json").read_text())["files"],
                                          "../x": {"sha256": "0", "bytes": 1}}),
                                      "unexpected file '../x'"),
    "no manifest": (lambda b: (b / "manifest.json").unlink(), "no manifest.json"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_a_tampered_bundle_is_refused(exported, tmp_path, case):
    assert load_bundle(exported).labels[0]["id"] == "disc"  # the untouched copy loads
    damage, expected = TAMPERING[case]
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    damage(copy)
    with pytest.raises(BundleError) as err:
        load_bundle(copy)
    assert expected in err.value.message and err.value.code == "bad_bundle"


def test_snapid_archive_round_trip(exported, tmp_path):
    archive = exported.with_name("good.snapid")
    folder = load_bundle(exported)
    unpack = tmp_path / "unpack"
    unpack.mkdir()
    opened = load_bundle(archive, unpack_to=unpack)
    assert opened.sha256 == folder.sha256 and opened.labels == folder.labels
    assert opened.file("model.onnx").read_bytes() == folder.file("model.onnx").read_bytes()
    assert opened.path.parent == unpack


def test_a_tampered_archive_is_refused_and_leaves_nothing_unpacked(exported, tmp_path):
    archive = exported.with_name("good.snapid")
    bad = tmp_path / "bad.snapid"
    with zipfile.ZipFile(archive) as src, zipfile.ZipFile(bad, "w") as dst:
        for entry in src.infolist():
            data = src.read(entry)
            dst.writestr(entry.filename,
                         data.replace(b"stripes", b"strides") if entry.filename == "labels.json" else data)
    unpack = tmp_path / "unpack"
    unpack.mkdir()
    with pytest.raises(BundleError, match="labels.json: does not match"):
        load_bundle(bad, unpack_to=unpack)
    assert list(unpack.iterdir()) == []


@pytest.mark.parametrize("member", ["../x", "/tmp/x", "sub/model.onnx"])
def test_an_archive_with_a_path_member_is_refused(exported, tmp_path, member):
    evil = tmp_path / "evil" / "evil.snapid"
    evil.parent.mkdir()
    with zipfile.ZipFile(exported.with_name("good.snapid")) as src, zipfile.ZipFile(evil, "w") as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry))
        dst.writestr(member, b"owned")
    unpack = tmp_path / "evil" / "unpack"
    unpack.mkdir()
    with pytest.raises(BundleError, match="unexpected entry"):
        load_bundle(evil, unpack_to=unpack)
    assert not (tmp_path / "evil" / "x").exists() and list(unpack.iterdir()) == []


def test_a_new_export_replaces_the_old_bundle_but_never_a_foreign_folder(exported, home, engine, tmp_path):
    from snapid.evaluate.calibrate import calibrate_run

    before = load_bundle(exported)
    # something real changed since the first export
    calibrate_run("a", workspace=home, engine=engine, target_coverage=0.7)
    after = export_run("a", exported, workspace=home, engine=engine)
    assert after.path == exported and load_bundle(exported).sha256 == after.sha256 != before.sha256
    assert after.calibration["target_coverage"] == 0.7 and before.calibration["target_coverage"] != 0.7
    assert not [p.name for p in exported.parent.iterdir() if p.name.startswith(".good")]  # no staging folders left
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(BundleError, match="is not a snapid bundle"):
        export_run("a", foreign, workspace=home, engine=engine)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


# --- pickles -----------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates ``marker``: proof that pickled code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _malicious_pth(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"weight": torch.zeros(1)}, "extra": _Payload(marker)}, path)
    return path


def test_the_payload_really_runs_when_unpickled(tmp_path):
    """Control: the file used below does run code under plain pickle, so the refusals are meaningful."""
    marker = tmp_path / "control-marker"
    evil = _malicious_pth(tmp_path / "evil.pth", marker)
    code = f"import torch; torch.load({str(evil)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert marker.exists()


def test_a_pickle_in_place_of_checkpoint_weights_is_never_unpickled(make_run, home, engine, tmp_path):
    make_run("a", probe_epochs=1)
    marker = tmp_path / "marker"
    folder = home.runs / "a"
    meta = json.loads((folder / "best.json").read_text())
    evil = _malicious_pth(folder / "best-evil.pth", marker)
    blob = evil.read_bytes()
    # the attacker also fixes the recorded sha256, so only the file format stands in the way
    meta.update(weights_file=evil.name, weights_sha256=hashlib.sha256(blob).hexdigest())
    (folder / "best.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="best-evil.pth: unreadable"):
        export_run("a", tmp_path / "out", workspace=home, engine=engine)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_pickle_passed_as_weights_is_refused_unrun(make_run, tmp_path):
    marker = tmp_path / "marker"
    evil = _malicious_pth(tmp_path / "weights.pth", marker)
    with pytest.raises(SnapidError) as err:
        make_run("w", weights=evil)
    assert err.value.code == "bad_weights" and "weights.pth: refused" in err.value.message
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # and torch's own safe loader agrees
        torch.load(evil, weights_only=True)
    assert not marker.exists()
