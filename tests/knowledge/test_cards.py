"""Knowledge cards: the demo's drugs.csv, the general CSV/YAML layout, hostile text, and bad files."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapid.data.demo import KINDS
from snapid.knowledge import KnowledgeError
from snapid.knowledge.cards import Card, check_classes, parse_cards
from snapid.knowledge.table import MAX_CELL_CHARS


def write(path, text: str, encoding: str = "utf-8"):
    path.write_text(text, encoding=encoding)
    return path


@pytest.fixture(scope="module")
def drugs_csv(tmp_path_factory):
    """The demo's drugs.csv exactly as generate_demo writes it (without rendering any photo)."""
    from snapid.data import demo

    root = tmp_path_factory.mktemp("tables")
    demo._write_tables(root)
    return root / "drugs.csv"


def test_demo_drugs_csv(drugs_csv):
    cards = parse_cards(drugs_csv)
    assert [c.class_id for c in cards] == [str(k.class_id) for k in KINDS]
    first = cards[0]
    assert first.names == {"ko": KINDS[0].name_ko, "en": KINDS[0].name_en}
    assert first.fields == {"ingredient": KINDS[0].ingredient, "maker": KINDS[0].maker}  # file order kept
    assert set(first.descriptions) == {"ko", "en"} and "A10" in first.descriptions["en"]
    assert first.image == "" and first.links == [] and first.scientific_name == ""


def test_general_csv_layout(tmp_path):
    path = write(tmp_path / "plants.csv",
                 "\ufeffLabel,Name_ko,display_name_en,name_zh-Hans,Scientific_Name,description,image,links,"
                 "link_wiki,Opening hours,price\n"
                 "dandelion,민들레,Dandelion,蒲公英,Taraxacum officinale,A common flower.,https://x.test/d.jpg,"
                 "\"https://a.test/1  https://b.test/2\",https://en.wikipedia.org/wiki/Taraxacum,,free\n"
                 "\n"
                 ",,,,,,,,,,\n"
                 "rose,,Rose,,,,,,,9-18,\n")
    dandelion, rose = parse_cards(path)
    assert dandelion.class_id == "dandelion"
    assert dandelion.names == {"ko": "민들레", "en": "Dandelion", "zh-hans": "蒲公英"}
    assert dandelion.scientific_name == "Taraxacum officinale"
    assert dandelion.descriptions == {"und": "A common flower."}
    assert dandelion.image == "https://x.test/d.jpg"
    assert dandelion.links == [{"label": "", "url": "https://a.test/1"}, {"label": "", "url": "https://b.test/2"},
                               {"label": "wiki", "url": "https://en.wikipedia.org/wiki/Taraxacum"}]
    assert dandelion.fields == {"price": "free"}  # empty cells are no field
    assert rose.fields == {"opening hours": "9-18"} and rose.names == {"en": "Rose"}
    assert Card.from_dict(dandelion.as_dict()) == dandelion


def test_yaml_layouts_match_csv(tmp_path):
    csv_cards = parse_cards(write(tmp_path / "c.csv", "id,name_en,name_ko,maker,links\n"
                                  "a,Apple,사과,Orchard,https://a.test/x https://a.test/y\n"))
    listed = write(tmp_path / "l.yaml", "- id: a\n  names: {en: Apple, ko: 사과}\n  fields: {maker: Orchard}\n"
                   "  links: [https://a.test/x, https://a.test/y]\n")
    keyed = write(tmp_path / "k.yml", "cards:\n  - class_id: a\n    name_en: Apple\n    name_ko: 사과\n"
                  "    maker: Orchard\n    links: [https://a.test/x, https://a.test/y]\n")
    by_id = write(tmp_path / "m.yaml", "a:\n  names: {en: Apple, ko: 사과}\n  maker: Orchard\n"
                  "  links:\n    - https://a.test/x\n    - https://a.test/y\n")
    for path in (listed, keyed, by_id):
        (card,) = parse_cards(path)
        assert card.as_dict() == csv_cards[0].as_dict(), path.name


def test_yaml_scalars_stay_text(tmp_path):
    """YAML 1.1 would read 0012 as 10 and `no` as False; a knowledge file means the text."""
    (card, other) = parse_cards(write(tmp_path / "n.yaml", "1899:\n  name_en: Snaptab\n  price: 1200\n"
                                      "  halal: no\n  weight: 1.50\n0012:\n  name_en: ~\n"))
    assert card.class_id == "1899" and card.fields == {"price": "1200", "halal": "no", "weight": "1.50"}
    assert other.class_id == "0012" and other.names == {}


HOSTILE = ["'; DROP TABLE knowledge_cards;--", '" OR 1=1', "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
           "javascript:alert(1)", "\u202eevil", "[bold]markup[/bold]"]


def test_hostile_text_is_kept_exactly(tmp_path):
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["class_id", "name_en", "description_en", "note"])
    for i, text in enumerate(HOSTILE):
        out.writerow([f"c{i}", text, text, text])
    cards = parse_cards(write(tmp_path / "hostile.csv", buf.getvalue()))
    for card, text in zip(cards, HOSTILE, strict=True):
        assert card.names["en"] == card.descriptions["en"] == card.fields["note"] == text


@pytest.mark.parametrize("column", ["image", "link", "links", "link_home"])
@pytest.mark.parametrize("url", ["javascript:alert(1)", "/etc/passwd", "file:///etc/passwd", "data:text/html,hi",
                                 "https://ok.test/\"onmouseover=x"])
def test_non_http_urls_are_refused(tmp_path, column, url):
    buf = io.StringIO()
    csv.writer(buf).writerows([["class_id", column], ["x", url]])
    path = write(tmp_path / "u.csv", buf.getvalue())
    with pytest.raises(KnowledgeError, match=rf"u.csv line 2: column '{column}' must be an http"):
        parse_cards(path)


@pytest.mark.parametrize("text, message", [
    ("name_en,maker\nApple,Orchard\n", r"line 2: no class id"),
    ("a,b,severity\n1,2,caution\n", r"looks like a rules file"),
    ("class_id,name_en\nx,One\ny,Two\nx,Three\n", r"line 4: class 'x' already has a card \(c.csv line 2\)"),
    ("class_id,name,name\nx,a,b\n", r"repeated columns \['name'\]"),
    ("class_id,,name\nx,a,b\n", r"column 2 of the header has no name"),
    ("class_id,name\nx,a,b\n", r"line 2: 3 cells but the header names 2 columns"),
    ("class_id,name\n", r"no records"),
    ("", r"no records"),
    ('class_id,name\nx,"unclosed\n', r"line \d+: not valid CSV"),
])
def test_bad_csv_is_named(tmp_path, text, message):
    with pytest.raises(KnowledgeError, match=message):
        parse_cards(write(tmp_path / "c.csv", text))


def test_bounds_and_encodings(tmp_path):
    with pytest.raises(KnowledgeError, match=r"line 2: column 'name' holds \d+ characters"):
        parse_cards(write(tmp_path / "long.csv", "class_id,name\nx," + "y" * (MAX_CELL_CHARS + 1) + "\n"))
    with pytest.raises(KnowledgeError, match=r"field larger|not valid CSV|holds"):
        parse_cards(write(tmp_path / "huge.csv", "class_id,name\nx," + "y" * (MAX_CELL_CHARS * 5) + "\n"))
    with pytest.raises(KnowledgeError, match=r"latin1.csv: not UTF-8 text"):
        parse_cards(write(tmp_path / "latin1.csv", "class_id,name\nx,café\n", encoding="latin-1"))
    with pytest.raises(KnowledgeError, match=r"missing.csv: no such file"):
        parse_cards(tmp_path / "missing.csv")
    with pytest.raises(KnowledgeError, match=r"is a folder"):
        parse_cards(tmp_path)


@pytest.mark.parametrize("text, message", [
    ("- id: a\n  name: [1, [2, 3]]\n", r"entry 1: 'name' must be text or a number, not list"),
    ("- id: a\n  fields: {x: {y: 1}}\n", r"entry 1: 'fields.x' must be text or a number"),
    ("- just text\n", r"entry 1: expected a mapping"),
    ("a: 1\n", r"entry 1: expected a mapping"),
    ("'unclosed\n", r"b.yaml line \d+: not valid YAML"),
    ("!!python/object/apply:os.system ['touch /tmp/pwned']\n", r"not valid YAML"),
    ("42\n", r"expected a list of records, found str"),
])
def test_bad_yaml_is_named(tmp_path, text, message):
    with pytest.raises(KnowledgeError, match=message):
        parse_cards(write(tmp_path / "b.yaml", text))


def test_yaml_alias_bomb_is_refused_without_expanding(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    bomb = "\n".join(lines) + "\ncards:\n  - id: z\n    names: {en: *a8}\n"
    with pytest.raises(KnowledgeError, match=r"'names.en' must be text or a number, not list"):
        parse_cards(write(tmp_path / "bomb.yaml", bomb))


def test_check_classes():
    assert check_classes(["a", "b"], {"a", "b", "c"}, what="x", allow_unknown=False) == []
    with pytest.raises(KnowledgeError, match=r"f.csv: cards name 2 classes the dataset does not have: q, z"):
        check_classes(["z", "a", "q"], {"a"}, what="f.csv: cards", allow_unknown=False)
    assert check_classes(["z", "a", "q"], {"a"}, what="x", allow_unknown=True) == ["q", "z"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60))
def test_any_text_round_trips_through_csv(tmp_path, text):
    buf = io.StringIO()
    csv.writer(buf).writerows([["class_id", "maker"], ["x", text]])
    path = write(tmp_path / "p.csv", buf.getvalue())
    cards = parse_cards(path)
    assert cards[0].fields.get("maker", "") == text.strip()
