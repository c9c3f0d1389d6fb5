// @ts-check
// The player's download scheduler: pure logic, no DOM, no fetch, no timers.
//
// Theory of operation
// -------------------
// The scheduler knows the manifest (chunk index -> start, duration), which
// chunks are already buffered in the SourceBuffer, which ones the local
// persistent cache holds, which ones each peer holds, and which requests are
// in flight. The I/O shell (player.js) feeds it events and asks, as often as
// it likes, `next({now, playhead})`: the scheduler answers with the requests
// to start now, each `{index, source, deadline}` where `source` is "cache",
// "server" or a peer id. The shell performs them and reports back with
// `received(index)` or `failed(index)`; it also calls `expired({now,
// playhead})` regularly and aborts what it returns.
//
// Time is always an argument (`now`, in seconds, any monotonic clock), so the
// rules below are exact and testable without a browser.
//
// Rules, in the order they are applied to every chunk of the window (the
// chunks that overlap [playhead, playhead + bufferAhead), nearest first):
//   1. A chunk that the persistent cache holds is read from the cache.
//   2. The chunks of the first `serverLead` seconds after a start or a seek
//      (the "anchor") come from the server, so that playback starts at once
//      while the player looks for peers.
//   3. Emergency mode: when less than `emergencyAhead` seconds are buffered
//      contiguously ahead of the playhead, everything comes from the server,
//      and in-flight peer requests for chunks inside that zone are expired.
//      The mode ends once `recoverAhead` seconds are buffered (hysteresis).
//   4. Otherwise a peer that holds the chunk, has a free upload slot and has
//      not failed this chunk before gets the request, with a deadline: the
//      moment the playhead (at 1x) would come within `emergencyAhead` of the
//      chunk's start, capped at `maxPeerWait` from now. A request that would
//      leave a peer less than `minPeerWindow` seconds goes to the server.
//      While some holder is only busy, the scheduler waits for its slot
//      rather than spend server bytes, as long as the deadline allows; and
//      while the P2P side is still looking for peers (`setPeerWait(until)`:
//      the tracker has not answered yet, connections are opening), a chunk
//      with such a window waits until `until` rather than go to the server.
//   5. Everything else comes from the server, at most `serverParallel` at a
//      time; a failed server request is retried after `retryDelay`.
//   6. While the manifest is not complete (a live transcode) and less than
//      `liveEdgeAhead` seconds are buffered ahead, the chunk after the last
//      listed one (the "live edge") is asked from the server, which answers
//      as soon as the transcoder has produced it (or 404 past the end).
//      With more buffered, re-reading the manifest is enough and costs no
//      404 at the end of the track.
//   7. A live track (`setLive`; live-edge.js has the rules and docs/p2p.md
//      the why): a new chunk no neighbour holds yet waits `fetchWait` before
//      it goes to the server: 0 for this neighbourhood's elected fetcher with
//      a low hash or a small neighbourhood (and a listener alone, or one
//      whose id is not known yet); 0.4 x `peerWait` for another elected
//      fetcher, from when the chunk was due (`dueAt`: the previous chunk
//      became known plus its duration); `peerWait` for the others, from the
//      moment the chunk became known (`setManifest(manifest, {now})`), for a
//      neighbour to announce it. The live edge request (rule 6) is made by an
//      elected fetcher of the chunk it asks for: at once with wait 0, else
//      once its wait from `dueAt` is over and no neighbour announced it.
//      Rules 2, 3 and the deadlines are unchanged: the start-up lead and
//      emergency mode still go to the server.

import { fetchWait, liveFetchDelay } from "./live-edge.js";

/** Default settings; every one can be overridden in the constructor. */
export const DEFAULT_SETTINGS = Object.freeze({
  bufferAhead: 30, // seconds of audio to hold ahead of the playhead
  emergencyAhead: 4, // below this many seconds buffered ahead: server only
  recoverAhead: 8, // leave emergency mode once this much is buffered
  serverLead: 10, // seconds after a start or a seek that come from the server
  serverParallel: 2, // concurrent server requests
  cacheParallel: 4, // concurrent reads from the persistent cache
  peerSlots: 2, // concurrent requests per peer unless the peer says otherwise
  minPeerWindow: 1.5, // a peer must get at least this many seconds
  maxPeerWait: 8, // a peer request never waits longer than this
  retryDelay: 1, // pause before asking the server again for a failed chunk
  maxInflight: 8, // all sources together
  liveEdgeAhead: 4, // ask for the live edge only with less than this buffered ahead
});

/** @typedef {{[K in keyof typeof DEFAULT_SETTINGS]: number}} SchedulerSettings the settings' types */

export const SERVER = "server";
export const CACHE = "cache";

const EPSILON = 1e-3;

/** How long a chunk's first sighting is remembered (a live window is bounded). */
const MAX_SEEN = 4096;

/**
 * @typedef {{index: number, start: number, duration: number}} Chunk a manifest entry
 * @typedef {{chunks: Chunk[], complete?: boolean}} Manifest
 * @typedef {{id: string, have: Set<number>, slots: number, failures: number}} Peer
 */

/**
 * Index of the chunk that holds time `t` (seconds), by the manifest's
 * `start` fields; -1 when `t` lies past the known chunks or before the
 * first. `chunks` is sorted by start.
 * @param {readonly Chunk[]} chunks
 * @param {number} t
 * @returns {number}
 */
export function chunkIndexAt(chunks, t) {
  let lo = 0;
  let hi = chunks.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (chunks[mid].start <= t + EPSILON) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (found < 0) return chunks.length > 0 && t < chunks[0].start ? chunks[0].index : -1;
  const c = chunks[found];
  return t < c.start + c.duration ? c.index : -1;
}

/**
 * Which chunks lie wholly inside a set of time ranges (as from
 * `SourceBuffer.buffered`, given as [[start, end], ...]). A tolerance of
 * `slack` seconds absorbs codec pre-roll and rounding at the edges.
 * @param {Iterable<Chunk>} chunks
 * @param {Iterable<readonly [number, number] | number[]>} ranges
 * @param {number} [slack]
 * @returns {Set<number>}
 */
export function chunksInRanges(chunks, ranges, slack = 0.05) {
  /** @type {Set<number>} */
  const out = new Set();
  for (const c of chunks) {
    // never more than a quarter of the chunk: the last chunk can be a few ms
    const edge = Math.min(slack, c.duration / 4);
    const a = c.start + edge;
    const b = c.start + c.duration - edge;
    for (const [s, e] of ranges) {
      if (s <= a && e >= b) {
        out.add(c.index);
        break;
      }
    }
  }
  return out;
}

/**
 * Convert a TimeRanges object to [[start, end], ...].
 * @param {{length: number, start(i: number): number, end(i: number): number}} timeRanges
 * @returns {Array<[number, number]>}
 */
export function rangesToArray(timeRanges) {
  /** @type {Array<[number, number]>} */
  const out = [];
  for (let i = 0; i < timeRanges.length; i++) out.push([timeRanges.start(i), timeRanges.end(i)]);
  return out;
}

/**
 * The first chunks of a track that cover `seconds` of audio: what a playlist
 * prefetches of the next track near the end of the current one.
 * @param {Manifest | null | undefined} manifest
 * @param {number} [seconds]
 * @returns {number[]}
 */
export function prefetchIndices(manifest, seconds = 4) {
  /** @type {number[]} */
  const out = [];
  for (const c of manifest?.chunks ?? []) {
    if (c.start >= seconds) break;
    out.push(c.index);
  }
  return out;
}

/**
 * Whether the playlist should prefetch the next track now.
 * @param {{position: number, duration: number, lead?: number}} where
 * @returns {boolean}
 */
export function shouldPrefetchNext({ position, duration, lead = 10 }) {
  return Number.isFinite(duration) && duration > 0 && duration - position <= lead;
}

/**
 * A decision: fetch chunk `index` from `source` ("cache", "server" or a peer
 * id). `deadline` (seconds, same clock as `now`) is set for peer requests
 * only: past it, `expired()` gives the request up. `live` marks a request
 * for the chunk after the last one listed in a live manifest.
 */
export class Request {
  /**
   * @param {number} index
   * @param {string} source
   * @param {number | null} [deadline]
   * @param {boolean} [live]
   */
  constructor(index, source, deadline = null, live = false) {
    this.index = index;
    this.source = source;
    this.deadline = deadline;
    this.live = live;
    Object.freeze(this);
  }
}

export class Scheduler {
  /** @param {Partial<SchedulerSettings>} settings */
  constructor(settings = {}) {
    for (const key of Object.keys(settings)) {
      if (!(key in DEFAULT_SETTINGS)) throw new TypeError(`unknown scheduler setting: ${key}`);
    }
    /** @type {Readonly<SchedulerSettings>} */
    this.settings = Object.freeze({ ...DEFAULT_SETTINGS, ...settings });
    /** @type {Chunk[]} */
    this.chunks = []; // sorted by index, {index, start, duration}
    /** @type {Map<number, Chunk>} */
    this.byIndex = new Map();
    this.complete = false;
    this.anchor = 0;
    this.emergency = true; // nothing buffered yet
    /** @type {Set<number>} */
    this.buffered = new Set();
    /** @type {Set<number>} */
    this.cached = new Set();
    /** @type {Map<number, Request>} */
    this.inflight = new Map(); // index -> Request
    /** @type {Map<string, Peer>} */
    this.peers = new Map(); // id -> {id, have: Set, slots, failures}
    /** @type {Map<number, Set<string>>} */
    this.peerFailed = new Map(); // index -> Set(peer id)
    /** @type {Map<number, number>} */
    this.retryAt = new Map(); // index -> time before which the server is not asked again
    this.peerWaitUntil = -Infinity; // peers are being looked for until then
    /** @type {{peerWait: number, followEdge: boolean} | null} live rules (rule 7), null for a track */
    this.live = null;
    /** @type {string | null} this listener's peer id (rule 7's election) */
    this.selfId = null;
    /** @type {Map<number, number>} */
    this.seenAt = new Map(); // index -> `now` when a live manifest first listed it
  }

  // ---- events in ---------------------------------------------------------

  /**
   * A (new version of the) manifest: `{chunks: [{index, start, duration}], complete}`.
   * `now`: when it was read (a live track's rule 7 counts the wait from then).
   * @param {Manifest} manifest
   * @param {{now?: number}} [when]
   */
  setManifest(manifest, { now = 0 } = {}) {
    this.chunks = [...manifest.chunks]
      .map(({ index, start, duration }) => ({ index, start, duration }))
      .sort((a, b) => a.index - b.index);
    this.byIndex = new Map(this.chunks.map((c) => [c.index, c]));
    this.complete = Boolean(manifest.complete);
    for (const c of this.chunks) if (!this.seenAt.has(c.index)) this.seenAt.set(c.index, now);
    while (this.seenAt.size > MAX_SEEN) this.seenAt.delete(/** @type {number} */ (this.seenAt.keys().next().value));
  }

  /**
   * Follow a live track's rules (rule 7): non-elected listeners wait
   * `peerWait` seconds for a neighbour before asking the server for a new
   * chunk; `followEdge` false: no live edge request (rule 6) at all (the
   * source is reconnecting: the next index is not known). null: a track.
   * @param {{peerWait: number, followEdge?: boolean} | null} live
   */
  setLive(live) {
    this.live = live ? { peerWait: Math.max(0, Number(live.peerWait) || 0), followEdge: live.followEdge !== false } : null;
  }

  /**
   * This listener's peer id (the tracker's welcome), for rule 7's election.
   * @param {string | null} id
   */
  setSelf(id) {
    this.selfId = id;
  }

  /**
   * Playback starts or jumps to `position`: the next `serverLead` seconds come
   * from the server. Returns the in-flight requests that no longer fall in
   * the window, now forgotten, for the shell to abort.
   * @param {number} position
   * @returns {Request[]}
   */
  seek(position) {
    this.anchor = position;
    this.emergency = this.bufferedAhead(position) < this.settings.emergencyAhead;
    const keep = new Set(this.window(position).map((c) => c.index));
    /** @type {Request[]} */
    const stale = [];
    for (const [index, req] of this.inflight) {
      if (!keep.has(index) && !req.live) {
        this.inflight.delete(index);
        stale.push(req);
      }
    }
    return stale;
  }

  /**
   * Chunk `index` arrived (and is being appended): no need to fetch it again.
   * @param {number} index
   */
  received(index) {
    this.inflight.delete(index);
    this.retryAt.delete(index);
    this.buffered.add(index);
  }

  /**
   * A request for chunk `index` failed (network error, bad hash, cache miss,
   * 404 at the live edge). A peer is not asked for that chunk again; the
   * server is asked again after `retryDelay`; a cache miss clears the entry.
   * @param {number} index
   * @param {{now?: number}} [when]
   */
  failed(index, { now = 0 } = {}) {
    const req = this.inflight.get(index);
    this.inflight.delete(index);
    if (!req) return;
    if (req.source === CACHE) {
      this.cached.delete(index);
    } else if (req.source === SERVER) {
      this.retryAt.set(index, now + this.settings.retryDelay);
    } else {
      this.notePeerFailure(req.source, index);
    }
  }

  /**
   * The SourceBuffer dropped chunk `index` (eviction, failed append).
   * @param {number} index
   */
  evicted(index) {
    this.buffered.delete(index);
  }

  /**
   * Replace the buffered set (after reconciling with `SourceBuffer.buffered`).
   * @param {Iterable<number>} indices
   */
  setBuffered(indices) {
    this.buffered = new Set(indices);
  }

  /**
   * The persistent cache holds these chunks of this rendition.
   * @param {Iterable<number>} indices
   */
  setCached(indices) {
    this.cached = new Set(indices);
  }

  /**
   * The persistent cache now holds chunk `index`.
   * @param {number} index
   */
  addCached(index) {
    this.cached.add(index);
  }

  /**
   * A peer (or a new view of one): `{have: iterable of indices, slots}`.
   * @param {string} id
   * @param {{have?: Iterable<number>, slots?: number}} [view]
   */
  setPeer(id, { have = [], slots = this.settings.peerSlots } = {}) {
    const old = this.peers.get(id);
    this.peers.set(id, { id, have: new Set(have), slots, failures: old ? old.failures : 0 });
  }

  /**
   * A peer announces that it holds more chunks.
   * @param {string} id
   * @param {Iterable<number>} indices
   */
  peerHave(id, indices) {
    const peer = this.peers.get(id);
    if (!peer) return;
    for (const i of indices) peer.have.add(i);
  }

  /**
   * Peers may come until `until` (seconds, the clock of `now`): until then a
   * chunk that a peer would have time to send waits instead of going to the
   * server. -Infinity: stop waiting.
   * @param {number} until
   */
  setPeerWait(until) {
    this.peerWaitUntil = Number.isFinite(until) || until === -Infinity ? until : -Infinity;
  }

  /**
   * A peer is gone (closed, banned). Returns its in-flight requests, which
   * are forgotten so that `next()` assigns them again.
   * @param {string} id
   * @returns {Request[]}
   */
  removePeer(id) {
    this.peers.delete(id);
    /** @type {Request[]} */
    const lost = [];
    for (const [index, req] of this.inflight) {
      if (req.source === id) {
        this.inflight.delete(index);
        lost.push(req);
      }
    }
    return lost;
  }

  // ---- questions ---------------------------------------------------------

  /**
   * Seconds buffered contiguously from `playhead` on.
   * @param {number} playhead
   * @returns {number}
   */
  bufferedAhead(playhead) {
    let end = playhead;
    let i = chunkIndexAt(this.chunks, playhead);
    if (i < 0) return 0;
    for (;;) {
      const c = this.byIndex.get(i);
      if (!c || !this.buffered.has(i)) break;
      end = c.start + c.duration;
      i += 1;
    }
    return Math.max(0, end - playhead);
  }

  /**
   * True once every chunk from the playhead to the end of a complete track is buffered.
   * @param {number} playhead
   * @returns {boolean}
   */
  bufferedToEnd(playhead) {
    if (!this.complete) return false;
    for (const c of this.chunks) {
      if (c.start + c.duration <= playhead + EPSILON) continue;
      if (!this.buffered.has(c.index)) return false;
    }
    return true;
  }

  /** Known end of the track (seconds): last chunk's end. */
  knownEnd() {
    const last = this.chunks[this.chunks.length - 1];
    return last ? last.start + last.duration : 0;
  }

  /**
   * The chunks that overlap [playhead, playhead + bufferAhead).
   * @param {number} playhead
   * @returns {Chunk[]}
   */
  window(playhead) {
    const limit = playhead + this.settings.bufferAhead;
    return this.chunks.filter((c) => c.start < limit && c.start + c.duration > playhead + EPSILON);
  }

  /**
   * Number of in-flight requests to a source.
   * @param {string} source
   * @returns {number}
   */
  load(source) {
    let n = 0;
    for (const req of this.inflight.values()) if (req.source === source) n += 1;
    return n;
  }

  // ---- decisions out -----------------------------------------------------

  /**
   * The requests to start now. They count as in flight from here on, until
   * `received`, `failed`, `expired`, `seek` or `removePeer` says otherwise.
   * @param {{now: number, playhead: number}} when
   * @returns {Request[]}
   */
  next({ now, playhead }) {
    const s = this.settings;
    this.updateEmergency(playhead);
    /** @type {Request[]} */
    const out = [];
    const serverFree = () => this.load(SERVER) < s.serverParallel;
    const room = () => this.inflight.size < s.maxInflight;

    for (const c of this.window(playhead)) {
      if (!room()) break;
      const i = c.index;
      if (this.buffered.has(i) || this.inflight.has(i)) continue;

      // 1. persistent cache
      if (this.cached.has(i)) {
        if (this.load(CACHE) < s.cacheParallel) out.push(this.start(new Request(i, CACHE)));
        continue;
      }
      const retryOk = (this.retryAt.get(i) ?? -Infinity) <= now;

      // 2./3. start-up window and emergency: server
      const inLead = c.start < this.anchor + s.serverLead && c.start + c.duration > this.anchor;
      if (this.emergency || inLead) {
        if (retryOk && serverFree()) out.push(this.start(new Request(i, SERVER)));
        continue;
      }

      // 4. peers, with a deadline derived from the playhead
      const slack = c.start - playhead - s.emergencyAhead;
      if (slack >= s.minPeerWindow) {
        const deadline = now + Math.min(slack, s.maxPeerWait);
        const holders = this.holders(i);
        const free = holders.filter((p) => this.load(p.id) < p.slots);
        if (free.length > 0) {
          out.push(this.start(new Request(i, free[0].id, deadline)));
          continue;
        }
        if (holders.length > 0) continue; // wait for a slot: there is time
        if (now < this.peerWaitUntil) continue; // peers are being looked for: there is time
        if (this.liveWait(c, { now, playhead }) > 0) continue; // 7. the elected neighbour fetches it
      }

      // 5. server
      if (retryOk && serverFree()) out.push(this.start(new Request(i, SERVER)));
    }

    // 6. live edge
    if (!this.complete && room()) {
      const edge = this.chunks.length > 0 ? this.chunks[this.chunks.length - 1].index + 1 : 0;
      const edgeStart = this.knownEnd();
      const wanted = edgeStart < playhead + s.bufferAhead && this.bufferedAhead(playhead) < s.liveEdgeAhead;
      const retryOk = (this.retryAt.get(edge) ?? -Infinity) <= now;
      const mine = !this.live || (this.live.followEdge && (this.emergency || this.edgeMine(edge, now)));
      if (wanted && mine && retryOk && !this.inflight.has(edge) && !this.buffered.has(edge) && serverFree()) {
        out.push(this.start(new Request(edge, SERVER, null, true)));
      }
    }
    return out;
  }

  /**
   * Peer requests to give up: past their deadline, or (in emergency mode)
   * for chunks inside the emergency zone. They are forgotten, the peer is
   * not asked for that chunk again, and the next `next()` asks the server.
   * @param {{now: number, playhead: number}} when
   * @returns {Request[]}
   */
  expired({ now, playhead }) {
    this.updateEmergency(playhead);
    /** @type {Request[]} */
    const out = [];
    for (const [index, req] of this.inflight) {
      if (req.source === SERVER || req.source === CACHE) continue;
      const c = this.byIndex.get(index);
      const urgent = this.emergency && c && c.start < playhead + this.settings.emergencyAhead;
      // a peer request always has a deadline (next() gives it one)
      if (now >= /** @type {number} */ (req.deadline) || urgent) {
        this.inflight.delete(index);
        this.notePeerFailure(req.source, index);
        out.push(req);
      }
    }
    return out;
  }

  // ---- internals ---------------------------------------------------------

  /**
   * Rule 7: seconds a new live chunk still waits for a neighbour (0: it does not).
   * @param {Chunk} c
   * @param {{now: number, playhead: number}} when
   * @returns {number}
   */
  liveWait(c, { now, playhead }) {
    const seen = this.seenAt.get(c.index);
    if (!this.live || seen === undefined) return 0;
    const wait = this.fetchWait(c.index);
    // an elected fetcher that waits counts from when the chunk was due (it
    // learns of it at the next poll, up to a second later, unless a
    // neighbour announces it)
    const due = wait > 0 && wait < this.live.peerWait ? this.dueAt(c.index) : undefined;
    return liveFetchDelay({
      elected: wait === 0,
      peerWait: wait,
      waited: now - Math.min(seen, due ?? Infinity),
      untilNeeded: c.start - playhead,
      httpSeconds: this.settings.emergencyAhead, // what emergency mode keeps for the server
    });
  }

  /**
   * Rule 7: seconds this listener waits for a neighbour before it takes
   * chunk `index` from the server (`fetchWait`; alone, or before its id is
   * known, 0).
   * @param {number} index
   * @returns {number}
   */
  fetchWait(index) {
    const peerWait = this.live ? this.live.peerWait : 0;
    if (this.selfId === null || this.peers.size === 0) return 0;
    return fetchWait(this.selfId, this.peers.keys(), index, peerWait);
  }

  /**
   * When chunk `index` is due: the previous chunk became known plus its
   * duration (undefined when that is not known).
   * @param {number} index
   * @returns {number | undefined}
   */
  dueAt(index) {
    const seen = this.seenAt.get(index - 1);
    const prev = this.byIndex.get(index - 1);
    return seen === undefined || prev === undefined ? undefined : seen + prev.duration;
  }

  /**
   * Rule 7 for the live edge request (rule 6): an elected fetcher that
   * fetches at once asks at once; one that waits asks once its wait from
   * when the chunk is due is over and no neighbour has announced it.
   * @param {number} edge the index after the newest listed
   * @param {number} now
   * @returns {boolean}
   */
  edgeMine(edge, now) {
    const wait = this.fetchWait(edge);
    if (wait === 0) return true;
    if (!this.live || wait >= this.live.peerWait) return false;
    const due = this.dueAt(edge);
    return due !== undefined && now >= due + wait && this.holders(edge).length === 0;
  }

  /**
   * @param {Request} req
   * @returns {Request}
   */
  start(req) {
    this.inflight.set(req.index, req);
    return req;
  }

  /**
   * @param {number} index
   * @returns {Peer[]}
   */
  holders(index) {
    const failed = this.peerFailed.get(index);
    /** @type {Peer[]} */
    const out = [];
    for (const p of this.peers.values()) {
      if (p.have.has(index) && !(failed && failed.has(p.id))) out.push(p);
    }
    // least loaded first, then fewest failures; Array.sort is stable, so
    // insertion order breaks the remaining ties deterministically
    return out.sort((a, b) => this.load(a.id) - this.load(b.id) || a.failures - b.failures);
  }

  /**
   * @param {string} peerId
   * @param {number} index
   */
  notePeerFailure(peerId, index) {
    let failed = this.peerFailed.get(index);
    if (!failed) this.peerFailed.set(index, (failed = new Set()));
    failed.add(peerId);
    const peer = this.peers.get(peerId);
    if (peer) peer.failures += 1;
  }

  /** @param {number} playhead */
  updateEmergency(playhead) {
    const ahead = this.bufferedAhead(playhead);
    const toEnd = this.bufferedToEnd(playhead);
    if (toEnd) this.emergency = false;
    else if (ahead < this.settings.emergencyAhead) this.emergency = true;
    else if (ahead >= this.settings.recoverAhead) this.emergency = false;
  }
}
