"""A taxon's chain (species → genus → family → order) from Wikidata, for cards with a scientific name.

Ahead of time only, like the Wikipedia summaries, and through the same cached, bounded, polite client
(wikipedia.Wiki): one search for the item whose taxon name (P225) is the card's scientific name, then
one request per step up its parent taxon (P171) claims, until an order or a bounded number of steps.
Intermediate ranks (tribe, subfamily, …) are walked through but not kept. Labels come in the
enrichment's languages (e.g. 국화과 for Asteraceae).
"""

from __future__ import annotations

from urllib.parse import urlencode

from snapid.knowledge.wikipedia import Lookup, Wiki, fetch_json

# Wikidata items of the ranks a card shows (the values of P105, "taxon rank")
RANKS = {"Q7432": "species", "Q34740": "genus", "Q35409": "family", "Q36602": "order"}
MAX_STEPS = 12            # species to order is 3 steps, or up to ~10 through tribes, subfamilies and the like
MAX_NAME_CHARS = 200
BREAKER = "wikidata"


def taxon_chain(wiki: Wiki, scientific_name: str, languages: list[str]) -> Lookup:
    """Lookup("ok", {"chain": [{"rank", "name", "id", "labels"}, …]}) from the taxon itself up to its
    order; "missing" when Wikidata has no such taxon; a failure status when a request failed."""
    name = " ".join(scientific_name.split())
    if not name or len(name) > MAX_NAME_CHARS or '"' in name:
        return Lookup("missing", error="not a possible taxon name")
    found = _search(wiki, name)
    if found.status != "ok":
        return found
    chain, item_id, calls = [], found.data["id"], found.calls
    for _ in range(MAX_STEPS):
        entity = _entity(wiki, item_id, languages)
        calls += entity.calls
        if entity.status != "ok":
            return Lookup(entity.status, error=f"{item_id}: {entity.error}", calls=calls)
        data = entity.data
        if data["rank"] in RANKS.values():
            chain.append({"rank": data["rank"], "name": data["name"], "id": item_id, "labels": data["labels"]})
        if data["rank"] == "order" or not data["parent"]:
            break
        item_id = data["parent"]
    return Lookup("ok", data={"chain": chain}, calls=calls)


def _search(wiki: Wiki, name: str) -> Lookup:
    """The item whose P225 is exactly ``name`` (CirrusSearch's haswbstatement)."""
    url = _api(wiki, {"action": "query", "list": "search", "srsearch": f'haswbstatement:"P225={name}"',
                      "srlimit": "3", "srnamespace": "0"})
    return wiki.cached(BREAKER, f"taxon:{name}", lambda: fetch_json(wiki.client, wiki.policy, url, _search_answer,
                                                                    sleep=wiki.sleep))


def _entity(wiki: Wiki, item_id: str, languages: list[str]) -> Lookup:
    langs = "|".join(sorted(set(languages) | {"en"}))
    url = _api(wiki, {"action": "wbgetentities", "ids": item_id, "props": "labels|claims", "languages": langs})
    return wiki.cached(BREAKER, f"{item_id}:{langs}"[:300], lambda: fetch_json(
        wiki.client, wiki.policy, url, lambda doc: _entity_answer(doc, item_id), sleep=wiki.sleep))


def _api(wiki: Wiki, params: dict[str, str]) -> str:
    query = urlencode({**params, "format": "json", "formatversion": "2"})
    return wiki.policy.wikidata_url.rstrip("/") + "/w/api.php?" + query


def _search_answer(doc: object) -> Lookup:
    hits = doc.get("query", {}).get("search") if isinstance(doc, dict) and isinstance(doc.get("query"), dict) else None
    if not isinstance(hits, list):
        return Lookup("invalid", error="the answer is not a search result")
    ids = [h["title"] for h in hits if isinstance(h, dict) and _is_item(h.get("title"))]
    return Lookup("ok", data={"id": ids[0]}) if ids else Lookup("missing", error="no taxon with that name")


def _entity_answer(doc: object, item_id: str) -> Lookup:
    entities = doc.get("entities") if isinstance(doc, dict) else None
    entity = entities.get(item_id) if isinstance(entities, dict) else None
    if not isinstance(entity, dict):
        return Lookup("invalid", error="the answer has no such entity")
    if "missing" in entity:
        return Lookup("missing", error="no such item")
    claims = entity.get("claims") if isinstance(entity.get("claims"), dict) else {}
    labels = entity.get("labels") if isinstance(entity.get("labels"), dict) else {}
    rank = _value(claims, "P105")
    parent = _value(claims, "P171")
    name = _value(claims, "P225")
    return Lookup("ok", data={
        "rank": RANKS.get(rank.get("id") if isinstance(rank, dict) else "", "other"),
        "name": name[:MAX_NAME_CHARS] if isinstance(name, str) else "",
        "parent": parent["id"] if isinstance(parent, dict) and _is_item(parent.get("id")) else "",
        "labels": {str(lang): str(v["value"])[:MAX_NAME_CHARS] for lang, v in labels.items()
                   if isinstance(v, dict) and isinstance(v.get("value"), str)}})


def _value(claims: dict, prop: str) -> object:
    """The value of a property's preferred statement, else its first normal one; None when absent."""
    statements = [s for s in claims.get(prop) or [] if isinstance(s, dict) and s.get("rank") != "deprecated"]
    statements.sort(key=lambda s: s.get("rank") != "preferred")
    for statement in statements:
        snak = statement.get("mainsnak")
        datavalue = snak.get("datavalue") if isinstance(snak, dict) else None
        value = datavalue.get("value") if isinstance(datavalue, dict) else None
        if value is not None:
            return value
    return None


def _is_item(value: object) -> bool:
    return isinstance(value, str) and len(value) < 20 and value[:1] == "Q" and value[1:].isdigit()
