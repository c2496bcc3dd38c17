"""Named candidate subsets in a bundle (issue 20): `snapid export RUN --subset NAME=FILE` (repeatable), FILE
listing class ids or names one per line (blank lines and # comments skipped). Written as subsets.json,
{"subsets": {NAME: [class id, ...]}}; served as predict?subset=NAME (snapid/serve/services/subsets.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from snapid.export.onnx import ExportError

FILE = "subsets.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
MAX_FILE_BYTES = 4 << 20


def parse_option(values: list[str]) -> dict[str, Path]:
    """["mine=pills.txt", ...] → {"mine": Path("pills.txt")}; usage errors name the value at fault."""
    out: dict[str, Path] = {}
    for value in values:
        name, sep, file = value.partition("=")
        name = name.strip()
        if not sep or not file or not NAME.match(name):
            raise ExportError(f"--subset {value!r}: expected NAME=FILE, NAME 1-64 letters, digits, space, . _ -",
                              code="usage")
        if name in out:
            raise ExportError(f"--subset {name!r} is given twice", code="usage")
        out[name] = Path(file)
    return out


def read_names(path: Path) -> list[str]:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ExportError(f"--subset file {path}: larger than {MAX_FILE_BYTES} bytes", code="usage")
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"--subset file {path}: cannot be read ({exc})", code="usage") from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def subsets_json(classes: list[dict], files: dict[str, Path]) -> bytes | None:
    """subsets.json for ``files`` ({name: file}), each name resolved to a class id (by id, then name, then name
    ignoring case); ExportError naming every name no class has. None when no subset is given."""
    if not files:
        return None
    by_id = {c["id"]: c["id"] for c in classes}
    by_name: dict[str, str] = {}
    for c in classes:
        for key in (c.get("name") or c["id"], (c.get("name") or c["id"]).casefold()):
            by_name.setdefault(key, c["id"])
    out = {}
    for name, path in files.items():
        names = read_names(path)
        ids = [by_id.get(n) or by_name.get(n) or by_name.get(n.casefold()) for n in names]
        unknown = [n for n, i in zip(names, ids, strict=True) if i is None]
        if unknown:
            raise ExportError(f"--subset {name}={path}: the run has no class {', '.join(map(repr, unknown[:20]))}"
                              + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""), code="usage")
        if not ids:
            raise ExportError(f"--subset {name}={path}: no class names in the file", code="usage")
        out[name] = list(dict.fromkeys(ids))
    return json.dumps({"subsets": out}, ensure_ascii=False, indent=1).encode()
