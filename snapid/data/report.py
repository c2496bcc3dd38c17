"""Render inspect findings as ONE self-contained HTML file (no network: figures are inline PNGs).

Every string that comes from the data (paths, labels, class names, reasons, notes) goes
through ``escape`` (html.escape): a class may well be called ``<script>``.
"""

from __future__ import annotations

import json
from pathlib import Path

from snapid.reporting import CSS, class_label, escape, figure, mpl_text, number, png, section, table, wide_font
from snapid.workspace import atomic_write_text

MAX_CLASSES_CHART = 60
MAX_CLASSES_COLOUR = 24
MAX_ROWS = 50
SPLIT_COLOURS = {"train": "#4c78a8", "val": "#f58518", "test": "#54a24b"}


def render_html(findings: dict) -> str:
    """The whole report as one HTML string."""
    from matplotlib import rc_context

    s = findings["summary"]
    fonts = {"font.family": ["DejaVu Sans", wide_font()]} if wide_font() else {}  # CJK glyphs as fallback
    with rc_context(fonts):  # fonts are fixed when text is created, so the context spans every figure
        parts = [_header(findings), _classes(findings), _images(findings), _rejected(findings["rejected"]),
                 _duplicates(findings), _boxes(findings["boxes"]), _colours(findings["colours"]), _notes(s)]
    title = f"snapid data report: {s['name']} v{s['version']}"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{escape(title)}</h1>{''.join(parts)}</main></body></html>")


def _header(f: dict) -> str:
    s = f["summary"]
    cards = [("images", s["samples"]), ("classes", s["classes"]), *[(k, v) for k, v in s["splits"].items()],
             ("unlabelled", s["unlabelled"]), ("rejected", s["rejected"])]
    card_html = "".join(f'<div class="card"><b>{number(v)}</b><small>{escape(k)}</small></div>' for k, v in cards)
    probs = f.get("problems", [])
    items = "".join(f'<div class="problem {"error" if p["severity"] == "error" else "warning"}">'
                    f'<b>{escape(p["severity"])}</b> · {escape(p["code"])}: {escape(p["message"])}</div>'
                    for p in probs)
    items = items or '<div class="problem ok">No problems found.</div>'
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in [("classes", "Classes"), ("images", "Images"),
                                                         ("rejected", "Rejected"), ("duplicates", "Duplicates"),
                                                         ("boxes", "Boxes"), ("colours", "Colours")])
    meta = (f'<p class="note">format {escape(s["format"])} · root {escape(s.get("root"))} · '
            f'created {escape(s.get("created_at") or "?")}</p>')
    return f"<nav>{nav}</nav>{meta}<section><div class=\"cards\">{card_html}</div><h3>Problems</h3>{items}</section>"


def _classes(f: dict) -> str:
    c = f["classes"]
    rows = sorted((r for r in c["per_class"] if r["total"]), key=lambda r: -r["total"])
    body = [f'<p>{number(c["with_images"])} classes with images · imbalance (largest / smallest) '
            f'<b>{number(c["imbalance"])}</b> ({number(c["largest"])} vs {number(c["smallest"])})</p>']
    if rows:
        body.append(_class_chart(rows[:MAX_CLASSES_CHART], log=(c["imbalance"] or 0) > 20))
    if len(rows) > MAX_CLASSES_CHART:
        body.append(f'<p class="note">showing the {MAX_CLASSES_CHART} largest of {len(rows)} classes</p>')
    small = c["small"]
    body.append(f'<h3>Classes under {small["threshold"]} images: {number(small["count"])} ({small["share"]:.0%})</h3>')
    body.append(table(["id", "name", "images"],
                      [[r["id"], r["name"], r["total"]] for r in small["classes"][:MAX_ROWS]], {2}))
    for key, ids in c["missing"].items():
        if ids:
            have, lack = key.split("_not_in_")
            body.append(f"<h3>In {escape(have)} but not in {escape(lack)}: {len(ids)}</h3>"
                        f"<p>{escape(', '.join(ids[:MAX_ROWS]))}"
                        f"{' …' if len(ids) > MAX_ROWS else ''}</p>")
    if c["empty"]:
        body.append(f'<h3>Listed classes without images: {len(c["empty"])}</h3>'
                    f'<p>{escape(", ".join(c["empty"][:MAX_ROWS]))}</p>')
    return section("classes", "Classes", "".join(body))


def _class_chart(rows: list[dict], log: bool) -> str:
    fig = figure(8, max(2.0, 0.5 + 0.2 * len(rows)))
    ax = fig.add_subplot()
    names = [class_label(r["name"], r["id"]) for r in rows][::-1]
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
            ax.barh(y, vals, left=left, label=mpl_text(split), color=SPLIT_COLOURS.get(split))
            left = [a + b for a, b in zip(left, vals, strict=True)]
        # above the bars: inside the axes it hides the longest bars, and balanced classes are all the longest
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncol=len(rows[0]["counts"]), fontsize=8, frameon=False,
                  borderaxespad=0.2)
        ax.set_xlabel("images")
    ax.set_yticks(list(y), names, fontsize=7)
    ax.margins(y=0.01)
    return png(fig)


def _dist_rows(sz: dict) -> list[list]:
    keys = ("min", "p5", "median", "p95", "max")
    return [[name] + [(sz[k] or {}).get(q) for q in keys] for k, name in
            [("width", "width px"), ("height", "height px"), ("aspect", "aspect w/h"), ("megapixels", "megapixels")]]


def _images(f: dict) -> str:
    sz, modes, tiny = f["sizes"], f["modes"], f["tiny"]
    body = [table(["", "min", "p5", "median", "p95", "max"], _dist_rows(sz), {1, 2, 3, 4, 5})]
    if sz["points"]:
        body.append(_size_figure(sz))
    body.append("<h3>Formats</h3>" + table(["format", "images"], list(map(list, sz["formats"].items())), {1}))
    body.append("<h3>Colour modes</h3>" + table(["mode", "images"], list(map(list, modes["counts"].items())), {1}))
    flag_rows = [[k.replace("_", " "), v["count"], ", ".join(x["path"] for x in v["examples"][:3])]
                 for k, v in modes["flags"].items()]
    body.append(table(["flag", "images", "examples"], flag_rows, {1}, {2}))
    body.append(f'<h3>Tiny images (under {tiny["side"]} px): {number(tiny["count"])}</h3>')
    body.append(table(["path", "label", "split", "width", "height"],
                       [[x["path"], x["label"], x["split"], x["width"], x["height"]] for x in tiny["examples"]],
                       {3, 4}, {0}))
    return section("images", "Images", "".join(body))


def _size_figure(sz: dict) -> str:
    fig = figure(9, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    w, h = zip(*sz["points"], strict=True)
    ax1.scatter(w, h, s=6, alpha=0.4, color="#4c78a8", linewidths=0)
    ax1.set_xlabel("width px")
    ax1.set_ylabel("height px")
    ax1.set_title(f"image sizes ({len(w)} shown)", fontsize=10)
    hist = sz["aspect_hist"]
    ax2.bar(range(len(hist["counts"])), hist["counts"], color="#72b7b2")
    ax2.set_xticks(range(len(hist["labels"])), hist["labels"], rotation=45, fontsize=7)
    ax2.set_title("aspect ratio (width / height)", fontsize=10)
    return png(fig)


def _rejected(r: dict) -> str:
    body = [f'<p>{number(r["count"])} of {number(r["files"])} files rejected '
            f'({r["share"]:.2%}; limit {r["max_share"]:.1%})</p>',
            table(["reason", "files"], list(map(list, r["reasons"].items())), {1}),
            table(["path", "reason", "detail"], [[x["path"], x["reason"], x["detail"]] for x in r["examples"]],
                  paths={0})]
    return section("rejected", "Rejected files", "".join(body))


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
    body = [f'<p>{number(e["groups"])} groups of identical files ({number(e["extra_copies"])} extra copies)</p>',
            f'<h3>Across splits (leakage): {number(e["cross_split"]["groups"])}</h3>',
            table(heads, _group_rows(e["cross_split"]["examples"]), {1}, {2}),
            f'<h3>Same image, different labels: {number(e["conflicting_labels"]["groups"])}</h3>',
            table(heads, _group_rows(e["conflicting_labels"]["examples"]), {1}, {2}),
            f'<h3>Within a split: {number(e["within_split"]["groups"])}</h3>',
            table(heads, _group_rows(e["within_split"]["examples"]), {1}, {2}),
            f'<h3>Near duplicates (perceptual hash within {n["distance"]} bits)</h3>',
            f'<p>{number(n["cross_split_pairs"])} pairs across splits · '
            f'{number(n["within_split_pairs"])} within a split · '
            f'{number(n["comparisons"])} comparisons over {number(n["unique_hashes"])} distinct hashes</p>']
    if n["capped"]:
        body.append(f'<p class="problem warning">search capped: {number(n["capped_buckets"])} crowded buckets, '
                    f'{number(n["skipped_comparisons"])} comparisons skipped; counts are lower bounds</p>')
    body += ["<h3>Near duplicates across splits</h3>", table(pair_heads, _pair_rows(n["cross_examples"]), {0}, {1, 3}),
             "<h3>Near duplicates within a split</h3>",
             table(pair_heads, _pair_rows(n["within_examples"]), {0}, {1, 3})]
    return section("duplicates", "Duplicates and leakage", "".join(body).replace("\n", "<br>"))


def _boxes(b: dict) -> str:
    if not b["count"] and not any(b[k]["count"] for k in ("clipped", "normalised_outside")):
        return section("boxes", "Boxes", '<p class="note">no boxes in this dataset</p>')
    pi = b["per_image"] or {}
    body = [f'<p>{number(b["count"])} boxes on {number(b["images_with_boxes"])} images · '
            f'per image: median {number(pi.get("median"))}, '
            f'p95 {number(pi.get("p95"))}, max {number(pi.get("max"))}</p>',
            table(["boxes per image", "images"], list(map(list, b["per_image_hist"].items())), {1})]
    labels = {"out_of_bounds": "outside the image by > 1 px", "clipped": "clipped at import",
              "degenerate": "zero or negative area", "tiny": f"smaller than {b['tiny_side']} px",
              "looks_normalised": "coordinates look normalised (all ≤ 1.5)",
              "normalised_outside": "normalised coordinates outside [0, 1]"}
    body.append(table(["finding", "boxes"], [[text, b[k]["count"]] for k, text in labels.items()], {1}))
    for k, text in labels.items():
        if b[k]["examples"]:
            rows = [[x["path"], x.get("label"), x.get("box") or x.get("note"),
                     f'{x.get("width", "")}x{x.get("height", "")}' if "width" in x else ""]
                    for x in b[k]["examples"][:20]]
            body.append(f"<h3>{escape(text)}</h3>" + table(["path", "label", "box / note", "image"], rows, paths={0}))
    body.append("<h3>Boxes per class</h3>"
                + table(["label", "boxes"], [[x["label"], x["count"]] for x in b["per_class"][:MAX_ROWS]], {1}))
    return section("boxes", "Boxes", "".join(body))


def _colours(c: dict) -> str:
    rows = c["per_class"]
    if not rows:
        return section("colours", "Colours", '<p class="note">no colour statistics</p>')
    shown = sorted(rows, key=lambda r: -r["images"])[:MAX_CLASSES_COLOUR]
    swatches = "".join(
        f'<div class="swatch"><i style="background:rgb('
        f'{",".join(str(max(0, min(255, round(v)))) for v in r["mean_rgb"])})">'
        f'</i><span>{escape(r["name"])}<br>'
        f'<small>{escape(", ".join(f"{v:.0f}" for v in r["mean_rgb"]))}</small></span></div>'
        for r in shown)
    note = (f'<p class="note">showing the {MAX_CLASSES_COLOUR} largest of {len(rows)} classes</p>'
            if len(rows) > len(shown) else "")
    return section("colours", "Colours", f'<h3>Mean colour per class</h3><div class="swatches">{swatches}</div>{note}'
                    f'<h3>RGB histograms (16 bins per channel)</h3>{_hist_grid(shown)}')


def _hist_grid(rows: list[dict]) -> str:
    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    fig = figure(2.3 * cols, 1.6 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax in axes.flat[len(rows):]:
        ax.set_axis_off()
    for ax, r in zip(axes.flat, rows, strict=False):  # the spare axes, switched off above, get no row
        for ch, colour in (("r", "#d62728"), ("g", "#2ca02c"), ("b", "#1f77b4")):
            ax.plot(range(16), r["hist"][ch], color=colour, linewidth=1.2)
        ax.set_title(class_label(r["name"], r["id"], 24), fontsize=8)
        ax.set_xticks([])
        ax.tick_params(labelsize=6)
    return png(fig)


def _notes(s: dict) -> str:
    notes = s.get("notes") or []
    return (section("notes", "Import notes", "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
            if notes else "")


def write_report(findings: dict, html_path: Path | str | None = None,
                 json_path: Path | str | None = None) -> list[Path]:
    """Write the HTML and/or JSON report atomically; returns the paths written."""
    written = []
    if json_path is not None:
        atomic_write_text(Path(json_path), json.dumps(findings, ensure_ascii=False, indent=1))
        written.append(Path(json_path))
    if html_path is not None:
        atomic_write_text(Path(html_path), render_html(findings))
        written.append(Path(html_path))
    return written
