"""Candidate subsets (issue 20): predict?classes= / ?subset= renormalise over the candidates, then apply the
"unknown" rule; names the model lacks are 422, naming them."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from snapid.export.bundle import write_bundle
from snapid.serve.app import create_app
from tests.serve.conftest import RED, bundle_files, coloured, files

YELLOW = (220, 220, 40)   # as red as it is green: unsure between the two


def _client(settings, path, **kw):
    extra = {"subsets.json": json.dumps({"subsets": {"warm": ["red", "green"], "cool": ["blue", "nope"]}}).encode(),
             "knowledge.json": json.dumps({"subsets": {"kb only": ["blue"], "warm": ["blue"]}}).encode()}
    write_bundle(path, {**bundle_files(**kw), **extra}, info={"name": "colours", "version": "1"})
    return TestClient(create_app(settings, bundle=path), raise_server_exceptions=False)


@pytest.fixture
def sub_client(settings, tmp_path):
    with _client(settings, tmp_path / "bundles" / "colours", threshold=0.6) as c:
        yield c


def _scores(body) -> dict:
    return {p["id"]: p["score"] for p in body["predictions"]}


def test_classes_renormalise_the_scores_over_the_candidates(sub_client):
    full = _scores(sub_client.post("/api/v1/predict", files=files(coloured(RED))).json())
    r = sub_client.post("/api/v1/predict?classes=red&classes=Blue%20thing", files=files(coloured(RED)))
    assert r.status_code == 200, r.text
    only = _scores(r.json())
    assert set(only) == {"red", "blue"} and sum(only.values()) == pytest.approx(1, abs=1e-5)
    assert only["red"] / only["blue"] == pytest.approx(full["red"] / full["blue"], rel=1e-3)
    comma = _scores(sub_client.post("/api/v1/predict?classes=red,blue&k=10", files=files(coloured(RED))).json())
    assert comma == only  # comma-separated the same; k is capped at the candidates


def test_the_unknown_rule_applies_after_renormalising(sub_client):
    unsure = sub_client.post("/api/v1/predict", files=files(coloured(YELLOW))).json()
    assert unsure["unknown"] is True  # red and green about even, under the 0.6 threshold
    sure = sub_client.post("/api/v1/predict?classes=red,blue", files=files(coloured(YELLOW))).json()
    assert sure["unknown"] is False and sure["predictions"][0]["id"] == "red" and sure["predictions"][0]["score"] > 0.6


def test_unknown_names_are_422_naming_them(sub_client):
    r = sub_client.post("/api/v1/predict?classes=red,purple,Ochre", files=files(coloured(RED)))
    assert r.status_code == 422 and r.json()["error"] == "unknown_classes"
    assert "'purple'" in r.json()["message"] and "'Ochre'" in r.json()["message"] and "'red'" not in r.json()["message"]
    r = sub_client.post("/api/v1/predict?subset=nordic", files=files(coloured(RED)))
    assert r.status_code == 422 and r.json()["error"] == "unknown_subset" and "'nordic'" in r.json()["message"]
    assert "warm" in r.json()["message"]
    r = sub_client.post("/api/v1/predict?subset=warm&classes=red", files=files(coloured(RED)))
    assert r.status_code == 422 and r.json()["error"] == "usage"


def test_named_subsets_from_the_bundle_and_its_knowledge_base(sub_client):
    listed = sub_client.get("/api/v1/subsets").json()["subsets"]
    # the bundle's own list wins a clash; ids the model lacks are left out
    assert {s["name"]: s["classes"] for s in listed} == {"warm": ["red", "green"], "cool": ["blue"],
                                                         "kb only": ["blue"]}
    warm = sub_client.post("/api/v1/predict?subset=warm&mode=each",
                           files=files(coloured(RED), coloured((40, 40, 220)))).json()
    for obj in warm["objects"]:
        assert {p["id"] for p in obj["predictions"]} == {"red", "green"}
    blue = sub_client.post("/api/v1/predict?subset=kb%20only", files=files(coloured(RED))).json()
    assert [p["id"] for p in blue["predictions"]] == ["blue"] and blue["predictions"][0]["score"] == 1


def test_without_subsets_the_list_is_empty(client):
    assert client.get("/api/v1/subsets").json()["subsets"] == []
