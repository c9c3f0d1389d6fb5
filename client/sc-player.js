// @ts-check
// The /player/ page: SoundCloud's embedded player, served by the gateway.
//
// The page composes a hidden <ztream-player> (playback, playlist, prefetch
// of the next track, P2P per track) and draws its own interface around it:
// artwork, title, artist, the waveform as the seek bar, a "from listeners"
// readout, the track list. It speaks SoundCloud's widget protocol
// (sc-widget-protocol.js) with its parent window, so that a host page that
// uses SoundCloud's api.js keeps working (docs/soundcloud-dropin.md).
//
// Messages are taken only from the parent window, only from an origin the
// gateway's embed_origins allows, and, once the parent's origin is known
// (location.ancestorOrigins, the referrer, or the first message), only from
// that origin. Everything is posted to that origin; only "ready", which
// carries nothing, goes to "*" while the parent's origin is still unknown.

import "./ztream-player.js";
import { formatTime, scalePeaks, seekKey, spokenTime } from "./format.js";
import {
  EVENTS,
  WidgetSession,
  knownParentOrigin,
  originAllowed,
  playerOptions,
  progressValue,
  soundObject,
  soundcloudId,
} from "./sc-widget-protocol.js";

const body = document.body;
const readJSON = (text, fallback) => {
  try {
    return JSON.parse(text);
  } catch {
    return fallback;
  }
};
const data = readJSON(body.dataset.player || "{}", {});
const allowed = (() => {
  const parsed = readJSON(body.dataset.origins || '["*"]', []);
  return Array.isArray(parsed) ? parsed.filter((o) => typeof o === "string") : [];
})();
const options = playerOptions(location.search);
const publicUrl = new URL(import.meta.url).origin;
const tracks = Array.isArray(data.tracks) ? data.tracks : [];

const $ = (sel) => document.querySelector(sel);
const ui = {
  main: $(".sc"),
  art: $(".art"),
  play: $(".play"),
  user: $(".user"),
  title: $(".title"),
  share: $(".share"),
  wave: $(".wave"),
  canvas: $(".wave canvas"),
  elapsed: $(".elapsed"),
  total: $(".total"),
  status: $(".status"),
  list: $(".list"),
};

if (options.color) document.documentElement.style.setProperty("--accent", options.color);
body.classList.toggle("visual", options.visual);

// ---- the engine ------------------------------------------------------------------

const engine = /** @type {import("./ztream-player.js").ZtreamPlayer} */ (document.createElement("ztream-player"));
engine.hidden = true;
engine.setAttribute("preload", "none"); // nothing loads before start_track is chosen
engine.id = "engine";
// ?upload=: the page's upload policy (only stricter than the gateway's). The
// engine is hidden, so its sharing control (share-control.js) is shown here:
// the line beside the "from listeners" readout, the opt-in prompt over the stage.
if (options.upload) engine.setAttribute("data-upload", options.upload);
const consent = document.createElement("div");
consent.className = "consent";
$(".stage").append(consent);
engine.share.mount(ui.share.parentElement ?? ui.main, consent);
for (const t of tracks) {
  const el = document.createElement("ztream-track");
  el.setAttribute("src", t.src);
  if (t.title) el.setAttribute("title-override", t.title);
  engine.append(el);
}
let ready = false;
const current = () => tracks[engine.index] ?? null;
const seconds = () => (Number.isFinite(engine.duration) && engine.duration > 0 ? engine.duration : current()?.duration ?? 0);
const soundId = () => {
  const t = current();
  return t ? soundcloudId(t) ?? t.id : null;
};
const loadedSeconds = () => engine.bufferedRanges.reduce((n, [a, b]) => n + (b - a), 0);
const progress = () => progressValue({ soundId: soundId(), position: engine.currentTime, duration: seconds(), loaded: loadedSeconds() });

// ---- the protocol --------------------------------------------------------------------

const session = new WidgetSession();
const inFrame = window.parent !== window;
let parentOrigin = knownParentOrigin({ ancestorOrigins: location.ancestorOrigins ?? null, referrer: document.referrer });

function post(json, anyOrigin = false) {
  if (!inFrame || json === null) return;
  if (parentOrigin) window.parent.postMessage(json, parentOrigin);
  else if (anyOrigin) window.parent.postMessage(json, "*");
}
const emit = (name, value = progress()) => post(session.emit(name, value));

const view = {
  getVolume: () => Math.round(engine.volume * 100),
  getDuration: () => Math.round(seconds() * 1000),
  getPosition: () => Math.round((engine.currentTime || 0) * 1000),
  getSounds: () => tracks.map((t, i) => soundObject(t, { publicUrl, duration: i === engine.index ? seconds() : null })),
  getCurrentSound: () => (current() ? soundObject(current(), { publicUrl, duration: seconds() }) : null),
  getCurrentSoundIndex: () => (tracks.length ? engine.index : 0),
  isPaused: () => engine.paused,
};

function run({ method, value }) {
  switch (method) {
    case "play":
      engine.play().catch(() => {});
      break;
    case "pause":
      engine.pause();
      break;
    case "toggle":
      engine.toggle().catch(() => {});
      break;
    case "seekTo":
      // an unknown duration (not loaded yet) clamps nothing: the engine clamps once it knows
      engine.seek(seconds() > 0 ? Math.min(value / 1000, seconds()) : value / 1000);
      break;
    case "setVolume":
      engine.volume = value / 100;
      break;
    case "next":
      engine.next();
      break;
    case "prev":
      if (engine.index > 0) engine.select(engine.index - 1, { play: true });
      else engine.seek(0);
      break;
    case "skip":
      if (value < tracks.length) engine.select(value, { play: true });
      break;
    default:
      break;
  }
}

window.addEventListener("message", (e) => {
  if (!inFrame || e.source !== window.parent || !originAllowed(e.origin, allowed)) return;
  if (parentOrigin && e.origin !== parentOrigin) return;
  if (typeof e.data !== "string") return;
  if (!parentOrigin) parentOrigin = e.origin;
  const out = session.receive(e.data, view);
  if (out.reply) post(out.reply);
  if (out.command) run(out.command);
  if (ready) startAutoPlay();
});

// auto_play starts after "ready", once the host has had its chance to bind
// (its addEventListener burst is already queued when the first one arrives),
// or after a short grace when the host says nothing: no play event is lost.
let autoPlayPending = options.autoPlay;
function startAutoPlay() {
  if (!autoPlayPending) return;
  autoPlayPending = false;
  setTimeout(() => engine.play().catch(() => {}), 0);
}
const AUTOPLAY_GRACE_MS = 300;

// ---- the interface -------------------------------------------------------------------

let peaks = null;
const peakCache = new Map();

async function loadPeaks(track) {
  const url = track?.waveform_url;
  if (!url) return null;
  if (peakCache.has(url)) return peakCache.get(url);
  let out = null;
  try {
    const r = await fetch(new URL(url, publicUrl));
    const json = r.ok ? await r.json() : null;
    if (json && Array.isArray(json.peaks) && json.peaks.length > 0 && json.peaks.length <= 100000) {
      out = scalePeaks(json.peaks);
    }
  } catch {
    out = null; // drawn as a flat bar
  }
  peakCache.set(url, out);
  return out;
}

function showTrack() {
  const t = current();
  ui.title.textContent = t?.title || "Untitled";
  const link = t?.permalink || (t ? `${publicUrl}/embed/${t.id}` : "");
  if (link) ui.title.href = link;
  ui.user.textContent = options.showUser ? t?.artist || "" : "";
  const art = t?.artwork_url || t?.artwork || "";
  ui.art.hidden = !(options.showArtwork && art);
  if (!ui.art.hidden && ui.art.getAttribute("src") !== art) ui.art.src = new URL(art, publicUrl).href;
  ui.wave.setAttribute("aria-label", `Seek in ${t?.title || "the track"}`);
  peaks = null;
  loadPeaks(t).then((p) => {
    if (current() === t) {
      peaks = p;
      draw();
    }
  });
  renderList();
  draw();
}

function draw() {
  const c = ui.canvas;
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(c.clientWidth * ratio));
  const h = Math.max(1, Math.round(c.clientHeight * ratio));
  if (c.width !== w || c.height !== h) {
    c.width = w;
    c.height = h;
  }
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  const d = seconds();
  const played = d > 0 ? Math.min(1, (engine.currentTime || 0) / d) : 0;
  const loaded = d > 0 ? Math.min(1, loadedSeconds() / d) : 0;
  const style = getComputedStyle(document.documentElement);
  const accent = style.getPropertyValue("--accent").trim() || "#ff5500";
  const bar = Math.max(2, Math.round(2 * ratio));
  const gap = Math.max(1, Math.round(ratio));
  const n = Math.max(1, Math.floor(w / (bar + gap)));
  const base = h * 0.7; // bars grow up from here, a short reflection below
  for (let i = 0; i < n; i++) {
    const f = (i + 0.5) / n;
    const p = peaks ? peaks[Math.min(peaks.length - 1, Math.floor(f * peaks.length))] : 0.35;
    const height = Math.max(ratio, p * base);
    ctx.fillStyle = f <= played ? accent : f <= loaded ? "#999" : "#c8c8c8";
    ctx.fillRect(i * (bar + gap), base - height, bar, height);
    ctx.globalAlpha = 0.45;
    ctx.fillRect(i * (bar + gap), base + gap, bar, height * 0.3);
    ctx.globalAlpha = 1;
  }
  const t = engine.currentTime || 0;
  ui.elapsed.textContent = formatTime(t);
  ui.total.textContent = d > 0 ? formatTime(d) : "";
  ui.wave.setAttribute("aria-valuemax", String(Math.round(d)));
  ui.wave.setAttribute("aria-valuenow", String(Math.round(t)));
  ui.wave.setAttribute("aria-valuetext", `${spokenTime(t)} of ${spokenTime(d > 0 ? d : NaN)}`);
}

function renderList() {
  ui.list.hidden = tracks.length < 2;
  if (ui.list.hidden) return;
  if (ui.list.children.length !== tracks.length) {
    ui.list.replaceChildren(
      ...tracks.map((t, i) => {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button";
        for (const cls of ["n", "t", "d"]) b.append(Object.assign(document.createElement("span"), { className: cls }));
        b.querySelector(".n").textContent = String(i + 1);
        b.querySelector(".t").textContent = [t.artist, t.title].filter(Boolean).join(" – ") || `Track ${i + 1}`;
        b.querySelector(".d").textContent = Number.isFinite(t.duration) ? formatTime(t.duration) : "";
        b.setAttribute("aria-label", `Play ${t.title || `track ${i + 1}`}`);
        b.addEventListener("click", () => engine.select(i, { play: true }));
        li.append(b);
        return li;
      }),
    );
  }
  [...ui.list.querySelectorAll("button")].forEach((b, i) => {
    if (i === engine.index) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  });
}

function renderShare() {
  const { peerBytes = 0, httpBytes = 0 } = engine.stats || {};
  const on = options.sharing && peerBytes > 0;
  ui.share.hidden = !on;
  if (on) {
    const text = `from listeners: ${Math.round((peerBytes / (peerBytes + httpBytes)) * 100)}%`;
    if (ui.share.textContent !== text) ui.share.textContent = text;
  }
}

function setStatus(text, isError = false) {
  ui.status.textContent = text;
  ui.status.classList.toggle("error", isError);
}

function syncPlaying() {
  const playing = !engine.paused;
  ui.main.classList.toggle("playing", playing);
  ui.play.setAttribute("aria-label", playing ? "Pause" : "Play");
}

function seekFromPointer(e) {
  const rect = ui.wave.getBoundingClientRect();
  const f = rect.width > 0 ? Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width)) : 0;
  engine.seek(f * seconds());
}

ui.play.addEventListener("click", () => engine.toggle().catch(() => {}));
ui.wave.addEventListener("pointerdown", (e) => {
  if (e.button !== 0 || !ready) return;
  seekFromPointer(e);
});
ui.wave.addEventListener("keydown", (e) => {
  if (!ready) return;
  const t = seekKey(e.key, { position: engine.currentTime, duration: seconds() });
  if (t === null) return;
  e.preventDefault();
  engine.seek(t);
  draw();
});
document.addEventListener("keydown", (e) => {
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  const onControl = e.target instanceof HTMLButtonElement || e.target instanceof HTMLAnchorElement;
  if (e.key === "k" || (e.key === " " && !onControl)) {
    e.preventDefault();
    engine.toggle().catch(() => {});
  }
});
new ResizeObserver(() => draw()).observe(ui.wave);

// single_active: one playing widget per browser; the others pause (same gateway origin)
const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("ztream-sc-player") : null;
const frameId = Math.random().toString(36).slice(2);
channel?.addEventListener("message", (e) => {
  if (options.singleActive && e.data?.playing && e.data.playing !== frameId && !engine.paused) engine.pause();
});

// ---- engine events -> interface and protocol ---------------------------------------------

let lastLoaded = -1;
function loadProgress() {
  const value = progress();
  if (value.loadedProgress === lastLoaded) return;
  lastLoaded = value.loadedProgress;
  emit(EVENTS.LOAD_PROGRESS, value);
  draw();
}

engine.addEventListener("ready", () => {
  ui.play.disabled = false;
  setStatus("");
  draw();
  if (!ready) {
    ready = true;
    post(session.emit(EVENTS.READY), true);
    if (autoPlayPending) setTimeout(startAutoPlay, inFrame ? AUTOPLAY_GRACE_MS : 0);
  }
});
engine.addEventListener("trackchange", () => {
  lastLoaded = -1;
  showTrack();
});
engine.addEventListener("play", () => {
  syncPlaying();
  if (options.singleActive) channel?.postMessage({ playing: frameId });
  emit(EVENTS.PLAY);
});
engine.addEventListener("pause", () => {
  syncPlaying();
  if (!engine.audio.ended) emit(EVENTS.PAUSE);
});
engine.addEventListener("seeked", () => {
  draw();
  emit(EVENTS.SEEK);
});
engine.addEventListener("timeupdate", () => {
  draw();
  if (!engine.paused) emit(EVENTS.PLAY_PROGRESS);
});
engine.addEventListener("ended", () => {
  syncPlaying();
  emit(EVENTS.FINISH);
});
engine.addEventListener("chunk", () => {
  renderShare();
  loadProgress();
});
engine.addEventListener("durationchange", () => loadProgress());
engine.addEventListener("waiting", () => setStatus("Buffering…"));
engine.addEventListener("playing", () => setStatus(""));
// The browser refused to start without a gesture (auto_play on a phone): the
// hidden engine cannot show it, so this page does, on its own button.
engine.addEventListener("autoplayblocked", () => {
  setStatus("Press play to listen");
  ui.main.classList.add("needs-play");
});
engine.addEventListener("play", () => ui.main.classList.remove("needs-play"));
engine.addEventListener("error", (e) => {
  const { detail } = /** @type {CustomEvent} */ (/** @type {unknown} */ (e)); // the player's error event
  setStatus(detail?.setting ? `Cannot play this track: ${detail.detail}` : "Cannot play this track", true);
  emit(EVENTS.ERROR, { ...progress(), error: detail?.error ?? "error", detail: detail?.detail ?? "" });
});

if (tracks.length) {
  body.append(engine);
  const start = options.startTrack < tracks.length ? options.startTrack : 0;
  engine.select(start, { play: false });
  showTrack();
} else {
  // the page explains (server-rendered message); hosts still get their ready
  ui.play.disabled = true;
  ui.wave.setAttribute("aria-disabled", "true");
  /** @type {HTMLElement} */ (document.querySelector(".stage")).hidden = Boolean(data.error);
  post(session.emit(EVENTS.READY), true);
}
