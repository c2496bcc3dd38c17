// What live knowledge adds to a card (issue 21): the rows of joined tables valid now ("1+1 at CU until
// 31 December") and, for a class with coordinates, the nearest places by category with their distance, on a
// map (Leaflet, vendored under /static/vendor/leaflet; tiles from the server's SNAPID_TILE_URL). When there
// is no map (no tile server, tiles that do not load, no Leaflet) the list with distances and a line of text
// stay. The visitor's own location is asked for only after a click, through the browser's prompt.
// All text goes in through textContent; Leaflet gets DOM nodes, never HTML strings built from data.
"use strict";

(() => {
  const { el, safeHref, fetchJSON } = window.Snapid;
  const TEXT = {
    en: {
      rows: "Now", until: "until {date}", from: "from {date}", places: "Nearby", food: "Food", lodging: "Lodging",
      sight: "Sights", here: "Use my location", here_busy: "Finding you…", here_denied: "Your location is not available; distances are from {name}.",
      from_you: "Distances are from you.", from_place: "Distances are from {name}.", map: "Map of {name} and places nearby",
      no_map: "The map cannot be shown here; the places are listed with their distance.",
    },
    ko: {
      rows: "지금", until: "{date}까지", from: "{date}부터", places: "주변", food: "음식점", lodging: "숙소",
      sight: "볼거리", here: "내 위치 사용", here_busy: "위치 확인 중…", here_denied: "위치를 쓸 수 없어 {name} 기준 거리입니다.",
      from_you: "내 위치 기준 거리입니다.", from_place: "{name} 기준 거리입니다.", map: "{name}와 주변 장소 지도",
      no_map: "지도를 표시할 수 없어 장소를 거리와 함께 목록으로 보여 줍니다.",
    },
  };
  let mapConfig = null;  // one request per page

  function lang() { return (window.SnapidI18n && window.SnapidI18n.lang) || document.documentElement.lang || "en"; }
  function tr(key, vars) {
    const words = TEXT[lang().split("-")[0]] || TEXT.en;
    return (words[key] || TEXT.en[key] || key).replace(/\{(\w+)\}/g, (_, k) => (vars && k in vars ? vars[k] : ""));
  }

  function day(text) {
    // a date alone is shown as a day; a time too when it has one
    if (!text) return "";
    const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(text);
    const moment = new Date(dateOnly ? `${text}T12:00:00` : text);
    if (Number.isNaN(moment.getTime())) return text;
    const options = dateOnly ? { day: "numeric", month: "long" } : { day: "numeric", month: "long", hour: "2-digit", minute: "2-digit" };
    return new Intl.DateTimeFormat(lang(), options).format(moment);
  }

  function renderRows(rows) {
    const list = el("ul", { class: "knowledge-rows" });
    for (const row of rows) {
      const parts = row.fields.map((f) => f.value).filter(Boolean).join(" · ");
      const when = row.valid_to ? tr("until", { date: day(row.valid_to) }) : row.valid_from ? tr("from", { date: day(row.valid_from) }) : "";
      list.append(el("li", { "data-table": row.table }, el("span", { text: parts }), when ? el("span", { class: "until", text: ` ${when}` }) : ""));
    }
    return el("div", { class: "rows" }, el("h5", { text: tr("rows") }), list);
  }

  function distance(a, b) {  // haversine, metres
    const r = 6371008.8, rad = Math.PI / 180;
    const dlat = (b.lat - a.lat) * rad, dlon = (b.lon - a.lon) * rad;
    const h = Math.sin(dlat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dlon / 2) ** 2;
    return 2 * r * Math.asin(Math.min(1, Math.sqrt(h)));
  }
  function shownDistance(m) { return m < 1000 ? `${Math.round(m)} m` : `${(m / 1000).toFixed(m < 10000 ? 1 : 0)} km`; }

  function renderPlaceList(list, places, origin) {
    list.replaceChildren();
    const groups = new Map();
    for (const p of places) {
      const d = origin ? distance(origin, p) : p.distance_m;
      if (!groups.has(p.category)) groups.set(p.category, []);
      groups.get(p.category).push({ ...p, shown: d });
    }
    for (const [category, items] of groups) {
      items.sort((a, b) => a.shown - b.shown);
      const ul = el("ul");
      for (const p of items) {
        const href = p.link ? safeHref(p.link) : null;
        const name = href ? el("a", { href, rel: "noopener noreferrer", target: "_blank", text: p.name }) : el("span", { text: p.name });
        ul.append(el("li", { class: "place", "data-category": category }, name,
          el("span", { class: "distance", text: ` ${shownDistance(p.shown)}` }),
          p.address ? el("span", { class: "address", text: ` · ${p.address}` }) : ""));
      }
      list.append(el("div", { class: "place-group" }, el("h6", { text: tr(category) }), ul));
    }
  }

  async function drawMap(box, fallback, card, name) {
    try {
      if (!mapConfig) mapConfig = fetchJSON("/api/v1/map");
      const config = await mapConfig;
      if (!config.tile_url || !window.L) throw new Error("no map");
      const L = window.L;
      const map = L.map(box, { scrollWheelZoom: false }).setView([card.location.lat, card.location.lon], 15);
      let loaded = 0;
      const escaped = (config.attribution || "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
      L.tileLayer(config.tile_url, { maxZoom: 19, attribution: escaped })
        .on("tileload", () => { loaded += 1; box.dataset.tiles = "loaded"; fallback.hidden = true; })
        .on("tileerror", () => { if (!loaded) { box.dataset.tiles = "failed"; fallback.hidden = false; } })
        .addTo(map);
      L.circleMarker([card.location.lat, card.location.lon], { radius: 9, className: "marker-here" })
        .bindTooltip(el("strong", { text: name })).addTo(map);
      const bounds = [[card.location.lat, card.location.lon]];
      for (const p of card.places) {
        L.circleMarker([p.lat, p.lon], { radius: 6, className: `marker-${p.category}` })
          .bindTooltip(el("span", { text: p.name })).addTo(map);
        bounds.push([p.lat, p.lon]);
      }
      if (bounds.length > 1) map.fitBounds(bounds, { padding: [20, 20], maxZoom: 16 });
      box.dataset.map = "ready";
      return map;
    } catch (_) {
      box.hidden = true;
      box.dataset.map = "none";
      fallback.hidden = false;
      return null;
    }
  }

  function renderPlaces(card, name) {
    const section = el("div", { class: "places" }, el("h5", { text: tr("places") }));
    const box = el("div", { class: "map", role: "img", "aria-label": tr("map", { name }) });
    const fallback = el("p", { class: "map-fallback hint", text: tr("no_map"), hidden: true });
    const note = el("p", { class: "hint places-origin", text: tr("from_place", { name }) });
    const list = el("div", { class: "place-list" });
    const button = el("button", { type: "button", class: "use-location", text: tr("here") });
    renderPlaceList(list, card.places, null);
    let map = null;
    button.addEventListener("click", () => {
      if (!navigator.geolocation) { note.textContent = tr("here_denied", { name }); return; }
      button.disabled = true;
      note.textContent = tr("here_busy");
      navigator.geolocation.getCurrentPosition((pos) => {
        const me = { lat: pos.coords.latitude, lon: pos.coords.longitude };
        renderPlaceList(list, card.places, me);
        note.textContent = tr("from_you");
        button.disabled = false;
        if (map && window.L) window.L.circleMarker([me.lat, me.lon], { radius: 7, className: "marker-you" }).addTo(map);
      }, () => { note.textContent = tr("here_denied", { name }); button.disabled = false; }, { timeout: 10000, maximumAge: 60000 });
    });
    section.append(box, fallback, note, button, list);
    // the map is drawn once the section is in the page (Leaflet measures its box)
    requestAnimationFrame(() => { drawMap(box, fallback, card, name).then((m) => { map = m; }); });
    return section;
  }

  function render(card, name) {
    const out = [];
    if (card.rows && card.rows.length) out.push(renderRows(card.rows));
    if (card.location && card.places && card.places.length) out.push(renderPlaces(card, name || card.display_name));
    return out;
  }

  window.SnapidPlaces = { render };
})();
