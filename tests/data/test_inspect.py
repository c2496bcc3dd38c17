"""inspect findings and the HTML report, on Manifest objects built in memory."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest

from snapid.data.inspect import inspect_manifest, problems
from snapid.data.manifest import Box, ClassInfo, ImageFacts, Manifest, Rejected, Sample
from snapid.data.near_dups import find_near_duplicates, near_pairs, popcount
from snapid.data.report import render_html, write_report

_ids = itertools.count()


def unique_phash() -> str:
    """Far-apart hashes: a fresh random 64-bit value per call (fixed seed through the counter)."""
    return f"{int(np.random.default_rng(next(_ids) + 1000).integers(0, 2**63)) * 2 + 1:016x}"


def flip(phash: str, bits: int) -> str:
    """``phash`` with its lowest ``bits`` bits inverted: Hamming distance == bits."""
    return f"{int(phash, 16) ^ ((1 << bits) - 1):016x}"


def facts(sha: str | None = None, phash: str | None = None, mode: str = "RGB", size: tuple[int, int] = (200, 150),
          rgb: tuple[float, float, float] = (120.0, 110.0, 100.0)) -> ImageFacts:
    hist = [0] * 48
    for c, v in enumerate(rgb):
        hist[c * 16 + int(v) // 16] = 64 * 64
    return ImageFacts(sha256=sha or f"sha{next(_ids)}", size_bytes=1000, mtime_ns=0, width=size[0], height=size[1],
                      format="JPEG", mode=mode, phash=phash or unique_phash(), mean_rgb=list(rgb), hist=hist)


def sample(label: str | None, split: str = "train", path: str | None = None, boxes=(), notes=(), **kw) -> Sample:
    return Sample(path=path or f"img/{label}/{next(_ids)}.jpg", label=label, split=split, boxes=list(boxes),
                  group=None, facts=facts(**kw), box_notes=list(notes))


def manifest(samples: list[Sample], classes: list[str] | None = None, rejected=(),
             names: dict | None = None) -> Manifest:
    ids = classes if classes is not None else sorted({s.label for s in samples if s.label is not None})
    names = names or {}
    return Manifest(name="toy", version=1, format="folder", root="/data/toy",
                    classes=[ClassInfo(i, names.get(i, i)) for i in ids], samples=samples, rejected=list(rejected))


def balanced(n_per_class: int = 12, labels=("a", "b"), splits=("train", "val", "test")) -> list[Sample]:
    return [sample(label, split) for label in labels for split in splits for _ in range(n_per_class)]


def codes(findings: dict, severity: str | None = None) -> set[str]:
    return {p["code"] for p in findings["problems"] if severity is None or p["severity"] == severity}


def test_clean_dataset_has_no_errors_and_is_json():
    f = inspect_manifest(manifest(balanced()))
    assert codes(f, "error") == set()
    assert f["summary"]["samples"] == 72 and f["summary"]["splits"] == {"train": 24, "val": 24, "test": 24}
    assert json.loads(json.dumps(f)) == f
    assert problems(json.loads(json.dumps(f))) == f["problems"]
    assert set(f) >= {"summary", "classes", "sizes", "modes", "tiny", "rejected", "exact_duplicates",
                      "near_duplicates", "boxes", "colours", "problems"}


def test_imbalance_and_small_classes():
    samples = ([sample("big") for _ in range(100)] + [sample("mid") for _ in range(20)]
               + [sample("few") for _ in range(4)])
    f = inspect_manifest(manifest(samples, classes=["big", "mid", "few", "none"]))
    c = f["classes"]
    assert c["imbalance"] == 25.0 and c["largest"] == 100 and c["smallest"] == 4
    assert c["small"]["count"] == 1 and c["small"]["classes"][0]["id"] == "few"
    assert c["small"]["share"] == pytest.approx(1 / 3, abs=1e-3)
    assert c["empty"] == ["none"]
    assert {"imbalance", "small_classes", "empty_classes"} <= codes(f, "warning")


def test_classes_missing_from_train_is_error_and_from_test_is_warning():
    samples = balanced(labels=("a",)) + [sample("b", "test"), sample("c", "train")]
    f = inspect_manifest(manifest(samples))
    missing = f["classes"]["missing"]
    assert missing["test_not_in_train"] == ["b"]
    assert missing["train_not_in_test"] == ["c"] and missing["train_not_in_val"] == ["c"]
    assert "test_class_not_in_train" in codes(f, "error")
    assert {"class_missing_from_test", "class_missing_from_val"} <= codes(f, "warning")


def test_exact_duplicate_across_splits_is_leakage():
    samples = balanced() + [sample("a", "train", sha="same"), sample("a", "test", sha="same")]
    f = inspect_manifest(manifest(samples))
    e = f["exact_duplicates"]
    assert e["cross_split"]["groups"] == 1 and e["conflicting_labels"]["groups"] == 0
    assert {x["split"] for x in e["cross_split"]["examples"][0]["samples"]} == {"train", "test"}
    assert "leakage" in codes(f, "error")


def test_same_image_different_labels_is_error():
    samples = balanced() + [sample("a", "train", sha="x"), sample("b", "train", sha="x")]
    f = inspect_manifest(manifest(samples))
    assert f["exact_duplicates"]["conflicting_labels"]["groups"] == 1
    assert f["exact_duplicates"]["within_split"]["groups"] == 1
    assert "conflicting_labels" in codes(f, "error") and "exact_duplicates" in codes(f, "warning")
    assert "leakage" not in codes(f)


def test_near_duplicate_across_splits_found_at_2_bits_not_at_10():
    base = unique_phash()
    near = manifest(balanced() + [sample("a", "train", phash=base), sample("a", "test", phash=flip(base, 2))])
    n = inspect_manifest(near)["near_duplicates"]
    assert n["cross_split_pairs"] == 1 and n["within_split_pairs"] == 0
    assert n["cross_examples"][0]["distance"] == 2
    assert "near_leakage" in codes(inspect_manifest(near), "warning")
    far = manifest(balanced() + [sample("a", "train", phash=base), sample("a", "test", phash=flip(base, 10))])
    assert inspect_manifest(far)["near_duplicates"]["cross_split_pairs"] == 0
    assert "near_leakage" not in codes(inspect_manifest(far))


def test_exact_duplicates_are_not_near_duplicates():
    base = unique_phash()
    samples = balanced() + [sample("a", "train", sha="s", phash=base), sample("a", "val", sha="s", phash=base),
                            # a different file with the same hash: near, within train
                            sample("a", "train", phash=base)]
    n = inspect_manifest(manifest(samples))["near_duplicates"]
    assert n["within_split_pairs"] == 1 and n["cross_split_pairs"] == 1


def test_boxes_normalised_clipped_and_degenerate():
    samples = balanced() + [
        sample("a", boxes=[Box(0.1, 0.2, 0.5, 0.9)]),                              # relative coords in a pixel format
        sample("a", boxes=[Box(0, 0, 200, 150)], notes=["box 0 clipped from (-5, 0, 200, 150) to the 200x150 image"]),
        sample("a", boxes=[Box(10, 10, 10, 40), Box(10, 10, 14, 14)]),          # zero area, tiny
        sample("a", boxes=[Box(0, 0, 50, 50)], notes=["box 0: normalised coordinates outside [0, 1]: 1.2,0,1.5,1"]),
        sample("a", boxes=[Box(0, 0, 250, 100)]),                                # 50 px beyond the width
    ]
    f = inspect_manifest(manifest(samples))
    b = f["boxes"]
    assert b["count"] == 6 and b["images_with_boxes"] == 5
    assert b["looks_normalised"]["count"] == 1 and b["clipped"]["count"] == 1
    assert b["degenerate"]["count"] == 1 and b["tiny"]["count"] == 1
    assert b["normalised_outside"]["count"] == 1 and b["out_of_bounds"]["count"] == 1
    assert {"boxes_looks_normalised", "boxes_normalised_outside", "boxes_out_of_bounds"} <= codes(f, "error")
    assert {"boxes_clipped", "boxes_degenerate", "boxes_tiny"} <= codes(f, "warning")


def test_rejected_share_threshold():
    bad = [Rejected(f"x{i}.jpg", "corrupt_image", "truncated") for i in range(2)]
    f = inspect_manifest(manifest(balanced(), rejected=bad))          # 2 / 74 ≈ 2.7 %
    assert f["rejected"]["reasons"] == {"corrupt_image": 2} and f["rejected"]["too_many"]
    assert "rejected_files" in codes(f, "error")
    f = inspect_manifest(manifest(balanced(), rejected=bad), max_rejected=0.05)
    assert "rejected_files" not in codes(f, "error") and "rejected_files" in codes(f, "warning")


def test_modes_flagged_and_tiny_images():
    samples = balanced() + [sample("a", mode="CMYK"), sample("a", mode="L"), sample("a", mode="RGBA"),
                            sample("a", mode="I;16"), sample("a", mode="P"), sample("a", size=(40, 300))]
    f = inspect_manifest(manifest(samples), tiny_side=64)
    flags = {k: v["count"] for k, v in f["modes"]["flags"].items()}
    assert flags == {"cmyk": 1, "greyscale": 2, "alpha": 1, "palette": 1, "sixteen_bit": 1}
    assert f["modes"]["counts"]["RGB"] == 73
    assert f["tiny"]["count"] == 1 and f["tiny"]["examples"][0]["width"] == 40
    assert {"mode_cmyk", "mode_sixteen_bit", "mode_alpha", "mode_greyscale", "tiny_images"} <= codes(f, "warning")


def test_sizes_and_colours():
    samples = [sample("a", size=(100, 100), rgb=(255, 0, 0)), sample("a", size=(300, 100), rgb=(0, 0, 255)),
               sample("b", size=(100, 200))]
    f = inspect_manifest(manifest(samples))
    assert f["sizes"]["width"]["max"] == 300 and f["sizes"]["aspect"]["min"] == 0.5
    assert sum(f["sizes"]["aspect_hist"]["counts"]) == 3 and f["sizes"]["formats"] == {"JPEG": 3}
    a = next(r for r in f["colours"]["per_class"] if r["id"] == "a")
    assert a["mean_rgb"] == [127.5, 0.0, 127.5]
    assert a["hist"]["r"][15] == 0.5 and a["hist"]["r"][0] == 0.5 and sum(a["hist"]["g"]) == pytest.approx(1)


def test_near_pairs_match_brute_force():
    rng = np.random.default_rng(3)
    centres = rng.integers(0, 2**63, size=40, dtype=np.uint64)
    flips = [np.bitwise_or.reduce(np.uint64(1) << rng.choice(64, size=k, replace=False).astype(np.uint64))
             if k else np.uint64(0) for k in rng.integers(0, 8, size=400)]
    values = np.unique(np.repeat(centres, 10) ^ np.array(flips, dtype=np.uint64))
    dist = popcount((values[:, None] ^ values[None, :]).ravel()).reshape(len(values), -1)
    for d in (0, 3, 4, 7):
        a, b, got, _ = near_pairs(values, d)
        i, j = np.triu_indices(len(values), 1)
        near = dist[i, j] <= d
        assert (set(zip(a.tolist(), b.tolist(), strict=True))
                == set(zip(i[near].tolist(), j[near].tolist(), strict=True)))
        assert (got == dist[a, b]).all()


def test_near_duplicates_scale_100k():
    rng = np.random.default_rng(0)
    n = 100_000
    values = (rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2)
              + rng.integers(0, 2, size=n, dtype=np.uint64))
    planted = [(i, n - 1 - i, i % 5) for i in range(8)]
    for i, j, bits in planted:
        values[j] = values[i] ^ np.uint64((1 << bits) - 1 << 20)
    hexes = [f"{int(v):016x}" for v in values]
    splits = ["train" if k % 2 else "test" for k in range(n)]
    started = time.perf_counter()
    found = find_near_duplicates(hexes, splits, [str(k) for k in range(n)], 4, max_examples=50)
    assert time.perf_counter() - started < 30
    pairs = {tuple(sorted((p["a"], p["b"]))) for p in found["cross_examples"]}
    assert pairs == {(i, j) for i, j, _ in planted} and found["cross_split_pairs"] == len(planted)
    assert not found["capped"]


def test_html_report_escapes_and_is_self_contained(tmp_path):
    evil = "<script>alert(1)</script>"
    samples = balanced(labels=("a", evil)) + [
        sample(evil, "train", path=f"img/{evil}.jpg", sha="dup", boxes=[Box(1, 1, 50, 60, evil)]),
        sample("a", "test", sha="dup"),
    ]
    m = manifest(samples, names={evil: evil}, rejected=[Rejected(f"{evil}.png", "corrupt_image", evil)])
    findings = inspect_manifest(m)
    page = render_html(json.loads(json.dumps(findings)))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert" not in page and "<script" not in page
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page
    written = write_report(findings, tmp_path / "r.html", tmp_path / "r.json")
    assert [p.name for p in written] == ["r.json", "r.html"]
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["name"] == "toy"
    assert (tmp_path / "r.html").read_text() == page


def test_html_report_many_classes_and_empty_dataset():
    samples = [sample(f"class{k}") for k in range(80) for _ in range(k % 7 + 1)]
    page = render_html(inspect_manifest(manifest(samples)))
    assert "showing the 60 largest of 80 classes" in page and "showing the 24 largest of 80 classes" in page
    empty = inspect_manifest(manifest([]))
    assert "empty_dataset" in codes(empty, "error")
    assert "<html" in render_html(empty)
