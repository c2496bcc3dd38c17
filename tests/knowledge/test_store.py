"""Knowledge in the database: the demo's files, versions, unknown classes, hostile text, the snapshot, the CLI."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import inspect, select
from typer.testing import CliRunner

from snapid.data.demo import INTERACTIONS, KINDS
from snapid.errors import NotFound
from snapid.knowledge import KnowledgeError
from snapid.knowledge.rules import match_rules
from snapid.knowledge.store import import_cards, import_rules, show, snapshot, versions
from snapid.track.db import transaction
from snapid.track.tables import KnowledgeCardRow


@pytest.fixture
def demo(tmp_path, engine):
    """The demo dataset (one photo per kind) imported as "pills"; returns its DemoInfo."""
    from snapid.data.demo import generate_demo
    from snapid.importer import import_dataset

    info = generate_demo(tmp_path / "demo", seed=1, per_class=1, multi=0, size=(96, 72))
    import_dataset(info.root, name="pills", engine=engine, fmt="aihub")
    return info


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_files_import_and_snapshot(demo, engine):
    assert snapshot("pills", engine=engine) is None
    cards = import_cards(demo.drugs_csv, dataset="pills", engine=engine)
    rules = import_rules(demo.interactions_csv, dataset="pills", engine=engine)
    assert (cards.version, cards.items, cards.unknown, cards.missing) == (1, 12, [], [])
    assert (rules.version, rules.items) == (2, len(INTERACTIONS))
    snap = snapshot("pills", engine=engine)
    assert json.loads(json.dumps(snap)) == snap  # JSON-able as it is: export writes it as knowledge.json
    assert (snap["dataset"], snap["version"], snap["cards_version"], snap["rules_version"]) == ("pills", 2, 1, 2)
    assert snap["languages"] == ["en", "ko"]
    assert list(snap["cards"]) == sorted(str(k.class_id) for k in KINDS)  # the dataset's class order
    card = snap["cards"]["4730"]
    assert card["name"] == "스냅졸캡슐 20mg" and card["names"]["en"] == "Snapzole 20 mg capsules"
    assert card["fields"] == {"ingredient": "fictazole 20 mg", "maker": "가상약품 (Fictive Drugs)"}
    assert card["wikipedia"] == {}
    (warning,) = match_rules(snap["rules"], ["4730", "7342"])
    assert warning["severity"] == "contraindicated"
    assert show("pills", engine=engine, class_id="4730") == card


def test_each_import_is_a_new_version(demo, engine, tmp_path):
    import_cards(demo.drugs_csv, dataset="pills", engine=engine)
    import_rules(demo.interactions_csv, dataset="pills", engine=engine)
    newer = write(tmp_path / "v2.csv", "class_id,name_en,price\n1899,Snaptab ten,1200\n")
    result = import_cards(newer, dataset="pills", engine=engine)
    assert result.version == 3 and result.items == 1 and len(result.missing) == 11
    assert any("11 dataset classes have no card" in note for note in result.notes)
    snap = snapshot("pills", engine=engine)
    assert (snap["version"], snap["cards_version"], snap["rules_version"]) == (3, 3, 2)
    assert list(snap["cards"]) == ["1899"] and snap["cards"]["1899"]["fields"] == {"price": "1200"}
    assert len(snap["rules"]) == len(INTERACTIONS)  # rules keep their own latest version
    history = versions("pills", engine=engine)
    assert [(v["version"], v["kind"], v["source"], v["items"]) for v in history] == [
        (1, "cards", "drugs.csv", 12), (2, "rules", "interactions.csv", 5), (3, "cards", "v2.csv", 1)]
    assert all(len(v["sha256"]) == 64 for v in history)
    with transaction(engine) as session:  # older versions stay in the database
        assert len(session.scalars(select(KnowledgeCardRow)).all()) == 13


def test_unknown_classes_are_refused_and_nothing_is_stored(demo, engine, tmp_path):
    bad = write(tmp_path / "bad.csv", "class_id,name_en\n1899,ok\n9999,nope\n0000,nope\n")
    with pytest.raises(KnowledgeError, match=r"bad.csv: cards name 2 classes the dataset does not have: 0000, 9999"):
        import_cards(bad, dataset="pills", engine=engine)
    rules = write(tmp_path / "r.csv", "a,b\n1899,9999\n1899,1900\n")
    with pytest.raises(KnowledgeError, match=r"r.csv: rules name 1 classes the dataset does not have: 9999"):
        import_rules(rules, dataset="pills", engine=engine)
    assert versions("pills", engine=engine) == []
    kept = import_cards(bad, dataset="pills", engine=engine, allow_unknown=True)
    assert (kept.items, kept.unknown) == (1, ["0000", "9999"])
    assert "cards for classes the dataset does not have were skipped: 0000, 9999" in kept.notes[0]
    kept_rules = import_rules(rules, dataset="pills", engine=engine, allow_unknown=True)
    assert kept_rules.items == 1 and snapshot("pills", engine=engine)["rules"][0]["classes"] == ["1899", "1900"]


def test_bad_file_or_dataset_stores_nothing(demo, engine, tmp_path):
    with pytest.raises(KnowledgeError, match=r"line 3: class '1899' already has a card"):
        import_cards(write(tmp_path / "d.csv", "id,name\n1899,a\n1899,b\n"), dataset="pills", engine=engine)
    with pytest.raises(NotFound, match=r"no dataset named 'plants'; known datasets: pills"):
        import_cards(demo.drugs_csv, dataset="plants", engine=engine)
    assert versions("pills", engine=engine) == []
    with pytest.raises(NotFound, match="has no knowledge yet"):
        show("pills", engine=engine)


HOSTILE = ["'; DROP TABLE knowledge_cards;--", '" OR 1=1 --', "<script>alert('x')</script>",
           "<img src=x onerror=alert(1)>", "javascript:alert(1)"]


def test_hostile_strings_are_stored_as_given(demo, engine, tmp_path):
    import csv
    import io

    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["class_id", "name_en", "description_ko", "maker"])
    for kind, text in zip(KINDS, HOSTILE, strict=False):  # the first kinds only
        out.writerow([kind.class_id, text, text, text])
    import_cards(write(tmp_path / "h.csv", buf.getvalue()), dataset="pills", engine=engine)
    rule_text = "a,b,severity,reason_en\n1899,1900,caution,\"'; DROP TABLE knowledge_rules;--\"\n"
    import_rules(write(tmp_path / "h-rules.csv", rule_text), dataset="pills", engine=engine)
    snap = snapshot("pills", engine=engine)
    for kind, text in zip(KINDS, HOSTILE, strict=False):  # the first kinds only
        card = snap["cards"][str(kind.class_id)]
        assert card["names"]["en"] == card["descriptions"]["ko"] == card["fields"]["maker"] == text
    assert snap["rules"][0]["message"]["en"] == "'; DROP TABLE knowledge_rules;--"
    tables = set(inspect(engine).get_table_names())
    assert {"knowledge_cards", "knowledge_rules", "knowledge_versions", "datasets"} <= tables


# --- the command line ------------------------------------------------------------------
def cli(*args: str):
    from snapid.cli import app

    return CliRunner().invoke(app, ["knowledge", *args])


def test_cli_import_rules_show(demo, home):
    result = cli("import", str(demo.drugs_csv), "--dataset", "pills", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == 12
    assert cli("rules", str(demo.interactions_csv), "--dataset", "pills").exit_code == 0
    shown = cli("show", "--dataset", "pills", "1899", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["fields"]["ingredient"] == "snapidolol 10 mg"
    assert cli("show", "--dataset", "pills").exit_code == 0
    wrong = cli("import", str(demo.interactions_csv), "--dataset", "pills")
    assert wrong.exit_code != 0 and isinstance(wrong.exception, KnowledgeError)
    assert "use `snapid knowledge rules`" in wrong.exception.message


def test_cli_enrich_without_network_leaves_cards(demo, home, monkeypatch):
    monkeypatch.setenv("SNAPID_WIKI_BASE_URL", "http://127.0.0.1:9/{lang}")  # nothing listens there
    monkeypatch.setenv("SNAPID_WIKI_TIMEOUT_S", "0.5")
    assert cli("import", str(demo.drugs_csv), "--dataset", "pills").exit_code == 0
    result = cli("enrich", "--dataset", "pills", "--wikipedia", "ko,en", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["outcomes"]["failed"] == 24 and report["calls"] == 6
    shown = json.loads(cli("show", "--dataset", "pills", "1899", "--json").stdout)
    assert shown["wikipedia"] == {}
