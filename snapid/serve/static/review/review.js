// The review queue. Every value from the server is set with textContent (never innerHTML), and the
// token stays in this tab's sessionStorage; thumbnails are fetched with it and shown as blob: URLs.
const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("snapid-review-token") || "", classes: [] };

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "muted";
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).message || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function answerText(answer) {
  if (!answer.length) return "unknown (prediction not recorded)";
  return answer.map((a) => `${a.name} (${Math.round(a.score * 100)}%)`).join(", ");
}

function userText(item) {
  if (item.source === "model") return "none: the model was unsure, its best guess is preselected";
  if (item.not_in_list) return item.reviewer_label ? `not in the list → became ${item.reviewer_label}` : "not in the list";
  const relabel = item.reviewer_label ? ` → relabelled ${item.reviewer_label}` : "";
  return `${item.label}${relabel}`;
}

async function showThumb(container, uploadId) {
  const img = document.createElement("img");
  img.alt = "Photo sent with the feedback";
  container.append(img);
  try {
    const blob = await (await api(`/api/v1/uploads/${encodeURIComponent(uploadId)}/thumb`)).blob();
    img.src = URL.createObjectURL(blob);
  } catch (error) {
    img.replaceWith(Object.assign(document.createElement("span"), { textContent: `photo unavailable (${error.message})` }));
  }
}

function renderItem(item) {
  const node = $("item").content.firstElementChild.cloneNode(true);
  node.querySelector(".answer").textContent = answerText(item.model_answer);
  node.querySelector(".user").textContent = userText(item);
  node.querySelector(".note").textContent = item.text || "—";
  node.querySelector(".state").textContent = item.merged_version ? `${item.status}, merged into v${item.merged_version}` : item.status;
  const photos = node.querySelector(".photos");
  if (!item.uploads.length) photos.textContent = "no photo kept";
  item.uploads.forEach((id) => showThumb(photos, id));
  const select = node.querySelector(".relabel");
  for (const c of state.classes) {
    select.append(Object.assign(document.createElement("option"), { value: c.id, textContent: `${c.name} (${c.id})` }));
  }
  if (item.label) select.value = item.label;
  node.querySelector(".actions").before(quickChoices(item, node));
  node.querySelectorAll("button[data-action]").forEach((button) => {
    button.addEventListener("click", () => act(item.id, button.dataset.action, select.value, node));
  });
  return node;
}

// One click per class of the model's top 3: approve when it is the item's label, else relabel as it.
function quickChoices(item, node) {
  const row = Object.assign(document.createElement("div"), { className: "quick" });
  if (!item.model_answer.length || item.status !== "pending") return row;
  row.append(Object.assign(document.createElement("span"), { textContent: "It is: " }));
  for (const a of item.model_answer) {
    const button = Object.assign(document.createElement("button"), { type: "button", className: "choice",
      textContent: `${a.name} (${Math.round(a.score * 100)}%)` });
    button.dataset.label = a.id;
    button.addEventListener("click", () => (a.id === item.label
      ? act(item.id, "approve", null, node) : act(item.id, "relabel", a.id, node)));
    row.append(button);
  }
  return row;
}

async function act(id, action, label, node) {
  const body = action === "relabel" ? { action, label } : { action };
  try {
    await api(`/api/v1/review/${encodeURIComponent(id)}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    node.remove();
    say(`${action}: done`);
  } catch (error) {
    say(`${action} failed: ${error.message}`, true);
  }
}

// Approved "not in the list" items, grouped by the users' text: a group of min..max photos can become a class.
function renderGroup(group, range) {
  const node = $("group").content.firstElementChild.cloneNode(true);
  const count = `${group.photos} photo${group.photos === 1 ? "" : "s"}`;
  node.querySelector(".said").textContent = group.key
    ? `Users wrote "${group.name}" (${group.feedback_ids.length} items, ${count})`
    : `Users wrote nothing (${group.feedback_ids.length} items, ${count})`;
  group.uploads.forEach((id) => showThumb(node.querySelector(".photos"), id));
  const name = node.querySelector(".name");
  name.value = group.name;
  const button = node.querySelector(".make");
  button.textContent = `Make a class from these ${count}`;
  button.disabled = !group.ready;
  const result = node.querySelector(".result");
  if (!group.ready) result.textContent = `A class needs ${range.min_photos} to ${range.max_photos} photos.`;
  button.addEventListener("click", () => makeClass(group, name.value, button, result));
  return node;
}

async function makeClass(group, name, button, result) {
  button.disabled = true;
  result.className = "result muted";
  result.textContent = "making the class… (this takes a few seconds)";
  try {
    const made = await (await api("/api/v1/review/new-class", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, feedback_ids: group.feedback_ids }) })).json();
    result.className = "result";
    result.textContent = `Class "${made.class.name}" (${made.class.id}) added from ${made.photos} photos; ` +
      `bundle version ${made.bundle.version}${made.served ? ", now served" : ", not served yet (see the server log)"}.`;
    say(`new class ${made.class.id}: done`);
  } catch (error) {
    button.disabled = false;
    result.className = "result error";
    result.textContent = `could not make the class: ${error.message}`;
  }
}

async function loadGroups(status) {
  $("new-classes").hidden = status !== "approved";
  if (status !== "approved") return;
  try {
    const found = await (await api("/api/v1/review/new-classes")).json();
    $("photo-range").textContent = `${found.min_photos} to ${found.max_photos}`;
    $("groups").replaceChildren(...found.groups.map((g) => renderGroup(g, found)));
    $("new-classes").hidden = !found.groups.length;
  } catch (error) {
    $("groups").replaceChildren(Object.assign(document.createElement("li"),
      { className: "error", textContent: `could not load the groups: ${error.message}` }));
  }
}

async function load() {
  const status = $("status").value;
  say("loading…");
  try {
    const page = await (await api(`/api/v1/review?status=${encodeURIComponent(status)}&limit=50`)).json();
    state.classes = page.classes;
    $("queue").replaceChildren(...page.items.map(renderItem));
    say(`${page.items.length} of ${page.total} ${status}`);
  } catch (error) {
    $("queue").replaceChildren();
    say(`could not load the queue: ${error.message}`, true);
  }
  await loadGroups(status);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token").value;
  sessionStorage.setItem("snapid-review-token", state.token);
  load();
});
if (state.token) { $("token").value = state.token; load(); }
