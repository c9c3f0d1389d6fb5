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
});

const EVENT_VALUES = new Set(Object.values(EVENTS));

/** Commands the embed page understands; the getters answer with a reply. */
export const METHODS = Object.freeze({
  hello: "none",
  play: "none",
  pause: "none",
  toggle: "none",
  seekTo: "number", // milliseconds
  setVolume: "number", // 0..100
  getPosition: "getter",
  getDuration: "getter",
  getVolume: "getter",
  isPaused: "getter",
});

/** Canonical event name for `READY`, `ready`, `PLAY_PROGRESS`, `playProgress`... */
export function eventName(name) {
  if (typeof name !== "string") return null;
  if (Object.hasOwn(EVENTS, name)) return EVENTS[name];
  return EVENT_VALUES.has(name) ? name : null;
}

export function command(method, value = undefined, id = undefined) {
  const msg = { channel: CHANNEL, v: VERSION, kind: "command", method };
  if (value !== undefined) msg.value = value;
  if (id !== undefined) msg.id = id;
  return msg;
}

export function event(name, data = {}) {
  return { channel: CHANNEL, v: VERSION, kind: "event", event: name, data };
}

export function reply(id, value) {
  return { channel: CHANNEL, v: VERSION, kind: "reply", id, value };
}

function isEnvelope(data) {
  return data !== null && typeof data === "object" && data.channel === CHANNEL && data.v === VERSION;
}

const isId = (id) => Number.isSafeInteger(id) && id >= 0;

/** A valid command `{method, value, id}` or null for anything else. */
export function parseCommand(data) {
  if (!isEnvelope(data) || data.kind !== "command" || !Object.hasOwn(METHODS, data.method)) return null;
  const kind = METHODS[data.method];
  if (kind === "number" && !(typeof data.value === "number" && Number.isFinite(data.value))) return null;
  if (kind === "getter" && !isId(data.id)) return null;
  return { method: data.method, value: data.value, id: data.id };
}

/** A valid event `{kind: "event", event, data}` or reply `{kind: "reply", id, value}`, else null. */
export function parseFromEmbed(data) {
  if (!isEnvelope(data)) return null;
  if (data.kind === "event" && EVENT_VALUES.has(data.event)) {
    const payload = data.data !== null && typeof data.data === "object" ? data.data : {};
    return { kind: "event", event: data.event, data: payload };
  }
  if (data.kind === "reply" && isId(data.id)) return { kind: "reply", id: data.id, value: data.value };
  return null;
}

/** The origin of `url` resolved against `base`, or null. */
export function originOf(url, base = undefined) {
  try {
    const origin = new URL(url, base).origin;
    return origin === "null" ? null : origin;
  } catch {
    return null;
  }
}

/** Whether `origin` may talk to the embed page, given the configured list (["*"]: any). */
export function originAllowed(origin, allowed) {
  if (typeof origin !== "string" || origin === "null" || !origin) return false;
  if (!Array.isArray(allowed) || allowed.length === 0) return false;
  return allowed.includes("*") || allowed.includes(origin);
}

/** `?color=ff5500` or `#f50` → "#ff5500"-style CSS color, anything else → null. */
export function parseColor(raw) {
  if (typeof raw !== "string") return null;
  const m = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(raw.trim());
  return m ? `#${m[1].toLowerCase()}` : null;
}

/** Clamp a volume given in 0..100 to 0..1. */
export function volumeFraction(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return null;
  return Math.min(100, Math.max(0, value)) / 100;
}
