"""Render inspect findings as ONE self-contained HTML file (no network: figures are inline PNGs).

Every string that comes from the data (paths, labels, class names, reasons, notes) goes
through ``_e`` (html.escape): a class may well be called ``<script>``.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import warnings
from pathlib import Path

from snapid.workspace import atomic_write_text

MAX_CLASSES_CHART = 60
MAX_CLASSES_COLOUR = 24
MAX_ROWS = 50
SPLIT_COLOURS = {"train": "#4c78a8", "val": "#f58518", "test": "#54a24b"}

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d232b}
main{max-width:1100px;margin:0 auto;padding:12px}
h1{font-size:1.45em;margin:.4em 0}h2{font-size:1.2em;margin:.2em 0 .5em}h3{font-size:1em;margin:1em 0 .4em}
section{background:#fff;border-radius:8px;padding:12px 16px;margin:12px 0;box-shadow:0 1px 2px #0001}
nav a{margin-right:10px;color:#3558a5;text-decoration:none;white-space:nowrap}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:8px}
.card{background:#f4f6fb;border-radius:6px;padding:6px 10px}.card b{display:block;font-size:1.25em}
.card small{color:#5b6470}
.problem{border-left:4px solid;border-radius:4px;padding:6px 10px;margin:6px 0}
.error{border-color:#c62828;background:#fdecea;color:#8e1b1b}
.warning{border-color:#d49100;background:#fff5dc;color:#6b4a00}
.ok{border-color:#2e7d32;background:#e8f5e9;color:#1b5e20}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px;margin:4px 0 10px}
th,td{padding:4px 8px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
th{background:#f8f9fb;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.p{word-break:break-all;min-width:12em}
img{max-width:100%;height:auto;display:block;margin:6px 0}
.note{color:#5b6470;font-size:.9em}
.swatches{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:6px}
.swatch{display:flex;align-items:center;gap:8px;font-size:13px;overflow:hidden}
.swatch i{flex:none;width:30px;height:30px;border-radius:5px;border:1px solid #0003}
"""


def _e(value) -> str:
    """Escaped text of any value; None shows as a dash."""
    return "—" if value is None else html.escape(str(value), quote=True)


def _n(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _table(headers: list[str], rows: list[list], numeric: frozenset[int] | set[int] = frozenset(),
           paths: frozenset[int] | set[int] = frozenset()) -> str:
    if not rows:
        return '<p class="note">none</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="n">{_n(v)}</td>' if i in numeric else f'<td class="p">{_e(v)}</td>' if i in paths else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)) + "</tr>"
        for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _mpl_text(text, limit: int = 28) -> str:
    """A label safe for matplotlib: short, and '$' escaped so it is not read as mathtext."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


_CJK_FONT_HINTS = ("CJK", "Nanum", "Noto Sans KR", "Malgun", "AppleGothic", "Gothic", "UnDotum", "Baekmuk")


@functools.lru_cache(maxsize=1)
def _wide_font() -> str | None:
    """An installed font with Hangul/CJK glyphs, if any (class names are often Korean)."""
    from matplotlib import font_manager

    for entry in font_manager.fontManager.ttflist:
        if any(hint.lower() in entry.name.lower() for hint in _CJK_FONT_HINTS):
            return entry.name
    return None


def _class_label(name: str, class_id: str, limit: int = 28) -> str:
    """'name (id)' for a plot; the id alone when no installed font can draw the name."""
    drawable = _wide_font() is not None or all(ord(ch) < 0x2E80 for ch in name)
    if not drawable:
        return _mpl_text(class_id, limit)
    return _mpl_text(name if name == class_id else f"{name} ({class_id})", limit)


def _png(fig) -> str:
    """The figure as an <img> with a base64 data URI (Agg canvas, no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # missing glyphs for non-Latin names are not errors
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def render_html(findings: dict) -> str:
    """The whole report as one HTML string."""
    from matplotlib import rc_context

    s = findings["summary"]
    fonts = {"font.family": ["DejaVu Sans", _wide_font()]} if _wide_font() else {}  # CJK glyphs as fallback
    with rc_context(fonts):  # fonts are fixed when text is created, so the context spans every figure
        parts = [_header(findings), _classes(findings), _images(findings), _rejected(findings["rejected"]),
                 _duplicates(findings), _boxes(findings["boxes"]), _colours(findings["colours"]), _notes(s)]
    title = f"snapid data report: {s['name']} v{s['version']}"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{_e(title)}</h1>{''.join(parts)}</main></body></html>")


def _header(f: dict) -> str:
    s = f["summary"]
    cards = [("images", s["samples"]), ("classes", s["classes"]), *[(k, v) for k, v in s["splits"].items()],
             ("unlabelled", s["unlabelled"]), ("rejected", s["rejected"])]
    card_html = "".join(f'<div class="card"><b>{_n(v)}</b><small>{_e(k)}</small></div>' for k, v in cards)
    probs = f.get("problems", [])
    items = "".join(f'<div class="problem {"error" if p["severity"] == "error" else "warning"}">'
                    f'<b>{_e(p["severity"])}</b> · {_e(p["code"])}: {_e(p["message"])}</div>' for p in probs)
    items = items or '<div class="problem ok">No problems found.</div>'
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in [("classes", "Classes"), ("images", "Images"), ("rejected", "Rejected"),
                                                         ("duplicates", "Duplicates"), ("boxes", "Boxes"), ("colours", "Colours")])
    meta = f'<p class="note">format {_e(s["format"])} · root {_e(s.get("root"))} · created {_e(s.get("created_at") or "?")}</p>'
    return f"<nav>{nav}</nav>{meta}<section><div class=\"cards\">{card_html}</div><h3>Problems</h3>{items}</section>"


def _classes(f: dict) -> str:
    c = f["classes"]
    rows = sorted((r for r in c["per_class"] if r["total"]), key=lambda r: -r["total"])
    body = [f'<p>{_n(c["with_images"])} classes with images · imbalance (largest / smallest) '
            f'<b>{_n(c["imbalance"])}</b> ({_n(c["largest"])} vs {_n(c["smallest"])})</p>']
    if rows:
        body.append(_class_chart(rows[:MAX_CLASSES_CHART], log=(c["imbalance"] or 0) > 20))
    if len(rows) > MAX_CLASSES_CHART:
        body.append(f'<p class="note">showing the {MAX_CLASSES_CHART} largest of {len(rows)} classes</p>')
    small = c["small"]
    body.append(f'<h3>Classes under {small["threshold"]} images: {_n(small["count"])} ({small["share"]:.0%})</h3>')
    body.append(_table(["id", "name", "images"], [[r["id"], r["name"], r["total"]] for r in small["classes"][:MAX_ROWS]], {2}))
    for key, ids in c["missing"].items():
        if ids:
            have, lack = key.split("_not_in_")
            body.append(f"<h3>In {_e(have)} but not in {_e(lack)}: {len(ids)}</h3><p>{_e(', '.join(ids[:MAX_ROWS]))}"
                        f"{' …' if len(ids) > MAX_ROWS else ''}</p>")
    if c["empty"]:
        body.append(f'<h3>Listed classes without images: {len(c["empty"])}</h3><p>{_e(", ".join(c["empty"][:MAX_ROWS]))}</p>')
    return _section("classes", "Classes", "".join(body))


def _class_chart(rows: list[dict], log: bool) -> str:
    fig = _figure(8, max(2.0, 0.5 + 0.2 * len(rows)))
    ax = fig.add_subplot()
    names = [_class_label(r["name"], r["id"]) for r in rows][::-1]
    y = range(len(rows))
    if log:   # stacked bars mislead on a log axis: show totals only
        from matplotlib.ticker import NullFormatter, StrMethodFormatter

        bars = ax.barh(y, [r["total"] for r in rows][::-1], color="#4c78a8")
        ax.bar_label(bars, fontsize=6, padding=2)
        ax.set_xscale("log")
        ax.set_xlim(left=0.8)
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))   # 1, 10, 100 rather than 10^k
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("images (log scale)")
    else:
        left = [0] * len(rows)
        for split in rows[0]["counts"]:
            vals = [r["counts"][split] for r in rows][::-1]
            ax.barh(y, vals, left=left, label=_mpl_text(split), color=SPLIT_COLOURS.get(split))
            left = [a + b for a, b in zip(left, vals)]
        # above the bars: inside the axes it hides the longest bars, and balanced classes are all the longest
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=len(rows[0]["counts"]), fontsize=8, frameon=False,
                  borderaxespad=0.2)
        ax.set_xlabel("images")
    ax.set_yticks(list(y), names, fontsize=7)
    ax.margins(y=0.01)
    return _png(fig)


def _dist_rows(sz: dict) -> list[list]:
    keys = ("min", "p5", "median", "p95", "max")
    return [[name] + [(sz[k] or {}).get(q) for q in keys] for k, name in
            [("width", "width px"), ("height", "height px"), ("aspect", "aspect w/h"), ("megapixels", "megapixels")]]


def _images(f: dict) -> str:
    sz, modes, tiny = f["sizes"], f["modes"], f["tiny"]
    body = [_table(["", "min", "p5", "median", "p95", "max"], _dist_rows(sz), {1, 2, 3, 4, 5})]
    if sz["points"]:
        body.append(_size_figure(sz))
    body.append("<h3>Formats</h3>" + _table(["format", "images"], list(map(list, sz["formats"].items())), {1}))
    body.append("<h3>Colour modes</h3>" + _table(["mode", "images"], list(map(list, modes["counts"].items())), {1}))
    flag_rows = [[k.replace("_", " "), v["count"], ", ".join(x["path"] for x in v["examples"][:3])]
                 for k, v in modes["flags"].items()]
    body.append(_table(["flag", "images", "examples"], flag_rows, {1}, {2}))
    body.append(f'<h3>Tiny images (under {tiny["side"]} px): {_n(tiny["count"])}</h3>')
    body.append(_table(["path", "label", "split", "width", "height"],
                       [[x["path"], x["label"], x["split"], x["width"], x["height"]] for x in tiny["examples"]], {3, 4}, {0}))
    return _section("images", "Images", "".join(body))


def _size_figure(sz: dict) -> str:
    fig = _figure(9, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    w, h = zip(*sz["points"])
    ax1.scatter(w, h, s=6, alpha=0.4, color="#4c78a8", linewidths=0)
    ax1.set_xlabel("width px")
    ax1.set_ylabel("height px")
    ax1.set_title(f"image sizes ({len(w)} shown)", fontsize=10)
    hist = sz["aspect_hist"]
    ax2.bar(range(len(hist["counts"])), hist["counts"], color="#72b7b2")
    ax2.set_xticks(range(len(hist["labels"])), hist["labels"], rotation=45, fontsize=7)
    ax2.set_title("aspect ratio (width / height)", fontsize=10)
    return _png(fig)


def _rejected(r: dict) -> str:
    body = [f'<p>{_n(r["count"])} of {_n(r["files"])} files rejected ({r["share"]:.2%}; limit {r["max_share"]:.1%})</p>',
            _table(["reason", "files"], list(map(list, r["reasons"].items())), {1}),
            _table(["path", "reason", "detail"], [[x["path"], x["reason"], x["detail"]] for x in r["examples"]], paths={0})]
    return _section("rejected", "Rejected files", "".join(body))


def _group_rows(groups: list[dict]) -> list[list]:
    return [[g["sha256"][:12], g["count"], "\n".join(x["path"] for x in g["samples"]),
             ", ".join(sorted({str(x["split"]) for x in g["samples"]})),
             ", ".join(sorted({str(x["label"]) for x in g["samples"]}))] for g in groups]


def _pair_rows(pairs: list[dict]) -> list[list]:
    return [[p["distance"], p["a"]["path"], f'{p["a"]["split"]} / {p["a"]["label"]}',
             p["b"]["path"], f'{p["b"]["split"]} / {p["b"]["label"]}'] for p in pairs]


def _duplicates(f: dict) -> str:
    e, n = f["exact_duplicates"], f["near_duplicates"]
    heads = ["sha256", "copies", "paths", "splits", "labels"]
    pair_heads = ["bits", "image A", "split / label", "image B", "split / label"]
    body = [f'<p>{_n(e["groups"])} groups of identical files ({_n(e["extra_copies"])} extra copies)</p>',
            f'<h3>Across splits (leakage): {_n(e["cross_split"]["groups"])}</h3>',
            _table(heads, _group_rows(e["cross_split"]["examples"]), {1}, {2}),
            f'<h3>Same image, different labels: {_n(e["conflicting_labels"]["groups"])}</h3>',
            _table(heads, _group_rows(e["conflicting_labels"]["examples"]), {1}, {2}),
            f'<h3>Within a split: {_n(e["within_split"]["groups"])}</h3>',
            _table(heads, _group_rows(e["within_split"]["examples"]), {1}, {2}),
            f'<h3>Near duplicates (perceptual hash within {n["distance"]} bits)</h3>',
            f'<p>{_n(n["cross_split_pairs"])} pairs across splits · {_n(n["within_split_pairs"])} within a split · '
            f'{_n(n["comparisons"])} comparisons over {_n(n["unique_hashes"])} distinct hashes</p>']
    if n["capped"]:
        body.append(f'<p class="problem warning">search capped: {_n(n["capped_buckets"])} crowded buckets, '
                    f'{_n(n["skipped_comparisons"])} comparisons skipped; counts are lower bounds</p>')
    body += ["<h3>Near duplicates across splits</h3>", _table(pair_heads, _pair_rows(n["cross_examples"]), {0}, {1, 3}),
             "<h3>Near duplicates within a split</h3>", _table(pair_heads, _pair_rows(n["within_examples"]), {0}, {1, 3})]
    return _section("duplicates", "Duplicates and leakage", "".join(body).replace("\n", "<br>"))


def _boxes(b: dict) -> str:
    if not b["count"] and not any(b[k]["count"] for k in ("clipped", "normalised_outside")):
        return _section("boxes", "Boxes", '<p class="note">no boxes in this dataset</p>')
    pi = b["per_image"] or {}
    body = [f'<p>{_n(b["count"])} boxes on {_n(b["images_with_boxes"])} images · per image: median {_n(pi.get("median"))}, '
            f'p95 {_n(pi.get("p95"))}, max {_n(pi.get("max"))}</p>',
            _table(["boxes per image", "images"], list(map(list, b["per_image_hist"].items())), {1})]
    labels = {"out_of_bounds": "outside the image by > 1 px", "clipped": "clipped at import", "degenerate": "zero or negative area",
              "tiny": f"smaller than {b['tiny_side']} px", "looks_normalised": "coordinates look normalised (all ≤ 1.5)",
              "normalised_outside": "normalised coordinates outside [0, 1]"}
    body.append(_table(["finding", "boxes"], [[text, b[k]["count"]] for k, text in labels.items()], {1}))
    for k, text in labels.items():
        if b[k]["examples"]:
            rows = [[x["path"], x.get("label"), x.get("box") or x.get("note"), f'{x.get("width", "")}x{x.get("height", "")}'
                     if "width" in x else ""] for x in b[k]["examples"][:20]]
            body.append(f"<h3>{_e(text)}</h3>" + _table(["path", "label", "box / note", "image"], rows, paths={0}))
    body.append("<h3>Boxes per class</h3>" + _table(["label", "boxes"], [[x["label"], x["count"]] for x in b["per_class"][:MAX_ROWS]], {1}))
    return _section("boxes", "Boxes", "".join(body))


def _colours(c: dict) -> str:
    rows = c["per_class"]
    if not rows:
        return _section("colours", "Colours", '<p class="note">no colour statistics</p>')
    shown = sorted(rows, key=lambda r: -r["images"])[:MAX_CLASSES_COLOUR]
    swatches = "".join(
        f'<div class="swatch"><i style="background:rgb({",".join(str(max(0, min(255, round(v)))) for v in r["mean_rgb"])})">'
        f'</i><span>{_e(r["name"])}<br><small>{_e(", ".join(f"{v:.0f}" for v in r["mean_rgb"]))}</small></span></div>'
        for r in shown)
    note = f'<p class="note">showing the {MAX_CLASSES_COLOUR} largest of {len(rows)} classes</p>' if len(rows) > len(shown) else ""
    return _section("colours", "Colours", f'<h3>Mean colour per class</h3><div class="swatches">{swatches}</div>{note}'
                    f'<h3>RGB histograms (16 bins per channel)</h3>{_hist_grid(shown)}')


def _hist_grid(rows: list[dict]) -> str:
    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    fig = _figure(2.3 * cols, 1.6 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.set_axis_off()
    for ax, r in zip(axes.flat, rows):
        for ch, colour in (("r", "#d62728"), ("g", "#2ca02c"), ("b", "#1f77b4")):
            ax.plot(range(16), r["hist"][ch], color=colour, linewidth=1.2)
        ax.set_title(_class_label(r["name"], r["id"], 24), fontsize=8)
        ax.set_xticks([])
        ax.tick_params(labelsize=6)
    return _png(fig)


def _notes(s: dict) -> str:
    notes = s.get("notes") or []
    return _section("notes", "Import notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>") if notes else ""


def write_report(findings: dict, html_path: Path | str | None = None, json_path: Path | str | None = None) -> list[Path]:
    """Write the HTML and/or JSON report atomically; returns the paths written."""
    written = []
    if json_path is not None:
        atomic_write_text(Path(json_path), json.dumps(findings, ensure_ascii=False, indent=1))
        written.append(Path(json_path))
    if html_path is not None:
        atomic_write_text(Path(html_path), render_html(findings))
        written.append(Path(html_path))
    return written
