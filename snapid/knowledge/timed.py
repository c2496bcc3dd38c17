"""Joined knowledge tables (discounts, prices, opening times): rows per class id with free columns and an
optional validity window. Pure: no database, no network.

Columns (case-insensitive): ``class_id`` (or ``id``, ``label``), required; ``valid_from`` / ``valid_to``,
optional, each an ISO date (``2026-12-31``) or date and time (``2026-12-31T18:00``, ``…+09:00``); anything
else is a free column shown with the row (``store``, ``offer_ko``, ``offer_en``, ``price``). A date or a
time without an offset is read in the server's time zone when serving; a ``valid_to`` date includes that
whole day. A row is shown while ``valid_from <= now < valid_to`` (an empty bound is open).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path

from snapid.knowledge import KnowledgeError
from snapid.knowledge.cards import ID_COLUMNS
from snapid.knowledge.table import read_rows

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED = ("cards", "rules", "places")


@dataclass
class TimedRow:
    class_id: str
    valid_from: str = ""                                    # normalised ISO text, "" = open
    valid_to: str = ""
    fields: dict[str, str] = field(default_factory=dict)    # in file column order
    where: str = ""                                         # "discounts.csv line 3", for errors

    def as_dict(self) -> dict:
        return {"class_id": self.class_id, "valid_from": self.valid_from, "valid_to": self.valid_to,
                "fields": dict(self.fields)}


def check_table_name(name: str) -> str:
    name = (name or "").strip().lower()
    if not TABLE_NAME.match(name) or name in RESERVED:
        raise KnowledgeError(f"table name {name!r}: use lower-case letters, digits, _ or -, starting with a letter "
                             f"(not {', '.join(RESERVED)})")
    return name


def parse_moment(text: str) -> date | datetime:
    """'2026-12-31' → date; '2026-12-31T18:00[+09:00]' → datetime; ValueError otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return date.fromisoformat(text)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", text):
        raise ValueError(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_table(path: Path) -> list[TimedRow]:
    """Every row of ``path``, in file order; KnowledgeError names the file, line and column at fault."""
    rows = read_rows(Path(path), key_column="class_id")
    out = []
    for row in rows:
        values = dict(row.values)
        class_id = next((values.pop(c) for c in ID_COLUMNS if values.get(c)), None)
        for c in ID_COLUMNS:
            values.pop(c, None)
        if not class_id:
            raise KnowledgeError(f"{row.where}: column 'class_id': no class id")
        bounds = {}
        for column in ("valid_from", "valid_to"):
            text = values.pop(column, "")
            try:
                bounds[column] = parse_moment(text) if text else None
            except ValueError:
                raise KnowledgeError(f"{row.where}: column {column!r}: {text[:40]!r} is not a date (2026-12-31) "
                                     "or date and time (2026-12-31T18:00, optionally +09:00)") from None
        start, end = bounds["valid_from"], bounds["valid_to"]
        if start is not None and end is not None and _comparable(end, True) <= _comparable(start, False):
            raise KnowledgeError(f"{row.where}: column 'valid_to': {end.isoformat()} is not after valid_from "
                                 f"{start.isoformat()}")
        out.append(TimedRow(class_id, start.isoformat() if start else "", end.isoformat() if end else "",
                            values, row.where))
    return out


def _comparable(moment: date | datetime, end: bool) -> datetime:
    """For the from < to check only: offsets dropped, a date as its start (or, for an end, the next day's)."""
    if isinstance(moment, datetime):
        return moment.replace(tzinfo=None)
    return datetime.combine(moment + timedelta(days=1) if end else moment, time())


def bound(text: str, tz: tzinfo, *, end: bool) -> datetime | None:
    """The moment a stored bound stands for in ``tz``; None when open (or unreadable: treated as open)."""
    if not text:
        return None
    try:
        moment = parse_moment(text)
    except ValueError:
        return None
    if not isinstance(moment, datetime):
        return datetime.combine(moment + timedelta(days=1) if end else moment, time(), tzinfo=tz)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def valid_at(row: dict, now: datetime, tz: tzinfo) -> bool:
    """Whether a stored row (TimedRow.as_dict()) is valid at ``now`` (an aware datetime)."""
    start = bound(str(row.get("valid_from") or ""), tz, end=False)
    stop = bound(str(row.get("valid_to") or ""), tz, end=True)
    return (start is None or start <= now) and (stop is None or now < stop)
