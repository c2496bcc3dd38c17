"""Keyword-only data access for knowledge cards, rules, the Wikipedia cache and enrichment.

Returns plain dicts, never ORM objects; the caller owns the transaction (snapid.track.db.transaction).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from snapid.errors import NotFound
from snapid.track.tables import (
    ClassRow,
    DatasetRow,
    DatasetVersionRow,
    KnowledgeCardRow,
    KnowledgeEnrichmentRow,
    KnowledgePlaceRow,
    KnowledgeRuleRow,
    KnowledgeTableRow,
    KnowledgeVersionRow,
    WikiCacheRow,
    utcnow,
)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every one stored here is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _dataset_id(session: Session, name: str) -> int:
    dataset_id = session.scalar(select(DatasetRow.id).where(DatasetRow.name == name))
    if dataset_id is None:
        known = session.scalars(select(DatasetRow.name).order_by(DatasetRow.name)).all()
        hint = f"; known datasets: {', '.join(known)}" if known else "; import one with `snapid data import`"
        raise NotFound(f"no dataset named {name!r}{hint}")
    return dataset_id


def dataset_classes(session: Session, *, dataset: str) -> list[dict]:
    """Classes of the latest version of ``dataset``: [{"class_id", "name", "display_names"}] in position order."""
    dataset_id = _dataset_id(session, dataset)
    version_id = session.scalar(select(DatasetVersionRow.id).where(DatasetVersionRow.dataset_id == dataset_id)
                                .order_by(DatasetVersionRow.version.desc()).limit(1))
    rows = session.execute(select(ClassRow.class_id, ClassRow.name, ClassRow.display_names)
                           .where(ClassRow.version_id == version_id).order_by(ClassRow.position))
    return [{"class_id": r.class_id, "name": r.name, "display_names": dict(r.display_names or {})} for r in rows]


def add_knowledge_version(session: Session, *, dataset: str, kind: str, source: str, sha256: str,
                          items: list[dict], notes: list[str], name: str = "") -> int:
    """Store cards (kind "cards", items = Card.as_dict()), rules (kind "rules", items = Rule.as_dict()), a joined
    table ``name`` (kind "table", items = TimedRow.as_dict()) or places (kind "places", items = Place.as_dict())
    as the dataset's next knowledge version; returns the version number."""
    if kind not in ("cards", "rules", "table", "places"):
        raise ValueError(f"kind must be 'cards', 'rules', 'table' or 'places', not {kind!r}")
    dataset_id = _dataset_id(session, dataset)
    last = session.scalar(select(func.max(KnowledgeVersionRow.version))
                          .where(KnowledgeVersionRow.dataset_id == dataset_id))
    row = KnowledgeVersionRow(dataset_id=dataset_id, version=(last or 0) + 1, kind=kind, source=source, sha256=sha256,
                              n_items=len(items), notes=list(notes), name=name if kind == "table" else "")
    session.add(row)
    session.flush()
    if items and kind == "table":
        session.execute(insert(KnowledgeTableRow), [
            {"version_id": row.id, "position": i, "class_id": r["class_id"], "valid_from": r["valid_from"],
             "valid_to": r["valid_to"], "data": r["fields"]} for i, r in enumerate(items)])
    elif items and kind == "places":
        session.execute(insert(KnowledgePlaceRow), [
            {"version_id": row.id, "position": i, "category": p["category"], "lat": p["lat"], "lon": p["lon"],
             "names": p["names"], "addresses": p["addresses"], "link": p["link"]} for i, p in enumerate(items)])
    elif items and kind == "cards":
        session.execute(insert(KnowledgeCardRow), [
            {"version_id": row.id, "position": i, "class_id": card["class_id"], "card": card}
            for i, card in enumerate(items)])
    elif items:
        session.execute(insert(KnowledgeRuleRow), [
            {"version_id": row.id, "position": i, "classes": rule["classes"], "severity": rule["severity"],
             "message": rule["message"]} for i, rule in enumerate(items)])
    return row.version


def _version_info(row: KnowledgeVersionRow) -> dict:
    return {"version": row.version, "kind": row.kind, "name": row.name or "", "source": row.source,
            "sha256": row.sha256, "items": row.n_items, "notes": list(row.notes or []),
            "created_at": _aware(row.created_at).isoformat() if row.created_at else ""}


def knowledge_versions(session: Session, *, dataset: str) -> list[dict]:
    """Every knowledge import of ``dataset``, oldest first."""
    dataset_id = _dataset_id(session, dataset)
    rows = session.scalars(select(KnowledgeVersionRow).where(KnowledgeVersionRow.dataset_id == dataset_id)
                           .order_by(KnowledgeVersionRow.version))
    return [_version_info(r) for r in rows]


def _latest(session: Session, dataset_id: int, kind: str) -> KnowledgeVersionRow | None:
    return session.scalar(select(KnowledgeVersionRow)
                          .where(KnowledgeVersionRow.dataset_id == dataset_id, KnowledgeVersionRow.kind == kind)
                          .order_by(KnowledgeVersionRow.version.desc()).limit(1))


def latest_cards(session: Session, *, dataset: str) -> tuple[dict | None, list[dict]]:
    """(version info, card dicts in file order) of the newest cards import; (None, []) when none."""
    row = _latest(session, _dataset_id(session, dataset), "cards")
    if row is None:
        return None, []
    cards = session.scalars(select(KnowledgeCardRow.card).where(KnowledgeCardRow.version_id == row.id)
                            .order_by(KnowledgeCardRow.position))
    return _version_info(row), [dict(c) for c in cards]


def latest_rules(session: Session, *, dataset: str) -> tuple[dict | None, list[dict]]:
    """(version info, rule dicts in file order) of the newest rules import; (None, []) when none."""
    row = _latest(session, _dataset_id(session, dataset), "rules")
    if row is None:
        return None, []
    rules = session.execute(select(KnowledgeRuleRow.classes, KnowledgeRuleRow.severity, KnowledgeRuleRow.message)
                            .where(KnowledgeRuleRow.version_id == row.id).order_by(KnowledgeRuleRow.position))
    return _version_info(row), [{"classes": list(r.classes), "severity": r.severity, "message": dict(r.message)}
                                for r in rules]


def latest_version(session: Session, *, dataset: str) -> int:
    """The newest knowledge version of ``dataset`` (0 when none; -1 when there is no such dataset): one
    indexed query, cheap enough to poll every few seconds."""
    dataset_id = session.scalar(select(DatasetRow.id).where(DatasetRow.name == dataset))
    if dataset_id is None:
        return -1
    return session.scalar(select(func.max(KnowledgeVersionRow.version))
                          .where(KnowledgeVersionRow.dataset_id == dataset_id)) or 0


def latest_tables(session: Session, *, dataset: str) -> dict[str, tuple[dict, list[dict]]]:
    """name → (version info, rows [{"class_id", "valid_from", "valid_to", "fields"}] in file order) of the newest
    import of each joined table of ``dataset``."""
    dataset_id = _dataset_id(session, dataset)
    newest = (select(KnowledgeVersionRow.name, func.max(KnowledgeVersionRow.version).label("version"))
              .where(KnowledgeVersionRow.dataset_id == dataset_id, KnowledgeVersionRow.kind == "table")
              .group_by(KnowledgeVersionRow.name).subquery())
    versions = session.scalars(select(KnowledgeVersionRow).join(
        newest, (KnowledgeVersionRow.name == newest.c.name) & (KnowledgeVersionRow.version == newest.c.version))
        .where(KnowledgeVersionRow.dataset_id == dataset_id).order_by(KnowledgeVersionRow.name)).all()
    out = {}
    for version in versions:
        rows = session.execute(select(KnowledgeTableRow.class_id, KnowledgeTableRow.valid_from,
                                      KnowledgeTableRow.valid_to, KnowledgeTableRow.data)
                               .where(KnowledgeTableRow.version_id == version.id).order_by(KnowledgeTableRow.position))
        out[version.name] = (_version_info(version), [
            {"class_id": r.class_id, "valid_from": r.valid_from, "valid_to": r.valid_to, "fields": dict(r.data)}
            for r in rows])
    return out


def latest_places(session: Session, *, dataset: str) -> tuple[dict | None, list[dict]]:
    """(version info, places [Place.as_dict()] in file order) of the newest places import; (None, []) when none."""
    row = _latest(session, _dataset_id(session, dataset), "places")
    if row is None:
        return None, []
    rows = session.execute(select(KnowledgePlaceRow).where(KnowledgePlaceRow.version_id == row.id)
                           .order_by(KnowledgePlaceRow.position)).scalars()
    return _version_info(row), [_place(p) for p in rows]


def _place(p: KnowledgePlaceRow) -> dict:
    return {"category": p.category, "lat": p.lat, "lon": p.lon, "names": dict(p.names or {}),
            "addresses": dict(p.addresses or {}), "link": p.link}


def places_in_box(session: Session, *, dataset: str, south: float, west: float, north: float,
                  east: float) -> list[dict]:
    """Places of the newest places import inside a latitude/longitude box (west > east: across the date line),
    found through the (version_id, lat, lon) index."""
    row = _latest(session, _dataset_id(session, dataset), "places")
    if row is None:
        return []
    lon = ((KnowledgePlaceRow.lon >= west) & (KnowledgePlaceRow.lon <= east) if west <= east
           else (KnowledgePlaceRow.lon >= west) | (KnowledgePlaceRow.lon <= east))
    rows = session.scalars(select(KnowledgePlaceRow).where(
        KnowledgePlaceRow.version_id == row.id, KnowledgePlaceRow.lat >= south, KnowledgePlaceRow.lat <= north, lon))
    return [_place(p) for p in rows]


def wiki_cached(session: Session, *, lang: str, title: str) -> dict | None:
    """The cached lookup {"status", "data", "error", "fetched_at"} of (lang, title), or None."""
    row = session.scalar(select(WikiCacheRow).where(WikiCacheRow.lang == lang, WikiCacheRow.title == title))
    if row is None:
        return None
    return {"status": row.status, "data": dict(row.data or {}), "error": row.error,
            "fetched_at": _aware(row.fetched_at)}


def save_wiki_lookup(session: Session, *, lang: str, title: str, status: str, data: dict, error: str = "") -> None:
    """Insert or replace the cached lookup of (lang, title), stamped now."""
    row = session.scalar(select(WikiCacheRow).where(WikiCacheRow.lang == lang, WikiCacheRow.title == title))
    if row is None:
        row = WikiCacheRow(lang=lang, title=title)
        session.add(row)
    row.status, row.data, row.error, row.fetched_at = status, dict(data), error, utcnow()


def save_enrichment(session: Session, *, dataset: str, class_id: str, lang: str, data: dict) -> None:
    """Insert or replace what the card of ``class_id`` shows from Wikipedia in ``lang``."""
    dataset_id = _dataset_id(session, dataset)
    row = session.scalar(select(KnowledgeEnrichmentRow).where(
        KnowledgeEnrichmentRow.dataset_id == dataset_id, KnowledgeEnrichmentRow.class_id == class_id,
        KnowledgeEnrichmentRow.lang == lang))
    if row is None:
        row = KnowledgeEnrichmentRow(dataset_id=dataset_id, class_id=class_id, lang=lang)
        session.add(row)
    row.data, row.updated_at = dict(data), utcnow()


def enrichment(session: Session, *, dataset: str) -> dict[str, dict[str, dict]]:
    """class_id → language → stored Wikipedia summary, for ``dataset``."""
    dataset_id = _dataset_id(session, dataset)
    out: dict[str, dict[str, dict]] = {}
    rows = session.execute(select(KnowledgeEnrichmentRow.class_id, KnowledgeEnrichmentRow.lang,
                                  KnowledgeEnrichmentRow.data)
                           .where(KnowledgeEnrichmentRow.dataset_id == dataset_id)
                           .order_by(KnowledgeEnrichmentRow.class_id, KnowledgeEnrichmentRow.lang))
    for r in rows:
        out.setdefault(r.class_id, {})[r.lang] = dict(r.data)
    return out
