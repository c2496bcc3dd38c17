"""Live knowledge (issue 21): a knowledge import while serving reaches the next answer within seconds;
rows of a joined table appear and expire at their time (an injected clock); a malformed import is refused
whole and the previous version keeps serving; a database that fails keeps the last good knowledge; places
near a class with coordinates come with their distance."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.importer import import_dataset
from snapid.knowledge import KnowledgeError
from snapid.knowledge.store import import_cards, import_places, import_table, versions
from snapid.serve.app import create_app
from tests.conftest import write_image
from tests.serve.conftest import RED, coloured, files
from tests.webapp.conftest import knowledge_bundle

SEOUL = ZoneInfo("Asia/Seoul")


@pytest.fixture
def served(tmp_path, home, engine):
    root = tmp_path / "colours"
    for c, label in enumerate(("red", "green", "blue")):
        for i in range(3):
            write_image(root / label / f"{i}.jpg", (64, 48), seed=c * 10 + i)
    import_dataset(root, name="colours", engine=engine)
    bundle = knowledge_bundle(tmp_path / "bundles" / "colours")
    settings = Settings(home=home.home, reload_poll_s=0, knowledge_poll_s=0.05, timezone="Asia/Seoul")
    with TestClient(create_app(settings, bundle=bundle), raise_server_exceptions=False) as client:
        yield client


def ask(client, lang="en") -> dict:
    answer = client.post(f"/api/v1/predict?lang={lang}", files=files(coloured(RED)))
    assert answer.status_code == 200, answer.text
    return answer.json()


def until(client, check, timeout_s=5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = ask(client)
        if check(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def at(version: int):
    return lambda a: (a["knowledge_source"], a["knowledge_version"]) == ("database", version)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_an_import_while_serving_reaches_the_next_answer(served, engine, tmp_path):
    first = ask(served)
    assert (first["knowledge_source"], first["knowledge_version"]) == ("bundle", 2)  # nothing in the database yet
    assert first["card"]["display_name"] == "Red pill"
    import_cards(write(tmp_path / "cards.csv", "class_id,name_en,maker\nred,Crimson pill,Live Pharm\n"),
                 dataset="colours", engine=engine)
    answer = until(served, lambda a: a["knowledge_source"] == "database")
    assert (answer["knowledge_source"], answer["knowledge_version"]) == ("database", 1)
    assert answer["card"]["display_name"] == "Crimson pill"
    assert answer["card"]["fields"] == [{"name": "maker", "value": "Live Pharm"}]
    import_cards(write(tmp_path / "cards2.csv", "class_id,name_en\nred,Scarlet pill\n"), dataset="colours",
                 engine=engine)
    answer = until(served, at(2))
    assert answer["card"]["display_name"] == "Scarlet pill"


def test_table_rows_show_only_while_valid(served, engine, tmp_path):
    import_cards(write(tmp_path / "cards.csv", "class_id,name_en\nred,Red pill\n"), dataset="colours", engine=engine)
    table = write(tmp_path / "discounts.csv",
                  "class_id,store,offer_en,offer_ko,valid_from,valid_to\n"
                  "red,CU,1+1,1+1 행사,2026-12-01,2026-12-31\n"
                  "red,GS25,2+1,2+1 행사,2027-01-01,\n"
                  "red,Emart24,10% off,10% 할인,,2026-12-24T18:00+09:00\n")
    import_table(table, dataset="colours", table="discounts", engine=engine)
    live = served.app.state.knowledge
    live.clock = lambda: datetime(2026, 12, 24, 8, 59, tzinfo=UTC)  # 17:59 in Seoul
    answer = until(served, at(2))
    rows = answer["card"]["rows"]
    assert [(r["table"], r["fields"][0]["value"], r["fields"][1]["value"]) for r in rows] == [
        ("discounts", "CU", "1+1"), ("discounts", "Emart24", "10% off")]
    assert rows[0]["valid_to"] == "2026-12-31" and rows[0]["fields"][1] == {"name": "offer", "value": "1+1"}
    assert ask(served, "ko")["card"]["rows"][0]["fields"][1]["value"] == "1+1 행사"
    live.clock = lambda: datetime(2026, 12, 24, 9, 0, tzinfo=UTC)  # 18:00 in Seoul: Emart24's offer is over
    assert [r["fields"][0]["value"] for r in ask(served)["card"]["rows"]] == ["CU"]
    live.clock = lambda: datetime(2026, 12, 31, 23, 59, tzinfo=SEOUL)  # the whole last day counts
    assert [r["fields"][0]["value"] for r in ask(served)["card"]["rows"]] == ["CU"]
    live.clock = lambda: datetime(2027, 1, 1, 0, 0, tzinfo=SEOUL)
    assert [r["fields"][0]["value"] for r in ask(served)["card"]["rows"]] == ["GS25"]
    live.clock = lambda: datetime(2026, 11, 30, 12, 0)  # naive: read in the server's zone
    assert ask(served)["card"]["rows"][0]["fields"][0]["value"] == "Emart24"


@pytest.mark.parametrize(("text", "named"), [
    ("class_id,store,valid_to\nred,CU,2026-12-31\npurple,CU,2026-12-31\n", "line 3: column 'class_id'"),
    ("class_id,store,valid_to\nred,CU,2026-12-31\nred,GS25,31/12/2026\n", "line 3: column 'valid_to'"),
    ("class_id,store,valid_from,valid_to\nred,CU,2026-12-31,2026-12-01\n", "line 2: column 'valid_to'"),
])
def test_a_malformed_table_is_refused_whole_and_the_previous_version_keeps_serving(served, engine, tmp_path,
                                                                                  text, named):
    import_cards(write(tmp_path / "cards.csv", "class_id,name_en\nred,Red pill\n"), dataset="colours", engine=engine)
    until(served, at(1))
    with pytest.raises(KnowledgeError) as refused:
        import_table(write(tmp_path / "bad.csv", text), dataset="colours", table="discounts", engine=engine)
    assert f"bad.csv {named}" in refused.value.message
    assert [v["version"] for v in versions("colours", engine=engine)] == [1]
    time.sleep(0.2)
    assert ask(served)["knowledge_version"] == 1


def test_a_file_too_large_is_refused(served, engine, tmp_path, monkeypatch):
    from snapid.knowledge import table as table_module

    monkeypatch.setattr(table_module, "MAX_FILE_BYTES", 100)
    big = write(tmp_path / "big.csv", "class_id,store\n" + "red,CU\n" * 40)
    with pytest.raises(KnowledgeError, match="big.csv: 295 bytes is above"):
        import_table(big, dataset="colours", table="discounts", engine=engine)


def test_a_failing_database_keeps_the_last_good_knowledge(served, engine, tmp_path):
    import_cards(write(tmp_path / "cards.csv", "class_id,name_en\nred,Crimson pill\n"), dataset="colours",
                 engine=engine)
    until(served, at(1))
    live = served.app.state.knowledge

    def down():
        raise OSError("database unreachable")
    live.engine = down
    time.sleep(0.3)
    answer = ask(served)
    assert answer["knowledge_version"] == 1 and answer["card"]["display_name"] == "Crimson pill"
    assert live.last_error == "database unreachable"


def test_places_near_a_class_with_coordinates(served, engine, tmp_path):
    import_cards(write(tmp_path / "cards.csv", "class_id,name_en,lat,lon\nred,Gyeongbokgung,37.5796,126.9770\n"),
                 dataset="colours", engine=engine)
    import_places(write(tmp_path / "places.csv",
                        "name_en,name_ko,category,lat,lon,address_en,link\n"
                        "Tosokchon,토속촌,food,37.5781,126.9706,5 Jahamun-ro 5-gil,https://example.org/t\n"
                        "Far Diner,먼 식당,food,35.1796,129.0756,Busan,\n"
                        "Hanok Stay,한옥스테이,lodging,37.5826,126.9836,Bukchon,\n"
                        "Bukchon,북촌,sight,37.5826,126.9850,,\n"), dataset="colours", engine=engine)
    answer = until(served, at(2))
    card = answer["card"]
    assert card["location"] == {"lat": 37.5796, "lon": 126.977}
    assert all(f["name"] not in ("lat", "lon") for f in card["fields"])
    assert [(p["category"], p["name"]) for p in card["places"]] == [  # Busan's diner is beyond 20 km
        ("food", "Tosokchon"), ("lodging", "Hanok Stay"), ("sight", "Bukchon")]
    assert 550 < card["places"][0]["distance_m"] < 650 and card["places"][0]["link"] == "https://example.org/t"
    assert ask(served, "ko")["card"]["places"][0]["name"] == "토속촌"


def test_malformed_places_are_refused_whole(served, engine, tmp_path):
    for text, named in [("name,category,lat,lon\nA,food,37.5,126.9\nB,food,97.5,126.9\n", "line 3: column 'lat'"),
                        ("name,category,lat,lon\nA,Food Court!,37.5,126.9\n", "line 2: column 'category'"),
                        ("name,category,lat\nA,food,37.5\n", "line 2: column 'lon'"),
                        ("name,category,lat,lon,link\nA,food,37.5,126.9,javascript:alert(1)\n",
                         "line 2: column 'link'")]:
        with pytest.raises(KnowledgeError) as refused:
            import_places(write(tmp_path / "places.csv", text), dataset="colours", engine=engine)
        assert f"places.csv {named}" in refused.value.message
    assert versions("colours", engine=engine) == []
