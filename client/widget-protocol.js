// @ts-check
// The widget wire format between a host page (widget.js) and the embed page
// (embed.js), over window.postMessage. Pure: builders and validators only.
//
// Every message is a plain object with `channel: "ztream-widget"` and `v: 1`:
//   host -> embed  {kind: "command", method, value?, id?}
//   embed -> host  {kind: "event", event, data}
//                  {kind: "reply", id, value}
// The host starts with the "hello" command (repeated until the embed answers
// with the "ready" event); the embed remembers the origin of that hello and
// from then on posts only to that origin. Both ends also check, outside this
// module, that a message comes from the expected window: the embed only
// listens to its parent, the widget only to its iframe's window and origin.

export const CHANNEL = "ztream-widget";
export const VERSION = 1;

/** Event names, as in SoundCloud's widget API (`Widget.Events.READY`, ...). */
export const EVENTS = Object.freeze({
  READY: "ready",
  PLAY: "play",
  PAUSE: "pause",
  FINISH: "finish",
  SEEK: "seek",
  PLAY_PROGRESS: "playProgress",
  ERROR: "error",
  // a live track (docs/live.md): {state, title, station} when one changed; {title, station}
  LIVE_CHANGE: "liveChange",
  TITLE_CHANGE: "titleChange",
});

/** @type {Set<unknown>} */
const EVENT_VALUES = new Set(Object.values(EVENTS));

/** Commands the embed page understands; the getters answer with a reply. */
/** @type {Readonly<Record<string, "none" | "number" | "getter">>} */
export const METHODS = Object.freeze({
  hello: "none",
  play: "none",
  pause: "none",
  toggle: "none",
  seekTo: "number", // milliseconds
  setVolume: "number", // 0..100
  getPosition: "getter",
  getDuration: "getter", // 0 for a live track
  getLiveState: "getter", // {state, title, station, latencySeconds} of a live track, else null
  getVolume: "getter",
  isPaused: "getter",
});

/**
 * Canonical event name for `READY`, `ready`, `PLAY_PROGRESS`, `playProgress`...
 * @param {unknown} name
 * @returns {string | null}
 */
export function eventName(name) {
  if (typeof name !== "string") return null;
  if (Object.hasOwn(EVENTS, name)) return EVENTS[/** @type {keyof typeof EVENTS} */ (name)];
  return EVENT_VALUES.has(name) ? name : null;
}

/**
 * @param {string} method
 * @param {unknown} [value]
 * @param {number} [id]
 */
export function command(method, value = undefined, id = undefined) {
  /** @type {{channel: string, v: number, kind: "command", method: string, value?: unknown, id?: number}} */
  const msg = { channel: CHANNEL, v: VERSION, kind: "command", method };
  if (value !== undefined) msg.value = value;
  if (id !== undefined) msg.id = id;
  return msg;
}

/**
 * @param {string} name
 * @param {object} [data]
 */
export function event(name, data = {}) {
  return { channel: CHANNEL, v: VERSION, kind: "event", event: name, data };
}

/**
 * @param {number} id
 * @param {unknown} value
 */
export function reply(id, value) {
  return { channel: CHANNEL, v: VERSION, kind: "reply", id, value };
}

// What postMessage delivered: anything a page may send.

/**
 * @param {any} data
 * @returns {boolean}
 */
function isEnvelope(data) {
  return data !== null && typeof data === "object" && data.channel === CHANNEL && data.v === VERSION;
}

/**
 * @param {unknown} id
 * @returns {id is number}
 */
const isId = (id) => typeof id === "number" && Number.isSafeInteger(id) && id >= 0;

/**
 * A valid command `{method, value, id}` or null for anything else.
 * @param {any} data
 * @returns {{method: string, value: any, id: any} | null}
 */
export function parseCommand(data) {
  if (!isEnvelope(data) || data.kind !== "command" || !Object.hasOwn(METHODS, data.method)) return null;
  const kind = METHODS[data.method];
  if (kind === "number" && !(typeof data.value === "number" && Number.isFinite(data.value))) return null;
  if (kind === "getter" && !isId(data.id)) return null;
  return { method: data.method, value: data.value, id: data.id };
}

/**
 * A valid event `{kind: "event", event, data}` or reply `{kind: "reply", id, value}`, else null.
 * @param {any} data
 * @returns {{kind: "event", event: string, data: Record<string, any>} | {kind: "reply", id: number, value: any} | null}
 */
export function parseFromEmbed(data) {
  if (!isEnvelope(data)) return null;
  if (data.kind === "event" && EVENT_VALUES.has(data.event)) {
    const payload = data.data !== null && typeof data.data === "object" ? data.data : {};
    return { kind: "event", event: data.event, data: payload };
  }
  if (data.kind === "reply" && isId(data.id)) return { kind: "reply", id: data.id, value: data.value };
  return null;
}

/**
 * The origin of `url` resolved against `base`, or null.
 * @param {string | URL} url
 * @param {string | URL} [base]
 * @returns {string | null}
 */
export function originOf(url, base = undefined) {
  try {
    const origin = new URL(url, base).origin;
    return origin === "null" ? null : origin;
  } catch {
    return null;
  }
}

/**
 * Whether `origin` may talk to the embed page, given the configured list (["*"]: any).
 * @param {unknown} origin
 * @param {unknown} allowed
 * @returns {boolean}
 */
export function originAllowed(origin, allowed) {
  if (typeof origin !== "string" || origin === "null" || !origin) return false;
  if (!Array.isArray(allowed) || allowed.length === 0) return false;
  return allowed.includes("*") || allowed.includes(origin);
}

/**
 * `?color=ff5500` or `#f50` → "#ff5500"-style CSS color, anything else → null.
 * @param {unknown} raw
 * @returns {string | null}
 */
export function parseColor(raw) {
  if (typeof raw !== "string") return null;
  const m = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(raw.trim());
  return m ? `#${m[1].toLowerCase()}` : null;
}

/**
 * Clamp a volume given in 0..100 to 0..1.
 * @param {unknown} value
 * @returns {number | null}
 */
export function volumeFraction(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return null;
  return Math.min(100, Math.max(0, value)) / 100;
}
