// The evaluation section of a run page: headline metrics, calibration, per-class table,
// confusion matrix, long tail, accuracy–coverage and the mistakes gallery (from `snapid eval`'s JSON).
import { lineChart, reliabilityChart } from "./charts.js";
import { el, isNum, num, pct, table } from "./dashboard.js";

const MAX_MATRIX = 40;       // a denser confusion matrix is unreadable as a table: show the top confusions
const MAX_PAIRS = 30;
const IMAGE_DATA = /^data:image\/(jpeg|png|webp);base64,[A-Za-z0-9+/=]+$/;

function headline(result, calibration) {
  const rows = [["Top-1", pct(result.top1, 2)], ["Top-5", pct(result.top5, 2)],
    ["Macro top-1", pct(result.macro_top1, 2)], ["Macro top-5", pct(result.macro_top5, 2)],
    ["Macro-F1", pct(result.macro_f1, 2)], ["Balanced accuracy", pct(result.balanced_accuracy, 2)],
    ["ECE (calibrated)", pct(result.ece, 2)], ["ECE (uncalibrated)", pct(result.ece_uncalibrated, 2)],
    ["NLL", num(result.nll)], ["Temperature", num(result.temperature ?? calibration?.temperature)],
    ["Rejection threshold", num(result.threshold ?? calibration?.threshold)],
    ["Latency (ms / image)", num(result.latency_ms, 3)], ["Parameters", isNum(result.parameters) ? result.parameters.toLocaleString() : "–"],
    ["Test-time augmentation", result.tta ? "yes" : "no"], ["Images", isNum(result.n) ? String(result.n) : "–"]];
  return table("Headline metrics", [{ label: "Metric", value: (r) => r[0] }, { label: "Value", numeric: true, value: (r) => r[1] }], rows);
}

function perClass(rows) {
  return table("Per-class results", [
    { label: "Class", value: (r) => r.name ?? r.id }, { label: "Id", value: (r) => String(r.id ?? "") },
    { label: "Train images", numeric: true, value: (r) => (isNum(r.train_count) ? String(r.train_count) : "–") },
    { label: "Support", numeric: true, value: (r) => (isNum(r.support) ? String(r.support) : "–") },
    { label: "Top-1", numeric: true, value: (r) => pct(r.top1) }, { label: "Precision", numeric: true, value: (r) => pct(r.precision) },
    { label: "Recall", numeric: true, value: (r) => pct(r.recall) }, { label: "F1", numeric: true, value: (r) => pct(r.f1) },
  ], rows);
}

// Counts as a table; each cell's shade is its row-normalised share (set through the CSSOM, which the CSP allows).
function matrix(confusion, names) {
  const labels = confusion.labels, counts = confusion.counts, share = confusion.normalized || [];
  const head = el("tr", {}, el("th", { scope: "col" }, "true \\ predicted"), labels.map((id) => el("th", { scope: "col" }, names.get(id) ?? String(id))));
  const body = labels.map((id, i) => el("tr", {}, el("th", { scope: "row" }, names.get(id) ?? String(id)),
    (counts[i] || []).map((n, j) => {
      const cell = el("td", { className: i === j ? "num diag" : "num", title: `${pct(share[i]?.[j])} of this class` }, String(n));
      if (isNum(share[i]?.[j]) && share[i][j] > 0) cell.style.setProperty("--share", share[i][j].toFixed(3));
      return cell;
    })));
  return el("div", { className: "table-wrap" }, el("table", { className: "confusion" },
    el("caption", {}, "Confusion matrix (rows: true class, columns: prediction)"), el("thead", {}, head), el("tbody", {}, body)));
}

function topPairs(confusion, names) {
  let pairs = Array.isArray(confusion.pairs) ? confusion.pairs : Array.isArray(confusion.top_pairs) ? confusion.top_pairs : null;
  if (!pairs && Array.isArray(confusion.labels) && Array.isArray(confusion.counts)) {
    pairs = [];
    confusion.counts.forEach((row, i) => (row || []).forEach((n, j) => { if (i !== j && n > 0) pairs.push({ true: confusion.labels[i], pred: confusion.labels[j], count: n }); }));
  }
  pairs = (pairs || []).slice().sort((a, b) => (b.count ?? 0) - (a.count ?? 0)).slice(0, MAX_PAIRS);
  const label = (id) => names.get(id) ?? String(id ?? "");
  return table("Most frequent confusions", [
    { label: "True class", value: (p) => p.true_name ?? label(p.true) }, { label: "Predicted", value: (p) => p.pred_name ?? label(p.pred) },
    { label: "Count", numeric: true, value: (p) => String(p.count ?? "–") },
  ], pairs);
}

function confusionSection(confusion, names) {
  if (!confusion) return [];
  const dense = Array.isArray(confusion.labels) && Array.isArray(confusion.counts) && confusion.labels.length <= MAX_MATRIX;
  return [el("h4", {}, "Confusion"), dense ? matrix(confusion, names) : topPairs(confusion, names)];
}

function calibrationSection(result, calibration) {
  const box = el("div", { className: "charts" });
  const after = el("figure", { className: "chart-box" }), before = el("figure", { className: "chart-box" });
  box.append(after, before);
  reliabilityChart(after, `Reliability, calibrated (ECE ${pct(result.ece, 2)})`, result.reliability);
  reliabilityChart(before, `Reliability, uncalibrated (ECE ${pct(result.ece_uncalibrated, 2)})`, result.reliability_uncalibrated);
  const parts = [el("h4", {}, "Calibration"), box];  // the coverage curve joins the same grid below
  if (calibration) {
    const target = isNum(calibration.target_accuracy) ? `target accuracy ${pct(calibration.target_accuracy)}`
      : isNum(calibration.target_coverage) ? `target coverage ${pct(calibration.target_coverage)}` : "no target";
    parts.push(el("p", {}, `Temperature ${num(calibration.temperature)}; threshold ${num(calibration.threshold)} (${target}); `
      + `validation ECE ${pct(calibration.val_ece_before, 2)} → ${pct(calibration.val_ece_after, 2)}.`));
  }
  if (Array.isArray(result.coverage) && result.coverage.length) {
    const curve = el("figure", { className: "chart-box" });
    lineChart(curve, { title: "Accuracy against coverage", percent: true, xLabel: "coverage",
      series: [{ label: "accuracy of accepted answers", points: result.coverage.map((c) => [c.coverage, c.accuracy]) }] });
    box.append(curve);
  }
  return parts;
}

function longTail(rows) {
  if (!Array.isArray(rows) || !rows.length) return [];
  return [el("h4", {}, "Long tail"), table("Accuracy by training-set frequency", [
    { label: "Bucket", value: (r) => String(r.bucket ?? "") }, { label: "Classes", numeric: true, value: (r) => String(r.classes ?? "–") },
    { label: "Train images", numeric: true, value: (r) => `${r.train_min ?? "?"}–${r.train_max ?? "?"}` },
    { label: "Top-1", numeric: true, value: (r) => pct(r.top1) }], rows)];
}

function gallery(mistakes) {
  if (!Array.isArray(mistakes) || !mistakes.length) return [];
  const figures = mistakes.map((m) => {
    const caption = el("figcaption", {}, el("span", { className: "true-label" }, m.true_name ?? String(m.true ?? "")), " → ",
      el("span", { className: "pred-label" }, m.pred_name ?? String(m.pred ?? "")), el("br"), `score ${pct(m.score)}, loss ${num(m.loss, 3)}`);
    const picture = typeof m.thumbnail === "string" && IMAGE_DATA.test(m.thumbnail)
      ? el("img", { src: m.thumbnail, alt: `Image ${m.position ?? ""}: a ${m.true_name ?? "?"} taken for a ${m.pred_name ?? "?"}`, loading: "lazy" })
      : el("div", { className: "no-thumb" }, "no thumbnail");
    return el("figure", { className: "mistake" }, picture, caption);
  });
  return [el("h4", {}, "Hardest mistakes"), el("div", { className: "gallery" }, figures)];
}

function splitSection(split, result, calibration) {
  const section = el("section", { className: "eval-split", "aria-label": `Evaluation on ${split}` },
    el("h3", {}, `Split “${split}”${isNum(result.n) ? ` — ${result.n} images` : ""}`));
  if (result.error) {
    section.append(el("p", { className: "error" }, result.error));
    return section;
  }
  const names = new Map((result.per_class || []).map((c) => [c.id, c.name ?? c.id]));
  section.append(headline(result, calibration), ...calibrationSection(result, calibration));
  if (Array.isArray(result.per_class)) section.append(el("h4", {}, "Per class"), perClass(result.per_class));
  section.append(...confusionSection(result.confusion, names), ...longTail(result.long_tail), ...gallery(result.mistakes));
  return section;
}

export function renderEvaluation(container, run) {
  const heading = el("h2", { id: "evaluation-h" }, "Evaluation");
  const splits = Object.keys(run.evaluations || {}).sort((a, b) => (a === "test" ? -1 : b === "test" ? 1 : a.localeCompare(b)));
  if (!splits.length) {
    container.replaceChildren(heading, el("p", { className: "muted" }, "Not evaluated yet — ", el("code", {}, `snapid eval ${run.name}`)));
    return;
  }
  container.replaceChildren(heading, ...splits.map((split) => splitSection(split, run.evaluations[split], run.calibration)));
}
