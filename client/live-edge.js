// @ts-check
// The rules a listener follows at a live track's edge: pure, no DOM, no
// timers. The headless peer (peer/live.py) is its twin; both pass
// tests/vectors/live-edge.json. docs/live.md describes the listener's side.
//
// Theory of operation
// -------------------
// A live manifest is a sliding window of chunks, oldest first, each with its
// `index` (never repeats for a track) and `duration`; `edge` is the newest
// chunk's index. A listener
//
// - reports its latency (`liveLatency`): from the gateway's receipt of the
//   audio playing (the chunk's `wall` plus the offset into it) to now;
// - starts `start_behind_seconds` behind the end of the newest chunk:
//   `startIndex` walks back from the newest chunk until the chunks from there
//   on hold at least that much audio (the whole window when it holds less);
// - keeps that distance while it plays (`paceAction`, given its distance
//   behind the newest chunk's end): within `PACE_TOLERANCE` of the target it
//   plays at 1.0; further behind at `RATE_FAST`, nearer the edge at
//   `RATE_SLOW` (the element keeps the pitch; 3 % is not heard as a tempo
//   change on speech or music); past max(`JUMP_FACTOR` × target, target +
//   `JUMP_MARGIN`) it jumps back to the target (catching up at 3 % would
//   take minutes);
// - is its neighbourhood's elected fetcher for a new chunk (`electedFetcher`:
//   the smallest `electionHash`, murmur3's `fmix32` over the FNV-1a 32-bit
//   hash of `${peerId}:${index}`, among itself and its open neighbours, ties
//   by the smaller id; FNV-1a alone mixes the index's digits too little and
//   split consecutive chunks worse than 80/20 for about one pair in ten), or
//   not. Every elected fetcher fetching at once costs n/(d+1) HTTP fetches
//   per chunk (n listeners, d neighbours each: ~21 of 200), so `fetchWait`
//   says how long it waits for a neighbour: 0 when its hash is under
//   `AT_ONCE_SHARE` of the range or it has fewer than `SMALL_NEIGHBOURHOOD`
//   neighbours (a small swarm: it is the only fetcher anyway);
//   `SOON_FACTOR` x `peer_wait_seconds` for another elected fetcher, counted
//   from when the chunk was due (in a large swarm a low-hash fetcher a few
//   hops away has delivered it by then); `peer_wait_seconds`, from the
//   moment it learnt of the chunk, for everyone else. `liveFetchDelay` never
//   waits so long that the server could no longer deliver in time. The
//   simulation `ztream bench live-election` (bench/live_election.py,
//   docs/benchmarks.md) chose the figures: 200 listeners 8.5 fetches per
//   chunk instead of 21, 2 and 5 unchanged.

/** Seconds either side of the target within which the rate is 1.0. A 1 s
 * chunk appears in the manifest up to a poll after it was cut: a distance
 * measured to the newest chunk saw-tooths by about a second. */
export const PACE_TOLERANCE = 1.0;
/** Playback rate while too far behind the edge. */
export const RATE_FAST = 1.03;
/** Playback rate while too near the edge (the buffer builds up again). */
export const RATE_SLOW = 0.97;
/** A listener past max(JUMP_FACTOR × target, target + JUMP_MARGIN) behind jumps back to the target. */
export const JUMP_FACTOR = 3;
export const JUMP_MARGIN = 3;
/** After playback resumed from a stall, this long, a listener behind its target jumps back to it. */
export const RECOVER_SECONDS = 5.0;

/** `fetchWait`: an elected fetcher whose hash is under this share of the 32-bit range fetches at once. */
export const AT_ONCE_SHARE = 0.05;
/** `fetchWait`: ... as does one with fewer neighbours than this (p2p.js's wantNeighbours: a small swarm). */
export const SMALL_NEIGHBOURHOOD = 5;
/** `fetchWait`: the other elected fetchers wait this share of peerWait, from when the chunk was due. */
export const SOON_FACTOR = 0.4;

/**
 * @typedef {{index: number, duration: number}} LiveEntry a live manifest's chunk, as far as these rules need it
 * @typedef {{rate: number} | {jumpTo: number}} PaceAction
 */

/**
 * FNV-1a, 32 bits, over the UTF-8 bytes of `text`.
 * @param {string} text
 * @returns {number} an unsigned 32-bit integer
 */
export function fnv1a32(text) {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * murmur3's 32-bit finaliser: every input bit flips about half the output
 * bits (a bijection, so ties stay ties).
 * @param {number} h an unsigned 32-bit integer
 * @returns {number} an unsigned 32-bit integer
 */
export function fmix32(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The hash `electedFetcher` compares: `fmix32(fnv1a32(`${peerId}:${index}`))`.
 * @param {string} peerId
 * @param {number} index
 * @returns {number} an unsigned 32-bit integer
 */
export function electionHash(peerId, index) {
  return fmix32(fnv1a32(`${peerId}:${index}`));
}

/**
 * The index of the chunk a listener joining now starts playing at: the
 * newest chunk from which on the window holds at least `behindSeconds` of
 * audio (the oldest chunk when the whole window holds less); null for an
 * empty window.
 * @param {ReadonlyArray<LiveEntry>} entries the window, oldest first
 * @param {number} behindSeconds
 * @returns {number | null}
 */
export function startIndex(entries, behindSeconds) {
  if (entries.length === 0) return null;
  let held = 0;
  for (let i = entries.length - 1; i >= 0; i--) {
    held += entries[i].duration;
    if (held >= behindSeconds - 1e-9) return entries[i].index;
  }
  return entries[0].index;
}

/**
 * What to do about the distance to the edge: `{rate}` to play at, or
 * `{jumpTo}`: the distance (seconds behind the edge) to jump to. While
 * `recovering` (playback resumed from a stall less than `RECOVER_SECONDS`
 * ago; not at the start, where a jump would skip what the listener has just
 * begun to hear) it jumps as soon as it is more than `PACE_TOLERANCE` further
 * behind than `target`: a source that comes back often sends what it held in
 * one burst, which would otherwise leave every listener that far behind for
 * minutes.
 * @param {number} latency seconds the playhead is behind the end of the newest chunk known
 * @param {number} target the distance to keep (start_behind_seconds)
 * @param {boolean} [recovering]
 * @returns {PaceAction}
 */
export function paceAction(latency, target, recovering = false) {
  if (latency > Math.max(JUMP_FACTOR * target, target + JUMP_MARGIN) || (recovering && latency > target + PACE_TOLERANCE)) {
    return { jumpTo: target };
  }
  if (latency > target + PACE_TOLERANCE) return { rate: RATE_FAST };
  if (latency < target - PACE_TOLERANCE) return { rate: RATE_SLOW };
  return { rate: 1 };
}

/**
 * Who, among `selfId` and its open neighbours, fetches chunk `index` from
 * the server first: the smallest `electionHash(id, index)`, ties (and
 * duplicates) by the smaller id.
 * @param {string} selfId
 * @param {Iterable<string>} neighbourIds
 * @param {number} index
 * @returns {string}
 */
export function electedFetcher(selfId, neighbourIds, index) {
  let best = selfId;
  let bestHash = electionHash(selfId, index);
  for (const id of neighbourIds) {
    const h = electionHash(id, index);
    if (h < bestHash || (h === bestHash && id < best)) {
      best = id;
      bestHash = h;
    }
  }
  return best;
}

/**
 * Seconds `selfId` waits for a neighbour before taking chunk `index` from
 * the server: 0 when it is the chunk's elected fetcher and its
 * `electionHash` is under `AT_ONCE_SHARE` of the range or it has fewer than
 * `SMALL_NEIGHBOURHOOD` neighbours; `SOON_FACTOR * peerWait` for the other
 * elected fetchers (counted from when the chunk was due: the caller's);
 * `peerWait` for everyone else.
 * @param {string} selfId
 * @param {Iterable<string>} neighbourIds
 * @param {number} index
 * @param {number} peerWait
 * @returns {number}
 */
export function fetchWait(selfId, neighbourIds, index, peerWait) {
  const ids = [...neighbourIds];
  if (electedFetcher(selfId, ids, index) !== selfId) return peerWait;
  const others = new Set(ids);
  others.delete(selfId);
  if (electionHash(selfId, index) < AT_ONCE_SHARE * 2 ** 32 || others.size < SMALL_NEIGHBOURHOOD) return 0;
  return SOON_FACTOR * peerWait;
}

/**
 * Seconds to wait still before fetching a new chunk from the server: 0 for
 * its elected fetcher; else what is left of `peerWait` (the manifest's
 * `peer_wait_seconds`) after `waited` (seconds since the chunk became known),
 * and never more than `untilNeeded - httpSeconds` (the playhead reaches the
 * chunk in `untilNeeded` seconds; a server fetch takes about `httpSeconds`).
 * @param {{elected: boolean, peerWait: number, waited: number, untilNeeded: number, httpSeconds: number}} args
 * @returns {number}
 */
export function liveFetchDelay({ elected, peerWait, waited, untilNeeded, httpSeconds }) {
  if (elected) return 0;
  return Math.max(0, Math.min(peerWait - waited, untilNeeded - httpSeconds));
}

/**
 * What `stats.live_latency_seconds` reports: from the gateway's receipt of
 * the audio playing (`wall` of its chunk plus the playhead's `offset` into
 * it) to `now` on the same clock; never negative (a clock a little ahead).
 * @param {number} now
 * @param {number} wall
 * @param {number} offset
 * @returns {number}
 */
export function liveLatency(now, wall, offset) {
  return Math.max(0, now - (wall + offset));
}
