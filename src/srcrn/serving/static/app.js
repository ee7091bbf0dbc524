// The page of `srcrn serve`: upload one image to /api/v1/predict and show the answer.
// Plain JavaScript, served by the app itself: nothing is fetched from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null;
let card = null;  // the model card (/api/v1/model): calibration, threshold, validation figures

function show(element, visible) { element.hidden = !visible; }

function fail(message) {
  $("status").textContent = "";
  $("error").textContent = message;
  show($("error"), true);
}

function png(base64) { return base64 ? "data:image/png;base64," + base64 : ""; }

function render(result, file) {
  current = result;
  const probability = result.probability;
  const assessed = result.status !== "not assessable";  // the input gate: no verdict, no number to read
  const bands = {low: "Low", intermediate: "Intermediate: review", high: "High"};  // answers.bands
  $("decision").textContent = !assessed ? "Not assessable"
    : result.band ? bands[result.band]
    : result.decision === "melanoma" ? "Melanoma suspected" : "Benign";
  $("decision").className = "decision " + (!assessed ? "not-assessable" : result.band ? "band-" + result.band : result.decision);
  const spread = result.probability_spread;  // the answer with the lesion turned by up to 15 degrees
  $("probability").textContent = assessed
    ? `P(melanoma) ${probability.toFixed(3)} (threshold ${result.threshold.toFixed(3)})` +
      (spread ? `; spread ${spread[0].toFixed(3)}-${spread[1].toFixed(3)} with the lesion turned` : "")
    : (result.reasons || []).join("; ");
  $("spread").hidden = !(assessed && spread);  // the spread as a band on the bar
  if (assessed && spread) {
    $("spread").style.left = (100 * spread[0]).toFixed(1) + "%";
    $("spread").style.width = Math.max(0.5, 100 * (spread[1] - spread[0])).toFixed(1) + "%";
  }
  $("meaning").textContent = result.meaning;  // in words, from the model card (srcrn.inference.readings)
  $("model-quality").textContent = (card && card.quality) || "";
  const used = (result.clinical && result.clinical.used) || [];
  $("clinical-used").textContent = used.length
    ? `Clinical context used: ${used.join(", ")}.`
    : "No clinical context used (none given, or the model takes none).";
  $("bar").style.width = (100 * probability).toFixed(1) + "%";
  $("threshold-mark").style.left = (100 * result.threshold).toFixed(1) + "%";
  $("bar").parentElement.hidden = !assessed;  // not assessable: no number to read, not even as a bar
  document.querySelector(".axis").hidden = !assessed;
  const limits = card && card.bands;  // the verdict bands' boundaries on the bar, where the model has them
  for (const [id, value] of [["band-low-mark", limits && limits.low_below], ["band-high-mark", limits && limits.high_above]]) {
    $(id).hidden = value === null || value === undefined;
    if (!$(id).hidden) $(id).style.left = (100 * value).toFixed(1) + "%";
  }
  const body = $("measurements").tBodies[0];
  body.replaceChildren(...(result.readings || []).map((reading) => {
    const row = body.insertRow();  // text only (textContent): nothing from a response becomes markup
    row.insertCell().textContent = reading.name;
    row.insertCell().textContent = reading.value;
    row.insertCell().textContent = reading.explanation;
    return row;
  }));
  const warnings = result.warnings || [];
  $("warnings").replaceChildren(...warnings.map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
  show($("warnings"), warnings.length > 0);
  drawMask(png(result.mask_png));
  $("heat-layer").src = png(result.explanation_png);
  show($("heat-toggle"), Boolean(result.explanation_png));
  $("download-mask").href = png(result.mask_png);
  $("download-mask").download = `${result.image_id}_segmentation.png`;
  const numbers = Object.fromEntries(Object.entries(result).filter(([k]) => !k.endsWith("_png")));
  $("download-json").href = URL.createObjectURL(new Blob([JSON.stringify(numbers, null, 2)], {type: "application/json"}));
  $("download-json").download = `${result.image_id}.json`;
  $("model").textContent = `${result.image_id}: ${result.width}x${result.height} px; model ${result.model.segmenter} + ` +
    `${result.model.classifier} (srcrn ${result.model.srcrn_version}, ${result.model.engine}); ` +
    `${result.timings_ms.total.toFixed(0)} ms`;
  $("photo").dataset.original = URL.createObjectURL(file);
  updateLayers();
  show($("result"), true);
  $("status").textContent = "Done.";
}

// The mask as a translucent cyan layer, drawn at most 1024 px wide (the display never needs more).
function drawMask(source) {
  const mask = new Image();
  mask.onload = () => {
    const canvas = $("mask-layer");
    const scale = Math.min(1, 1024 / mask.naturalWidth);
    canvas.width = Math.round(mask.naturalWidth * scale);
    canvas.height = Math.round(mask.naturalHeight * scale);
    const context = canvas.getContext("2d");
    context.drawImage(mask, 0, 0, canvas.width, canvas.height);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    for (let i = 0; i < pixels.data.length; i += 4) {
      const inside = pixels.data[i] > 127;
      pixels.data[i] = 0; pixels.data[i + 1] = 200; pixels.data[i + 2] = 255;
      pixels.data[i + 3] = inside ? 110 : 0;
    }
    context.putImageData(pixels, 0, 0);
    canvas.dataset.drawn = "1";
  };
  $("mask-layer").dataset.drawn = "";
  mask.src = source;
}

function updateLayers() {
  if (!current) return;
  const photo = $("photo");
  photo.src = $("show-contour").checked ? png(current.overlay_png) : photo.dataset.original;
  show($("mask-layer"), $("show-mask").checked);
  const heat = $("show-heat").checked && Boolean(current.explanation_png);
  show($("heat-layer"), heat);
  show($("heat-legend"), heat);
  const opacity = String(Number($("opacity").value) / 100);
  $("mask-layer").style.opacity = opacity;
  $("heat-layer").style.opacity = opacity;
}

// The upload's form (image, context, scale) and headers: /predict and /report take the same.
function uploadForm(file) {
  const form = new FormData();
  form.append("image", file, file.name);
  for (const field of ["age", "sex", "site", "mm_per_pixel"]) {
    const value = $(field).value.trim();
    if (value) form.append(field, value);
  }
  return {form, headers: authorization()};
}

// The API key typed on the page, else the one kept from an earlier accepted request of this tab.
function apiKey() {
  return $("token").value.trim() || sessionStorage.getItem("srcrn-token") || "";
}

function authorization() {
  const key = apiKey();
  return key ? {Authorization: "Bearer " + key} : {};
}

let lastFile = null;
let lastForm = null;  // the exact form of the answer on screen: the report re-sends it, never fields edited since

// A field changed after the answer: the answer on screen is for the earlier values (stale).
function markStale() {
  if (!current) return;
  show($("stale"), true);
  $("download-report").disabled = true;
}

// The one-page PDF of the answer on screen: /api/v1/report with the very form that answer came from.
async function downloadReport() {
  if (!lastForm || !current) return;
  const form = lastForm, headers = authorization();
  $("status").textContent = "Writing the report...";
  const response = await fetch("/api/v1/report", {method: "POST", body: form, headers}).catch(() => null);
  if (!response || !response.ok) {
    fail("The report could not be written" + (response ? ` (error ${response.status})` : ""));
    return;
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `${current.image_id}_report.pdf`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  $("status").textContent = "Report downloaded.";
}

async function upload(file) {
  if (!file) return;
  lastFile = file;
  // A new upload first clears the previous answer: an error must never sit beside another image's verdict.
  current = null;
  show($("result"), false);
  show($("error"), false);
  $("status").textContent = `Analysing ${file.name}...`;
  const {form, headers} = uploadForm(file);
  lastForm = null;
  show($("stale"), false);
  $("download-report").disabled = false;
  let response;
  try {
    response = await fetch("/api/v1/predict", {method: "POST", body: form, headers});
  } catch (error) {
    fail("The service cannot be reached: " + error.message);
    return;
  }
  let body = null;
  try { body = await response.json(); } catch (error) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail ? body.detail : response.statusText;
    const clinical = typeof detail === "string" && /^(age|sex|site)\b/.test(detail);
    const why = {401: "API key needed or wrong", 413: "file too large",
                 422: clinical ? "not a usable clinical value" : "not a usable image",
                 503: "service busy, try again"}[response.status] || `error ${response.status}`;
    fail(`${why}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    return;
  }
  // Kept for this tab once the service accepted it (a string: never the input element itself).
  if (apiKey()) sessionStorage.setItem("srcrn-token", apiKey());
  if (!card) await loadCard();
  lastForm = form;
  render(body, file);
}

// Follow-up: both visits to /api/v1/compare; the changes in words, or why none are given.
function signed(value, digits, unit) {
  return `${value >= 0 ? "+" : ""}${value.toFixed(digits)}${unit}`;
}

async function compareVisits() {
  const before = $("before-file").files[0];
  const after = $("after-file").files[0];
  show($("comparison"), false);
  if (!before || !after) { $("compare-status").textContent = "Choose both images first."; return; }
  const form = new FormData();
  form.append("before", before, before.name);
  form.append("after", after, after.name);
  for (const field of ["before_mm_per_pixel", "after_mm_per_pixel", "age", "sex", "site"]) {
    const value = $(field).value.trim();
    if (value) form.append(field, value);
  }
  const {headers} = uploadForm(before);
  $("compare-status").textContent = "Comparing...";
  const response = await fetch("/api/v1/compare", {method: "POST", body: form, headers}).catch(() => null);
  const body = response ? await response.json().catch(() => null) : null;
  if (!response || !response.ok) {
    $("compare-status").textContent = `Not compared: ${(body && body.detail) || "the service cannot be reached"}`;
    return;
  }
  const r = body.registration;
  const lines = [];
  if (!r.reliable) {
    lines.push(`Registration unreliable: ${r.problems.join("; ")}. No change is measured.`);
  } else {
    lines.push(`Registered: rotation ${r.rotation_degrees.toFixed(1)}°, scale ×${r.scale.toFixed(3)}` +
      `${r.mirrored ? ", mirrored" : ""}; ${r.inliers} of ${r.matches} points agree.`);
    const mm = body.diameter_change_mm === null ? " (no mm: give both scales)" : ` (${signed(body.diameter_change_mm, 2, " mm")})`;
    lines.push(`Area ${signed(body.area_change_percent, 1, " %")}; longest diameter ` +
      `${signed(body.diameter_change_percent, 1, " %")}${mm}.`);
    lines.push(`Asymmetry ${signed(body.asymmetry_change, 0, "")} axes, border ` +
      `${body.border_change === null ? "n/a" : signed(body.border_change, 0, "")} segments, colours ` +
      `${signed(body.colours_change, 0, "")}.`);
    if (body.colours_appeared.length) lines.push(`New colours: ${body.colours_appeared.join(", ").replaceAll("_", " ")}.`);
    if (body.colours_vanished.length) lines.push(`Colours gone: ${body.colours_vanished.join(", ").replaceAll("_", " ")}.`);
  }
  lines.push(r.reliable
    ? `P(melanoma) ${body.probability_before.toFixed(3)} → ${body.probability_after.toFixed(3)}` +
      (body.probability_change_measurable === false ? ": no measurable change (within the answers' spread)." : ".")
    : `P(melanoma): earlier ${body.probability_before.toFixed(3)}, later ${body.probability_after.toFixed(3)}, ` +
      "each visit's own answer, not a change.");
  $("changes").replaceChildren(...lines.map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
  $("comparison-picture").src = png(body.picture_png);
  $("compare-status").textContent = "";
  show($("comparison"), true);
}

$("compare").addEventListener("click", compareVisits);
$("file").addEventListener("change", (event) => upload(event.target.files[0]));
$("download-report").addEventListener("click", downloadReport);
// "input" only: a text field's "change" fires on blur, after an answer to the very value typed.
for (const id of ["age", "sex", "site", "mm_per_pixel"]) $(id).addEventListener("input", markStale);
for (const id of ["show-contour", "show-mask", "show-heat"]) $(id).addEventListener("change", updateLayers);
$("opacity").addEventListener("input", updateLayers);
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  upload(event.dataTransfer.files[0]);
});
// The model card's short form (a shipped model's own description), as text: nothing becomes markup.
function showAbout() {
  const rows = (card && card.short_form) || [];
  if (!rows.length) return;
  $("about-fields").replaceChildren(...rows.flatMap(([term, text]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = text || "n/a";
    return [dt, dd];
  }));
  show($("about"), true);
}

function loadCard() {
  return fetch("/api/v1/model", {headers: authorization()}).then((r) => (r.ok ? r.json() : null))
    .then((c) => { if (c) { card = c; showAbout(); } })
    .catch(() => {});
}
fetch("/api/v1/health").then((r) => r.json()).then((health) => {
  show($("token-row"), health.auth === "bearer");
  return loadCard();
}).catch(() => fail("The service cannot be reached."));
