"""`snapid knowledge enrich`: add Wikipedia summaries and Wikidata taxonomy to a dataset's cards, ahead of time.

For each class and language: look up the card's name in that language, then its scientific
name (or the class name when there is no other), through the cached client in wikipedia.py.
A language with no page of that name follows the language links of a page found in another
language (Sunflower → 해바라기). Still none: it takes another language's summary, marked
``fallback`` (and translated when a translator hook is given). A page found in a language names
the class there when the card and the dataset give no name (store.snapshot). Cards with a
scientific name also get their taxon chain from Wikidata (wikidata.py). A lookup that fails leaves
what the card showed before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx
from sqlalchemy import Engine

from snapid.knowledge import KnowledgeError
from snapid.knowledge.cards import NO_LANGUAGE, TAXONOMY
from snapid.knowledge.table import LANG
from snapid.knowledge.wikidata import taxon_chain
from snapid.knowledge.wikipedia import (
    Lookup,
    Sleep,
    Translator,
    Wiki,
    WikiPolicy,
    make_client,
)
from snapid.track import knowledge as tk
from snapid.track.db import transaction

MAX_LANGUAGES = 10
TITLES_PER_LANGUAGE = 2   # bounds the requests per class: languages × titles × (1 + retries)
MAX_FAILURES_SHOWN = 10


@dataclass
class EnrichReport:
    dataset: str
    languages: list[str]
    classes: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {"ok": 0, "fallback": 0, "missing": 0, "failed": 0})
    taxonomy: dict[str, int] = field(default_factory=lambda: {"ok": 0, "missing": 0, "failed": 0})
    calls: int = 0         # HTTP requests sent
    cache_hits: int = 0    # lookups answered by the database cache
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def parse_languages(spec: str) -> list[str]:
    """'ko,en' → ['ko', 'en'] (order = preference for fallbacks); KnowledgeError on a bad code."""
    langs = list(dict.fromkeys(part.strip().lower() for part in spec.split(",") if part.strip()))
    bad = [lang for lang in langs if not LANG.match(lang)]
    if not langs or bad or len(langs) > MAX_LANGUAGES:
        raise KnowledgeError(f"--wikipedia {spec!r}: expected up to {MAX_LANGUAGES} language codes such as ko,en"
                             + (f" (not codes: {', '.join(bad)})" if bad else ""))
    return langs


def candidate_titles(lang: str, card: dict | None, cls: dict) -> list[str]:
    """Titles to try in ``lang``, best first: the name in that language, the scientific name, the class name."""
    card = card or {}
    names, display = card.get("names") or {}, cls.get("display_names") or {}
    only_name = cls.get("name") if not names and not display else None
    options = [names.get(lang), display.get(lang), card.get("scientific_name"), names.get(NO_LANGUAGE), only_name]
    titles: list[str] = []
    for title in options:
        title = (title or "").strip()
        # A title without letters ("1899", a numeric class id) would find a year's page, not the class.
        if title and any(ch.isalpha() for ch in title) and title not in titles:
            titles.append(title)
    return titles[:TITLES_PER_LANGUAGE]


def enrich(dataset: str, *, engine: Engine, languages: list[str], policy: WikiPolicy | None = None,
           refresh: bool = False, translator: Translator | None = None, client: httpx.Client | None = None,
           sleep: Sleep = time.sleep, progress: Callable[[int, int], None] | None = None,
           taxonomy: bool = True) -> EnrichReport:
    """Look every class of ``dataset`` up on Wikipedia in ``languages`` (and its scientific name on
    Wikidata, unless ``taxonomy`` is False) and store what was found."""
    with transaction(engine) as session:
        classes = tk.dataset_classes(session, dataset=dataset)
        _, cards = tk.latest_cards(session, dataset=dataset)
    cards_by_id = {c["class_id"]: c for c in cards}
    policy = policy or WikiPolicy()
    report = EnrichReport(dataset, list(languages), classes=len(classes))
    own_client = client is None
    wiki = Wiki(engine, policy, client or make_client(policy), refresh=refresh, sleep=sleep)
    try:
        for done, cls in enumerate(classes, start=1):
            card = cards_by_id.get(cls["class_id"])
            found = {lang: _first_found(wiki, lang, candidate_titles(lang, card, cls), report) for lang in languages}
            _follow_langlinks(wiki, found, report)
            _save(engine, dataset, cls["class_id"], found, languages, translator, report)
            if taxonomy and (card or {}).get("scientific_name"):
                _save_taxonomy(engine, dataset, cls["class_id"], wiki, card["scientific_name"], languages, report)
            if progress is not None:
                progress(done, len(classes))
    finally:
        if own_client:
            wiki.client.close()
    return report


def _first_found(wiki: Wiki, lang: str, titles: list[str], report: EnrichReport) -> Lookup:
    """The first title that has a page; stops at a failure (a failing server will fail the next title too)."""
    result = Lookup("missing", error="no name to look up")
    for title in titles:
        result = wiki.lookup(lang, title)
        report.calls += result.calls
        report.cache_hits += result.cached
        if result.status != "missing":
            break
    if result.status not in ("ok", "missing") and len(report.failures) < MAX_FAILURES_SHOWN:
        report.failures.append(f"{lang} {titles[0] if titles else '?'}: {result.status} ({result.error})")
    return result


def _follow_langlinks(wiki: Wiki, found: dict[str, Lookup], report: EnrichReport) -> None:
    """A language without a page of the card's names gets the page that a found page links to in it."""
    donors = [lang for lang, result in found.items() if result.status == "ok"]
    for lang, result in found.items():
        if result.status != "missing":
            continue
        for donor in donors:
            link = wiki.langlink(donor, found[donor].data["title"], lang)
            report.calls += link.calls
            report.cache_hits += link.cached
            if link.status != "ok":
                continue
            page = wiki.lookup(lang, link.data["title"])
            report.calls += page.calls
            report.cache_hits += page.cached
            if page.status == "ok":
                found[lang] = Lookup("ok", data={**page.data, "via": f"langlinks:{donor}"})
                break


def _save_taxonomy(engine: Engine, dataset: str, class_id: str, wiki: Wiki, scientific_name: str,
                   languages: list[str], report: EnrichReport) -> None:
    """Store the taxon chain; a failed lookup leaves the stored one as it was."""
    result = taxon_chain(wiki, scientific_name, languages)
    report.calls += result.calls
    if result.status not in ("ok", "missing"):
        report.taxonomy["failed"] += 1
        if len(report.failures) < MAX_FAILURES_SHOWN:
            report.failures.append(f"wikidata {scientific_name}: {result.status} ({result.error})")
        return
    report.taxonomy["ok" if result.status == "ok" and result.data["chain"] else "missing"] += 1
    if result.status == "ok" and result.data["chain"]:
        with transaction(engine) as session:
            tk.save_enrichment(session, dataset=dataset, class_id=class_id, lang=TAXONOMY,
                               data={"chain": result.data["chain"], "source": "wikidata"})


def _save(engine: Engine, dataset: str, class_id: str, found: dict[str, Lookup], languages: list[str],
          translator: Translator | None, report: EnrichReport) -> None:
    """Store direct hits and fallbacks; a failed lookup leaves the language's stored summary as it was."""
    donors = [lang for lang in languages if found[lang].status == "ok"]
    with transaction(engine) as session:
        for lang in languages:
            result = found[lang]
            if result.status == "ok":
                data = {**result.data, "fallback": False, "translated": False}
                report.outcomes["ok"] += 1
            elif result.status == "missing" and donors:
                data = _fallback(found[donors[0]].data, lang, translator)
                report.outcomes["fallback"] += 1
            else:
                report.outcomes["missing" if result.status == "missing" else "failed"] += 1
                continue
            tk.save_enrichment(session, dataset=dataset, class_id=class_id, lang=lang, data=data)


def _fallback(donor: dict, lang: str, translator: Translator | None) -> dict:
    data = {**donor, "fallback": True, "translated": False, "requested_lang": lang}
    if translator is not None and donor.get("extract"):
        try:
            text = translator(donor["extract"], donor["lang"], lang)
        except Exception:  # noqa: BLE001 - a user's hook: its failure must not lose the untranslated fallback
            text = None
        if isinstance(text, str) and text.strip():
            data.update(extract=text.strip()[:4000], translated=True)
    return data
