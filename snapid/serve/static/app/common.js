// Helpers shared by the identification page and the phone page: safe element building,
// client-side downscaling, API errors and the language buttons. No innerHTML anywhere:
// every piece of data reaches the page through textContent or an attribute.
"use strict";

(function () {
  const MAX_SIDE = 1024;      // longest side sent to the server
  const JPEG_QUALITY = 0.9;

  // el("p", {class: "x", text: "hello"}, child, ...): text is always set with textContent.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Only http(s) links are ever made clickable (a javascript: URL would run when clicked).
  function safeHref(url) {
    try {
      const parsed = new URL(String(url), location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  // Images are shown only from this server or as data URIs: the CSP blocks other sites anyway.
  function displayableImage(url) {
    const text = String(url || "");
    if (text.startsWith("data:image/")) return text;
    try {
      const parsed = new URL(text, location.href);
      return parsed.origin === location.origin ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function canvasBlob(canvas) {
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
  }

  // Upright (EXIF orientation applied), longest side at most 1024 px, JPEG q 0.9, alpha on white.
  // A file the browser cannot decode is sent as it is: the server gives the precise error.
  async function downscale(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (e) {
      return file;
    }
    const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    if (bitmap.close) bitmap.close();
    const blob = await canvasBlob(canvas);
    if (!blob) return file;
    const name = String(file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg";
    return new File([blob], name, { type: "image/jpeg" });
  }

  // An API failure as a readable sentence (the server's message when it sent one).
  async function apiError(response) {
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    const err = new Error(body && body.message ? body.message : `HTTP ${response.status}`);
    err.status = response.status;
    err.code = body && body.error;
    return err;
  }

  async function fetchJSON(url, options) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (e) {
      const err = new Error(SnapidI18n.t("error.network"));
      err.status = 0;
      throw err;
    }
    if (!response.ok) throw await apiError(response);
    return response.json();
  }

  function langButtons() {
    const sync = () => {
      for (const lang of SnapidI18n.languages) {
        const button = document.getElementById(`lang-${lang}`);
        if (button) button.setAttribute("aria-pressed", String(SnapidI18n.lang === lang));
      }
    };
    for (const lang of SnapidI18n.languages) {
      const button = document.getElementById(`lang-${lang}`);
      if (button) button.addEventListener("click", () => { SnapidI18n.set(lang); sync(); });
    }
    SnapidI18n.apply();
    sync();
  }

  function percent(score) {
    return `${(Math.max(0, Math.min(1, Number(score) || 0)) * 100).toFixed(1)}%`;
  }

  window.Snapid = { el, safeHref, displayableImage, downscale, apiError, fetchJSON, langButtons, percent, canvasBlob };
})();
