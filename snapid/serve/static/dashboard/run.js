// One run: overview, live training curves, evaluation, configuration, artifacts.
import { lineChart } from "./charts.js";
import { ACTIVE, api, definitionList, duration, el, fetchEpochs, metric, num, pct, poll, sci, showError, statusBadge,
  table, when } from "./dashboard.js";
import { renderEvaluation } from "./evaluation.js";

const LIVE_MS = 2000;
const MAX_TABLE_ROWS = 500;  // the epochs table shows the latest rows; the charts draw them all
let run = null, poller = null;
const epochs = new Map();    // epoch number -> row (a resumed run may rewrite an epoch)

function pageRef() {
  const raw = location.pathname.replace(/^\/runs\//, "").replace(/\/$/, "");
  try { return decodeURIComponent(raw); } catch { return raw; }
}

function renderOverview() {
  document.title = `${run.name} · snapid`;
  document.getElementById("title").replaceChildren("Run ", el("span", { className: "name" }, run.name), " ", statusBadge(run.status));
  const best = run.best_metric === null ? "–" : `${metric(run.monitor, run.best_metric)} at epoch ${run.best_epoch}`;
  const facts = definitionList([
    ["Status", statusBadge(run.status)], ["Dataset", `${run.dataset} (version ${run.dataset_version})`],
    ["Model", run.model], ["Kind", run.parent ? `${run.kind} in ${run.parent}` : run.kind],
    ["Best", `${best} (${run.monitor})`], ["Epochs", String(epochs.size || run.epochs)],
    ["Created", when(run.created_at)], ["Started", when(run.started_at)], ["Ended", when(run.ended_at)],
    ["Duration", duration(run.seconds)], ["Host", run.host || "–"],
  ]);
  const section = document.getElementById("overview");
  section.replaceChildren(el("h2", { id: "overview-h" }, "Overview"), facts);
  if (run.error) section.append(el("h3", {}, "Error"), el("pre", { className: "error-text" }, run.error));
  const summary = Object.entries(run.summary || {}).filter(([, v]) => typeof v !== "object" || v === null);
  if (summary.length) {
    section.append(table("Summary metrics", [
      { label: "Metric", value: ([k]) => k }, { label: "Value", numeric: true, value: ([k, v]) => (typeof v === "number" ? metric(k, v) : String(v)) },
    ], summary));
  }
}

function flatten(value, prefix = "", out = []) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out.push([prefix, typeof value === "string" ? value : JSON.stringify(value)]);
  }
  return out;
}

function renderConfig() {
  const rows = flatten(run.config || {});
  document.getElementById("config").replaceChildren(el("h2", { id: "config-h" }, "Configuration"),
    rows.length ? table("Training configuration", [{ label: "Setting", value: (r) => r[0] }, { label: "Value", value: (r) => r[1] }], rows)
      : el("p", { className: "muted" }, "No configuration recorded."));
}

function renderArtifacts() {
  const headline = (a) => Object.entries(a.metrics).map(([k, v]) => `${k}=${typeof v === "number" ? num(v) : v}`).join(", ");
  document.getElementById("artifacts").replaceChildren(el("h2", { id: "artifacts-h" }, "Artifacts"),
    run.artifacts.length ? table("Artifacts recorded for this run", [
      { label: "Kind", value: (a) => a.kind }, { label: "SHA-256", value: (a) => el("code", {}, a.sha256.slice(0, 12) || "–") },
      { label: "Created", value: (a) => when(a.created_at) }, { label: "Headline", value: headline },
    ], run.artifacts) : el("p", { className: "muted" }, "None yet."));
}

function series(label, key) {
  return { label, points: [...epochs.values()].map((e) => [e.epoch, e[key]]) };
}

function renderCurves() {
  lineChart(document.getElementById("chart-loss"), { title: "Loss", series: [series("train", "train_loss"), series("validation", "val_loss")] });
  lineChart(document.getElementById("chart-top1"), { title: "Validation top-1", percent: true, series: [series("top-1", "top1"), series("top-5", "top5")] });
  lineChart(document.getElementById("chart-f1"), { title: "Validation macro-F1", percent: true, series: [series("macro-F1", "macro_f1")] });
  lineChart(document.getElementById("chart-lr"), { title: "Learning rate", log: "auto", series: [series("lr", "lr")] });
  const rows = [...epochs.values()].slice(-MAX_TABLE_ROWS).reverse();
  document.getElementById("epoch-count").textContent = String(epochs.size);
  document.getElementById("epochs").replaceChildren(table("Epochs, newest first", [
    { label: "Epoch", numeric: true, value: (e) => String(e.epoch) }, { label: "Phase", value: (e) => e.phase },
    { label: "Train loss", numeric: true, value: (e) => num(e.train_loss) }, { label: "Val loss", numeric: true, value: (e) => num(e.val_loss) },
    { label: "Top-1", numeric: true, value: (e) => pct(e.top1, 2) }, { label: "Top-5", numeric: true, value: (e) => pct(e.top5, 2) },
    { label: "Macro-F1", numeric: true, value: (e) => pct(e.macro_f1, 2) }, { label: "LR", numeric: true, value: (e) => sci(e.lr) },
    { label: "Seconds", numeric: true, value: (e) => num(e.seconds, 3) }, { label: "Images/s", numeric: true, value: (e) => num(e.images_per_s, 3) },
  ], rows));
}

function addEpochs(rows) {
  for (const row of rows) epochs.set(row.epoch, row);
  if (rows.length) renderCurves();
}

async function liveTick() {
  const last = epochs.size ? Math.max(...epochs.keys()) : -1;
  const page = await fetchEpochs(run.id, last);
  addEpochs(page.epochs);
  if (page.status !== run.status || page.epochs.length) {
    const finished = !ACTIVE.has(page.status);
    run = finished ? await api(`/api/v1/runs/${run.id}`) : { ...run, status: page.status, best_metric: page.best_metric, best_epoch: page.best_epoch };
    renderOverview();
    if (finished) stopLive(`Run ${page.status}.`);
  }
}

function startLive() {
  document.getElementById("live").textContent = `Live: new epochs appear every ${LIVE_MS / 1000} s.`;
  poller = poll(liveTick, LIVE_MS);
}

function stopLive(message) {
  if (poller) poller.stop();
  poller = null;
  document.getElementById("live").textContent = message;
  renderEvaluation(document.getElementById("evaluation"), run);
  renderArtifacts();
}

async function load() {
  try {
    run = await api(`/api/v1/runs/${encodeURIComponent(pageRef())}`);
  } catch (error) {
    document.getElementById("title").textContent = error.status === 404 ? "Run not found" : "Run";
    showError(document.getElementById("overview"), error);
    return;
  }
  renderOverview();
  renderConfig();
  renderArtifacts();
  renderEvaluation(document.getElementById("evaluation"), run);
  const page = await fetchEpochs(run.id);
  addEpochs(page.epochs);
  renderCurves();
  if (ACTIVE.has(page.status)) startLive();
}

load();
