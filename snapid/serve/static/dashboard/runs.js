// The runs list: filters and sort kept in the URL, statuses refreshed live.
import { ACTIVE, api, duration, el, metric, pct, poll, runHref, showError, statusBadge, when } from "./dashboard.js";

const PAGE_SIZE = 50;
const FAST_MS = 3000;      // while a listed run is queued or running
const SLOW_EVERY = 5;      // otherwise refresh every 5th tick (15 s), so new runs still appear
const form = document.getElementById("filters");
const tbody = document.querySelector("#runs tbody");
const count = document.getElementById("count");
const compareButton = document.getElementById("compare");
const selected = new Set();
let lastPage = null, ticks = 0;

function state() {
  const params = new URLSearchParams(location.search);
  return {
    dataset: params.get("dataset") || "", model: params.get("model") || "", status: params.get("status") || "",
    from: params.get("from") || "", to: params.get("to") || "",
    sort: params.get("sort") || "created_at", order: params.get("order") === "asc" ? "asc" : "desc",
    offset: Math.max(0, parseInt(params.get("offset") || "0", 10) || 0),
  };
}

function setState(changes) {
  const next = { ...state(), ...changes };
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(next)) if (value !== "" && value !== 0) params.set(key, value);
  history.replaceState(null, "", `${location.pathname}?${params}`);
  refresh();
}

// The date inputs are local calendar days; the API takes instants (until is exclusive: the day after "to").
function apiQuery(s) {
  const params = new URLSearchParams({ sort: s.sort, order: s.order, limit: PAGE_SIZE, offset: s.offset });
  for (const key of ["dataset", "model", "status"]) if (s[key]) params.set(key, s[key]);
  const day = (text, plus) => { const [y, m, d] = text.split("-").map(Number); return new Date(y, m - 1, d + plus); };
  if (/^\d{4}-\d\d-\d\d$/.test(s.from)) params.set("since", day(s.from, 0).toISOString());
  if (/^\d{4}-\d\d-\d\d$/.test(s.to)) params.set("until", day(s.to, 1).toISOString());
  return params;
}

function fillSelect(select, values, current) {
  const wanted = ["", ...new Set([...values, ...(current ? [current] : [])])];
  const have = [...select.options].map((option) => option.value);
  if (wanted.join("\n") === have.join("\n")) { select.value = current; return; }  // leave an open menu alone
  const options = [el("option", { value: "" }, "any")];
  for (const value of new Set([...values, ...(current ? [current] : [])])) options.push(el("option", { value }, value));
  select.replaceChildren(...options);
  select.value = current;
}

function row(run) {
  const box = el("input", { type: "checkbox", "aria-label": `Compare ${run.name}` });
  box.checked = selected.has(run.name);
  box.addEventListener("change", () => {
    if (box.checked) selected.add(run.name); else selected.delete(run.name);
    compareButton.disabled = selected.size < 1;
  });
  const best = run.best_metric === null ? "–" : `${metric(run.monitor, run.best_metric)} @ ${run.best_epoch}`;
  return el("tr", { "data-status": run.status },
    el("td", {}, box),
    el("th", { scope: "row" }, el("a", { href: runHref(run) }, run.name)),
    el("td", {}, statusBadge(run.status)),
    el("td", {}, run.dataset), el("td", {}, run.model),
    el("td", { className: "num", title: run.monitor }, best),
    el("td", { className: "num" }, pct(run.test_top1)),
    el("td", { className: "num" }, String(run.epochs)),
    el("td", { className: "num" }, duration(run.seconds)),
    el("td", {}, when(run.created_at)));
}

function renderSortHeaders(s) {
  for (const th of document.querySelectorAll("th[data-sort]")) {
    const key = th.dataset.sort;
    const label = th.dataset.label || (th.dataset.label = th.textContent);
    const button = el("button", { type: "button", className: "sort" }, label);
    button.addEventListener("click", () => setState({ sort: key, order: s.sort === key && s.order === "desc" ? "asc" : "desc", offset: 0 }));
    th.replaceChildren(button);
    if (s.sort === key) th.setAttribute("aria-sort", s.order === "asc" ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

function render(page, s) {
  fillSelect(form.elements.dataset, page.facets.datasets, s.dataset);
  fillSelect(form.elements.model, page.facets.models, s.model);
  tbody.replaceChildren(...page.items.map(row));
  if (!page.items.length) tbody.append(el("tr", {}, el("td", { colspan: 10, className: "muted" }, "No runs match these filters.")));
  const first = page.total ? page.offset + 1 : 0;
  count.textContent = `${page.total} run${page.total === 1 ? "" : "s"}; showing ${first}–${page.offset + page.items.length}`;
  document.getElementById("prev").disabled = page.offset === 0;
  document.getElementById("next").disabled = page.next_offset === null;
  renderSortHeaders(s);
}

async function refresh() {
  const s = state();
  for (const key of ["status", "from", "to"]) form.elements[key].value = s[key];
  try {
    lastPage = await api(`/api/v1/runs?${apiQuery(s)}`);
    render(lastPage, s);
  } catch (error) {
    showError(tbody.closest(".table-wrap"), error);
  }
}

form.addEventListener("change", (event) => {
  const field = event.target.name;
  if (field) setState({ [field]: event.target.value, offset: 0 });
});
form.addEventListener("reset", (event) => {
  event.preventDefault();
  setState({ dataset: "", model: "", status: "", from: "", to: "", offset: 0 });
});
document.getElementById("prev").addEventListener("click", () => setState({ offset: Math.max(0, state().offset - PAGE_SIZE) }));
document.getElementById("next").addEventListener("click", () => lastPage && lastPage.next_offset !== null && setState({ offset: lastPage.next_offset }));
compareButton.addEventListener("click", () => {
  location.href = `/runs/compare?names=${encodeURIComponent([...selected].join(","))}`;
});

refresh();
poll(async () => {
  ticks += 1;
  const active = lastPage && lastPage.items.some((run) => ACTIVE.has(run.status));
  if (active || ticks % SLOW_EVERY === 0) await refresh();
}, FAST_MS);
