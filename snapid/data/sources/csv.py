"""CSV manifest: one row per image (or per box), columns path, label, optional split, group, x1 y1 x2 y2.

PATH is the CSV file (or a folder holding exactly one CSV with a path-like column); image paths
are relative to the CSV's folder. ``options.columns`` renames columns or, for header-less files,
gives 0-based indexes.
"""

from __future__ import annotations

from pathlib import Path

from snapid.data.manifest import Box, normalize_split
from snapid.data.sources import ReadOptions, Source
from snapid.data.sources.common import EntryMerger, load_csv, nfc, rel_path
from snapid.data.sources.files import peek_sidecar, present
from snapid.errors import AnnotationError, DatasetError

# snapid name → header names accepted without a --columns mapping (first match wins)
ALIASES: dict[str, tuple[str, ...]] = {
    "path": ("path", "file", "filename", "file_name", "filepath", "file_path", "image", "image_path",
             "image_name", "img"),
    "label": ("label", "class", "class_name", "category", "label_id", "class_id"),
    "split": ("split", "subset"),
    "group": ("group", "group_id", "obs_id", "observation_id"),
    "x1": ("x1", "xmin"),
    "y1": ("y1", "ymin"),
    "x2": ("x2", "xmax"),
    "y2": ("y2", "ymax"),
}
BOX_KEYS = ("x1", "y1", "x2", "y2")
KNOWN_NAMES = frozenset(name for names in ALIASES.values() for name in names)
MANIFEST_SUFFIXES = (".csv", ".tsv")


def check_mapping(columns: dict) -> None:
    unknown = sorted(set(columns) - set(ALIASES))
    if unknown:
        raise DatasetError(f"unknown column name(s) {unknown} in --columns; valid: {', '.join(ALIASES)}")


def find_key(available: list[str], key: str, columns: dict) -> str | int | None:
    """Which header (or index) holds ``key``: the mapped one, else the first alias present."""
    if key in columns:
        return columns[key]
    lowered = {name.strip().lower(): name for name in available}
    for alias in ALIASES[key]:
        if alias in lowered:
            return lowered[alias]
    return None


def _is_index(value: object) -> bool:
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def guess_header(first: list[str], options: ReadOptions) -> bool:
    if options.has_header is not None:
        return options.has_header
    mapped = {str(v).strip().lower() for v in options.columns.values() if not _is_index(v)}
    return any(cell.strip().lower() in KNOWN_NAMES | mapped for cell in first)


def resolve_columns(file: Path, header: list[str] | None, columns: dict) -> dict[str, int]:
    """snapid name → column index; missing path/label columns are errors naming the file."""
    check_mapping(columns)
    if header is None and not columns:
        columns = {"path": 0, "label": 1}   # header-less without a mapping: path, label
    found: dict[str, int] = {}
    for key in ALIASES:
        where = find_key(header or [], key, columns)
        if where is None:
            continue
        if _is_index(where):
            found[key] = int(where)
            continue
        lowered = [h.strip().lower() for h in header or []]
        if header is None or str(where).strip().lower() not in lowered:
            shown = ", ".join(header) if header else "none (no header row)"
            raise AnnotationError(f"{file}: column {where!r} for {key} not found; columns found: {shown}")
        found[key] = lowered.index(str(where).strip().lower())
    for key in ("path", "label"):
        if key not in found:
            shown = ", ".join(header) if header else "none (no header row)"
            raise AnnotationError(
                f"{file}: no {key} column (looked for {', '.join(ALIASES[key])}; map one with "
                f"--columns {key}=NAME); columns found: {shown}")
    boxes = [k for k in BOX_KEYS if k in found]
    if boxes and len(boxes) != 4:
        raise AnnotationError(f"{file}: box columns need all of x1, y1, x2, y2; found only {', '.join(boxes)}")
    return found


def parse_box(cells: dict[str, str], label: str, where: str) -> Box | None:
    values = [cells.get(k, "") for k in BOX_KEYS]
    if not any(values):
        return None   # a row without a box: an image-level label
    try:
        x1, y1, x2, y2 = (float(v) for v in values)
    except ValueError:
        raise AnnotationError(f"{where}: box {values} is not four numbers") from None
    return Box(x1, y1, x2, y2, label)


def add_record(merger: EntryMerger, root: Path, cells: dict[str, str], where: str) -> None:
    """One manifest row (CSV or JSON, as strings) into the merger; errors name file:line."""
    path, label = cells.get("path", ""), nfc(cells.get("label", ""))
    if not path:
        raise AnnotationError(f"{where}: empty path")
    if not label:
        raise AnnotationError(f"{where}: empty label for {path!r}")
    try:
        split = normalize_split(cells.get("split"))
    except ValueError as exc:
        raise AnnotationError(f"{where}: {exc}") from None
    group = cells.get("group") or None
    merger.add(rel_path(root, path), label, split, group, parse_box(cells, label, where), where)


def find_manifest(folder: Path, options: ReadOptions) -> Path:
    """The one CSV in ``folder`` whose header has a path-like column."""
    hits = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in MANIFEST_SUFFIXES
            and present(p) and has_path_column(folder, p, options)]
    if len(hits) != 1:
        what = "no CSV with a path column" if not hits else f"several CSV files ({', '.join(p.name for p in hits)})"
        raise DatasetError(f"{folder}: {what}; give the CSV file itself")
    return hits[0]


def has_path_column(root: Path, file: Path, options: ReadOptions | None = None) -> bool:
    """Whether the first line (of the first 64 KiB) names a path column; a file that may not be read is refused."""
    first = peek_sidecar(root, file, 1 << 16).decode("utf-8-sig", errors="replace").split("\n", 1)[0].lower()
    names = set(ALIASES["path"])
    if options and "path" in options.columns and not _is_index(options.columns["path"]):
        names.add(str(options.columns["path"]).lower())
    cells = {c.strip().strip('"') for d in (",", ";", "\t") for c in first.split(d)}
    return bool(cells & names)


def read(path: Path, options: ReadOptions) -> Source:
    file = find_manifest(path, options) if path.is_dir() else path
    root = file.parent
    rows = load_csv(root, file)
    if not rows:
        raise AnnotationError(f"{file}: the CSV file is empty")
    header = rows[0][1] if guess_header(rows[0][1], options) else None
    found = resolve_columns(file, header, options.columns)
    merger = EntryMerger()
    for line, row in rows[1:] if header else rows:
        where = f"{file.name}:{line}"
        if max(found.values()) >= len(row):
            raise AnnotationError(f"{file}:{line}: {len(row)} columns, expected at least {max(found.values()) + 1}")
        add_record(merger, root, {key: row[i] for key, i in found.items()}, where)
    return Source("csv", root, merger.result())
