"""A bundle whose hashes are right but whose JSON has the wrong shape is refused as BundleError
(not an AttributeError that would kill the server's reload watcher)."""

from __future__ import annotations

import hashlib
import json

import pytest

from snapid.export.bundle import MANIFEST, BundleError, load_bundle, write_bundle

FILES = {"model.onnx": b"not parsed here", "labels.json": b'{"classes": [{"index": 0, "id": "a", "name": "a"}]}',
         "preprocess.json": b"{}", "calibration.json": b"{}", "card.md": b"# card"}


def rewrite(folder, name: str, data: bytes) -> None:
    """Replace one file and fix its hash in the manifest, as a careless tool would."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("name,data", [("labels.json", b"[]"), ("labels.json", b'{"classes": {}}'),
                                       ("preprocess.json", b"[1, 2]"), ("calibration.json", b'"x"')])
def test_wrong_json_shapes_are_refused(tmp_path, name, data):
    bundle = write_bundle(tmp_path / "b", dict(FILES), info={"name": "t"})
    rewrite(bundle.path, name, data)
    with pytest.raises(BundleError):
        load_bundle(bundle.path)


def test_a_files_list_instead_of_a_mapping_is_refused(tmp_path):
    bundle = write_bundle(tmp_path / "b", dict(FILES), info={"name": "t"})
    manifest = json.loads((bundle.path / MANIFEST).read_text())
    manifest["files"] = list(manifest["files"])
    (bundle.path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="files"):
        load_bundle(bundle.path)
