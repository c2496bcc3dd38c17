"""Annotation files ("sidecars") are read only when they are regular files inside the dataset root, within a size
cap (BAD_INPUTS, dataset row: "a symlink to /etc/passwd or outside the root ... links leaving the root are never
followed"). A FIFO must not block the import, a link to /dev/zero must not eat memory, and a link to a file outside
the root must not be read: each is refused with an error that names the file and says why, never read and never
passed over in silence.

The FIFO and /dev/zero reads run in a child process with a deadline and a 2 GiB address-space cap, so a regression
fails here instead of hanging the suite or filling the machine's memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from snapid.data.sources.files import inside_root, peek_sidecar, read_sidecar
from snapid.data.sources.formats import read_source
from snapid.errors import AnnotationError, UnsafeFile
from tests.data.test_sources import aihub_doc, coco_doc, img, voc_xml, write

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 20

CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from pathlib import Path
from snapid.data.sources.formats import read_source
from snapid.errors import DatasetError
path, fmt = Path(sys.argv[1]), sys.argv[2]
outcomes = []
for name in (["auto"] if path.is_dir() else []) + [fmt]:
    try:
        read_source(path, name)
        outcomes.append(["ok", ""])
    except DatasetError as exc:
        outcomes.append(["refused", exc.message])
    except BaseException as exc:
        outcomes.append(["crash", repr(exc)[:300]])
print(json.dumps(outcomes))
"""


def _voc(root: Path) -> tuple[Path, str, str]:
    img(root / "a.jpg")
    write(root / "a.xml", voc_xml("a.jpg", [("dog", 1, 1, 5, 5)]))
    return root, "voc", "a.xml"


def _voc_image_sets(root: Path) -> tuple[Path, str, str]:
    img(root / "JPEGImages" / "001.jpg")
    write(root / "Annotations" / "001.xml", voc_xml("001.jpg", [("dog", 1, 1, 5, 5)]))
    write(root / "ImageSets" / "Main" / "train.txt", "001\n")
    return root, "voc", "ImageSets/Main/train.txt"


def _yolo(root: Path, sidecar: str) -> tuple[Path, str, str]:
    img(root / "images" / "a.jpg")
    write(root / "labels" / "a.txt", "0 0.5 0.5 0.2 0.2\n")
    write(root / ("classes.txt" if sidecar == "classes.txt" else "data.yaml"),
          "cat\n" if sidecar == "classes.txt" else "names: [cat]\n")
    return root, "yolo", sidecar


def _aihub(root: Path) -> tuple[Path, str, str]:
    img(root / "a.png")
    write(root / "a.json", json.dumps(aihub_doc("a.png", 1, [0, 0, 5, 5])))
    return root, "aihub", "a.json"


def _coco(root: Path, given: str) -> tuple[Path, str, str]:
    img(root / "images" / "a.jpg")
    img(root / "images" / "b.jpg")
    where = "ann.json" if given == "file" else "annotations/instances.json"
    write(root / where, json.dumps(coco_doc(["a.jpg", "b.jpg"])))
    return (root / where if given == "file" else root), "coco", where


def _csv(root: Path, given: str) -> tuple[Path, str, str]:
    img(root / "a.jpg")
    write(root / "labels.csv", "path,label\na.jpg,cat\n")
    return (root / "labels.csv" if given == "file" else root), "csv", "labels.csv"


def _json(root: Path) -> tuple[Path, str, str]:
    img(root / "a.jpg")
    write(root / "labels.json", json.dumps([{"path": "a.jpg", "label": "cat"}]))
    return root / "labels.json", "json", "labels.json"


def _plantnet(root: Path) -> tuple[Path, str, str]:
    img(root / "images" / "train" / "9" / "p1.jpg")
    write(root / "plantnet300K_metadata.json", json.dumps({"p1": {"species_id": "9", "split": "train", "obs_id": "o"}}))
    return root, "plantnet", "plantnet300K_metadata.json"


LAYOUTS: dict[str, Callable[[Path], tuple[Path, str, str]]] = {
    "voc xml": _voc,
    "voc ImageSets list": _voc_image_sets,
    "yolo label file": lambda r: _yolo(r, "labels/a.txt"),
    "yolo data.yaml": lambda r: _yolo(r, "data.yaml"),
    "yolo classes.txt": lambda r: _yolo(r, "classes.txt"),
    "aihub json": _aihub,
    "coco file given": lambda r: _coco(r, "file"),
    "coco in a folder": lambda r: _coco(r, "folder"),
    "csv file given": lambda r: _csv(r, "file"),
    "csv in a folder": lambda r: _csv(r, "folder"),
    "json manifest": _json,
    "plantnet metadata": _plantnet,
}


def _build(tmp_path: Path, layout: str) -> tuple[Path, str, Path]:
    """The layout in tmp_path/data; returns (what to read, format, the sidecar file)."""
    path, fmt, sidecar = LAYOUTS[layout](tmp_path / "data")
    return path, fmt, tmp_path / "data" / sidecar


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_fifo_or_device_sidecar_never_blocks_or_fills_memory(tmp_path, layout, kind):
    path, fmt, sidecar = _build(tmp_path, layout)
    sidecar.unlink()
    if kind == "fifo":
        os.mkfifo(sidecar)
    else:
        os.symlink("/dev/zero", sidecar)
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), fmt], cwd=REPO, capture_output=True,
                              text=True, timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {layout} with a {kind} in place of {sidecar.name} did not finish in {DEADLINE_S} s")
    assert done.returncode == 0, done.stderr[-2000:]
    why = "a FIFO, not a regular file" if kind == "fifo" else "leads outside the dataset folder"
    for outcome, message in json.loads(done.stdout.splitlines()[-1]):   # format auto (a folder), then the named one
        assert outcome == "refused", message   # never MemoryError, an OSError traceback, or a silent skip
        assert message.startswith(f"{sidecar}: ") and why in message


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_sidecar_linked_outside_the_root_is_not_read(tmp_path, layout):
    path, fmt, sidecar = _build(tmp_path, layout)
    outside = tmp_path / "elsewhere" / sidecar.name
    outside.parent.mkdir()
    sidecar.rename(outside)   # the same, valid content: only its place is wrong
    os.symlink(outside, sidecar)
    with pytest.raises(AnnotationError) as err:
        read_source(path, fmt)
    assert sidecar.name in err.value.message and "outside the dataset folder" in err.value.message


def test_read_sidecar_checks(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ok.txt").write_bytes(b"12345")
    assert read_sidecar(root, root / "ok.txt", 5) == b"12345" and peek_sidecar(root, root / "ok.txt", 2) == b"12"
    with pytest.raises(UnsafeFile, match=r"ok\.txt: annotation file is 5 bytes, more than the 4 allowed"):
        read_sidecar(root, root / "ok.txt", 4)
    with pytest.raises(UnsafeFile, match=r"sub: a folder, not a regular file"):
        read_sidecar(root, root / "sub", 10)
    with pytest.raises(UnsafeFile, match=r"missing\.txt: cannot be read"):
        read_sidecar(root, root / "missing.txt", 10)
    os.symlink(root / "ok.txt", root / "sub" / "alias.txt")   # a link that stays inside is read
    assert read_sidecar(root, root / "sub" / "alias.txt", 10) == b"12345"
    os.symlink(tmp_path, root / "up")
    assert inside_root(root, "up/root/ok.txt") == os.path.realpath(root / "ok.txt")   # back inside through a link
    assert inside_root(root, "up/other.txt") is None and inside_root(root, "../x") is None
    assert inside_root(root, "/etc/passwd") is None and inside_root(str(root) + "2", str(root) + "/ok.txt") is None
