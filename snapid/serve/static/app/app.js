// The identification page: photos in (drop, picker, camera, phone), the answer out (scores,
// knowledge card, warnings, "not sure"), and "Wrong?" feedback. All text through textContent.
"use strict";

(function () {
  const { el, downscale, fetchJSON, safeHref, displayableImage, percent } = Snapid;
  const t = (key, vars) => SnapidI18n.t(key, vars);
  const $ = (id) => document.getElementById(id);
  const state = { maxFiles: 5, last: null, thumbs: [], classes: null, phone: null, wrongFor: null };

  // --- giving photos ------------------------------------------------------------------------------
  function say(text) { $("give-msg").textContent = text || ""; }

  function takeFiles(list) {
    const files = [];
    for (const file of list) {
      if (file.type && !file.type.startsWith("image/")) say(t("give.not_image", { name: file.name }));
      else files.push(file);
    }
    if (files.length > state.maxFiles) say(t("give.too_many", { n: state.maxFiles }));
    if (files.length) identify(files.slice(0, state.maxFiles));
  }

  function setBusy(busy) {
    $("loading").hidden = !busy;
    $("result").setAttribute("aria-busy", String(busy));
  }

  function showError(err) {
    const box = $("error");
    box.textContent = err ? t("error.generic", { why: err.message }) : "";
    box.hidden = !err;
  }

  async function identify(files) {
    closePhone();
    showError(null);
    setBusy(true);
    for (const url of state.thumbs) URL.revokeObjectURL(url);
    state.thumbs = files.map((f) => URL.createObjectURL(f));
    state.files = files;
    const each = $("each").checked && files.length > 1;
    try {
      const small = await Promise.all(files.map(downscale));
      const form = new FormData();
      for (const f of small) form.append("files", f, f.name);
      const params = new URLSearchParams({ lang: SnapidI18n.lang, mode: each ? "each" : "same" });
      if ($("consent").checked) params.set("consent", "true");
      if ($("subset").value) params.set("subset", $("subset").value);
      if ($("why").checked && !$("why-option").hidden) params.set("explain", "true");
      const data = await fetchJSON(`/api/v1/predict?${params}`, { method: "POST", body: form });
      state.last = { kind: "predict", lang: SnapidI18n.lang, data };
      render();
      if (data.kept === "quota_full") say(t("give.not_kept"));  // consent given, but the server's store is full
      else if ($("give-msg").textContent === t("give.not_kept")) say("");
    } catch (err) {
      state.last = null;
      render();
      showError(err);
    } finally {
      setBusy(false);
    }
  }

  function setupGiving() {
    const drop = $("drop");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); takeFiles(e.dataTransfer.files); });
    drop.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file-input").click(); }
    });
    for (const id of ["file-input", "capture-input"]) {
      $(id).addEventListener("change", (e) => { takeFiles(e.target.files); e.target.value = ""; });
    }
  }

  // --- the camera (getUserMedia, rear camera; <input capture> when refused or missing) -------------
  let cameraStream = null;

  function cameraFallback(why) {
    say(t("camera.denied", { why }));
    $("capture-label").hidden = false;
    $("capture-label").focus();
  }

  async function openCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return cameraFallback("unavailable");
    try {
      cameraStream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: "environment" } }, audio: false });
    } catch (err) {
      return cameraFallback(err && err.name ? err.name : "error");
    }
    const video = $("video");
    video.srcObject = cameraStream;
    $("camera").hidden = false;
    await video.play().catch(() => {});
    $("camera-shot").focus();
  }

  function closeCamera() {
    if (cameraStream) for (const track of cameraStream.getTracks()) track.stop();
    cameraStream = null;
    $("camera").hidden = true;
  }

  async function takeShot() {
    const video = $("video");
    const canvas = el("canvas", { width: video.videoWidth || 640, height: video.videoHeight || 480 });
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await Snapid.canvasBlob(canvas);
    closeCamera();
    if (blob) identify([new File([blob], "camera.jpg", { type: "image/jpeg" })]);
  }

  // --- the phone (QR hand-off; events, or polling when they fail) ----------------------------------
  async function openPhone() {
    closePhone();
    showError(null);
    let made;
    try {
      made = await fetchJSON(`/api/v1/sessions?lang=${encodeURIComponent(SnapidI18n.lang)}`, { method: "POST" });
    } catch (err) {
      say(t("phone.failed", { why: err.message }));
      return;
    }
    const qr = URL.createObjectURL(new Blob([made.qr_svg], { type: "image/svg+xml" }));
    state.phone = { id: made.session_id, key: made.desktop_key, qr, items: new Map(), warnings: [], after: 0, errors: 0 };
    $("qr").src = qr;
    $("phone-url").textContent = made.phone_url;
    $("phone-note").textContent = made.note || "";
    $("phone-status").textContent = t("phone.waiting");
    $("phone-again").hidden = true;
    $("phone").hidden = false;
    listen(state.phone);
  }

  function listen(phone) {
    if (!window.EventSource) return poll(phone);
    const query = new URLSearchParams({ key: phone.key, lang: SnapidI18n.lang, after: String(phone.after) });
    const source = new EventSource(`/api/v1/sessions/${phone.id}/events?${query}`);
    phone.source = source;
    source.addEventListener("open", () => { phone.errors = 0; });
    source.addEventListener("upload", (e) => received(phone, JSON.parse(e.data)));
    source.addEventListener("expired", () => expired(phone));
    source.addEventListener("error", () => {
      phone.errors += 1;  // a stream ends every minute and reconnects; repeated failures mean no SSE here
      if (phone.errors >= 3) { source.close(); $("phone-status").textContent = t("phone.polling"); poll(phone); }
    });
  }

  function poll(phone) {
    const tick = async () => {
      if (state.phone !== phone) return;
      try {
        const page = await fetchJSON(`/api/v1/sessions/${phone.id}/results?after=${phone.after}&lang=${SnapidI18n.lang}`,
                                     { headers: { "X-Snapid-Key": phone.key } });
        if (page.uploads.length) received(phone, page);
        if (page.expired) return expired(phone);
      } catch (err) {
        if (err.status === 404 || err.status === 401) return expired(phone);
      }
      phone.timer = setTimeout(tick, 2000);
    };
    tick();
  }

  function received(phone, page) {
    if (state.phone !== phone) return;
    for (const item of page.uploads) {
      phone.items.set(item.position, item);
      phone.after = Math.max(phone.after, item.position);
    }
    phone.warnings = page.warnings || [];
    $("phone-status").textContent = t("phone.received", { n: phone.items.size });
    state.last = { kind: "session", lang: SnapidI18n.lang, phone };
    render();
  }

  function expired(phone) {
    if (phone.source) phone.source.close();
    clearTimeout(phone.timer);
    $("phone-status").textContent = t("phone.expired");
    $("phone-again").hidden = false;
  }

  function closePhone() {
    const phone = state.phone;
    if (!phone) return;
    if (phone.source) phone.source.close();
    clearTimeout(phone.timer);
    URL.revokeObjectURL(phone.qr);
    state.phone = null;
    $("phone").hidden = true;
  }

  // --- rendering an answer ------------------------------------------------------------------------
  // The server's display name when the answer was asked in the current language (it knows every card);
  // after a language switch: the card's name, then labels.json's display name, then the class name.
  function nameFor(id, fallback, card, answeredIn) {
    const lang = SnapidI18n.lang;
    if (answeredIn === lang && fallback.display_name) return fallback.display_name;
    if (card && card.class_id === id && card.names && card.names[lang]) return card.names[lang];
    const known = state.classes && state.classes.find((c) => c.id === id);
    if (known && known.display_names && known.display_names[lang]) return known.display_names[lang];
    return answeredIn === lang ? fallback.display_name : (fallback.name || fallback.display_name);
  }

  function objectsOf(last) {
    if (last.kind === "session") {
      return [...last.phone.items.values()].map((item) => ({ ...item, images: [item.thumbnail],
        title: t("result.photo", { n: item.position }) }));
    }
    const data = last.data;
    if (data.mode === "detect" && data.objects && data.objects.length) {
      return data.objects.map((o, n) => ({ ...o, images: [], title: t("result.object", { n: n + 1 }), number: n + 1 }));
    }
    if (data.objects && data.mode !== "detect") {
      return data.objects.map((o) => ({ ...o, images: [state.thumbs[o.photo]], heats: [heatOf(data, o.photo)],
        title: t("result.photo", { n: o.photo + 1 }) }));
    }
    return [{ ...data, images: state.thumbs, heats: state.thumbs.map((_, i) => heatOf(data, i)), title: null }];
  }

  function render() {
    const answers = $("answers");
    const warnings = $("warnings");
    answers.replaceChildren();
    warnings.replaceChildren();
    const last = state.last;
    if (!last) return;
    const answeredIn = last.kind === "session" ? SnapidI18n.lang : last.lang;
    const list = last.kind === "session" ? last.phone.warnings : last.data.warnings || [];
    for (const w of list) warnings.append(renderWarning(w, answeredIn));
    if (last.kind === "predict" && last.data.mode === "detect") answers.append(renderDetections(last.data, answeredIn));
    for (const object of objectsOf(last)) answers.append(renderObject(object, answeredIn));
    if (last.kind === "predict") answers.append(el("p", { class: "hint", text: t("result.model", last.data.model) }));
  }

  function severityName(severity) {
    const key = `severity.${severity}`;
    const text = t(key);
    return text === key ? severity : text;
  }

  function renderWarning(w, answeredIn) {
    const names = w.classes.map((id, i) => nameFor(id, { display_name: w.names[i], name: w.names[i] }, null, answeredIn));
    const message = (w.messages && w.messages[SnapidI18n.lang]) || w.message;
    const sure = w.certain !== false;
    return el("div", { class: `warning severity-${String(w.severity).replace(/[^a-z0-9_-]/gi, "")}${sure ? "" : " possible"}`, role: "alert" },
      el("strong", { text: t(sure ? "warn.title" : "warn.possible") }), " ",
      el("span", { class: "severity", text: t("warn.severity", { severity: severityName(w.severity) }) }),
      el("p", { text: message }),
      el("p", { class: "hint", text: t(sure ? "warn.items" : "warn.items_possible", { names: names.join(" + ") }) }));
  }

  // mode=detect: each photo with its numbered boxes drawn over it. Boxes are in the photo's upright
  // pixels, placed in percent of the image's natural size once it has loaded (CSSOM, so the CSP holds).
  function renderDetections(data, answeredIn) {
    const section = el("section", { class: "detections", "aria-label": t("result.detections") });
    if (data.fallback) section.append(el("p", { class: "hint fallback", role: "status", text: t("result.fallback") }));
    state.thumbs.forEach((src, photo) => {
      const objects = (data.objects || []).map((o, n) => ({ ...o, n: n + 1 })).filter((o) => o.photo === photo);
      if (!objects.length) return;
      const img = el("img", { src, alt: t("result.boxes_alt", { n: objects.length }) });
      const frame = el("div", { class: "boxed" }, img);
      const boxes = objects.map((o) => {
        const best = o.predictions[0];
        const name = o.unknown ? t("result.unknown") : nameFor(best.id, best, o.card, answeredIn);
        return el("div", { class: "box", dataset: { unknown: String(o.unknown) } },
          el("span", { class: "box-label", text: `${o.n} ${name}` }));
      });
      const place = () => {
        const w = img.naturalWidth, h = img.naturalHeight;
        if (!w || !h) return;
        objects.forEach((o, i) => {
          const [x1, y1, x2, y2] = o.box;
          Object.assign(boxes[i].style, { left: `${(100 * x1) / w}%`, top: `${(100 * y1) / h}%`,
            width: `${(100 * (x2 - x1)) / w}%`, height: `${(100 * (y2 - y1)) / h}%` });
        });
      };
      img.addEventListener("load", place);
      if (img.complete) place();
      frame.append(...boxes);
      section.append(frame);
    });
    return section;
  }

  // explain=true (issue 19): the heatmap of where the model looked, drawn on a canvas from the answer's numbers
  // (no image URL from the server) and laid over the square of the photo the model saw: the centred square
  // (resize=crop) or the photo letterboxed in a square (resize=letterbox). The "Why?" toggle shows or hides it.
  const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  function heatOf(data, photo) {
    return (data.explain || []).find((h) => h.photo === photo) || null;
  }

  function drawHeat(canvas, grid) {
    const rows = grid.length, cols = rows ? grid[0].length : 0;
    canvas.width = cols;
    canvas.height = rows;
    const ctx = canvas.getContext("2d");
    if (!ctx || !rows || !cols) return;
    const image = ctx.createImageData(cols, rows);
    grid.forEach((row, r) => row.forEach((value, c) => {
      const v = Math.min(1, Math.max(0, Number(value) || 0));
      const pos = v * (RAMP.length - 1), low = Math.min(Math.floor(pos), RAMP.length - 2), f = pos - low;
      const at = 4 * (r * cols + c);
      for (let k = 0; k < 3; k++) image.data[at + k] = Math.round(RAMP[low][k] * (1 - f) + RAMP[low + 1][k] * f);
      image.data[at + 3] = Math.round(70 + 130 * v);
    }));
    ctx.putImageData(image, 0, 0);
  }

  function withHeat(src, heat, name) {
    const img = el("img", { src, alt: "" });
    if (!heat || !Array.isArray(heat.grid)) return img;
    const canvas = el("canvas", { class: "heat", role: "img", "aria-label": t("result.why", { name }) });
    drawHeat(canvas, heat.grid);
    const place = () => {
      const w = img.naturalWidth, h = img.naturalHeight;
      if (!w || !h) return;
      const side = heat.resize === "letterbox" ? Math.max(w, h) : Math.min(w, h);
      Object.assign(canvas.style, { left: `${(50 * (w - side)) / w}%`, top: `${(50 * (h - side)) / h}%`,
        width: `${(100 * side) / w}%`, height: `${(100 * side) / h}%` });
    };
    img.addEventListener("load", place);
    if (img.complete) place();
    return el("span", { class: "why-frame", dataset: { peak: (heat.peak || []).join(",") } }, img, canvas);
  }

  function toggleWhy() {
    const on = $("why").checked;
    $("answers").classList.toggle("why-off", !on);
    const last = state.last;
    if (on && last && last.kind === "predict" && !last.data.explain && last.data.mode !== "detect" && state.files) {
      identify(state.files);  // the answer on screen was asked without explain: ask again, with it
    }
  }

  function renderObject(o, answeredIn) {
    const best = o.predictions[0];
    const figure = el("figure", { class: "photos" });
    const explained = nameFor(best.id, best, o.card, answeredIn);
    o.images.forEach((src, i) => { if (src) figure.append(withHeat(src, (o.heats || [])[i], explained)); });
    const heading = o.unknown ? t("result.unknown") : nameFor(best.id, best, o.card, answeredIn);
    const scores = el("ol", { class: "scores", "aria-label": t("result.guesses") });
    for (const p of o.predictions) {
      const name = nameFor(p.id, p, o.card, answeredIn);
      scores.append(el("li", {},
        el("span", { class: "name", text: name }),
        el("meter", { min: 0, max: 1, value: p.score, "aria-label": t("result.score", { name, pct: percent(p.score) }) }),
        el("span", { class: "pct", text: percent(p.score) }),
        renderReferences(p.references, name)));
    }
    const status = el("p", { class: "msg", role: "status" });
    const wrong = el("button", { type: "button", class: "wrong", text: t("wrong.button") });
    wrong.addEventListener("click", () => openWrong(o.prediction_id, status));
    // mode=detect: the objects are boxed on the photo above; an empty figure would leave a blank column
    const pictured = figure.childElementCount > 0;
    return el("article", { class: pictured ? "answer" : "answer no-photo", dataset: { unknown: String(o.unknown) } },
      pictured ? figure : null,
      el("div", { class: "body" },
        o.title ? el("p", { class: "hint", text: o.title }) : null,
        el("h3", { class: "best", text: heading }),
        o.unknown ? el("p", { class: "unknown-hint", text: t("result.unknown_hint") }) : null,
        scores,
        o.card && !o.unknown ? renderCard(o.card, answeredIn) : null,
        el("div", { class: "row" }, wrong), status));
  }

  // The class's training photos nearest to the query (issue 20), to compare by eye; images from this server only.
  function renderReferences(photos, name) {
    const shown = (photos || []).filter((r) => String(r.url || "").startsWith("/api/v1/references/"));
    if (!shown.length) return null;
    const strip = el("span", { class: "refs", role: "group", "aria-label": t("result.references", { name }) });
    for (const r of shown) {
      strip.append(el("img", { src: r.url, alt: t("result.reference", { name, pct: percent(Math.max(0, r.similarity)) }),
        title: t("result.reference", { name, pct: percent(Math.max(0, r.similarity)) }), loading: "lazy" }));
    }
    return strip;
  }

  function renderCard(card, answeredIn) {
    const lang = SnapidI18n.lang;
    const name = nameFor(card.class_id, { display_name: card.display_name, name: card.display_name }, card, answeredIn);
    const section = el("section", { class: "card", "aria-label": t("result.card", { name }) },
      el("h4", { text: t("result.card", { name }) }));
    if (card.scientific_name) section.append(el("p", {}, `${t("result.scientific")}: `, el("i", { text: card.scientific_name })));
    if (card.taxonomy && card.taxonomy.length) section.append(renderTaxonomy(card.taxonomy));
    const description = (card.descriptions && card.descriptions[lang]) || card.description;
    if (description) section.append(el("p", { class: "description", text: description }));
    if (card.image) section.append(renderImage(card.image, name));
    if (card.fields && card.fields.length) {
      const body = el("tbody");
      for (const f of card.fields) body.append(el("tr", {}, el("th", { scope: "row", text: f.name }), el("td", { text: f.value })));
      section.append(el("table", { class: "fields" }, el("caption", { text: t("result.fields") }), body));
    }
    const links = (card.links || []).filter((l) => safeHref(l.url));
    if (links.length) {
      const list = el("ul", { class: "links", "aria-label": t("result.links") });
      for (const l of links) list.append(el("li", {}, el("a", { href: safeHref(l.url), rel: "noopener noreferrer", target: "_blank", text: l.label || l.url })));
      section.append(list);
    }
    if (card.wikipedia && card.wikipedia.extract) section.append(renderWikipedia(card.wikipedia, lang));
    if (window.SnapidPlaces) section.append(...window.SnapidPlaces.render(card, name));  // rows now, places, map
    return section;
  }

  function renderTaxonomy(chain) {
    // order › family › genus › species, each "common name (Latin)" where Wikidata has a common name
    const line = el("p", { class: "taxonomy" }, `${t("result.taxonomy")}: `);
    [...chain].reverse().forEach((taxon, i) => {
      if (i) line.append(" › ");
      const common = taxon.label && taxon.label !== taxon.name ? `${taxon.label} ` : "";
      line.append(el("span", { title: t(`rank.${taxon.rank}`) }, common, el("i", { text: common ? `(${taxon.name})` : taxon.name })));
    });
    return line;
  }

  function renderImage(url, name) {
    const local = displayableImage(url);
    if (local) return el("img", { class: "card-image", src: local, alt: name });
    const href = safeHref(url);
    return el("p", { class: "hint" }, t("result.image_blocked"), " ",
      href ? el("a", { href, rel: "noopener noreferrer", target: "_blank", text: t("result.image_link") }) : null);
  }

  function renderWikipedia(page, lang) {
    const label = page.lang && page.lang !== lang ? t("result.wikipedia_other", { lang: page.lang }) : t("result.wikipedia");
    const href = safeHref(page.url);
    return el("blockquote", { class: "wikipedia", lang: page.lang || null },
      el("p", { class: "hint", text: label }), el("p", { text: page.extract }),
      href ? el("a", { href, rel: "noopener noreferrer", target: "_blank", text: t("result.read_more") }) : null);
  }

  // --- "Wrong?" → feedback ------------------------------------------------------------------------
  function clientKey() {
    let key = null;
    try { key = localStorage.getItem("snapid.client"); } catch (e) { /* storage disabled */ }
    if (!key || !/^[A-Za-z0-9_-]{8,64}$/.test(key)) {
      key = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
      try { localStorage.setItem("snapid.client", key); } catch (e) { /* a new key next time */ }
    }
    return key;
  }

  async function loadClasses() {
    if (!state.classes) state.classes = (await fetchJSON("/api/v1/classes")).classes;
    return state.classes;
  }

  function fillChoices() {
    const query = $("wrong-search").value.trim().toLowerCase();
    const list = $("wrong-list");
    list.replaceChildren();
    const lang = SnapidI18n.lang;
    const matches = (state.classes || []).filter((c) => !query || [c.id, c.name, ...Object.values(c.display_names || {})]
      .some((text) => String(text).toLowerCase().includes(query))).slice(0, 200);
    for (const c of matches) {
      const shown = (c.display_names && c.display_names[lang]) || c.name;
      list.append(el("label", { class: "choice" }, el("input", { type: "radio", name: "label", value: c.id }),
        " ", shown, shown !== c.id ? el("span", { class: "hint", text: ` (${c.id})` }) : null));
    }
    if (!matches.length) list.append(el("p", { class: "hint", text: t("wrong.none") }));
  }

  async function openWrong(predictionId, status) {
    state.wrongFor = { predictionId, status };
    $("wrong-msg").textContent = "";
    $("wrong-search").value = "";
    $("wrong-text").value = "";
    $("wrong-not-listed").checked = false;
    $("wrong-list").hidden = false;  // unticking above fires no change event
    try { await loadClasses(); } catch (err) { status.textContent = t("error.generic", { why: err.message }); return; }
    fillChoices();
    $("wrong").showModal();
    $("wrong-search").focus();
  }

  async function sendWrong(e) {
    e.preventDefault();
    const target = state.wrongFor;
    const notListed = $("wrong-not-listed").checked;
    const chosen = document.querySelector("#wrong-list input[name=label]:checked");
    if (!notListed && !chosen) { $("wrong-msg").textContent = t("wrong.pick"); return; }
    const body = { prediction_id: target.predictionId, client_key: clientKey(), text: $("wrong-text").value.slice(0, 500) };
    if (notListed) body.not_in_list = true; else body.label = chosen.value;
    try {
      await fetchJSON("/api/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      $("wrong").close();
      target.status.textContent = t("wrong.thanks");
    } catch (err) {
      $("wrong-msg").textContent = t("error.generic", { why: err.message });
    }
  }

  // --- start --------------------------------------------------------------------------------------
  // Named candidate subsets of the bundle (issue 20): the selector shows when it has any.
  function loadSubsets() {
    fetchJSON("/api/v1/subsets").then((found) => {
      const names = (found.subsets || []).map((s) => s.name);
      for (const name of names) $("subset").append(el("option", { value: name, text: name }));
      $("subset-option").hidden = !names.length;
    }).catch(() => {});
  }

  function start() {
    Snapid.langButtons();
    setupGiving();
    $("camera-open").addEventListener("click", openCamera);
    $("camera-shot").addEventListener("click", takeShot);
    $("camera-close").addEventListener("click", closeCamera);
    $("phone-open").addEventListener("click", openPhone);
    $("phone-again").addEventListener("click", openPhone);
    $("phone-close").addEventListener("click", closePhone);
    $("wrong-form").addEventListener("submit", sendWrong);
    $("wrong-cancel").addEventListener("click", () => $("wrong").close());
    $("why").addEventListener("change", toggleWhy);
    $("wrong-search").addEventListener("input", fillChoices);
    $("wrong-not-listed").addEventListener("change", (e) => { $("wrong-list").hidden = e.target.checked; });
    document.addEventListener("snapid:lang", () => {
      render();
      if (state.classes && $("wrong").open) fillChoices();
      if (state.phone && state.phone.items.size) {  // cards and warnings again, in the new language
        fetchJSON(`/api/v1/sessions/${state.phone.id}/results?after=0&lang=${SnapidI18n.lang}`, { headers: { "X-Snapid-Key": state.phone.key } })
          .then((page) => received(state.phone, page)).catch(() => {});
      }
    });
    fetchJSON("/api/v1/model").then((m) => {
      state.maxFiles = m.max_files || state.maxFiles;
      $("model-line").textContent = ` · ${m.name} ${m.version}`;
      $("why-option").hidden = !m.explain;
    }).catch(() => {});
    loadClasses().catch(() => {});
    loadSubsets();
  }

  start();
})();
