// @ts-check
// A live track on the player's own timeline: pure, no DOM, no timers.
//
// Theory of operation
// -------------------
// A live manifest (docs/live.md) lists a sliding window of chunks whose
// `start`s belong to the gateway's ingest session: they begin again after a
// reconnect, and a listener joins in the middle. The player appends chunks to
// a SourceBuffer in `sequence` mode with `timestampOffset` set to where each
// chunk belongs on ITS timeline, which begins at 0 with the chunk it started
// at (`startIndex`, live-edge.js). `LiveTimeline` keeps that mapping:
//
// - `update(manifest, now)` places every chunk newer than those placed so far
//   right after them (index order; indices never repeat, and a gap in the
//   indices, a reconnect, is no gap in time), and forgets chunks that left the
//   window; `now` is the local UNIX time, used for the clock estimate below.
// - `manifest()` is the window as the scheduler sees it: `{chunks: [{index,
//   start, duration}], complete: false}` with `start` on the player's timeline.
// - `latency(playhead, now)`: seconds from the moment the chunk at the
//   playhead reached the gateway (`wall` + the offset into it) to now, on the
//   gateway's clock. The local clock's offset from the gateway's is estimated
//   from chunks seen appearing in the manifest after the first read: each
//   gives `seen - (wall + duration)` = offset + listing delay; the median of
//   the last `SKEW_SAMPLES` is used (a source's burst at connect makes a few
//   chunks appear at once and would bias a minimum). Before any sample the
//   clocks are taken as equal. The figure is what `stats.live_latency_seconds`
//   reports and what the pace rules (paceAction) keep near the target.

import { liveLatency, startIndex } from "./live-edge.js";

/** Clock samples kept for the median. */
export const SKEW_SAMPLES = 16;

/**
 * @typedef {{index: number, start?: number, duration: number, wall?: number | null, epoch?: number}} LiveChunk a live manifest entry
 * @typedef {{index: number, start: number, duration: number, wall: number | null, epoch: number}} Placed a chunk on the player's timeline
 */

export class LiveTimeline {
  /**
   * @param {{behindSeconds: number}} options
   */
  constructor({ behindSeconds }) {
    this.behindSeconds = behindSeconds;
    /** @type {Map<number, Placed>} index -> placement, in index order */
    this.placed = new Map();
    /** @type {number | null} the newest index placed */
    this.last = null;
    this.end = 0; // the player-timeline end of the newest chunk placed
    this.reads = 0;
    /** @type {number[]} */
    this.samples = [];
  }

  /**
   * Read a (new) live manifest. Returns the indices placed by this read.
   * @param {{chunks: ReadonlyArray<LiveChunk>, epoch?: number}} manifest
   * @param {number} now local UNIX time, seconds
   * @returns {number[]}
   */
  update(manifest, now) {
    const chunks = [...manifest.chunks].sort((a, b) => a.index - b.index);
    /** @type {number[]} */
    const added = [];
    let from = this.last === null ? startIndex(chunks, this.behindSeconds) : this.last + 1;
    if (from === null) return added;
    for (const c of chunks) {
      if (c.index < from) continue;
      const wall = Number.isFinite(c.wall) ? /** @type {number} */ (c.wall) : null;
      this.placed.set(c.index, { index: c.index, start: this.end, duration: c.duration, wall, epoch: c.epoch ?? manifest.epoch ?? 0 });
      this.end += c.duration;
      this.last = c.index;
      from = c.index + 1;
      added.push(c.index);
      if (this.reads > 0 && wall !== null) {
        this.samples.push(now - (wall + c.duration));
        if (this.samples.length > SKEW_SAMPLES) this.samples.shift();
      }
    }
    // chunks that left the window are gone from the gateway too (410)
    const oldest = chunks.length > 0 ? chunks[0].index : null;
    if (oldest !== null) for (const i of this.placed.keys()) if (i < oldest) this.placed.delete(i);
    this.reads += 1;
    return added;
  }

  /**
   * The window as the scheduler sees it.
   * @returns {{chunks: Array<{index: number, start: number, duration: number}>, complete: false}}
   */
  manifest() {
    return { chunks: [...this.placed.values()].map(({ index, start, duration }) => ({ index, start, duration })), complete: false };
  }

  /**
   * Where chunk `index` goes on the player's timeline (null: not placed).
   * @param {number} index
   * @returns {Placed | null}
   */
  at(index) {
    return this.placed.get(index) ?? null;
  }

  /**
   * The chunk placed at player time `t`, or null.
   * @param {number} t
   * @returns {Placed | null}
   */
  chunkAt(t) {
    for (const p of this.placed.values()) if (p.start <= t + 1e-6 && t < p.start + p.duration) return p;
    return null;
  }

  /** The estimated offset of the local clock from the gateway's (seconds, plus the listing delay). */
  skew() {
    if (this.samples.length === 0) return 0;
    const sorted = [...this.samples].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  /**
   * Seconds from the gateway receiving the audio at `playhead` to now, or
   * null when the playhead is on no placed chunk with a `wall`.
   * @param {number} playhead player time, seconds
   * @param {number} now local UNIX time, seconds
   * @returns {number | null}
   */
  latency(playhead, now) {
    const p = this.chunkAt(playhead);
    if (!p || p.wall === null) return null;
    return liveLatency(now - this.skew(), p.wall, playhead - p.start);
  }

  /**
   * Seconds of audio placed ahead of `playhead` (to the newest chunk's end).
   * @param {number} playhead
   * @returns {number}
   */
  behindEdge(playhead) {
    return Math.max(0, this.end - playhead);
  }
}
