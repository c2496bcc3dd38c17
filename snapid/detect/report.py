"""Detection in `snapid report`: a detector run's section, and the detect → crop comparisons of a classifier.

A detector run (kind "detect") reports what `snapid detect eval` stored (<run_dir>/detect-eval-<split>.json,
artifact ``detect_eval_<split>``; a completed run not yet evaluated on the split is evaluated first):
mAP@0.5, mAP@0.5:0.95, precision/recall at the score threshold, per-class AP, val mAP per epoch and the
gallery of missed and false boxes. A classifier run gets one table of every `snapid detect compare`
that names it, found through the detector runs' ``detect_compare`` artifacts (compare.py lists every
comparison in that artifact's meta). A missing or unreadable file becomes a note, never an error.
Every string goes through ``escape``; thumbnails are only ever our own JPEG/PNG data: URIs.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine

from snapid.errors import SnapidError
from snapid.reporting import escape, figure, number, own_thumbnail, png, section, table
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace

MAX_JSON_BYTES = 32 << 20
MAX_CLASS_ROWS = 200
MAX_EPOCH_ROWS = 300
MAX_GALLERY = 24
MAX_COMPARE_ROWS = 50


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _pct(value) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{100 * value:.1f}%"


def read_json(path: Path) -> tuple[dict | None, str]:
    """(content, "") or (None, why it cannot be read): a report shows the reason instead of failing."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None, f"{path} is larger than {MAX_JSON_BYTES >> 20} MB"
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path} is missing"
    except (OSError, ValueError) as exc:
        return None, f"{path} cannot be read ({type(exc).__name__}: {exc})"
    return (data, "") if isinstance(data, dict) else (None, f"{path} does not hold a JSON object")


# --- a classifier's comparisons -------------------------------------------------------------------------------
def comparisons_of(classifier: str, *, engine: Engine) -> list[dict]:
    """Every stored comparison naming ``classifier``: {"detector", "split", "path"} plus "result" (the JSON)
    or "note" (why it could not be read)."""
    found = []
    with transaction(engine) as s:
        detectors = [r["name"] for r in track.list_runs(s) if r["kind"] == "detect"]
        stored = {d: [a["meta"] for a in track.artifacts(s, name=d) if a["kind"] == "detect_compare"]
                  for d in detectors}
    for detector in sorted(stored):
        for meta in stored[detector]:
            entries = meta.get("comparisons") or [meta]   # artifacts from before the list: the one comparison
            for entry in entries:
                if isinstance(entry, dict) and entry.get("classifier") == classifier and entry.get("path"):
                    result, why = read_json(Path(str(entry["path"])))
                    found.append({"detector": detector, "split": entry.get("split"), "path": entry["path"],
                                  "result": result, "note": why})
    return found[:MAX_COMPARE_ROWS]


COMPARE_HEADERS = ["detector", "split", "one-label photos", "top-1 whole photo", "top-1 detect → crop",
                   "top-1 ground-truth crop", "fallbacks (no box)", "objects (several-label photos)",
                   "per object: whole photo", "per object: detect → crop", "objects detected"]


def compare_rows(found: list[dict]) -> tuple[list[list], list[str]]:
    """Table rows for the readable comparisons, and a note for each unreadable one."""
    rows, notes = [], []
    for item in found:
        result = item["result"]
        single, multi = (result or {}).get("single"), (result or {}).get("multi")
        if not isinstance(single, dict) or not isinstance(multi, dict):
            notes.append(f"comparison with detector {item['detector']} ({item['split']}): "
                         f"{item['note'] or str(item['path']) + ' has no single/multi figures'}")
            continue
        rows.append([item["detector"], item["split"], single.get("photos"), _pct(single.get("whole_top1")),
                     _pct(single.get("crop_top1")), _pct(single.get("gt_crop_top1")), single.get("fallback"),
                     multi.get("objects"), _pct(multi.get("whole_top1")), _pct(multi.get("crop_top1")),
                     _pct(multi.get("detected"))])
    return rows, notes


def compare_section(classifier: str, anchor: str, *, engine: Engine) -> str:
    """The detect → crop table of a classifier run; empty when no comparison names it."""
    found = comparisons_of(classifier, engine=engine)
    if not found:
        return ""
    rows, notes = compare_rows(found)
    body = ("<p>Classification accuracy with and without the detect → crop stage (`snapid detect compare`): "
            "the whole photo, the detector's top box cropped with the classifier's padding, and the ground-truth "
            "box (a perfect detector). A one-label photo where nothing is detected falls back to the whole photo.</p>"
            + table(COMPARE_HEADERS, rows, {2, 6, 7}) + "".join(_note(n) for n in notes))
    return section(f"{anchor}-detect-compare", "Detect → crop → classify", body)


# --- a detector run ----------------------------------------------------------------------------------------------
def detector_subject(name: str, run: dict, *, workspace: Workspace, engine: Engine, split: str) -> dict:
    """What the report shows of a detector run: its row, epochs and stored evaluation on ``split``
    (evaluated now when the run is completed and has none); "note" says why an evaluation is missing."""
    with transaction(engine) as s:
        epochs = track.epochs(s, name=name)
        evaluated = any(a["kind"] == f"detect_eval_{split}" for a in track.artifacts(s, name=name))
    path = Path(run["run_dir"]) / f"detect-eval-{split}.json"
    note = ""
    if not (evaluated and path.exists()) and run["status"] == "completed":
        from snapid.detect.evaluate import evaluate_detector

        try:
            evaluate_detector(name, workspace=workspace, engine=engine, split=split)
        except SnapidError as exc:
            note = f"not evaluated on {split}: {exc.message}"
    result, why = read_json(path)
    if result is None and not note:
        note = why if run["status"] == "completed" else f"run {name} is {run['status']}: no evaluation on {split} yet"
    return {"name": name, "run": run, "curves": {name: epochs}, "eval": result or {}, "note": note, "detector": True}


def detector_sections(subject: dict, anchor: str) -> str:
    run, ev = subject["run"], subject["eval"]
    head = (f'<section id="{anchor}"><h2>{escape(run["name"])} '
            f'<small>detector · {escape(run["model"])} · {escape(run["dataset"])} '
            f'v{escape(run["dataset_version"])} · {escape(ev.get("split"))} split, {number(ev.get("n"))} photos, '
            f'{number(ev.get("objects"))} boxes</small></h2>{_headline(ev)}'
            f'{_note(subject["note"]) if subject["note"] else ""}</section>')
    return "".join([head, _curves(subject, anchor), _per_class(ev, anchor), _gallery(ev, anchor)])


def _headline(ev: dict) -> str:
    if not ev:
        return ""
    overall = (ev.get("at_threshold") or {}).get("overall") or {}
    threshold, latency = ev.get("score_threshold"), ev.get("latency_ms")
    cards = [("mAP@0.5", _pct(ev.get("map50"))), ("mAP@0.5:0.95", _pct(ev.get("map"))),
             ("mAP@0.75", _pct(ev.get("map75"))),
             (f"precision at score ≥ {threshold}", _pct(overall.get("precision"))),
             (f"recall at score ≥ {threshold}", _pct(overall.get("recall"))),
             ("latency ms/photo", f"{latency:.1f}" if isinstance(latency, (int, float)) else "—")]
    html = "".join(f'<div class="card"><b>{escape(v)}</b><small>{escape(k)}</small></div>' for k, v in cards)
    return f'<div class="cards">{html}</div><p class="note">evaluated {escape(ev.get("created_at"))}</p>'


def _per_class(ev: dict, anchor: str) -> str:
    classes = [c for c in ev.get("classes") or [] if isinstance(c, str)]
    if not classes:
        return ""
    ap50, ap = ev.get("per_class_ap50") or {}, ev.get("per_class_ap") or {}
    pr = (ev.get("at_threshold") or {}).get("per_class") or {}
    rows = [[c, _pct(ap50.get(c)), _pct(ap.get(c)), _pct((pr.get(c) or {}).get("precision")),
             _pct((pr.get(c) or {}).get("recall")), *((pr.get(c) or {}).get(k) for k in ("tp", "fp", "fn"))]
            for c in classes[:MAX_CLASS_ROWS]]
    note = _note(f"the first {MAX_CLASS_ROWS} of {len(classes)} classes") if len(classes) > MAX_CLASS_ROWS else ""
    headers = ["class", "AP@0.5", "AP@0.5:0.95", "precision", "recall", "true boxes found", "false boxes",
               "missed boxes"]
    return section(f"{anchor}-classes", "Per class", table(headers, rows, {5, 6, 7}) + note)


def _curves(subject: dict, anchor: str) -> str:
    epochs = subject["curves"][subject["name"]]
    if not epochs:
        return section(f"{anchor}-curves", "Training curves", _note("no epochs recorded"))
    # detector epochs keep val mAP@0.5 in the `top1` column (train.py)
    rows = [[e["epoch"], e["train_loss"], e["val_loss"], e["top1"], e["lr"], e["seconds"]]
            for e in epochs[-MAX_EPOCH_ROWS:]]
    epoch_table = table(["epoch", "train loss", "val loss", "val mAP@0.5", "lr", "seconds"], rows, {0, 1, 2, 3, 4, 5})
    return section(f"{anchor}-curves", "Training curves", detector_curves(epochs) + epoch_table)


def detector_curves(epochs: list[dict]) -> str:
    """Train/val loss and validation mAP@0.5 per epoch, as an inline PNG."""
    from matplotlib.ticker import MaxNLocator

    fig = figure(8, 3.0)
    loss_ax, map_ax = fig.subplots(1, 2)
    for key, style, label in (("train_loss", "-", "train"), ("val_loss", "--", "val")):
        points = [(e["epoch"], e[key]) for e in epochs if e.get(key) is not None]
        loss_ax.plot([p[0] for p in points], [p[1] for p in points], style, color="#4c78a8", label=label)
    points = [(e["epoch"], e["top1"]) for e in epochs if e.get("top1") is not None]
    map_ax.plot([p[0] for p in points], [p[1] for p in points], "o-", color="#54a24b", ms=3, label="val mAP@0.5")
    map_ax.set_ylim(0, 1)
    for ax, title in ((loss_ax, "loss"), (map_ax, "validation mAP@0.5")):
        ax.set_title(title, fontsize=10)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    return png(fig)


def _gallery(ev: dict, anchor: str) -> str:
    if not ev:
        return ""
    cells = []
    for g in (ev.get("gallery") or [])[:MAX_GALLERY]:
        if not isinstance(g, dict):
            continue
        uri = str(g.get("thumbnail") or "")
        image = (f'<img alt="{escape(g.get("kind"))} box" src="{uri}">'
                 if own_thumbnail(uri) else "")   # only our own data: URIs
        what = "missed box" if g.get("kind") == "missed" else f"false box, score {g.get('score')}"
        cells.append(f'<figure>{image}<figcaption><span class="bad">{escape(what)}</span><br>{escape(g.get("photo"))}'
                     f"</figcaption></figure>")
    body = (f'<div class="gallery">{"".join(cells)}</div>' if cells
            else _note(f"no missed or false boxes at score ≥ {ev.get('score_threshold')}"))
    return section(f"{anchor}-gallery", "Missed and false boxes (missed first, then the most confident false)", body)
