// Runs the steps of tests/vectors/p2p/cases.json against client/p2p.js; shared
// by tests/js/p2p-vectors.test.mjs and tests/vectors/p2p/generate.mjs.
// tests/unit/peer/test_core.py is the same runner for peer/core.py.
import { createHash } from "node:crypto";

import { P2PCore } from "../../client/p2p.js";
import { decode, encode } from "../../client/protocol.js";

export const hex = (u8) => Buffer.from(u8).toString("hex");
export const fromHex = (h) => new Uint8Array(Buffer.from(h, "hex"));

/** Bytes of a step: {data_hex} or {data_pattern: n} (byte i is i % 251), or null. */
export function stepBytes(step) {
  if (step.data_hex !== undefined) return step.data_hex === null ? null : fromHex(step.data_hex);
  if (step.data_pattern !== undefined) return new Uint8Array(step.data_pattern).map((_, i) => i % 251);
  throw new Error("a step without bytes");
}

/** Bytes in an expectation: hex up to 64 bytes, else their size and SHA-256. */
export function bytesJson(u8) {
  if (u8.length <= 64) return hex(u8);
  return { size: u8.length, sha256: createHash("sha256").update(u8).digest("hex") };
}

function messageJson(frame) {
  const m = decode(frame);
  if (m.type === "piece") return { type: "piece", index: m.index, offset: m.offset, total: m.total, data: bytesJson(m.data) };
  return m;
}

export function effectJson(e) {
  switch (e.kind) {
    case "send":
      return { kind: "send", peer: e.peer, frame: messageJson(e.frame) };
    case "deliver":
      return { kind: "deliver", peer: e.peer, index: e.index, data: bytesJson(e.data) };
    default:
      return { ...e };
  }
}

const effects = (list) => list.map(effectJson);

function frameOf(step) {
  if (step.hex !== undefined) return fromHex(step.hex);
  const m = step.message;
  if (m.type === "piece") return encode({ type: "piece", index: m.index, offset: m.offset, total: m.total, data: stepBytes(m) });
  return encode(m);
}

export function newCore(settings = {}) {
  return new P2PCore(settings);
}

/** One step: what the core answered, as JSON (effects, null, a number or an object). */
export function runStep(c, step) {
  const now = step.now ?? 0;
  switch (step.on) {
    case "control": return effects(c.onControl(step.msg, now));
    case "controlClosed": return effects(c.controlClosed());
    case "startSession": return effects(c.startSession(step.session, now));
    case "updateManifest": return effects(c.updateManifest(step.manifest, now));
    case "stopSession": return effects(c.stopSession(now));
    case "chunkAdded": return effects(c.chunkAdded(step.index, now));
    case "chunkDropped": return effects(c.chunkDropped(step.index));
    case "request": {
      const r = c.request(step.peer, step.index, now);
      return r === null ? null : effects(r);
    }
    case "cancel": return effects(c.cancel(step.peer, step.index));
    case "verifyFailed": return effects(c.verifyFailed(step.peer, now));
    case "noteStartup": return effects(c.noteStartup(step.seconds));
    case "channelOpen": return effects(c.channelOpen(step.peer, now));
    case "channelClosed": return effects(c.channelClosed(step.peer, now));
    case "frame": return effects(c.onFrame(step.peer, frameOf(step), now));
    case "served": return effects(c.served(step.peer, step.index, stepBytes(step), now));
    case "tick": return effects(c.tick(now, step.totals ?? {}));
    case "flushStats": return effects(c.flushStats(now, step.totals ?? {}));
    case "waitUntil": {
      const until = c.waitUntil(now);
      return Number.isFinite(until) ? until : null;
    }
    case "lookup": return effects(c.lookup(step.target, now));
    case "setUpload": return effects(c.setUpload(step.upload, now));
    case "info": return c.info();
    default: throw new Error(`unknown step ${step.on}`);
  }
}
