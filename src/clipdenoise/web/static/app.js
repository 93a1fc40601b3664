// clipdenoise demo page: talks to the JSON API of clipdenoise.web.app (no external resources).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 200;
  const state = {
    info: null,
    source: null, // {kind: "file", file} | {kind: "sample", key}
    jobId: null,
    pollTimer: null,
    result: null,
    zoom: "fit",
    fraction: 0.5,
    pendingKey: null, // what the running job compares to: same image, noise and seed
    history: [], // earlier results: {id, key, label, metrics}
  };
  const HISTORY_LIMIT = 12;

  // ---------------------------------------------------------------- helpers
  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function formatBytes(bytes) {
    if (bytes >= 1024 * 1024) return (bytes / 1024 / 1024).toFixed(1) + " MB";
    if (bytes >= 1024) return (bytes / 1024).toFixed(0) + " kB";
    return bytes + " B";
  }

  function randomSeed() {
    const values = new Uint32Array(1);
    window.crypto.getRandomValues(values);
    return String(values[0] % 2147483647);
  }

  // Text with `code` spans (server messages) as DOM nodes: never parsed as HTML.
  function setRichText(element, text) {
    element.replaceChildren();
    text.split("`").forEach((part, index) => {
      if (!part) return;
      if (index % 2 === 1) {
        const code = document.createElement("code");
        code.textContent = part;
        element.appendChild(code);
      } else {
        element.appendChild(document.createTextNode(part));
      }
    });
  }

  async function readError(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error;
    } catch (ignored) { /* not JSON */ }
    return "the server answered " + response.status + " " + response.statusText;
  }

  // ---------------------------------------------------------------- setup from /api/info
  async function loadInfo() {
    const response = await fetch("/api/info");
    if (!response.ok) throw new Error(await readError(response));
    state.info = await response.json();
    const info = state.info;
    $("version").textContent = "v" + info.version + " · " + info.device;
    const limits = info.limits;
    $("drop-hint").textContent =
      "PNG, JPEG, TIFF or WebP · up to " + formatBytes(limits.max_upload_bytes) +
      ", " + (limits.max_pixels / 1e6).toFixed(1) + " megapixels";
    $("limits").textContent =
      "Limits: " + limits.max_concurrent + " job(s) at a time, " + limits.max_queue +
      " waiting, " + limits.job_timeout_s + " s per job; tiles of " + limits.tile_size + " px.";
    if (info.weights_guidance) {
      const banner = $("banner-guidance");
      setRichText(banner, info.weights_guidance);
      banner.hidden = false;
    }
    fillModels(info);
    fillNoiseKinds(info.noise_kinds);
    fillSamples(info.samples);
    updateDenoiseButton();
  }

  function fillModels(info) {
    const select = $("model-select");
    select.replaceChildren();
    const groups = { network: "Networks", baseline: "Classical baselines" };
    const unavailable = [];
    for (const family of Object.keys(groups)) {
      const members = info.models.filter((m) => m.family === family && m.available);
      if (!members.length) continue;
      const group = document.createElement("optgroup");
      group.label = groups[family];
      for (const model of members) {
        const option = document.createElement("option");
        option.value = model.key;
        option.textContent = model.label;
        group.appendChild(option);
      }
      select.appendChild(group);
    }
    for (const model of info.models) if (!model.available) unavailable.push(model);
    if (info.default) select.value = info.default;
    const list = $("unavailable-list");
    list.replaceChildren();
    for (const model of unavailable) {
      const item = document.createElement("li");
      const name = document.createElement("strong");
      name.textContent = model.label + ": ";
      item.append(name, document.createTextNode(model.error || "not available"));
      list.appendChild(item);
    }
    $("unavailable-models").hidden = unavailable.length === 0;
    if (!select.options.length) {
      showError("No model is available on this server. " + (info.weights_guidance || ""));
    }
    describeModel();
  }

  function currentModel() {
    const key = $("model-select").value;
    return state.info ? state.info.models.find((m) => m.key === key) : null;
  }

  function describeModel() {
    const model = currentModel();
    $("model-description").textContent = model ? model.description : "";
    $("banner-untrained").hidden = !(model && model.untrained);
  }

  function fillNoiseKinds(kinds) {
    const select = $("noise-kind");
    for (const kind of kinds) {
      const option = document.createElement("option");
      option.value = kind.name;
      option.textContent = kind.name.replace(/_/g, " ");
      select.appendChild(option);
    }
    $("noise-seed").value = randomSeed();
  }

  function currentNoiseKind() {
    const name = $("noise-kind").value;
    return state.info.noise_kinds.find((k) => k.name === name) || null;
  }

  function describeNoise() {
    const kind = currentNoiseKind();
    $("noise-params").hidden = !kind;
    if (!kind) {
      $("noise-hint").textContent = "Upload a noisy photo as it is, or add noise to a clean one to measure PSNR/SSIM.";
      return;
    }
    $("noise-level").value = kind.suggested;
    $("noise-hint").textContent =
      kind.summary + ". Level: " + kind.level_names.join(", ") + " — " + kind.units +
      " (paper: " + kind.paper_levels.join(", ") + ").";
  }

  function fillSamples(samples) {
    const list = $("sample-list");
    list.replaceChildren();
    for (const sample of samples) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sample";
      button.dataset.key = sample.key;
      button.title = sample.label + " — " + sample.description;
      const image = document.createElement("img");
      image.src = sample.url;
      image.alt = sample.label;
      const caption = document.createElement("span");
      caption.textContent = sample.label;
      button.append(image, caption);
      button.addEventListener("click", () => chooseSample(sample));
      list.appendChild(button);
    }
  }

  // ---------------------------------------------------------------- choosing the image
  function markSample(key) {
    for (const button of document.querySelectorAll(".sample")) {
      button.classList.toggle("selected", button.dataset.key === key);
    }
  }

  // A thumbnail of the chosen image (not for TIFF, which browsers cannot show).
  function showSourcePreview(url) {
    const preview = $("source-preview");
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = url && url.startsWith("blob:") ? url : null;
    preview.hidden = !url;
    preview.onerror = () => { preview.hidden = true; }; // not an image the browser can show
    if (url) preview.src = url;
    else preview.removeAttribute("src");
  }

  function chooseSample(sample) {
    state.source = { kind: "sample", key: sample.key };
    markSample(sample.key);
    const name = $("file-name");
    name.textContent = "Sample: " + sample.label + " (" + sample.width + "×" + sample.height + ")";
    name.hidden = false;
    showSourcePreview(sample.url);
    $("file-input").value = "";
    showError("");
    updateDenoiseButton();
  }

  function chooseFile(file) {
    if (!file) return;
    showError("");
    const limit = state.info ? state.info.limits.max_upload_bytes : Infinity;
    if (file.size > limit) {
      showError("“" + file.name + "” is " + formatBytes(file.size) +
        ", over this server's upload limit of " + formatBytes(limit) + ".");
      return;
    }
    state.source = { kind: "file", file: file };
    markSample(null);
    const name = $("file-name");
    name.textContent = file.name + " · " + formatBytes(file.size);
    name.hidden = false;
    const displayable = /^image\/(png|jpeg|webp)$/.test(file.type);
    showSourcePreview(displayable ? URL.createObjectURL(file) : null);
    updateDenoiseButton();
  }

  function updateDenoiseButton() {
    const running = state.jobId !== null;
    $("denoise-button").disabled = running || !state.source || !$("model-select").value;
    $("cancel-button").hidden = !running;
  }

  // ---------------------------------------------------------------- running a job
  async function startJob() {
    showError("");
    const form = new FormData();
    if (state.source.kind === "file") form.append("file", state.source.file, state.source.file.name);
    else form.append("sample", state.source.key);
    form.append("model", $("model-select").value);
    const kind = $("noise-kind").value;
    form.append("noise", kind);
    if (kind !== "none") {
      form.append("level", $("noise-level").value.trim());
      form.append("seed", $("noise-seed").value.trim());
    }
    state.pendingKey = comparisonKey(kind);
    setProgress(0, "Uploading…", true);
    state.jobId = "pending";
    updateDenoiseButton();
    let response;
    try {
      response = await fetch("/api/jobs", { method: "POST", body: form });
    } catch (error) {
      finishJob();
      showError("The upload failed: " + error.message);
      return;
    }
    if (!response.ok) {
      finishJob();
      showError(await readError(response));
      return;
    }
    const job = await response.json();
    state.jobId = job.id;
    showJob(job);
    schedulePoll();
  }

  // Runs on the same image with the same noise and seed see the same noisy input, so their
  // results can be compared with each other (slider and metrics table).
  function comparisonKey(kind) {
    const source = state.source.kind === "file"
      ? "file:" + state.source.file.name + ":" + state.source.file.size + ":" + state.source.file.lastModified
      : "sample:" + state.source.key;
    if (kind === "none") return source + "|none";
    return source + "|" + kind + ":" + $("noise-level").value.trim() + "|seed:" + $("noise-seed").value.trim();
  }

  function schedulePoll() {
    state.pollTimer = window.setTimeout(poll, POLL_MS);
  }

  async function poll() {
    const id = state.jobId;
    if (!id || id === "pending") return;
    let job;
    try {
      const response = await fetch("/api/jobs/" + encodeURIComponent(id));
      if (!response.ok) throw new Error(await readError(response));
      job = await response.json();
    } catch (error) {
      if (state.jobId !== id) return;
      finishJob();
      showError("Lost track of the job: " + error.message);
      return;
    }
    if (state.jobId !== id) return; // cancelled (or replaced) while this poll was in flight
    showJob(job);
    if (job.state === "queued" || job.state === "running") schedulePoll();
  }

  function showJob(job) {
    if (job.state === "queued") {
      setProgress(0, "Waiting in line" + (job.position ? " (#" + job.position + ")" : "") + "…", true);
    } else if (job.state === "running") {
      const percent = Math.round(job.progress * 100);
      const elapsed = job.elapsed_seconds !== null ? " · " + job.elapsed_seconds.toFixed(1) + " s" : "";
      setProgress(job.progress, job.stage + " — " + percent + "%" + elapsed, false);
    } else if (job.state === "done") {
      finishJob();
      showResult(job);
    } else {
      finishJob();
      showError(job.message || "The job " + job.state + ".");
    }
  }

  function setProgress(fraction, text, indeterminate) {
    $("progress").hidden = false;
    const bar = $("progress-bar");
    bar.classList.toggle("indeterminate", indeterminate);
    bar.style.width = Math.round(fraction * 100) + "%";
    $("progress-text").textContent = text;
  }

  function finishJob() {
    window.clearTimeout(state.pollTimer);
    state.jobId = null;
    $("progress").hidden = true;
    updateDenoiseButton();
  }

  async function cancelJob() {
    const id = state.jobId;
    if (!id || id === "pending") return;
    await fetch("/api/jobs/" + encodeURIComponent(id), { method: "DELETE" });
    finishJob();
    showError("Cancelled.");
  }

  // ---------------------------------------------------------------- showing the result
  function formatMetric(value, digits) {
    return value === null || value === undefined ? "∞ / n.a." : value.toFixed(digits);
  }

  function showResult(job) {
    const result = job.result;
    state.result = { id: job.id, ...result };
    const base = "/api/jobs/" + encodeURIComponent(job.id);
    const earlier = state.history.filter((run) => run.key === state.pendingKey && run.id !== job.id);
    fillLeftChoice(result, earlier);
    state.history.unshift({ id: job.id, key: state.pendingKey, label: result.model_label, metrics: result.metrics });
    state.history.length = Math.min(state.history.length, HISTORY_LIMIT);
    const left = $("left-choice");
    $("img-left").src = leftImageUrl(left.value);
    $("img-right").src = base + "/previews/restored";
    $("right-label").textContent = "Restored" + (result.untrained ? " (untrained model)" : "");
    $("placeholder").hidden = true;
    $("stage").hidden = false;
    $("divider").hidden = false;
    $("compare-slider").disabled = false;
    $("img-left").onload = () => applyZoom();

    const metrics = result.metrics;
    $("metrics-table").hidden = !metrics;
    $("no-metrics").hidden = !!metrics;
    if (metrics) {
      $("psnr-noisy").textContent = formatMetric(metrics.noisy.psnr, 2);
      $("ssim-noisy").textContent = formatMetric(metrics.noisy.ssim, 4);
      $("psnr-restored").textContent = formatMetric(metrics.restored.psnr, 2);
      $("ssim-restored").textContent = formatMetric(metrics.restored.ssim, 4);
      $("psnr-restored").classList.toggle("better", metrics.restored.psnr > metrics.noisy.psnr);
      $("ssim-restored").classList.toggle("better", metrics.restored.ssim > metrics.noisy.ssim);
    }
    $("restored-label").textContent = result.model_label;
    fillEarlierRuns(metrics ? earlier.filter((run) => run.metrics) : []);
    $("fact-time").textContent =
      "denoised in " + result.denoise_seconds.toFixed(2) + " s (" + result.tiles +
      (result.tiles === 1 ? " pass" : " tiles") + "), " + result.total_seconds.toFixed(2) + " s in all";
    $("fact-image").textContent =
      result.width + "×" + result.height + " " + (result.channels === 1 ? "grey" : "RGB") +
      ", " + result.format + " " + result.bit_depth + "-bit";
    $("fact-noise").textContent = result.noise ? result.noise + " (seed " + result.seed + ")" : "none added";
    $("fact-model").textContent = result.model_label;
    const download = $("download-restored");
    download.href = base + "/files/restored";
    download.setAttribute("download", result.download_name);
    download.textContent = "Download result (" + result.format + ", " + result.bit_depth + "-bit)";
    const noisyLink = $("download-noisy");
    noisyLink.hidden = !result.downloads.includes("noisy");
    noisyLink.href = base + "/files/noisy";
    $("result").hidden = false;
  }

  function fillLeftChoice(result, earlier) {
    const left = $("left-choice");
    const previous = left.value;
    left.replaceChildren();
    const options = [["noisy", "Noisy"]];
    if (result.previews.includes("clean")) options.push(["clean", "Clean"]);
    for (const run of earlier) options.push(["job:" + run.id, run.label + " (earlier run)"]);
    for (const [value, text] of options) {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = text;
      left.appendChild(option);
    }
    left.value = options.some(([value]) => value === previous) ? previous : "noisy";
    left.disabled = options.length === 1;
  }

  function leftImageUrl(value) {
    if (value.startsWith("job:")) {
      return "/api/jobs/" + encodeURIComponent(value.slice(4)) + "/previews/restored";
    }
    return "/api/jobs/" + encodeURIComponent(state.result.id) + "/previews/" + value;
  }

  function fillEarlierRuns(runs) {
    const body = $("earlier-runs");
    body.replaceChildren();
    for (const run of runs) {
      const row = document.createElement("tr");
      row.className = "earlier";
      const name = document.createElement("th");
      name.scope = "row";
      name.textContent = run.label + " (earlier)";
      row.appendChild(name);
      for (const [value, digits] of [[run.metrics.restored.psnr, 2], [run.metrics.restored.ssim, 4]]) {
        const cell = document.createElement("td");
        cell.textContent = formatMetric(value, digits);
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
  }

  // ---------------------------------------------------------------- compare slider and zoom
  function updateDivider() {
    const viewer = $("viewer");
    const stage = $("stage");
    const x = state.fraction * viewer.clientWidth;
    const stageLeft = stage.offsetLeft - viewer.scrollLeft;
    const clip = Math.max(0, Math.min(stage.offsetWidth, x - stageLeft));
    $("img-right").style.clipPath = "inset(0 0 0 " + clip + "px)";
    $("divider").style.left = x + "px";
  }

  function applyZoom() {
    const viewer = $("viewer");
    const stage = $("stage");
    const image = $("img-left");
    if (!image.naturalWidth) return;
    let width;
    if (state.zoom === "fit") {
      const scale = Math.min(viewer.clientWidth / image.naturalWidth, viewer.clientHeight / image.naturalHeight);
      width = image.naturalWidth * Math.min(scale, 4);
    } else {
      width = image.naturalWidth * Number(state.zoom);
    }
    stage.style.width = Math.round(width) + "px";
    const zoomed = width > viewer.clientWidth + 1 || image.naturalHeight * (width / image.naturalWidth) > viewer.clientHeight + 1;
    viewer.classList.toggle("zoomed", zoomed);
    stage.classList.toggle("pixelated", width >= 2 * image.naturalWidth);
    for (const button of document.querySelectorAll(".zoom-button")) {
      button.classList.toggle("active", button.dataset.zoom === String(state.zoom));
    }
    updateDivider();
  }

  function enablePanning() {
    const viewer = $("viewer");
    let drag = null;
    viewer.addEventListener("pointerdown", (event) => {
      if (!viewer.classList.contains("zoomed")) {
        moveDividerTo(event);
        drag = { mode: "divider" };
      } else {
        drag = { mode: "pan", x: event.clientX, y: event.clientY, left: viewer.scrollLeft, top: viewer.scrollTop };
        viewer.classList.add("panning");
      }
      viewer.setPointerCapture(event.pointerId);
    });
    viewer.addEventListener("pointermove", (event) => {
      if (!drag) return;
      if (drag.mode === "divider") moveDividerTo(event);
      else {
        viewer.scrollLeft = drag.left - (event.clientX - drag.x);
        viewer.scrollTop = drag.top - (event.clientY - drag.y);
      }
    });
    const stop = () => { drag = null; viewer.classList.remove("panning"); };
    viewer.addEventListener("pointerup", stop);
    viewer.addEventListener("pointercancel", stop);
    viewer.addEventListener("scroll", updateDivider);
    viewer.addEventListener("wheel", (event) => {
      if (!event.ctrlKey || $("stage").hidden) return;
      event.preventDefault();
      const steps = ["fit", "1", "2", "4"];
      const index = steps.indexOf(String(state.zoom));
      const next = event.deltaY < 0 ? Math.min(index + 1, steps.length - 1) : Math.max(index - 1, 0);
      state.zoom = steps[next];
      applyZoom();
    }, { passive: false });
  }

  function moveDividerTo(event) {
    const rect = $("viewer").getBoundingClientRect();
    state.fraction = Math.max(0, Math.min(1, (event.clientX - rect.left) / rect.width));
    $("compare-slider").value = String(Math.round(state.fraction * 1000));
    updateDivider();
  }

  // ---------------------------------------------------------------- wiring
  function wire() {
    const dropzone = $("dropzone");
    $("file-input").addEventListener("change", (event) => chooseFile(event.target.files[0]));
    dropzone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); $("file-input").click(); }
    });
    for (const type of ["dragenter", "dragover"]) {
      dropzone.addEventListener(type, (event) => { event.preventDefault(); dropzone.classList.add("dragging"); });
    }
    for (const type of ["dragleave", "drop"]) {
      dropzone.addEventListener(type, () => dropzone.classList.remove("dragging"));
    }
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      const files = event.dataTransfer && event.dataTransfer.files;
      if (files && files.length) chooseFile(files[0]);
    });
    // A file dropped outside the drop zone must not make the browser navigate away.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());

    $("noise-kind").addEventListener("change", describeNoise);
    $("new-seed").addEventListener("click", () => { $("noise-seed").value = randomSeed(); });
    $("model-select").addEventListener("change", () => { describeModel(); updateDenoiseButton(); });
    $("denoise-button").addEventListener("click", startJob);
    $("cancel-button").addEventListener("click", cancelJob);
    $("compare-slider").addEventListener("input", (event) => {
      state.fraction = Number(event.target.value) / 1000;
      updateDivider();
    });
    $("left-choice").addEventListener("change", (event) => {
      if (!state.result) return;
      const value = event.target.value;
      $("img-left").src = leftImageUrl(value);
      $("img-left").alt = event.target.selectedOptions[0].textContent;
    });
    for (const button of document.querySelectorAll(".zoom-button")) {
      button.addEventListener("click", () => { state.zoom = button.dataset.zoom; applyZoom(); });
    }
    window.addEventListener("resize", applyZoom);
    enablePanning();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    wire();
    try {
      await loadInfo();
      describeNoise();
      document.body.dataset.ready = "true";
    } catch (error) {
      showError("Could not reach the server: " + error.message);
    }
  });
})();
