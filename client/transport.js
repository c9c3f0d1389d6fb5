// @ts-check
// The P2P I/O shell: the control WebSocket, one RTCPeerConnection and binary
// DataChannel per neighbour, and the glue between the pure P2PCore (p2p.js)
// and the player (player.js). No policy lives here: every decision is the
// core's; this module only turns its effects into socket calls and socket
// events back into core events.
//
//   const agent = new P2PAgent(playerCore, { url: controlUrl(trackUrl) });
//
// The agent sets itself as `playerCore.peers` (the player's peer interface:
// `fetch(peerId, index, {signal}) -> Promise<ArrayBuffer>`), listens to the
// player's events (session, chunk, manifest, badchunk, startup, unload), tells
// the player's scheduler about neighbours (`setPeer`, `removePeer`) and how
// long peers are worth waiting for (`setPeerWait`), and serves chunks from
// memory or from the player's IndexedDB cache. When the player moves to
// another track the core's session is kept until the next one starts, so
// that the neighbours are told where this listener goes (LOAD_WAIT_SECONDS),
// and links close only once what was sent on them left (CLOSE_GRACE_SECONDS).
// `lookupAhead(track, rendition)` asks the neighbours about a playlist's
// next track ahead of time. Whether this listener uploads: at every welcome,
// before the core reads it, `decideUpload({upload, uploadKbps})` (the
// operator's policy and cap from the welcome) answers (by default the
// operator's policy alone: upload-policy.js); `setUpload(on)` changes it
// later (the listener said yes, or stopped).

import { encodePeerMessage, parseServerMessage } from "./control-protocol.js";
import { P2PCore } from "./p2p.js";
import { channelLabel } from "./protocol.js";
import { decideUpload } from "./upload-policy.js";

/**
 * @typedef {import("./p2p.js").Effect} Effect
 * @typedef {import("./control-protocol.js").ServerMessage} ServerMessage
 * @typedef {import("./scheduler.js").Manifest & {rendition: string}} Manifest
 * @typedef {{resolve: (data: ArrayBuffer) => void, reject: (err: Error) => void}} Waiter
 */

const clock = () => performance.now() / 1000;

// ICE "disconnected" (consent checks unanswered: a Wi-Fi hand-over, a NAT
// rebinding) often heals by itself: wait this long, then restart ICE once
// (the offerer does), and give up only if that does not bring it back.
export const ICE_GRACE_SECONDS = 5;

// DataChannel flow control: stop queueing into the SCTP buffer above HIGH,
// resume when the browser says it fell under LOW.
const BUFFER_HIGH = 1024 * 1024;
const BUFFER_LOW = 256 * 1024;

// A link its owner closes first delivers what it was given: the core sends a
// departure notice (HOLDERS) and closes the link in one batch, and closing
// the RTCPeerConnection at once discards whatever the channel still buffers.
// So the channel is closed only once its queue and the browser's buffer are
// empty, the connection only once the channel has closed (the other side has
// everything by then), and both within this many seconds, so that a dead
// channel cannot keep a connection alive.
export const CLOSE_GRACE_SECONDS = 1;

// The player unloads a track before it loads the next one (PlayerCore.load:
// `unload` {next}, then `session`), but the core tells its neighbours where
// it goes only when a new session starts while the old one runs. So the old
// session is kept (its neighbours still served, its periodic work paused)
// until the next session starts, or this many seconds passed without one (a
// load that failed, or that plays without MSE and so brings no session).
export const LOAD_WAIT_SECONDS = 5;

/** @type {boolean | null} whether an RTCPeerConnection could be made in this page (asked once) */
let webrtcWorks = null;

/**
 * Whether an RTCPeerConnection can be made here: the constructor exists and
 * does not throw (some browsers, extensions and enterprise policies leave
 * the name defined but make it throw). Asked once per page; without it the
 * player plays from the server and the cache, and no control socket opens.
 * @param {any} [RTC] the constructor (globalThis.RTCPeerConnection)
 * @returns {boolean}
 */
export function webrtcUsable(RTC = globalThis.RTCPeerConnection) {
  if (typeof RTC !== "function") return false;
  if (RTC === globalThis.RTCPeerConnection && webrtcWorks !== null) return webrtcWorks;
  let works = false;
  try {
    const pc = new RTC({ iceServers: [] });
    works = true;
    pc.close();
  } catch {
    /* no WebRTC here */
  }
  if (RTC === globalThis.RTCPeerConnection) webrtcWorks = works;
  return works;
}

/** Whether this browser and page can take part: WebRTC, WebSocket and WebCrypto (secure context). */
export function p2pSupported() {
  return (
    typeof WebSocket === "function" &&
    Boolean(globalThis.crypto?.subtle) &&
    globalThis.isSecureContext !== false &&
    webrtcUsable()
  );
}

/**
 * @returns {DOMException}
 */
function abortError() {
  return new DOMException("the request was aborted", "AbortError");
}

/** The control WebSocket, reconnecting with exponential back-off (1 s .. 30 s, jittered). */
export class ControlSocket {
  /**
   * @param {string} url
   * @param {{onOpen?: () => void, onMessage?: (msg: import("./control-protocol.js").ServerMessage) => void, onClose?: () => void,
   *   WebSocketImpl?: any, minDelay?: number, maxDelay?: number}} [handlers]
   */
  constructor(url, { onOpen = () => {}, onMessage = () => {}, onClose = () => {}, WebSocketImpl = null, minDelay = 1, maxDelay = 30 } = {}) {
    this.url = url;
    this.onOpen = onOpen;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.WS = WebSocketImpl ?? globalThis.WebSocket;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.delay = minDelay;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    /** @type {WebSocket} */
    let ws;
    try {
      ws = new this.WS(this.url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.delay = this.minDelay;
      this.onOpen();
    };
    ws.onmessage = (e) => {
      if (this.ws !== ws || typeof e.data !== "string") return;
      // Checked once here (control-protocol.js): the core reads a known shape.
      const msg = parseServerMessage(e.data);
      if (msg !== null) this.onMessage(msg);
    };
    ws.onerror = () => {}; // a close event follows
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onClose();
      this.retry();
    };
  }

  /**
   */
  retry() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const wait = this.delay * (0.75 + Math.random() * 0.5);
    this.delay = Math.min(this.delay * 2, this.maxDelay);
    this.timer = setTimeout(() => this.connect(), wait * 1000);
  }

  get open() {
    return this.ws?.readyState === 1;
  }

  /**
   * Send one peer → server message (an object); false when the socket is not open or the message is malformed.
   * @param {Record<string, unknown>} msg
   * @returns {boolean}
   */
  send(msg) {
    if (!this.open) return false;
    try {
      this.ws.send(encodePeerMessage(msg));
      return true;
    } catch {
      return false;
    }
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        /* already closing */
      }
    }
  }
}

const CANDIDATE_TYPES = ["host", "srflx", "prflx", "relay"];
// At `connected` a browser may not have selected a pair yet (getStats shows
// none): it is asked again this often, this many times, before the pair's
// types are reported as "unknown".
const PAIR_POLL_MS = 250;
const PAIR_POLLS = 20;

/** @typedef {{local: string, remote: string}} CandidatePair */

/**
 * The candidate types of the pair an RTCPeerConnection uses, from getStats():
 * `{local, remote}`, each "host", "srflx", "prflx", "relay" or "unknown" (a
 * type the browser does not say); null while no pair is selected.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<CandidatePair | null>}
 */
export async function selectedPair(pc) {
  const report = await pc.getStats();
  /** @type {any} */
  let pair = null;
  report.forEach((/** @type {any} */ s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId) ?? pair;
  });
  if (!pair) {
    // Firefox: no transport stats; the selected pair says so itself.
    report.forEach((/** @type {any} */ s) => {
      if (s.type === "candidate-pair" && (s.selected || (s.nominated && s.state === "succeeded")) && !pair) pair = s;
    });
  }
  if (!pair) return null;
  const typeOf = (/** @type {string} */ id) => {
    const type = report.get(id)?.candidateType;
    return CANDIDATE_TYPES.includes(type) ? type : "unknown";
  };
  return { local: typeOf(pair.localCandidateId), remote: typeOf(pair.remoteCandidateId) };
}

/**
 * One word for a pair: "relay" when either end is relayed (TURN), else the remote end's type.
 * @param {CandidatePair} pair
 * @returns {string}
 */
export function pairType(pair) {
  return pair.local === "relay" || pair.remote === "relay" ? "relay" : pair.remote;
}

/**
 * The type of the pair an RTCPeerConnection uses (`pairType`), null while none is selected.
 * @param {RTCPeerConnection} pc
 * @returns {Promise<string | null>}
 */
export async function selectedCandidateType(pc) {
  const pair = await selectedPair(pc);
  return pair ? pairType(pair) : null;
}

/**
 * One neighbour: an RTCPeerConnection with one ordered binary DataChannel.
 * The offerer creates the channel and the offer; the answerer takes the
 * channel the offer brings, if its label is the expected one.
 *
 * Survival: ICE "disconnected" gets ICE_GRACE_SECONDS, then one ICE restart
 * (the offerer's; the answerer answers it), then as long again before the
 * link fails; "failed" after the link had connected gets the same single
 * restart. Outcome: `onConnected(candidateType, {local, remote})` once, when
 * ICE first connects and the selected pair is known (`learnPair`);
 * `failure` says "failed" when ICE failed before that.
 * `relay: true` is iceTransportPolicy "relay": TURN candidates only, so no
 * peer ever learns this listener's address. `close()` delivers what was
 * already given to `send` first (CLOSE_GRACE_SECONDS at most).
 */
export class PeerLink {
  /**
   * @param {{role: "offerer" | "answerer", iceServers?: object[], relay?: boolean, label: string,
   *   onSignal: (data: object) => void, onOpen: () => void, onFrame: (data: Uint8Array) => void, onClose: () => void,
   *   onConnected?: (candidateType: string, pair: CandidatePair) => void, RTCPeerConnectionImpl?: any, graceSeconds?: number}} options
   */
  constructor({ role, iceServers = [], relay = false, label, onSignal, onOpen, onFrame, onClose, onConnected = () => {}, RTCPeerConnectionImpl = null, graceSeconds = ICE_GRACE_SECONDS }) {
    this.label = label;
    this.role = role;
    this.onSignal = onSignal;
    this.onOpen = onOpen;
    this.onFrame = onFrame;
    this.onClose = onClose;
    this.onConnected = onConnected;
    this.graceSeconds = graceSeconds;
    this.connected = false; // ICE connected at least once
    /** @type {string | null} */
    this.candidate = null; // the selected pair's type (pairType), once known
    /** @type {CandidatePair | null} */
    this.pair = null; // its {local, remote} candidate types, once known
    this.failure = null; // "failed" when ICE failed before ever connecting
    this.restarted = false;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.graceTimer = null;
    this.closed = false; // closed by its owner or failed: no callback, nothing queued
    this.draining = false; // closed, still delivering what was queued (close)
    this.released = false; // the channel and the connection are closed
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.drainTimer = null;
    /** @type {RTCDataChannel | null} */
    this.dc = null;
    this.opened = false; // the channel opened (onOpen was called)
    /** @type {Uint8Array<ArrayBuffer>[]} */
    this.queue = [];
    this.remoteSet = false;
    /** @type {RTCIceCandidateInit[]} */
    this.candidates = [];
    /** @type {Promise<void>} */
    this.chain = Promise.resolve(); // signaling steps, in order
    // kept here by P2PAgent: when it opened the link, its outcome once known,
    // bytes received before the selected pair's type was known
    /** @type {number | undefined} */
    this.openedAt = undefined;
    /** @type {string | undefined} */
    this.outcome = undefined;
    /** @type {number | undefined} */
    this.unattributedBytes = undefined;
    const RTC = RTCPeerConnectionImpl ?? globalThis.RTCPeerConnection;
    const pc = new RTC(relay ? { iceServers, iceTransportPolicy: "relay" } : { iceServers });
    this.pc = pc;
    pc.onicecandidate = (/** @type {RTCPeerConnectionIceEvent} */ e) => {
      if (e.candidate && !this.closed) this.onSignal({ candidate: e.candidate.toJSON() });
    };
    pc.onconnectionstatechange = () => this.onState(pc.connectionState);
    if (role === "offerer") {
      this.attach(pc.createDataChannel(label, { ordered: true }));
      this.step(async () => {
        await pc.setLocalDescription(await pc.createOffer());
        this.onSignal({ sdp: pc.localDescription.toJSON() });
      }, true);
    } else {
      pc.ondatachannel = (/** @type {RTCDataChannelEvent} */ e) => {
        if (this.dc || e.channel.label !== this.label) {
          e.channel.close();
          if (!this.dc) this.fail();
          return;
        }
        this.attach(e.channel);
      };
    }
  }

  /**
   * @param {RTCPeerConnectionState} state
   */
  onState(state) {
    if (this.closed) return;
    if (state === "connected") {
      clearTimeout(this.graceTimer);
      this.graceTimer = null;
      if (!this.connected) {
        this.connected = true;
        this.learnPair();
      }
      return;
    }
    if (state === "closed") {
      this.fail();
      return;
    }
    if (!this.connected) {
      // Never connected: no grace (the core's connectTimeout bounds the wait).
      if (state === "failed") {
        this.failure = "failed";
        this.fail();
      }
      return;
    }
    if (state === "disconnected" || state === "failed") {
      // The scheduler keeps fetching from the server meanwhile: a request to
      // this neighbour simply times out, as a slow one would.
      if (state === "failed" && this.restarted) {
        this.fail();
        return;
      }
      if (this.graceTimer !== null) return;
      this.graceTimer = setTimeout(() => {
        this.graceTimer = null;
        if (this.closed || this.pc.connectionState === "connected") return;
        if (this.restarted) {
          this.fail();
          return;
        }
        this.restart();
      }, (state === "failed" ? 0 : this.graceSeconds) * 1000);
    }
  }

  /**
   * The selected pair's candidate types, then `onConnected`: asked of
   * getStats until a pair is selected (PAIR_POLLS times, PAIR_POLL_MS apart),
   * "unknown" for both ends if none ever is; nothing once the link closed.
   */
  async learnPair() {
    /** @type {CandidatePair | null} */
    let pair = null;
    for (let i = 0; i < PAIR_POLLS && !this.closed; i++) {
      if (i > 0) await new Promise((resolve) => setTimeout(resolve, PAIR_POLL_MS));
      pair = this.closed ? null : await selectedPair(this.pc).catch(() => /** @type {CandidatePair | null} */ (null));
      if (pair) break;
    }
    if (this.closed) return;
    this.pair = pair ?? { local: "unknown", remote: "unknown" };
    this.candidate = pairType(this.pair);
    this.onConnected(this.candidate, this.pair);
  }

  /** One ICE restart: the offerer makes a new offer; both wait one more grace period. */
  restart() {
    this.restarted = true;
    if (this.role === "offerer") {
      this.step(async () => {
        await this.pc.setLocalDescription(await this.pc.createOffer({ iceRestart: true }));
        this.onSignal({ sdp: this.pc.localDescription.toJSON() });
      }, true);
    }
    this.graceTimer = setTimeout(() => {
      this.graceTimer = null;
      if (!this.closed && this.pc.connectionState !== "connected") this.fail();
    }, this.graceSeconds * 1000);
  }

  /**
   * @param {RTCDataChannel} dc
   */
  attach(dc) {
    this.dc = dc;
    dc.binaryType = "arraybuffer";
    dc.bufferedAmountLowThreshold = BUFFER_LOW;
    // The channel opens once, by whichever says so first: its `open` event, a
    // channel handed over open already (the answerer's, from ondatachannel),
    // or a message. A browser may deliver the neighbour's first frames before
    // `open` (and one handed over open need not fire it again); the core
    // ignores frames of a neighbour that has not opened, and the first frame is
    // the neighbour's HAVE, sent once: dropped, nothing would ever be asked of it.
    const opened = () => {
      if (this.opened) return;
      this.opened = true;
      if (!this.closed) this.onOpen();
      this.flush();
    };
    dc.onopen = () => {
      opened();
      this.flush();
    };
    dc.onmessage = (e) => {
      if (this.closed) return;
      opened();
      // text frames are not part of the protocol: an empty frame fails decoding
      this.onFrame(e.data instanceof ArrayBuffer ? new Uint8Array(e.data) : new Uint8Array(0));
    };
    dc.onbufferedamountlow = () => this.flush();
    dc.onclose = () => this.fail();
    if (dc.readyState === "open") opened();
  }

  /**
   * Run a signaling step after the previous ones; a failure of a vital step closes the link.
   * @param {() => Promise<void>} fn
   * @param {boolean} [vital]
   * @returns {Promise<void>}
   */
  step(fn, vital = false) {
    this.chain = this.chain.then(async () => {
      if (this.closed) return;
      try {
        await fn();
      } catch {
        if (vital) this.fail();
      }
    });
    return this.chain;
  }

  /**
   * Apply signaling data from the other side: `{sdp}` or `{candidate}`.
   * @param {Record<string, any>} data
   * @returns {Promise<void>}
   */
  signal(data) {
    const pc = this.pc;
    if (data.sdp && typeof data.sdp === "object" && typeof data.sdp.type === "string") {
      const offer = data.sdp.type === "offer";
      return this.step(async () => {
        await pc.setRemoteDescription({ type: data.sdp.type, sdp: String(data.sdp.sdp ?? "") });
        this.remoteSet = true;
        for (const c of this.candidates.splice(0)) await pc.addIceCandidate(c).catch(() => {});
        if (offer) {
          await pc.setLocalDescription(await pc.createAnswer());
          this.onSignal({ sdp: pc.localDescription.toJSON() });
        }
      }, offer);
    }
    if (data.candidate && typeof data.candidate === "object") {
      return this.step(async () => {
        if (this.remoteSet) await pc.addIceCandidate(data.candidate);
        else if (this.candidates.length < 64) this.candidates.push(data.candidate);
      });
    }
    return this.chain;
  }

  /**
   * Queue one frame; frames leave in order, as fast as the channel drains.
   * @param {Uint8Array<ArrayBuffer>} frame
   */
  send(frame) {
    if (this.closed) return;
    this.queue.push(frame);
    this.flush();
  }

  flush() {
    const dc = this.dc;
    if (this.closed || !dc || dc.readyState !== "open") return;
    try {
      while (this.queue.length > 0 && dc.bufferedAmount < BUFFER_HIGH) dc.send(this.queue.shift());
    } catch {
      this.fail();
    }
  }

  fail() {
    if (this.closed) return;
    this.close({ drain: false });
    this.onClose();
  }

  /**
   * Close the link. From here on nothing new is queued and no callback runs;
   * `drain` (the default): frames already given to `send` are delivered
   * first, within CLOSE_GRACE_SECONDS; `drain: false` drops them (a failed
   * link, a page going away).
   * @param {{drain?: boolean}} [how]
   */
  close({ drain = true } = {}) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.graceTimer);
    this.graceTimer = null;
    const dc = this.dc;
    if (!drain || !dc || dc.readyState !== "open") {
      this.release();
      return;
    }
    this.draining = true;
    dc.onmessage = null;
    dc.onclose = () => this.release();
    // told when the browser's buffer is empty, not merely low
    dc.bufferedAmountLowThreshold = 0;
    dc.onbufferedamountlow = () => this.drain();
    this.drainTimer = setTimeout(() => this.release(), CLOSE_GRACE_SECONDS * 1000);
    this.drain();
  }

  /** Closing: hand the rest of the queue to the channel; close the channel once all of it left. */
  drain() {
    const dc = this.dc;
    if (!this.draining) return;
    if (dc.readyState !== "open") {
      if (dc.readyState === "closed") this.release();
      return;
    }
    try {
      while (this.queue.length > 0 && dc.bufferedAmount < BUFFER_HIGH) dc.send(this.queue.shift());
      if (this.queue.length > 0 || dc.bufferedAmount > 0) return; // bufferedamountlow calls again
      // The browser sends what it holds before it resets the stream; the
      // channel's close event then comes once the other side has it all.
      dc.close();
    } catch {
      this.release();
    }
  }

  /** Close the channel and the connection now; what is still queued is lost. */
  release() {
    if (this.released) return;
    this.released = true;
    this.draining = false;
    clearTimeout(this.drainTimer);
    this.queue = [];
    try {
      this.dc?.close();
    } catch {
      /* already closed */
    }
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
  }
}

/** Chunks of the current session kept in memory for seeding, oldest dropped first. */
class ChunkStore {
  /** @param {number} maxBytes */
  constructor(maxBytes) {
    this.maxBytes = maxBytes;
    /** @type {Map<number, ArrayBuffer>} */
    this.map = new Map();
    this.bytes = 0;
  }
  /**
   * @param {number} index
   * @returns {ArrayBuffer | null}
   */
  get(index) {
    return this.map.get(index) ?? null;
  }
  /**
   * @param {number} index
   */
  has(index) {
    return this.map.has(index);
  }
  /**
   * Keep `data`; returns the indices dropped to make room.
   * @param {number} index
   * @param {ArrayBuffer} data
   * @returns {number[]}
   */
  put(index, data) {
    if (this.map.has(index)) return [];
    this.map.set(index, data);
    this.bytes += data.byteLength;
    /** @type {number[]} */
    const dropped = [];
    for (const [i, d] of this.map) {
      if (this.bytes <= this.maxBytes) break;
      this.map.delete(i);
      this.bytes -= d.byteLength;
      dropped.push(i);
    }
    return dropped;
  }
  clear() {
    this.map.clear();
    this.bytes = 0;
  }
}

const PLAYER_EVENTS = ["session", "chunk", "manifest", "badchunk", "startup", "unload"];

/** The P2P side of one player: control socket, neighbours, seeding, stats. */
export class P2PAgent {
  /**
   * @param {import("./player.js").PlayerCore} player
   * @param {{url?: string, settings?: object, relay?: boolean, tickSeconds?: number, maxStoreBytes?: number,
   *   loadWaitSeconds?: number, WebSocketImpl?: any, RTCPeerConnectionImpl?: any,
   *   decideUpload?: ((operator: {upload: string | null, uploadKbps: number | null}) => boolean) | null}} options
   *   url: the control socket's URL (ws(s)://gateway/v1/ws; see controlUrl in p2p.js)
   *   settings: P2PCore settings (corrupt: TEST ONLY, a bad seeder)
   *   tickSeconds: how often the core's periodic work runs
   *   maxStoreBytes: chunk bytes kept in memory for seeding (beyond: the IndexedDB cache)
   *   loadWaitSeconds: how long an unloaded session waits for the next one (LOAD_WAIT_SECONDS)
   *   decideUpload: whether to upload, asked at each welcome (default: the operator's policy)
   */
  constructor(player, { url, settings = {}, relay = false, tickSeconds = 0.25, maxStoreBytes = 64 * 1024 * 1024, loadWaitSeconds = LOAD_WAIT_SECONDS, WebSocketImpl = null, RTCPeerConnectionImpl = null, decideUpload: decide = null } = {}) {
    this.player = player;
    this.url = url;
    this.relay = relay; // TURN only: iceTransportPolicy "relay" (the embed's p2p="relay")
    // Connection diagnostics, added to the core's next stats report
    // (docs/websocket.md, stats.connections): outcomes and relayed bytes
    // since the last report; `outcomes` below keeps every one of this page.
    /** @type {{connections: Record<string, number>, relayBytes: number}} */
    this.pending = { connections: {}, relayBytes: 0 };
    /** @type {Array<{peer: string, outcome: string, seconds: number}>} */
    this.outcomes = [];
    this.core = new P2PCore(settings);
    this.core.needsRelay = relay; // TURN only: credentials asked at welcome, before any dial
    this.RTC = RTCPeerConnectionImpl;
    /** @type {Map<string, PeerLink>} */
    this.links = new Map(); // peer id -> PeerLink
    /** @type {Map<string, Waiter>} */
    this.waiters = new Map(); // "peer/index" -> {resolve, reject}
    this.store = new ChunkStore(maxStoreBytes);
    /** @type {{trackId: string, rendition: string, label: string} | null} */
    this.session = null; // {trackId, rendition, label}
    this.loadWaitSeconds = loadWaitSeconds;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.parked = null; // timer: the player unloaded the session to load another track
    this.lastWait = -Infinity;
    this.destroyed = false;
    this.decideUpload = decide ?? ((/** @type {{upload: string | null}} */ op) => decideUpload({ operator: op.upload }).share);
    /** @type {{upload: string | null, uploadKbps: number | null} | null} the last welcome's policy and cap */
    this.operator = null;
    this.socket = new ControlSocket(url, {
      WebSocketImpl,
      onMessage: (msg) => {
        if (msg.type === "welcome") {
          // decided before the core reads the welcome, which announces what is held
          this.operator = { upload: msg.upload ?? null, uploadKbps: msg.limits.upload_kbps ?? null };
          this.apply(this.core.setUpload(Boolean(this.decideUpload(this.operator)), clock()));
        }
        this.apply(this.core.onControl(msg, clock()));
        this.updateWait();
      },
      onClose: () => this.apply(this.core.controlClosed()),
    });
    /** @type {Record<string, (e: Event) => void>} */
    this.handlers = {};
    for (const name of PLAYER_EVENTS) {
      this.handlers[name] = (e) => this.onPlayer(name, /** @type {CustomEvent} */ (e).detail ?? {});
      player.addEventListener(name, this.handlers[name]);
    }
    this.onPageHide = () => this.leave();
    globalThis.addEventListener?.("pagehide", this.onPageHide);
    player.peers = this;
    this.timer = setInterval(() => this.tick(), tickSeconds * 1000);
    // The control socket opens with the first session: a page whose track
    // cannot be loaded (a refused origin, a wrong URL) never knocks on it.
    this.socketStarted = false;
    if (player.scheduler && player.manifest) {
      this.onPlayer("session", { trackId: player.session?.trackId, manifest: player.manifest });
    }
  }

  // ---- the player's peer interface ----------------------------------------------

  /**
   * Chunk `index` from neighbour `peerId`, unverified (the player checks its SHA-256).
   * @param {string} peerId
   * @param {number} index
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<ArrayBuffer>}
   */
  fetch(peerId, index, { signal } = {}) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortError());
        return;
      }
      const effects = this.core.request(peerId, index, clock());
      if (!effects) {
        reject(new Error(`peer ${peerId} cannot take a request for chunk ${index} now`));
        return;
      }
      const key = `${peerId}/${index}`;
      const onAbort = () => {
        if (this.waiters.get(key) !== waiter) return;
        this.waiters.delete(key);
        this.apply(this.core.cancel(peerId, index));
        reject(abortError());
      };
      /** @type {Waiter} */
      const waiter = {
        resolve: (data) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(data);
        },
        reject: (err) => {
          signal?.removeEventListener("abort", onAbort);
          reject(err);
        },
      };
      this.waiters.set(key, waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.apply(effects);
    });
  }

  /**
   * Ask the open neighbours now who holds another track (the next of a
   * playlist): their HOLDERS answers fill the core's directory, which that
   * track's session starts its lookup from (docs/wire.md "Overlay").
   * Returns how many neighbours were asked: 0 when none is open or each was
   * asked within the core's lookupInterval (worth asking again later).
   * @param {string} track
   * @param {string} rendition
   * @returns {number}
   */
  lookupAhead(track, rendition) {
    if (this.destroyed || typeof track !== "string" || typeof rendition !== "string") return 0;
    const effects = this.core.lookup({ track, rendition }, clock());
    this.apply(effects);
    return effects.filter((e) => e.kind === "send").length;
  }

  /**
   * Upload (true) or not (false) from now on: the listener said yes, or stopped.
   * @param {boolean} on
   */
  setUpload(on) {
    if (this.destroyed) return;
    this.apply(this.core.setUpload(Boolean(on), clock()));
  }

  /** A summary: peer id, neighbours, chunks held, bytes sent, verify failures. */
  info() {
    const links = [...this.links.entries()].map(([peer, l]) => ({ peer, connected: l.connected, candidate: l.candidate, pair: l.pair, restarted: l.restarted }));
    return { ...this.core.info(), stored: this.store.map.size, links, outcomes: this.outcomes.slice(), relay: this.relay, operator: this.operator };
  }

  destroy() {
    if (this.destroyed) return;
    this.apply(this.core.stopSession(clock()));
    this.flushStats();
    this.destroyed = true;
    clearInterval(this.timer);
    clearTimeout(this.parked);
    this.socket.close();
    for (const link of this.links.values()) link.close();
    this.links.clear();
    for (const w of this.waiters.values()) w.reject(new Error("p2p stopped"));
    this.waiters.clear();
    for (const name of PLAYER_EVENTS) this.player.removeEventListener(name, this.handlers[name]);
    globalThis.removeEventListener?.("pagehide", this.onPageHide);
    if (this.player.peers === this) this.player.peers = null;
    this.player.scheduler?.setPeerWait?.(-Infinity);
  }

  // ---- player events --------------------------------------------------------------

  /**
   * @param {string} name
   * @param {Record<string, any>} detail the event's
   */
  onPlayer(name, detail) {
    if (this.destroyed) return;
    const now = clock();
    const cache = this.player.cache;
    switch (name) {
      case "session": {
        const manifest = detail.manifest;
        const trackId = detail.trackId;
        if (!manifest || !trackId) return;
        const rendition = manifest.rendition;
        clearTimeout(this.parked);
        this.parked = null;
        if (this.session?.trackId !== trackId || this.session?.rendition !== rendition) this.store.clear();
        this.session = { trackId, rendition, label: channelLabel(trackId, rendition) };
        const held = new Set(cache ? cache.indices(trackId, rendition) : []);
        for (const i of this.store.map.keys()) held.add(i);
        if (!this.socketStarted) {
          this.socketStarted = true;
          this.socket.start();
        }
        this.apply(
          this.core.startSession(
            { track: trackId, rendition, chunks: manifest.chunks.map((/** @type {{index: number}} */ c) => c.index), complete: manifest.complete, held: [...held] },
            now,
          ),
        );
        this.updateWait();
        break;
      }
      case "chunk": {
        if (!this.session || !Number.isInteger(detail.index)) return;
        if (detail.data) {
          for (const i of this.store.put(detail.index, detail.data)) {
            if (!cache?.has(this.session.trackId, this.session.rendition, i)) this.apply(this.core.chunkDropped(i));
          }
        }
        // verified (the player checked its SHA-256): evidence for the tracker of who delivers
        if (detail.source === "peer" && typeof detail.peer === "string") this.core.deliveredBy(detail.peer, detail.bytes ?? 0);
        this.apply(this.core.chunkAdded(detail.index, now));
        break;
      }
      case "manifest":
        if (detail.manifest && this.session && detail.manifest.rendition === this.session.rendition) {
          this.apply(this.core.updateManifest({ chunks: detail.manifest.chunks.map((/** @type {{index: number}} */ c) => c.index), complete: detail.manifest.complete }, now));
        }
        break;
      case "badchunk":
        if (typeof detail.peer === "string") this.apply(this.core.verifyFailed(detail.peer, now));
        break;
      case "startup":
        this.core.noteStartup(detail.seconds);
        break;
      case "unload":
        clearTimeout(this.parked);
        this.parked = null;
        if (typeof detail.next === "string" && this.session) {
          // another track is being loaded: its session ends this one (LOAD_WAIT_SECONDS)
          this.parked = setTimeout(() => this.onPlayer("unload", {}), this.loadWaitSeconds * 1000);
          break;
        }
        this.apply(this.core.stopSession(now));
        this.session = null;
        break;
      default:
        break;
    }
  }

  // ---- effects --------------------------------------------------------------------

  /**
   * @param {Effect[] | null} effects
   */
  apply(effects) {
    if (this.destroyed || !effects) return;
    for (const e of effects) {
      switch (e.kind) {
        case "control":
          if (e.msg.type === "stats") this.sendStats(e.msg);
          else this.socket.send(e.msg);
          break;
        case "open":
          this.openLink(e.peer, e.role);
          break;
        case "rtc":
          this.links.get(e.peer)?.signal(e.data);
          break;
        case "send":
          this.links.get(e.peer)?.send(e.frame);
          break;
        case "close": {
          const link = this.links.get(e.peer);
          this.links.delete(e.peer);
          // The core closes a neighbour that did not open within connectTimeout.
          if (link && !link.closed && !link.connected) this.noteOutcome(e.peer, link, "timeout");
          link?.close();
          break;
        }
        case "serve":
          this.serve(e.peer, e.index);
          break;
        case "deliver":
          this.countRelay(this.links.get(e.peer), e.data.byteLength);
          this.settle(e.peer, e.index, (w) => w.resolve(e.data.buffer));
          break;
        case "reject":
          this.settle(e.peer, e.index, (w) => w.reject(new Error(`peer ${e.peer}: ${e.reason}`)));
          break;
        case "peerHave":
          this.player.scheduler?.setPeer(e.peer, { have: e.have, slots: this.core.settings.requestSlots });
          this.player.neighbourHave?.(e.have); // live: a chunk the manifest does not list yet
          this.player.kick?.();
          break;
        case "peerGone":
          this.player.scheduler?.removePeer(e.peer);
          this.player.kick?.();
          break;
        default:
          break;
      }
    }
  }

  /**
   * One connection's outcome: connected (the pair's type: "host" | "srflx" |
   * "prflx" | "relay" | "unknown", with both ends' types in `pair`), or
   * "failed" | "timeout". Reported in `stats.connections` under
   * "<local>/<remote>" for a connection, the outcome otherwise.
   * @param {string} peer
   * @param {PeerLink} link
   * @param {string} outcome
   * @param {CandidatePair | null} [pair]
   */
  noteOutcome(peer, link, outcome, pair = null) {
    if (link.outcome) return;
    link.outcome = outcome;
    const key = pair ? `${pair.local}/${pair.remote}` : outcome;
    const c = this.pending.connections;
    c[key] = (c[key] ?? 0) + 1;
    const ends = pair ? { local: pair.local, remote: pair.remote } : {};
    if (this.outcomes.length < 256) this.outcomes.push({ peer, outcome, ...ends, seconds: clock() - link.openedAt });
    // A direct connection failed: TURN credentials are asked for now (docs/p2p.md).
    if (outcome === "failed" || outcome === "timeout") this.apply(this.core.needRelay(clock()));
  }

  /** Bytes a neighbour delivered, counted as relayed when its connection is; the
   * selected pair's type is learnt asynchronously, so bytes before it wait on the link. */
  /**
   * @param {PeerLink | undefined} link
   * @param {number} bytes
   */
  countRelay(link, bytes) {
    if (!link) return;
    if (link.candidate === "relay") this.pending.relayBytes += bytes;
    else if (link.candidate === null) link.unattributedBytes = (link.unattributedBytes ?? 0) + bytes;
  }

  /**
   * The core's stats report, with the connection diagnostics added; they are reset only once sent.
   * @param {Record<string, any>} msg
   */
  sendStats(msg) {
    const neighbours = [...this.links.values()].filter((l) => l.connected && !l.closed).length;
    /** @type {Record<string, unknown>} */
    const out = { ...msg, neighbours };
    if (Object.keys(this.pending.connections).length > 0) out.connections = this.pending.connections;
    // Relayed bytes are a part of this report's peer bytes; what does not fit
    // (bytes the core counts in its next report) waits for the next one.
    const relay = Math.min(this.pending.relayBytes, msg.p2p_down_bytes ?? 0);
    if (relay > 0) out.p2p_relay_down_bytes = relay;
    if (this.socket.send(out)) this.pending = { connections: {}, relayBytes: this.pending.relayBytes - relay };
  }

  /**
   * @param {string} peer
   * @param {number} index
   * @param {(w: Waiter) => void} fn
   */
  settle(peer, index, fn) {
    const key = `${peer}/${index}`;
    const w = this.waiters.get(key);
    if (!w) return;
    this.waiters.delete(key);
    fn(w);
  }

  /**
   * @param {string} peer
   * @param {"offerer" | "answerer"} role
   */
  openLink(peer, role) {
    const label = this.session?.label;
    if (!label) return;
    this.links.get(peer)?.close();
    /** @type {PeerLink} */
    let link;
    try {
      link = new PeerLink({
        role,
        label,
        iceServers: this.core.iceServers,
        relay: this.relay,
        RTCPeerConnectionImpl: this.RTC,
        onConnected: (candidate, pair) => {
          if (this.links.get(peer) !== link) return;
          this.noteOutcome(peer, link, candidate, pair);
          // Bytes that came before the selected pair's type was known.
          if (candidate === "relay") this.pending.relayBytes += link.unattributedBytes ?? 0;
          link.unattributedBytes = 0;
        },
        onSignal: (data) => {
          if (this.links.get(peer) === link) this.socket.send({ type: "signal", to: peer, data });
        },
        onOpen: () => {
          if (this.links.get(peer) === link) this.apply(this.core.channelOpen(peer, clock()));
        },
        onFrame: (bytes) => {
          if (this.links.get(peer) === link) this.apply(this.core.onFrame(peer, bytes, clock()));
        },
        onClose: () => {
          if (this.links.get(peer) !== link) return;
          if (link.failure) this.noteOutcome(peer, link, link.failure);
          this.links.delete(peer);
          this.apply(this.core.channelClosed(peer, clock()));
        },
      });
    } catch {
      this.apply(this.core.channelClosed(peer, clock()));
      return;
    }
    link.openedAt = clock();
    this.links.set(peer, link);
  }

  /**
   * @param {string} peer
   * @param {number} index
   */
  async serve(peer, index) {
    const s = this.session;
    let data = this.store.get(index);
    if (!data && s && this.player.cache) {
      try {
        data = await this.player.cache.get(s.trackId, s.rendition, index);
      } catch {
        data = null;
      }
    }
    if (this.destroyed) return;
    this.apply(this.core.served(peer, index, data ? new Uint8Array(data) : null, clock()));
  }

  // ---- time -----------------------------------------------------------------------

  totals() {
    /** @type {{httpBytes?: number, peerBytes?: number, livePeerBytes?: number, stalls?: number, liveLatencySeconds?: number | null}} */
    const st = this.player.stats ?? {};
    return {
      httpBytes: st.httpBytes ?? 0, peerBytes: st.peerBytes ?? 0, livePeerBytes: st.livePeerBytes ?? 0,
      stalls: st.stalls ?? 0, liveLatency: st.liveLatencySeconds ?? null,
    };
  }

  tick() {
    // parked: no wants nor announcements for a track being left
    if (this.destroyed || this.parked !== null) return;
    this.apply(this.core.tick(clock(), this.totals()));
    this.updateWait();
  }

  /** Tell the scheduler how long to wait for peers; wake the player when that ends. */
  updateWait() {
    const now = clock();
    this.player.scheduler?.setSelf?.(this.core.peerId); // a live track's election (scheduler rule 7)
    const until = this.core.waitUntil(now);
    this.player.scheduler?.setPeerWait?.(until);
    if (this.lastWait > now && until <= now) this.player.kick?.();
    this.lastWait = until;
  }

  /**
   * The page is going away: report what is not reported yet and close every
   * connection now, so that neighbours see their channels close at once
   * rather than after ICE consent checks time out.
   */
  leave() {
    if (this.destroyed) return;
    this.flushStats();
    for (const [peer, link] of [...this.links]) {
      this.links.delete(peer);
      link.close({ drain: false }); // timers may not run once the page is hidden
      this.apply(this.core.channelClosed(peer, clock()));
    }
  }

  /** Report the counts not yet reported, now (the page is going away). */
  flushStats() {
    if (this.destroyed) return;
    this.apply(this.core.flushStats(clock(), this.totals()));
  }
}
