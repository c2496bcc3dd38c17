"""Knowledge services over the database: import cards and rules (a new version each time), the snapshot.

The snapshot is what `snapid export` copies into a bundle as knowledge.json and what serving
reads: {"dataset", "version", "cards_version", "rules_version", "languages",
"cards": {class_id: card}, "rules": [rule], "tables": {name: {"version", "rows": [row]}},
"places_version", "places": [place]}, where a card is Card.as_dict() plus "name" (the
dataset's class name), "wikipedia" {lang: summary} and "taxonomy" [{rank, name, id, labels}, …]
from `snapid knowledge enrich`, and "name_sources" {lang: "wikipedia"} for each name taken from
the title of a page found in that language (only where the card and the dataset give none).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from snapid.errors import NotFound
from snapid.knowledge import KnowledgeError
from snapid.knowledge.cards import NO_LANGUAGE, TAXONOMY, Card, check_classes, parse_cards
from snapid.knowledge.places import parse_places
from snapid.knowledge.rules import parse_rules
from snapid.knowledge.timed import check_table_name, parse_table
from snapid.track import knowledge as tk
from snapid.track.db import transaction


@dataclass
class ImportResult:
    dataset: str
    version: int
    kind: str                                         # cards or rules
    source: str
    items: int                                        # cards or rules stored
    unknown: list[str] = field(default_factory=list)  # ids in the file the dataset lacks (skipped)
    missing: list[str] = field(default_factory=list)  # dataset classes without a card
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def import_cards(path: Path, *, dataset: str, engine: Engine, allow_unknown: bool = False) -> ImportResult:
    """Parse ``path`` and store its cards as the next knowledge version of ``dataset``, in one transaction.

    Cards for classes the dataset lacks: KnowledgeError listing them, or (allow_unknown) skipped
    and listed. Dataset classes without a card are listed in ``missing``; that is not an error.
    """
    path = Path(path)
    cards = parse_cards(path)  # parse first: a bad file never opens a transaction
    sha256 = _digest(path)
    with transaction(engine) as session:
        known = [c["class_id"] for c in tk.dataset_classes(session, dataset=dataset)]
        unknown = check_classes([c.class_id for c in cards], set(known), what=f"{path.name}: cards",
                                allow_unknown=allow_unknown)
        kept = [c for c in cards if c.class_id not in unknown]
        missing = sorted(set(known) - {c.class_id for c in kept})
        notes = _notes(unknown, "cards for classes the dataset does not have were skipped")
        notes += _notes(missing, "dataset classes have no card")
        version = tk.add_knowledge_version(session, dataset=dataset, kind="cards", source=path.name, sha256=sha256,
                                           items=[c.as_dict() for c in kept], notes=notes)
    return ImportResult(dataset, version, "cards", path.name, len(kept), unknown, missing, notes)


def import_rules(path: Path, *, dataset: str, engine: Engine, allow_unknown: bool = False) -> ImportResult:
    """Parse ``path`` and store its rules as the next knowledge version of ``dataset``, in one transaction."""
    path = Path(path)
    rules = parse_rules(path)
    sha256 = _digest(path)
    with transaction(engine) as session:
        known = {c["class_id"] for c in tk.dataset_classes(session, dataset=dataset)}
        unknown = check_classes([c for r in rules for c in r.classes], known, what=f"{path.name}: rules",
                                allow_unknown=allow_unknown)
        kept = [r for r in rules if not set(r.classes) & set(unknown)]
        notes = _notes(unknown, "classes the dataset does not have: their rules were skipped")
        version = tk.add_knowledge_version(session, dataset=dataset, kind="rules", source=path.name, sha256=sha256,
                                           items=[r.as_dict() for r in kept], notes=notes)
    return ImportResult(dataset, version, "rules", path.name, len(kept), unknown, [], notes)


def import_table(path: Path, *, dataset: str, table: str, engine: Engine) -> ImportResult:
    """Parse ``path`` (a joined table: class_id, valid_from, valid_to, free columns) and store it as the next
    knowledge version of ``dataset``, replacing the previous import of table ``table``. All or nothing: a row
    for a class the dataset lacks, a malformed date or an oversized file refuses the whole file, naming the
    file, line and column, and what was imported before keeps serving."""
    path, table = Path(path), check_table_name(table)
    rows = parse_table(path)
    sha256 = _digest(path)
    with transaction(engine) as session:
        known = {c["class_id"] for c in tk.dataset_classes(session, dataset=dataset)}
        bad = [r for r in rows if r.class_id not in known]
        if bad:
            more = f" (and {len(bad) - 1} more rows)" if len(bad) > 1 else ""
            raise KnowledgeError(f"{bad[0].where}: column 'class_id': {bad[0].class_id!r} is not a class of dataset "
                                 f"{dataset!r}{more}; nothing was imported")
        version = tk.add_knowledge_version(session, dataset=dataset, kind="table", name=table, source=path.name,
                                           sha256=sha256, items=[r.as_dict() for r in rows], notes=[])
    return ImportResult(dataset, version, "table", path.name, len(rows), [], [], [f"table {table}"])


def import_places(path: Path, *, dataset: str, engine: Engine) -> ImportResult:
    """Parse ``path`` (places: name(_<lang>), category, lat, lon, address(_<lang>), link) and store them as the
    next knowledge version of ``dataset``, replacing its previous places; all or nothing."""
    path = Path(path)
    places = parse_places(path)
    sha256 = _digest(path)
    with transaction(engine) as session:
        version = tk.add_knowledge_version(session, dataset=dataset, kind="places", source=path.name, sha256=sha256,
                                           items=[p.as_dict() for p in places], notes=[])
    return ImportResult(dataset, version, "places", path.name, len(places), [], [], [])


KINDS = ("cards", "rules", "table", "places")


def import_file(path: Path, *, kind: str, dataset: str, engine: Engine, table: str | None = None,
                allow_unknown: bool = False) -> ImportResult:
    """Import ``path`` as knowledge of ``kind`` (cards, rules, table with its name, places) for ``dataset``: the one
    entry the admin API uses (the CLI calls the same functions per --kind). All or nothing, as each of them."""
    if kind == "cards":
        return import_cards(path, dataset=dataset, engine=engine, allow_unknown=allow_unknown)
    if kind == "rules":
        return import_rules(path, dataset=dataset, engine=engine, allow_unknown=allow_unknown)
    if kind == "table":
        if not table:
            raise KnowledgeError("a joined table needs its name (table=NAME, e.g. discounts)")
        return import_table(path, dataset=dataset, table=table, engine=engine)
    if kind == "places":
        return import_places(path, dataset=dataset, engine=engine)
    raise KnowledgeError(f"kind {kind!r}: use {', '.join(KINDS)}")


def latest_version(dataset: str, *, engine: Engine) -> int:
    """The newest knowledge version of ``dataset`` (0: none; -1: no such dataset); what a server polls."""
    with transaction(engine) as session:
        return tk.latest_version(session, dataset=dataset)


def _notes(ids: list[str], what: str) -> list[str]:
    if not ids:
        return []
    shown = ", ".join(ids[:10]) + (" …" if len(ids) > 10 else "")
    return [f"{len(ids)} {what}: {shown}"]


def snapshot(dataset: str, *, engine: Engine) -> dict | None:
    """The latest cards, rules and enrichment of ``dataset`` as one JSON-able dict; None when it has none."""
    with transaction(engine) as session:
        classes = tk.dataset_classes(session, dataset=dataset)
        versions = tk.knowledge_versions(session, dataset=dataset)
        cards_info, cards = tk.latest_cards(session, dataset=dataset)
        rules_info, rules = tk.latest_rules(session, dataset=dataset)
        wiki = tk.enrichment(session, dataset=dataset)
        tables = tk.latest_tables(session, dataset=dataset)
        places_info, places = tk.latest_places(session, dataset=dataset)
    if not cards and not rules and not wiki and not tables and not places:
        return None
    by_id = {c["class_id"]: c for c in classes}
    given = {c["class_id"]: c for c in cards}
    order = [c["class_id"] for c in classes] + [i for i in list(given) + list(wiki) if i not in by_id]
    out_cards = {}
    for class_id in dict.fromkeys(order):
        if class_id not in given and class_id not in wiki:
            continue
        card = given.get(class_id) or _bare_card(by_id.get(class_id), class_id)
        name = by_id[class_id]["name"] if class_id in by_id else class_id
        pages = dict(wiki.get(class_id, {}))
        taxonomy = pages.pop(TAXONOMY, {}).get("chain") or []
        out_cards[class_id] = {**_named_by_wikipedia(card, by_id.get(class_id), pages), "name": name,
                               "wikipedia": pages, "taxonomy": taxonomy}
    languages = sorted({lang for card in out_cards.values() for key in ("names", "descriptions", "wikipedia")
                        for lang in card[key] if lang != NO_LANGUAGE})
    return {"dataset": dataset, "version": versions[-1]["version"] if versions else 0,
            "cards_version": cards_info["version"] if cards_info else None,
            "rules_version": rules_info["version"] if rules_info else None,
            "languages": languages, "cards": out_cards, "rules": rules,
            "tables": {name: {"version": info["version"], "rows": rows} for name, (info, rows) in tables.items()},
            "places_version": places_info["version"] if places_info else None, "places": places}


def _named_by_wikipedia(card: dict, cls: dict | None, pages: dict[str, dict]) -> dict:
    """``card`` with a name in each language where a page was found under its own title (not a
    fallback) and neither the card nor the dataset names the class; marked in "name_sources"."""
    names, sources = dict(card.get("names") or {}), {}
    given = {**((cls or {}).get("display_names") or {}), **names}
    scientific = (card.get("scientific_name") or "").casefold()
    for lang, page in pages.items():
        title = _plain_title(page.get("title") or "")
        if page.get("fallback") or page.get("lang") != lang or given.get(lang) or not title:
            continue
        if title.casefold() == scientific:  # the page goes by the Latin name: no common name in that language
            continue
        names[lang], sources[lang] = title, "wikipedia"
    return {**card, "names": names, "name_sources": sources}


def _plain_title(title: str) -> str:
    """'해바라기 (식물)' → '해바라기': the disambiguating part of a page title is not part of the name."""
    title = title.strip()
    if title.endswith(")") and " (" in title:
        title = title[:title.rindex(" (")].strip()
    return title


def _bare_card(cls: dict | None, class_id: str) -> dict:
    """A card for a class that has Wikipedia info but no row in the cards file."""
    return Card(class_id=class_id, names=dict((cls or {}).get("display_names") or {})).as_dict()


def show(dataset: str, *, engine: Engine, class_id: str | None = None) -> dict:
    """The snapshot (or one class's card from it); NotFound when there is nothing to show."""
    snap = snapshot(dataset, engine=engine)
    if snap is None:
        raise NotFound(f"dataset {dataset!r} has no knowledge yet; add it with `snapid knowledge import`")
    if class_id is None:
        return snap
    if class_id not in snap["cards"]:
        raise NotFound(f"dataset {dataset!r} has no card for class {class_id!r}")
    return snap["cards"][class_id]


def versions(dataset: str, *, engine: Engine) -> list[dict]:
    """Every knowledge import of ``dataset`` (cards and rules), oldest first."""
    with transaction(engine) as session:
        return tk.knowledge_versions(session, dataset=dataset)
