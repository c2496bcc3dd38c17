"""Data-quality findings for one stored dataset version: pure, manifest in, JSON-ready dict out.

``inspect_manifest`` computes every figure (one function per finding family); ``problems``
turns the figures into errors and warnings, which ``snapid data inspect --strict`` acts on.
report.py renders the same dict as HTML, so anything shown there comes from here.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from snapid.data.manifest import SPLITS, Manifest, Sample
from snapid.data.near_dups import find_near_duplicates

MAX_EXAMPLES = 50
SMALL_CLASS = 10            # a class with fewer images than this is "small"
IMBALANCE_WARNING = 20.0    # max/min class size above which training needs balancing
TINY_BOX = 8                # box side in pixels
ASPECT_EDGES = [0.5, 0.75, 0.9, 1.1, 1.34, 1.6, 2.0, 3.0]   # width / height bin edges
GREY_MODES = {"L", "1", "I", "F"}
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def inspect_manifest(manifest: Manifest, *, tiny_side: int = 64, near_distance: int = 4,
                     max_rejected: float = 0.01) -> dict:
    """Every finding about ``manifest`` as a JSON-serialisable dict, with its problems."""
    samples = manifest.samples
    findings = {
        "settings": {"tiny_side": tiny_side, "near_distance": near_distance, "max_rejected": max_rejected,
                     "small_class": SMALL_CLASS, "tiny_box": TINY_BOX},
        "summary": summary(manifest),
        "classes": class_counts(manifest),
        "sizes": sizes(samples),
        "modes": colour_modes(samples),
        "tiny": tiny_images(samples, tiny_side),
        "rejected": rejected_files(manifest, max_rejected),
        "exact_duplicates": exact_duplicates(samples),
        "near_duplicates": near_duplicates(samples, near_distance),
        "boxes": box_stats(samples),
        "colours": colour_stats(manifest),
    }
    findings["problems"] = problems(findings)
    return findings


def _split_names(samples: list[Sample]) -> list[str]:
    """train/val/test first, then any other split value a hand-made manifest carries."""
    seen = {s.split for s in samples}
    return [s for s in SPLITS if s in seen or s == "train"] + sorted(str(s) for s in seen - set(SPLITS))


def _dist(values) -> dict | None:
    """min / p5 / median / p95 / max / mean of a numeric column (None when empty)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return None
    p = np.percentile(v, [0, 5, 50, 95, 100])
    return {"min": float(p[0]), "p5": float(p[1]), "median": float(p[2]), "p95": float(p[3]),
            "max": float(p[4]), "mean": round(float(v.mean()), 4)}


def _brief(s: Sample, **extra) -> dict:
    return {"path": s.path, "label": s.label, "split": s.split, **extra}


def summary(manifest: Manifest) -> dict:
    splits = Counter(s.split for s in manifest.samples)
    return {
        "name": manifest.name, "version": manifest.version, "format": manifest.format, "root": manifest.root,
        "created_at": manifest.created_at, "samples": len(manifest.samples), "classes": len(manifest.classes),
        "splits": {name: splits.get(name, 0) for name in _split_names(manifest.samples)},
        # a photo of several labelled objects has no single label, but it is labelled
        "unlabelled": sum(1 for s in manifest.samples if s.label is None and not any(b.label for b in s.boxes)),
        "rejected": len(manifest.rejected), "notes": list(manifest.notes),
    }


def _class_table(manifest: Manifest) -> list[tuple[str, str, bool]]:
    """(id, name, listed) for the class list plus any label it lacks."""
    listed = [(c.id, c.name, True) for c in manifest.classes]
    known = {c.id for c in manifest.classes}
    extra = sorted({s.label for s in manifest.samples if s.label is not None} - known)
    return listed + [(label, label, False) for label in extra]


def class_counts(manifest: Manifest) -> dict:
    split_names = _split_names(manifest.samples)
    counts = Counter((s.label, s.split) for s in manifest.samples if s.label is not None)
    rows = []
    for cid, name, listed in _class_table(manifest):
        per = {sp: counts.get((cid, sp), 0) for sp in split_names}
        rows.append({"id": cid, "name": name, "listed": listed, "counts": per, "total": sum(per.values())})
    totals = [r["total"] for r in rows if r["total"] > 0]
    small = sorted((r for r in rows if 0 < r["total"] < SMALL_CLASS), key=lambda r: (r["total"], r["id"]))
    present = {sp: {r["id"] for r in rows if r["counts"][sp]} for sp in split_names}
    used = [sp for sp in split_names if present[sp]]

    def missing(have: str, lack: str) -> list[str]:
        return sorted(present[have] - present[lack]) if have in used and lack in used else []

    return {
        "per_class": rows,
        "with_images": len(totals),
        "empty": [r["id"] for r in rows if r["total"] == 0],
        "imbalance": round(max(totals) / min(totals), 3) if totals else None,
        "largest": max(totals, default=0), "smallest": min(totals, default=0),
        "small": {"threshold": SMALL_CLASS, "count": len(small),
                  "share": round(len(small) / len(totals), 4) if totals else 0.0,
                  "classes": [{"id": r["id"], "name": r["name"], "total": r["total"]} for r in small[:200]]},
        # "val_not_in_train": classes with val images but no train images, and so on
        "missing": {f"{have}_not_in_{lack}": missing(have, lack)
                    for have, lack in (("train", "val"), ("train", "test"), ("val", "train"), ("test", "train"))},
    }


def sizes(samples: list[Sample]) -> dict:
    w = np.array([s.facts.width for s in samples], dtype=np.float64)
    h = np.array([s.facts.height for s in samples], dtype=np.float64)
    ok = (w > 0) & (h > 0)
    aspect = w[ok] / h[ok]
    bins = np.digitize(aspect, ASPECT_EDGES)
    # strict=False: each edge with the next one, so one pair fewer than edges
    between = [f"{a}-{b}" for a, b in zip(ASPECT_EDGES, ASPECT_EDGES[1:], strict=False)]
    labels = [f"<{ASPECT_EDGES[0]}"] + between + [f">={ASPECT_EDGES[-1]}"]
    step = max(1, len(samples) // 2000)      # a fixed-stride sample keeps the JSON small and stable
    return {
        "width": _dist(w), "height": _dist(h), "aspect": _dist(aspect), "megapixels": _dist(w * h / 1e6),
        "aspect_hist": {"edges": ASPECT_EDGES, "labels": labels,
                        "counts": np.bincount(bins, minlength=len(labels)).astype(int).tolist()},
        "formats": dict(Counter(s.facts.format for s in samples).most_common()),
        "points": [[int(w[i]), int(h[i])] for i in range(0, len(samples), step)],
    }


def colour_modes(samples: list[Sample]) -> dict:
    counts = Counter(s.facts.mode for s in samples)
    tests = {
        "cmyk": lambda m: m == "CMYK",
        "greyscale": lambda m: m in GREY_MODES or m.startswith("I;16"),
        "alpha": lambda m: m in ALPHA_MODES,
        "palette": lambda m: m == "P",      # transparency unknown from the mode alone
        "sixteen_bit": lambda m: m == "I" or m.startswith("I;16"),
    }
    flags = {}
    for flag, test in tests.items():
        hits = [s for s in samples if test(s.facts.mode)]
        flags[flag] = {"count": len(hits), "examples": [_brief(s, mode=s.facts.mode) for s in hits[:10]]}
    return {"counts": dict(counts.most_common()), "flags": flags}


def tiny_images(samples: list[Sample], tiny_side: int) -> dict:
    hits = [s for s in samples if min(s.facts.width, s.facts.height) < tiny_side]
    return {"side": tiny_side, "count": len(hits),
            "examples": [_brief(s, width=s.facts.width, height=s.facts.height) for s in hits[:MAX_EXAMPLES]]}


def rejected_files(manifest: Manifest, max_rejected: float) -> dict:
    total = len(manifest.samples) + len(manifest.rejected)
    share = len(manifest.rejected) / total if total else 0.0
    return {
        "count": len(manifest.rejected), "files": total, "share": round(share, 6), "max_share": max_rejected,
        "too_many": share > max_rejected,
        "reasons": dict(Counter(r.reason for r in manifest.rejected).most_common()),
        "examples": [{"path": r.path, "reason": r.reason, "detail": r.detail}
                     for r in manifest.rejected[:MAX_EXAMPLES]],
    }


def exact_duplicates(samples: list[Sample]) -> dict:
    by_sha: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_sha[s.facts.sha256].append(s)
    groups = [g for g in by_sha.values() if len(g) > 1]
    within = [g for g in groups if max(Counter(s.split for s in g).values()) > 1]
    cross = [g for g in groups if len({s.split for s in g}) > 1]
    conflict = [g for g in groups if len({s.label for s in g if s.label is not None}) > 1]

    def show(gs: list[list[Sample]]) -> list[dict]:
        return [{"sha256": g[0].facts.sha256, "count": len(g), "samples": [_brief(s) for s in g[:10]]}
                for g in gs[:MAX_EXAMPLES]]

    return {
        "groups": len(groups), "extra_copies": sum(len(g) - 1 for g in groups),
        "within_split": {"groups": len(within), "examples": show(within)},
        "cross_split": {"groups": len(cross), "samples": sum(len(g) for g in cross), "examples": show(cross)},
        "conflicting_labels": {"groups": len(conflict), "examples": show(conflict)},
    }


def near_duplicates(samples: list[Sample], distance: int) -> dict:
    found = find_near_duplicates([s.facts.phash for s in samples], [s.split for s in samples],
                                 [s.facts.sha256 for s in samples], distance, max_examples=MAX_EXAMPLES)
    for key in ("within_examples", "cross_examples"):
        found[key] = [{"a": _brief(samples[p["a"]]), "b": _brief(samples[p["b"]]), "distance": p["distance"]}
                      for p in found[key]]
    return found


def _box_flags(s: Sample) -> dict[str, list[dict]]:
    """Per-box findings of one sample (lists of example records keyed by finding)."""
    w, h, out = s.facts.width, s.facts.height, defaultdict(list)
    for b in s.boxes:
        rec = _brief(s, box=[b.x1, b.y1, b.x2, b.y2], width=w, height=h)
        if b.x1 < -1 or b.y1 < -1 or b.x2 > w + 1 or b.y2 > h + 1:
            out["out_of_bounds"].append(rec)
        if max(b.x1, b.y1, b.x2, b.y2) <= 1.5 and max(w, h) > 32:   # relative coords: not also "tiny"
            out["looks_normalised"].append(rec)
        elif b.x2 <= b.x1 or b.y2 <= b.y1:
            out["degenerate"].append(rec)
        elif min(b.x2 - b.x1, b.y2 - b.y1) < TINY_BOX:
            out["tiny"].append(rec)
    for note in s.box_notes:
        kind = ("clipped" if "clipped" in note
                else "normalised_outside" if "normalised coordinates outside" in note else None)
        if kind:
            out[kind].append(_brief(s, note=note))
    return out


def box_stats(samples: list[Sample]) -> dict:
    per_image = [len(s.boxes) for s in samples]
    per_class = Counter((b.label if b.label is not None else s.label) for s in samples for b in s.boxes)
    found: dict[str, list[dict]] = defaultdict(list)
    counts: Counter = Counter()
    for s in samples:
        if s.boxes or s.box_notes:
            for kind, recs in _box_flags(s).items():
                counts[kind] += len(recs)
                found[kind].extend(recs[: MAX_EXAMPLES - len(found[kind])])
    kinds = ("out_of_bounds", "clipped", "degenerate", "tiny", "looks_normalised", "normalised_outside")
    hist = Counter(min(n, 10) for n in per_image)
    return {
        "count": sum(per_image), "images_with_boxes": sum(1 for n in per_image if n),
        "per_class": [{"label": label, "count": n} for label, n in per_class.most_common()],
        "per_image": _dist(per_image),
        "per_image_hist": {("10+" if k == 10 else str(k)): hist[k] for k in sorted(hist)},
        **{kind: {"count": counts[kind], "examples": found[kind]} for kind in kinds},
        "tiny_side": TINY_BOX,
    }


def colour_stats(manifest: Manifest) -> dict:
    """Per class mean colour and 3 x 16-bin RGB histogram as fractions of each channel."""
    table = _class_table(manifest)
    index = {cid: i for i, (cid, _, _) in enumerate(table)}
    usable = [s for s in manifest.samples
              if s.label in index and len(s.facts.hist) == 48 and len(s.facts.mean_rgb) == 3]
    cls = np.array([index[s.label] for s in usable], dtype=np.int64)
    n = np.bincount(cls, minlength=len(table))
    mean = np.stack([np.bincount(cls, [s.facts.mean_rgb[c] for s in usable], minlength=len(table))
                     for c in range(3)], 1)
    hist = np.zeros((len(table), 48))
    np.add.at(hist, cls, np.array([s.facts.hist for s in usable], dtype=np.float64).reshape(-1, 48))
    channel_sums = hist.reshape(-1, 3, 16).sum(axis=2, keepdims=True)
    frac = (hist.reshape(-1, 3, 16) / np.maximum(channel_sums, 1)).round(4)
    rows = [{"id": cid, "name": name, "images": int(n[i]),
             "mean_rgb": [round(float(v), 1) for v in mean[i] / n[i]],
             "hist": {"r": frac[i, 0].tolist(), "g": frac[i, 1].tolist(), "b": frac[i, 2].tolist()}}
            for i, (cid, name, _) in enumerate(table) if n[i]]
    return {"per_class": rows}


def _p(severity: str, code: str, message: str) -> dict:
    return {"severity": severity, "code": code, "message": message}


def _few(ids: list, limit: int = 5) -> str:
    return ", ".join(map(str, ids[:limit])) + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


def problems(findings: dict) -> list[dict]:
    """Errors and warnings from a findings dict (also one read back from JSON)."""
    out: list[dict] = []
    for check in (_summary_problems, _class_problems, _image_problems, _duplicate_problems, _box_problems):
        out += check(findings)
    return sorted(out, key=lambda p: p["severity"] != "error")   # stable: errors first


def _summary_problems(f: dict) -> list[dict]:
    s, r, out = f["summary"], f["rejected"], []
    if s["samples"] == 0:
        out.append(_p("error", "empty_dataset", "the dataset has no usable images"))
    elif s["splits"].get("train", 0) == 0:
        out.append(_p("error", "no_train_split", "no image is in the train split"))
    if s["unlabelled"]:
        out.append(_p("warning", "unlabelled", f"{s['unlabelled']} images have no label"))
    if r["too_many"]:
        out.append(_p("error", "rejected_files", f"{r['count']} of {r['files']} files rejected ({r['share']:.1%}, "
                      f"above {r['max_share']:.1%}): " + _few([f"{k}: {v}" for k, v in r["reasons"].items()])))
    elif r["count"]:
        out.append(_p("warning", "rejected_files", f"{r['count']} of {r['files']} files rejected ({r['share']:.2%})"))
    return out


def _class_problems(f: dict) -> list[dict]:
    c, out = f["classes"], []
    for lack in ("val", "test"):
        if ids := c["missing"].get(f"{lack}_not_in_train"):
            out.append(_p("error", f"{lack}_class_not_in_train",
                          f"{len(ids)} classes are in {lack} but not in train: {_few(ids)}"))
        if ids := c["missing"].get(f"train_not_in_{lack}"):
            out.append(_p("warning", f"class_missing_from_{lack}",
                          f"{len(ids)} classes have no {lack} images: {_few(ids)}"))
    if c["empty"]:
        out.append(_p("warning", "empty_classes",
                      f"{len(c['empty'])} listed classes have no images: {_few(c['empty'])}"))
    if c["small"]["count"]:
        out.append(_p("warning", "small_classes", f"{c['small']['count']} classes ({c['small']['share']:.0%}) have "
                      f"fewer than {c['small']['threshold']} images"))
    if c["imbalance"] and c["imbalance"] > IMBALANCE_WARNING:
        out.append(_p("warning", "imbalance", f"largest class has {c['imbalance']:.0f}x the images of the smallest "
                      f"({c['largest']} vs {c['smallest']})"))
    return out


def _image_problems(f: dict) -> list[dict]:
    flags, out = f["modes"]["flags"], []
    what = {"cmyk": "CMYK images (colours may shift when converted to RGB)",
            "sixteen_bit": "16-bit or 32-bit images (precision is lost in 8-bit RGB)",
            "alpha": "images with an alpha channel (flattened, transparent areas change)",
            "greyscale": "greyscale images (converted to 3 identical channels)"}
    out += [_p("warning", f"mode_{k}", f"{flags[k]['count']} {text}") for k, text in what.items() if flags[k]["count"]]
    if f["tiny"]["count"]:
        out.append(_p("warning", "tiny_images",
                      f"{f['tiny']['count']} images are smaller than {f['tiny']['side']} px on a side"))
    return out


def _duplicate_problems(f: dict) -> list[dict]:
    e, n, out = f["exact_duplicates"], f["near_duplicates"], []
    if e["cross_split"]["groups"]:
        out.append(_p("error", "leakage", f"{e['cross_split']['groups']} identical files appear in more than one split "
                      f"({e['cross_split']['samples']} copies)"))
    if e["conflicting_labels"]["groups"]:
        out.append(_p("error", "conflicting_labels",
                      f"{e['conflicting_labels']['groups']} identical files carry different labels"))
    if e["within_split"]["groups"]:
        out.append(_p("warning", "exact_duplicates",
                      f"{e['within_split']['groups']} files are stored more than once within a split"))
    if n["cross_split_pairs"]:
        out.append(_p("warning", "near_leakage", f"{n['cross_split_pairs']} near-duplicate pairs straddle splits "
                      f"(perceptual hash within {n['distance']} bits)"))
    if n["within_split_pairs"]:
        out.append(_p("warning", "near_duplicates", f"{n['within_split_pairs']} near-duplicate pairs within a split"))
    if n["capped"]:
        out.append(_p("warning", "near_search_capped", f"near-duplicate search capped ({n['capped_buckets']} crowded "
                      f"buckets, {n['skipped_comparisons']} comparisons skipped): counts are lower bounds"))
    return out


def _box_problems(f: dict) -> list[dict]:
    b = f["boxes"]
    rules = [("looks_normalised", "error", "boxes look normalised (all coordinates <= 1.5) in a pixel format"),
             ("normalised_outside", "error", "boxes had normalised coordinates outside [0, 1]"),
             ("out_of_bounds", "error", "boxes lie outside their image by more than 1 px"),
             ("degenerate", "warning", "boxes have zero or negative area"),
             ("clipped", "warning", "boxes were clipped to the image at import"),
             ("tiny", "warning", f"boxes are smaller than {b['tiny_side']} px on a side")]
    return [_p(sev, f"boxes_{kind}", f"{b[kind]['count']} {text}") for kind, sev, text in rules if b[kind]["count"]]
