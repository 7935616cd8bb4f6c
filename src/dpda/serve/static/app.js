// dpda serve page: upload or record a clip, show the verdict, the waveform and the per-window timeline.
// Plain JavaScript, no libraries, nothing loaded from other hosts.
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (x, digits) => (x === null || x === undefined ? "-" : Number(x).toFixed(digits));
let current = null; // the last result, for hovering the timeline

function show(el, on) { el.hidden = !on; }

function setBusy(text, fraction) {
  show($("busy"), text !== null);
  if (text === null) return;
  $("status").textContent = text;
  const bar = $("progress");
  if (fraction === null) bar.removeAttribute("value"); else bar.value = fraction;
}

function fail(message) {
  setBusy(null);
  $("error").textContent = message;
  show($("error"), true);
}

// ---- model card --------------------------------------------------------------------------------

function cardRows(card) {
  const cal = card.calibration;
  const train = card.training_data;
  const prov = card.provenance || {};
  return [
    ["architecture", card.architecture],
    ["format / runtime", `${card.format} / ${card.runtime}`],
    ["input window", `${fmt(card.window_seconds, 3)} s (${card.window_samples} samples at ${card.sample_rate} Hz), hop ${card.hop_samples} samples`],
    ["score", card.score],
    ["decision threshold", card.threshold === null ? card.threshold_source : `${fmt(card.threshold, 4)} (${card.threshold_source})`],
    ["calibration", cal ? `P(bona fide) = sigmoid(${fmt(cal.a, 4)} * score + ${fmt(cal.b, 4)})` : "none (scores are not probabilities)"],
    ["training data", train ? JSON.stringify(train) : "not recorded"],
    ["file", prov.file ? `${prov.file}${prov.sha256 ? " (sha256 " + prov.sha256.slice(0, 16) + "...)" : ""}` : "-"],
    ["provenance", provenance(prov)],
  ];
}

function provenance(prov) {
  const rest = Object.entries(prov).filter(([k]) => !["file", "sha256", "size_bytes"].includes(k));
  return rest.length ? rest.map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join("; ") : "not recorded";
}

async function loadCard() {
  try {
    const reply = await fetch("/v1/model");
    const card = await reply.json();
    const dl = $("card-fields");
    dl.textContent = "";
    for (const [name, value] of cardRows(card)) {
      const dt = document.createElement("dt"); dt.textContent = name;
      const dd = document.createElement("dd"); dd.textContent = value;
      dl.append(dt, dd);
    }
  } catch (e) {
    $("card-fields").textContent = "could not load the model card: " + e;
  }
}

// ---- drawing -----------------------------------------------------------------------------------

function drawWave(result) {
  const c = $("wave"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const lo = result.envelope.min, hi = result.envelope.max, n = lo.length, mid = c.height / 2;
  const peak = Math.max(1e-6, ...hi.map(Math.abs), ...lo.map(Math.abs));
  g.fillStyle = "#3d4a66";
  for (let i = 0; i < n; i++) {
    const x = (i / n) * c.width, w = Math.max(1, c.width / n);
    const top = mid - (hi[i] / peak) * (mid - 4), bottom = mid - (lo[i] / peak) * (mid - 4);
    g.fillRect(x, top, w, Math.max(1, bottom - top));
  }
}

function drawTimeline(result) {
  const c = $("timeline"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const span = Math.max(result.duration_seconds, 1e-9);
  for (const w of result.windows) {
    const x0 = (w.start / span) * c.width, x1 = (w.end / span) * c.width;
    const strength = w.probability === null ? 1 : 0.35 + 0.65 * Math.abs(w.probability - 0.5) * 2;
    g.globalAlpha = strength;
    g.fillStyle = w.decision === "bonafide" ? "#1b8a3a" : w.decision === "spoof" ? "#c0262d" : "#999";
    g.fillRect(x0, 0, Math.max(1, x1 - x0), c.height);
    g.globalAlpha = 1;
    g.fillStyle = "#fff";
    g.fillRect(x0, 0, 1, c.height); // window boundary
  }
}

function hover(event) {
  if (!current) return;
  const box = $("timeline").getBoundingClientRect();
  const t = ((event.clientX - box.left) / box.width) * current.duration_seconds;
  const hits = current.windows.filter((w) => t >= w.start && t <= w.end);
  if (!hits.length) return;
  const w = hits[hits.length - 1];
  $("hover").textContent = `${fmt(w.start, 2)}-${fmt(w.end, 2)} s: score ${fmt(w.score, 3)}, ` +
    `P(bona fide) ${w.probability === null ? "uncalibrated" : fmt(w.probability, 3)}, ${w.decision}`;
}

// ---- result ------------------------------------------------------------------------------------

function render(result) {
  current = result;
  setBusy(null);
  show($("error"), false);
  const v = $("verdict");
  if (result.decision === null) {
    v.textContent = "No verdict"; v.className = "";
  } else {
    v.textContent = result.decision === "bonafide" ? "Likely bona fide (genuine speech)" : "Likely spoof (synthetic or converted speech)";
    v.className = result.decision;
  }
  const p = result.probability === null ? "uncalibrated model (no probability)" : `P(bona fide) = ${fmt(result.probability, 3)}`;
  $("summary").textContent = `${result.file.name || "recording"}: ${fmt(result.duration_seconds, 2)} s, ` +
    `${result.windows.length} window(s) of ${fmt(result.window_seconds, 2)} s; score ${fmt(result.score, 3)}; ${p}. ` +
    `Decision: ${result.decision_rule}.` + (result.probability_disagrees ? " P(bona fide) and the decision disagree: the threshold decides." : "");
  const warn = $("warnings");
  warn.textContent = "";
  for (const text of result.warnings.concat(result.error ? [result.error] : [])) {
    const li = document.createElement("li"); li.textContent = "warning: " + text; warn.append(li);
  }
  $("axis-end").textContent = `${fmt(result.duration_seconds, 2)} s`;
  const body = $("windows").querySelector("tbody");
  body.textContent = "";
  for (const w of result.windows) {
    const tr = document.createElement("tr");
    for (const cell of [fmt(w.start, 2), fmt(w.end, 2), fmt(w.score, 4), w.probability === null ? "-" : fmt(w.probability, 3), w.decision]) {
      const td = document.createElement("td"); td.textContent = cell; tr.append(td);
    }
    body.append(tr);
  }
  show($("result"), true);
  drawWave(result);
  drawTimeline(result);
}

// ---- upload ------------------------------------------------------------------------------------

function upload(blob, name) {
  show($("error"), false);
  setBusy("uploading...", 0);
  const form = new FormData();
  form.append("file", blob, name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/detect?progress=true");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) setBusy(`uploading ${Math.round((100 * e.loaded) / e.total)}%`, e.loaded / e.total); };
  xhr.upload.onload = () => setBusy("decoding...", null);
  let seen = 0;
  const lines = () => {
    const text = xhr.responseText, out = [];
    let end;
    while ((end = text.indexOf("\n", seen)) >= 0) { out.push(text.slice(seen, end)); seen = end + 1; }
    return out.filter((l) => l.trim()).map((l) => JSON.parse(l));
  };
  const handle = (msg) => {
    if (msg.progress) setBusy(`scoring: ${msg.progress.done}/${msg.progress.total} windows`, msg.progress.total ? msg.progress.done / msg.progress.total : null);
    else if (msg.result) render(msg.result);
    else if (msg.error) fail(msg.error);
  };
  xhr.onprogress = () => { if (xhr.status === 200) lines().forEach(handle); };
  xhr.onload = () => {
    if (xhr.status !== 200) {
      let message = `the server answered ${xhr.status}`;
      try { message = JSON.parse(xhr.responseText).error || message; } catch (e) { /* not JSON */ }
      fail(message);
      return;
    }
    lines().forEach(handle);
  };
  xhr.onerror = () => fail("the server cannot be reached");
  xhr.send(form);
}

// ---- microphone: 16-bit PCM WAV encoded here (the server reads WAV everywhere) ---------------

function wavBlob(chunks, rate) {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const view = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (o, s) => { for (let i = 0; i < s.length; i++) view.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, rate, true); view.setUint32(28, 2 * rate, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) for (const s of c) { view.setInt16(o, Math.max(-1, Math.min(1, s)) * 32767, true); o += 2; }
  return new Blob([view], { type: "audio/wav" });
}

let recorder = null;

async function toggleRecording() {
  const button = $("record");
  if (recorder) {
    const { ctx, stream, node, chunks } = recorder;
    recorder = null;
    node.disconnect(); stream.getTracks().forEach((t) => t.stop());
    await ctx.close();
    button.textContent = "\u25CF Record from the microphone"; button.classList.remove("recording");
    if (chunks.length) upload(wavBlob(chunks, ctx.sampleRate), "recording.wav");
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const node = ctx.createScriptProcessor(4096, 1, 1);
    const chunks = [];
    node.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    source.connect(node); node.connect(ctx.destination);
    recorder = { ctx, stream, node, chunks };
    button.textContent = "\u25A0 Stop and analyse"; button.classList.add("recording");
  } catch (e) {
    fail("the microphone is not available: " + e.message);
  }
}

// ---- wiring ------------------------------------------------------------------------------------

function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) upload(f, f.name); e.target.value = ""; });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    const f = e.dataTransfer.files[0]; if (f) upload(f, f.name);
  });
  const record = $("record");
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.AudioContext) {
    record.addEventListener("click", toggleRecording);
  } else {
    record.disabled = true;
    record.title = "this browser does not allow recording here (it needs https or localhost)";
  }
  $("timeline").addEventListener("mousemove", hover);
  loadCard();
}

init();
