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
// - starts `start_behind_seconds` behind the end of the newest chunk:
//   `startIndex` walks back from the newest chunk until the chunks from there
//   on hold at least that much audio (the whole window when it holds less);
// - keeps that distance while it plays (`paceAction`): within
//   `PACE_BAND` seconds of the target it plays at 1.0; further behind at
//   `FAST_RATE`, nearer the edge at `SLOW_RATE` (a 3 % change is not heard
//   as a pitch change on speech or music), and more than `JUMP_FACTOR` times
//   the target behind it jumps back to the target;
// - takes a new chunk from the server at once only when it is its
//   neighbourhood's elected fetcher for that chunk (`electedFetcher`: the
//   smallest FNV-1a 32-bit hash of `${peerId}:${index}` among itself and its
//   open neighbours, ties by the smaller id), else waits up to
//   `peer_wait_seconds` for a neighbour to offer it (`liveFetchDelay`), then
//   asks the server. An elected fetcher thus serves about 1/(d+1) of the
//   chunks in a neighbourhood of d neighbours, and HTTP fetches per chunk
//   stay near n/(d+1) (p2p-media-loader's live design).

/** Seconds around the target distance within which the rate is 1.0. */
export const PACE_BAND = 1.0;
/** Playback rate while too far behind the edge. */
export const FAST_RATE = 1.03;
/** Playback rate while too near the edge. */
export const SLOW_RATE = 0.97;
/** A listener more than this many times the target behind jumps back to the target. */
export const JUMP_FACTOR = 3;
/** Chunk indices are u32 on the wire (protocol/limits.py MAX_INDEX). */
export const MAX_INDEX = 0xffffffff;

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
 * `{jumpTo}`: the distance (seconds behind the edge) to jump to.
 * @param {number} latency seconds between the playhead and the live edge
 * @param {number} target the distance to keep (start_behind_seconds)
 * @returns {PaceAction}
 */
export function paceAction(latency, target) {
  if (!Number.isFinite(latency) || !Number.isFinite(target) || target <= 0) return { rate: 1 };
  if (latency > JUMP_FACTOR * target) return { jumpTo: target };
  if (latency > target + PACE_BAND) return { rate: FAST_RATE };
  if (latency < target - PACE_BAND) return { rate: SLOW_RATE };
  return { rate: 1 };
}

/**
 * Who, among `selfId` and its open neighbours, fetches chunk `index` from
 * the server first: the smallest `fnv1a32(`${id}:${index}`)`, ties (and
 * duplicates) by the smaller id.
 * @param {string} selfId
 * @param {Iterable<string>} neighbourIds
 * @param {number} index
 * @returns {string}
 */
export function electedFetcher(selfId, neighbourIds, index) {
  let best = selfId;
  let bestHash = fnv1a32(`${selfId}:${index}`);
  for (const id of neighbourIds) {
    const h = fnv1a32(`${id}:${index}`);
    if (h < bestHash || (h === bestHash && id < best)) {
      best = id;
      bestHash = h;
    }
  }
  return best;
}

/**
 * How long (seconds) after a new chunk is known a listener waits for a
 * neighbour to offer it before asking the server: 0 for the elected
 * fetcher, and for a listener without neighbours or without an id yet (no
 * one else would fetch it); `peerWaitSeconds` for the others.
 * @param {{selfId: string | null, neighbourIds: Iterable<string>, index: number, peerWaitSeconds: number}} args
 * @returns {number}
 */
export function liveFetchDelay({ selfId, neighbourIds, index, peerWaitSeconds }) {
  const ids = [...neighbourIds];
  if (selfId === null || ids.length === 0) return 0;
  if (electedFetcher(selfId, ids, index) === selfId) return 0;
  return Math.max(0, Number.isFinite(peerWaitSeconds) ? peerWaitSeconds : 0);
}
