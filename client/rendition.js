// @ts-check
// Which rendition of a track a browser plays: pure (the browser's answer is
// passed in), so it is unit-tested without one.
//
// The gateway serves every track as WebM/Opus and, when asked with
// `?rendition=<name>` on the track's URLs, as Opus or AAC in fragmented MP4
// (docs/http.md, "Renditions"). The player picks before it reads the manifest
// (so that the init segment and the first chunk are asked for together with
// it), from the same list the manifest's `renditions` gives: the first whose
// MIME type the media path takes. Order: WebM/Opus first (the default, made
// with the extras and most likely cached and shared by peers), then Opus in
// fMP4 (Safari before 17.4 with MSE takes it as `codecs="Opus"`, capital O),
// then AAC in fMP4 (every MSE).

/** @typedef {{name: string, mime: string}} Rendition */

/** @type {readonly Rendition[]} */
export const RENDITIONS = Object.freeze([
  { name: "webm", mime: 'audio/webm; codecs="opus"' },
  { name: "fmp4-opus", mime: 'audio/mp4; codecs="Opus"' },
  { name: "fmp4-aac", mime: 'audio/mp4; codecs="mp4a.40.2"' },
]);

export const DEFAULT_RENDITION = "webm";

/**
 * The first of `offered` whose `mime` `supported` takes, else null. A
 * `supported` that throws (some engines throw on a type they do not parse)
 * counts as a no.
 * @param {(mime: string) => boolean} supported e.g. `MediaSource.isTypeSupported`
 * @param {readonly Rendition[]} [offered]
 * @returns {Rendition | null}
 */
export function pickRendition(supported, offered = RENDITIONS) {
  for (const rendition of offered) {
    let ok = false;
    try {
      ok = Boolean(supported(rendition.mime));
    } catch {
      ok = false;
    }
    if (ok) return rendition;
  }
  return null;
}

/**
 * The query string of a rendition's URLs (`manifest`, `init`, `chunks/{n}`,
 * `stream`): empty for the default, so its URLs stay what they always were.
 * @param {string | null | undefined} name
 * @returns {string}
 */
export function renditionQuery(name) {
  return !name || name === DEFAULT_RENDITION ? "" : `?rendition=${encodeURIComponent(name)}`;
}
