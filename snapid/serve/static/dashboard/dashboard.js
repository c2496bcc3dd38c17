// Shared helpers of the dashboard pages: DOM building, API calls, formatting, polling.
// Rule: data from the API reaches the page only as text nodes or textContent, never as HTML.

export const ACTIVE = new Set(["queued", "running"]);

// el("td", {className: "num", title: "…"}, "text", childNode, …): attributes via setAttribute, children as text.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) throw new Error(`el(): event handler attribute ${key} is not allowed`);
    if (key === "className") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) {
    const message = body && typeof body.message === "string" ? body.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, body && body.error, message);
  }
  return body;
}

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
export const pct = (v, digits = 1) => (isNum(v) ? `${(v * 100).toFixed(digits)}%` : "–");
export const num = (v, digits = 4) => (isNum(v) ? String(+v.toPrecision(digits)) : "–");
export const sci = (v) => (isNum(v) ? v.toExponential(2) : "–");

export function duration(seconds) {
  if (!isNum(seconds)) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : `${iso}Z`);  // naive timestamps are UTC
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

// Metrics named like accuracies are fractions shown as percentages; the rest as plain numbers.
export function metric(name, value) {
  return /top|acc|f1|recall|precision|coverage|ece/i.test(name) ? pct(value, 2) : num(value);
}

// A page link for a run: its name when that makes an unambiguous path segment, otherwise its id.
export function runHref(run) {
  const name = run.name;
  const plain = name && !/^\d+$/.test(name) && !/[/\\]/.test(name) && name !== "." && name !== ".." && name !== "compare";
  return `/runs/${encodeURIComponent(plain ? name : String(run.id))}`;
}

export function statusBadge(status) {
  return el("span", { className: `status status-${/^[a-z-]+$/.test(status) ? status : "unknown"}` }, status);
}

// A table from column specs {label, value(row) → string|Node, numeric}; the caption names it for screen readers.
export function table(caption, columns, rows) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", className: c.numeric ? "num" : null }, c.label)));
  const body = rows.map((row) => el("tr", {}, columns.map((c) => el("td", { className: c.numeric ? "num" : null }, c.value(row)))));
  return el("div", { className: "table-wrap" },
    el("table", {}, el("caption", {}, caption), el("thead", {}, head), el("tbody", {}, body)));
}

export function definitionList(pairs) {
  return el("dl", { className: "facts" }, pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

export function showError(container, error) {
  container.replaceChildren(el("p", { className: "error", role: "alert" }, error.message || String(error)));
}

// Calls `tick` every `ms` milliseconds (skipped while the tab is hidden) until stop(); one call at a time.
export function poll(tick, ms) {
  let timer = null, stopped = false;
  const loop = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await tick(); } catch (error) { console.warn("poll failed:", error.message); }
    }
    if (!stopped) timer = setTimeout(loop, ms);
  };
  timer = setTimeout(loop, ms);
  return { stop() { stopped = true; clearTimeout(timer); } };
}

// All epochs of a run after `after`, following `more` page by page.
export async function fetchEpochs(id, after = -1) {
  let page, epochs = [];
  do {
    page = await api(`/api/v1/runs/${encodeURIComponent(id)}/epochs?after=${after}`);
    epochs = epochs.concat(page.epochs);
    if (page.epochs.length) after = page.epochs[page.epochs.length - 1].epoch;
  } while (page.more);
  return { ...page, epochs };
}
