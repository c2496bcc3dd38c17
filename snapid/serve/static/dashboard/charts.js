// Small hand-written SVG charts: line charts (one or several series) and a reliability diagram.
// Every label goes in through textContent, so a run name or class label is never parsed as markup.
// Colours come from dashboard.css classes (series-0 … series-7): the CSP allows no inline style sheets.

const SVG = "http://www.w3.org/2000/svg";
const W = 480, H = 260, PAD = { left: 56, right: 12, top: 12, bottom: 34 };
const MAX_SERIES_CLASSES = 8;

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// Round tick steps (1, 2, 5 × 10^k) covering [lo, hi] with about `count` ticks.
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => raw <= s);
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
  if (ticks[0] > lo) ticks.unshift(+(ticks[0] - step).toPrecision(12));
  return ticks;
}

function logTicks(lo, hi) {
  const ticks = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) ticks.push(Math.pow(10, e));
  return ticks;
}

export function formatTick(value, percent) {
  if (percent) return `${+(value * 100).toPrecision(3)}%`;
  if (value !== 0 && (Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5)) return value.toExponential(0);
  return String(+value.toPrecision(4));
}

function yScale(values, opts) {
  const lo = Math.min(...values), hi = Math.max(...values);
  const log = opts.log === true || (opts.log === "auto" && lo > 0 && hi / lo > 100);
  if (log) {
    const ticks = logTicks(lo, hi);
    const a = Math.log10(ticks[0]), b = Math.log10(ticks[ticks.length - 1]) || a + 1;
    return { ticks, map: (v) => (Math.log10(v) - a) / (b - a || 1), log };
  }
  const ticks = niceTicks(opts.percent ? Math.max(0, lo) : lo, hi);
  const a = ticks[0], b = ticks[ticks.length - 1];
  return { ticks, map: (v) => (v - a) / (b - a || 1), log };
}

function drawAxes(svg, xTicks, xMap, y, opts) {
  const plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
  for (const t of y.ticks) {
    const py = PAD.top + plotH * (1 - y.map(t));
    svg.append(svgEl("line", { x1: PAD.left, x2: W - PAD.right, y1: py, y2: py, class: "grid" }));
    svg.append(svgEl("text", { x: PAD.left - 6, y: py + 4, class: "tick", "text-anchor": "end" }, formatTick(t, opts.percent)));
  }
  for (const t of xTicks) {
    const px = PAD.left + plotW * xMap(t);
    svg.append(svgEl("text", { x: px, y: H - PAD.bottom + 16, class: "tick", "text-anchor": "middle" }, formatTick(t)));
  }
  svg.append(svgEl("line", { x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom, class: "axis" }));
  svg.append(svgEl("text", { x: PAD.left + plotW / 2, y: H - 4, class: "axis-label", "text-anchor": "middle" }, opts.xLabel || "epoch"));
}

function legend(series) {
  const list = document.createElement("ul");
  list.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch series-${i % MAX_SERIES_CLASSES}`;
    swatch.setAttribute("aria-hidden", "true");
    item.append(swatch, document.createTextNode(s.label));
    list.append(item);
  });
  return list;
}

function lastValues(series, percent) {
  return series.filter((s) => s.points.length)
    .map((s) => `${s.label} ${formatTick(s.points[s.points.length - 1][1], percent)}`).join(", ");
}

// Draw (or redraw) a line chart into `container`.
// spec: {title, series: [{label, points: [[x, y], …]}], percent, log: true|false|"auto", xLabel}
export function lineChart(container, spec) {
  const series = spec.series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }));
  const all = series.flatMap((s) => s.points);
  container.replaceChildren();
  const heading = document.createElement("h3");
  heading.textContent = spec.title;
  container.append(heading);
  if (!all.length) {
    const empty = document.createElement("p");
    empty.className = "muted";
    empty.textContent = "no data yet";
    container.append(empty);
    return;
  }
  const ys = spec.log ? all.map((p) => p[1]).filter((v) => v > 0) : all.map((p) => p[1]);
  const y = yScale(ys.length ? ys : [1], spec);
  const xs = all.map((p) => p[0]);
  const xLo = Math.min(...xs), xHi = Math.max(...xs);
  const whole = xs.every(Number.isInteger);  // epochs: no tick at epoch 1.5
  const xTicks = niceTicks(xLo, xHi === xLo ? xLo + 1 : xHi, 6)
    .filter((t) => t >= xLo && t <= Math.max(xHi, xLo + 1) && (!whole || Number.isInteger(t)));
  const xMap = (v) => (v - xLo) / ((xHi - xLo) || 1);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
    "aria-label": `${spec.title}: ${lastValues(series, spec.percent)}` });
  drawAxes(svg, xTicks, xMap, y, spec);
  const plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
  const px = (x) => PAD.left + plotW * xMap(x);
  const py = (v) => PAD.top + plotH * (1 - Math.min(1, Math.max(0, y.map(y.log && v <= 0 ? y.ticks[0] : v))));
  series.forEach((s, i) => {
    const cls = `series-${i % MAX_SERIES_CLASSES}`;
    const points = s.points.map(([x, v]) => `${px(x).toFixed(1)},${py(v).toFixed(1)}`).join(" ");
    svg.append(svgEl("polyline", { points, class: `line ${cls}` }));
    if (s.points.length <= 80) {
      for (const [x, v] of s.points) {
        const dot = svgEl("circle", { cx: px(x).toFixed(1), cy: py(v).toFixed(1), r: 2.5, class: `dot ${cls}` });
        dot.append(svgEl("title", {}, `${s.label}: ${spec.xLabel || "epoch"} ${x}, ${formatTick(v, spec.percent)}`));
        svg.append(dot);
      }
    }
  });
  container.append(svg, legend(series));
}

// Reliability diagram: bars of accuracy per confidence bin against the diagonal of perfect calibration.
// bins: [{lo, hi, confidence, accuracy, count}]
export function reliabilityChart(container, title, bins) {
  container.replaceChildren();
  const heading = document.createElement("h3");
  heading.textContent = title;
  container.append(heading);
  const used = (bins || []).filter((b) => b && b.count > 0 && Number.isFinite(b.accuracy));
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart",
    "aria-label": `${title}: accuracy against confidence in ${used.length} bins` });
  const y = { ticks: [0, 0.25, 0.5, 0.75, 1], map: (v) => v, log: false };
  drawAxes(svg, [0, 0.2, 0.4, 0.6, 0.8, 1], (v) => v, y, { percent: true, xLabel: "confidence" });
  const plotW = W - PAD.left - PAD.right, plotH = H - PAD.top - PAD.bottom;
  svg.append(svgEl("line", { x1: PAD.left, y1: PAD.top + plotH, x2: PAD.left + plotW, y2: PAD.top, class: "diagonal" }));
  for (const b of used) {
    const x = PAD.left + plotW * b.lo, w = Math.max(1, plotW * (b.hi - b.lo) - 1);
    const h = plotH * Math.min(1, Math.max(0, b.accuracy));
    const bar = svgEl("rect", { x, y: PAD.top + plotH - h, width: w, height: h, class: "bar" });
    bar.append(svgEl("title", {}, `${formatTick(b.lo, true)}–${formatTick(b.hi, true)}: accuracy ${formatTick(b.accuracy, true)}, n=${b.count}`));
    svg.append(bar);
  }
  container.append(svg);
}
