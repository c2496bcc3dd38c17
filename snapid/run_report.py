"""The evaluation report: ONE self-contained HTML file (or a PDF printed from it by headless Chromium)
for a run, an ensemble, a detector run (snapid.detect.report), or a comparison of several.

Everything is inline (PNG figures and thumbnails as data: URIs, CSS in a <style>); a Content-Security-
Policy forbids any script or fetch. Every string from the database or the dataset (run names, class
ids and names, notes) goes through ``escape`` (html.escape): a class may well be called ``<script>``.

Above both snapid.evaluate and snapid.detect, since it shows classifier and detector runs side by side
(issue 18: in evaluate it made detect → evaluate → detect).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Engine

from snapid.detect import report as detect_report
from snapid.errors import SnapidError
from snapid.evaluate import figures
from snapid.evaluate.leaderboard import BOARD_HEADERS, board_table, leaderboard
from snapid.reporting import CSS as BASE_CSS
from snapid.reporting import escape, number, own_thumbnail, section, table, wide_font
from snapid.track import datasets as dataset_store
from snapid.track import runs as track
from snapid.track.db import transaction
from snapid.workspace import Workspace, atomic_write_bytes, atomic_write_text

SUFFIXES = (".html", ".htm", ".pdf")
MAX_COMPARE = 12
MAX_EVAL_BYTES = 64 << 20
MAX_CLASS_ROWS = 200
MAX_EPOCH_ROWS = 300
MAX_PAIRS = 20
MAX_MISTAKES = 48
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
PDF_TIMEOUT_S = 180
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = BASE_CSS + """
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:8px}
.gallery figure{margin:0;font-size:12px;background:#f8f9fb;border-radius:6px;padding:4px}
.gallery img{width:100%;image-rendering:pixelated;margin:0 0 4px}
.bad{color:#8e1b1b}
h2 small{color:#5b6470;font-weight:400}
@media print{body{background:#fff}section{box-shadow:none}img,figure,tr{break-inside:avoid}}
"""


class ReportError(SnapidError):
    code = "report_error"
    status = 422


# --- entry points ---------------------------------------------------------------------------------
def write_report(names: list[str], out: Path, *, workspace: Workspace, engine: Engine, split: str = "test",
                 chromium: str | None = None) -> Path:
    """Write the report of one run/ensemble (or a comparison of several) to ``out`` (.html or .pdf)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise ReportError(f"{out}: the report is written as .html or .pdf, not {suffix or 'a file without suffix'!r}")
    document = render_report(names, workspace=workspace, engine=engine, split=split)
    if suffix == ".pdf":
        print_pdf(document, out, chromium=chromium)
    else:
        atomic_write_text(out, document)
    return out


def render_report(names: list[str], *, workspace: Workspace, engine: Engine, split: str = "test") -> str:
    """The whole report as one HTML string (runs without an evaluation on ``split`` are evaluated first)."""
    from matplotlib import rc_context

    names = list(dict.fromkeys(names))   # a name given twice is reported once
    if not names or len(names) > MAX_COMPARE:
        raise ReportError(f"give 1 to {MAX_COMPARE} runs to report on, got {len(names)}")
    subjects = [_subject(name, workspace=workspace, engine=engine, split=split) for name in names]
    dataset, version = _common_dataset(subjects)
    classifiers = [s for s in subjects if not s.get("detector")]   # detector runs have no leaderboard
    fonts = {"font.family": ["DejaVu Sans", wide_font()]} if wide_font() else {}  # CJK glyphs as fallback
    with rc_context(fonts):
        parts = [_dataset_section(dataset, version, engine=engine)]
        if len(classifiers) > 1:
            parts += [_leaderboard_section([s["name"] for s in classifiers], dataset, version, split=split,
                                           engine=engine),
                      _overlay_section(classifiers)]
        for i, subject in enumerate(subjects):
            parts.append(detect_report.detector_sections(subject, f"r{i}") if subject.get("detector")
                         else _run_sections(subject, f"r{i}", engine=engine))
    title = f"snapid report: {', '.join(names)}" if len(names) <= 3 else f"snapid comparison of {len(names)} runs"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{escape(title)}</h1>{_nav(subjects)}{''.join(parts)}</main></body></html>")


# --- gathering ------------------------------------------------------------------------------------------
def _subject(name: str, *, workspace: Workspace, engine: Engine, split: str) -> dict:
    """A run's row, its curves (an ensemble's: its members') and its evaluation on ``split``."""
    with transaction(engine) as s:
        run = track.get_run(s, name=name)
    if run["kind"] == "detect":
        return detect_report.detector_subject(name, run, workspace=workspace, engine=engine, split=split)
    with transaction(engine) as s:
        evaluated = any(a["kind"] == f"eval_{split}" for a in track.artifacts(s, name=name))
        members = run["config"].get("members", []) if run["kind"] == "ensemble" else []
        curves = {m: track.epochs(s, name=m) for m in members} if members else {name: track.epochs(s, name=name)}
    path = Path(run["run_dir"]) / f"eval-{split}.json"
    if not evaluated or not path.exists():
        if run["status"] != "completed":
            raise ReportError(f"run {name!r} is {run['status']}; only completed runs can be reported on")
        from snapid.evaluate.evaluation import evaluate_run

        evaluate_run(name, workspace=workspace, engine=engine, split=split)
    return {"name": name, "run": run, "curves": curves, "eval": _read_eval(path)}


def _read_eval(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_EVAL_BYTES:
            raise ReportError(f"{path} is larger than {MAX_EVAL_BYTES >> 20} MB; evaluate the run again")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read the evaluation {path}: {exc}") from None


def _common_dataset(subjects: list[dict]) -> tuple[str, int]:
    first = subjects[0]["run"]
    for subject in subjects[1:]:
        run = subject["run"]
        if (run["dataset"], run["dataset_version"]) != (first["dataset"], first["dataset_version"]):
            raise ReportError(f"cannot compare {first['name']!r} ({first['dataset']} v{first['dataset_version']}) with "
                              f"{run['name']!r} ({run['dataset']} v{run['dataset_version']}): "
                              "different dataset versions")
    return first["dataset"], first["dataset_version"]


def _nav(subjects: list[dict]) -> str:
    several = sum(not s.get("detector") for s in subjects) > 1
    links = [("dataset", "Dataset")] + ([("leaderboard", "Leaderboard"), ("curves", "Curves")] if several else [])
    links += [(f"r{i}", s["name"]) for i, s in enumerate(subjects)]
    return "<nav>" + "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in links) + "</nav>"


# --- shared sections ---------------------------------------------------------------------------------------
def _dataset_section(dataset: str, version: int, *, engine: Engine) -> str:
    with transaction(engine) as s:
        manifest = dataset_store.load_manifest(s, name=dataset, version=version)
    splits = Counter(sample.split for sample in manifest.samples)
    per_class: dict[str | None, Counter] = {}
    for sample in manifest.samples:
        per_class.setdefault(sample.label, Counter())[sample.split] += 1
    cards = [("images", len(manifest.samples)), ("classes", len(manifest.classes)),
             *[(k, splits.get(k, 0)) for k in ("train", "val", "test")], ("rejected", len(manifest.rejected))]
    card_html = "".join(f'<div class="card"><b>{number(v)}</b><small>{escape(k)}</small></div>' for k, v in cards)
    rows = [[c.id, c.name, *(per_class.get(c.id, Counter())[k] for k in ("train", "val", "test"))]
            for c in manifest.classes]
    rows.sort(key=lambda r: -sum(r[2:]))
    note = (f'<p class="note">the {MAX_CLASS_ROWS} largest of {len(rows)} classes</p>'
            if len(rows) > MAX_CLASS_ROWS else "")
    body = (f'<p class="note">{escape(dataset)} v{version} · format {escape(manifest.format)} · created '
            f'{escape(manifest.created_at or "?")}</p><div class="cards">{card_html}</div><h3>Images per class</h3>'
            + table(["id", "name", "train", "val", "test"], rows[:MAX_CLASS_ROWS], {2, 3, 4}) + note)
    return section("dataset", "Dataset", body)


def _leaderboard_section(names: list[str], dataset: str, version: int, *, split: str, engine: Engine) -> str:
    board = leaderboard(dataset, engine=engine, split=split, version=version, names=names)
    note = ('<p class="note">Differences are against the best run on the same items, with a 95% paired bootstrap '
            'interval; "not significant" means the interval contains 0.</p>')
    return section("leaderboard", f"Leaderboard ({split})",
                   table(BOARD_HEADERS, board_table(board), {0, 4, 5, 6, 7, 8}) + note)


def _overlay_section(subjects: list[dict]) -> str:
    series = {s["name"]: s["curves"][s["name"]] for s in subjects if s["run"]["kind"] != "ensemble"}
    if not any(series.values()):
        return section("curves", "Training curves", '<p class="note">no epochs recorded</p>')
    return section("curves", "Training curves, overlaid", figures.training_curves(series))


# --- one run ----------------------------------------------------------------------------------------------
def _run_sections(subject: dict, anchor: str, *, engine: Engine) -> str:
    run, ev = subject["run"], subject["eval"]
    classes = [{"id": c["id"], "name": c["name"]} for c in ev.get("per_class", [])]
    head = (f'<section id="{anchor}"><h2>{escape(run["name"])} <small>{escape(run["kind"])} · {escape(run["model"])} · '
            f'{escape(run["dataset"])} v{escape(run["dataset_version"])} · {escape(ev.get("split"))} split, '
            f'{number(ev.get("n"))} images{" · TTA" if ev.get("tta") else ""}</small></h2>'
            f'{_headline(ev)}{_members(run, engine=engine)}</section>')
    return "".join([head, _curves(subject, anchor), _per_class(ev, anchor), _confusion(ev, classes, anchor),
                    _calibration(ev, anchor), _coverage(ev, anchor), _mistakes(ev, anchor),
                    detect_report.compare_section(run["name"], anchor, engine=engine)])


HEADLINE = (("top1", "top-1", "pct"), ("top5", "top-5", "pct"), ("macro_top1", "macro top-1", "pct"),
            ("macro_f1", "macro-F1", "pct"), ("balanced_accuracy", "balanced acc.", "pct"), ("ece", "ECE", "num"),
            ("ece_uncalibrated", "ECE before calib.", "num"), ("nll", "NLL", "num"),
            ("temperature", "temperature", "num"), ("threshold", "threshold", "num"),
            ("latency_ms", "latency ms/img", "num"), ("parameters", "parameters", "int"))


def _headline(ev: dict) -> str:
    def show(value, kind):
        if value is None:
            return "—"
        return f"{value:.2%}" if kind == "pct" else f"{value:,.0f}" if kind == "int" else f"{value:.4g}"

    cards = "".join(f'<div class="card"><b>{escape(show(ev.get(key), kind))}</b><small>{escape(label)}</small></div>'
                    for key, label, kind in HEADLINE)
    return f'<div class="cards">{cards}</div><p class="note">evaluated {escape(ev.get("created_at"))}</p>'


def _members(run: dict, *, engine: Engine) -> str:
    if run["kind"] != "ensemble":
        return ""
    from snapid.evaluate.calibrate import stored_calibration

    config = run["config"]
    rows = [[m, w, stored_calibration(m, engine=engine)["temperature"]]
            for m, w in zip(config.get("members", []), config.get("weights", []), strict=False)]
    return (f"<h3>Members ({escape(config.get('method'))} voting)</h3>"
            + table(["run", "weight", "temperature"], rows, {1, 2}))


def _curves(subject: dict, anchor: str) -> str:
    curves = {k: v for k, v in subject["curves"].items() if v}
    if not curves:
        return section(f"{anchor}-curves", "Training curves", '<p class="note">no epochs recorded</p>')
    if subject["run"]["kind"] == "ensemble":
        return section(f"{anchor}-curves", "Training curves of the members", figures.training_curves(curves))
    epochs = curves[subject["name"]]
    rows = [[e["epoch"], e["phase"], e["train_loss"], e["val_loss"], e["top1"], e["macro_f1"], e["lr"]]
            for e in epochs[-MAX_EPOCH_ROWS:]]
    epoch_table = table(["epoch", "phase", "train loss", "val loss", "val top-1", "val macro-F1", "lr"], rows,
                        {0, 2, 3, 4, 5, 6})
    return section(f"{anchor}-curves", "Training curves", figures.training_curves(curves) + epoch_table)


def _per_class(ev: dict, anchor: str) -> str:
    rows = ev.get("per_class", [])
    shown = rows if len(rows) <= MAX_CLASS_ROWS else sorted(rows, key=lambda r: (r["f1"], r["index"]))[:MAX_CLASS_ROWS]
    note = (f'<p class="note">the {MAX_CLASS_ROWS} classes with the lowest F1 of {len(rows)}</p>'
            if len(rows) > MAX_CLASS_ROWS else "")
    class_table = table(["#", "id", "name", "precision", "recall", "F1", "test images", "train images", "top-1"],
                        [[r["index"], r["id"], r["name"], r["precision"], r["recall"], r["f1"], r["support"],
                          r.get("train_count"), r.get("top1")] for r in shown], {0, 3, 4, 5, 6, 7, 8})
    tail = ev.get("long_tail") or []
    tail_html = ""
    if tail:
        tail_html = "<h3>By training-set size</h3>" + table(
            ["bucket", "classes", "train min", "train max", "top-1"],
            [[b["bucket"], b["classes"], b["train_min"], b["train_max"], b["top1"]] for b in tail], {1, 2, 3, 4})
    return section(f"{anchor}-classes", "Per class", class_table + note + tail_html)


def _confusion(ev: dict, classes: list[dict], anchor: str) -> str:
    from snapid.metrics import top_confused_pairs

    confusion = ev.get("confusion") or {}
    name = {c["id"]: c["name"] for c in classes}
    body = ""
    if confusion.get("format") == "top_pairs":   # many classes: only the largest confusions were kept
        pairs = [(p["true"], p["pred"], p["count"]) for p in confusion.get("pairs", [])[:MAX_PAIRS]]
        body = f'<p class="note">{escape(confusion.get("note"))}</p>'
    else:
        counts = np.asarray(confusion.get("counts") or [[0]], dtype=np.int64)
        square = counts.shape == (len(classes), len(classes))
        if square and 0 < len(classes) <= figures.MAX_HEATMAP_CLASSES:
            body = figures.confusion_heatmap(confusion["normalized"], classes)
        pairs = [(classes[t]["id"], classes[p]["id"], n)
                 for t, p, n in top_confused_pairs(counts, MAX_PAIRS)] if square else []
    rows = [[t, name.get(t), p, name.get(p), n] for t, p, n in pairs]
    headers = ["true id", "true", "predicted id", "predicted", "images"]
    body += "<h3>Most confused pairs</h3>" + table(headers, rows, {4})
    return section(f"{anchor}-confusion", "Confusion", body)


def _calibration(ev: dict, anchor: str) -> str:
    before, after = ev.get("reliability_uncalibrated") or [], ev.get("reliability") or []
    text = (f'<p>temperature <b>{number(ev.get("temperature"))}</b> · ECE {number(ev.get("ece_uncalibrated"))} → '
            f'<b>{number(ev.get("ece"))}</b> · NLL {number(ev.get("nll"))}</p>')
    figure = figures.reliability(before, after, ece_before=ev.get("ece_uncalibrated"),
                                 ece_after=ev.get("ece")) if after else ""
    return section(f"{anchor}-calibration", "Calibration", text + figure)


def _coverage(ev: dict, anchor: str) -> str:
    points, threshold = ev.get("coverage") or [], ev.get("threshold")
    if not points:
        return section(f"{anchor}-coverage", "Accuracy and coverage", '<p class="note">no coverage curve</p>')
    at = min(points, key=lambda p: abs(p["threshold"] - (threshold or 0)))
    text = (f'<p>with the chosen threshold <b>{number(threshold)}</b> the service answers {number(at["coverage"])} of '
            f'the images with accuracy {number(at["accuracy"])}; below it, it says "not sure".</p>')
    return section(f"{anchor}-coverage", "Accuracy and coverage",
                   text + figures.coverage_curve(points, threshold=threshold))


def _mistakes(ev: dict, anchor: str) -> str:
    cells = []
    for m in (ev.get("mistakes") or [])[:MAX_MISTAKES]:
        uri = m.get("thumbnail") or ""
        image = (f'<img alt="item {escape(m.get("position"))}" src="{uri}">'
                 if own_thumbnail(uri) else "")  # only our own data: URIs
        heat = m.get("heatmap") or ""
        if own_thumbnail(heat):  # where the model looked for the class it answered (issue 19)
            image += (f'<img alt="where the model looked for {escape(m.get("pred_name"))} '
                      f'({escape(m.get("heatmap_method"))})" src="{heat}">')
        cells.append(f'<figure>{image}<figcaption>true <b>{escape(m.get("true_name"))}</b><br>'
                     f'<span class="bad">predicted {escape(m.get("pred_name"))}</span><br>score '
                     f'{number(m.get("score"))} · loss {number(m.get("loss"))}</figcaption></figure>')
    body = f'<div class="gallery">{"".join(cells)}</div>' if cells else '<p class="note">no mistakes on this split</p>'
    return section(f"{anchor}-mistakes", "Mistakes (hardest first)", body)


# --- PDF --------------------------------------------------------------------------------------------------------
def find_chromium(explicit: str | None = None) -> str:
    for candidate in ([explicit] if explicit else []) + [os.environ.get("SNAPID_CHROMIUM") or "", *CHROMIUM_CANDIDATES]:
        found = candidate and shutil.which(candidate)
        if found:
            return found
    raise ReportError("a PDF is printed by headless Chromium, and none was found (install Debian's `chromium`, "
                      "or set SNAPID_CHROMIUM); write .html instead", code="chromium_missing", status=503)


def print_pdf(document: str, out: Path, *, chromium: str | None = None, timeout: float = PDF_TIMEOUT_S) -> Path:
    """Print the HTML with headless Chromium into ``out`` (atomically: a failed print leaves no file)."""
    binary = find_chromium(chromium)
    with tempfile.TemporaryDirectory(prefix="snapid-pdf-") as tmp:
        page, target = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(document, encoding="utf-8")
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                   "--print-to-pdf-no-header", "--no-first-run", "--disable-extensions",
                   f"--user-data-dir={tmp}/profile", f"--print-to-pdf={target}", page.as_uri()]
        error = _run_bounded(command, timeout)
        data = target.read_bytes() if target.exists() else b""
        if not data.startswith(b"%PDF"):
            raise ReportError(f"chromium did not print {out.name}: {error or 'no PDF was written'}", code="pdf_failed")
        atomic_write_bytes(Path(out), data)
    return Path(out)


def _run_bounded(command: list[str], timeout: float) -> str:
    """Run Chromium in its own process group, killed whole on timeout; returns the end of its stderr."""
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ReportError(f"chromium took longer than {timeout:.0f} s to print the PDF", code="pdf_timeout") from None
    text = err.decode("utf-8", "replace").strip().splitlines()
    return text[-1][:300] if proc.returncode and text else ""
