// The page of `srcrn serve`: upload one image to /api/v1/predict and show the answer.
// Plain JavaScript, served by the app itself: nothing is fetched from the internet.
"use strict";

const $ = (id) => document.getElementById(id);
const LABELS = {
  area_pixels: "Area (px)",
  area_fraction: "Share of the image",
  asymmetry_major_axis: "Asymmetry, major axis",
  asymmetry_minor_axis: "Asymmetry, minor axis",
  compactness: "Border compactness",
  longest_diameter_pixels: "Longest diameter (px)",
  colour_count: "Colours (ABCD)",
  colours: "Colours present",
  empty_mask: "No lesion found",
  touches_border: "Lesion touches the border",
};
let current = null;
let card = null;  // the model card (/api/v1/model): calibration, threshold, validation figures

// What the number is and what the decision suggests, in words, from the model card.
function meaning(result) {
  const classifier = (card && card.classifier) || {};
  const calibrated = classifier.calibration
    ? `a calibrated probability (${classifier.calibration.method} scaling)`
    : "an uncalibrated model score, not a frequency";
  const shipped = card && card.model_card && card.model_card.classifier && card.model_card.classifier.threshold;
  const chosen = shipped
    ? `, chosen on ${shipped.chosen_on}; on the validation split it gave sensitivity ` +
      `${interval(shipped.val_sensitivity)} and specificity ${interval(shipped.val_specificity)}`
    : classifier.target_sensitivity
      ? `, chosen for ${(100 * classifier.target_sensitivity).toFixed(0)} % sensitivity on validation images`
      : "";
  const advice = result.decision === "melanoma"
    ? "Above the referral threshold: consider excision or biopsy by a clinician."
    : "Below the referral threshold: no referral suggested by the model; clinical judgement decides.";
  return `${advice} The number is ${calibrated}; threshold ${result.threshold.toFixed(3)}${chosen}.`;
}

// "0.846 (95 % CI 0.748-0.911)" of a card figure {value, ci95}.
function interval(figure) {
  if (!figure || typeof figure.value !== "number") return "n/a";
  const [low, high] = figure.ci95 || [];
  return typeof low === "number" && typeof high === "number"
    ? `${figure.value.toFixed(3)} (95 % CI ${low.toFixed(3)}-${high.toFixed(3)})`
    : figure.value.toFixed(3);
}

function quality() {
  const shipped = card && card.model_card && card.model_card.classifier;
  if (shipped && shipped.val_auc) {
    return `Stage 2: validation AUC ${interval(shipped.val_auc)}, out-of-fold AUC ${interval(shipped.oof_auc)}.`;
  }
  const training = (card && card.classifier && card.classifier.training) || {};
  const parts = [];
  if (typeof training.val_auc === "number") parts.push(`validation AUC ${training.val_auc.toFixed(3)}`);
  if (typeof training.n_train === "number") parts.push(`trained on ${training.n_train} images`);
  const kind = card && card.classifier ? card.classifier.kind : null;
  if (kind) parts.unshift(`${kind} model`);
  return parts.length ? `Stage 2: ${parts.join(", ")}.` : "";
}

function show(element, visible) { element.hidden = !visible; }

function fail(message) {
  $("status").textContent = "";
  $("error").textContent = message;
  show($("error"), true);
}

function formatValue(value) {
  if (value === null || value === undefined) return "n/a";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  return String(value) || "none";
}

function png(base64) { return base64 ? "data:image/png;base64," + base64 : ""; }

function render(result, file) {
  current = result;
  const probability = result.probability;
  $("decision").textContent = result.decision === "melanoma" ? "Melanoma suspected" : "Benign";
  $("decision").className = "decision " + result.decision;
  $("probability").textContent =
    `P(melanoma) ${probability.toFixed(3)} (threshold ${result.threshold.toFixed(3)})`;
  $("meaning").textContent = meaning(result);
  $("model-quality").textContent = quality();
  const used = (result.clinical && result.clinical.used) || [];
  $("clinical-used").textContent = used.length
    ? `Clinical context used: ${used.join(", ")}.`
    : "No clinical context used (none given, or the model takes none).";
  $("bar").style.width = (100 * probability).toFixed(1) + "%";
  $("threshold-mark").style.left = (100 * result.threshold).toFixed(1) + "%";
  const body = $("measurements").tBodies[0];
  body.replaceChildren(...Object.entries(result.measurements).map(([key, value]) => {
    const row = body.insertRow();  // text only (textContent): nothing from a response becomes markup
    row.insertCell().textContent = LABELS[key] || key;
    row.insertCell().textContent = formatValue(value);
    return row;
  }));
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

async function upload(file) {
  if (!file) return;
  // A new upload first clears the previous answer: an error must never sit beside another image's verdict.
  current = null;
  show($("result"), false);
  show($("error"), false);
  $("status").textContent = `Analysing ${file.name}...`;
  const form = new FormData();
  form.append("image", file, file.name);
  for (const field of ["age", "sex", "site"]) {
    const value = $(field).value.trim();
    if (value) form.append(field, value);
  }
  const headers = {};
  const token = $("token").value || sessionStorage.getItem("srcrn-token");
  if (token) headers["Authorization"] = "Bearer " + token;
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
  if (token) sessionStorage.setItem("srcrn-token", token);
  if (!card) await loadCard();
  render(body, file);
}

$("file").addEventListener("change", (event) => upload(event.target.files[0]));
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
  const about = card && card.model_card;
  if (!about) return;
  const images = (about.data && about.data.images) || {};
  const count = (subset) => Object.values(images[subset] || {}).reduce((n, s) => n + s.images, 0);
  const seg = (about.segmenter && about.segmenter.val) || {};
  const cls = about.classifier || {};
  const rows = [
    ["Model", about.name],
    ["Intended use", about.intended_use],
    ["Trained on", `${count("train")} images (${Object.keys(images.train || {}).join(", ")}); ` +
      `validated on ${count("val")}`],
    ["Lesion mask", `validation Jaccard ${interval(seg.jaccard)}, Dice ${interval(seg.dice)}`],
    ["Melanoma", `validation AUC ${interval(cls.val_auc)} with clinical context; ` +
      `${interval(cls.image_only && cls.image_only.val_auc)} from the image alone`],
    ["Clinical fields", (cls.clinical_fields || []).join(", ") || "none"],
    ["Limits", (about.limits || []).join("; ")],
  ];
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
  const headers = {};
  const token = $("token").value || sessionStorage.getItem("srcrn-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  return fetch("/api/v1/model", {headers}).then((r) => (r.ok ? r.json() : null))
    .then((c) => { if (c) { card = c; showAbout(); } })
    .catch(() => {});
}
fetch("/api/v1/health").then((r) => r.json()).then((health) => {
  show($("token-row"), health.auth === "bearer");
  return loadCard();
}).catch(() => fail("The service cannot be reached."));
