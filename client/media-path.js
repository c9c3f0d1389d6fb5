// @ts-check
// Which way the player feeds the <audio> element, from what the page offers.
// Pure: the globals are passed in (`globalThis` in the browser, a plain
// object in tests).
//
// - "managed-mse": `ManagedMediaSource` (Safari 17.1+, and the only Media
//   Source on iPhone). It opens only when the element has
//   `disableRemotePlayback = true`, says when to fetch (`startstreaming` /
//   `endstreaming`) and may remove buffered ranges itself under memory
//   pressure; the player follows all three (player.js).
// - "mse": `MediaSource` (desktop browsers, Android).
// - "stream": neither takes the rendition's type: `<audio src=.../stream>`
//   (no peers, no cache, no chunk verification).
//
// `ManagedMediaSource` is preferred where it exists, as hls.js does: where
// both exist (Safari on macOS and iPad, WebKitGTK) it lets the browser save
// power and memory.

/** @typedef {"managed-mse" | "mse" | "stream"} MediaPathMode */

/**
 * A Media Source class as far as choosing needs it.
 * @typedef {{isTypeSupported?: (type: string) => boolean}} SourceClass
 */

/**
 * @typedef {{mode: MediaPathMode, MediaSource: (SourceClass & (new () => MediaSource)) | null}} MediaPath
 *   MediaSource: the class to construct (null for "stream")
 */

/**
 * @param {unknown} cls
 * @param {string} mime
 * @returns {boolean}
 */
function takes(cls, mime) {
  if (typeof cls !== "function") return false;
  const check = /** @type {SourceClass} */ (cls).isTypeSupported;
  if (typeof check !== "function") return false;
  try {
    return check.call(cls, mime) === true;
  } catch {
    return false;
  }
}

/**
 * The media path for a rendition of type `mime` given the page's globals.
 * @param {{ManagedMediaSource?: unknown, MediaSource?: unknown}} scope usually globalThis
 * @param {string} mime e.g. 'audio/webm; codecs="opus"'
 * @returns {MediaPath}
 */
export function chooseMediaPath(scope, mime) {
  const managed = scope.ManagedMediaSource;
  if (takes(managed, mime)) return { mode: "managed-mse", MediaSource: /** @type {MediaPath["MediaSource"]} */ (managed) };
  const plain = scope.MediaSource;
  if (takes(plain, mime)) return { mode: "mse", MediaSource: /** @type {MediaPath["MediaSource"]} */ (plain) };
  return { mode: "stream", MediaSource: null };
}

/**
 * Whether some Media Source of the page takes `mime` (for picking a
 * rendition: the first the page can append is the one to ask for).
 * @param {{ManagedMediaSource?: unknown, MediaSource?: unknown}} scope
 * @param {string} mime
 * @returns {boolean}
 */
export function sourceTakes(scope, mime) {
  return chooseMediaPath(scope, mime).mode !== "stream";
}

/**
 * Whether a ManagedMediaSource lets the player fetch now: between
 * `endstreaming` and `startstreaming` it does not, unless the buffer ahead
 * of the playhead has fallen under `emergencyAhead` seconds while playing
 * (the browser's signal came late; a stall costs the listener more than a
 * fetch costs the battery). A plain MediaSource always does.
 * @param {{managed: boolean, streaming: boolean | undefined, playing: boolean, ahead: number, emergencyAhead: number}} state
 *   streaming: the source's `streaming` (undefined before it says)
 *   ahead: seconds buffered ahead of the playhead
 * @returns {boolean}
 */
export function mayFetch({ managed, streaming, playing, ahead, emergencyAhead }) {
  if (!managed || streaming !== false) return true;
  return playing && ahead < emergencyAhead;
}
