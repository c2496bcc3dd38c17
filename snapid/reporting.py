"""The pieces every self-contained HTML report is made of: the base CSS, escaping, numbers, tables,
sections and matplotlib figures as inline PNGs. Shared by the data, evaluation and detection reports
(issue 18: one module below all three, so no report imports another's private helpers).

Every string that comes from the data (paths, labels, class names, reasons, notes) goes through
``escape`` (html.escape): a class may well be called ``<script>``.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import re
import warnings

MAX_THUMBNAIL_CHARS = 256 << 10
THUMBNAIL = re.compile(r"data:image/(?:jpeg|png);base64,[A-Za-z0-9+/]+={0,2}")

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


def escape(value) -> str:
    """Escaped text of any value; None shows as a dash."""
    return "—" if value is None else html.escape(str(value), quote=True)


def number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else escape(value)


def table(headers: list[str], rows: list[list], numeric: frozenset[int] | set[int] = frozenset(),
          paths: frozenset[int] | set[int] = frozenset()) -> str:
    if not rows:
        return '<p class="note">none</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)

    def cell(i: int, v) -> str:
        if i in numeric:
            return f'<td class="n">{number(v)}</td>'
        return f'<td class="p">{escape(v)}</td>' if i in paths else f"<td>{escape(v)}</td>"

    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>'


def mpl_text(text, limit: int = 28) -> str:
    """A label safe for matplotlib: short, and '$' escaped so it is not read as mathtext."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


CJK_FONT_HINTS = ("CJK", "Nanum", "Noto Sans KR", "Malgun", "AppleGothic", "Gothic", "UnDotum", "Baekmuk")


@functools.lru_cache(maxsize=1)
def wide_font() -> str | None:
    """An installed font with Hangul/CJK glyphs, if any (class names are often Korean)."""
    from matplotlib import font_manager

    for entry in font_manager.fontManager.ttflist:
        if any(hint.lower() in entry.name.lower() for hint in CJK_FONT_HINTS):
            return entry.name
    return None


def class_label(name: str, class_id: str, limit: int = 28) -> str:
    """'name (id)' for a plot; the id alone when no installed font can draw the name."""
    drawable = wide_font() is not None or all(ord(ch) < 0x2E80 for ch in name)
    if not drawable:
        return mpl_text(class_id, limit)
    return mpl_text(name if name == class_id else f"{name} ({class_id})", limit)


def png(fig) -> str:
    """The figure as an <img> with a base64 data URI (Agg canvas, no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # missing glyphs for non-Latin names are not errors
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def own_thumbnail(uri: str) -> bool:
    """Only our own small base64 JPEG/PNG data: URIs go into a report's <img src>."""
    return len(uri) <= MAX_THUMBNAIL_CHARS and bool(THUMBNAIL.fullmatch(uri))
