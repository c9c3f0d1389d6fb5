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
