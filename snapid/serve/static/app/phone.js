// The phone side of the QR hand-off: take or choose a photo, downscale it, send it with the token
// from this page's own URL (/m/<token>); the answer shows on the computer, a short one here.
"use strict";

(function () {
  const { downscale, apiError } = Snapid;
  const t = (key, vars) => SnapidI18n.t(key, vars);
  const $ = (id) => document.getElementById(id);
  const token = decodeURIComponent(location.pathname.split("/").pop() || "");
  const sessionId = token.split(".")[0];
  const MESSAGES = { 401: "phonepage.invalid", 403: "phonepage.invalid", 404: "phonepage.invalid",
                     409: "phonepage.used", 410: "phonepage.expired", 429: "phonepage.full" };
  let previewUrl = null;

  function fail(key, text) {
    $("error").textContent = key ? t(key) : t("error.generic", { why: text });
    $("error").hidden = false;
  }

  async function send(file) {
    $("error").hidden = true;
    $("status").textContent = "";
    $("loading").hidden = false;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    $("preview").src = previewUrl;
    $("preview").hidden = false;
    try {
      const small = await downscale(file);
      const form = new FormData();
      form.append("files", small, small.name);
      const response = await fetch(`/api/v1/sessions/${encodeURIComponent(sessionId)}/upload`,
                                   { method: "POST", body: form, headers: { "X-Snapid-Token": token } });
      if (!response.ok) {
        const err = await apiError(response);
        return fail(MESSAGES[err.status], err.message);
      }
      const answer = await response.json();
      const best = answer.predictions[0];
      $("status").textContent = (answer.unknown ? t("phonepage.sent_unknown") : t("phonepage.sent", { name: best.display_name }))
        + " " + t("phonepage.remaining", { n: answer.remaining });
    } catch (err) {
      fail(null, err.message || t("error.network"));
    } finally {
      $("loading").hidden = true;
    }
  }

  Snapid.langButtons();
  for (const id of ["take", "choose"]) {
    $(id).addEventListener("change", (e) => {
      const file = e.target.files && e.target.files[0];
      e.target.value = "";
      if (file) send(file);
    });
  }
  if (!/^[0-9a-f]{32}$/.test(sessionId)) fail("phonepage.invalid");
})();
