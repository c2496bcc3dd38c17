"""What a prediction answer says besides scores: the knowledge card of the best match in the asked
language, and the rule warnings when one query holds several recognised objects.

Knowledge comes from the database, kept current by services/knowledge.py, else from the served bundle's
knowledge.json; missing or malformed knowledge gives no card and no warnings, never an error. Text is
returned as stored: the page escapes it on output."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from snapid.knowledge.rules import Rule, match_rules
from snapid.serve.services import subsets
from snapid.serve.services.knowledge import card_extras, knowledge_for
from snapid.serve.services.model import LoadedModel
from snapid.serve.services.predictor import top_k

log = logging.getLogger("snapid.serve")
FALLBACK_LANGUAGES = ("en", "und")


def pick_text(texts: dict | None, lang: str | None) -> str:
    """The text in ``lang`` (or its base language: ko-KR → ko), else English, else untagged, else any."""
    if not isinstance(texts, dict) or not texts:
        return ""
    wanted = [lang, lang.split("-")[0].split("_")[0]] if lang else []
    for key in [*wanted, *FALLBACK_LANGUAGES]:
        if key and isinstance(texts.get(key), str) and texts[key]:
            return texts[key]
    return next((str(v) for v in texts.values() if isinstance(v, str) and v), "")


def knowledge(model: LoadedModel) -> tuple[dict, list[Rule]]:
    """The cards (by class id) and parsed rules ``model`` answers with: the database's newest knowledge of its
    dataset when a server watches it, else the bundle's knowledge.json (services/knowledge.py)."""
    found = knowledge_for(model)
    return found.cards, found.rules


def display_name(model: LoadedModel, class_id: str, lang: str | None) -> str:
    """The class's name in ``lang``: the card's names, then labels.json's display names, then its name."""
    cards, _ = knowledge(model)
    card = cards.get(class_id) or {}
    label = next((c for c in model.labels if c["id"] == class_id), None)
    names = {**(label["display_names"] if label else {}),
             **(card.get("names") if isinstance(card.get("names"), dict) else {})}
    wanted = [lang, lang.split("-")[0]] if lang else []
    for key in wanted:
        if key and names.get(key):
            return str(names[key])
    return (label["name"] if label else "") or str(card.get("name") or "") or pick_text(names, lang) or class_id


def card_for(model: LoadedModel, class_id: str, lang: str | None) -> dict | None:
    """The knowledge card of ``class_id`` in ``lang``, shaped for the page; None when there is none."""
    cards, _ = knowledge(model)
    card = cards.get(class_id)
    if card is None:
        return None
    names = card.get("names") if isinstance(card.get("names"), dict) else {}
    fields = card.get("fields") if isinstance(card.get("fields"), dict) else {}
    links = [{"label": str(link.get("label") or ""), "url": str(link["url"])}
             for link in card.get("links") or [] if isinstance(link, dict) and isinstance(link.get("url"), str)]
    return {**card_extras(knowledge_for(model), card, class_id, lang),
            "class_id": class_id, "display_name": display_name(model, class_id, lang),
            "names": _texts(names),
            "scientific_name": str(card.get("scientific_name") or ""),
            "description": pick_text(card.get("descriptions"), lang), "descriptions": _texts(card.get("descriptions")),
            "image": str(card.get("image") or ""),
            "links": links,
            "fields": [{"name": str(k), "value": str(v)} for k, v in fields.items() if k not in ("lat", "lon")],
            "name_sources": _texts(card.get("name_sources")),
            "wikipedia": _wikipedia(card.get("wikipedia"), lang), "taxonomy": _taxonomy(card.get("taxonomy"), lang)}


def _texts(texts) -> dict[str, str]:
    return {str(k): str(v) for k, v in texts.items() if isinstance(v, str)} if isinstance(texts, dict) else {}


def _taxonomy(chain, lang: str | None) -> list[dict]:
    out = []
    for taxon in chain if isinstance(chain, list) else []:
        if isinstance(taxon, dict) and isinstance(taxon.get("name"), str):
            labels = taxon.get("labels") if isinstance(taxon.get("labels"), dict) else {}
            label = next((labels[k] for k in (lang, (lang or "").split("-")[0])
                          if k and isinstance(labels.get(k), str)), "")
            out.append({"rank": str(taxon.get("rank") or ""), "name": taxon["name"], "label": label})
    return out


def _wikipedia(pages, lang: str | None) -> dict | None:
    if not isinstance(pages, dict) or not pages:
        return None
    keys = [k for k in (lang, (lang or "").split("-")[0], *FALLBACK_LANGUAGES) if k] + list(pages)
    page = next((pages[k] for k in keys if isinstance(pages.get(k), dict)), None)
    if page is None:
        return None
    keep = ("lang", "title", "extract", "description", "url", "thumbnail")
    return {**{k: str(page.get(k) or "") for k in keep}, "fallback": bool(page.get("fallback"))}


def answer(model: LoadedModel, probs: np.ndarray, *, k: int, lang: str | None,
           embedding: np.ndarray | None = None) -> dict:
    """Top-k predictions (display names from the cards), the unknown flag and the best match's card; with the
    query's ``embedding`` and a bundle with reference photos, each prediction's nearest reference photos.
    Inside `subsets.only(...)` (a request's classes= or subset=) the probabilities are renormalised over those
    candidates first, and the "unknown" rule is applied to the renormalised scores."""
    probs, candidates = subsets.restricted(model, probs)
    best = top_k(model, probs, min(k, candidates), lang)
    for p in best:
        p["display_name"] = display_name(model, p["id"], lang)
    if embedding is not None and model.references is not None and len(embedding) == model.references.dim:
        for p, photos in zip(best, model.references.nearest(embedding, [p["index"] for p in best]), strict=True):
            p["references"] = photos
    unknown = float(np.max(probs)) < model.threshold  # the unrounded score, as calibration compared it
    used = knowledge_for(model)
    return {"predictions": best, "unknown": unknown, "card": None if unknown else card_for(model, best[0]["id"], lang),
            "knowledge_version": used.version, "knowledge_source": used.source}


CANDIDATE_MIN = 0.15   # an unsure object may also be a runner-up at least this likely ...
CANDIDATES = 3         # ... among its top 3


def recognised(numbered: Iterable[tuple[int, dict]]) -> list[tuple[int, str, bool, list[str]]]:
    """(object number, best class id, sure, runner-up ids) for `warnings_for`, from (number, answer body)
    pairs. A sure object is its best guess; an unsure one may also be any of its runner-ups."""
    out = []
    for n, body in numbered:
        predictions, sure = body["predictions"], not body["unknown"]
        others = [] if sure else [p["id"] for p in predictions[1:CANDIDATES] if p["score"] >= CANDIDATE_MIN]
        out.append((n, predictions[0]["id"], sure, others))
    return out


def warnings_for(model: LoadedModel, objects: list[tuple], lang: str | None) -> list[dict]:
    """Rule warnings across objects [(object number, best class id, sure[, runner-up ids])], sure ones
    first, each group most severe first.

    Unsure objects (best score under the threshold) count too, and a warning that involves one is
    marked ``certain: false``: for rules such as "must not be taken together", a missed warning costs
    more than a tentative one, which the page words as "possible: if these are …". For the same
    reason an unsure object may stand for one of its likely runner-ups (look-alike pills: A10 read as
    A20): a rule that only matches that way is a possible warning as well."""
    _, rules = knowledge(model)
    if not rules or len(objects) < 2:
        return []
    objects = [(o[0], o[1], o[2] if len(o) > 2 else True, list(o[3]) if len(o) > 3 else []) for o in objects]
    out = []
    for hit in match_rules(rules, [best for _, best, _, _ in objects]):
        involved = [(n, sure) for n, best, sure, _ in objects if best in hit["classes"]]
        out.append(_warning(model, hit, [n for n, _ in involved], all(sure for _, sure in involved), lang))
    matched = {tuple(sorted(w["classes"])) for w in out}
    if any(others for *_, others in objects):
        for hit in match_rules(rules, [c for _, best, _, others in objects for c in (best, *others)]):
            chosen = None if tuple(sorted(hit["classes"])) in matched else _assign(hit["classes"], objects)
            if chosen is not None:
                out.append(_warning(model, hit, sorted(chosen), False, lang))
    out.sort(key=lambda w: not w["certain"])  # stable: sure warnings first, each group most severe first
    return out


def _warning(model: LoadedModel, hit: dict, objects: list[int], certain: bool, lang: str | None) -> dict:
    return {"classes": hit["classes"], "names": [display_name(model, c, lang) for c in hit["classes"]],
            "severity": hit["severity"], "message": pick_text(hit["message"], lang), "messages": hit["message"],
            "objects": objects, "certain": certain}


def _assign(classes: list[str], objects: list[tuple], used: tuple[int, ...] = ()) -> list[int] | None:
    """Distinct objects standing for ``classes``, each by its best guess or a runner-up; None if none can."""
    if not classes:
        return list(used)
    first, rest = classes[0], classes[1:]
    for n, best, _, others in sorted(objects, key=lambda o: o[1] != first):  # best guesses tried first
        if n not in used and (best == first or first in others):
            found = _assign(rest, objects, (*used, n))
            if found is not None:
                return found
    return None
