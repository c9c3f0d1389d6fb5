// @ts-check
// Small pure helpers for the player's interface.

/**
 * 75.4 → "1:15", 3725 → "1:02:05"; NaN or negative → "--:--".
 * @param {number} seconds
 * @returns {string}
 */
export function formatTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const total = Math.floor(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/**
 * Spoken form for aria-valuetext: "1 minute 15 seconds of 3 minutes 2 seconds".
 * @param {number} seconds
 * @returns {string}
 */
export function spokenTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "unknown";
  const total = Math.floor(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  /** @type {string[]} */
  const parts = [];
  /** @type {(n: number, word: string) => string} */
  const unit = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (h) parts.push(unit(h, "hour"));
  if (m) parts.push(unit(m, "minute"));
  if (s || parts.length === 0) parts.push(unit(s, "second"));
  return parts.join(" ");
}

/**
 * Buffered ranges as fractions of the duration, for drawing:
 * [[0, 10], [30, 40]] over 100 s → [{left: 0, width: 0.1}, {left: 0.3, width: 0.1}].
 * @param {Iterable<readonly [number, number] | number[]>} ranges [start, end] in seconds
 * @param {number} duration
 * @returns {Array<{left: number, width: number}>}
 */
export function rangeFractions(ranges, duration) {
  if (!Number.isFinite(duration) || duration <= 0) return [];
  /** @type {Array<{left: number, width: number}>} */
  const out = [];
  for (const [start, end] of ranges) {
    const a = Math.min(1, Math.max(0, start / duration));
    const b = Math.min(1, Math.max(0, end / duration));
    if (b > a) out.push({ left: a, width: b - a });
  }
  return out;
}

/**
 * The new position for a key pressed on the seek slider, or null for other keys.
 * @param {string} key
 * @param {{position: number, duration: number, step?: number, page?: number}} where
 * @returns {number | null}
 */
export function seekKey(key, { position, duration, step = 5, page = 10 }) {
  const d = Number.isFinite(duration) ? duration : position;
  /** @type {(t: number) => number} */
  const clamp = (t) => Math.max(0, Math.min(d, t));
  switch (key) {
    case "ArrowLeft":
    case "ArrowDown":
      return clamp(position - step);
    case "ArrowRight":
    case "ArrowUp":
      return clamp(position + step);
    case "PageDown":
      return clamp(position - page);
    case "PageUp":
      return clamp(position + page);
    case "Home":
      return 0;
    case "End":
      return Number.isFinite(duration) ? Math.max(0, duration - 0.25) : null;
    default:
      return null;
  }
}

/**
 * Waveform peaks as both players draw them: magnitudes (0..1, non-finite as 0)
 * scaled so that the loudest is 1. A quiet track (peaks around 0.05) then
 * fills the bar like a loud one instead of drawing a flat dotted line; all
 * silence stays 0.
 * @param {ArrayLike<unknown> | null | undefined} peaks
 * @returns {number[]}
 */
export function scalePeaks(peaks) {
  if (!peaks || !(peaks.length > 0)) return [];
  const values = Array.from(peaks, (p) => {
    const v = Math.abs(Number(p));
    return Number.isFinite(v) ? v : 0;
  });
  let max = 0;
  for (const v of values) if (v > max) max = v;
  return max > 0 ? values.map((v) => Math.min(1, v / max)) : values.map(() => 0);
}

/**
 * The placeholder artwork of a track without a picture: the initials of its
 * artist and title (or title alone), and a two-colour diagonal gradient whose
 * hues come from a hash of the text, so that each track has its own and
 * keeps it.
 * @param {string | null | undefined} title
 * @param {string | null | undefined} [artist]
 * @returns {{initials: string, background: string}}
 */
export function placeholderArt(title, artist = "") {
  const words = (/** @type {unknown} */ s) => String(s || "").split(/[\s_\-—–.,:;/()[\]]+/u).filter((w) => /\p{L}|\p{N}/u.test(w));
  const first = (/** @type {string} */ w) => Array.from(w.match(/[\p{L}\p{N}]/u)?.[0] ?? "")[0] ?? "";
  const t = words(title);
  const a = words(artist);
  let initials = a.length && t.length ? first(a[0]) + first(t[0]) : t.slice(0, 2).map(first).join("");
  initials = (initials || "♪").toLocaleUpperCase();
  let hash = 2166136261; // FNV-1a over the text: stable across sessions
  for (const ch of `${artist || ""}\u0000${title || ""}`) {
    hash ^= ch.codePointAt(0) ?? 0;
    hash = Math.imul(hash, 16777619) >>> 0;
  }
  const hue = hash % 360;
  const hue2 = (hue + 40 + ((hash >>> 9) % 60)) % 360;
  return {
    initials,
    background: `linear-gradient(135deg, hsl(${hue} 62% 46%), hsl(${hue2} 70% 28%))`,
  };
}
