"""Pl@ntNet-300K: ``images/{train,val,test}/<species_id>/<image_id>.jpg`` plus metadata and species names.

Metadata (``plantnet300K_metadata.json``: image id → {species_id, split, obs_id, ...}, or any
``*metadata*.json/.csv``) gives each image its observation id, used as the group so that photos of
one plant never straddle splits. Species ids stay strings ("1355936", "0012"): never int().
The folder an image sits in wins over the metadata; disagreements are counted in a note.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from snapid.data.manifest import ClassInfo, Entry, normalize_split
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.common import (
    count_note,
    is_candidate,
    load_csv,
    load_json,
    require_dir,
    split_name,
    walk_files,
)
from snapid.data.sources.files import present
from snapid.errors import AnnotationError

METADATA_NAME = "plantnet300K_metadata.json"
NAMES_FILES = ("plantnet300K_species_id_2_name.json", "plantnet300K_species_names.json")
ID_KEYS = ("id", "image_id", "image_name", "image", "file_name", "filename")
Meta = tuple[str | None, str | None, str | None]   # species_id, split, obs_id


def find_metadata(root: Path) -> Path | None:
    if present(root / METADATA_NAME):
        return root / METADATA_NAME
    hits = [p for p in sorted(root.iterdir()) if present(p) and "metadata" in p.name.lower()
            and p.suffix.lower() in (".json", ".csv")]
    return hits[0] if hits else None


def find_names(root: Path) -> Path | None:
    for name in NAMES_FILES:
        if present(root / name):
            return root / name
    hits = [p for p in sorted(root.iterdir()) if present(p) and "species" in p.name.lower()
            and "metadata" not in p.name.lower() and p.suffix.lower() in (".json", ".csv")]
    return hits[0] if hits else None


def _text(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def _meta(file: Path, key: str, record: dict) -> Meta:
    try:
        split = normalize_split(_text(record.get("split")))
    except ValueError as exc:
        raise AnnotationError(f"{file}: image {key!r}: {exc}") from None
    return _text(record.get("species_id")), split, _text(record.get("obs_id"))


def _stem(value: Any) -> str:
    return posixpath.splitext(posixpath.basename(str(value).replace("\\", "/")))[0]


def load_metadata(root: Path, file: Path) -> dict[str, Meta]:
    """image id (file stem) → (species_id, split, obs_id)."""
    if file.suffix.lower() == ".csv":
        rows = load_csv(root, file)
        header = [c.lower() for c in rows[0][1]] if rows else []
        id_col = next((header.index(k) for k in ID_KEYS if k in header), None)
        if id_col is None:
            raise AnnotationError(f"{file}: no image id column ({', '.join(ID_KEYS)}); "
                                  f"columns found: {', '.join(header)}")
        # strict=False: a row shorter than the header leaves its last columns out, a longer one its extra cells
        records = [(_stem(cells[id_col]), dict(zip(header, cells, strict=False))) for _, cells in rows[1:]]
    else:
        data = load_json(root, file)
        if isinstance(data, dict):
            records = [(_stem(k), v) for k, v in data.items()]
        elif isinstance(data, list):
            records = [(_stem(next((r[k] for k in ID_KEYS if k in r), "")), r) for r in data if isinstance(r, dict)]
        else:
            raise AnnotationError(f"{file}: expected an object mapping image ids to metadata")
    return {key: _meta(file, key, rec) for key, rec in records if key and isinstance(rec, dict)}


def load_names(root: Path, file: Path) -> dict[str, str]:
    """species id → scientific name, in the file's order."""
    if file.suffix.lower() == ".csv":
        rows = load_csv(root, file)
        start = 1 if rows and not rows[0][1][0].strip().isdigit() else 0   # a header row, or not
        return {cells[0]: cells[1] if len(cells) > 1 else cells[0] for _, cells in rows[start:]}
    data = load_json(root, file)
    if not isinstance(data, dict):
        raise AnnotationError(f"{file}: expected an object mapping species ids to names")
    return {str(k): str(v) for k, v in data.items()}


def scan(root: Path) -> tuple[Path, list[tuple[str, str | None, str | None]]]:
    """(images folder, [(relative path, folder split, folder species)]) for every candidate file."""
    images = root / "images" if (root / "images").is_dir() else root
    found = []
    for rel in walk_files(images):
        if not is_candidate(rel):
            continue
        parts = rel.split("/")
        split = split_name(parts[0]) if len(parts) > 1 else None
        rest = parts[1:] if split else parts
        if images == root and not split and len(rest) < 2:
            continue   # a loose file in the root (README, licence...) rather than an image
        species = rest[0] if len(rest) >= 2 else None
        prefix = "" if images == root else "images/"
        found.append((prefix + rel, split, species))
    return images, found


def build_classes(labels: set[str], names: dict[str, str] | None, notes: list[str]) -> list[ClassInfo]:
    """Names-file order for the species present, then any others sorted as strings."""
    if names is None:
        return [ClassInfo(s, s) for s in sorted(labels)]
    ordered = [ClassInfo(s, names[s]) for s in names if s in labels]
    extra = sorted(labels - set(names))
    notes += count_note(extra, "species not in the names file")
    if len(names) > len(ordered):
        notes.append(f"{len(names) - len(ordered)} species in the names file have no images and are left out")
    return ordered + [ClassInfo(s, s) for s in extra]


def read(path: Path, options: ReadOptions) -> Source:
    require_dir(path, "plantnet")
    meta_file, names_file = find_metadata(path), find_names(path)
    meta = load_metadata(path, meta_file) if meta_file else {}
    _, found = scan(path)
    entries, unknown, disagree, seen = [], [], [], set()
    for rel, split, species in found:
        key = _stem(rel)
        seen.add(key)
        m_species, m_split, obs = meta.get(key, (None, None, None))
        if key not in meta:
            unknown.append(rel)
        elif (species and m_species and species != m_species) or (split and m_split and split != m_split):
            disagree.append(rel)
        entries.append(Entry(rel, species or m_species, split or m_split, group=obs, where=rel))
    notes = [] if meta_file else ["no Pl@ntNet metadata file found: no observation groups"]
    notes += count_note(unknown, "images missing from the metadata (imported from their folder)")
    notes += count_note(disagree, "images whose folder disagrees with the metadata (folder kept)")
    notes += count_note(sorted(set(meta) - seen), "metadata ids without an image file")
    labels = {e.label for e in entries if e.label}
    classes = build_classes(labels, load_names(path, names_file) if names_file else None, notes)
    return Source("plantnet", path, entries, classes, notes)
