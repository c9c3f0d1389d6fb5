// @ts-check
// Peer-to-peer logic of the browser client: a pure state machine, no I/O.
//
// Theory of operation
// -------------------
// `P2PCore` is fed events (a control-socket message, a DataChannel frame, a
// channel that opened or closed, a chunk the player obtained, a request the
// player's scheduler made, the passing of time) and answers each with a list
// of *effects*, plain objects that the I/O shell (transport.js) carries out:
//
//   {kind: "control", msg}                 send a JSON message on the control socket
//   {kind: "open", peer, role}             create an RTCPeerConnection; role
//                                          "offerer" (we dial: create the
//                                          DataChannel and the SDP offer) or
//                                          "answerer" (we were dialled)
//   {kind: "rtc", peer, data}              apply signaling data ({sdp} or {candidate})
//   {kind: "close", peer}                  close that connection
//   {kind: "send", peer, frame}            send one wire frame (Uint8Array) on its channel
//   {kind: "serve", peer, index}           read chunk `index` (memory or IndexedDB) and
//                                          call `served(peer, index, bytes | null)`
//   {kind: "deliver", peer, index, data}   a requested chunk arrived whole (not yet verified)
//   {kind: "reject", peer, index, reason}  a requested chunk will not come from that peer
//   {kind: "peerHave", peer, have}         tell the scheduler what a neighbour holds
//   {kind: "peerGone", peer}               tell the scheduler a neighbour is gone
//
// Time is always an argument (`now`, seconds, the player's clock), so the
// rules are exact and testable without a browser or timers.
//
// Rules
// -----
// - Tracker: on `welcome` and at the start of a track's session the whole
//   holding is announced (`have`, replace); chunks obtained later are added in
//   batches on `tick` (so a listener seeds while it downloads). While chunks
//   are missing and there are fewer than `wantNeighbours` neighbours, `want`
//   asks for holders of the missing chunks, at first at once, then every
//   `wantInterval` seconds, backing off (doubling) while answers bring nobody
//   new. With the overlay on, a lookup round comes before each (see Overlay).
// - Neighbours: we dial the candidates of a `peers` answer while we have fewer
//   than `wantNeighbours` (dialled and dialling together); we answer offers
//   while we have fewer than `maxNeighbours` and reply `{"reject": "full"}`
//   otherwise. The gap between the two leaves room for late listeners: were
//   both 5, the first six listeners would fill each other's places and the
//   seventh would find nobody to take it. Glare (both sides dialled each other):
//   the side with the smaller peer id keeps its own offer and ignores the
//   other's; the larger one drops its offer and answers. A second offer from a
//   known peer replaces the old connection (the other side gave it up). A
//   connection not open, with the neighbour's HAVE received, within
//   `connectTimeout` is closed, and that peer is not dialled again for
//   `retryCooldown` seconds. Banned peers are never dialled nor answered.
// - Wire (protocol.js): on open each side sends HAVE (its whole holding) and
//   again whenever the holding grew (batched on `tick`). A REQUEST is served
//   from the holding, chunk after chunk per neighbour, in 16 KiB PIECEs; at
//   most `uploadSlots` neighbours (the welcome's `limits.upload_slots`) are
//   served at once, and a request from one more is answered with CHOKE, as is
//   a request for a chunk not held. The number of neighbours being served is
//   reported to the tracker (`slots`) when it changes.
// - Requests: the player's scheduler asks `request(peer, index)`; the chunk
//   comes back as `deliver` once whole, or `reject` (CHOKE, closed channel).
//   The player checks its SHA-256 before appending or caching it; a mismatch
//   comes back here as `verifyFailed(peer)`: that peer is dropped and banned
//   for the session, and the failure is counted in the next `stats`.
//   A malformed or unrequested frame bans the sender too.
// - Overlay (lookup without the tracker; docs/wire.md "Overlay"): when the
//   rules above would `want`, a *lookup round* comes first. Candidates this
//   side already knows for the session's track (its directory: ids learnt from
//   neighbours' HOLDERS, departure notices and tracker answers, each kept
//   `directoryTtl` seconds) are sent to the server as `introduce` requests (the
//   server checks each is a connected holder and answers `peers` with
//   `for: "introduce"` and the `peer_id` asked, listing it or nobody), and every open neighbour not
//   asked within `lookupInterval` gets a LOOKUP (one hop: a neighbour answers
//   from what it knows, it never asks on). The round ends after `lookupWait`
//   or once every answer is in. A round that brought a new neighbour needs no
//   `want`. One that brought nobody although every neighbour asked answered
//   and every introduction was answered found the overlay *exhausted*: the
//   tracker would name no one else (it refused those candidates itself, and
//   newcomers dial us), so the want backs off instead (doubling, as after a
//   tracker answer that brought nobody) and goes out only once the interval
//   is at `maxWantInterval`, so that the tracker still checks the
//   neighbours' view at a tracker-only peer's slowest pace; a want that falls
//   due while those answers are younger than `lookupInterval` (nobody left
//   to ask) is backed off the same way. Any other round (a neighbour silent,
//   an introduction unanswered, nobody at all to ask) falls back to `want`.
//   A session's start has no neighbour to ask: its round waits for the
//   introductions of the candidates known (the first seconds come from the
//   server anyway) and wants only if none is introduced; knowing nobody, it
//   wants at once. A neighbour answers a LOOKUP with at most `maxHolders`
//   ids: itself and its neighbours with a non-empty HAVE when the track is its
//   session's, then its directory; at most one LOOKUP per `lookupGap` seconds
//   from one neighbour is answered, more are ignored. `lookup({track,
//   rendition})` asks the open neighbours about another track (the next of a
//   playlist) ahead of time. A peer that starts another track first tells its
//   open neighbours where it goes (an unsolicited HOLDERS naming only itself,
//   once per neighbour). Nonsense is treated as a bad chunk (counted in
//   `verify_failures`, the neighbour dropped and banned): an unsolicited HOLDERS
//   that is not such a notice, more than `maxHolders` ids, duplicates, our own
//   id, or `maxBadHolders` more suggestions the server refused as not holders
//   than it introduced (a departing peer naming itself is never held against
//   it: it may not have announced a chunk yet). `overlay: false`
//   turns the asking off (tracker only, as before).
// - Peer wait: `waitUntil(now)` tells the scheduler how long it may hold back
//   server requests because peers are being looked for (tracker not answered
//   yet, connections still opening). It is only ever a bound in time: the
//   scheduler's own deadlines and emergency mode still go to the server.
// - Upload (upload-policy.js): a listener that does not share (`upload: false`,
//   or `setUpload(false)` when the listener stops or never said yes) still
//   dials holders and downloads from them, but announces nothing to the
//   tracker (an announcement made before is withdrawn: `have` replace, empty),
//   sends its neighbours an empty HAVE (so they keep the link), chokes every
//   REQUEST, never names itself in HOLDERS and sends no departure notice.
//   A sharing listener keeps the upload cap (`uploadKbps`, or the welcome's
//   `limits.upload_kbps` where stricter): a chunk starts being served only
//   while the UploadBudget allows; a queued request waits for `tick`.
// - Stats: every `statsInterval` seconds (sooner after a verify failure or the
//   start-up time became known, at most once a second) the counts since the
//   last report; a report the server refused (`rate_limited`) is added back.
//   On a live track the report also carries the latency at that moment
//   (`live_latency_seconds`, a value, not a count: never added back).

import { Reassembler, WireError, decode, encode, splitChunk, toRanges } from "./protocol.js";
import { MAX_LIVE_LATENCY } from "./control-protocol.js";
import { UploadBudget, stricterCap } from "./upload-policy.js";

/**
 * @typedef {import("./control-protocol.js").ServerMessage} ServerMessage
 * @typedef {import("./protocol.js").Lookup} Lookup
 * @typedef {import("./protocol.js").Holders} Holders
 * @typedef {{kind: "control", msg: Record<string, unknown>}
 *   | {kind: "open", peer: string, role: "offerer" | "answerer"}
 *   | {kind: "rtc", peer: string, data: Record<string, any>}
 *   | {kind: "close", peer: string}
 *   | {kind: "send", peer: string, frame: Uint8Array<ArrayBuffer>}
 *   | {kind: "serve", peer: string, index: number}
 *   | {kind: "deliver", peer: string, index: number, data: Uint8Array<ArrayBuffer>}
 *   | {kind: "reject", peer: string, index: number, reason: "choked" | "closed"}
 *   | {kind: "peerHave", peer: string, have: number[]}
 *   | {kind: "peerGone", peer: string}} Effect what the shell carries out (see above)
 * @typedef {{
 *   id: string, role: "offerer" | "answerer", state: "connecting" | "open", since: number, openedAt: number | null,
 *   ranges: Array<[number, number]> | null, pending: Set<number>, cancelled: Set<number>, reassembler: Reassembler,
 *   uploads: number[], serving: number | null, servingCancelled: boolean, lookups: Map<string, number>,
 *   askedAt: number, answeredAt: number, noticed: boolean, badHolders: number, goodHolders: number,
 * }} Neighbour
 * @typedef {{
 *   track: string, rendition: string, chunks: Set<number>, maxIndex: number, minIndex: number, complete: boolean, held: Set<number>,
 *   added: Set<number>, fullHave: boolean, wireDirty: boolean, announcedComplete: boolean, startedAt: number,
 *   answered: boolean, knownAt: number, shown: boolean,
 * }} Session
 * @typedef {{active: boolean, until: number, found: number, asked: Set<string>, answered: number}} Round
 * @typedef {{down: number, up: number, http: number, stalls: number, failures: number, live: number}} Counts
 * @typedef {{httpBytes?: number, peerBytes?: number, livePeerBytes?: number, stalls?: number, liveLatency?: number | null}} Totals
 *   the player's cumulative counters (livePeerBytes: the part of peerBytes that was live chunks), and a live
 *   track's current latency (seconds; stats.live_latency_seconds)
 */

export const DEFAULT_P2P_SETTINGS = Object.freeze({
  wantNeighbours: 5, // we dial (and want) while we have fewer neighbours than this
  maxNeighbours: 16, // connections to other peers at most, both directions: offers beyond are refused
  uploadSlots: 4, // neighbours served at once; the welcome's limits.upload_slots wins
  requestSlots: 2, // concurrent requests the scheduler may send one neighbour
  maxQueued: 16, // requests of one neighbour queued here; more are choked
  connectTimeout: 5, // seconds for a connection to open and bring the neighbour's HAVE
  startWait: 2, // seconds a new session waits for the tracker's first answer
  wantGrace: 1.5, // seconds the scheduler waits for an outstanding `want`
  wantTimeout: 10, // an unanswered `want` is given up after this
  wantInterval: 1.5, // seconds between wants while neighbours are missing (doubling, up to maxWantInterval, while answers bring nobody new)
  maxWantInterval: 30,
  retryCooldown: 30, // seconds before a peer that failed to connect is dialled again
  statsInterval: 5, // the welcome's limits.stats_interval wins
  urgentStatsGap: 1, // earliest report after a verify failure or a start-up time
  slotsGap: 1, // seconds between `slots` reports
  keepalive: 60, // ping when nothing else was sent for this long
  maxWant: 256, // the tracker's limits.max_want
  maxTrackerRanges: 256, // the tracker's limits.max_ranges
  maxWireRanges: 4096, // protocol.MAX_RANGES
  liveSlack: 64, // chunk indices past the manifest a neighbour may announce
  lookupWait: 0.5, // seconds a lookup round waits for neighbours and introductions before `want`
  lookupGap: 1, // seconds between two LOOKUPs of one neighbour that are answered; more are ignored
  lookupInterval: 5, // seconds before the same neighbour is asked again
  maxHolders: 8, // ids in one HOLDERS answer; an answer with more is a flood
  directoryTtl: 30, // seconds an id learnt from the overlay stays a candidate
  maxDirectory: 64, // candidates remembered per track (the oldest is forgotten)
  maxBadHolders: 8, // suggestions of one neighbour refused as not holders, beyond those introduced, before it counts as a bad chunk
  overlay: true, // ask neighbours before the tracker (false: the tracker only)
  upload: true, // announce and serve what is held (false: download only; setUpload changes it)
  uploadKbps: 0, // upload cap in kbit/s (0: none); the welcome's limits.upload_kbps applies where stricter
  uploadBurst: 2, // seconds of the cap a burst may take
  corrupt: false, // TEST ONLY: flip a byte in every chunk served (a bad seeder)
});

/**
 * The settings' types (DEFAULT_P2P_SETTINGS's values are its defaults).
 * @typedef {{[K in keyof typeof DEFAULT_P2P_SETTINGS]: (typeof DEFAULT_P2P_SETTINGS)[K] extends boolean ? boolean : number}} P2PSettings
 */

const MAX_DIRECTORY_TRACKS = 16;
/** @type {(track: string, rendition: string) => string} */
const swarmKey = (track, rendition) => `${track}/${rendition}`; // names never hold "/"

export const MAX_REPORT = 1 << 30; // the server refuses larger counts in one report

/**
 * The control socket's URL for a track URL (`{public_url}/v1/tracks/{id}`):
 * `ws(s)://{public_url host and path}/v1/ws`.
 * @param {string | URL} trackUrl
 * @param {string | URL} [base]
 * @returns {string}
 */
export function controlUrl(trackUrl, base = undefined) {
  const u = base === undefined ? new URL(trackUrl) : new URL(trackUrl, base);
  const prefix = u.pathname.replace(/\/v1\/tracks\/[^/]*\/*$/, "").replace(/\/+$/, "");
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.pathname = `${prefix}/v1/ws`;
  u.search = "";
  u.hash = "";
  return u.href;
}

/**
 * @param {Iterable<number>} values
 * @returns {number} the largest, -1 when there is none
 */
function maxOf(values) {
  let m = -1;
  for (const v of values) if (v > m) m = v;
  return m;
}

/**
 * @param {Iterable<number>} values
 * @returns {number} the smallest, 0 when there is none
 */
function minOf(values) {
  let m = Infinity;
  for (const v of values) if (v < m) m = v;
  return Number.isFinite(m) ? m : 0;
}

/**
 * Every index of inclusive ranges, bounded to [floor, limit), ascending and
 * once each: overlapping ranges (a hostile HAVE) cost no more than `limit -
 * floor` (a live window's indices are large, its span small).
 * @param {ReadonlyArray<readonly [number, number] | number[]>} ranges
 * @param {number} limit
 * @param {number} [floor]
 * @returns {number[]}
 */
export function expandRanges(ranges, limit, floor = 0) {
  const sorted = ranges.filter(([first]) => first < limit).sort((a, b) => a[0] - b[0]);
  const out = [];
  let next = floor; // first index not yet listed
  for (const [first, last] of sorted) {
    const end = Math.min(last, limit - 1);
    for (let i = Math.max(first, next); i <= end; i++) out.push(i);
    next = Math.max(next, end + 1);
  }
  return out;
}

/**
 * Toggle one byte in the middle of a copy of `data` (Uint8Array). TEST ONLY:
 * what a corrupting seeder sends.
 * @param {Uint8Array} data
 * @returns {Uint8Array}
 */
export function corruptCopy(data) {
  const out = new Uint8Array(data);
  out[out.length >> 1] ^= 0xff;
  return out;
}

export class P2PCore {
  /** @param {Partial<P2PSettings>} settings */
  constructor(settings = {}) {
    for (const key of Object.keys(settings)) {
      if (!(key in DEFAULT_P2P_SETTINGS)) throw new TypeError(`unknown p2p setting: ${key}`);
    }
    /** @type {Readonly<P2PSettings>} */
    this.settings = Object.freeze({ ...DEFAULT_P2P_SETTINGS, ...settings });
    /** @type {string | null} */
    this.peerId = null;
    /** @type {object[]} */
    this.iceServers = []; // the welcome's, then the TURN entries asked for (turn)
    /** @type {object[]} */
    this.welcomeIce = [];
    // TURN on request (docs/p2p.md): asked by a peer that needs a relay, renewed
    // halfway through the credentials' life while the socket lives.
    this.needsRelay = false; // set by the shell of a p2p="relay" player: ask at welcome
    /** @type {{servers: object[], renewAt: number, asking: boolean, unavailable: boolean, retryAt: number}} */
    this.turn = { servers: [], renewAt: Infinity, asking: false, unavailable: false, retryAt: -Infinity };
    /** @type {Map<string, number>} */
    this.sources = new Map(); // peer id -> verified bytes since the last report (stats.sources)
    this.uploadSlots = this.settings.uploadSlots;
    this.statsInterval = this.settings.statsInterval;
    this.uploading = this.settings.upload; // announce and serve (setUpload)
    this.budget = new UploadBudget(this.settings.uploadKbps, this.settings.uploadBurst);
    this.connected = false; // welcomed on the current control socket
    /** @type {Session | null} */
    this.session = null;
    /** @type {Map<string, Neighbour>} */
    this.neighbours = new Map(); // peer id -> Neighbour
    /** @type {Set<string>} */
    this.banned = new Set();
    /** @type {Map<string, number>} */
    this.cooldown = new Map(); // peer id -> time before which it is not dialled
    this.want = { outstanding: false, sentAt: -Infinity, nextAt: -Infinity, interval: this.settings.wantInterval };
    /** @type {Map<string, Map<string, {until: number, source: string | null}>>} */
    this.directory = new Map(); // "track/rendition" -> Map(peer id -> {until, source}), oldest first
    /** @type {Map<string, {source: string | null, at: number}>} */
    this.introducing = new Map(); // peer id -> {source, at}: `introduce` asked, not yet answered
    /** @type {Round} */
    this.round = { active: false, until: -Infinity, found: 0, asked: new Set(), answered: 0 };
    this.lastSentAt = -Infinity;
    this.slots = { reported: 0, at: -Infinity };
    // cumulative counters of this side; the player's are passed to tick()
    this.upBytes = 0;
    this.verifyFailures = 0;
    /** @type {Counts} */
    this.reported = { down: 0, up: 0, http: 0, stalls: 0, failures: 0, live: 0 };
    /** @type {(Counts & {startup: number | null}) | null} */
    this.lastReport = null; // the last stats sent, until the next: added back if refused
    /** @type {number | null} */
    this.pendingStartup = null;
    this.urgentStats = false;
    this.stats = { at: -Infinity };
  }

  // ---- control socket ------------------------------------------------------

  /**
   * The control socket closed: a new one brings a new welcome and peer id.
   * @returns {Effect[]}
   */
  controlClosed() {
    this.connected = false;
    this.want.outstanding = false;
    this.turn.asking = false;
    return [];
  }

  /**
   * A neighbour connection could not be made directly (or the player allows
   * only relayed ones): ask for TURN credentials unless held, asked or refused.
   * @param {number} now
   * @returns {Effect[]}
   */
  needRelay(now) {
    /** @type {Effect[]} */
    const out = [];
    const t = this.turn;
    if (!this.connected || t.asking || t.unavailable || t.servers.length > 0 || now < t.retryAt) return out;
    t.asking = true;
    this.sendControl(out, { type: "turn" }, now);
    return out;
  }

  /**
   * `bytes` from neighbour `peer` passed their SHA-256 check: named in the next report's `sources`.
   * @param {string} peer
   * @param {number} bytes
   */
  deliveredBy(peer, bytes) {
    if (bytes > 0) this.sources.set(peer, (this.sources.get(peer) ?? 0) + bytes);
  }

  /**
   * One message (already parsed JSON) from the control socket.
   * @param {ServerMessage | null} msg
   * @param {number} now
   * @returns {Effect[]}
   */
  onControl(msg, now) {
    /** @type {Effect[]} */
    const out = [];
    if (!msg || typeof msg !== "object") return out;
    switch (msg.type) {
      case "welcome": {
        this.peerId = String(msg.peer_id);
        this.welcomeIce = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
        this.iceServers = [...this.welcomeIce, ...this.turn.servers];
        this.turn.asking = false;
        if (this.needsRelay || this.turn.servers.length > 0) {
          // Credentials name the peer id: a new socket asks afresh, before any dial.
          this.turn.servers = [];
          this.iceServers = this.welcomeIce.slice();
          this.connected = true;
          out.push(...this.needRelay(now));
        }
        /** @type {Record<string, number>} */
        const limits = msg.limits && typeof msg.limits === "object" ? msg.limits : {};
        if (Number.isInteger(limits.upload_slots) && limits.upload_slots > 0) this.uploadSlots = limits.upload_slots;
        if (Number.isFinite(limits.stats_interval) && limits.stats_interval > 0) this.statsInterval = limits.stats_interval;
        if (Number.isInteger(limits.upload_kbps)) this.budget.setCap(stricterCap(this.settings.uploadKbps, limits.upload_kbps));
        this.connected = true;
        this.slots.reported = 0; // a new connection starts at 0 in use
        this.lastSentAt = now;
        if (this.session) {
          this.session.fullHave = true;
          this.session.shown = false; // a new socket: the tracker knows nothing of us
          this.want.outstanding = false;
          this.want.nextAt = now;
          this.want.interval = this.settings.wantInterval;
          this.session.knownAt = -Infinity; // a new connection asks the tracker afresh
          this.endRound();
          this.introducing.clear();
          this.flushTracker(out, now);
          this.maybeWant(out, now);
        }
        break;
      }
      case "turn": {
        const ttl = msg.ttl_seconds;
        const first = this.turn.servers.length === 0;
        this.turn.asking = false;
        this.turn.servers = msg.ice_servers;
        this.turn.renewAt = now + ttl / 2;
        this.iceServers = [...this.welcomeIce, ...this.turn.servers];
        if (first) {
          // A relay makes every dial that failed worth one more try, now: a
          // listener behind a symmetric NAT would otherwise wait retryCooldown
          // after its first failure, which is most of a short track.
          this.cooldown.clear();
          this.want.nextAt = now;
          this.maybeWant(out, now);
        }
        break;
      }
      case "peers":
        if (msg.for === "introduce") this.onIntroduced(msg, now, out);
        else this.onPeers(msg, now, out);
        break;
      case "signal":
        if (typeof msg.from === "string" && msg.data && typeof msg.data === "object") this.onSignal(msg.from, msg.data, now, out);
        break;
      case "error":
        if (msg.for === "stats" && this.lastReport) {
          // refused whole (rate limited): those counts go out with the next report
          const r = this.lastReport;
          this.reported.down -= r.down;
          this.reported.up -= r.up;
          this.reported.http -= r.http;
          this.reported.stalls -= r.stalls;
          this.reported.failures -= r.failures;
          this.reported.live -= r.live;
          if (r.startup !== null && this.pendingStartup === null) this.pendingStartup = r.startup;
          this.lastReport = null;
        } else if (msg.for === "want") {
          this.want.outstanding = false;
        } else if (msg.for === "turn") {
          this.turn.asking = false;
          if (msg.error === "no_turn") this.turn.unavailable = true;
          else this.turn.retryAt = now + this.settings.maxWantInterval;
        }
        break;
      default:
        break;
    }
    return out;
  }

  // ---- session (one track's rendition) -------------------------------------

  /**
   * The player opened a track: `{track, rendition, chunks: [indices], complete,
   * held: [indices we can serve]}`. Ends the previous session.
   * @param {{track: string, rendition: string, chunks: Iterable<number>, complete?: boolean, held?: Iterable<number>}} opened
   * @param {number} now
   * @returns {Effect[]}
   */
  startSession({ track, rendition, chunks, complete = false, held = [] }, now) {
    /** @type {Effect[]} */
    const out = [];
    const old = this.session;
    if (old && this.uploading && this.settings.overlay && this.peerId !== null && (old.track !== track || old.rendition !== rendition)) {
      // where we go, told to the neighbours we leave: they can introduce us to whoever asks
      const frame = encode({ type: "holders", track, rendition, peers: [this.peerId] });
      for (const nb of this.neighbours.values()) if (nb.state === "open") out.push({ kind: "send", peer: nb.id, frame });
    }
    out.push(...this.stopSession(now));
    this.session = {
      track,
      rendition,
      chunks: new Set(chunks),
      maxIndex: maxOf(chunks),
      minIndex: minOf(chunks),
      complete: Boolean(complete),
      held: new Set(held),
      added: new Set(), // held since the last tracker announcement
      fullHave: true, // announce the whole holding (replace) next
      wireDirty: false, // neighbours need a new HAVE
      announcedComplete: false,
      startedAt: now,
      answered: false, // the tracker answered a want of this session
      knownAt: -Infinity, // when a lookup round last found the overlay exhausted (every answer in, nobody new)
      shown: false, // a holding was announced to the tracker on this socket (withdrawn when sharing stops)
    };
    this.want = { outstanding: false, sentAt: -Infinity, nextAt: now, interval: this.settings.wantInterval };
    if (this.connected) {
      this.flushTracker(out, now);
      this.maybeWant(out, now);
    }
    return out;
  }

  /**
   * A newer manifest of the same rendition (a live transcode grew or ended).
   * @param {{chunks: Iterable<number>, complete?: boolean}} manifest
   * @param {number} now
   * @returns {Effect[]}
   */
  updateManifest({ chunks, complete = false }, now) {
    /** @type {Effect[]} */
    const out = [];
    const s = this.session;
    if (!s) return out;
    const top = maxOf(chunks);
    const grew = top > s.maxIndex;
    s.chunks = new Set(chunks);
    s.maxIndex = Math.max(s.maxIndex, top);
    s.minIndex = minOf(chunks);
    s.complete = Boolean(complete);
    if (grew) {
      // neighbours' announcements are clamped to what the manifest lists: re-read them
      for (const nb of this.neighbours.values()) if (nb.ranges) out.push(this.peerHaveEffect(nb));
    }
    if (this.holdsAll()) this.flushTracker(out, now);
    return out;
  }

  /**
   * The player leaves this track: tell the tracker, close every neighbour.
   * @param {number} now
   * @returns {Effect[]}
   */
  stopSession(now) {
    /** @type {Effect[]} */
    const out = [];
    const s = this.session;
    if (!s) return out;
    for (const id of [...this.neighbours.keys()]) this.closeNeighbour(id, out, now, { cool: false });
    if (this.connected) this.sendControl(out, { type: "leave", track: s.track, rendition: s.rendition }, now);
    this.session = null;
    this.endRound();
    this.introducing.clear();
    return out;
  }

  /**
   * We now hold chunk `index` (from the server, the cache or a verified peer).
   * @param {number} index
   * @param {number} now
   * @returns {Effect[]}
   */
  chunkAdded(index, now) {
    const s = this.session;
    if (!s || !Number.isInteger(index) || index < 0 || s.held.has(index)) return [];
    s.held.add(index);
    s.added.add(index);
    s.wireDirty = true;
    return [];
  }

  /**
   * We can no longer serve chunk `index` (evicted, missing from the cache).
   * @param {number} index
   * @returns {Effect[]}
   */
  chunkDropped(index) {
    const s = this.session;
    if (!s || !s.held.delete(index)) return [];
    s.added.delete(index);
    s.fullHave = true;
    s.wireDirty = true;
    s.announcedComplete = false;
    return [];
  }

  /**
   * @returns {boolean}
   */
  holdsAll() {
    const s = this.session;
    if (!s || !s.complete) return false;
    for (const i of s.chunks) if (!s.held.has(i)) return false;
    return true;
  }

  /**
   * Chunks of the manifest not held, ascending.
   * @returns {number[]}
   */
  missing() {
    const s = this.session;
    if (!s) return [];
    return [...s.chunks].filter((i) => !s.held.has(i)).sort((a, b) => a - b);
  }

  /**
   * Ask the open neighbours about another track (the next of a playlist),
   * ahead of time: their answers fill the directory that the lookup round of
   * that track's session starts from.
   * @param {{track: string, rendition: string}} swarm
   * @param {number} now
   * @returns {Effect[]}
   */
  lookup({ track, rendition }, now) {
    /** @type {Effect[]} */
    const out = [];
    if (!this.settings.overlay) return out;
    for (const nb of this.neighbours.values()) this.ask(nb, track, rendition, out, now);
    return out;
  }

  /**
   * The listener shares (true) or not (false) from now on (upload-policy.js
   * decides). Stopping withdraws the tracker announcement, sends the open
   * neighbours an empty HAVE and chokes their queued requests (a chunk being
   * read still goes); starting announces the whole holding again.
   * @param {boolean} on
   * @param {number} now
   * @returns {Effect[]}
   */
  setUpload(on, now) {
    /** @type {Effect[]} */
    const out = [];
    if (on === this.uploading) return out;
    this.uploading = on;
    if (!on) {
      for (const nb of this.neighbours.values()) {
        for (const index of nb.uploads) out.push({ kind: "send", peer: nb.id, frame: encode({ type: "choke", index }) });
        nb.uploads = [];
      }
    }
    const s = this.session;
    if (!s) return out;
    s.fullHave = true;
    s.wireDirty = false;
    const frame = this.haveFrame();
    for (const nb of this.neighbours.values()) if (nb.state === "open") out.push({ kind: "send", peer: nb.id, frame });
    this.flushTracker(out, now);
    return out;
  }

  // ---- requests (the player's scheduler) -----------------------------------

  /**
   * Ask neighbour `peer` for chunk `index`. Returns the effects, or null when
   * that cannot be done now (not an open neighbour, already asked, or just
   * cancelled with pieces possibly still on their way).
   * @param {string} peer
   * @param {number} index
   * @param {number} now
   * @returns {Effect[] | null}
   */
  request(peer, index, now) {
    const nb = this.neighbours.get(peer);
    if (!nb || nb.state !== "open" || nb.pending.has(index) || nb.cancelled.has(index)) return null;
    nb.pending.add(index);
    nb.reassembler.expect(index);
    return [{ kind: "send", peer, frame: encode({ type: "request", index }) }];
  }

  /**
   * The player gave up chunk `index` from `peer` (deadline, seek, emergency).
   * @param {string} peer
   * @param {number} index
   * @returns {Effect[]}
   */
  cancel(peer, index) {
    const nb = this.neighbours.get(peer);
    if (!nb || !nb.pending.delete(index)) return [];
    nb.reassembler.forget(index);
    nb.cancelled.add(index);
    return [{ kind: "send", peer, frame: encode({ type: "cancel", index }) }];
  }

  /**
   * A chunk from `peer` failed its SHA-256 check: drop and ban that peer, count it.
   * @param {string} peer
   * @param {number} now
   * @returns {Effect[]}
   */
  verifyFailed(peer, now) {
    /** @type {Effect[]} */
    const out = [];
    this.verifyFailures += 1;
    this.urgentStats = true;
    this.banned.add(peer);
    if (this.neighbours.has(peer)) this.closeNeighbour(peer, out, now, { cool: false });
    return out;
  }

  /**
   * The start-up time of this load is known: report it once.
   * @param {number} seconds
   * @returns {Effect[]}
   */
  noteStartup(seconds) {
    if (Number.isFinite(seconds) && seconds >= 0) {
      this.pendingStartup = seconds;
      this.urgentStats = true;
    }
    return [];
  }

  // ---- neighbours (the transport's events) ---------------------------------

  /**
   * The DataChannel to `peer` is open: greet it with our holding.
   * @param {string} peer
   * @param {number} now
   * @returns {Effect[]}
   */
  channelOpen(peer, now) {
    /** @type {Effect[]} */
    const out = [];
    const nb = this.neighbours.get(peer);
    if (!nb || nb.state !== "connecting") return out;
    nb.state = "open";
    nb.openedAt = now;
    out.push({ kind: "send", peer, frame: this.haveFrame() });
    return out;
  }

  /**
   * The connection to `peer` closed or failed.
   * @param {string} peer
   * @param {number} now
   * @returns {Effect[]}
   */
  channelClosed(peer, now) {
    /** @type {Effect[]} */
    const out = [];
    const nb = this.neighbours.get(peer);
    if (nb) this.closeNeighbour(peer, out, now, { cool: nb.state !== "open" });
    return out;
  }

  /**
   * One binary frame from `peer`'s DataChannel.
   * @param {string} peer
   * @param {ArrayBuffer | Uint8Array} bytes
   * @param {number} now
   * @returns {Effect[]}
   */
  onFrame(peer, bytes, now) {
    /** @type {Effect[]} */
    const out = [];
    const nb = this.neighbours.get(peer);
    if (!nb || nb.state !== "open") return out;
    let msg;
    try {
      msg = decode(bytes);
    } catch (err) {
      if (err instanceof WireError) return this.misbehaved(peer, now);
      throw err;
    }
    switch (msg.type) {
      case "have":
        nb.ranges = msg.ranges;
        out.push(this.peerHaveEffect(nb));
        break;
      case "request":
        this.onRequest(nb, msg.index, out, now);
        break;
      case "piece": {
        if (nb.cancelled.has(msg.index)) {
          if (msg.offset + msg.data.length >= msg.total) nb.cancelled.delete(msg.index);
          break; // the tail of a transfer we cancelled
        }
        if (!nb.pending.has(msg.index)) return this.misbehaved(peer, now);
        let chunk;
        try {
          chunk = nb.reassembler.feed(msg);
        } catch (err) {
          if (err instanceof WireError) return this.misbehaved(peer, now);
          throw err;
        }
        if (chunk) {
          nb.pending.delete(msg.index);
          out.push({ kind: "deliver", peer, index: msg.index, data: chunk });
        }
        break;
      }
      case "cancel": {
        const at = nb.uploads.indexOf(msg.index);
        if (at >= 0) nb.uploads.splice(at, 1);
        if (nb.serving === msg.index) nb.servingCancelled = true;
        break;
      }
      case "choke":
        if (nb.pending.delete(msg.index)) {
          nb.reassembler.forget(msg.index);
          out.push({ kind: "reject", peer, index: msg.index, reason: "choked" });
        }
        break;
      case "lookup":
        this.onLookup(nb, msg, out, now);
        break;
      case "holders":
        return this.onHolders(nb, msg, now);
      default:
        break; // "unknown": a newer peer's message

    }
    return out;
  }

  /**
   * The shell read chunk `index` for `peer` (`data`: Uint8Array, or null when it could not).
   * @param {string} peer
   * @param {number} index
   * @param {Uint8Array | null} data
   * @param {number} now
   * @returns {Effect[]}
   */
  served(peer, index, data, now) {
    /** @type {Effect[]} */
    const out = [];
    const nb = this.neighbours.get(peer);
    if (!nb || nb.serving !== index) return out;
    const cancelled = nb.servingCancelled;
    nb.serving = null;
    nb.servingCancelled = false;
    if (!cancelled) {
      if (!data || data.length === 0) {
        out.push({ kind: "send", peer, frame: encode({ type: "choke", index }) });
        this.chunkDropped(index);
      } else {
        const bytes = this.settings.corrupt ? corruptCopy(data) : data;
        for (const piece of splitChunk(index, bytes)) out.push({ kind: "send", peer, frame: encode(piece) });
        this.upBytes += bytes.length;
        this.budget.spend(bytes.length, now);
      }
    }
    this.pump(nb, out, now);
    return out;
  }

  /**
   * Number of neighbours being served now (upload slots in use).
   * @returns {number}
   */
  slotsInUse() {
    let n = 0;
    for (const nb of this.neighbours.values()) if (nb.serving !== null || nb.uploads.length > 0) n += 1;
    return n;
  }

  // ---- time ------------------------------------------------------------------

  /**
   * Periodic work: tracker and neighbour announcements, wants, connection
   * timeouts, slot and stats reports, keepalive. `totals` are the player's
   * cumulative counters: {httpBytes, peerBytes, stalls}.
   * @param {number} now
   * @param {Totals} [totals]
   * @returns {Effect[]}
   */
  tick(now, totals = {}) {
    /** @type {Effect[]} */
    const out = [];
    const st = this.settings;
    for (const [id, nb] of [...this.neighbours]) {
      if (!nb.ranges && now - nb.since > st.connectTimeout) this.closeNeighbour(id, out, now, { cool: true });
    }
    if (this.want.outstanding && now - this.want.sentAt > st.wantTimeout) this.want.outstanding = false;
    for (const [id, e] of [...this.introducing]) if (now - e.at > st.wantTimeout) this.introducing.delete(id);
    for (const nb of this.neighbours.values()) {
      for (const [key, at] of [...nb.lookups]) if (now - at > st.wantTimeout) nb.lookups.delete(key);
    }
    // requests the upload cap held back
    for (const nb of this.neighbours.values()) this.pump(nb, out, now);
    const s = this.session;
    if (s && s.wireDirty) {
      s.wireDirty = false;
      // a listener that does not share has nothing new to tell
      const frame = this.uploading ? this.haveFrame() : null;
      if (frame) for (const nb of this.neighbours.values()) if (nb.state === "open") out.push({ kind: "send", peer: nb.id, frame });
    }
    if (this.connected) {
      this.flushTracker(out, now);
      this.maybeWant(out, now);
      const inUse = this.slotsInUse();
      if (inUse !== this.slots.reported && (now - this.slots.at >= st.slotsGap || inUse >= this.uploadSlots)) {
        this.slots.reported = inUse;
        this.slots.at = now;
        this.sendControl(out, { type: "slots", in_use: inUse }, now);
      }
      this.maybeStats(out, now, totals);
      if (this.turn.servers.length > 0 && now >= this.turn.renewAt && !this.turn.asking) {
        this.turn.asking = true;
        this.turn.renewAt = Infinity;
        this.sendControl(out, { type: "turn" }, now);
      }
      if (now - this.lastSentAt >= st.keepalive) this.sendControl(out, { type: "ping" }, now);
    }
    return out;
  }

  /**
   * Until when (same clock) the scheduler may hold back server requests for
   * chunks it could get from peers: -Infinity when nothing is pending.
   * @param {number} now
   * @returns {number}
   */
  waitUntil(now) {
    const s = this.session;
    if (!s || this.missing().length === 0) return -Infinity;
    const st = this.settings;
    let until = -Infinity;
    if (!s.answered) until = s.startedAt + st.startWait;
    if (this.want.outstanding) until = Math.max(until, this.want.sentAt + st.wantGrace);
    if (this.round.active) until = Math.max(until, this.round.until);
    for (const nb of this.neighbours.values()) {
      if (!nb.ranges) until = Math.max(until, nb.since + st.connectTimeout);
    }
    return until > now ? until : -Infinity;
  }

  /** A summary for the interface and for tests. */
  info() {
    return {
      peerId: this.peerId,
      connected: this.connected,
      track: this.session?.track ?? null,
      held: this.session ? this.session.held.size : 0,
      neighbours: [...this.neighbours.values()].map((nb) => ({
        id: nb.id,
        role: nb.role,
        state: nb.state,
        have: nb.ranges ? nb.ranges.reduce((n, [a, b]) => n + b - a + 1, 0) : null,
      })),
      banned: [...this.banned],
      upBytes: this.upBytes,
      verifyFailures: this.verifyFailures,
      slotsInUse: this.slotsInUse(),
      uploadSlots: this.uploadSlots,
      uploading: this.uploading,
      uploadKbps: this.budget.kbps,
    };
  }

  // ---- internals -------------------------------------------------------------

  /**
   * @param {Effect[]} out
   * @param {Record<string, unknown>} msg
   * @param {number} now
   */
  sendControl(out, msg, now) {
    out.push({ kind: "control", msg });
    this.lastSentAt = now;
  }

  /**
   * @param {string} id
   * @param {"offerer" | "answerer"} role
   * @param {number} now
   * @returns {Neighbour}
   */
  newNeighbour(id, role, now) {
    /** @type {Neighbour} */
    const nb = {
      id,
      role,
      state: "connecting",
      since: now,
      openedAt: null,
      ranges: null, // its last HAVE
      pending: new Set(), // chunks we asked of it
      cancelled: new Set(), // chunks we gave up whose pieces may still come
      reassembler: new Reassembler(),
      uploads: [], // chunks it asked of us, queued
      serving: null, // the chunk being read for it
      servingCancelled: false,
      lookups: new Map(), // our LOOKUPs it has not answered: "track/rendition" -> when asked
      askedAt: -Infinity, // when we last asked it
      answeredAt: -Infinity, // when we last answered a LOOKUP of its
      noticed: false, // it told us where it goes
      badHolders: 0, // its suggestions the server refused as not holders
      goodHolders: 0, // its suggestions the server introduced
    };
    this.neighbours.set(id, nb);
    return nb;
  }

  /**
   * @param {string} id
   * @param {Effect[]} out
   * @param {number} now
   * @param {{cool: boolean}} how cool: not dialled again for retryCooldown
   */
  closeNeighbour(id, out, now, { cool }) {
    const nb = this.neighbours.get(id);
    if (!nb) return;
    this.neighbours.delete(id);
    if (nb.ranges) out.push({ kind: "peerGone", peer: id });
    for (const index of nb.pending) out.push({ kind: "reject", peer: id, index, reason: "closed" });
    out.push({ kind: "close", peer: id });
    if (cool) this.cooldown.set(id, now + this.settings.retryCooldown);
    this.round.asked.delete(id);
    // a place came free: look for another neighbour soon
    this.want.nextAt = Math.min(this.want.nextAt, now + 1);
  }

  /**
   * @param {string} peer
   * @param {number} now
   * @returns {Effect[]}
   */
  misbehaved(peer, now) {
    /** @type {Effect[]} */
    const out = [];
    this.banned.add(peer);
    this.closeNeighbour(peer, out, now, { cool: false });
    return out;
  }

  /**
   * @param {Neighbour} nb one whose HAVE came (`ranges` set)
   * @returns {Effect}
   */
  peerHaveEffect(nb) {
    const limit = (this.session ? this.session.maxIndex + 1 : 0) + this.settings.liveSlack;
    const floor = this.session ? this.session.minIndex : 0; // a live window's oldest chunk
    return { kind: "peerHave", peer: nb.id, have: expandRanges(/** @type {Array<[number, number]>} */ (nb.ranges), limit, floor) };
  }

  /**
   * @returns {Uint8Array<ArrayBuffer>}
   */
  haveFrame() {
    const held = this.session && this.uploading ? [...this.session.held] : [];
    return encode({ type: "have", ranges: toRanges(held).slice(0, this.settings.maxWireRanges) });
  }

  /**
   * @param {Effect[]} out
   * @param {number} now
   */
  flushTracker(out, now) {
    const s = this.session;
    if (!s || !this.connected) return;
    const base = { type: "have", track: s.track, rendition: s.rendition };
    if (!this.uploading) {
      // nothing announced; what was, withdrawn (an empty holding removes the track)
      s.added.clear();
      if (s.fullHave && s.shown) this.sendControl(out, { ...base, ranges: [], complete: false, replace: true }, now);
      s.fullHave = false;
      s.shown = false;
      s.announcedComplete = false;
      return;
    }
    const complete = this.holdsAll();
    if (s.fullHave) {
      s.fullHave = false;
      s.added.clear();
      s.announcedComplete = complete;
      // an empty holding is worth announcing only to replace an older one
      this.sendControl(out, { ...base, ranges: toRanges([...s.held]).slice(0, this.settings.maxTrackerRanges), complete, replace: true }, now);
      s.shown = true;
    } else if (s.added.size > 0 || (complete && !s.announcedComplete)) {
      const ranges = toRanges([...s.added]).slice(0, this.settings.maxTrackerRanges);
      s.added.clear();
      s.announcedComplete = complete;
      this.sendControl(out, { ...base, ranges, complete }, now);
      s.shown = true;
    }
  }

  /**
   * @param {Effect[]} out
   * @param {number} now
   */
  maybeWant(out, now) {
    const s = this.session;
    if (!s || !this.connected) return;
    if (this.round.active) {
      if (now >= this.round.until) this.finishRound(out, now);
      return;
    }
    if (this.want.outstanding || now < this.want.nextAt) return;
    if (this.neighbours.size >= this.settings.wantNeighbours) return;
    if (this.missing().length === 0) return;
    if (this.settings.overlay && this.startRound(out, now)) return;
    // nobody left to ask: every open neighbour was asked lately. If the last
    // round found the overlay exhausted, their answers still stand
    if (this.settings.overlay && now - s.knownAt < this.settings.lookupInterval && this.openNeighbours() > 0) {
      this.wantLater(out, now);
      return;
    }
    this.sendWant(out, now);
  }

  /**
   * The next want later, doubling the interval (as after a tracker answer that brought nobody).
   * @param {number} now
   */
  backOff(now) {
    this.want.interval = Math.min(this.want.interval * 2, this.settings.maxWantInterval);
    this.want.nextAt = now + this.want.interval;
  }

  /**
   * The overlay is exhausted: no want now, it backs off instead; once the
   * interval is at maxWantInterval the want goes out all the same, so the
   * tracker still checks the neighbours' view (a swarm split in two, a
   * neighbour that hides the others) at the pace of a tracker-only peer.
   * @param {Effect[]} out
   * @param {number} now
   */
  wantLater(out, now) {
    if (this.want.interval >= this.settings.maxWantInterval) this.sendWant(out, now);
    else this.backOff(now);
  }

  /**
   * @returns {number}
   */
  openNeighbours() {
    let n = 0;
    for (const nb of this.neighbours.values()) if (nb.state === "open") n += 1;
    return n;
  }

  /**
   * @param {Effect[]} out
   * @param {number} now
   */
  sendWant(out, now) {
    const s = this.session;
    const missing = this.missing();
    if (!s || !this.connected || this.want.outstanding || missing.length === 0) return;
    if (this.neighbours.size >= this.settings.wantNeighbours) return;
    this.want.outstanding = true;
    this.want.sentAt = now;
    this.want.nextAt = now + this.want.interval;
    this.sendControl(out, { type: "want", track: s.track, rendition: s.rendition, chunks: missing.slice(0, this.settings.maxWant) }, now);
  }

  /**
   * @param {import("./control-protocol.js").Peers} msg
   * @param {number} now
   * @param {Effect[]} out
   */
  onPeers(msg, now, out) {
    const s = this.session;
    if (!s || msg.track !== s.track || msg.rendition !== s.rendition) return;
    this.want.outstanding = false;
    s.answered = true;
    let dialled = 0;
    for (const c of Array.isArray(msg.peers) ? msg.peers : []) {
      const id = c && typeof c.peer_id === "string" ? c.peer_id : null;
      if (!id || id === this.peerId || this.neighbours.has(id) || this.banned.has(id)) continue;
      if ((this.cooldown.get(id) ?? -Infinity) > now) continue;
      if (this.neighbours.size >= this.settings.wantNeighbours) break;
      this.newNeighbour(id, "offerer", now);
      out.push({ kind: "open", peer: id, role: "offerer" });
      dialled += 1;
    }
    if (dialled > 0) {
      this.want.interval = this.settings.wantInterval;
      this.want.nextAt = now + this.want.interval;
    } else {
      this.backOff(now);
    }
    // holders of our track: what we tell a neighbour that asks
    for (const c of Array.isArray(msg.peers) ? msg.peers : []) {
      if (c && typeof c.peer_id === "string") this.remember(s.track, s.rendition, c.peer_id, null, now);
    }
  }

  // ---- overlay internals -----------------------------------------------------

  /**
   * Start a lookup round; false when there is nobody to ask and nothing to introduce.
   * @param {Effect[]} out
   * @param {number} now
   * @returns {boolean}
   */
  startRound(out, now) {
    const s = this.session;
    if (!s) return false; // maybeWant, the only caller, has a session
    /** @type {Round} */
    const round = { active: true, until: now + this.settings.lookupWait, found: 0, asked: new Set(), answered: 0 };
    this.round = round;
    const introduced = this.introduceKnown(out, now);
    for (const nb of this.neighbours.values()) if (this.ask(nb, s.track, s.rendition, out, now)) round.asked.add(nb.id);
    if (introduced === 0 && round.asked.size === 0) {
      this.endRound();
      return false;
    }
    // Even at a session's start (nobody to ask yet, only candidates from the
    // directory) the round waits for its introductions: the first seconds
    // come from the server anyway, and an introduction answers within a
    // round trip, so a want beside it would mostly find the same peers.
    return true;
  }

  endRound() {
    this.round = { active: false, until: -Infinity, found: 0, asked: new Set(), answered: 0 };
  }

  /**
   * The round is over: someone new came (no want); nobody did, but every
   * neighbour asked answered and every introduction was answered (the overlay
   * is exhausted: the tracker knows the same holders, it refused the busy
   * ones; newcomers will dial us): back off; otherwise want now.
   * @param {Effect[]} out
   * @param {number} now
   */
  finishRound(out, now) {
    const { found, answered } = this.round;
    const exhausted = answered > 0 && this.round.asked.size === 0 && this.introducing.size === 0;
    this.endRound();
    if (found > 0) {
      this.want.interval = this.settings.wantInterval;
      this.want.nextAt = now + this.want.interval;
    } else if (exhausted) {
      if (this.session) this.session.knownAt = now;
      this.wantLater(out, now);
    } else {
      this.sendWant(out, now);
    }
  }

  /**
   * Every answer of the round is in: finish it without waiting out lookupWait.
   * @param {Effect[]} out
   * @param {number} now
   */
  checkRound(out, now) {
    if (this.round.active && this.round.asked.size === 0 && this.introducing.size === 0) this.finishRound(out, now);
  }

  /**
   * LOOKUP to `nb` unless it was asked lately; true when sent.
   * @param {Neighbour} nb
   * @param {string} track
   * @param {string} rendition
   * @param {Effect[]} out
   * @param {number} now
   * @returns {boolean}
   */
  ask(nb, track, rendition, out, now) {
    if (nb.state !== "open" || now - nb.askedAt < this.settings.lookupInterval) return false;
    nb.askedAt = now;
    nb.lookups.set(swarmKey(track, rendition), now);
    out.push({ kind: "send", peer: nb.id, frame: encode({ type: "lookup", track, rendition }) });
    return true;
  }

  /**
   * `introduce` requests for the session's known candidates, while there is room; how many were sent.
   * @param {Effect[]} out
   * @param {number} now
   * @returns {number}
   */
  introduceKnown(out, now) {
    const s = this.session;
    const dir = s && this.directory.get(swarmKey(s.track, s.rendition));
    if (!dir || !this.connected) return 0;
    let sent = 0;
    const chunks = this.missing().slice(0, this.settings.maxWant); // as in a want: it must hold one of them
    for (const [id, e] of dir) {
      if (this.neighbours.size + this.introducing.size >= this.settings.wantNeighbours) break;
      if (e.until <= now || !this.dialable(id, now) || this.introducing.has(id)) continue;
      this.introducing.set(id, { source: e.source, at: now });
      this.sendControl(out, { type: "introduce", track: s.track, rendition: s.rendition, peer_id: id, chunks }, now);
      sent += 1;
    }
    return sent;
  }

  /**
   * @param {string} id
   * @param {number} now
   * @returns {boolean}
   */
  dialable(id, now) {
    return id !== this.peerId && !this.neighbours.has(id) && !this.banned.has(id) && (this.cooldown.get(id) ?? -Infinity) <= now;
  }

  /**
   * `id` holds (track, rendition), as `source` (a neighbour's id, or null: the tracker) said.
   * @param {string} track
   * @param {string} rendition
   * @param {string} id
   * @param {string | null} source
   * @param {number} now
   */
  remember(track, rendition, id, source, now) {
    if (id === this.peerId) return;
    const key = swarmKey(track, rendition);
    let dir = this.directory.get(key);
    if (!dir) {
      dir = new Map();
      this.directory.set(key, dir);
      if (this.directory.size > MAX_DIRECTORY_TRACKS) this.directory.delete(/** @type {string} */ (this.directory.keys().next().value));
    }
    dir.delete(id);
    dir.set(id, { until: now + this.settings.directoryTtl, source });
    if (dir.size > this.settings.maxDirectory) dir.delete(/** @type {string} */ (dir.keys().next().value));
  }

  /**
   * What we know holds (track, rendition), for a neighbour's LOOKUP (never `except` itself).
   * @param {string} track
   * @param {string} rendition
   * @param {string} except
   * @param {number} now
   * @returns {string[]}
   */
  holdersOf(track, rendition, except, now) {
    /** @type {Set<string>} */
    const found = new Set();
    const s = this.session;
    if (s && s.track === track && s.rendition === rendition) {
      if (s.held.size > 0 && this.uploading && this.peerId !== null) found.add(this.peerId);
      for (const nb of this.neighbours.values()) if (nb.id !== except && nb.ranges && nb.ranges.length > 0) found.add(nb.id);
    }
    const dir = this.directory.get(swarmKey(track, rendition));
    for (const [id, e] of dir ?? []) if (e.until > now && id !== except && !this.banned.has(id)) found.add(id);
    return [...found].slice(0, this.settings.maxHolders);
  }

  /**
   * @param {Neighbour} nb
   * @param {Lookup} msg
   * @param {Effect[]} out
   * @param {number} now
   */
  onLookup(nb, msg, out, now) {
    if (now - nb.answeredAt < this.settings.lookupGap) return; // rate limited: ignored
    nb.answeredAt = now;
    const peers = this.holdersOf(msg.track, msg.rendition, nb.id, now);
    out.push({ kind: "send", peer: nb.id, frame: encode({ type: "holders", track: msg.track, rendition: msg.rendition, peers }) });
  }

  /**
   * @param {Neighbour} nb
   * @param {Holders} msg
   * @param {number} now
   * @returns {Effect[]}
   */
  onHolders(nb, msg, now) {
    /** @type {Effect[]} */
    const out = [];
    const key = swarmKey(msg.track, msg.rendition);
    const asked = nb.lookups.has(key);
    if (!asked) {
      // unsolicited: only the notice "I go to this track", once
      if (nb.noticed || msg.peers.length !== 1 || msg.peers[0] !== nb.id) return this.badOverlay(nb.id, now);
      nb.noticed = true;
      this.remember(msg.track, msg.rendition, nb.id, nb.id, now);
      return out;
    }
    const unique = new Set(msg.peers);
    if (msg.peers.length > this.settings.maxHolders || unique.size !== msg.peers.length || (this.peerId !== null && unique.has(this.peerId))) {
      return this.badOverlay(nb.id, now);
    }
    nb.lookups.delete(key);
    const s = this.session;
    const ours = s && s.track === msg.track && s.rendition === msg.rendition;
    if (ours && this.round.asked.delete(nb.id)) this.round.answered += 1;
    for (const id of msg.peers) this.remember(msg.track, msg.rendition, id, nb.id, now);
    if (this.round.active && ours) this.introduceKnown(out, now);
    this.checkRound(out, now);
    return out;
  }

  /**
   * The server introduced us (`peers` with `for: "introduce"`): dial.
   * @param {import("./control-protocol.js").Peers} msg
   * @param {number} now
   * @param {Effect[]} out
   */
  onIntroduced(msg, now, out) {
    const s = this.session;
    if (!s || msg.track !== s.track || msg.rendition !== s.rendition) return;
    for (const c of Array.isArray(msg.peers) ? msg.peers : []) {
      const id = c && typeof c.peer_id === "string" ? c.peer_id : null;
      if (!id) continue;
      const source = this.neighbours.get(this.introducing.get(id)?.source ?? "");
      if (source && source.id !== id) source.goodHolders += 1;
      this.introducing.delete(id);
      if (!this.dialable(id, now) || this.neighbours.size >= this.settings.wantNeighbours) continue;
      this.newNeighbour(id, "offerer", now);
      out.push({ kind: "open", peer: id, role: "offerer" });
      s.answered = true;
      if (this.round.active) this.round.found += 1;
    }
    // refused (not a connected holder with a free slot, or not allowed): the answer lists nobody
    const listed = Array.isArray(msg.peers) && msg.peers.some((c) => c && c.peer_id === msg.peer_id);
    if (typeof msg.peer_id === "string" && !listed) this.introduceRefused(msg.peer_id, msg.reason === "busy", now, out);
    this.checkRound(out, now);
  }

  /**
   * The server refused to introduce `id`: forget it; unless it is only busy, its source was wrong.
   * @param {string} id
   * @param {boolean} busy
   * @param {number} now
   * @param {Effect[]} out
   */
  introduceRefused(id, busy, now, out) {
    const e = this.introducing.get(id);
    if (!e) return;
    this.introducing.delete(id);
    // a departing peer naming itself may not have announced a chunk yet: it stays a candidate
    if (e.source === id) return this.checkRound(out, now);
    const s = this.session;
    if (s) this.directory.get(swarmKey(s.track, s.rendition))?.delete(id);
    const source = e.source !== null && !busy ? this.neighbours.get(e.source) : undefined;
    if (source) {
      source.badHolders += 1;
      if (source.badHolders - source.goodHolders >= this.settings.maxBadHolders) out.push(...this.badOverlay(source.id, now));
    }
    this.checkRound(out, now);
  }

  /**
   * Overlay nonsense from `peer`: counted like a bad chunk (dropped, banned, reported).
   * @param {string} peer
   * @param {number} now
   * @returns {Effect[]}
   */
  badOverlay(peer, now) {
    const out = this.verifyFailed(peer, now);
    for (const dir of this.directory.values()) for (const [id, e] of [...dir]) if (e.source === peer || id === peer) dir.delete(id);
    return out;
  }

  /**
   * @param {string} from
   * @param {Record<string, any>} data
   * @param {number} now
   * @param {Effect[]} out
   */
  onSignal(from, data, now, out) {
    /** @type {() => void} */
    const reject = () => this.sendControl(out, { type: "signal", to: from, data: { reject: "full" } }, now);
    const nb = this.neighbours.get(from);
    if (data.reject) {
      if (nb && nb.role === "offerer" && nb.state === "connecting") this.closeNeighbour(from, out, now, { cool: true });
      return;
    }
    const isOffer = data.sdp && typeof data.sdp === "object" && data.sdp.type === "offer";
    if (!isOffer) {
      if (nb) out.push({ kind: "rtc", peer: from, data });
      return;
    }
    if (!this.session || this.banned.has(from)) {
      if (!nb) reject();
      return;
    }
    if (nb) {
      if (nb.role === "offerer" && nb.state === "connecting" && this.peerId !== null && this.peerId < from) {
        return; // glare: our offer stands, the other side answers it
      }
      this.closeNeighbour(from, out, now, { cool: false }); // glare lost, or a restart
    } else if (this.neighbours.size >= this.settings.maxNeighbours) {
      reject();
      return;
    }
    this.newNeighbour(from, "answerer", now);
    out.push({ kind: "open", peer: from, role: "answerer" });
    out.push({ kind: "rtc", peer: from, data });
  }

  /**
   * @param {Neighbour} nb
   * @param {number} index
   * @param {Effect[]} out
   * @param {number} now
   */
  onRequest(nb, index, out, now) {
    const s = this.session;
    const choke = () => out.push({ kind: "send", peer: nb.id, frame: encode({ type: "choke", index }) });
    if (!s || !this.uploading || !s.held.has(index)) return choke();
    if (nb.serving === index || nb.uploads.includes(index)) return; // asked twice: once is enough
    const served = nb.serving !== null || nb.uploads.length > 0;
    if (!served && this.slotsInUse() >= this.uploadSlots) return choke();
    if (nb.uploads.length >= this.settings.maxQueued) return choke();
    nb.uploads.push(index);
    this.pump(nb, out, now);
  }

  /**
   * Serve `nb`'s next queued request, if none is being read and the upload cap allows.
   * @param {Neighbour} nb
   * @param {Effect[]} out
   * @param {number} now
   */
  pump(nb, out, now) {
    if (nb.serving !== null || nb.uploads.length === 0 || !this.budget.canStart(now)) return;
    nb.serving = /** @type {number} */ (nb.uploads.shift());
    nb.servingCancelled = false;
    out.push({ kind: "serve", peer: nb.id, index: nb.serving });
  }

  /**
   * Report the counts not yet reported now, whatever the interval (the page goes away).
   * @param {number} now
   * @param {Totals} [totals]
   * @returns {Effect[]}
   */
  flushStats(now, totals = {}) {
    /** @type {Effect[]} */
    const out = [];
    if (this.connected) this.maybeStats(out, now, totals, true);
    return out;
  }

  /**
   * @param {Effect[]} out
   * @param {number} now
   * @param {Totals} totals
   * @param {boolean} [force]
   */
  maybeStats(out, now, totals, force = false) {
    const due = now - this.stats.at >= this.statsInterval;
    const urgent = this.urgentStats && now - this.stats.at >= this.settings.urgentStatsGap;
    if (!due && !urgent && !force) return;
    /** @type {(n: number) => number} */
    const clamp = (n) => Math.max(0, Math.min(MAX_REPORT, Math.floor(n)));
    const cur = {
      down: totals.peerBytes ?? 0,
      up: this.upBytes,
      http: totals.httpBytes ?? 0,
      stalls: totals.stalls ?? 0,
      failures: this.verifyFailures,
      live: totals.livePeerBytes ?? 0,
    };
    const keys = /** @type {Array<keyof Counts>} */ (Object.keys(cur));
    /** @type {Counts} */
    const delta = { down: 0, up: 0, http: 0, stalls: 0, failures: 0, live: 0 };
    for (const k of keys) delta[k] = clamp(cur[k] - this.reported[k]);
    const startup = this.pendingStartup;
    const empty = Object.values(delta).every((v) => v === 0) && startup === null;
    this.urgentStats = false;
    if (empty) return; // nothing to say; the keepalive ping covers silence
    this.stats.at = now;
    for (const k of keys) this.reported[k] += delta[k];
    this.pendingStartup = null;
    this.lastReport = { ...delta, startup };
    /** @type {Record<string, any>} */
    const report = {
      type: "stats",
      p2p_down_bytes: delta.down,
      p2p_up_bytes: delta.up,
      http_down_bytes: delta.http,
      stalls: delta.stalls,
      startup_seconds: startup,
      verify_failures: delta.failures,
    };
    if (delta.live > 0) report.p2p_live_down_bytes = Math.min(delta.live, delta.down);
    // a live track's latency now (docs/live.md), rounded to the millisecond
    const latency = totals.liveLatency;
    if (typeof latency === "number" && Number.isFinite(latency)) report.live_latency_seconds = Math.min(MAX_LIVE_LATENCY, Math.max(0, Math.round(latency * 1000) / 1000));
    if (this.sources.size > 0) {
      // the neighbours that delivered most, as many as a report may name (32)
      const named = [...this.sources].sort((a, b) => b[1] - a[1]).slice(0, 32);
      report.sources = Object.fromEntries(named.map(([peer, n]) => [peer, clamp(n)]));
      this.sources.clear();
    }
    this.sendControl(out, report, now);
  }
}
