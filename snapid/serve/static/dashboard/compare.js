// Several runs side by side: overlaid curves (live while any of them trains) and the leaderboard.
import { lineChart } from "./charts.js";
import { ACTIVE, api, duration, el, fetchEpochs, metric, pct, poll, runHref, showError, statusBadge, table } from "./dashboard.js";

const LIVE_MS = 2500;
const MAX_COLUMNS = 14;
const PREFERRED = ["rank", "name", "run", "kind", "model", "top1", "top5", "macro_top1", "macro_f1", "ece", "parameters",
  "latency_ms", "diff", "low", "high", "p_value", "verdict", "note"];
const curves = new Map();   // run id -> {run, epochs: Map(epoch -> row)}

function names() {
  return (new URLSearchParams(location.search).get("names") || "").split(",").map((n) => n.trim()).filter(Boolean);
}

function renderSummary(comparison) {
  const section = document.getElementById("summary");
  const parts = [el("h2", { id: "summary-h" }, "Runs")];
  if (comparison.missing.length) parts.push(el("p", { className: "error", role: "alert" }, `No run named: ${comparison.missing.join(", ")}`));
  parts.push(table("Compared runs", [
    { label: "Run", value: (r) => el("a", { href: runHref(r) }, r.name) }, { label: "Status", value: (r) => statusBadge(r.status) },
    { label: "Dataset", value: (r) => r.dataset }, { label: "Model", value: (r) => r.model },
    { label: "Best", numeric: true, value: (r) => (r.best_metric === null ? "–" : `${metric(r.monitor, r.best_metric)} @ ${r.best_epoch}`) },
    { label: "Test top-1", numeric: true, value: (r) => pct(r.test_top1, 2) }, { label: "Test macro-F1", numeric: true, value: (r) => pct(r.test_macro_f1, 2) },
    { label: "Epochs", numeric: true, value: (r) => String(r.epochs) }, { label: "Duration", numeric: true, value: (r) => duration(r.seconds) },
  ], comparison.runs));
  section.replaceChildren(...parts);
}

function overlay(key) {
  return [...curves.values()].map(({ run, epochs }) => ({ label: run.name, points: [...epochs.values()].map((e) => [e.epoch, e[key]]) }));
}

function renderCurves() {
  lineChart(document.getElementById("chart-top1"), { title: "Validation top-1", percent: true, series: overlay("top1") });
  lineChart(document.getElementById("chart-val-loss"), { title: "Validation loss", series: overlay("val_loss") });
  lineChart(document.getElementById("chart-f1"), { title: "Validation macro-F1", percent: true, series: overlay("macro_f1") });
  lineChart(document.getElementById("chart-train-loss"), { title: "Training loss", series: overlay("train_loss") });
  lineChart(document.getElementById("chart-lr"), { title: "Learning rate", log: "auto", series: overlay("lr") });
}

// The leaderboard's shape belongs to `snapid leaderboard`: show its list of rows with their scalar columns.
function rowsOf(board) {
  for (const key of ["rows", "entries", "runs", "items", "leaderboard"]) if (Array.isArray(board[key])) return board[key];
  return Object.values(board).find((v) => Array.isArray(v) && v.every((r) => r && typeof r === "object")) || [];
}

function cell(key, value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return key === "parameters" ? value.toLocaleString() : key.endsWith("_ms") || key === "p_value" ? String(+value.toPrecision(3)) : metric(key, value);
  return typeof value === "object" ? JSON.stringify(value).slice(0, 120) : String(value);
}

function leaderboardTable(board) {
  const rows = rowsOf(board).filter((r) => r && typeof r === "object");
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => typeof r[k] !== "object" || r[k] === null)))];
  const ordered = [...PREFERRED.filter((k) => keys.includes(k)), ...keys.filter((k) => !PREFERRED.includes(k))].slice(0, MAX_COLUMNS);
  const title = [board.dataset, board.split && `split ${board.split}`, board.version !== undefined && `version ${board.version}`].filter(Boolean).join(", ");
  const parts = [el("h3", {}, title || "Leaderboard")];
  if (typeof board.error === "string") parts.push(el("p", { className: "error" }, board.error));
  if (rows.length) parts.push(table(`Leaderboard: ${title}`, ordered.map((k) => ({ label: k, numeric: typeof rows[0][k] === "number", value: (r) => cell(k, r[k]) })), rows));
  return parts;
}

function renderLeaderboards(boards) {
  const section = document.getElementById("leaderboard");
  section.replaceChildren(el("h2", { id: "leaderboard-h" }, "Leaderboard"));
  if (!boards.length) section.append(el("p", { className: "muted" }, "No leaderboard yet: evaluate the runs with ", el("code", {}, "snapid eval NAME"), "."));
  for (const board of boards) section.append(...leaderboardTable(board));
}

async function loadCurves(comparison) {
  for (const run of comparison.runs) curves.set(run.id, { run: { ...run }, epochs: new Map() });  // legend in the asked order
  await Promise.all(comparison.runs.map(async (run) => {
    const page = await fetchEpochs(run.id);
    const entry = curves.get(run.id);
    entry.run.status = page.status;
    for (const e of page.epochs) entry.epochs.set(e.epoch, e);
  }));
  renderCurves();
}

async function liveTick() {
  const active = [...curves.values()].filter(({ run }) => ACTIVE.has(run.status));
  if (!active.length) return false;
  for (const entry of active) {
    const after = entry.epochs.size ? Math.max(...entry.epochs.keys()) : -1;
    const page = await fetchEpochs(entry.run.id, after);
    for (const e of page.epochs) entry.epochs.set(e.epoch, e);
    entry.run.status = page.status;
  }
  renderCurves();
  return true;
}

async function load() {
  const wanted = names();
  document.querySelector("#pick input[name=names]").value = wanted.join(", ");
  if (!wanted.length) {
    document.getElementById("summary").append(el("p", { className: "muted" }, "Pick runs on the runs page, or type their names above."));
    return;
  }
  try {
    const comparison = await api(`/api/v1/compare?names=${encodeURIComponent(wanted.join(","))}`);
    renderSummary(comparison);
    renderLeaderboards(comparison.leaderboards);
    await loadCurves(comparison);
  } catch (error) {
    showError(document.getElementById("summary"), error);
    return;
  }
  if ([...curves.values()].some(({ run }) => ACTIVE.has(run.status))) {
    document.getElementById("live").textContent = "Live: curves of runs in training update by themselves.";
    const poller = poll(async () => { if (!(await liveTick())) { poller.stop(); document.getElementById("live").textContent = ""; } }, LIVE_MS);
  }
}

document.getElementById("pick").addEventListener("submit", (event) => {
  event.preventDefault();
  const typed = new FormData(event.target).get("names").split(",").map((n) => n.trim()).filter(Boolean);
  location.href = `/runs/compare?names=${encodeURIComponent(typed.join(","))}`;
});

load();
