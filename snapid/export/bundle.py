"""The model bundle: one folder (or one `.snapid` zip) that holds everything serving needs, with the
sha256 of every file in `manifest.json`. Loading verifies every hash, so a model can never be paired
with the wrong labels, and a damaged or tampered bundle is refused as a whole.

This module is on the serving path: it must not import torch.

Files:
  model.onnx        input "images": N x 3 x S x S float32, normalised; output "logits": N x C
                    (softmax(logits / temperature) are the calibrated probabilities); optional outputs
                    "embedding" (N x D pooled features) and "cam" (N x C x h x w class activation maps, when the
                    manifest's "explain" says available; snapid/export/explain.py)
  labels.json       {"classes": [{"index", "id", "name", "display_names": {lang: text}}]}
  preprocess.json   {"size", "resize", "mean", "std", "crop_boxes", "pad"}
  calibration.json  {"temperature", "threshold"}: scores under threshold answer "unknown"
  card.md           the model card (data, metrics, intended use)
  knowledge.json    optional: knowledge cards and rules snapshot
  detector.onnx, detector.json   optional: a box detector run before the classifier
  references.json, references.npy, references.jpg   optional: reference photos per class, their thumbnails
                    and embeddings (model.onnx's optional output "embedding"); see snapid/export/references.py
  references_held_out.npy   optional: embeddings of validation photos, for `snapid add-class`
  subsets.json      optional: named candidate subsets {"subsets": {name: [class id, ...]}}

`snapid export --format torchscript` writes the same folder with model.pt (a TorchScript archive) in
place of model.onnx and format "snapid-torchscript": a hand-off to torch users, verified the same way,
but not servable; load_bundle refuses it unless asked for that format.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from snapid import __version__
from snapid.errors import SnapidError

FORMAT = "snapid-bundle"
FORMAT_VERSION = 1
TORCHSCRIPT_FORMAT = "snapid-torchscript"
REQUIRED = ("model.onnx", "labels.json", "preprocess.json", "calibration.json", "card.md")
FORMATS = {FORMAT: REQUIRED, TORCHSCRIPT_FORMAT: ("model.pt", *REQUIRED[1:])}  # format → required files
OPTIONAL = ("knowledge.json", "detector.onnx", "detector.json", "references.json", "references.npy", "references.jpg",
            "references_held_out.npy", "subsets.json")
MANIFEST = "manifest.json"
MAX_FILE_BYTES = 2 << 30      # one model file
MAX_JSON_BYTES = 64 << 20     # labels, knowledge: generous, but bounded
_CHUNK = 1 << 20


class BundleError(SnapidError):
    code = "bad_bundle"
    status = 422


@dataclass(frozen=True)
class Bundle:
    path: Path                 # the folder (a `.snapid` file is unpacked first)
    manifest: dict
    labels: list[dict]
    preprocess: dict
    calibration: dict
    knowledge: dict | None
    sha256: str                # digest of manifest.json, which pins every other file
    subsets: dict | None = None  # subsets.json: {"subsets": {name: [class id, ...]}} (candidate subsets)

    @property
    def name(self) -> str:
        return self.manifest.get("name", "")

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise BundleError(f"{self.path}: the bundle has no {name}")
        return self.path / name

    @property
    def has_detector(self) -> bool:
        return "detector.onnx" in self.manifest["files"]


def _sha_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_bundle(out: Path, files: dict[str, bytes], *, info: dict, fmt: str = FORMAT) -> Bundle:
    """Write a complete bundle folder at ``out``, atomically: it is built beside ``out`` and swapped in,
    so a server watching ``out`` never sees half a bundle. ``info`` (name, version, run, metrics...)
    goes into manifest.json; ``fmt`` is FORMAT (servable ONNX) or TORCHSCRIPT_FORMAT."""
    out = Path(out)
    required = FORMATS[fmt]
    missing = [n for n in required if n not in files]
    unknown = [n for n in files if n not in required + OPTIONAL]
    if missing or unknown:
        raise BundleError(f"bundle {out}: missing {missing}, unknown {unknown}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, data in files.items():
            _fsync_write(staging / name, data)
        manifest = {"format": fmt, "format_version": FORMAT_VERSION, "snapid_version": __version__,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"), **info,
                    "files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)}
                              for n, d in sorted(files.items())}}
        _fsync_write(staging / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1).encode())
        os.chmod(staging, 0o755)
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_bundle(out, formats=(fmt,))


def _swap_in(staging: Path, out: Path) -> None:
    if not out.exists():
        os.replace(staging, out)
        return
    if not (out / MANIFEST).exists() and any(out.iterdir()):
        raise BundleError(f"{out} exists and is not a snapid bundle; choose another --out")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.replace(out, old / "b")   # two renames: a reader sees the old bundle or the new, never a mix
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def zip_bundle(folder: Path, out_file: Path) -> Path:
    """One `.snapid` file (a zip of the verified folder), written atomically."""
    bundle = load_bundle(folder, formats=tuple(FORMATS))
    out_file = Path(out_file)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_file.name}.", dir=out_file.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in [MANIFEST, *bundle.manifest["files"]]:
                zf.write(bundle.path / name, arcname=name)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out_file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_file


def _unzip(path: Path, into: Path | None) -> Path:
    """Unpack a `.snapid` file: flat names from the allowed list only, sizes bounded."""
    allowed = {name for required in FORMATS.values() for name in required} | set(OPTIONAL) | {MANIFEST}
    target = Path(tempfile.mkdtemp(prefix="snapid-bundle-", dir=into))
    try:
        with zipfile.ZipFile(path) as zf:
            for entry in zf.infolist():
                if entry.filename not in allowed or entry.is_dir():
                    raise BundleError(f"{path}: unexpected entry {entry.filename!r}; not a snapid bundle")
                if entry.file_size > MAX_FILE_BYTES:
                    raise BundleError(f"{path}: {entry.filename} is larger than {MAX_FILE_BYTES} bytes")
                with zf.open(entry) as src, open(target / entry.filename, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise BundleError(f"{path}: not a readable .snapid file ({exc})") from None
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _read_json(path: Path, limit: int = MAX_JSON_BYTES):
    if path.stat().st_size > limit:
        raise BundleError(f"{path}: larger than {limit} bytes")
    try:
        return json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None


def load_bundle(path: Path | str, *, unpack_to: Path | None = None, formats: tuple[str, ...] = (FORMAT,)) -> Bundle:
    """Open and verify a bundle folder or `.snapid` file. Every listed file must exist with its size
    and sha256; no unlisted file may be present; otherwise BundleError and nothing is used.
    ``formats``: the manifest formats accepted (default: the servable ONNX bundle only)."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such bundle", code="not_found", status=404)
    if not path.is_file():
        return _verified(path, formats)
    unpacked = _unzip(path, unpack_to)
    try:
        return _verified(unpacked, formats)
    except BaseException:  # a refused .snapid leaves no unpacked copy behind
        shutil.rmtree(unpacked, ignore_errors=True)
        raise


def _verified(path: Path, formats: tuple[str, ...]) -> Bundle:
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise BundleError(f"{path}: no {MANIFEST}; not a snapid bundle (make one with `snapid export`)")
    manifest_bytes = manifest_file.read_bytes()
    manifest = _read_json(manifest_file)
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise BundleError(f"{manifest_file}: not a snapid bundle manifest")
    if manifest["format"] not in formats:
        raise BundleError(f"{path}: a {manifest['format']} export, not a {' or '.join(formats)} bundle"
                          + ("; the server runs ONNX bundles only: export again without --format torchscript"
                             if manifest["format"] == TORCHSCRIPT_FORMAT else ""))
    required = FORMATS[manifest["format"]]
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{manifest_file}: bundle format {manifest.get('format_version')} is not supported "
                          f"by snapid {__version__} (expects {FORMAT_VERSION})")
    listed = manifest.get("files") or {}
    if not isinstance(listed, dict) or not all(isinstance(f, dict) for f in listed.values()):
        raise BundleError(f"{manifest_file}: 'files' must map each file name to its sha256 and size")
    for name in required:
        if name not in listed:
            raise BundleError(f"{path}: the manifest does not list {name}")
    present = {p.name for p in path.iterdir()} - {MANIFEST}  # dotfiles too: ONNX may load any file beside the model
    if present - set(listed):
        raise BundleError(f"{path}: files not in the manifest: {sorted(present - set(listed))}; a bundle holds only "
                          "the files its manifest lists (with their sha256): remove these, or export again")
    for name, facts in listed.items():
        if name not in required + OPTIONAL:
            raise BundleError(f"{path}: the manifest lists an unexpected file {name!r}")
        file = path / name
        if not file.is_file() or file.is_symlink():
            raise BundleError(f"{file}: missing from the bundle")
        if file.stat().st_size != facts.get("bytes") or _sha_file(file) != facts.get("sha256"):
            raise BundleError(f"{file}: does not match the sha256 in {MANIFEST}; the bundle is damaged or was modified")
    labels_doc = _read_json(path / "labels.json")
    labels = labels_doc.get("classes") if isinstance(labels_doc, dict) else None
    if not isinstance(labels, list) or not labels:
        raise BundleError(f"{path / 'labels.json'}: no classes")
    knowledge = _read_json(path / "knowledge.json") if "knowledge.json" in listed else None
    subsets = _read_json(path / "subsets.json") if "subsets.json" in listed else None
    preprocess, calibration = _read_json(path / "preprocess.json"), _read_json(path / "calibration.json")
    for name, doc in (("preprocess.json", preprocess), ("calibration.json", calibration)):
        if not isinstance(doc, dict):
            raise BundleError(f"{path / name}: expected a JSON object")
    return Bundle(path=path, manifest=manifest, labels=labels, preprocess=preprocess,
                  calibration=calibration, knowledge=knowledge,
                  sha256=hashlib.sha256(manifest_bytes).hexdigest(), subsets=subsets)
