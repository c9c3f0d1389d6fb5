// @ts-check
// The P2P wire format over a WebRTC DataChannel, version 1. Pure: no I/O.
//
// One binary DataChannel per neighbour and track, labelled
// "ztream/1/<track>/<rendition>". Each frame: u8 version, u8 type, then
// big-endian unsigned fields. Chunks travel as PIECEs of at most 16 KiB, a
// size every browser's SCTP stack accepts (RFC 8831). protocol/wire.py is the
// same format; tests/vectors/wire/vectors.json is shared by both sides.
//
//   HAVE    t=1  u32 n, n x (u32 first, u32 last)   inclusive ranges; replaces the last HAVE
//   REQUEST t=2  u32 index
//   PIECE   t=3  u32 index, u32 offset, u32 total, payload (<= 16384 bytes)
//   CANCEL  t=4  u32 index
//   CHOKE   t=5  u32 index                          "will not send this"
//   LOOKUP  t=6  name track, name rendition         "whom do you know that holds this track?"
//   HOLDERS t=7  name track, name rendition, u8 n, n x id   the answer (n <= 16), or a notice
//
// A name is u8 length, then 1..128 ASCII bytes of A-Z a-z 0-9 . _ ~ : - (the
// control socket's track names); an id is u8 length, then 1..64 bytes of
// A-Z a-z 0-9 _ - (the server's peer ids). LOOKUP and HOLDERS are the
// neighbour overlay (docs/wire.md). A version-1 frame of a type this side
// does not know decodes as {type: "unknown", code} and is ignored by the
// core: a newer peer may send more. (Peers older than LOOKUP/HOLDERS refused
// unknown types as malformed.)

/**
 * The messages, as `encode` takes them and `decode` returns them.
 * @typedef {{type: "have", ranges: Array<[number, number]>}} Have
 * @typedef {{type: "request" | "cancel" | "choke", index: number}} IndexMessage
 * @typedef {{type: "piece", index: number, offset: number, total: number, data: Uint8Array}} Piece
 * @typedef {{type: "lookup", track: string, rendition: string}} Lookup
 * @typedef {{type: "holders", track: string, rendition: string, peers: string[]}} Holders
 * @typedef {Have | IndexMessage | Piece | Lookup | Holders} WireMessage
 * @typedef {{type: "unknown", code: number}} Unknown a version-1 type this side does not know
 */

export const VERSION = 1;
export const PIECE_SIZE = 16 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;
export const MAX_RANGES = 4096;
export const MAX_HOLDERS = 16; // ids in one HOLDERS at most
const MAX_INDEX = 0xffffffff;
/** @type {Record<string, number>} */
const TYPES = { have: 1, request: 2, piece: 3, cancel: 4, choke: 5, lookup: 6, holders: 7 };
const NAME = /^[A-Za-z0-9._~:-]{1,128}$/;
const ID = /^[A-Za-z0-9_-]{1,64}$/;
const NAMES = /** @type {Record<number, WireMessage["type"]>} */ (Object.fromEntries(Object.entries(TYPES).map(([k, v]) => [v, k])));

export class WireError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "WireError";
  }
}

/**
 * @param {number} i
 * @returns {number}
 */
function checkIndex(i) {
  if (!Number.isInteger(i) || i < 0 || i > MAX_INDEX) throw new WireError(`index ${i} out of range`);
  return i;
}

/**
 * @param {unknown} value
 * @param {RegExp} pattern
 * @param {string} what
 * @returns {number[]}
 */
function field(value, pattern, what) {
  if (typeof value !== "string" || !pattern.test(value)) throw new WireError(`bad ${what} ${value}`);
  return [value.length, ...Array.from(value, (c) => c.charCodeAt(0))];
}

/**
 * @param {Uint8Array} bytes
 * @param {number} at
 * @param {RegExp} pattern
 * @param {string} what
 * @returns {[string, number]}
 */
function readField(bytes, at, pattern, what) {
  if (at >= bytes.length) throw new WireError(`${what} missing`);
  const n = bytes[at];
  if (at + 1 + n > bytes.length) throw new WireError(`bad ${what}`);
  const value = String.fromCharCode(...bytes.subarray(at + 1, at + 1 + n));
  if (!pattern.test(value)) throw new WireError(`bad ${what}`);
  return [value, at + 1 + n];
}

/**
 * Encode a message object ({type, ...}) into a Uint8Array frame.
 * @param {WireMessage} msg
 * @returns {Uint8Array<ArrayBuffer>}
 */
export function encode(msg) {
  const kind = Object.hasOwn(TYPES, msg.type) ? TYPES[msg.type] : 0;
  if (!kind) throw new WireError(`cannot encode type ${msg.type}`);
  if (msg.type === "lookup") {
    return Uint8Array.from([VERSION, kind, ...field(msg.track, NAME, "track"), ...field(msg.rendition, NAME, "rendition")]);
  }
  if (msg.type === "holders") {
    const peers = msg.peers;
    if (!Array.isArray(peers) || peers.length > MAX_HOLDERS) throw new WireError(`more than ${MAX_HOLDERS} holders`);
    const head = [VERSION, kind, ...field(msg.track, NAME, "track"), ...field(msg.rendition, NAME, "rendition"), peers.length];
    return Uint8Array.from(head.concat(...peers.map((p) => field(p, ID, "peer id"))));
  }
  if (msg.type === "have") {
    const ranges = msg.ranges;
    if (ranges.length > MAX_RANGES) throw new WireError("too many ranges");
    const out = new Uint8Array(6 + 8 * ranges.length);
    const view = new DataView(out.buffer);
    out[0] = VERSION; out[1] = kind;
    view.setUint32(2, ranges.length);
    ranges.forEach(([first, last], i) => {
      if (!(checkIndex(first) <= checkIndex(last))) throw new WireError(`bad range ${first}..${last}`);
      view.setUint32(6 + 8 * i, first);
      view.setUint32(10 + 8 * i, last);
    });
    return out;
  }
  if (msg.type === "piece") {
    const data = msg.data;
    if (data.length === 0 || data.length > PIECE_SIZE) throw new WireError("piece payload empty or over 16 KiB");
    // offset and total are u32 fields like the index: whole, never wrapped (protocol/wire.py checks the same)
    const offset = checkIndex(msg.offset), total = checkIndex(msg.total);
    if (!(total > 0 && total <= MAX_CHUNK_SIZE) || offset + data.length > total) {
      throw new WireError("piece outside its chunk");
    }
    const out = new Uint8Array(14 + data.length);
    const view = new DataView(out.buffer);
    out[0] = VERSION; out[1] = kind;
    view.setUint32(2, checkIndex(msg.index));
    view.setUint32(6, offset);
    view.setUint32(10, total);
    out.set(data, 14);
    return out;
  }
  const out = new Uint8Array(6);
  out[0] = VERSION; out[1] = kind;
  new DataView(out.buffer).setUint32(2, checkIndex(msg.index));
  return out;
}

/**
 * Decode one frame (ArrayBuffer or Uint8Array); throws WireError when malformed.
 * @param {ArrayBuffer | Uint8Array} frame
 * @returns {WireMessage | Unknown}
 */
export function decode(frame) {
  const bytes = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
  if (bytes.length < 2) throw new WireError("frame shorter than its header");
  if (bytes[0] !== VERSION) throw new WireError(`unsupported version ${bytes[0]}`);
  const type = NAMES[bytes[1]];
  if (!type) return { type: "unknown", code: bytes[1] }; // a newer peer's message: ignored
  if (type === "lookup" || type === "holders") {
    let at = 2, /** @type {string} */ track, /** @type {string} */ rendition;
    [track, at] = readField(bytes, at, NAME, "track");
    [rendition, at] = readField(bytes, at, NAME, "rendition");
    if (type === "lookup") {
      if (at !== bytes.length) throw new WireError("LOOKUP longer than its names");
      return { type, track, rendition };
    }
    if (at >= bytes.length || bytes[at] > MAX_HOLDERS) throw new WireError(`HOLDERS without a count of 0..${MAX_HOLDERS}`);
    const count = bytes[at++];
    const peers = [];
    for (let i = 0; i < count; i++) {
      let /** @type {string} */ peer;
      [peer, at] = readField(bytes, at, ID, "peer id");
      peers.push(peer);
    }
    if (at !== bytes.length) throw new WireError("HOLDERS longer than its ids");
    return { type, track, rendition, peers };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const body = bytes.length - 2;
  if (type === "have") {
    if (body < 4) throw new WireError("HAVE without a count");
    const n = view.getUint32(2);
    if (n > MAX_RANGES || body !== 4 + 8 * n) throw new WireError("HAVE length does not match its count");
    /** @type {Array<[number, number]>} */
    const ranges = [];
    for (let i = 0; i < n; i++) {
      const first = view.getUint32(6 + 8 * i);
      const last = view.getUint32(10 + 8 * i);
      if (first > last) throw new WireError(`bad range ${first}..${last}`);
      ranges.push([first, last]);
    }
    return { type, ranges };
  }
  if (type === "piece") {
    if (body < 12) throw new WireError("PIECE header truncated");
    const index = view.getUint32(2), offset = view.getUint32(6), total = view.getUint32(10);
    const data = bytes.slice(14);
    if (data.length === 0 || data.length > PIECE_SIZE) throw new WireError("PIECE payload empty or over 16 KiB");
    if (!(total > 0 && total <= MAX_CHUNK_SIZE) || offset + data.length > total) {
      throw new WireError("PIECE outside its chunk");
    }
    return { type, index, offset, total, data };
  }
  if (body !== 4) throw new WireError("wrong length");
  return { type: /** @type {IndexMessage["type"]} */ (type), index: view.getUint32(2) };
}

/**
 * A chunk (Uint8Array) as the PIECE messages that carry it.
 * @param {number} index
 * @param {Uint8Array} data
 * @returns {Piece[]}
 */
export function splitChunk(index, data) {
  if (data.length === 0 || data.length > MAX_CHUNK_SIZE) throw new WireError("chunk size out of range");
  /** @type {Piece[]} */
  const pieces = [];
  for (let offset = 0; offset < data.length; offset += PIECE_SIZE) {
    pieces.push({ type: "piece", index, offset, total: data.length, data: data.subarray(offset, offset + PIECE_SIZE) });
  }
  return pieces;
}

/**
 * @param {string} track
 * @param {string} rendition
 */
export function channelLabel(track, rendition) {
  return `ztream/${VERSION}/${track}/${rendition}`;
}

/**
 * @param {unknown} label
 * @returns {{track: string, rendition: string}}
 */
export function parseLabel(label) {
  const parts = String(label).split("/");
  if (parts.length !== 4 || parts[0] !== "ztream" || parts[1] !== String(VERSION) || !parts[2] || !parts[3]) {
    throw new WireError(`not a ztream channel: ${label}`);
  }
  return { track: parts[2], rendition: parts[3] };
}

/**
 * Indices -> sorted inclusive ranges, for HAVE.
 * @param {Iterable<number>} indices
 * @returns {Array<[number, number]>}
 */
export function toRanges(indices) {
  const sorted = [...new Set(indices)].sort((a, b) => a - b);
  /** @type {Array<[number, number]>} */
  const ranges = [];
  for (const i of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && i === last[1] + 1) last[1] = i;
    else ranges.push([i, i]);
  }
  return ranges;
}

/** Collects in-order PIECEs of requested chunks; returns a chunk once whole. */
export class Reassembler {
  constructor() {
    /** @type {Map<number, {chunks: Uint8Array[], received: number, total: number | null}>} */
    this.parts = new Map();
  }
  /** @param {number} index */
  expect(index) {
    this.parts.set(index, { chunks: [], received: 0, total: null });
  }
  /** @param {number} index */
  forget(index) {
    this.parts.delete(index);
  }
  /**
   * @param {Piece} piece
   * @returns {Uint8Array<ArrayBuffer> | null} the whole chunk, once its last piece came
   */
  feed(piece) {
    const part = this.parts.get(piece.index);
    if (!part) throw new WireError(`unrequested piece of chunk ${piece.index}`);
    if (part.total === null) part.total = piece.total;
    if (piece.total !== part.total || piece.offset !== part.received) {
      throw new WireError(`piece of chunk ${piece.index} out of order`);
    }
    part.chunks.push(piece.data);
    part.received += piece.data.length;
    if (part.received < part.total) return null;
    this.parts.delete(piece.index);
    const out = new Uint8Array(part.total);
    let at = 0;
    for (const c of part.chunks) { out.set(c, at); at += c.length; }
    return out;
  }
}
