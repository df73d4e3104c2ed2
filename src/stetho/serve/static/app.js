// stetho web page: upload or record a heart sound, or stream one live. Vanilla JS, no
// external resources; talks only to its own server (/health, /v1/predict, /v1/stream).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  health: null, socket: null, capture: null, feeder: null, trend: [], liveWave: null,
  playerUrl: null, waveGeometry: null,
};

// ---------------------------------------------------------------------------------- helpers

function apiKey() {
  return $("api-key").value.trim();
}

function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

function show(el, on) {
  el.classList.toggle("hidden", !on);
}

function fmt(value, digits, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return `${Number(value).toFixed(digits)}${unit || ""}`;
}

/** What a person reads for a class name ("extrahls" is "extra heart sound"), from the server. */
function displayName(cls, names) {
  const known = names || (state.health && state.health.display_names) || {};
  return known[cls] || cls;
}

/**
 * Show a file name that may wrap after its separators (_ - . /), as names have no spaces: a
 * <wbr> after each, so copying the text still gives the name itself; the title holds it too.
 */
function setFileName(el, name) {
  el.replaceChildren();
  for (const part of name.split(/(?<=[_\-./])/)) el.append(part, document.createElement("wbr"));
  el.title = name;
}

function setError(el, message) {
  el.textContent = message || "";
  show(el, Boolean(message));
}

/** Size a canvas to its CSS box at the screen's pixel ratio; returns [ctx, width, height]. */
function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = Number(canvas.getAttribute("height-css") || canvas.getAttribute("height"));
  canvas.setAttribute("height-css", String(height));
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return [ctx, width, height];
}

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const PALETTE = Array.from({ length: 256 }, (_, i) => {
  const x = (i / 255) * (VIRIDIS.length - 1);
  const k = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - k;
  return VIRIDIS[k].map((c, j) => Math.round(c + f * (VIRIDIS[k + 1][j] - c)));
});

function timeAxis(ctx, x0, width, y, seconds) {
  ctx.fillStyle = "#5f6b7d";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "center";
  const step = seconds > 40 ? 10 : seconds > 16 ? 5 : seconds > 6 ? 2 : 1;
  for (let t = 0; t <= seconds + 1e-9; t += step) {
    ctx.fillText(`${t} s`, x0 + (t / seconds) * width, y);
  }
}

// ---------------------------------------------------------------------------------- health

async function loadHealth() {
  try {
    const response = await fetch("/health");
    const h = await response.json();
    state.health = h;
    $("model-info").innerHTML = "";
    const b = document.createElement("b");
    b.textContent = h.model;
    const classes = h.classes.map((c) => displayName(c, h.display_names)).join(", ");
    $("model-info").append("model ", b, ` · ${h.kind} · ${classes} · ${h.sample_rate} Hz`);
    $("version").textContent = h.version;
    $("limit-mb").textContent = String(Math.round(h.max_upload_bytes / 1e6));
    $("limit-s").textContent = String(h.max_duration_s);
    $("live-k").textContent = String(h.alert_windows);
    $("live-thr").textContent = String(h.alert_threshold);
    show($("keybar"), h.auth_required);
    const saved = sessionStorage.getItem("stetho-api-key");
    if (saved) $("api-key").value = saved;
  } catch (err) {
    $("model-info").textContent = "server unreachable";
  }
}

// ---------------------------------------------------------------------------------- one recording

/** Let the user listen to what was uploaded: the file itself, from an object URL. */
function loadPlayer(blob) {
  const player = $("player");
  player.pause();
  if (state.playerUrl) URL.revokeObjectURL(state.playerUrl);
  state.playerUrl = URL.createObjectURL(blob);
  player.src = state.playerUrl;
  show(player, true);
  show($("playhead"), false);
}

async function analyse(blob, name) {
  setError($("record-error"), "");
  show($("record-busy"), true);
  setFileName($("file-name"), name);
  loadPlayer(blob);
  const form = new FormData();
  form.append("file", blob, name);
  try {
    const response = await fetch("/v1/predict?detail=true", {
      method: "POST", body: form, headers: authHeaders(),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const reason = body.detail || response.statusText;
      setError($("record-error"), `Could not analyse ${name} (${response.status} ${body.error || ""}): ${reason}`);
      show($("result"), false);
      return;
    }
    renderResult(body);
  } catch (err) {
    setError($("record-error"), `Request failed: ${err}`);
  } finally {
    show($("record-busy"), false);
  }
}

function renderBars(container, classes, probs, names) {
  container.innerHTML = "";
  let top = 0;
  classes.forEach((c, i) => { if (probs[i] > probs[top]) top = i; });
  classes.forEach((c, i) => {
    const row = document.createElement("div");
    row.className = `bar${i === top ? " best" : ""}`;
    row.dataset.cls = c;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = displayName(c, names);
    name.title = c;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * probs[i]).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * probs[i]).toFixed(1)}%`;
    row.append(name, track, value);
    container.append(row);
  });
}

function qualityText(analysis) {
  if (analysis.quality === null || analysis.quality === undefined) return "–";
  return `${Math.round(100 * analysis.quality)} %`;
}

function renderResult(r) {
  const a = r.analysis || {};
  const verdict = $("verdict");
  verdict.className = `verdict${r.abnormal ? " abnormal" : ""}${a.usable === false ? " unsure" : ""}`;
  $("res-label").textContent = r.display_label || displayName(r.label, r.display_names);
  const thr = state.health ? state.health.alert_threshold : 0.5;
  $("res-abnormal").textContent =
    `abnormal probability ${fmt(r.abnormal_prob, 2)} (${r.abnormal ? "at or above" : "below"} ${thr})`;
  $("res-hr").textContent = fmt(a.heart_rate_bpm, 0, " bpm");
  const q = $("res-quality");
  q.textContent = qualityText(a);
  const tag = document.createElement("span");
  tag.className = `tag ${a.usable ? "ok" : "bad"}`;
  tag.textContent = a.usable ? "usable" : "re-record";
  q.append(tag);
  $("res-duration").textContent = fmt(r.duration_s, 1, " s");
  const file = $("res-file");
  const name = document.createElement("span");
  name.className = "fname-text";
  setFileName(name, r.filename || "–");
  file.replaceChildren(name);
  file.title = r.filename || "";
  const sr = document.createElement("small");
  sr.textContent = `${r.sample_rate} Hz`;
  file.append(sr);
  renderBars($("res-bars"), r.classes, r.classes.map((c) => r[`prob_${c}`]), r.display_names);
  show($("result"), true);
  state.lastResult = r;
  drawResultPlots();
}

function drawResultPlots() {
  const r = state.lastResult;
  if (!r || !r.detail) return;
  drawWave($("wave"), r.detail.waveform, r.analysis || {}, r.duration_s);
  drawSpectrogram($("spec"), r.detail.spectrogram, r.duration_s);
}

function drawWave(canvas, env, analysis, duration) {
  const [ctx, width, height] = fitCanvas(canvas);
  const pad = { l: 8, r: 8, t: 18, b: 18 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const peak = Math.max(1e-6, ...env.max.map(Math.abs), ...env.min.map(Math.abs));
  const mid = pad.t + h / 2;
  const n = env.min.length;
  ctx.strokeStyle = "#34435c";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let i = 0; i < n; i++) {
    const x = pad.l + ((i + 0.5) / n) * w;
    ctx.moveTo(x, mid - (env.max[i] / peak) * (h / 2));
    ctx.lineTo(x, mid - (env.min[i] / peak) * (h / 2) + 0.5);
  }
  ctx.stroke();
  const marks = [["S1", analysis.s1 || [], "#2456c9"], ["S2", analysis.s2 || [], "#e07b00"]];
  const labelled = [];
  for (const [label, times, color] of marks) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    for (const t of times) {
      if (t === null) continue;
      const x = pad.l + (t / duration) * w;
      ctx.beginPath();
      ctx.moveTo(x, pad.t);
      ctx.lineTo(x, pad.t + h);
      ctx.stroke();
      labelled.push({ label, x });
    }
  }
  placeMarkLabels($("wave-labels"), labelled);
  state.waveGeometry = { x0: pad.l, width: w, duration };
  timeAxis(ctx, pad.l, w, height - 4, duration);
}

/**
 * Name the S1/S2 lines above the plot as text the page can lay out (and tests can measure).
 * On a narrow screen the lines are closer than a label is wide: a label that would touch the
 * previous one is left out, so the shown ones never overlap; every line is still drawn.
 */
function placeMarkLabels(layer, marks) {
  layer.innerHTML = "";
  layer.dataset.marks = String(marks.length);
  const gap = 3;
  let right = -Infinity;
  for (const { label, x } of [...marks].sort((a, b) => a.x - b.x)) {
    const span = document.createElement("span");
    span.className = `mark-label ${label.toLowerCase()}`;
    span.textContent = label;
    span.style.left = `${x}px`;
    layer.append(span);
    const half = span.offsetWidth / 2;
    if (x - half < right + gap) {
      span.remove();
      continue;
    }
    right = x + half;
  }
}

/** Follow playback on the waveform with a vertical line. */
function movePlayhead() {
  const player = $("player");
  const g = state.waveGeometry;
  const head = $("playhead");
  if (!g || !player.src || (player.paused && player.currentTime === 0)) {
    show(head, false);
    return;
  }
  const t = Math.min(player.currentTime, g.duration);
  head.style.left = `${g.x0 + (t / g.duration) * g.width}px`;
  show(head, true);
  if (!player.paused) requestAnimationFrame(movePlayhead);
}

function drawSpectrogram(canvas, spec, duration) {
  const [ctx, width, height] = fitCanvas(canvas);
  const pad = { l: 52, r: 8, t: 6, b: 18 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const rows = spec.levels.length;
  const cols = rows ? spec.levels[0].length : 0;
  if (!cols) return;
  const image = new ImageData(cols, rows);
  for (let f = 0; f < rows; f++) {
    const y = rows - 1 - f; // low frequencies at the bottom
    for (let t = 0; t < cols; t++) {
      const [r, g, b] = PALETTE[spec.levels[f][t]];
      const k = 4 * (y * cols + t);
      image.data[k] = r;
      image.data[k + 1] = g;
      image.data[k + 2] = b;
      image.data[k + 3] = 255;
    }
  }
  const tmp = document.createElement("canvas");
  tmp.width = cols;
  tmp.height = rows;
  tmp.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = true;
  const shown = Math.min(duration, cols * spec.seconds_per_frame);
  ctx.drawImage(tmp, pad.l, pad.t, (shown / duration) * w, h);
  ctx.fillStyle = "#5f6b7d";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "right";
  const fmax = spec.max_frequency_hz;
  const step = fmax > 1500 ? 500 : 250;
  for (let f = 0; f <= fmax; f += step) {
    ctx.fillText(`${f} Hz`, pad.l - 6, pad.t + h - (f / fmax) * h + 4);
  }
  timeAxis(ctx, pad.l, w, height - 4, duration);
  $("spec-range").textContent = `0–${fmax} Hz, 70 dB range`;
}

// ---------------------------------------------------------------------------------- audio capture

const TAP_WORKLET = `
class StethoTap extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("stetho-tap", StethoTap);
`;

/** Microphone samples (mono float32 at the context's rate) handed to onSamples. */
async function startMicrophone(onSamples) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
  });
  const ctx = new AudioContext();
  const url = URL.createObjectURL(new Blob([TAP_WORKLET], { type: "text/javascript" }));
  await ctx.audioWorklet.addModule(url);
  URL.revokeObjectURL(url);
  const source = ctx.createMediaStreamSource(stream);
  const tap = new AudioWorkletNode(ctx, "stetho-tap", { numberOfInputs: 1, numberOfOutputs: 0 });
  tap.port.onmessage = (event) => onSamples(event.data);
  source.connect(tap);
  return {
    sampleRate: ctx.sampleRate,
    stop() {
      tap.port.onmessage = null;
      source.disconnect();
      stream.getTracks().forEach((t) => t.stop());
      ctx.close();
    },
  };
}

/** 16-bit PCM WAV bytes of mono float32 samples. */
function encodeWav(samples, sampleRate) {
  const buffer = new ArrayBuffer(44 + 2 * samples.length);
  const view = new DataView(buffer);
  const text = (offset, s) => [...s].forEach((ch, i) => view.setUint8(offset + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + 2 * samples.length, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, 2 * sampleRate, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, 2 * samples.length, true);
  samples.forEach((s, i) => view.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, s)) * 32767, true));
  return new Blob([buffer], { type: "audio/wav" });
}

async function recordFromMicrophone() {
  const button = $("mic-record");
  if (state.capture) return;
  setError($("record-error"), "");
  const chunks = [];
  const seconds = 10;
  try {
    state.capture = await startMicrophone((x) => chunks.push(x));
  } catch (err) {
    setError($("record-error"), `Microphone unavailable: ${err.message || err}`);
    return;
  }
  button.classList.add("recording");
  for (let left = seconds; left > 0; left--) {
    button.textContent = `● Recording… ${left} s`;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const sampleRate = state.capture.sampleRate;
  state.capture.stop();
  state.capture = null;
  button.classList.remove("recording");
  button.textContent = "● Record 10 s";
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const samples = new Float32Array(total);
  let offset = 0;
  for (const c of chunks) { samples.set(c, offset); offset += c.length; }
  await analyse(encodeWav(samples, sampleRate), "microphone.wav");
}

// ---------------------------------------------------------------------------------- live stream

const FRAME_SECONDS = 0.25;
const LIVE_VIEW_SECONDS = 10;

function setAlert(kind, text) {
  const el = $("alert-state");
  el.className = `alert-state ${kind}`;
  $("alert-text").textContent = text;
}

function logEvent(text, kind) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  if (kind) li.className = kind;
  $("events").prepend(li);
  while ($("events").children.length > 200) $("events").lastChild.remove();
}

/** Keep a min/max envelope of the last LIVE_VIEW_SECONDS of streamed audio for drawing. */
function liveWaveInit(sampleRate) {
  const points = 1000;
  state.liveWave = {
    per: Math.max(1, Math.round((LIVE_VIEW_SECONDS * sampleRate) / points)),
    points, min: [], max: [], acc: [],
  };
}

function liveWavePush(samples) {
  const lw = state.liveWave;
  for (const s of samples) {
    lw.acc.push(s);
    if (lw.acc.length === lw.per) {
      lw.min.push(Math.min(...lw.acc));
      lw.max.push(Math.max(...lw.acc));
      lw.acc = [];
    }
  }
  if (lw.min.length > lw.points) {
    lw.min.splice(0, lw.min.length - lw.points);
    lw.max.splice(0, lw.max.length - lw.points);
  }
}

function drawLive() {
  const lw = state.liveWave;
  if (lw) {
    const [ctx, width, height] = fitCanvas($("live-wave"));
    const peak = Math.max(1e-4, ...lw.max.map(Math.abs), ...lw.min.map(Math.abs));
    ctx.strokeStyle = "#34435c";
    ctx.beginPath();
    lw.min.forEach((lo, i) => {
      const x = (i / lw.points) * width;
      ctx.moveTo(x, height / 2 - (lw.max[i] / peak) * (height / 2 - 6));
      ctx.lineTo(x, height / 2 - (lo / peak) * (height / 2 - 6) + 0.5);
    });
    ctx.stroke();
  }
  const [ctx, width, height] = fitCanvas($("live-trend"));
  const pad = { l: 34, r: 8, t: 8, b: 18 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const y = (p) => pad.t + (1 - p) * h;
  ctx.fillStyle = "#5f6b7d";
  ctx.font = "11px system-ui, sans-serif";
  ctx.textAlign = "right";
  [0, 0.5, 1].forEach((p) => ctx.fillText(p.toFixed(1), pad.l - 6, y(p) + 4));
  const thr = state.health ? state.health.alert_threshold : 0.5;
  ctx.strokeStyle = "#c62a2a";
  ctx.setLineDash([5, 4]);
  ctx.beginPath();
  ctx.moveTo(pad.l, y(thr));
  ctx.lineTo(pad.l + w, y(thr));
  ctx.stroke();
  ctx.setLineDash([]);
  const points = state.trend;
  if (!points.length) return;
  const tEnd = points[points.length - 1].t;
  const span = Math.max(60, tEnd);
  const x = (t) => pad.l + ((t - (tEnd - span)) / span) * w;
  ctx.strokeStyle = "#2456c9";
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach((pt, i) => (i ? ctx.lineTo(x(pt.t), y(pt.p)) : ctx.moveTo(x(pt.t), y(pt.p))));
  ctx.stroke();
  ctx.fillStyle = "#2456c9";
  points.forEach((pt) => { ctx.beginPath(); ctx.arc(x(pt.t), y(pt.p), 2.5, 0, 2 * Math.PI); ctx.fill(); });
}

async function decodeFile(file, sampleRate) {
  const ctx = new OfflineAudioContext(1, 1, sampleRate);
  const buffer = await ctx.decodeAudioData(await file.arrayBuffer());
  if (buffer.numberOfChannels === 1) return buffer.getChannelData(0);
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    buffer.getChannelData(c).forEach((v, i) => { mono[i] += v / buffer.numberOfChannels; });
  }
  return mono;
}

function handleMessage(m) {
  if (m.type === "ready") {
    $("live-hop").textContent = String(m.hop_seconds);
    $("live-window").textContent = String(m.window_seconds);
    $("live-k").textContent = String(m.alert_windows);
    $("live-thr").textContent = String(m.alert_threshold);
    setAlert("ok", `Listening · first result after ${m.window_seconds} s`);
    logEvent(`stream ready at ${m.sample_rate} Hz (${m.encoding})`);
  } else if (m.type === "prediction") {
    const classes = Object.keys(m.probs);
    renderBars($("live-bars"), classes, classes.map((c) => m.probs[c]));
    $("live-label").textContent = displayName(m.label);
    $("live-abn").textContent = fmt(m.abnormal_prob, 2);
    $("live-hr").textContent = fmt(m.heart_rate_bpm, 0, " bpm");
    $("live-quality").textContent = m.quality === null ? "–" : `${Math.round(100 * m.quality)} %${m.usable ? "" : " (poor)"}`;
    $("live-time").textContent = fmt(m.t_end_s, 1, " s");
    state.trend.push({ t: m.t_end_s, p: m.abnormal_prob });
    if (!m.alert) setAlert("ok", "No alert");
    logEvent(`t=${m.t_end_s.toFixed(1)} s  ${displayName(m.label)}  abnormal ${m.abnormal_prob.toFixed(2)}  HR ${fmt(m.heart_rate_bpm, 0)}`);
    drawLive();
  } else if (m.type === "alert") {
    if (m.state === "raised") {
      setAlert("raised", `ALERT · abnormal for ${m.windows} windows (${displayName(m.label)})`);
      logEvent(`ALERT raised at t=${m.t_end_s.toFixed(1)} s: ${displayName(m.label)}, abnormal ${m.abnormal_prob.toFixed(2)}`, "alert-raised");
    } else {
      setAlert("ok", "Alert cleared");
      logEvent(`alert cleared at t=${m.t_end_s.toFixed(1)} s`, "alert-cleared");
    }
  } else if (m.type === "end") {
    logEvent(`stream ended: ${m.seconds_received.toFixed(1)} s sent, ${m.windows} windows`);
  }
}

function stopFeeding() {
  if (state.feeder) clearInterval(state.feeder);
  state.feeder = null;
  if (state.capture) state.capture.stop();
  state.capture = null;
}

function liveStopped(text) {
  stopFeeding();
  state.socket = null;
  $("live-start").disabled = false;
  $("live-stop").disabled = true;
  if ($("alert-state").classList.contains("raised")) {
    $("alert-text").textContent += " · stream stopped";
  } else {
    setAlert("idle", text);
  }
}

async function startLive() {
  setError($("live-error"), "");
  const useFile = $("live-source").value === "file";
  let samples = null;
  let sampleRate = 8000;
  if (useFile) {
    const file = $("live-file").files[0];
    if (!file) {
      setError($("live-error"), "Choose a recording to stream first.");
      return;
    }
    try {
      samples = await decodeFile(file, sampleRate);
    } catch (err) {
      setError($("live-error"), `Cannot decode ${file.name} in this browser: ${err.message || err}`);
      return;
    }
  }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const query = apiKey() ? `?api_key=${encodeURIComponent(apiKey())}` : "";
  const socket = new WebSocket(`${proto}://${location.host}/v1/stream${query}`);
  socket.binaryType = "arraybuffer";
  state.socket = socket;
  state.trend = [];
  $("events").innerHTML = "";
  $("live-start").disabled = true;
  $("live-stop").disabled = false;
  setAlert("idle", "Connecting…");

  let started = false; // no binary frame may precede the start message
  const sendFrame = (frame) => {
    if (!started || socket.readyState !== WebSocket.OPEN) return;
    socket.send(frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength));
    liveWavePush(frame);
  };

  socket.onmessage = (message) => {
    const m = JSON.parse(message.data);
    handleMessage(m);
    if (m.type !== "ready" || !useFile || state.feeder) return;
    const n = Math.round(FRAME_SECONDS * sampleRate);
    const period = (1000 * FRAME_SECONDS) / ($("live-fast").checked ? 8 : 1);
    let offset = 0;
    state.feeder = setInterval(() => {
      if (offset >= samples.length) offset = 0; // loop the recording until stopped
      sendFrame(samples.subarray(offset, offset + n));
      offset += n;
      drawLive();
    }, period);
  };
  socket.onopen = async () => {
    if (!useFile) {
      let pending = [];
      let count = 0;
      try {
        state.capture = await startMicrophone((x) => {
          pending.push(x);
          count += x.length;
          if (count >= FRAME_SECONDS * state.capture.sampleRate) {
            const frame = new Float32Array(count);
            let o = 0;
            for (const c of pending) { frame.set(c, o); o += c.length; }
            pending = [];
            count = 0;
            sendFrame(frame);
            drawLive();
          }
        });
      } catch (err) {
        setError($("live-error"), `Microphone unavailable: ${err.message || err}`);
        socket.close();
        return;
      }
      sampleRate = state.capture.sampleRate;
    }
    liveWaveInit(sampleRate);
    socket.send(JSON.stringify({
      type: "start",
      sample_rate: Math.round(sampleRate),
      encoding: "float32_le",
      hop_seconds: 2,
      device_id: $("device-id").value.trim() || null,
    }));
    started = true;
  };
  socket.onclose = (event) => {
    if (event.code !== 1000 && event.code !== 1005) {
      setError($("live-error"), `Stream closed by the server (${event.code}): ${event.reason || "connection lost"}`);
    }
    liveStopped("Not streaming");
  };
  socket.onerror = () => setError($("live-error"), "WebSocket error: is the server reachable?");
}

function stopLive() {
  stopFeeding();
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ type: "stop" }));
  }
}

// ---------------------------------------------------------------------------------- wiring

function selectTab(name) {
  for (const tab of ["record", "live"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    show($(`panel-${tab}`), tab === name);
  }
  if (name === "live") drawLive();
  else drawResultPlots();
}

function wire() {
  $("tab-record").addEventListener("click", () => selectTab("record"));
  $("tab-live").addEventListener("click", () => selectTab("live"));
  $("api-key").addEventListener("change", () => sessionStorage.setItem("stetho-api-key", apiKey()));
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) analyse(file, file.name);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) analyse(file, file.name);
  });
  $("mic-record").addEventListener("click", recordFromMicrophone);
  for (const event of ["play", "seeked", "pause", "ended"]) {
    $("player").addEventListener(event, movePlayhead);
  }
  $("live-source").addEventListener("change", () => show($("live-file"), $("live-source").value === "file"));
  $("live-start").addEventListener("click", startLive);
  $("live-stop").addEventListener("click", stopLive);
  window.addEventListener("resize", () => { drawResultPlots(); drawLive(); });
  setAlert("idle", "Not streaming");
  loadHealth();
}

document.addEventListener("DOMContentLoaded", wire);
