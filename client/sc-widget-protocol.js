// @ts-check
// SoundCloud's widget postMessage protocol, as the /player/ page speaks it.
// Pure: parsing, validation, routing and message building; no DOM, no I/O.
//
// A host page using SoundCloud's api.js (SC.Widget(iframe)) posts JSON
// *strings* to the iframe:
//   {"method":"addEventListener","value":"<event>"}   bind(event)
//   {"method":"removeEventListener","value":"<event>"} unbind(event)
//   {"method":"play"|"pause"|"toggle"|"next"|"prev","value":...}
//   {"method":"seekTo","value":<ms>}  {"method":"setVolume","value":<0..100>}
//   {"method":"skip","value":<index>}
//   {"method":"getVolume"|"getDuration"|"getPosition"|"getSounds"|
//             "getCurrentSound"|"getCurrentSoundIndex"|"isPaused","value":null}
// and the frame answers a getter with {"method":<same name>,"value":...}
// (no request ids: api.js resolves every queued callback of that method with
// the next answer). The frame sends {"method":"ready"} once loaded, whether
// or not anyone bound it; every other event only while bound, with the value
// {soundId, loadedProgress, currentPosition, relativePosition}.
// docs/soundcloud-dropin.md is the page for operators.
//
// The colour parameter and the embedders' origins are read as the embed
// page's widget reads them: `parseColor` and `originAllowed` are
// widget-protocol.js's (exported here too, for sc-player.js).

import { originAllowed, originOf, parseColor } from "./widget-protocol.js";
import { policyOf } from "./upload-policy.js";

export { originAllowed, parseColor };

/** Event names, as SC.Widget.Events spells them. */
export const EVENTS = Object.freeze({
  LOAD_PROGRESS: "loadProgress",
  PLAY_PROGRESS: "playProgress",
  PLAY: "play",
  PAUSE: "pause",
  FINISH: "finish",
  SEEK: "seek",
  READY: "ready",
  OPEN_SHARE_PANEL: "sharePanelOpened",
  CLICK_DOWNLOAD: "downloadClicked",
  CLICK_BUY: "buyClicked",
  ERROR: "error",
});

/** @type {Set<unknown>} */
const EVENT_NAMES = new Set(Object.values(EVENTS));

/** Commands the frame carries out (the shell does the work). */
export const COMMANDS = Object.freeze(["play", "pause", "toggle", "seekTo", "setVolume", "next", "prev", "skip"]);

/** Getters: the frame answers each with a message of the same method name. */
export const GETTERS = Object.freeze([
  "getVolume",
  "getDuration",
  "getPosition",
  "getSounds",
  "getCurrentSound",
  "getCurrentSoundIndex",
  "isPaused",
]);

/** @type {Set<unknown>} */
const COMMAND_SET = new Set(COMMANDS);
/** @type {Set<unknown>} */
const GETTER_SET = new Set(GETTERS);

// Bounds on what a host may send: anything past them is ignored, not clamped
// into a surprise (a seek to 1e300 ms is a bug on the host page).
export const MAX_MESSAGE_CHARS = 4096; // the longest real message is ~60 chars
export const MAX_SEEK_MS = 1e10; // ~115 days
export const MAX_SKIP_INDEX = 9999;

/**
 * @param {unknown} v
 * @returns {v is number}
 */
const finite = (v) => typeof v === "number" && Number.isFinite(v);

/**
 * One incoming message, validated: {method, value} or null (ignore it).
 * `raw` is whatever MessageEvent.data held; only strings are the protocol.
 * @param {unknown} raw
 * @returns {{method: string, value: any} | null}
 */
export function parseMessage(raw) {
  if (typeof raw !== "string" || raw.length === 0 || raw.length > MAX_MESSAGE_CHARS) return null;
  /** @type {any} */
  let data;
  try {
    data = JSON.parse(raw);
  } catch {
    return null;
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) return null;
  const { method, value } = data;
  if (typeof method !== "string") return null;
  if (method === "addEventListener" || method === "removeEventListener") {
    return typeof value === "string" && EVENT_NAMES.has(value) ? { method, value } : null;
  }
  if (GETTER_SET.has(method)) return { method, value: null };
  if (!COMMAND_SET.has(method)) return null;
  switch (method) {
    case "seekTo":
      return finite(value) && value >= 0 && value <= MAX_SEEK_MS ? { method, value } : null;
    case "setVolume":
      // SoundCloud's scale is 0..100; out of range values are clamped, as the widget does
      return finite(value) ? { method, value: Math.min(100, Math.max(0, value)) } : null;
    case "skip":
      return Number.isInteger(value) && value >= 0 && value <= MAX_SKIP_INDEX ? { method, value } : null;
    default:
      return { method, value: null };
  }
}

/**
 * The JSON string the frame posts: {"method":...,"value":...}; ready has no value.
 * @param {string} method
 * @param {unknown} [value]
 * @returns {string}
 */
export function message(method, value = undefined) {
  return value === undefined ? JSON.stringify({ method }) : JSON.stringify({ method, value });
}

/**
 * The protocol state of one frame: which events the host has bound.
 *
 * receive(raw, view) handles one incoming message. `view` answers the getters
 * (view.getVolume() ... view.isPaused()); the result says what to do:
 *   {reply: "<json>"}          post it to the parent
 *   {command: {method, value}} carry it out
 *   {}                         nothing (a bind/unbind, or ignored)
 * emit(name, value) gives the JSON to post for an event, or null when the
 * host has not bound it (ready always goes out).
 */
export class WidgetSession {
  constructor() {
    /** @type {Set<string>} */
    this.bound = new Set();
  }

  /**
   * @param {unknown} raw
   * @param {Record<string, any> | null | undefined} view
   * @returns {{reply?: string, command?: {method: string, value: any}}}
   */
  receive(raw, view) {
    const msg = parseMessage(raw);
    if (!msg) return {};
    if (msg.method === "addEventListener") {
      this.bound.add(msg.value);
      return {};
    }
    if (msg.method === "removeEventListener") {
      this.bound.delete(msg.value);
      return {};
    }
    if (GETTER_SET.has(msg.method)) {
      const getter = view?.[msg.method];
      if (typeof getter !== "function") return {};
      return { reply: message(msg.method, sanitize(getter.call(view))) };
    }
    return { command: msg };
  }

  /**
   * @param {string} name
   * @param {unknown} [value]
   * @returns {string | null}
   */
  emit(name, value = undefined) {
    if (name === EVENTS.READY) return message(EVENTS.READY);
    if (!EVENT_NAMES.has(name) || !this.bound.has(name)) return null;
    return message(name, value);
  }
}

// JSON has no undefined/NaN/Infinity: a getter never answers something api.js cannot parse.
/**
 * @param {unknown} value
 * @returns {unknown}
 */
function sanitize(value) {
  if (value === undefined) return null;
  if (typeof value === "number" && !Number.isFinite(value)) return 0;
  return value;
}

/** @type {(seconds: unknown) => number} */
const ms = (seconds) => (finite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : 0);

/**
 * The value of every event: {soundId, loadedProgress, currentPosition, relativePosition}.
 * @param {{soundId?: number | string | null, position?: number, duration?: number, loaded?: number}} where
 */
export function progressValue({ soundId, position, duration, loaded }) {
  const d = finite(duration) && duration > 0 ? duration : 0;
  const t = finite(position) && position > 0 ? position : 0;
  const l = finite(loaded) && loaded > 0 ? loaded : 0;
  return {
    soundId: soundId ?? null,
    loadedProgress: d > 0 ? Math.min(1, l / d) : 0,
    currentPosition: ms(t),
    relativePosition: d > 0 ? Math.min(1, t / d) : 0,
  };
}

/**
 * SoundCloud's numeric id from a Ztream SoundCloud locator ("soundcloud:tracks:123"), else null.
 * @param {any} track
 * @returns {number | null}
 */
export function soundcloudId(track) {
  const m = /^soundcloud:tracks:(\d{1,20})$/.exec(typeof track?.url === "string" ? track.url : "");
  if (!m) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * A sound object as getSounds/getCurrentSound return it, from a Ztream {track}.
 * `id` is SoundCloud's numeric id for a SoundCloud track (what a host written
 * for SoundCloud expects), the Ztream id otherwise; `ztream_id` is always ours.
 * @param {any} track
 * @param {{publicUrl?: string, duration?: number | null}} [options]
 */
export function soundObject(track, { publicUrl = "", duration = null } = {}) {
  /** @type {Record<string, any>} */
  const t = track && typeof track === "object" ? track : {};
  const seconds = finite(duration) && duration > 0 ? duration : t.duration;
  const artist = typeof t.artist === "string" ? t.artist : "";
  const permalink = typeof t.permalink === "string" ? t.permalink : t.id ? `${publicUrl}/embed/${t.id}` : null;
  return {
    kind: "track",
    id: soundcloudId(t) ?? t.id ?? null,
    ztream_id: t.id ?? null,
    title: typeof t.title === "string" ? t.title : "",
    duration: ms(seconds),
    permalink_url: permalink,
    artwork_url: t.artwork_url ?? t.artwork ?? null,
    waveform_url: t.waveform_url ?? null,
    stream_url: t.id ? `${publicUrl}/v1/tracks/${t.id}/stream` : null,
    user: { username: artist, permalink_url: userUrl(permalink) },
  };
}

// https://soundcloud.com/artist/song -> https://soundcloud.com/artist
/**
 * @param {unknown} permalink
 * @returns {string | null}
 */
function userUrl(permalink) {
  if (typeof permalink !== "string") return null;
  const m = /^(https:\/\/soundcloud\.com\/[^/?#]+)\/[^/?#]+/.exec(permalink);
  return m ? m[1] : null;
}

// ---- query parameters --------------------------------------------------------

/**
 * The player's options from SoundCloud's query parameters (unknown ones ignored).
 * @param {URLSearchParams | string | null | undefined} search
 */
export function playerOptions(search) {
  const p = search instanceof URLSearchParams ? search : new URLSearchParams(search ?? "");
  /** @type {(name: string, fallback: boolean) => boolean} */
  const flag = (name, fallback) => {
    const raw = p.get(name);
    if (raw === null) return fallback;
    const v = raw.trim().toLowerCase();
    if (v === "true" || v === "1" || v === "") return true;
    if (v === "false" || v === "0") return false;
    return fallback;
  };
  const start = Number(p.get("start_track"));
  return {
    autoPlay: flag("auto_play", false),
    color: parseColor(p.get("color")),
    buying: flag("buying", true),
    sharing: flag("sharing", true),
    download: flag("download", true),
    showArtwork: flag("show_artwork", true),
    showPlaycount: flag("show_playcount", true),
    showUser: flag("show_user", true),
    showComments: flag("show_comments", true),
    hideRelated: flag("hide_related", false),
    singleActive: flag("single_active", true),
    visual: flag("visual", false),
    showTeaser: flag("show_teaser", true),
    startTrack: Number.isInteger(start) && start >= 0 && start <= MAX_SKIP_INDEX ? start : 0,
    // Ztream's own: the page's upload policy ("on" | "opt-in" | "off"; only
    // stricter than the gateway's; anything else reads as "off"), null: not said
    upload: policyOf(p.get("upload")),
  };
}

// ---- the parent's origin ---------------------------------------------------------

/**
 * The origin to post to, where it is known before any message arrives:
 * location.ancestorOrigins[0] (Chromium, WebKit), else the referrer's origin
 * (the default referrer policy still sends it cross-origin). null: unknown.
 * @param {{ancestorOrigins?: ArrayLike<string> | null, referrer?: string}} [where]
 * @returns {string | null}
 */
export function knownParentOrigin({ ancestorOrigins = null, referrer = "" } = {}) {
  const first = ancestorOrigins && ancestorOrigins.length ? ancestorOrigins[0] : null;
  if (typeof first === "string" && first !== "null" && originOf(first)) return originOf(first);
  return referrer ? originOf(referrer) : null;
}
