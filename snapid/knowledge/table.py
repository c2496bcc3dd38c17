"""Read a knowledge file (CSV, YAML or JSON) into flat rows of text, with bounds and clear errors. Pure.

CSV: one row per record, a header row naming the columns; UTF-8 (a BOM from Excel is fine).
YAML (``.yaml``, ``.yml``) or JSON (``.json``): a list of mappings, or a mapping whose ``cards`` / ``rules`` key
holds that list, or a mapping of class id → mapping. Nested values are flattened to the CSV column names:
``names: {ko: …}`` → ``name_ko``; ``descriptions`` → ``description_<lang>``;
``messages`` / ``message`` / ``reasons`` as a mapping → ``message_<lang>``; ``addresses`` / ``address`` as a
mapping → ``address_<lang>``; ``fields: {k: v}`` → ``k``;
a list (``links``, ``classes``) → its items joined by a newline.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from snapid.knowledge import KnowledgeError

MAX_FILE_BYTES = 16 << 20
MAX_ROWS = 100_000
MAX_COLUMNS = 200
MAX_CELL_CHARS = 20_000
MAX_LIST_ITEMS = 50
YAML_SUFFIXES = (".yaml", ".yml")
JSON_SUFFIXES = (".json",)

LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")  # ko, en, zh-Hans, pt-BR
_NESTED_PREFIX = {"names": "name_", "display_names": "name_", "descriptions": "description_",
                  "description": "description_", "messages": "message_", "message": "message_",
                  "reasons": "message_", "reason": "message_", "addresses": "address_", "address": "address_"}


class _TextLoader(yaml.SafeLoader):
    """SafeLoader where every plain scalar stays text (null aside): 'no' is not False, 0012 is not 10."""


_TEXT_ONLY = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _TEXT_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Row:
    where: str               # "drugs.csv line 4" or "cards.yaml entry 2": for error messages
    values: dict[str, str]   # column (lower-case, stripped) → stripped text; empty cells dropped


def read_rows(path: Path, *, key_column: str) -> list[Row]:
    """Rows of a CSV or YAML file. ``key_column`` is what a YAML mapping-of-mappings' keys become."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise KnowledgeError(f"{path}: {size} bytes is above the {MAX_FILE_BYTES >> 20} MB limit")
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise KnowledgeError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise KnowledgeError(f"{path}: is a folder, expected a .csv or .yaml file") from None
    except UnicodeDecodeError as exc:
        raise KnowledgeError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise KnowledgeError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix.lower() in YAML_SUFFIXES:
        rows = _yaml_rows(path, text, key_column)
    elif path.suffix.lower() in JSON_SUFFIXES:
        rows = _json_rows(path, text, key_column)
    else:
        rows = _csv_rows(path, text)
    if not rows:
        raise KnowledgeError(f"{path}: no records")
    return rows


def _cell(where: str, column: str, value: object) -> str:
    text = str(value).strip()
    if len(text) > MAX_CELL_CHARS:
        raise KnowledgeError(f"{where}: column {column!r} holds {len(text)} characters (limit {MAX_CELL_CHARS})")
    return text


def _csv_rows(path: Path, text: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    old_limit = csv.field_size_limit()
    csv.field_size_limit(MAX_CELL_CHARS * 4)  # a longer cell fails as a csv.Error, named below
    try:
        header = next(reader, None)
        if header is None:
            return []
        columns = [h.strip().lower() for h in header]
        _check_header(path, columns)
        rows = []
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # blank lines
            where = f"{path.name} line {reader.line_num}"
            if len(record) > len(columns):
                raise KnowledgeError(f"{where}: {len(record)} cells but the header names {len(columns)} columns")
            if len(rows) >= MAX_ROWS:
                raise KnowledgeError(f"{path}: more than {MAX_ROWS} rows")
            # a short row leaves its last cells out
            values = {c: _cell(where, c, v) for c, v in zip(columns, record, strict=False)}
            rows.append(Row(where, {c: v for c, v in values.items() if v}))
        return rows
    except csv.Error as exc:
        raise KnowledgeError(f"{path.name} line {reader.line_num}: not valid CSV ({exc})") from None
    finally:
        csv.field_size_limit(old_limit)


def _check_header(path: Path, columns: list[str]) -> None:
    if len(columns) > MAX_COLUMNS:
        raise KnowledgeError(f"{path}: {len(columns)} columns (limit {MAX_COLUMNS})")
    if "" in columns:
        raise KnowledgeError(f"{path}: column {columns.index('') + 1} of the header has no name")
    seen = {c for c in columns if columns.count(c) > 1}
    if seen:
        raise KnowledgeError(f"{path}: repeated columns {sorted(seen)}")


def _yaml_rows(path: Path, text: str, key_column: str) -> list[Row]:
    try:
        doc = yaml.load(text, Loader=_TextLoader)  # a SafeLoader: no Python object is built from the file
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise KnowledgeError(f"{path.name}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return _document_rows(path, doc, key_column)


def _json_rows(path: Path, text: str, key_column: str) -> list[Row]:
    try:
        doc = json.loads(text)
    except RecursionError:
        raise KnowledgeError(f"{path.name}: the JSON nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise KnowledgeError(f"{path.name} line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
    return _document_rows(path, doc, key_column)


def _document_rows(path: Path, doc: object, key_column: str) -> list[Row]:
    """The records of a parsed YAML or JSON document (the shapes in the module docstring)."""
    if isinstance(doc, dict):
        listed = [doc[k] for k in ("cards", "rules") if k in doc]
        if listed:
            doc = listed[0]
        else:  # class id → mapping
            doc = [{key_column: k, **v} if isinstance(v, dict) else {key_column: k, "_bad": v} for k, v in doc.items()]
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise KnowledgeError(f"{path}: expected a list of records, found {type(doc).__name__}")
    if len(doc) > MAX_ROWS:
        raise KnowledgeError(f"{path}: more than {MAX_ROWS} records")
    rows = []
    for i, entry in enumerate(doc, start=1):
        where = f"{path.name} entry {i}"
        if not isinstance(entry, dict) or "_bad" in entry:
            raise KnowledgeError(f"{where}: expected a mapping of column: value")
        values = _flatten(where, entry)
        if len(values) > MAX_COLUMNS:
            raise KnowledgeError(f"{where}: {len(values)} keys (limit {MAX_COLUMNS})")
        rows.append(Row(where, {c: v for c, v in values.items() if v}))
    return rows


def _flatten(where: str, entry: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in entry.items():
        column = str(key).strip().lower()
        if isinstance(value, dict) and column in _NESTED_PREFIX:
            for sub, text in value.items():
                out[_NESTED_PREFIX[column] + str(sub).strip()] = _scalar(where, f"{column}.{sub}", text)
        elif isinstance(value, dict) and column == "fields":
            for sub, text in value.items():
                out[str(sub).strip().lower()] = _scalar(where, f"fields.{sub}", text)
        elif isinstance(value, list):
            if len(value) > MAX_LIST_ITEMS:
                raise KnowledgeError(f"{where}: {column!r} has {len(value)} items (limit {MAX_LIST_ITEMS})")
            out[column] = "\n".join(_scalar(where, column, item) for item in value)
        else:
            out[column] = _scalar(where, column, value)
    return out


def _scalar(where: str, column: str, value: object) -> str:
    # Only scalars: str() of a nested structure built from YAML aliases could grow without bound.
    if value is None:
        return ""
    if not isinstance(value, (str, int, float, bool)):
        raise KnowledgeError(f"{where}: {column!r} must be text or a number, not {type(value).__name__}")
    return _cell(where, column, value)


def language_of(column: str, prefixes: tuple[str, ...]) -> str | None:
    """'name_ko' with prefixes ('name_',) → 'ko'; None when the column is not one of these."""
    for prefix in prefixes:
        if column.startswith(prefix) and LANG.match(column[len(prefix):]):
            return column[len(prefix):]
    return None
