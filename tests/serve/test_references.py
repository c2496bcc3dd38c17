"""Reference photos in answers (issue 20): the nearest photos of each proposed class, served by id."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from snapid.export.bundle import BundleError
from snapid.serve.app import create_app
from snapid.serve.services.model import load_model
from snapid.serve.services.references import combined
from tests.serve.conftest import RED, coloured, files
from tests.serve.reference_bundle import REFERENCES, colour_embedding, make_reference_bundle, reference_files


@pytest.fixture
def ref_client(settings, tmp_path):
    bundle = make_reference_bundle(tmp_path / "bundles" / "colours")
    with TestClient(create_app(settings, bundle=bundle), raise_server_exceptions=False) as c:
        yield c


def test_each_proposed_class_carries_its_three_nearest_reference_photos(ref_client):
    body = ref_client.post("/api/v1/predict?k=3", files=files(coloured(RED))).json()
    doc = json.loads(reference_files()["references.json"])
    class_of = {item["id"]: item["class"] for item in doc["items"]}
    for p in body["predictions"]:
        photos = p["references"]
        assert len(photos) == min(3, sum(1 for c, _ in REFERENCES if c == p["index"]))
        assert all(class_of[r["id"]] == p["index"] and r["url"] == f"/api/v1/references/{r['id']}" for r in photos)
        sims = [r["similarity"] for r in photos]
        assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1.0001 for s in sims)
    red = body["predictions"][0]
    assert red["id"] == "red"
    # the nearest is the reference of the query's own colour; the far lighter shade is not among the 3
    assert red["references"][0]["id"] == doc["items"][0]["id"] and red["references"][0]["similarity"] > 0.99
    assert doc["items"][2]["id"] not in {r["id"] for r in red["references"]}

    thumb = ref_client.get(red["references"][0]["url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert "immutable" in thumb.headers["cache-control"]
    assert Image.open(io.BytesIO(thumb.content)).getpixel((5, 5))[0] > 180
    assert ref_client.get("/api/v1/references/" + "0" * 24).status_code == 404
    assert ref_client.get("/api/v1/references/..%2Fmanifest.json").status_code in (404, 422)


def test_several_photos_and_each_mode_get_references_too(ref_client):
    both = ref_client.post("/api/v1/predict", files=files(coloured(RED), coloured((200, 60, 40)))).json()
    assert len(both["predictions"][0]["references"]) == 3
    each = ref_client.post("/api/v1/predict?mode=each", files=files(coloured(RED), coloured((40, 40, 220)))).json()
    assert [o["predictions"][0]["references"][0]["similarity"] > 0.9 for o in each["objects"]] == [True, True]


def test_a_bundle_without_references_answers_an_empty_list(client):
    body = client.post("/api/v1/predict", files=files(coloured(RED))).json()
    assert all(p["references"] == [] for p in body["predictions"])
    assert client.get("/api/v1/references/" + "a" * 24).status_code == 404


def test_the_index_is_checked_when_the_model_loads(tmp_path):
    good = load_model(make_reference_bundle(tmp_path / "good"))
    assert good.references is not None and good.references.vectors.shape == (len(REFERENCES), 3)
    assert list(good.references.bounds) == [0, 4, 7, 9]
    broken = reference_files()
    doc = json.loads(broken["references.json"])
    doc["items"][0]["class"] = 7  # no such class
    with pytest.raises(BundleError, match="reference index"):
        load_model(make_reference_bundle(tmp_path / "bad", extra={"references.json": json.dumps(doc).encode()}))
    from tests.serve.conftest import tiny_onnx

    with pytest.raises(BundleError, match="embedding"):
        load_model(make_reference_bundle(tmp_path / "no-output", model=tiny_onnx()))


def test_nearest_neighbours_match_a_brute_force_search(tmp_path):
    index = load_model(make_reference_bundle(tmp_path / "b")).references
    rng = np.random.default_rng(1)
    for _ in range(20):
        query = combined(rng.normal(size=(2, 3)))
        for cls, photos in zip(range(3), index.nearest(query, [0, 1, 2]), strict=True):
            rows = [i for i, (c, _) in enumerate(REFERENCES) if c == cls]
            vectors = np.stack([colour_embedding(REFERENCES[i][1]) for i in rows])
            sims = vectors @ query / np.linalg.norm(vectors, axis=1)
            assert [r["similarity"] for r in photos] == pytest.approx(sorted(sims, reverse=True)[:3], abs=2e-3)
