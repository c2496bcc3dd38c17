"""Knowledge in predict answers: the best match's card in the asked language, and rule warnings
across the objects of one query (mode=each), from the bundle's knowledge.json."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from snapid.config import Settings
from snapid.serve.app import create_app
from tests.serve.conftest import GREEN, RED, coloured, files
from tests.webapp.conftest import KNOWLEDGE, RULE_MESSAGE, knowledge_bundle

BLUE = (40, 60, 220)


@pytest.fixture
def client_for(home):
    opened = []

    def make(bundle):
        client = TestClient(create_app(Settings(home=home.home, reload_poll_s=0), bundle=bundle),
                            raise_server_exceptions=False)
        opened.append(client.__enter__())
        return client
    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_same_mode_answer_carries_the_card_in_the_asked_language(client_for, kbundle):
    client = client_for(kbundle)
    answer = client.post("/api/v1/predict?lang=ko", files=files(coloured(RED))).json()
    assert answer["mode"] == "same" and answer["warnings"] == [] and answer["objects"] is None
    assert answer["predictions"][0]["id"] == "red"
    assert answer["predictions"][0]["display_name"] == "빨간 알약"  # the card's name beats labels.json's "빨강"
    card = answer["card"]
    assert card["display_name"] == "빨간 알약" and card["description"] == "빨간 가상의 알약"
    assert card["scientific_name"] == "Rubrum testum"
    assert card["taxonomy"] == [{"rank": "species", "name": "Rubrum testum", "label": "빨강풀"},
                                {"rank": "family", "name": "Rubraceae", "label": "빨강과"},
                                {"rank": "order", "name": "Rubrales", "label": ""}]
    assert [f["name"] for f in card["fields"]] == ["ingredient", "maker", "price"]  # file order kept
    assert card["links"] == [{"label": "maker", "url": "https://example.org/red"}]
    assert card["wikipedia"]["lang"] == "en" and card["wikipedia"]["extract"] == "Red is a colour."  # no ko page
    english = client.post("/api/v1/predict?lang=en", files=files(coloured(RED))).json()
    assert english["card"]["display_name"] == "Red pill" and english["card"]["description"] == "A fictional red pill"


def test_two_photos_of_one_object_never_warn(client_for, kbundle):
    answer = client_for(kbundle).post("/api/v1/predict", files=files(coloured(RED), coloured(GREEN))).json()
    assert answer["photos"] == 2 and answer["warnings"] == []


def test_each_mode_warns_for_an_interacting_pair(client_for, kbundle):
    client = client_for(kbundle)
    answer = client.post("/api/v1/predict?mode=each&lang=en",
                         files=files(coloured(RED), coloured(GREEN), coloured(BLUE))).json()
    assert answer["mode"] == "each" and answer["photos"] == 3
    assert [o["predictions"][0]["id"] for o in answer["objects"]] == ["red", "green", "blue"]
    assert [o["photo"] for o in answer["objects"]] == [0, 1, 2]
    assert len({o["prediction_id"] for o in answer["objects"]}) == 3
    assert answer["prediction_id"] == answer["objects"][0]["prediction_id"]
    assert answer["objects"][1]["card"]["display_name"] == "Green pill"
    assert answer["objects"][2]["card"] is None  # blue has no card
    [warning] = answer["warnings"]
    assert warning["classes"] == ["green", "red"] and warning["severity"] == "contraindicated"
    assert warning["message"] == RULE_MESSAGE["en"] and warning["messages"] == RULE_MESSAGE
    assert warning["objects"] == [0, 1] and warning["names"] == ["Green pill", "Red pill"]
    korean = client.post("/api/v1/predict?mode=each&lang=ko", files=files(coloured(GREEN), coloured(RED))).json()
    assert korean["warnings"][0]["message"] == RULE_MESSAGE["ko"]


def test_each_mode_feedback_refers_to_one_object(client_for, kbundle):
    client = client_for(kbundle)
    answer = client.post("/api/v1/predict?mode=each", files=files(coloured(RED), coloured(GREEN))).json()
    sent = client.post("/api/v1/feedback", json={"prediction_id": answer["objects"][1]["prediction_id"],
                                                 "client_key": "webapp-test-key", "label": "blue"})
    assert sent.status_code == 201, sent.text


def test_the_same_class_twice_gives_no_warning_and_unsure_objects_a_possible_one(client_for, tmp_path):
    client = client_for(knowledge_bundle(tmp_path / "b"))
    same = client.post("/api/v1/predict?mode=each", files=files(coloured(RED), coloured(RED))).json()
    assert same["warnings"] == []
    sure = client.post("/api/v1/predict?mode=each", files=files(coloured(RED), coloured(GREEN))).json()
    assert [w["certain"] for w in sure["warnings"]] == [True]
    strict = client_for(knowledge_bundle(tmp_path / "strict", threshold=0.9999999))
    unsure = strict.post("/api/v1/predict?mode=each", files=files(coloured(RED), coloured(GREEN))).json()
    assert all(o["unknown"] for o in unsure["objects"])
    assert unsure["card"] is None  # no card for an answer the model rejects
    # but a rule between the best guesses still warns, marked as uncertain (a missed interaction costs more)
    assert ([(w["classes"], w["certain"], w["objects"]) for w in unsure["warnings"]]
            == [(["green", "red"], False, [0, 1])])


@pytest.mark.parametrize("knowledge", [None, {"cards": "nonsense", "rules": [{"severity": "x"}, 5]},
                                       ["not", "a", "dict"]])
def test_missing_or_malformed_knowledge_gives_no_card_and_no_error(client_for, tmp_path, knowledge):
    client = client_for(knowledge_bundle(tmp_path / "b", knowledge))
    answer = client.post("/api/v1/predict?mode=each", files=files(coloured(RED), coloured(GREEN)))
    assert answer.status_code == 200, answer.text
    assert answer.json()["warnings"] == [] and answer.json()["card"] is None


def test_mode_must_be_same_or_each(client_for, kbundle):
    response = client_for(kbundle).post("/api/v1/predict?mode=both", files=files(coloured(RED)))
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"


def test_knowledge_text_is_returned_exactly_as_stored(client_for, tmp_path):
    hostile = json.loads(json.dumps(KNOWLEDGE))
    hostile["cards"]["red"]["descriptions"]["en"] = "<script>window.__pwned=1</script>"
    answer = client_for(knowledge_bundle(tmp_path / "b", hostile)).post("/api/v1/predict?lang=en",
                                                                       files=files(coloured(RED)))
    assert answer.json()["card"]["description"] == "<script>window.__pwned=1</script>"  # the page escapes it


def test_an_unsure_object_warns_as_possible_through_a_likely_runner_up(tmp_path):
    """Look-alike pills: an unsure object whose runner-up interacts with another object gives a
    possible warning; a sure object, an unlikely runner-up, or one object standing for both classes
    of a rule does not."""
    from snapid.serve.services import answers
    from snapid.serve.services.model import load_model

    model = load_model(knowledge_bundle(tmp_path / "b"))

    def body(*scores, unknown):
        return {"predictions": [{"id": c, "score": p} for c, p in scores], "unknown": unknown}

    red_or_green = body(("blue", 0.6), ("green", 0.3), ("red", 0.1), unknown=True)
    red = body(("red", 0.97), ("blue", 0.02), unknown=False)
    [warning] = answers.warnings_for(model, answers.recognised([(0, red_or_green), (1, red)]), "en")
    assert (warning["classes"], warning["objects"], warning["certain"]) == (["green", "red"], [0, 1], False)
    sure_blue = body(("blue", 0.95), ("green", 0.04), unknown=False)
    assert answers.warnings_for(model, answers.recognised([(0, sure_blue), (1, red)]), "en") == []
    unlikely = body(("blue", 0.85), ("green", 0.1), unknown=True)  # under CANDIDATE_MIN
    assert answers.warnings_for(model, answers.recognised([(0, unlikely), (1, red)]), "en") == []
    alone = body(("green", 0.5), ("red", 0.45), unknown=True)  # one object cannot be both pills
    blue = body(("blue", 0.99), unknown=False)
    assert answers.warnings_for(model, answers.recognised([(0, alone), (1, blue)]), "en") == []
    # a rule the best guesses already match is reported once, from the best guesses
    both = answers.warnings_for(model, answers.recognised([(0, body(("green", 0.6), ("red", 0.3), unknown=True)),
                                                           (1, red)]), "en")
    assert [(w["objects"], w["certain"]) for w in both] == [([0, 1], False)]
