"""Names from Wikipedia's language links and taxonomy from Wikidata, against a stub of both on 127.0.0.1.

The stub answers the real URL shapes from a small world of pages and items: REST page summaries
(with redirects), the action API's langlinks query, Wikidata's haswbstatement search and
wbgetentities. It records each request, so caching and bounds are checked by count.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from snapid.knowledge.enrich import enrich
from snapid.knowledge.store import import_cards, snapshot
from snapid.knowledge.wikidata import MAX_STEPS, taxon_chain
from snapid.knowledge.wikipedia import Wiki, WikiPolicy, make_client
from tests.conftest import write_image

# lang → {title asked: canonical title} (a redirect when they differ)
TITLES = {
    "en": {"Sunflower": "Common sunflower", "Common sunflower": "Common sunflower", "Rosa rugosa": "Rosa rugosa"},
    "ko": {"해바라기": "해바라기", "Rosa rugosa": "해당화", "해당화": "해당화", "민들레": "민들레"},
}
LANGLINKS = {("en", "Common sunflower"): {"ko": "해바라기"}, ("en", "Sunflower"): {"ko": "해바라기"}}

# Wikidata: id → (rank item, taxon name, parent, labels)
SPECIES, GENUS, FAMILY, ORDER, TRIBE, SUBFAMILY = "Q7432", "Q34740", "Q35409", "Q36602", "Q227936", "Q164280"
ITEMS = {
    "Q171497": (SPECIES, "Helianthus annuus", "Q27142", {"en": "common sunflower", "ko": "해바라기"}),
    "Q27142": (GENUS, "Helianthus", "Q80", {"en": "Helianthus", "ko": "해바라기속"}),
    "Q80": (TRIBE, "Heliantheae", "Q25400", {"en": "Heliantheae"}),
    "Q25400": (FAMILY, "Asteraceae", "Q21754", {"en": "daisy family", "ko": "국화과"}),
    "Q21754": (ORDER, "Asterales", "Q9", {"en": "Asterales", "ko": "국화목"}),
    "Q9": ("Q37517", "Eudicots", "", {"en": "eudicots"}),  # above the order: never asked for
    "Q146": (SPECIES, "Rosa rugosa", "Q34687", {"ko": "해당화"}),
    "Q34687": (GENUS, "Rosa", "Q50", {"ko": "장미속"}),
    "Q50": (SUBFAMILY, "Rosoideae", "Q46299", {}),
    "Q46299": (FAMILY, "Rosaceae", "Q21895", {"ko": "장미과"}),
    "Q21895": (ORDER, "Rosales", "", {"ko": "장미목"}),
}


def summary(title: str, lang: str) -> dict:
    return {"type": "standard", "title": title, "extract": f"{title} ({lang}).", "description": "",
            "content_urls": {"desktop": {"page": f"https://{lang}.wikipedia.test/wiki/{title}"}}}


def claim(value) -> list[dict]:
    return [{"rank": "normal", "mainsnak": {"datavalue": {"value": value}}}]


class World:
    def __init__(self):
        self.requests: list[str] = []
        self.failing: set[str] = set()   # "wikipedia" or "wikidata": answer 500
        self.items = dict(ITEMS)

    def count(self, part: str = "") -> int:
        return sum(1 for r in self.requests if part in r)

    def answer(self, path: str) -> tuple[int, dict]:
        self.requests.append(unquote(path))
        url = urlsplit(path)
        site, _, rest = url.path.lstrip("/").partition("/")
        if site in self.failing or (site != "wikidata" and "wikipedia" in self.failing):
            return 500, {"error": "down"}
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if site == "wikidata":
            return self.wikidata(query)
        if rest.startswith("api/rest_v1/page/summary/"):
            asked = unquote(rest.removeprefix("api/rest_v1/page/summary/")).replace("_", " ")
            title = TITLES.get(site, {}).get(asked)
            return (200, summary(title, site)) if title else (404, {"type": "not_found"})
        if rest == "w/api.php" and query.get("prop") == "langlinks":
            title = TITLES.get(site, {}).get(query["titles"])
            if title is None:
                return 200, {"query": {"pages": [{"ns": 0, "title": query["titles"], "missing": True}]}}
            links = LANGLINKS.get((site, title), {})
            wanted = [{"lang": query["lllang"], "title": links[query["lllang"]]}] if query["lllang"] in links else []
            return 200, {"query": {"pages": [{"pageid": 1, "ns": 0, "title": title, "langlinks": wanted}]}}
        return 404, {}

    def wikidata(self, query: dict) -> tuple[int, dict]:
        if query.get("list") == "search":
            name = query["srsearch"].removeprefix('haswbstatement:"P225=').removesuffix('"')
            hits = [{"ns": 0, "title": i} for i, item in self.items.items() if item[1] == name]
            return 200, {"query": {"search": hits}}
        if query.get("action") == "wbgetentities":
            item_id, langs = query["ids"], query["languages"].split("|")
            if item_id not in self.items:
                return 200, {"entities": {item_id: {"id": item_id, "missing": ""}}}
            rank, name, parent, labels = self.items[item_id]
            claims = {"P105": claim({"id": rank}), "P225": claim(name)}
            if parent:
                claims["P171"] = claim({"id": parent})
            return 200, {"entities": {item_id: {"id": item_id, "claims": claims, "labels": {
                lang: {"language": lang, "value": text} for lang, text in labels.items() if lang in langs}}}}
        return 404, {}


@pytest.fixture
def world():
    state = World()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            code, doc = state.answer(self.path)
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    state.policy = WikiPolicy(base_url=base + "/{lang}", wikidata_url=base + "/wikidata",
                              contact="tests@example.invalid", timeout_s=1.0, retries=1, backoff_s=0.01)
    yield state
    server.shutdown()
    server.server_close()


CARDS = """class_id,name_en,name_ko,scientific_name
sunflower,Sunflower,,Helianthus annuus
rosa_rugosa,,,Rosa rugosa
dandelion,,민들레 (직접),Taraxacum officinale
weed,,,Nonexistus fakeus
"""


@pytest.fixture
def plants(tmp_path, engine):
    from snapid.importer import import_dataset

    for seed, name in enumerate(["sunflower", "rosa_rugosa", "dandelion", "weed"]):
        for i in range(2):
            write_image(tmp_path / "plants" / name / f"{i}.jpg", seed=seed * 10 + i)
    import_dataset(tmp_path / "plants", name="plants", engine=engine)
    (tmp_path / "cards.csv").write_text(CARDS, encoding="utf-8")
    import_cards(tmp_path / "cards.csv", dataset="plants", engine=engine)
    return "plants"


def run(world, engine, **kw):
    return enrich("plants", engine=engine, languages=["ko", "en"], policy=world.policy, sleep=lambda s: None, **kw)


def test_korean_names_come_from_language_links_and_redirected_titles(world, engine, plants):
    report = run(world, engine)
    cards = snapshot("plants", engine=engine)["cards"]
    sunflower = cards["sunflower"]
    # no ko page under "Helianthus annuus": the English page's language link leads to 해바라기
    assert sunflower["wikipedia"]["ko"]["title"] == "해바라기" and sunflower["wikipedia"]["ko"]["fallback"] is False
    assert sunflower["wikipedia"]["ko"]["via"] == "langlinks:en"
    assert sunflower["names"] == {"en": "Sunflower", "ko": "해바라기"}  # the given English name is kept
    assert sunflower["name_sources"] == {"ko": "wikipedia"}
    # ko Wikipedia redirects the Latin name to 해당화; the en page goes by the Latin name: not a common name
    rose = cards["rosa_rugosa"]
    assert rose["names"] == {"ko": "해당화"} and rose["name_sources"] == {"ko": "wikipedia"}
    # a name the card gives is never replaced, even when a page is found
    assert cards["dandelion"]["names"] == {"ko": "민들레 (직접)"} and cards["dandelion"]["name_sources"] == {}
    assert cards["weed"]["names"] == {} and cards["weed"]["wikipedia"] == {}
    assert report.outcomes["failed"] == 0 and report.taxonomy == {"ok": 2, "missing": 2, "failed": 0}


def test_taxonomy_chain_species_to_order_with_labels(world, engine, plants):
    run(world, engine)
    cards = snapshot("plants", engine=engine)["cards"]
    chain = cards["sunflower"]["taxonomy"]
    assert [(t["rank"], t["name"]) for t in chain] == [
        ("species", "Helianthus annuus"), ("genus", "Helianthus"), ("family", "Asteraceae"), ("order", "Asterales")]
    assert chain[2]["labels"] == {"en": "daisy family", "ko": "국화과"} and chain[2]["id"] == "Q25400"
    assert [t["name"] for t in cards["rosa_rugosa"]["taxonomy"]] == ["Rosa rugosa", "Rosa", "Rosaceae", "Rosales"]
    assert cards["weed"]["taxonomy"] == [] and cards["dandelion"]["taxonomy"] == []
    assert world.count("Q9&") == 0  # the walk stops at the order


def test_rerun_is_answered_by_the_cache(world, engine, plants):
    first = run(world, engine)
    sent = world.count()
    assert first.calls == sent > 0
    again = run(world, engine)
    assert again.calls == 0 and world.count() == sent and again.cache_hits > 0
    assert again.taxonomy == first.taxonomy
    # genus, family and order are shared between species: one request each, however many species
    world.items["Q171498"] = (SPECIES, "Helianthus tuberosus", "Q27142", {"ko": "뚱딴지"})
    with make_client(world.policy) as client:
        wiki = Wiki(engine, world.policy, client, sleep=lambda s: None)
        result = taxon_chain(wiki, "Helianthus tuberosus", ["ko", "en"])
    assert [t["name"] for t in result.data["chain"]] == [
        "Helianthus tuberosus", "Helianthus", "Asteraceae", "Asterales"]
    assert result.calls == 2  # the search and the new species; its parents came from the cache


def test_failures_leave_names_and_taxonomy_as_they_were(world, engine, plants):
    run(world, engine)
    before, asked = snapshot("plants", engine=engine), world.count("/wikidata/")
    world.failing = {"wikipedia", "wikidata"}
    report = run(world, engine, refresh=True)
    assert report.outcomes["ok"] == 0 and report.taxonomy["failed"] >= 1
    assert any(f.startswith("wikidata ") for f in report.failures)
    assert snapshot("plants", engine=engine) == before
    # the breaker stops asking a failing site after 3 failed lookups (2 tries each), not one storm per class
    assert world.count("/wikidata/") - asked == 3 * 2


def test_a_parent_loop_or_endless_chain_is_bounded(world, engine, plants):
    world.items["Q171497"] = (SPECIES, "Helianthus annuus", "Q171497", {})  # its own parent
    with make_client(world.policy) as client:
        wiki = Wiki(engine, world.policy, client, sleep=lambda s: None)
        result = taxon_chain(wiki, "Helianthus annuus", ["en"])
    assert result.status == "ok" and result.calls <= 1 + MAX_STEPS


@pytest.mark.parametrize("name", ["", "x" * 500, 'Rosa "rugosa'])
def test_impossible_names_are_not_asked(world, engine, name):
    with make_client(world.policy) as client:
        result = taxon_chain(Wiki(engine, world.policy, client), name, ["en"])
    assert result.status == "missing" and result.calls == 0 and world.count() == 0


def test_cli_enrich_shows_names_and_taxonomy(world, engine, plants, monkeypatch):
    from typer.testing import CliRunner

    from snapid.cli import app

    monkeypatch.setenv("SNAPID_WIKI_BASE_URL", world.policy.base_url)
    monkeypatch.setenv("SNAPID_WIKIDATA_URL", world.policy.wikidata_url)
    runner = CliRunner()
    done = runner.invoke(app, ["knowledge", "enrich", "--dataset", "plants", "--wikipedia", "ko,en"])
    assert done.exit_code == 0, done.output
    assert "taxonomy from Wikidata: 2 found, 2 not found, 0 failed" in done.output
    shown = runner.invoke(app, ["knowledge", "show", "--dataset", "plants", "sunflower"])
    assert "name (ko), from wikipedia" in shown.output and "해바라기" in shown.output
    assert "family" in shown.output and "Asteraceae" in shown.output
    off = runner.invoke(app, ["knowledge", "enrich", "--dataset", "plants", "--no-taxonomy", "--refresh", "--json"])
    assert off.exit_code == 0 and json.loads(off.output)["taxonomy"] == {"ok": 0, "missing": 0, "failed": 0}


def test_the_bundle_card_carries_taxonomy_and_names(world, engine, plants, tmp_path: Path):
    """What export copies into knowledge.json is what the page's card is built from."""
    from snapid.serve.services.answers import _taxonomy

    run(world, engine)
    card = snapshot("plants", engine=engine)["cards"]["sunflower"]
    assert json.loads(json.dumps(card, ensure_ascii=False)) == card
    shown = _taxonomy(card["taxonomy"], "ko")
    assert [(t["rank"], t["label"]) for t in shown] == [
        ("species", "해바라기"), ("genus", "해바라기속"), ("family", "국화과"), ("order", "국화목")]
