// @ts-check
// What <ztream-player> tells the Media Session (lock screens, headsets,
// notification controls): pure, from the gateway's track JSON and the
// player's state. The shell (ztream-player.js) hands these to
// `navigator.mediaSession` where it exists.

/** Seconds a headset's or lock screen's skip moves when it gives no offset. */
export const SKIP_SECONDS = 10;

/**
 * @typedef {{src: string, sizes?: string, type?: string}} Artwork
 * @typedef {{title: string, artist: string, album: string, artwork: Artwork[]}} Metadata
 */

/**
 * The metadata of a track: its title (`titleOverride` first, as the player
 * shows it), artist and artwork (with its size when the gateway knows it).
 * @param {any} track the gateway's `{track}` JSON (or null before it loads)
 * @param {string} [titleOverride]
 * @returns {Metadata}
 */
export function sessionMetadata(track, titleOverride = "") {
  const t = track && typeof track === "object" ? track : {};
  const text = (/** @type {unknown} */ v) => (typeof v === "string" ? v : "");
  /** @type {Artwork[]} */
  const artwork = [];
  const src = text(t.artwork_url);
  if (src) {
    const w = Number(t.artwork_width);
    const h = Number(t.artwork_height);
    artwork.push(Number.isInteger(w) && Number.isInteger(h) && w > 0 && h > 0 ? { src, sizes: `${w}x${h}` } : { src });
  }
  return { title: text(titleOverride) || text(t.title) || "Untitled", artist: text(t.artist), album: text(t.album), artwork };
}

/**
 * The actions to handle: play, pause, seeking (to a time, back, forward),
 * and next/previous only in a playlist (elsewhere they are withdrawn, so
 * the lock screen shows no dead buttons).
 * @param {{tracks: number}} state tracks: the playlist's length
 * @returns {{on: string[], off: string[]}}
 */
export function sessionActions({ tracks }) {
  const on = ["play", "pause", "seekto", "seekbackward", "seekforward"];
  const off = [];
  if (tracks > 1) on.push("previoustrack", "nexttrack");
  else off.push("previoustrack", "nexttrack");
  return { on, off };
}

/**
 * Where a seek action goes: `seekto` to its time, back and forward by its
 * offset (SKIP_SECONDS without one), clamped to the track. null when the
 * action is not a seek or gives nothing usable.
 * @param {string} action
 * @param {{seekTime?: number, seekOffset?: number}} details the action's details
 * @param {{position: number, duration: number}} at
 * @returns {number | null}
 */
export function seekTarget(action, details, { position, duration }) {
  let t;
  if (action === "seekto") t = Number(details.seekTime);
  else if (action === "seekbackward") t = position - (Number(details.seekOffset) || SKIP_SECONDS);
  else if (action === "seekforward") t = position + (Number(details.seekOffset) || SKIP_SECONDS);
  else return null;
  if (!Number.isFinite(t)) return null;
  t = Math.max(0, t);
  return Number.isFinite(duration) && duration > 0 ? Math.min(t, duration) : t;
}

/**
 * The position state for `setPositionState`, or null while the duration is
 * unknown (the API throws on a position past the duration or a NaN).
 * @param {{duration: number, position: number, rate: number}} state
 * @returns {{duration: number, position: number, playbackRate: number} | null}
 */
export function positionState({ duration, position, rate }) {
  if (!Number.isFinite(duration) || duration <= 0) return null;
  const p = Number.isFinite(position) ? Math.min(Math.max(0, position), duration) : 0;
  const r = Number.isFinite(rate) && rate > 0 ? rate : 1;
  return { duration, position: p, playbackRate: r };
}
