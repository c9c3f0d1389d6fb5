// @ts-check
// The embed page (/embed/{id}): one <ztream-player> filling an iframe, driven
// by the host page through the widget protocol (widget-protocol.js).
//
// Commands are taken only from the parent window, only from an origin the
// gateway's `embed_origins` allows, and only after that origin's "hello";
// events and replies go to that origin alone, never to "*".
//
// Query parameters: ?autoplay=1 starts playing once the track is loaded (if
// the browser allows it); ?color=ff5500 sets the accent colour; ?p2p=off or
// ?p2p=relay is rendered by the gateway as the player's p2p attribute (it
// must be there before the player starts its P2P agent, docs/p2p.md), and
// ?upload=on|opt-in|off as its data-upload attribute (only stricter than the
// gateway's p2p.upload).

import "./ztream-player.js";
import { EVENTS, event, originAllowed, parseColor, parseCommand, reply, volumeFraction } from "./widget-protocol.js";

const body = document.body;
let allowed = ["*"];
try {
  const parsed = JSON.parse(body.dataset.origins || '["*"]');
  if (Array.isArray(parsed)) allowed = parsed.filter((o) => typeof o === "string");
} catch {
  allowed = [];
}

const player = /** @type {import("./ztream-player.js").ZtreamPlayer} */ (document.getElementById("player"));
const params = new URLSearchParams(location.search);
const color = parseColor(params.get("color"));
if (color) player.style.setProperty("--ztream-accent", color);
if (params.get("autoplay") === "1") player.play().catch(() => {});

const inFrame = window.parent !== window;
// Opened as a page (the share link), not framed: a centred player card, not one stretched over the window.
document.documentElement.classList.toggle("standalone", !inFrame);
let parentOrigin = null;
let lastError = null;

function post(message) {
  if (parentOrigin) window.parent.postMessage(message, parentOrigin);
}

const ms = (seconds) => (Number.isFinite(seconds) ? Math.round(seconds * 1000) : 0);

function position() {
  const duration = player.duration;
  const t = player.currentTime;
  const loaded = player.bufferedRanges.reduce((n, [a, b]) => n + (b - a), 0);
  return {
    currentPosition: ms(t),
    relativePosition: Number.isFinite(duration) && duration > 0 ? Math.min(1, t / duration) : 0,
    loadedProgress: Number.isFinite(duration) && duration > 0 ? Math.min(1, loaded / duration) : 0,
  };
}

function readyData() {
  const data = { duration: ms(player.duration), title: player.track?.title ?? "", id: body.dataset.trackId };
  return player.liveInfo ? { ...data, live: true } : data;
}

/** A live track's state for the host, or null (a track). */
function liveState() {
  const info = player.liveInfo;
  if (!info) return null;
  const latency = Number.isFinite(info.latency) ? Math.round(info.latency * 1000) / 1000 : null;
  return { state: info.state, title: info.title, station: info.station, latencySeconds: latency };
}

window.addEventListener("message", (e) => {
  if (!inFrame || e.source !== window.parent || !originAllowed(e.origin, allowed)) return;
  const cmd = parseCommand(e.data);
  if (!cmd) return;
  if (cmd.method === "hello") {
    parentOrigin = e.origin;
    if (player.ready) post(event(EVENTS.READY, readyData()));
    else if (lastError) post(event(EVENTS.ERROR, lastError));
    return;
  }
  if (e.origin !== parentOrigin) return;
  switch (cmd.method) {
    case "play":
      player.play().catch(() => {});
      break;
    case "pause":
      player.pause();
      break;
    case "toggle":
      player.toggle();
      break;
    case "seekTo":
      player.seek(cmd.value / 1000);
      break;
    case "setVolume":
      player.volume = volumeFraction(cmd.value);
      break;
    case "getPosition":
      post(reply(cmd.id, ms(player.currentTime)));
      break;
    case "getDuration":
      post(reply(cmd.id, ms(player.duration)));
      break;
    case "getVolume":
      post(reply(cmd.id, Math.round(player.volume * 100)));
      break;
    case "isPaused":
      post(reply(cmd.id, player.paused));
      break;
    case "getLiveState":
      post(reply(cmd.id, liveState()));
      break;
    default:
      break;
  }
});

player.addEventListener("ready", () => {
  lastError = null;
  post(event(EVENTS.READY, readyData()));
});
player.addEventListener("play", () => post(event(EVENTS.PLAY, position())));
player.addEventListener("pause", () => {
  if (!player.audio.ended) post(event(EVENTS.PAUSE, position()));
});
player.addEventListener("seeked", () => post(event(EVENTS.SEEK, position())));
player.addEventListener("timeupdate", () => {
  if (!player.paused) post(event(EVENTS.PLAY_PROGRESS, position()));
});
player.addEventListener("finish", () => post(event(EVENTS.FINISH, position())));
player.addEventListener("livechange", (e) => post(event(EVENTS.LIVE_CHANGE, /** @type {CustomEvent} */ (/** @type {unknown} */ (e)).detail)));
player.addEventListener("titlechange", (e) => post(event(EVENTS.TITLE_CHANGE, /** @type {CustomEvent} */ (/** @type {unknown} */ (e)).detail)));
player.addEventListener("error", (e) => {
  const { detail } = /** @type {CustomEvent} */ (/** @type {unknown} */ (e)); // the player's error event
  lastError = { error: detail?.error ?? "error", detail: detail?.detail ?? "" };
  post(event(EVENTS.ERROR, lastError));
});
