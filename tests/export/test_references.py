"""Reference photos in a bundle (issue 20): chosen to cover each class, embedded by the served graph, hashed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from snapid.evaluate.loaded import load_trained, split_dataset
from snapid.export import references as refs
from snapid.export.bundle import BundleError, load_bundle
from snapid.export.from_run import export_run
from snapid.export.onnx import make_session, normalized


def test_cover_starts_typical_and_spreads_out_skipping_duplicates():
    rng = np.random.default_rng(0)
    cluster = refs.unit(np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.05, (30, 3)))
    outlier = refs.unit(np.array([[0.0, 1.0, 0.0]]))
    points = np.concatenate([cluster, outlier, outlier, outlier])
    chosen = refs.cover(points, 5)
    mean = refs.unit(points.mean(axis=0, keepdims=True))[0]
    assert chosen[0] == int(np.argmax(points @ mean))      # the most typical first
    assert chosen[1] in (30, 31, 32)                        # then the farthest
    assert len({30, 31, 32} & set(chosen)) == 1             # duplicates add nothing
    assert len(chosen) == 5 and len(set(chosen)) == 5
    assert refs.cover(points[:2], 10) == refs.cover(points[:2], 2) and refs.cover(points, 0) == []


def test_an_export_carries_a_reference_index_the_served_graph_reproduces(make_run, home, engine):
    make_run("a")
    bundle = export_run("a", workspace=home, engine=engine, references=4)
    files = bundle.manifest["files"]
    assert set(refs.FILES) <= set(files)  # listed, so hashed
    info = bundle.manifest["references"]
    assert info["classes"] == 3 and info["per_class"] == 4 and 3 <= info["photos"] <= 12
    assert info["bytes"] == sum(files[f]["bytes"] for f in refs.FILES)
    assert info["bytes"] <= refs.bound_bytes(3, 4, info["dim"])
    assert bundle.manifest["parity"]["embedding"]["max_rel_diff"] <= refs.EMBEDDING_TOLERANCE

    doc = json.loads(bundle.file("references.json").read_bytes())
    vectors = np.load(bundle.file("references.npy"), allow_pickle=False)
    assert vectors.dtype == np.float16 and vectors.shape == (len(doc["items"]), doc["dim"])
    assert np.allclose(np.linalg.norm(vectors.astype(np.float32), axis=1), 1, atol=1e-2)
    blob = bundle.file("references.jpg").read_bytes()
    assert sum(i["bytes"] for i in doc["items"]) == len(blob)
    assert len({i["id"] for i in doc["items"]}) == len(doc["items"])
    first = doc["items"][0]
    thumb = Image.open(io.BytesIO(blob[first["offset"]:first["offset"] + first["bytes"]]))
    assert thumb.format == "JPEG" and max(thumb.size) <= refs.THUMB_PX

    # the stored embeddings are those the bundle's graph gives the training photos they came from
    trained = load_trained("a", engine=engine)
    train = split_dataset(trained, "train", workspace=home, engine=engine)
    images, labels = train.__getitems__(list(range(len(train))))
    session = make_session(bundle.file("model.onnx"))
    own = refs.unit(refs.embeddings(session, normalized(images, bundle.preprocess)))
    for item, vector in zip(doc["items"], vectors.astype(np.float32), strict=True):
        best = int(np.argmax(own @ vector))
        assert float(own[best] @ vector) > 0.999 and int(labels[best]) == item["class"]

    # the held-out slice: the raw embeddings the graph gives the validation photos, with their classes
    val = split_dataset(trained, "val", workspace=home, engine=engine)
    held = np.load(bundle.file(refs.HELD_OUT), allow_pickle=False)
    assert held.dtype == np.float16 and len(held) == len(doc["held_out"]["classes"]) == min(len(val), 3 * 10)
    images, labels = val.__getitems__(list(range(len(val))))
    raw = refs.embeddings(session, normalized(images, bundle.preprocess))
    for vector, label in zip(held.astype(np.float32), doc["held_out"]["classes"], strict=True):
        best = int(np.argmin(np.abs(raw - vector).max(axis=1)))
        assert np.allclose(raw[best], vector, rtol=1e-2, atol=1e-2) and int(labels[best]) == label


def test_the_manifest_hashes_the_index(make_run, home, engine):
    make_run("a")
    bundle = export_run("a", workspace=home, engine=engine, references=2)
    path = bundle.file("references.npy")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="references.npy"):
        load_bundle(bundle.path)


def test_references_zero_leaves_them_out(make_run, home, engine):
    make_run("a")
    bundle = export_run("a", workspace=home, engine=engine, references=0)
    assert not set(refs.FILES) & set(bundle.manifest["files"]) and bundle.manifest["references"] is None
