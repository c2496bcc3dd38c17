"""The `snapid data issues` gallery: one self-contained HTML page of suspected label errors, outliers and
near-duplicates with different labels, each with its thumbnail and one-click decisions.

A click on "relabel", "drop" or "keep" copies that decision's CSV row to the clipboard and adds it to the
decisions box at the top, whose rows (with the header) `snapid data relabel DATASET decisions.csv` reads.
Every string from the data goes through ``escape`` (a class may be called ``<script>``); the rows travel in
escaped data- attributes, never inside the script; thumbnails are only our own data: URIs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from snapid.data.decisions import COLUMNS, decision_row
from snapid.reporting import CSS, escape, number, own_thumbnail, section
from snapid.workspace import atomic_write_text

VERDICT = {True: "flagged by confident learning", False: "predicted as another class"}
MAX_SHOWN = 300  # cards per section; the JSON output lists every finding

GALLERY_CSS = """
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.tile{background:#f8f9fb;border-radius:6px;padding:8px;font-size:13px;overflow-wrap:anywhere}
.tile img{width:100%;max-width:180px;margin:0 auto 6px;border-radius:4px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:6px}
.arrow{font-weight:600}.score{color:#5b6470}
.tile button{font:inherit;font-size:12px;margin:4px 4px 0 0;padding:3px 8px;border-radius:4px;border:1px solid #b8c0cc;
 background:#fff;cursor:pointer}
.tile button.chosen{background:#3558a5;color:#fff;border-color:#3558a5}
textarea{width:100%;min-height:7em;font:12px ui-monospace,monospace}
"""

SCRIPT = """
(function(){
  var header = document.getElementById('decision-rows').dataset.header, chosen = new Map();
  var box = document.getElementById('decision-rows');
  function refresh(){ box.value = [header].concat(Array.from(chosen.values())).join('\\n') + '\\n'; }
  function copy(text){
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).catch(function(){}); return;
    }
    var t = document.createElement('textarea'); t.value = text; document.body.appendChild(t); t.select();
    try { document.execCommand('copy'); } catch (e) {} document.body.removeChild(t);
  }
  document.addEventListener('click', function(ev){
    var b = ev.target.closest('button[data-row]');
    if (!b) return;
    chosen.set(b.dataset.key, b.dataset.row);
    document.querySelectorAll('button[data-key]').forEach(function(o){
      if (o.dataset.key === b.dataset.key) o.classList.toggle('chosen', o === b); });
    copy(b.dataset.row); refresh();
  });
  document.getElementById('copy-all').addEventListener('click', function(){ copy(box.value); });
  document.getElementById('download').addEventListener('click', function(){
    var a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([box.value], {type: 'text/csv'}));
    a.download = 'decisions.csv'; a.click();
  });
  refresh();
})();
"""


def _csv(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()


def _button(text: str, item: dict, action: str, *, label: str | None = None, given: str | None = None,
            reason: str) -> str:
    row = _csv(decision_row(item["path"], action, label=label, given=given, box=item.get("box"), reason=reason))
    key = f"{item['path']}#{item.get('box')}"
    return (f'<button type="button" data-key="{escape(key)}" data-row="{escape(row)}" title="{escape(row)}">'
            f"{escape(text)}</button>")


def _thumb(thumbnails: dict[int, str], item: dict) -> str:
    uri = thumbnails.get(item.get("item"), "")
    return f'<img alt="" src="{uri}">' if uri and own_thumbnail(uri) else ""


def _name(class_id: str, name: str | None) -> str:
    return escape(class_id) if not name or name == class_id else f"{escape(name)} <small>({escape(class_id)})</small>"


def _where(item: dict) -> str:
    box = f" · box {item['box']}" if item.get("box") is not None else ""
    return f'<div class="score">{escape(item["path"])}{escape(box)} · {escape(item["split"])}</div>'


def _suspect(row: dict, thumbnails: dict[int, str]) -> str:
    item = {"path": row["path"], "box": row["box"], "item": row["item"]}
    reason = f"suspected label error (rank {row['rank']})"
    buttons = (_button(f"relabel → {row['suggested_name']}", item, "relabel", label=row["suggested"],
                       given=row["given"], reason=reason)
               + _button("drop", item, "drop", given=row["given"], reason=reason)
               + _button("keep", item, "keep", given=row["given"], reason="label checked"))
    return (f'<div class="tile">{_thumb(thumbnails, row)}<b>#{row["rank"]}</b> '
            f'{_name(row["given"], row["given_name"])} <span class="arrow">→</span> '
            f'{_name(row["suggested"], row["suggested_name"])}'
            f'<div class="score">{VERDICT[bool(row.get("confident"))]}</div>'
            f'<div class="score">probability: given {row["given_probability"]:.3f}, '
            f'suggested {row["suggested_probability"]:.3f}; score {row["score"]:.3f}</div>'
            f'{_where(row)}{buttons}</div>')


def _outlier(row: dict, thumbnails: dict[int, str]) -> str:
    reason = f"outlier (rank {row['rank']})"
    buttons = (_button("drop", row, "drop", given=row["label"], reason=reason)
               + _button("keep", row, "keep", given=row["label"], reason="outlier checked"))
    return (f'<div class="tile">{_thumb(thumbnails, row)}<b>#{row["rank"]}</b> {_name(row["label"], row["label_name"])}'
            f'<div class="score">score {row["score"]:.3f}, distance {row["distance"]:.3f}</div>'
            f'{_where(row)}{buttons}</div>')


def _conflict(pair: dict, thumbnails: dict[int, str]) -> str:
    a, b = pair["a"], pair["b"]
    reason = f"near-duplicate of a photo labelled differently (similarity {pair['similarity']:.3f})"
    sides = []
    for mine, other in ((a, b), (b, a)):
        buttons = (_button(f"relabel → {other['label_name']}", mine, "relabel", label=other["label"],
                           given=mine["label"], reason=reason)
                   + _button("drop", mine, "drop", given=mine["label"], reason=reason)
                   + _button("keep", mine, "keep", given=mine["label"], reason="near-duplicate checked"))
        sides.append(f'<div>{_thumb(thumbnails, mine)}{_name(mine["label"], mine["label_name"])}'
                     f'{_where(mine)}{buttons}</div>')
    return (f'<div class="tile"><div class="score">similarity {pair["similarity"]:.4f}</div>'
            f'<div class="pair">{"".join(sides)}</div></div>')


def _gallery(rows: list, render, thumbnails: dict[int, str], empty: str) -> str:
    if not rows:
        return f'<p class="note">{escape(empty)}</p>'
    more = (f'<p class="note">the first {MAX_SHOWN} of {len(rows)} are shown; `--json` lists them all</p>'
            if len(rows) > MAX_SHOWN else "")
    return more + '<div class="grid">' + "".join(render(r, thumbnails) for r in rows[:MAX_SHOWN]) + "</div>"


def render_issues_html(result: dict, thumbnails: dict[int, str]) -> str:
    title = f"Label issues: {result['dataset']} v{result['version']}"
    backbone = f"run {result['run']}" if result.get("run") else f"pretrained {result['model']}"
    summary = ('<div class="cards">'
               + "".join(f'<div class="card"><b>{number(v)}</b><small>{escape(k)}</small></div>' for k, v in (
                   ("images (train + val)", result["images"]), ("classes", result["classes"]),
                   ("suspected label errors", len(result["label_issues"])),
                   (f"of them {VERDICT[True]}", sum(bool(r.get("confident")) for r in result["label_issues"])),
                   ("outliers", len(result["outliers"])),
                   ("near-duplicates, different labels", len(result["conflicts"])),
                   ("out-of-fold top-1", round(result["out_of_fold_top1"], 3))))
               + "</div>"
               f'<p class="note">Features of {escape(backbone)} at {escape(result["size"])} px; '
               f'out-of-fold probabilities '
               f'from {escape(result["folds"])} linear heads; suspects by confident learning (cleanlab).</p>')
    header = _csv(list(COLUMNS))
    decisions = ('<p>Each click copies one decision and adds it here. Save these rows as <code>decisions.csv</code>, '
                 f'then <code>snapid data relabel {escape(result["dataset"])} decisions.csv</code> makes a new version '
                 '(the old one stays).</p>'
                 f'<textarea id="decision-rows" readonly data-header="{escape(header)}"></textarea>'
                 '<p><button type="button" id="copy-all">copy all</button> '
                 '<button type="button" id="download">download decisions.csv</button></p>')
    body = "".join([
        section("summary", title, summary),
        section("decisions", "Decisions", decisions),
        section("label-issues", "Suspected label errors", _gallery(result["label_issues"], _suspect, thumbnails,
                                                                    "no suspected label errors")),
        section("outliers", "Outliers", _gallery(result["outliers"], _outlier, thumbnails, "no outliers")),
        section("conflicts", "Near-duplicates with different labels",
                _gallery(result["conflicts"], _conflict, thumbnails, "no near-duplicates with different labels")),
    ])
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<style>{CSS}{GALLERY_CSS}</style></head>'
            f"<body><main>{body}</main><script>{SCRIPT}</script></body></html>")


def write_issues_html(result: dict, path: Path, *, thumbnails: dict[int, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_issues_html(result, thumbnails))
    return path
