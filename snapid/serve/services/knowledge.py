"""Live knowledge: the cards, rules, joined tables and places answers use, read from the database and kept
current while serving (issue 21).

`LiveKnowledge.watch` asks the database every ``poll_s`` seconds for the newest knowledge version of the served
model's dataset (one indexed query, on a worker thread); a newer one is read whole (the same snapshot
`snapid export` copies into knowledge.json), checked, and installed for the model in one reference
assignment, so the next answer uses it. Requests never wait for the database here: they read what is
installed. A database that is down or locked, or a snapshot that fails, keeps the last good knowledge;
a dataset with no knowledge in the database falls back to the bundle's knowledge.json.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from snapid.errors import UsageError
from snapid.knowledge.places import PlaceIndex
from snapid.knowledge.rules import Rule
from snapid.serve.services.model import LoadedModel

log = logging.getLogger("snapid.serve")


def local_zone(name: str = "") -> tzinfo:
    """The named IANA zone, or (empty) the machine's."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"SNAPID_TIMEZONE={name!r} is not a time zone (e.g. Asia/Seoul, UTC)") from None
    return datetime.now().astimezone().tzinfo


@dataclass(frozen=True)
class Knowledge:
    """What one answer reads. ``source``: database or bundle (None: no knowledge at all)."""

    cards: dict = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    tables: dict[str, list[dict]] = field(default_factory=dict)   # name → rows, each with "class_id"
    places: PlaceIndex | None = None
    version: int | None = None
    source: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    tz: tzinfo | None = None
    per_category: int = 3       # nearest places listed per category
    max_km: float = 20.0        # ... within this distance

    def now(self) -> datetime:
        moment = self.clock()
        zone = self.tz or datetime.now().astimezone().tzinfo
        return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)

    @property
    def zone(self) -> tzinfo:
        return self.tz or datetime.now().astimezone().tzinfo


def parse(data, *, where: str, source: str, **options) -> Knowledge:
    """A snapshot (knowledge.json's content) as Knowledge; what is malformed is left out with a warning.
    ``options``: Knowledge's clock, tz, per_category, max_km. Not a dict: no knowledge (source None)."""
    if not isinstance(data, dict):
        return Knowledge(**options)
    cards = data.get("cards") if isinstance(data.get("cards"), dict) else {}
    cards = {str(k): v for k, v in cards.items() if isinstance(v, dict)}
    rules = []
    for i, item in enumerate(data.get("rules") if isinstance(data.get("rules"), list) else []):
        try:
            rules.append(Rule.from_dict(item))
        except (KeyError, TypeError, AttributeError, ValueError):
            log.warning("%s: knowledge rule %d is malformed; ignored", where, i)
    tables = {}
    for name, table in (data.get("tables") if isinstance(data.get("tables"), dict) else {}).items():
        rows = table.get("rows") if isinstance(table, dict) and isinstance(table.get("rows"), list) else []
        tables[str(name)] = [r for r in rows if isinstance(r, dict) and isinstance(r.get("fields"), dict)]
    places = None
    raw = data.get("places") if isinstance(data.get("places"), list) else []
    try:
        good = [p for p in raw if isinstance(p, dict) and _finite(p.get("lat"), 90) and _finite(p.get("lon"), 180)
                and isinstance(p.get("names"), dict)]
        places = PlaceIndex(good) if good else None
    except (TypeError, ValueError):
        log.warning("%s: knowledge places are malformed; ignored", where)
    version = data.get("version") if isinstance(data.get("version"), int) else None
    return Knowledge(cards, rules, tables, places, version, source, **options)


def _finite(value, limit: float) -> bool:
    return isinstance(value, (int, float)) and -limit <= float(value) <= limit


_INSTALLED: weakref.WeakKeyDictionary[LoadedModel, Knowledge] = weakref.WeakKeyDictionary()
_DEFAULT: dict = {}  # Knowledge options for models no LiveKnowledge watches (offline use)
_WATCHERS: weakref.WeakSet[LiveKnowledge] = weakref.WeakSet()


def knowledge_for(model: LoadedModel) -> Knowledge:
    """The knowledge installed for ``model``, else (first use) its bundle's knowledge.json."""
    found = _INSTALLED.get(model)
    if found is None:  # a model just swapped in: a watcher of its predictor may already hold its dataset's
        for live in list(_WATCHERS):
            loaded = live._loaded
            if live.predictor.model is model and loaded is not None and loaded[0] == dataset_of(model):
                _INSTALLED[model] = loaded[2]
                return loaded[2]
        found = parse(model.bundle.knowledge, where=str(model.bundle.path), source="bundle", **_DEFAULT)
        _INSTALLED[model] = found
    return found


def install(model: LoadedModel, knowledge: Knowledge) -> None:
    _INSTALLED[model] = knowledge


def dataset_of(model: LoadedModel) -> str:
    name = model.bundle.manifest.get("dataset") or ""
    if not name and isinstance(model.bundle.knowledge, dict):
        name = model.bundle.knowledge.get("dataset") or ""
    return str(name)


class LiveKnowledge:
    """Polls the database for the served dataset's newest knowledge version and installs it for the model."""

    def __init__(self, predictor, engine: Callable, *, poll_s: float = 2.0, clock: Callable[[], datetime] | None = None,
                 tz: tzinfo | None = None, per_category: int = 3, max_km: float = 20.0):
        self.predictor, self.engine, self.poll_s = predictor, engine, poll_s
        self.clock = clock or (lambda: datetime.now().astimezone())  # tests set another
        self.options = {"tz": tz, "per_category": per_category, "max_km": max_km, "clock": lambda: self.clock()}
        self._loaded: tuple[str, int, Knowledge] | None = None  # (dataset, version, knowledge) from the database
        self.last_error: str | None = None
        _WATCHERS.add(self)

    def _bundle(self, model: LoadedModel) -> Knowledge:
        return parse(model.bundle.knowledge, where=str(model.bundle.path), source="bundle", **self.options)

    def _read(self, dataset: str, known: int | None) -> tuple[int, Knowledge | None]:
        """On a worker thread: the newest version, and (when it is not ``known``) its knowledge."""
        from snapid.knowledge.store import latest_version, snapshot

        engine = self.engine()
        version = latest_version(dataset, engine=engine)
        if version <= 0 or version == known:
            return version, None
        snap = snapshot(dataset, engine=engine)
        return version, parse(snap, where=f"database, dataset {dataset}", source="database", **self.options)

    async def refresh(self) -> Knowledge | None:
        """One poll: install the newest knowledge for the served model; returns what is installed."""
        model = self.predictor.model
        if model is None:
            return None
        dataset = dataset_of(model)
        known = self._loaded[1] if self._loaded and self._loaded[0] == dataset else None
        if dataset:
            try:
                version, fresh = await asyncio.get_running_loop().run_in_executor(None, self._read, dataset, known)
            except Exception as exc:  # locked, down, mid-migration: the last good knowledge keeps serving
                if self.last_error != str(exc):
                    log.warning("knowledge: cannot read the database (%s); keeping knowledge version %s",
                                type(exc).__name__, known)
                self.last_error = str(exc)
                version, fresh = (known or 0), None
                if known is None and _INSTALLED.get(model) is None:
                    install(model, await asyncio.get_running_loop().run_in_executor(None, self._bundle, model))
                return _INSTALLED.get(model)
            self.last_error = None
            if fresh is not None:
                if known is not None:
                    log.info("knowledge: dataset %s version %s replaces version %s", dataset, version, known)
                self._loaded = (dataset, version, fresh)
            elif version <= 0:
                self._loaded = None
        current = self._loaded[2] if self._loaded and self._loaded[0] == dataset else None
        if current is None:
            installed = _INSTALLED.get(model)
            current = installed if installed is not None and installed.source != "database" else \
                await asyncio.get_running_loop().run_in_executor(None, self._bundle, model)
        if _INSTALLED.get(model) is not current:
            install(model, current)
        return current

    async def watch(self) -> None:
        if self.poll_s <= 0:  # the bundle's knowledge.json only
            return
        await self.refresh()
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except Exception:  # never let the watch die; the last good knowledge keeps serving
                log.exception("knowledge: refresh failed")


def pick_text(texts, lang: str | None) -> str:
    """The text in ``lang`` (or its base language), else English, else untagged, else any (as answers.pick_text,
    which imports this module)."""
    if not isinstance(texts, dict) or not texts:
        return ""
    wanted = [lang, lang.split("-")[0].split("_")[0]] if lang else []
    for key in [*wanted, "en", "und"]:
        if key and isinstance(texts.get(key), str) and texts[key]:
            return texts[key]
    return next((str(v) for v in texts.values() if isinstance(v, str) and v), "")


def _lang_value(fields: dict, lang: str | None) -> list[dict]:
    """Free columns as [{"name", "value"}] in file order; ``offer_ko`` / ``offer_en`` become one ``offer`` in the
    asked language (else English, else untagged, else any)."""
    from snapid.knowledge.table import language_of

    grouped: dict[str, dict[str, str]] = {}
    for column, value in fields.items():
        base, _, suffix = str(column).rpartition("_")
        if base and language_of(str(column), (base + "_",)):
            grouped.setdefault(base, {})[suffix] = str(value)
        else:
            grouped.setdefault(str(column), {})["und"] = str(value)
    return [{"name": name, "value": pick_text(texts, lang)} for name, texts in grouped.items()]


def coordinates(card: dict) -> tuple[float, float] | None:
    fields = card.get("fields") if isinstance(card.get("fields"), dict) else {}
    try:
        lat, lon = float(fields["lat"]), float(fields["lon"])
    except (KeyError, TypeError, ValueError):
        return None
    return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else None


def table_rows(knowledge: Knowledge, class_id: str, lang: str | None) -> list[dict]:
    """Every joined table's rows for ``class_id`` valid now: [{"table", "fields", "valid_from", "valid_to"}]."""
    from snapid.knowledge.timed import valid_at

    now, zone, out = knowledge.now(), knowledge.zone, []
    for name, rows in knowledge.tables.items():
        for row in rows:
            if str(row.get("class_id")) == class_id and valid_at(row, now, zone):
                out.append({"table": name, "fields": _lang_value(row["fields"], lang),
                            "valid_from": str(row.get("valid_from") or ""), "valid_to": str(row.get("valid_to") or "")})
    return out


def nearby(knowledge: Knowledge, point: tuple[float, float] | None, lang: str | None) -> list[dict]:
    """The nearest places of each category around ``point``, shaped for the page."""
    if point is None or knowledge.places is None or knowledge.per_category <= 0:
        return []
    found = knowledge.places.nearest(point[0], point[1], per_category=knowledge.per_category,
                                     max_km=knowledge.max_km)
    return [{"name": pick_text(p.get("names"), lang), "names": {str(k): str(v) for k, v in p["names"].items()},
             "category": str(p["category"]), "lat": float(p["lat"]), "lon": float(p["lon"]),
             "address": pick_text(p.get("addresses"), lang), "link": str(p.get("link") or ""),
             "distance_m": round(p["distance_km"] * 1000)} for p in found]


def card_extras(knowledge: Knowledge, card: dict, class_id: str, lang: str | None) -> dict:
    """What live knowledge adds to a class's card: its rows of joined tables valid now, its coordinates and
    the places near them."""
    point = coordinates(card)
    return {"rows": table_rows(knowledge, class_id, lang),
            "location": {"lat": point[0], "lon": point[1]} if point else None,
            "places": nearby(knowledge, point, lang)}
