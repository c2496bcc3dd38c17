"""`snapid knowledge ...`: per-class cards, interaction rules and Wikipedia enrichment."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Table

from snapid.cli.common import console, emit_json, engine, progress_bar, settings

app = typer.Typer(help="Per-class knowledge cards, interaction rules and Wikipedia enrichment.", no_args_is_help=True)

DATASET = typer.Option(..., "--dataset", help="Dataset the knowledge belongs to (its class ids).")
ALLOW_UNKNOWN = typer.Option(False, "--allow-unknown", help="Skip (and list) entries for classes the dataset lacks "
                             "instead of failing.")
AS_JSON = typer.Option(False, "--json", help="Print the result as JSON on stdout.")


def _print_import(result, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
        return
    console.print(f"[green]imported[/] {result.items} {result.kind} from {result.source} as knowledge "
                  f"v{result.version} of {result.dataset}")
    for note in result.notes:
        console.print(f"  note: {note}", markup=False)


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="Cards as CSV or YAML: class_id, name_<lang>, scientific_name, "
                                "description_<lang>, image, link(s), any other column is a free field "
                                "(docs/knowledge.md)."),
    dataset: str = DATASET, allow_unknown: bool = ALLOW_UNKNOWN, as_json: bool = AS_JSON,
    kind: str = typer.Option("cards", "--kind", help="cards; table: a joined table (class_id, valid_from, valid_to, "
                             "any columns: discounts, prices), named by --table; places: name(_<lang>), category, "
                             "lat, lon, address(_<lang>), link."),
    table: str | None = typer.Option(None, "--table", help="--kind table: the table's name (e.g. discounts); an "
                                     "import replaces the previous one of that name."),
) -> None:
    """Import knowledge cards (or a joined table, or places) for DATASET as a new version; a running server
    picks it up within seconds, and bundles copy it at export."""
    from snapid.knowledge import KnowledgeError
    from snapid.knowledge.store import import_cards, import_places, import_table

    if kind == "cards":
        result = import_cards(file, dataset=dataset, engine=engine(), allow_unknown=allow_unknown)
    elif kind == "table":
        if not table:
            raise KnowledgeError("--kind table needs --table NAME (e.g. --table discounts)")
        result = import_table(file, dataset=dataset, table=table, engine=engine())
    elif kind == "places":
        result = import_places(file, dataset=dataset, engine=engine())
    else:
        raise KnowledgeError(f"--kind {kind!r}: use cards, table or places (rules: `snapid knowledge rules`)")
    _print_import(result, as_json)


@app.command("rules")
def rules(
    file: Path = typer.Argument(..., help="Rules as CSV or YAML: a, b (or classes 'x|y|z'), severity, "
                                "reason_<lang> / message_<lang>."),
    dataset: str = DATASET, allow_unknown: bool = ALLOW_UNKNOWN, as_json: bool = AS_JSON,
) -> None:
    """Import interaction rules (classes that must not go together) for DATASET as a new version."""
    from snapid.knowledge.store import import_rules

    _print_import(import_rules(file, dataset=dataset, engine=engine(), allow_unknown=allow_unknown), as_json)


@app.command("enrich")
def enrich(
    dataset: str = DATASET,
    wikipedia: str = typer.Option("en", "--wikipedia", help="Languages to look up, in fallback order, e.g. ko,en."),
    refresh: bool = typer.Option(False, "--refresh",
                                 help="Ask Wikipedia again even for entries still fresh in the cache."),
    translator: str | None = typer.Option(None, "--translator", help="Your translation hook 'module:function' "
                                          "(text, from, to) → text, used on fallbacks; off by default."),
    taxonomy: bool = typer.Option(True, "--taxonomy/--no-taxonomy", help="Also fetch the taxon chain (species → "
                                  "genus → family → order) from Wikidata for cards with a scientific name."),
    as_json: bool = AS_JSON,
) -> None:
    """Add Wikipedia summaries (text, thumbnail, page link) and Wikidata taxonomy to each class's card.

    A language without a page under the card's names follows the language links of a page found in
    another one (Sunflower → 해바라기), and a class the card and the dataset do not name in a language
    takes the page's title there, marked as coming from Wikipedia. Everything is cached in the
    database and done ahead of time: serving never waits on Wikipedia. Timeouts, 429 and 5xx are
    retried a bounded number of times; a failed lookup leaves the card as it was.
    """
    from snapid.knowledge.enrich import enrich as run_enrich
    from snapid.knowledge.enrich import parse_languages
    from snapid.knowledge.wikipedia import WikiPolicy, load_translator

    s = settings()
    policy = WikiPolicy(base_url=s.wiki_base_url, wikidata_url=s.wikidata_url, contact=s.wiki_contact,
                        timeout_s=s.wiki_timeout_s, ttl_s=s.wiki_ttl_days * 86400)
    hook = load_translator(translator) if translator else None
    with progress_bar(f"looking up {dataset} on Wikipedia", quiet=as_json) as progress:
        report = run_enrich(dataset, engine=engine(), languages=parse_languages(wikipedia), policy=policy,
                            refresh=refresh, translator=hook, progress=progress, taxonomy=taxonomy)
    if as_json:
        emit_json(report.as_dict())
        return
    o = report.outcomes
    console.print(f"[green]enriched[/] {report.dataset}: {report.classes} classes × {len(report.languages)} languages: "
                  f"{o['ok']} found, {o['fallback']} from another language, {o['missing']} without a page, "
                  f"{o['failed']} failed (left as they were); {report.calls} requests, "
                  f"{report.cache_hits} from the cache")
    tx = report.taxonomy
    if any(tx.values()):
        console.print(f"taxonomy from Wikidata: {tx['ok']} found, {tx['missing']} not found, {tx['failed']} failed")
    for failure in report.failures:
        console.print(f"  failed: {failure}", markup=False)


@app.command("show")
def show(
    dataset: str = DATASET,
    class_id: str | None = typer.Argument(None, help="One class id; all cards when left out."),
    as_json: bool = AS_JSON,
) -> None:
    """Show the knowledge cards (and rules) of DATASET as they will go into a bundle."""
    from snapid.knowledge.store import show as load

    data = load(dataset, engine=engine(), class_id=class_id)
    if as_json:
        emit_json(data)
        return
    cards = [data] if class_id else list(data["cards"].values())
    for card in cards:
        console.print(_card_table(card))
    if not class_id and data["rules"]:
        console.print(_rules_table(data["rules"]))


def _card_table(card: dict) -> Table:
    # markup is off for every cell: card text is user data and may hold "[" or HTML
    table = Table(title=f"{card['class_id']} · {card.get('name', '')}", box=box.SIMPLE_HEAD, show_header=False,
                  title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    sources = card.get("name_sources") or {}
    rows = [(f"name ({lang})" + (f", from {sources[lang]}" if lang in sources else ""), text)
            for lang, text in card["names"].items()]
    rows += [("scientific name", card["scientific_name"])] if card["scientific_name"] else []
    rows += [(taxon["rank"], taxon["name"] + "".join(f" · {v}" for v in taxon.get("labels", {}).values()))
             for taxon in reversed(card.get("taxonomy") or [])]
    rows += [(f"description ({lang})", text) for lang, text in card["descriptions"].items()]
    rows += list(card["fields"].items())
    rows += [("image", card["image"])] if card["image"] else []
    rows += [(f"link {link['label']}".strip(), link["url"]) for link in card["links"]]
    for lang, wiki in card.get("wikipedia", {}).items():
        mark = f" (from {wiki['lang']})" if wiki.get("fallback") else ""
        rows.append((f"wikipedia ({lang}){mark}", f"{wiki.get('title', '')}: {wiki.get('extract', '')[:300]}"))
    for name, value in rows:
        table.add_row(_plain(name), _plain(value))
    return table


def _rules_table(rules: list[dict]) -> Table:
    table = Table("classes", "severity", "message", title="rules", box=box.SIMPLE_HEAD, title_justify="left")
    for rule in rules:
        message = " / ".join(rule["message"].values())
        table.add_row(_plain(" + ".join(rule["classes"])), _plain(rule["severity"]), _plain(message))
    return table


def _plain(text: str):
    from rich.text import Text

    return Text(str(text))
