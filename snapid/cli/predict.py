"""`snapid predict BUNDLE|RUN PATH...`: identify photos offline, exactly as the server would, into a
table, a CSV file or one JSON document."""

from __future__ import annotations

import csv
import io
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from snapid.cli.common import console, emit_json
from snapid.errors import SnapidError, UsageError

TABLE_ROWS = 50


class Mode(str, Enum):
    each = "each"
    one = "one"
    detect = "detect"


def predict(
    target: str = typer.Argument(..., help="Bundle folder, .snapid file or run name (its newest exported bundle)."),
    paths: list[str] = typer.Argument(..., help="Photos, folders (searched recursively for image files) or globs."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Write every row to this CSV file (atomically)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout: bundle, photos, failed, "
                                 "images_per_s and the rows."),
    top_k: int = typer.Option(5, "--top-k", min=1, max=50, help="Classes listed per answer."),
    mode: Mode = typer.Option(Mode.each, "--mode", help="each: one answer per photo; one: the photos all show one "
                              "object (one combined answer); "
                              "detect: one answer per object the bundle's detector finds."),
    lang: str | None = typer.Option(None, "--lang", help="Language of the display names, e.g. en, ko."),
) -> None:
    """Identify photos with a bundle, offline: the server's own decoding, model and answers, in batches.
    Unreadable files get their reason in their row and are counted; the command fails only when no photo
    at all could be read, or the bundle is refused."""
    from snapid.inference import expand_paths, load

    model = load(target)
    photos = expand_paths(paths)
    if not photos:
        raise UsageError(f"no photos found in {', '.join(paths)} (folders are searched for .jpg, .png, .webp, .gif, "
                         ".bmp … files)")
    if model.has_detector and mode != Mode.detect and not as_json:
        console.print("note: this bundle has a detector; --mode detect finds and names every object in a photo",
                      markup=False, highlight=False)
    with _rate_bar(quiet=as_json) as update:
        started = time.perf_counter()
        answers = model.predict(photos, top_k=top_k, lang=lang, mode=mode.value, progress=update)
        seconds = time.perf_counter() - started
    detect = mode == Mode.detect
    rows = [_row(a, detect) for a in answers]
    failed = [a for a in answers if a.error]
    rate = round(len(photos) / seconds, 2) if seconds > 0 else None
    if csv_out is not None:
        from snapid.workspace import atomic_write_text

        atomic_write_text(csv_out, _csv(rows, detect))
    if as_json:
        emit_json({"bundle": str(model.path), "photos": len(photos), "failed": len(failed), "images_per_s": rate,
                   "rows": rows})
    else:
        if csv_out is None:
            _print_table(rows)
        else:
            console.print(f"{len(rows)} rows written to {csv_out}", markup=False, highlight=False)
        reasons = Counter(a.error.split(":", 1)[0] for a in failed)
        counted = f" ({', '.join(f'{n} {code}' for code, n in reasons.most_common())})" if reasons else ""
        console.print(f"{len(photos)} photos, {len(failed)} could not be read{counted}; {rate} images/s",
                      markup=False, highlight=False)
    if len(failed) == len(photos):
        first = failed[0]
        raise SnapidError(f"none of the {len(photos)} photos could be read (first: {first.source}: {first.error})",
                          code="no_photo_read", status=422)


def _row(answer, detect: bool) -> dict:
    row = {"path": answer.source, "photo": answer.photo, "label": answer.label, "name": answer.name,
           "score": answer.score, "unknown": answer.unknown if answer.ok else None,
           "top": [{"label": label, "name": name, "score": score} for label, name, score in answer.top],
           "error": answer.error}
    if detect:
        row.update(box=list(answer.box) if answer.box else None, detector_score=answer.detector_score)
    return row


def _csv(rows: list[dict], detect: bool) -> str:
    columns = ["path", "label", "name", "score", "unknown", "top",
               "error"] + (["photo", "box", "detector_score"] if detect else [])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        cells = {**row, "score": _score(row["score"]),
                 "unknown": "" if row["unknown"] is None else str(row["unknown"]).lower(),
                 "top": ";".join(f"{t['label']}:{_score(t['score'])}" for t in row["top"]), "error": row["error"] or "",
                 "box": " ".join(f"{v:g}" for v in row.get("box") or ()),
                 "detector_score": _score(row.get("detector_score"))}
        writer.writerow(["" if cells[c] is None else cells[c] for c in columns])
    return out.getvalue()


def _score(value) -> str:
    return "" if value is None else f"{value:.6f}"


def _print_table(rows: list[dict]) -> None:
    shown = rows[:TABLE_ROWS]
    under = _common_folder([row["path"] for row in shown])
    table = Table(title=f"in {under}" if under else None)
    for column in ("path", "answer", "score", "runners-up", "note"):
        table.add_column(column, no_wrap=column in ("score", "runners-up"),
                         justify="right" if column == "score" else "left")
    for row in shown:
        path = Text(os.path.relpath(row["path"], under) if under else row["path"], overflow="fold")
        if row["error"]:
            table.add_row(path, Text(row["error"], style="red", overflow="fold"), "", "", "")
            continue
        answer = row["name"] if row["name"] == row["label"] else f"{row['name']} ({row['label']})"
        top = ", ".join(f"{t['label']} {t['score']:.3f}" for t in row["top"][1:3])
        box = "box " + " ".join(f"{v:g}" for v in row["box"]) if row.get("box") else ""
        note = "; ".join(part for part in ("not sure" if row["unknown"] else "", box) if part)
        table.add_row(path, Text(answer), f"{row['score']:.3f}", Text(top), Text(note))
    Console().print(table)
    if len(rows) > TABLE_ROWS:
        Console().print(f"… {len(rows) - TABLE_ROWS} more; use --csv FILE or --json for every row", markup=False,
                        highlight=False)


def _common_folder(paths: list[str]) -> str:
    """The folder every shown path is under (the table shows paths relative to it), or "" if none."""
    if len(paths) < 2 or any(";" in p or p.startswith("<") for p in paths):
        return ""
    try:
        common = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    except ValueError:
        return ""
    return common if common != os.path.sep else ""


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} images/s" if task.speed else "– images/s")


@contextmanager
def _rate_bar(quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar with images/s on stderr (nothing when quiet or not on a terminal)."""
    if quiet or not console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(TextColumn("identifying"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("identifying", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
