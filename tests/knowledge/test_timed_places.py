"""Joined tables with validity and places (issue 21): parsing refuses whole files naming file, line and column;
rows are valid in the server's time zone; the demo's generated discounts import and expire; the places query
agrees with a brute-force reference on random points; the CLI imports each kind."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from snapid.data.demo import KINDS, write_discounts
from snapid.knowledge import KnowledgeError
from snapid.knowledge.places import PlaceIndex, brute_force_nearest, parse_places
from snapid.knowledge.store import import_table, snapshot, versions
from snapid.knowledge.timed import check_table_name, parse_table, valid_at
from tests.knowledge.test_store import demo, write  # noqa: F401  (a fixture)

SEOUL = ZoneInfo("Asia/Seoul")


def test_validity_is_read_in_the_server_zone():
    row = {"valid_from": "2026-12-01", "valid_to": "2026-12-31"}
    assert not valid_at(row, datetime(2026, 11, 30, 23, 59, tzinfo=SEOUL), SEOUL)
    assert valid_at(row, datetime(2026, 12, 1, 0, 0, tzinfo=SEOUL), SEOUL)
    assert valid_at(row, datetime(2026, 12, 31, 23, 59, 59, tzinfo=SEOUL), SEOUL)  # the last day is whole
    assert not valid_at(row, datetime(2026, 12, 31, 15, 0, tzinfo=UTC), SEOUL)  # midnight in Seoul
    assert valid_at(row, datetime(2026, 12, 31, 14, 59, tzinfo=UTC), SEOUL)
    timed = {"valid_from": "", "valid_to": "2026-12-24T18:00:00+09:00"}
    assert valid_at(timed, datetime(2026, 12, 24, 8, 59, tzinfo=UTC), ZoneInfo("America/New_York"))
    assert not valid_at(timed, datetime(2026, 12, 24, 9, 0, tzinfo=UTC), ZoneInfo("America/New_York"))
    assert valid_at({"valid_from": "", "valid_to": ""}, datetime(1999, 1, 1, tzinfo=UTC), SEOUL)


@pytest.mark.parametrize(("text", "named"), [
    ("class_id,valid_from\n1899,2026-13-01\n", "t.csv line 2: column 'valid_from'"),
    ("class_id,valid_to\n1899,tomorrow\n", "t.csv line 2: column 'valid_to'"),
    ("store\nCU\n", "t.csv line 2: column 'class_id'"),
    ("class_id,valid_from,valid_to\n1899,2026-01-01,2026-01-01\n1899,2026-01-02,2026-01-01\n",
     "t.csv line 3: column 'valid_to'"),
])
def test_malformed_tables_name_file_line_and_column(tmp_path, text, named):
    with pytest.raises(KnowledgeError) as refused:
        parse_table(write(tmp_path / "t.csv", text))
    assert named in refused.value.message


def test_table_names_are_checked():
    assert check_table_name("Discounts") == "discounts"
    for bad in ("", "cards", "1st", "a b", "x" * 65):
        with pytest.raises(KnowledgeError):
            check_table_name(bad)


def test_the_demo_discounts_import_and_the_expired_one_is_hidden(demo, engine, tmp_path):  # noqa: F811
    today = date(2026, 12, 6)
    result = import_table(write_discounts(tmp_path / "discounts.csv", today=today), dataset="pills",
                          table="discounts", engine=engine)
    assert result.items == 6 and result.kind == "table"
    rows = snapshot("pills", engine=engine)["tables"]["discounts"]["rows"]
    noon = datetime(2026, 12, 6, 12, tzinfo=SEOUL)
    shown = [r["class_id"] for r in rows if valid_at(r, noon, SEOUL)]
    assert shown == [str(k.class_id) for k in KINDS[:5]]
    later = noon + timedelta(days=7)
    assert [r["class_id"] for r in rows if valid_at(r, later, SEOUL)] == [str(k.class_id) for k in KINDS[2:5]]


def test_a_table_naming_an_unknown_class_is_refused_whole(demo, engine, tmp_path):  # noqa: F811
    text = f"class_id,store\n{KINDS[0].class_id},CU\n99999,CU\n"
    with pytest.raises(KnowledgeError, match=r"t.csv line 3: column 'class_id': '99999' is not a class"):
        import_table(write(tmp_path / "t.csv", text), dataset="pills", table="discounts", engine=engine)
    assert versions("pills", engine=engine) == []


def test_the_cli_imports_each_kind(demo, engine, tmp_path, home):  # noqa: F811
    from snapid.cli import app

    runner = CliRunner()
    table = write_discounts(tmp_path / "d.csv", today=date.today())
    done = runner.invoke(app, ["knowledge", "import", str(table), "--dataset", "pills", "--kind", "table",
                               "--table", "discounts", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["kind"] == "table"
    places = write(tmp_path / "p.csv", "name,category,lat,lon\nA,food,37.5,127.0\n")
    done = runner.invoke(app, ["knowledge", "import", str(places), "--dataset", "pills", "--kind", "places"])
    assert done.exit_code == 0 and "imported 1 places" in done.output, done.output
    done = runner.invoke(app, ["knowledge", "import", str(places), "--dataset", "pills", "--kind", "table"])
    assert done.exit_code != 0 and "--table" in f"{done.exception} {done.output}"
    assert [v["kind"] for v in versions("pills", engine=engine)] == ["table", "places"]
    assert versions("pills", engine=engine)[0]["name"] == "discounts"


def test_places_parse_with_languages(tmp_path):
    [place] = parse_places(write(tmp_path / "p.csv", "name_ko,name_en,category,lat,lon,address_ko,link\n"
                                 "토속촌,Tosokchon,Food,37.578,126.97,서울,https://example.org\n"))
    assert place.names == {"ko": "토속촌", "en": "Tosokchon"} and place.category == "food"
    assert place.addresses == {"ko": "서울"} and (place.lat, place.lon) == (37.578, 126.97)


def test_places_and_tables_read_from_json(tmp_path):
    [place] = parse_places(write(tmp_path / "p.json", json.dumps([
        {"names": {"ko": "토속촌", "en": "Tosokchon"}, "category": "food", "lat": 37.578, "lon": 126.97,
         "addresses": {"ko": "서울"}, "link": "https://example.org"}], ensure_ascii=False)))
    assert place.names == {"ko": "토속촌", "en": "Tosokchon"} and (place.lat, place.lon) == (37.578, 126.97)
    rows = parse_table(write(tmp_path / "d.json", json.dumps({"1899": {"store": "CU", "offer_en": "1+1",
                                                                       "valid_to": "2026-12-31"}})))
    assert [(r.class_id, r.valid_to, r.fields) for r in rows] == [("1899", "2026-12-31",
                                                                    {"store": "CU", "offer_en": "1+1"})]
    with pytest.raises(KnowledgeError, match=r"d.json entry 2: column 'valid_to'"):
        parse_table(write(tmp_path / "d.json", json.dumps([{"class_id": "1", "valid_to": "2026-12-31"},
                                                           {"class_id": "1", "valid_to": "31/12/2026"}])))
    with pytest.raises(KnowledgeError, match=r"p.json line 2 column 1: not valid JSON"):
        parse_places(write(tmp_path / "p.json", "[{\"name\": \"A\",\n}]"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_places_query_agrees_with_brute_force(seed):
    rng = random.Random(seed)
    places = [{"category": rng.choice(["food", "lodging", "sight"]), "lat": rng.uniform(-90, 90),
               "lon": rng.uniform(-180, 180), "names": {"und": f"w{i}"}} for i in range(2000)]
    centres = [(rng.uniform(-60, 60), rng.uniform(-180, 180)) for _ in range(5)] + [(37.5, 179.99), (89.9, 0.0)]
    for n, (clat, clon) in enumerate(centres):  # dense clusters, one across the date line, one at the pole
        places += [{"category": rng.choice(["food", "lodging", "sight"]),
                    "lat": max(-90, min(90, clat + rng.gauss(0, 0.05))),
                    "lon": (clon + rng.gauss(0, 0.05) + 180) % 360 - 180, "names": {"und": f"c{n}-{i}"}}
                   for i in range(300)]
    index = PlaceIndex(places)
    for _ in range(200):
        if rng.random() < 0.5:
            clat, clon = rng.choice(centres)
            lat, lon = clat + rng.gauss(0, 0.1), (clon + rng.gauss(0, 0.1) + 180) % 360 - 180
            lat = max(-90, min(90, lat))
        else:
            lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
        k, max_km = rng.choice([1, 3, 5]), rng.choice([1.0, 5.0, 20.0, 500.0, 20_000.0])
        got = index.nearest(lat, lon, per_category=k, max_km=max_km)
        want = brute_force_nearest(places, lat, lon, per_category=k, max_km=max_km)
        assert [(p["names"], round(p["distance_km"], 9)) for p in got] == \
            [(p["names"], round(p["distance_km"], 9)) for p in want], (lat, lon, k, max_km)
