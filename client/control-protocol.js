// @ts-check
// The control WebSocket's (/v1/ws) messages, as the browser reads and writes
// them: pure, no socket. docs/websocket.md is the contract; the frames both
// ways are pinned, field by field, by tests/vectors/control/messages.json,
// which protocol/codec.py passes too.
//
//   parseServerMessage(text) -> {type: "welcome" | "peers" | "signal" | "pong" | "error" | "turn", ...} | null
//   encodePeerMessage({type: "have" | "want" | "signal" | "stats" | "slots" | "leave" | "ping" | "introduce" | "turn", ...}) -> text
//
// A server frame that is not one of the six, or lacks a field of the right
// kind, reads as null and is ignored (a newer gateway may send more). Field
// names stay the wire's (peer_id, ice_servers, in_use...): the parsed
// message is the frame, checked, with unknown fields dropped.

/**
 * The server's messages, as `parseServerMessage` returns them.
 * @typedef {{type: "welcome", peer_id: string, ice_servers: object[], limits: Record<string, number>, upload?: string}} Welcome
 *   `upload`: the operator's upload policy (p2p.upload: "on", "opt-in", "off"), absent from older gateways
 * @typedef {{peer_id: string, chunks: number[], complete: boolean}} PeerHolding
 * @typedef {{type: "peers", track: string, rendition: string, peers: PeerHolding[], for?: string, peer_id?: string, reason?: string}} Peers
 * @typedef {{type: "signal", from: string, data: Record<string, unknown>}} Signal
 * @typedef {{type: "pong"}} Pong
 * @typedef {{type: "error", error: string, detail: string, for?: string}} ErrorMessage
 * @typedef {{type: "turn", ice_servers: object[], ttl_seconds: number}} TurnServers
 * @typedef {Welcome | Peers | Signal | Pong | ErrorMessage | TurnServers} ServerMessage
 */

/**
 * The largest chunk index (u32 on the wire; protocol/limits.py MAX_INDEX): a
 * live track's indices grow for ever (docs/live.md), so an index is bounded
 * by this, and only the NUMBER of chunks in a message by max_chunks.
 */
export const MAX_INDEX = 0xffffffff;

/** `welcome`'s limits, all integers, in wire order. */
export const LIMIT_KEYS = Object.freeze([
  "max_message_bytes", "messages_per_second", "burst", "max_tracks", "max_chunks", "max_ranges",
  "max_want", "max_candidates", "max_signal_bytes", "upload_slots", "stats_interval", "idle_timeout", "upload_kbps",
]);

/**
 * @param {unknown} v
 * @returns {v is Record<string, any>}
 */
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
/**
 * @param {unknown} v
 * @returns {v is number}
 */
const isIndex = (v) => Number.isInteger(v) && /** @type {number} */ (v) >= 0 && /** @type {number} */ (v) <= MAX_INDEX;

// The readers take the parsed JSON object (any: what the wire sent) and
// return the message, or null when a field is missing or of the wrong kind.

/**
 * @param {Record<string, any>} m
 * @returns {Welcome | null}
 */
function welcome(m) {
  if (typeof m.peer_id !== "string" || !Array.isArray(m.ice_servers) || !m.ice_servers.every(isObject)) return null;
  if (!isObject(m.limits)) return null;
  // The gateway sends every limit; one missing leaves the client's default.
  /** @type {Record<string, number>} */
  const limits = {};
  for (const key of LIMIT_KEYS) {
    if (!Object.hasOwn(m.limits, key)) continue;
    const v = m.limits[key];
    if (!Number.isInteger(v) || v < 0) return null;
    limits[key] = v;
  }
  /** @type {Welcome} */
  const out = { type: "welcome", peer_id: m.peer_id, ice_servers: m.ice_servers, limits };
  if (m.upload !== undefined && m.upload !== null) {
    if (typeof m.upload !== "string") return null;
    out.upload = m.upload;
  }
  return out;
}

/**
 * @param {Record<string, any>} m
 * @returns {Peers | null}
 */
function peers(m) {
  if (typeof m.track !== "string" || typeof m.rendition !== "string" || !Array.isArray(m.peers)) return null;
  /** @type {PeerHolding[]} */
  const found = [];
  for (const p of m.peers) {
    if (!isObject(p) || typeof p.peer_id !== "string" || typeof p.complete !== "boolean") return null;
    if (!Array.isArray(p.chunks) || !p.chunks.every(isIndex)) return null;
    found.push({ peer_id: p.peer_id, chunks: p.chunks, complete: p.complete });
  }
  /** @type {Peers} */
  const out = { type: "peers", track: m.track, rendition: m.rendition, peers: found };
  // the answer to an `introduce`: for "introduce" and the peer_id asked about
  for (const key of /** @type {const} */ (["for", "peer_id", "reason"])) {
    if (m[key] === undefined || m[key] === null) continue;
    if (typeof m[key] !== "string") return null;
    out[key] = m[key];
  }
  return out;
}

/**
 * @param {Record<string, any>} m
 * @returns {Signal | null}
 */
function signal(m) {
  if (typeof m.from !== "string" || !isObject(m.data)) return null;
  return { type: "signal", from: m.from, data: m.data };
}

/**
 * @param {Record<string, any>} m
 * @returns {ErrorMessage | null}
 */
function error(m) {
  if (typeof m.error !== "string" || typeof m.detail !== "string") return null;
  if (m.for !== undefined && m.for !== null && typeof m.for !== "string") return null;
  /** @type {ErrorMessage} */
  const out = { type: "error", error: m.error, detail: m.detail };
  if (typeof m.for === "string") out.for = m.for;
  return out;
}

/**
 * @param {Record<string, any>} m
 * @returns {TurnServers | null}
 */
function turn(m) {
  if (!Array.isArray(m.ice_servers) || !m.ice_servers.every(isObject)) return null;
  if (!Number.isInteger(m.ttl_seconds) || m.ttl_seconds <= 0) return null;
  return { type: "turn", ice_servers: m.ice_servers, ttl_seconds: m.ttl_seconds };
}

/** @type {Record<string, (m: Record<string, any>) => ServerMessage | null>} */
const READERS = { welcome, peers, signal, pong: () => ({ type: "pong" }), error, turn };

/**
 * One server → peer text frame, checked; null when it is not a message this client knows.
 * @param {string} text
 * @returns {ServerMessage | null}
 */
export function parseServerMessage(text) {
  /** @type {unknown} */
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(m) || typeof m.type !== "string" || !Object.hasOwn(READERS, m.type)) return null;
  return READERS[m.type](m);
}

/**
 * Inclusive runs [first, last], sorted, with overlapping and adjacent runs merged (the tracker's canonical form).
 * @param {ReadonlyArray<readonly [number, number] | number[]>} pairs
 * @returns {Array<[number, number]>}
 */
export function mergeRanges(pairs) {
  const sorted = pairs.map(([a, b]) => /** @type {[number, number]} */ ([a, b])).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  /** @type {Array<[number, number]>} */
  const merged = [];
  for (const [first, last] of sorted) {
    const top = merged[merged.length - 1];
    if (top && first <= top[1] + 1) top[1] = Math.max(top[1], last);
    else merged.push([first, last]);
  }
  return merged;
}

// Field checks of an outgoing message: the value as given, or a TypeError.

/**
 * @param {unknown} v
 * @param {string} key
 * @returns {string}
 */
function name(v, key) {
  if (typeof v !== "string") throw new TypeError(`${key}: expected a string`);
  return v;
}

/**
 * @param {unknown} v
 * @param {string} key
 * @returns {number[]}
 */
function indices(v, key) {
  if (!Array.isArray(v) || !v.every(isIndex)) throw new TypeError(`${key}: expected chunk indices`);
  return v;
}

/**
 * @param {unknown} v
 * @param {string} key
 * @returns {number}
 */
function count(v, key) {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new TypeError(`${key}: expected a count`);
  return v;
}

/**
 * How neighbour connections ended (docs/websocket.md, stats.connections):
 * connected, by the selected pair's candidate types "<local>/<remote>"; failed;
 * timeout. The bare types are older players' (the gateway counts them as unknown).
 */
export const CANDIDATE_TYPES = Object.freeze(["host", "srflx", "prflx", "relay", "unknown"]);
export const CONNECTION_OUTCOMES = Object.freeze([
  "host", "srflx", "prflx", "relay",
  ...CANDIDATE_TYPES.flatMap((local) => CANDIDATE_TYPES.map((remote) => `${local}/${remote}`)),
  "failed", "timeout",
]);

// {outcome: count}, written in CONNECTION_OUTCOMES order with the zero counts left out.
/**
 * @param {unknown} v
 * @param {string} key
 * @returns {Record<string, number>}
 */
function outcomes(v, key) {
  if (!isObject(v)) throw new TypeError(`${key}: expected an object`);
  /** @type {Record<string, number>} */
  const out = {};
  for (const k of Object.keys(v)) if (!CONNECTION_OUTCOMES.includes(k)) throw new TypeError(`${key}: unknown outcome ${k.slice(0, 40)}`);
  for (const k of CONNECTION_OUTCOMES) if (v[k] !== undefined && count(v[k], `${key}.${k}`) > 0) out[k] = v[k];
  return out;
}

const PEER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Neighbours named in one report's `sources` (protocol/limits.py MAX_SOURCES). */
export const MAX_SOURCES = 32;

// {peer id: verified bytes}, in the order given, the zero counts left out.
/**
 * @param {unknown} v
 * @param {string} key
 * @returns {Record<string, number>}
 */
function sources(v, key) {
  if (!isObject(v) || Object.keys(v).length > MAX_SOURCES) throw new TypeError(`${key}: expected at most ${MAX_SOURCES} peer ids`);
  /** @type {Record<string, number>} */
  const out = {};
  for (const [id, n] of Object.entries(v)) {
    if (!PEER_ID.test(id)) throw new TypeError(`${key}: keys are peer ids`);
    if (count(n, `${key}.${id}`) > 0) out[id] = n;
  }
  return out;
}

// Optional fields are written when given (checked) and left out otherwise:
// the gateway reads an absent one as its default.
/**
 * @param {Record<string, unknown>} out
 * @param {Record<string, any>} msg
 * @param {string} key
 * @param {(v: unknown, key: string) => unknown} check
 */
function optional(out, msg, key, check) {
  if (msg[key] !== undefined) out[key] = check(msg[key], key);
}

/** @type {(v: unknown, key: string) => boolean} */
const flag = (v, key) => {
  if (typeof v !== "boolean") throw new TypeError(`${key}: expected true or false`);
  return v;
};

/** The largest `stats.live_latency_seconds` (protocol/limits.py). */
export const MAX_LIVE_LATENCY = 600;

/** @type {(v: unknown, key: string) => number} */
const latency = (v, key) => {
  if (typeof v !== "number" || !(v >= 0 && v <= MAX_LIVE_LATENCY)) throw new TypeError(`${key}: expected 0..${MAX_LIVE_LATENCY}`);
  return v;
};

/** @type {(v: unknown, key: string) => number | null} */
const seconds = (v, key) => {
  if (v !== null && (typeof v !== "number" || !Number.isFinite(v))) throw new TypeError(`${key}: expected a number or null`);
  return /** @type {number | null} */ (v);
};

/**
 * The text frame for one peer → server message: its fields checked and in
 * wire order, a holding's `chunks` folded into merged `ranges`, optional
 * fields written only when given. Given every field, it is the canonical
 * frame the vectors pin ("encoded"). Throws TypeError for a message the
 * gateway could not read.
 * @param {unknown} msg
 * @returns {string}
 */
export function encodePeerMessage(msg) {
  if (!isObject(msg)) throw new TypeError("a control message is an object");
  switch (msg.type) {
    case "have": {
      const ranges = msg.ranges ?? [];
      if (!Array.isArray(ranges) || !ranges.every((r) => Array.isArray(r) && r.length === 2 && r.every(isIndex))) {
        throw new TypeError("ranges: expected [first, last] pairs");
      }
      const singles = indices(msg.chunks ?? [], "chunks").map((i) => [i, i]);
      /** @type {Record<string, unknown>} */
      const out = {
        type: "have",
        track: name(msg.track, "track"),
        rendition: name(msg.rendition, "rendition"),
        ranges: mergeRanges([...ranges, ...singles]),
      };
      optional(out, msg, "complete", flag);
      optional(out, msg, "replace", flag);
      return JSON.stringify(out);
    }
    case "want": {
      /** @type {Record<string, unknown>} */
      const out = { type: "want", track: name(msg.track, "track"), rendition: name(msg.rendition, "rendition") };
      optional(out, msg, "chunks", indices);
      return JSON.stringify(out);
    }
    case "signal":
      if (!isObject(msg.data)) throw new TypeError("data: expected an object");
      return JSON.stringify({ type: "signal", to: name(msg.to, "to"), data: msg.data });
    case "stats": {
      /** @type {Record<string, unknown>} */
      const out = { type: "stats" };
      for (const key of ["p2p_down_bytes", "p2p_up_bytes", "http_down_bytes", "stalls"]) optional(out, msg, key, count);
      optional(out, msg, "startup_seconds", seconds);
      optional(out, msg, "verify_failures", count);
      optional(out, msg, "p2p_relay_down_bytes", count);
      optional(out, msg, "connections", outcomes);
      if (msg.neighbours !== undefined && msg.neighbours !== null) out.neighbours = count(msg.neighbours, "neighbours");
      if (msg.sources !== undefined) {
        const named = sources(msg.sources, "sources");
        if (Object.keys(named).length > 0) out.sources = named;
      }
      // a live track's latency now (docs/live.md): written when known
      if (msg.live_latency_seconds !== undefined && msg.live_latency_seconds !== null) {
        out.live_latency_seconds = latency(msg.live_latency_seconds, "live_latency_seconds");
      }
      // the part of p2p_down_bytes that was live chunks (docs/live.md): written when some
      if (msg.p2p_live_down_bytes) out.p2p_live_down_bytes = count(msg.p2p_live_down_bytes, "p2p_live_down_bytes");
      return JSON.stringify(out);
    }
    case "slots":
      return JSON.stringify({ type: "slots", in_use: count(msg.in_use, "in_use") });
    case "leave": {
      /** @type {Record<string, unknown>} */
      const out = { type: "leave", track: name(msg.track, "track") };
      if (msg.rendition !== undefined && msg.rendition !== null) out.rendition = name(msg.rendition, "rendition");
      return JSON.stringify(out);
    }
    case "ping":
      return '{"type":"ping"}';
    case "turn":
      return '{"type":"turn"}';
    case "introduce": {
      /** @type {Record<string, unknown>} */
      const out = { type: "introduce", track: name(msg.track, "track"), rendition: name(msg.rendition, "rendition"), peer_id: name(msg.peer_id, "peer_id") };
      optional(out, msg, "chunks", indices);
      return JSON.stringify(out);
    }
    default:
      throw new TypeError(`unknown control message type ${String(msg.type).slice(0, 40)}`);
  }
}
