// @ts-check
// Following a live track (a radio station): the player's decisions, pure (no
// DOM, no fetch, no timers; `now` is always an argument). player.js is the
// shell that fetches, appends and sets the element's rate and position.
//
// Theory of operation
// -------------------
// `new LiveFollower(manifest, settings)` for a manifest with `live: true`
// (docs/live.md). It owns
//
// - the timeline (live-timeline.js): where each chunk of the window goes on
//   the player's timeline, which starts at 0 with the chunk the listener
//   joined at, `start_behind_seconds` behind the edge;
// - the scheduler (scheduler.js) with the live settings below and rule 7
//   (elected fetcher, `peer_wait_seconds`), fed that timeline's window;
// - the station's state as the last manifest said (`starting`, `live`,
//   `reconnecting`), its title and name, and the latency last measured;
// - the live edge request (scheduler rule 6) only while `live`: after a
//   reconnect the next index is not the old edge + 1;
// - the polling pace: every `chunk_seconds` while live; while the source is
//   reconnecting, backed off (doubling from `chunk_seconds`) up to
//   `RECONNECT_POLL_MAX` seconds, short enough to be back at the edge
//   within a few seconds of the source's return; after failed reads
//   (gateway away), doubling up to `ERROR_POLL_MAX` seconds.
//
// Polls after the first read are deltas (`manifest?after=N`, docs/live.md):
// `deltaAfter(held)` is the newest index held (null: read the whole window),
// and `mergeLiveManifest(held, delta)` makes the window again from what was
// held and what the delta lists, so that everything downstream (the
// follower, the hash checks) sees whole windows. A full 60 s window is ~12 kB
// per poll, a delta a few hundred bytes.
//
// `read(manifest, now, wallNow)` takes each manifest read (and says what
// changed for the page), `pace(playhead, wallNow, playing)` says what to do
// about the distance to the edge (paceAction, live-edge.js, given the
// latency measured: the timeline's estimate of the same distance, which
// moves with the clock rather than by whole chunks as manifests come): a rate
// to play at, or a position to jump to. One rule is the browser's own:
// nearer the edge than `HOLD_FRACTION` of the target (the buffer ran dry at
// the edge: the source paused and came back, and playback resumes with each
// chunk as it comes) it holds (rate 0) until that much lies between it and
// the edge again, rather than stall again at every chunk's arrival; the
// headless peer plays no audio and needs no such rule.

import { RECOVER_SECONDS, paceAction } from "./live-edge.js";
import { LiveTimeline } from "./live-timeline.js";
import { Scheduler } from "./scheduler.js";

export const RECONNECT_POLL_MAX = 2;
/** Nearer the edge than this fraction of the target, the player holds (rate 0). */
export const HOLD_FRACTION = 0.5;
export const ERROR_POLL_MAX = 8;
/** Seconds between a manifest read and one a neighbour's HAVE asks for (the headless peer's MANIFEST_SOON). */
export const HAVE_POLL_SPACING = 0.2;

/**
 * @typedef {"starting" | "live" | "reconnecting"} LiveState
 * @typedef {{state: LiveState, title: string | null, station: string | null, latency: number | null}} LiveInfo
 * @typedef {{index: number, start?: number, duration: number, wall?: number | null, epoch?: number, sha256?: string}} LiveEntry
 * @typedef {{
 *   live?: unknown, chunks: LiveEntry[], epoch?: number, init?: {epoch?: number} | null, edge?: number | null,
 *   first?: number | null,
 *   state?: unknown, title?: unknown, station?: unknown, chunk_seconds?: unknown,
 *   start_behind_seconds?: unknown, peer_wait_seconds?: unknown,
 * }} LiveManifest the fields of a live manifest this module reads
 * @typedef {{rate: number} | {seekTo: number, rate: number}} Pace
 */

/**
 * Whether a manifest is a live track's.
 * @param {unknown} manifest
 * @returns {boolean}
 */
export function isLiveManifest(manifest) {
  return manifest !== null && typeof manifest === "object" && /** @type {{live?: unknown}} */ (manifest).live === true;
}

/**
 * Whether a live manifest has something to play: an init segment and a chunk
 * (an ingest that is starting has neither yet).
 * @param {LiveManifest} manifest
 * @returns {boolean}
 */
export function liveStarted(manifest) {
  return Boolean(manifest.init) && Array.isArray(manifest.chunks) && manifest.chunks.length > 0;
}

/**
 * The `after` of the next live poll: the newest chunk index held, or null
 * (nothing held yet: read the whole window).
 * @param {{chunks?: ReadonlyArray<{index: number}>} | null | undefined} held
 * @returns {number | null}
 */
export function deltaAfter(held) {
  const chunks = held?.chunks;
  if (!Array.isArray(chunks) || chunks.length === 0) return null;
  let newest = chunks[0].index;
  for (const c of chunks) if (c.index > newest) newest = c.index;
  return newest;
}

/**
 * The newest index in a neighbour's `have` past `edge` (the newest chunk the
 * manifest read lists), or null. Such a chunk exists already (the elected
 * fetcher had it from the gateway's edge wait): the manifest is read again
 * at once rather than at the next poll, since a chunk learnt up to a poll
 * late leaves too little time to take it from a peer (at a 3 s distance a
 * 1 s chunk is cut 2 s before it plays; polls phased just before each cut
 * learnt of every chunk ~1 s late, and fetched it from the server).
 * @param {Iterable<number>} have
 * @param {number | null | undefined} edge
 * @returns {number | null}
 */
export function heardPastEdge(have, edge) {
  if (typeof edge !== "number") return null;
  let heard = null;
  for (const i of have) if (i > edge && (heard === null || i > heard)) heard = i;
  return heard;
}

/**
 * The window again from a delta read (`manifest?after=N`) and the window
 * held: the delta's fields, with `chunks` the held ones still in the window
 * (from the delta's `first` to its `edge`) and the delta's own, oldest first
 * (an index in both: the delta's). A delta without `first` (a gateway that
 * answered the whole window) is taken whole; `first: null` is an empty
 * window.
 * @template {{chunks: ReadonlyArray<{index: number}>, first?: number | null, edge?: number | null}} M
 * @param {{chunks?: ReadonlyArray<{index: number}>} | null | undefined} held
 * @param {M} delta
 * @returns {M}
 */
export function mergeLiveManifest(held, delta) {
  if (!("first" in delta) || !held || !Array.isArray(held.chunks)) return delta;
  const first = typeof delta.first === "number" ? delta.first : null;
  const edge = typeof delta.edge === "number" ? delta.edge : Infinity;
  /** @type {Map<number, M["chunks"][number]>} */
  const byIndex = new Map();
  if (first !== null) for (const c of held.chunks) if (c.index >= first && c.index <= edge) byIndex.set(c.index, c);
  for (const c of delta.chunks) byIndex.set(c.index, c);
  return { ...delta, chunks: [...byIndex.values()].sort((a, b) => a.index - b.index) };
}

/**
 * @param {unknown} v
 * @param {number} fallback
 * @param {number} lo
 * @param {number} hi
 * @returns {number}
 */
function bounded(v, fallback, lo, hi) {
  return typeof v === "number" && Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
}

/**
 * @param {unknown} v
 * @returns {string | null}
 */
function text(v) {
  return typeof v === "string" && v.length > 0 ? v.slice(0, 500) : null;
}

/**
 * The scheduler's settings for a live track: what the listener is told to
 * keep behind the edge is all the buffer there can be, so emergency mode
 * starts under a third of it, the start-up lead is that distance, and the
 * live edge is always asked for (by the elected fetcher).
 * @param {Record<string, number>} settings the player's
 * @param {number} behind start_behind_seconds
 * @param {number} chunkSeconds
 * @returns {Record<string, number>}
 */
export function liveSchedulerSettings(settings, behind, chunkSeconds) {
  const emergencyAhead = Math.max(0.5, Math.min(4, behind / 3));
  return {
    ...settings,
    emergencyAhead,
    recoverAhead: Math.max(emergencyAhead + 0.5, (2 * behind) / 3),
    serverLead: behind,
    minPeerWindow: 0.3,
    retryDelay: Math.max(0.25, chunkSeconds),
    liveEdgeAhead: settings.bufferAhead ?? 30,
  };
}

export class LiveFollower {
  /**
   * @param {LiveManifest} manifest the first one read
   * @param {object} [settings] the player's scheduler settings
   */
  constructor(manifest, settings = {}) {
    this.behind = bounded(manifest.start_behind_seconds, 3, 0.5, 60);
    this.chunkSeconds = bounded(manifest.chunk_seconds, 1, 0.1, 10);
    this.peerWait = bounded(manifest.peer_wait_seconds, 0.7, 0, 5);
    this.timeline = new LiveTimeline({ behindSeconds: this.behind });
    this.scheduler = new Scheduler(liveSchedulerSettings(/** @type {Record<string, number>} */ (settings), this.behind, this.chunkSeconds));
    /** @type {LiveState} */
    this.state = "starting";
    /** @type {string | null} */
    this.title = null;
    /** @type {string | null} */
    this.station = null;
    /** @type {number | null} */
    this.latency = null;
    this.failures = 0; // manifest reads failed in a row
    this.reconnectPolls = 0; // reads in a row that said "reconnecting"
    /** @type {number | null} local UNIX time playback last resumed from a stall */
    this.resumedAt = null;
  }

  /**
   * Playback resumed from a stall (not the first start): for RECOVER_SECONDS
   * the pace rules jump back to the target distance rather than creep.
   * @param {number} wallNow local UNIX time (seconds)
   */
  resumed(wallNow) {
    this.resumedAt = wallNow;
  }

  /**
   * A manifest read: the window placed, the scheduler told. Returns what the
   * page should hear about (null: nothing changed for it).
   * @param {LiveManifest} manifest
   * @param {number} now the scheduler's clock (seconds)
   * @param {number} wallNow local UNIX time (seconds)
   * @returns {{state: LiveState, title: string | null, station: string | null, changed: Array<"state" | "title" | "station">} | null}
   */
  read(manifest, now, wallNow) {
    this.failures = 0;
    const state = manifest.state === "live" || manifest.state === "reconnecting" ? manifest.state : "starting";
    this.reconnectPolls = state === "reconnecting" ? this.reconnectPolls + 1 : 0;
    this.timeline.update(manifest, wallNow);
    this.scheduler.setManifest(this.timeline.manifest(), { now });
    // the edge's next index is known only while live: a new session's first one is not edge + 1
    this.scheduler.setLive({ peerWait: this.peerWait, followEdge: state === "live" });
    const title = text(manifest.title);
    const station = text(manifest.station);
    /** @type {Array<"state" | "title" | "station">} */
    const changed = [];
    if (state !== this.state) changed.push("state");
    if (title !== this.title) changed.push("title");
    if (station !== this.station) changed.push("station");
    this.state = state;
    this.title = title;
    this.station = station;
    return changed.length > 0 ? { state, title, station, changed } : null;
  }

  /** A manifest read failed (network, 5xx): the next one backs off. */
  readFailed() {
    this.failures += 1;
  }

  /** Seconds until the next manifest read. */
  pollDelay() {
    if (this.failures > 0) return Math.min(ERROR_POLL_MAX, this.chunkSeconds * 2 ** Math.min(this.failures, 6));
    if (this.reconnectPolls > 0) return Math.min(RECONNECT_POLL_MAX, this.chunkSeconds * 2 ** Math.min(this.reconnectPolls - 1, 6));
    return this.chunkSeconds;
  }

  /**
   * The epoch of the init segment a manifest describes.
   * @param {LiveManifest} manifest
   * @returns {number}
   */
  initEpoch(manifest) {
    const e = manifest.init?.epoch ?? manifest.epoch;
    return typeof e === "number" && Number.isInteger(e) ? e : 0;
  }

  /**
   * Where chunk `index` goes on the player's timeline and which init segment
   * it needs; null when it is not in the window as placed.
   * @param {number} index
   * @returns {{start: number, epoch: number} | null}
   */
  placement(index) {
    const p = this.timeline.at(index);
    return p ? { start: p.start, epoch: p.epoch } : null;
  }

  /**
   * Where on the player's timeline to start, given the clock: the chunk
   * `startIndex` chose is `start_behind_seconds` behind the edge's end when
   * the manifest was read; the start-up since (and the newest chunk's age at
   * that read) would add to that, so the start moves into the chunk by as
   * much as the latency measured exceeds the target (at most to the target
   * behind the end of what is placed).
   * @param {number} wallNow local UNIX time (seconds)
   * @returns {number}
   */
  startPosition(wallNow) {
    const first = this.timeline.placed.values().next().value;
    if (!first) return 0;
    const latency = this.timeline.latency(first.start, wallNow);
    if (latency === null) return first.start;
    const hi = Math.max(first.start, this.timeline.end - this.chunkSeconds);
    return Math.min(hi, Math.max(first.start, first.start + latency - this.behind));
  }

  /**
   * A seek asked for by the page: within the window, never past the
   * distance the listener keeps from the edge.
   * @param {number} t
   * @returns {number}
   */
  clampSeek(t) {
    const first = this.timeline.placed.values().next().value;
    const lo = first ? first.start : 0;
    const hi = Math.max(lo, this.timeline.end - this.behind);
    return Math.min(hi, Math.max(lo, t));
  }

  /**
   * What to do about the distance to the edge now. Measures the latency
   * (kept in `latency`). While paused or before anything plays, rate 1.
   * @param {number} playhead the element's currentTime
   * @param {number} wallNow local UNIX time (seconds)
   * @param {boolean} playing
   * @returns {Pace}
   */
  pace(playhead, wallNow, playing) {
    const latency = this.timeline.latency(playhead, wallNow);
    if (latency !== null) this.latency = latency;
    if (!playing || latency === null) return { rate: 1 };
    if (latency < HOLD_FRACTION * this.behind) return { rate: 0 };
    const recovering = this.resumedAt !== null && wallNow - this.resumedAt < RECOVER_SECONDS;
    const action = paceAction(latency, this.behind, recovering);
    if ("jumpTo" in action) {
      // to `jumpTo` behind the edge, on the timeline; never past what is placed
      const to = Math.min(playhead + latency - action.jumpTo, this.timeline.end - Math.min(this.behind, this.chunkSeconds));
      return to > playhead ? { seekTo: to, rate: 1 } : { rate: 1 };
    }
    return { rate: action.rate };
  }

  /** @returns {LiveInfo} */
  info() {
    return { state: this.state, title: this.title, station: this.station, latency: this.latency };
  }
}
