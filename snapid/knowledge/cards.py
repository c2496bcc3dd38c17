"""Knowledge cards: one per class, parsed from a CSV or YAML file. Pure: no database, no network.

Columns (case-insensitive; any order):
  class_id (or id, label)          the dataset's class id; required, unique
  name_<lang>, display_name_<lang> display name per language (ko, en, zh-hans…); ``name`` alone → "und"
  scientific_name                  e.g. a plant's binomial; also the best Wikipedia title
  description_<lang>, description  free text per language
  image                            an http(s) URL of a picture of the class
  link, links, link_<label>        http(s) URLs (``links``: several, separated by spaces or new lines)
  lat, lon                         where the class is (a landmark), in degrees; answers list places near it
  anything else                    a free field shown as a table (ingredient, maker, price, opening hours…)

Text is kept exactly as given (HTML and SQL-looking text included): the page escapes it on output.
Only URLs are checked, because a ``javascript:`` link would run when clicked.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from snapid.knowledge import KnowledgeError
from snapid.knowledge.table import Row, language_of, read_rows

ID_COLUMNS = ("class_id", "id", "label")
NO_LANGUAGE = "und"  # BCP 47 "undetermined": text given without a language suffix
TAXONOMY = "wikidata:taxon"  # the enrichment entry holding the taxon chain, beside the languages' summaries
MAX_LINKS = 20
_URL = re.compile(r"^https?://[^\s<>\"']+$", re.IGNORECASE)


@dataclass
class Card:
    class_id: str
    names: dict[str, str] = field(default_factory=dict)
    scientific_name: str = ""
    descriptions: dict[str, str] = field(default_factory=dict)
    image: str = ""
    links: list[dict[str, str]] = field(default_factory=list)   # [{"label", "url"}]
    fields: dict[str, str] = field(default_factory=dict)        # in file column order

    def as_dict(self) -> dict:
        return {"class_id": self.class_id, "names": dict(self.names), "scientific_name": self.scientific_name,
                "descriptions": dict(self.descriptions), "image": self.image,
                "links": [dict(link) for link in self.links], "fields": dict(self.fields)}

    @classmethod
    def from_dict(cls, data: dict) -> Card:
        return cls(class_id=str(data["class_id"]), names=dict(data.get("names") or {}),
                   scientific_name=str(data.get("scientific_name") or ""),
                   descriptions=dict(data.get("descriptions") or {}), image=str(data.get("image") or ""),
                   links=[dict(link) for link in data.get("links") or []], fields=dict(data.get("fields") or {}))


def parse_cards(path: Path) -> list[Card]:
    """Every card in ``path``, in file order. KnowledgeError names the line at fault."""
    rows = read_rows(Path(path), key_column="class_id")
    cards = [card_from_row(row) for row in rows]
    seen: dict[str, str] = {}
    for card, row in zip(cards, rows, strict=True):
        if card.class_id in seen:
            raise KnowledgeError(f"{row.where}: class {card.class_id!r} already has a card ({seen[card.class_id]})")
        seen[card.class_id] = row.where
    return cards


def card_from_row(row: Row) -> Card:
    values = dict(row.values)
    card = Card(class_id=_class_id(row))
    for column in ID_COLUMNS:
        values.pop(column, None)
    for column, text in values.items():
        _apply(card, row.where, column, text)
    if len(card.links) > MAX_LINKS:
        raise KnowledgeError(f"{row.where}: {len(card.links)} links (limit {MAX_LINKS})")
    return card


def _class_id(row: Row) -> str:
    for column in ID_COLUMNS:
        if row.values.get(column):
            return row.values[column]
    hint = "; this looks like a rules file: use `snapid knowledge rules`" if {"a", "b"} <= set(row.values) else ""
    raise KnowledgeError(f"{row.where}: no class id (a column named {' or '.join(ID_COLUMNS)}){hint}")


def _apply(card: Card, where: str, column: str, text: str) -> None:
    """Put one column's text where it belongs on the card."""
    lang = language_of(column, ("name_", "display_name_"))
    if lang:
        card.names[lang] = text
    elif column in ("name", "display_name"):
        card.names[NO_LANGUAGE] = text
    elif column == "scientific_name":
        card.scientific_name = text
    elif lang := language_of(column, ("description_",)):
        card.descriptions[lang] = text
    elif column == "description":
        card.descriptions[NO_LANGUAGE] = text
    elif column == "image":
        card.image = checked_url(where, column, text)
    elif column in ("link", "links"):
        card.links += [{"label": "", "url": checked_url(where, column, url)} for url in text.split()]
    elif column.startswith("link_"):
        card.links.append({"label": column[len("link_"):], "url": checked_url(where, column, text)})
    elif column in ("lat", "lon"):  # where the class is (a landmark): answers list the places near it
        card.fields[column] = repr(coordinate(where, column, text))
    else:
        card.fields[column] = text


def checked_url(where: str, column: str, text: str) -> str:
    """``text`` if it is an http(s) URL; anything else (javascript:, file paths) is refused."""
    if not _URL.match(text) or len(text) > 2000:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise KnowledgeError(f"{where}: column {column!r} must be an http:// or https:// URL, got {shown!r}")
    return text


def coordinate(where: str, column: str, text: str) -> float:
    """``text`` as a latitude (column lat…) or longitude in range; KnowledgeError naming where otherwise."""
    limit = 90.0 if column.startswith("lat") else 180.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > limit:
        raise KnowledgeError(f"{where}: column {column!r}: {text[:40]!r} is not a number from {-limit:g} to {limit:g}")
    return value


def check_classes(ids: list[str], known: set[str], *, what: str, allow_unknown: bool) -> list[str]:
    """Ids not among the dataset's classes: an error listing them, or (allow_unknown) the list."""
    unknown = sorted({i for i in ids if i not in known})
    if unknown and not allow_unknown:
        shown = ", ".join(unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise KnowledgeError(f"{what} name {len(unknown)} classes the dataset does not have: {shown} "
                             "(check the class ids, or pass --allow-unknown to skip them)")
    return unknown
