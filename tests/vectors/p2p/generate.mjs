// Writes cases.json: the scenarios below, each step's `expect` being what
// client/p2p.js answers. Run `node tests/vectors/p2p/generate.mjs` after a
// deliberate change of the rules, read the diff of cases.json, and make
// peer/core.py agree (tests/unit/peer/test_core.py). constants.json is written
// by hand: both suites compare it with their defaults.
import { writeFileSync } from "node:fs";

import { newCore, runStep } from "../../js/p2p-vectors-run.mjs";

const T = "trk";
const R = "r1";
const welcome = (id = "me", limits = {}, now = 0) => ({
  on: "control", now, msg: { type: "welcome", peer_id: id, ice_servers: [{ urls: "stun:example" }], limits: { upload_slots: 4, stats_interval: 5, ...limits } },
});
const session = (n, held = [], now = 0, complete = true) => ({
  on: "startSession", now, session: { track: T, rendition: R, chunks: [...Array(n).keys()], complete, held },
});
const peers = (list, now, track = T) => ({
  on: "control", now, msg: { type: "peers", track, rendition: R, peers: list.map((p) => (typeof p === "string" ? { peer_id: p, chunks: [1], complete: false } : p)) },
});
const offer = (from, now) => ({ on: "control", now, msg: { type: "signal", from, data: { sdp: { type: "offer", sdp: "v=0" } } } });
const signal = (from, data, now) => ({ on: "control", now, msg: { type: "signal", from, data } });
const have = (peer, ranges, now) => ({ on: "frame", peer, now, message: { type: "have", ranges } });
const frame = (peer, message, now) => ({ on: "frame", peer, now, message });
const open = (peer, now) => ({ on: "channelOpen", peer, now });
const tick = (now, totals) => (totals ? { on: "tick", now, totals } : { on: "tick", now });
/** A welcomed core in a session, then `peer` dialled, open, its HAVE in. */
const dialled = (peer, ranges, now = 0) => [peers([peer], now), open(peer, now), have(peer, ranges, now)];

const scenarios = [
  { name: "welcome after the session: the holding replaces, holders are wanted", steps: [
    session(4, [0, 1], 0), welcome("me", { upload_slots: 3, stats_interval: 7 }, 1), { on: "info", now: 1 },
  ] },
  { name: "a peer holding everything announces complete and wants nothing", steps: [
    welcome(), session(3, [0, 1, 2]), { on: "waitUntil", now: 0 },
  ] },
  { name: "chunks obtained are announced on tick, to the tracker and to open neighbours", steps: [
    welcome(), session(4, [0]), ...dialled("p1", [[0, 3]]),
    { on: "chunkAdded", index: 2, now: 1 }, { on: "chunkAdded", index: 1, now: 1 }, { on: "chunkAdded", index: 1, now: 1 },
    tick(1.2), tick(1.4), { on: "chunkAdded", index: 3, now: 2 }, tick(2.1),
  ] },
  { name: "a chunk dropped makes the next announcement a replacement", steps: [
    welcome(), session(4, [0, 1, 2, 3]), { on: "chunkDropped", index: 1 }, { on: "chunkDropped", index: 9 }, tick(1),
  ] },
  { name: "peers: never self, banned, known or cooling ones; at most maxNeighbours; no want when full", steps: [
    welcome(), session(10), { on: "verifyFailed", peer: "bad", now: 0 },
    peers(["cool"], 0.1), signal("cool", { reject: "full" }, 0.2),
    peers(["me", "bad", "cool", "a", "b", "c", "d", "e", "f"], 1), tick(4), tick(9), { on: "info", now: 9 },
  ] },
  { name: "a peers answer for another track is ignored", steps: [
    welcome(), session(4), peers(["a"], 1, "other"),
  ] },
  { name: "want: again after the interval, doubling while nobody new comes, up to the cap", settings: { wantInterval: 4, maxWantInterval: 16 }, steps: [
    welcome(), session(10), peers([], 0.1), tick(8), tick(8.2), peers([], 8.3), tick(24.2), tick(24.4), peers([], 24.5),
    tick(40.4), tick(40.6), peers(["a"], 40.7), tick(44.6), tick(44.8),
  ] },
  { name: "want with the default intervals", steps: [
    welcome(), session(10), peers([], 0.1), tick(3), tick(3.2), peers([], 3.3), tick(9.2), tick(9.4), peers([], 9.5),
    tick(21.4), tick(21.6), peers([], 21.7), peers([], 30), peers([], 40), peers([], 50), tick(79.9), tick(80.1),
  ] },
  { name: "an unanswered want is given up; a refused one too", settings: { wantTimeout: 10 }, steps: [
    welcome(), session(4), tick(3.9), tick(4.1), tick(10.5), tick(11),
    { on: "control", now: 11.1, msg: { type: "error", error: "rate_limited", detail: "", for: "want" } }, tick(15.2),
  ] },
  { name: "waitUntil: the tracker, the want, connections; never beyond", settings: { startWait: 2, wantGrace: 1.5, connectTimeout: 5 }, steps: [
    { on: "waitUntil", now: 0 }, session(3, [], 10), { on: "waitUntil", now: 10 }, { on: "waitUntil", now: 12.5 },
    welcome("me", {}, 12.5), { on: "waitUntil", now: 12.6 }, peers([{ peer_id: "a", chunks: [0], complete: false }], 12.7), { on: "waitUntil", now: 12.8 },
    open("a", 13), { on: "waitUntil", now: 13 }, have("a", [[0, 2]], 13.1), { on: "waitUntil", now: 13.1 },
  ] },
  { name: "waitUntil: no wait when the tracker answered nobody", steps: [
    welcome(), session(2), peers([], 0.01), { on: "waitUntil", now: 0.02 },
  ] },
  { name: "offers: answered while there is room, refused when full or without a session", steps: [
    welcome(), session(10), offer("x", 1),
    signal("x", { candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", sdpMid: "0" } }, 1),
    signal("nobody", { candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", sdpMid: "0" } }, 1),
    signal("x", { sdp: { type: "answer", sdp: "v=0" } }, 1),
    ..."abcdefghijklmno".split("").map((p) => offer(p, 1)), offer("y", 1), { on: "info", now: 1 }, { on: "stopSession", now: 2 }, offer("z", 3),
  ] },
  { name: "dial up to wantNeighbours, accept offers up to maxNeighbours, want nothing above wantNeighbours", settings: { wantNeighbours: 2, maxNeighbours: 4 }, steps: [
    welcome(), session(10), peers(["a", "b", "c"], 0.1), offer("x", 0.2), offer("y", 0.3), offer("z", 0.4), tick(3),
    { on: "channelClosed", peer: "a", now: 4 }, { on: "channelClosed", peer: "b", now: 4 }, { on: "channelClosed", peer: "x", now: 4 }, tick(5.1),
  ] },
  { name: "a banned peer is neither answered nor dialled", steps: [
    welcome(), session(4), { on: "verifyFailed", peer: "bad", now: 0 }, offer("bad", 1), peers(["bad"], 1),
  ] },
  { name: "glare: the smaller id keeps its offer", steps: [welcome("a"), session(4), peers(["b"], 0), offer("b", 0.1), { on: "info", now: 0.1 }] },
  { name: "glare: the larger id answers the other's offer", steps: [welcome("c"), session(4), peers(["b"], 0), offer("b", 0.1), { on: "info", now: 0.1 }, peers(["b"], 0.2)] },
  { name: "a second offer from an open neighbour replaces the connection", steps: [
    welcome(), session(4), ...dialled("p", [[1, 1]]), offer("p", 1), { on: "info", now: 1 },
  ] },
  { name: "a refusal closes our pending dial and cools that peer down", steps: [
    welcome(), session(4), peers(["p"], 0), signal("p", { reject: "full" }, 0.2), peers(["p"], 10), peers(["p"], 30.3),
  ] },
  { name: "a connection that does not open in time is closed and not dialled again at once", steps: [
    welcome(), session(4), peers(["p"], 0), tick(4), tick(5.1), peers(["p"], 6), peers(["p"], 40),
  ] },
  { name: "a connection that closes before opening cools down; one that closes open does not", steps: [
    welcome(), session(4), peers(["p", "q"], 0), open("q", 0.1), have("q", [[0, 0]], 0.1),
    { on: "channelClosed", peer: "p", now: 0.5 }, { on: "channelClosed", peer: "q", now: 0.6 }, peers(["p", "q"], 2),
  ] },
  { name: "open channel: HAVE greets; a HAVE reaches the scheduler clamped to the manifest", steps: [
    welcome(), session(5, [0, 1, 3]), peers(["p"], 0), open("p", 0.3), open("p", 0.3),
    have("p", [[2, 4], [90, 0xffffffff]], 0.4), have("p", [[0, 10], [3, 5]], 0.5),
  ] },
  { name: "request, pieces, deliver; what cannot be asked now is null", steps: [
    welcome(), session(5), peers(["p"], 0), { on: "request", peer: "p", index: 2, now: 0.1 }, open("p", 0.2), have("p", [[0, 4]], 0.2),
    { on: "request", peer: "p", index: 2, now: 0.3 }, { on: "request", peer: "p", index: 2, now: 0.3 }, { on: "request", peer: "nobody", index: 2, now: 0.3 },
    frame("p", { type: "piece", index: 2, offset: 0, total: 20000, data_pattern: 16384 }, 0.4),
    frame("p", { type: "piece", index: 2, offset: 16384, total: 20000, data_pattern: 3616 }, 0.5),
    { on: "request", peer: "p", index: 3, now: 0.6 }, frame("p", { type: "piece", index: 3, offset: 0, total: 4, data_hex: "0a0b0c0d" }, 0.7),
  ] },
  { name: "CHOKE rejects the request; a CHOKE for nothing asked is ignored", steps: [
    welcome(), session(5), ...dialled("p", [[0, 4]]), { on: "request", peer: "p", index: 1, now: 1 },
    frame("p", { type: "choke", index: 1 }, 1.1), frame("p", { type: "choke", index: 1 }, 1.2),
  ] },
  { name: "cancel: CANCEL is sent, the pieces still on their way are ignored, then it may be asked again", steps: [
    welcome(), session(5), ...dialled("p", [[0, 4]]), { on: "request", peer: "p", index: 1, now: 1 }, { on: "cancel", peer: "p", index: 1 },
    { on: "cancel", peer: "p", index: 1 }, { on: "request", peer: "p", index: 1, now: 1.1 },
    frame("p", { type: "piece", index: 1, offset: 0, total: 20, data_pattern: 10 }, 1.2),
    frame("p", { type: "piece", index: 1, offset: 10, total: 20, data_pattern: 10 }, 1.3),
    { on: "request", peer: "p", index: 1, now: 1.4 },
  ] },
  { name: "a malformed frame bans the sender", steps: [
    welcome(), session(5), ...dialled("p", [[0, 4]]), { on: "request", peer: "p", index: 0, now: 1 },
    { on: "frame", peer: "p", now: 1.1, hex: "0901" }, peers(["p"], 2), offer("p", 2), { on: "info", now: 2 },
  ] },
  { name: "an unrequested piece bans the sender; so does one out of order", steps: [
    welcome(), session(5), ...dialled("p", [[0, 4]]), ...dialled("q", [[0, 4]]),
    frame("p", { type: "piece", index: 3, offset: 0, total: 4, data_hex: "01020304" }, 1),
    { on: "request", peer: "q", index: 1, now: 1 }, frame("q", { type: "piece", index: 1, offset: 2, total: 4, data_hex: "0304" }, 1.1),
    { on: "info", now: 1.2 },
  ] },
  { name: "serving: held chunks one after the other in pieces; CHOKE for what is not held; twice is once", steps: [
    welcome(), session(5, [0, 1, 2]), ...dialled("p", []),
    frame("p", { type: "request", index: 0 }, 1), frame("p", { type: "request", index: 1 }, 1), frame("p", { type: "request", index: 1 }, 1),
    frame("p", { type: "request", index: 4 }, 1), { on: "served", peer: "p", index: 1, data_hex: "ff", now: 1.1 },
    { on: "served", peer: "p", index: 0, data_pattern: 20000, now: 1.1 }, { on: "served", peer: "p", index: 1, data_hex: "0101", now: 1.2 },
    { on: "info", now: 1.2 },
  ] },
  { name: "serving: a neighbour cannot queue requests without bound", settings: { maxQueued: 2 }, steps: [
    welcome(), session(8, [0, 1, 2, 3, 4, 5, 6, 7]), ...dialled("p", []),
    ...[0, 1, 2, 3].map((i) => frame("p", { type: "request", index: i }, 1)),
  ] },
  { name: "serving: a chunk that cannot be read is choked and no longer announced", steps: [
    welcome(), session(3, [0, 1, 2]), ...dialled("p", []), frame("p", { type: "request", index: 1 }, 1),
    { on: "served", peer: "p", index: 1, data_hex: null, now: 1.1 }, tick(1.2),
  ] },
  { name: "serving: a cancelled request is not sent", steps: [
    welcome(), session(3, [0, 1, 2]), ...dialled("p", []), frame("p", { type: "request", index: 0 }, 1),
    frame("p", { type: "request", index: 1 }, 1), frame("p", { type: "request", index: 2 }, 1),
    frame("p", { type: "cancel", index: 1 }, 1.05), frame("p", { type: "cancel", index: 0 }, 1.05),
    { on: "served", peer: "p", index: 0, data_hex: "00", now: 1.1 }, { on: "served", peer: "p", index: 2, data_hex: "02", now: 1.2 },
  ] },
  { name: "upload slots: a listener beyond the slots in use is choked; slots are reported", steps: [
    welcome("me", { upload_slots: 2 }), session(3, [0, 1, 2]), tick(0.5),
    ...dialled("a", []), ...dialled("b", []), ...dialled("c", []),
    frame("a", { type: "request", index: 0 }, 1), tick(1.1), frame("b", { type: "request", index: 0 }, 1.2), tick(1.3),
    frame("c", { type: "request", index: 0 }, 1.4), frame("a", { type: "request", index: 1 }, 1.4),
    { on: "served", peer: "a", index: 0, data_hex: "00", now: 1.5 }, { on: "served", peer: "a", index: 1, data_hex: "01", now: 1.5 },
    { on: "served", peer: "b", index: 0, data_hex: "00", now: 1.5 }, tick(1.6), tick(2.7),
  ] },
  { name: "TEST ONLY corrupt: the chunk served differs by one byte", settings: { corrupt: true }, steps: [
    welcome(), session(2, [0, 1]), ...dialled("p", []), frame("p", { type: "request", index: 0 }, 1),
    { on: "served", peer: "p", index: 0, data_hex: "0001020304", now: 1.1 }, { on: "info", now: 1.1 },
  ] },
  { name: "a verify failure drops and bans the peer, and is reported soon", steps: [
    welcome(), session(5), tick(0.1, { httpBytes: 10, peerBytes: 0, stalls: 0 }), ...dialled("p", [[0, 4]], 1),
    { on: "request", peer: "p", index: 1, now: 1 }, { on: "request", peer: "p", index: 2, now: 1 }, { on: "verifyFailed", peer: "p", now: 1.2 },
    tick(1.3, { httpBytes: 10, peerBytes: 100, stalls: 0 }), offer("p", 1.4), { on: "info", now: 1.4 },
  ] },
  { name: "stats: counts since the last report, integers, every interval; a refused one is added back", steps: [
    welcome("me", { stats_interval: 5 }), session(3), tick(0.5, { httpBytes: 1000.7, peerBytes: 0, stalls: 0 }),
    tick(2, { httpBytes: 2000, peerBytes: 0, stalls: 0 }), tick(5.5, { httpBytes: 3000, peerBytes: 500, stalls: 1 }),
    { on: "noteStartup", seconds: 0.25 }, tick(6, { httpBytes: 3000, peerBytes: 500, stalls: 1 }),
    tick(6.6, { httpBytes: 3000, peerBytes: 500, stalls: 1 }),
    { on: "control", now: 6.7, msg: { type: "error", error: "rate_limited", detail: "", for: "stats" } },
    tick(11.7, { httpBytes: 3000, peerBytes: 600, stalls: 1 }), tick(17, { httpBytes: 3000, peerBytes: 600, stalls: 1 }),
    { on: "flushStats", now: 17.5, totals: { httpBytes: 3001, peerBytes: 600, stalls: 1 } },
    { on: "flushStats", now: 17.6, totals: { httpBytes: 3001, peerBytes: 600, stalls: 1 } },
    { on: "noteStartup", seconds: -1 }, tick(30, { httpBytes: -5, peerBytes: 2 ** 31, stalls: 1 }),
  ] },
  { name: "stats: the live part of the peer bytes goes out as p2p_live_down_bytes, only when some", steps: [
    welcome("me", { stats_interval: 5 }), session(3), tick(0.5, { httpBytes: 1000, peerBytes: 0, livePeerBytes: 0, stalls: 0 }),
    tick(5.6, { httpBytes: 1000, peerBytes: 600, livePeerBytes: 600, stalls: 0, liveLatency: 3.25 }),
    tick(11, { httpBytes: 1000, peerBytes: 900, livePeerBytes: 600, stalls: 0 }),
    { on: "control", now: 11.1, msg: { type: "error", error: "rate_limited", detail: "", for: "stats" } },
    tick(16.5, { httpBytes: 1000, peerBytes: 1000, livePeerBytes: 700, stalls: 0 }),
  ] },
  { name: "a keepalive ping when nothing was sent for a while", steps: [
    welcome(), session(2, [0, 1]), tick(59.9), tick(60.1), tick(61),
  ] },
  { name: "nothing is sent on a closed control socket; a new welcome announces everything again", steps: [
    welcome(), session(4, [0]), { on: "controlClosed" }, { on: "chunkAdded", index: 1, now: 1 }, tick(1.1), tick(10),
    welcome("me2", {}, 11), { on: "info", now: 11 },
  ] },
  { name: "stopSession: leave, every neighbour closed and its requests rejected", steps: [
    welcome(), session(5), ...dialled("p", [[0, 4]]), peers(["q"], 0.5), { on: "request", peer: "p", index: 3, now: 1 },
    { on: "request", peer: "p", index: 1, now: 1 }, { on: "stopSession", now: 2 }, { on: "stopSession", now: 2 }, tick(3),
  ] },
  { name: "a live manifest that grows re-reads the neighbours' announcements; holding all is announced", steps: [
    welcome(), session(3, [0, 1, 2], 0, false), ...dialled("p", [[0, 80]]),
    { on: "updateManifest", now: 1, manifest: { chunks: [0, 1, 2], complete: false } },
    { on: "updateManifest", now: 2, manifest: { chunks: [0, 1, 2, 3, 4], complete: false } },
    { on: "chunkAdded", index: 3, now: 2.1 }, { on: "chunkAdded", index: 4, now: 2.1 },
    { on: "updateManifest", now: 3, manifest: { chunks: [0, 1, 2, 3, 4], complete: true } }, tick(3.1),
  ] },
  { name: "a new session ends the old one", steps: [
    welcome(), session(3, [0]), ...dialled("p", [[0, 2]]),
    { on: "startSession", now: 5, session: { track: "other", rendition: "r2", chunks: [0, 1], complete: true, held: [1] } },
  ] },
  // ---- the overlay: lookups among neighbours before the tracker ----
  { name: "overlay: a LOOKUP is answered with self, neighbours that hold, the directory; once per lookupGap", steps: [
    welcome(), session(4, [0, 1]), ...dialled("p", [[0, 1]]), ...dialled("q", []), ...dialled("r", [[2, 3]]),
    frame("p", { type: "lookup", track: T, rendition: R }, 1), frame("p", { type: "lookup", track: T, rendition: R }, 1.5),
    frame("p", { type: "lookup", track: "other", rendition: R }, 2.1), frame("q", { type: "lookup", track: T, rendition: R }, 2.1),
  ] },
  { name: "overlay: a round asks the open neighbours first; their ids are introduced; an introduction dials; no want", steps: [
    welcome(), session(10), peers(["p"], 0), open("p", 0.1), have("p", [[0, 9]], 0.1), tick(1), tick(1.6), { on: "waitUntil", now: 1.65 },
    frame("p", { type: "holders", track: T, rendition: R, peers: ["a", "b", "p"] }, 1.7),
    { on: "control", now: 1.8, msg: { type: "peers", track: T, rendition: R, peers: [{ peer_id: "a", chunks: [], complete: false }], for: "introduce", peer_id: "a" } },
    { on: "control", now: 1.9, msg: { type: "peers", track: T, rendition: R, peers: [], for: "introduce", peer_id: "b", reason: "not_a_holder" } },
    tick(2.5), tick(3.5),
  ] },
  { name: "overlay: every neighbour answered, nobody new: the want backs off (doubling); it goes out once at maxWantInterval", settings: { wantInterval: 2, maxWantInterval: 8 }, steps: [
    welcome(), session(10), peers(["p"], 0), open("p", 0.1), have("p", [[0, 9]], 0.1), tick(2),
    frame("p", { type: "holders", track: T, rendition: R, peers: ["a"] }, 2.1),
    { on: "control", now: 2.2, msg: { type: "peers", track: T, rendition: R, peers: [], for: "introduce", peer_id: "a", reason: "busy" } },
    { on: "waitUntil", now: 2.3 }, tick(6.1), tick(6.2), tick(14.1), tick(14.2),
    frame("p", { type: "holders", track: T, rendition: R, peers: [] }, 14.3), peers([], 14.4), tick(20),
  ] },
  { name: "overlay: the overlay exhausted, then the last neighbour gone: a round for what is known, then the tracker", steps: [
    welcome(), session(10), peers(["p"], 0), open("p", 0.1), have("p", [[0, 9]], 0.1), tick(1.6),
    frame("p", { type: "holders", track: T, rendition: R, peers: [] }, 1.7), tick(4.8),
    { on: "channelClosed", peer: "p", now: 5 }, tick(5.9), tick(6.1),
    { on: "control", now: 6.2, msg: { type: "peers", track: T, rendition: R, peers: [], for: "introduce", peer_id: "p", reason: "not_a_holder" } },
  ] },
  { name: "overlay: a new welcome forgets that the overlay was exhausted", steps: [
    welcome(), session(10), peers(["p"], 0), open("p", 0.1), have("p", [[0, 9]], 0.1), tick(1.6),
    frame("p", { type: "holders", track: T, rendition: R, peers: [] }, 1.7), { on: "controlClosed" }, welcome("me2", {}, 2),
  ] },
  { name: "overlay: a session's start with known candidates waits for their introductions; one dials: no want", steps: [
    welcome(), session(4, [0]), ...dialled("p", [[0, 3]]), { on: "lookup", now: 1, target: { track: "next", rendition: R } },
    frame("p", { type: "holders", track: "next", rendition: R, peers: ["x", "y"] }, 1.1),
    { on: "startSession", now: 2, session: { track: "next", rendition: R, chunks: [0, 1, 2], complete: true, held: [] } },
    { on: "waitUntil", now: 2.05 },
    { on: "control", now: 2.1, msg: { type: "peers", track: "next", rendition: R, peers: [{ peer_id: "x", chunks: [0], complete: false }], for: "introduce", peer_id: "x" } },
    { on: "control", now: 2.2, msg: { type: "peers", track: "next", rendition: R, peers: [], for: "introduce", peer_id: "y", reason: "not_a_holder" } },
    tick(2.6), tick(3.6),
  ] },
  { name: "overlay: a session's start whose introductions are all refused wants as soon as the last answer is in", steps: [
    welcome(), session(4, [0]), ...dialled("p", [[0, 3]]), { on: "lookup", now: 1, target: { track: "next", rendition: R } },
    frame("p", { type: "holders", track: "next", rendition: R, peers: ["x", "y"] }, 1.1),
    { on: "startSession", now: 2, session: { track: "next", rendition: R, chunks: [0, 1, 2], complete: true, held: [] } },
    { on: "control", now: 2.1, msg: { type: "peers", track: "next", rendition: R, peers: [], for: "introduce", peer_id: "x", reason: "busy" } },
    { on: "control", now: 2.2, msg: { type: "peers", track: "next", rendition: R, peers: [], for: "introduce", peer_id: "y", reason: "not_a_holder" } },
  ] },
  { name: "overlay: a silent neighbour: want after lookupWait; asked again only after lookupInterval", steps: [
    welcome(), session(10), peers(["p"], 0), open("p", 0.1), have("p", [[0, 9]], 0.1), tick(1.6), tick(2), tick(2.2),
    peers([], 2.3), tick(5.4), tick(6.4), tick(7.0),
  ] },
  { name: "overlay: a neighbour leaving for another track tells where it goes; that is introduced in our next session", steps: [
    welcome(), session(4, [0]), ...dialled("p", [[0, 3]]), ...dialled("q", [[0, 3]]),
    frame("p", { type: "holders", track: "next", rendition: R, peers: ["p"] }, 1),
    { on: "startSession", now: 2, session: { track: "next", rendition: R, chunks: [0, 1, 2], complete: true, held: [] } },
    { on: "waitUntil", now: 2.1 }, tick(2.4), tick(2.6),
    { on: "control", now: 2.7, msg: { type: "peers", track: "next", rendition: R, peers: [], for: "introduce", peer_id: "p", reason: "not_a_holder" } },
    tick(5), { on: "control", now: 5.1, msg: { type: "peers", track: "next", rendition: R, peers: [{ peer_id: "p", chunks: [0], complete: false }], for: "introduce", peer_id: "p" } },
  ] },
  { name: "overlay: lookup() asks about the next track ahead; the answers are introduced when it starts", steps: [
    welcome(), session(4, [0]), ...dialled("p", [[0, 3]]), { on: "lookup", now: 1, target: { track: "next", rendition: R } },
    { on: "lookup", now: 1.5, target: { track: "next", rendition: R } },
    frame("p", { type: "holders", track: "next", rendition: R, peers: ["x", "y"] }, 1.6),
    { on: "startSession", now: 3, session: { track: "next", rendition: R, chunks: [0, 1, 2], complete: true, held: [] } },
  ] },
  { name: "overlay: nonsense is counted like a bad chunk: unsolicited, our own id, duplicates, a flood", settings: { maxHolders: 2 }, steps: [
    welcome(), session(10), ...dialled("p", [[0, 9]]), ...dialled("q", [[0, 9]]), ...dialled("r", [[0, 9]]), ...dialled("s", [[0, 9]]),
    frame("p", { type: "holders", track: T, rendition: R, peers: ["x"] }, 1),
    { on: "lookup", now: 1, target: { track: "t2", rendition: R } },
    frame("q", { type: "holders", track: "t2", rendition: R, peers: ["me"] }, 1.1),
    frame("r", { type: "holders", track: "t2", rendition: R, peers: ["x", "x"] }, 1.1),
    frame("s", { type: "holders", track: "t2", rendition: R, peers: ["x", "y", "z"] }, 1.1),
    { on: "info", now: 1.2 }, tick(1.3),
  ] },
  { name: "overlay: a neighbour whose suggestions the server keeps refusing as not holders counts as a bad chunk; busy does not", settings: { maxBadHolders: 2, wantNeighbours: 8 }, steps: [
    welcome(), session(10), peers(["p"], 0), open("p", 0.1), have("p", [[0, 9]], 0.1), tick(1.6),
    frame("p", { type: "holders", track: T, rendition: R, peers: ["a", "b", "c", "d", "e"] }, 1.7),
    { on: "control", now: 1.75, msg: { type: "peers", track: T, rendition: R, peers: [{ peer_id: "d", chunks: [1], complete: false }], for: "introduce", peer_id: "d" } },
    { on: "control", now: 1.76, msg: { type: "peers", track: T, rendition: R, peers: [], for: "introduce", peer_id: "e", reason: "not_a_holder" } },
    { on: "control", now: 1.8, msg: { type: "peers", track: T, rendition: R, peers: [], for: "introduce", peer_id: "a", reason: "not_a_holder" } },
    { on: "control", now: 1.8, msg: { type: "peers", track: T, rendition: R, peers: [], for: "introduce", peer_id: "zz", reason: "not_a_holder" } },
    { on: "control", now: 1.85, msg: { type: "peers", track: T, rendition: R, peers: [], for: "introduce", peer_id: "c", reason: "busy" } },
    { on: "info", now: 1.85 },
    { on: "control", now: 1.9, msg: { type: "peers", track: T, rendition: R, peers: [], for: "introduce", peer_id: "b", reason: "not_a_holder" } },
    { on: "info", now: 1.9 },
  ] },
  { name: "overlay off: never a LOOKUP, a notice or an introduce; the tracker only", settings: { overlay: false }, steps: [
    welcome(), session(10), peers(["p"], 0), open("p", 0.1), have("p", [[0, 9]], 0.1),
    frame("p", { type: "holders", track: "next", rendition: R, peers: ["p"] }, 1), tick(1.6),
    { on: "lookup", now: 1.7, target: { track: "next", rendition: R } },
    { on: "startSession", now: 2, session: { track: "next", rendition: R, chunks: [0, 1], complete: true, held: [] } },
  ] },
  { name: "upload off: downloads from peers, announces nothing, sends an empty HAVE, chokes every request, names nobody but others", settings: { upload: false }, steps: [
    welcome(), session(4, [0, 1]), peers(["p1"], 0.1), open("p1", 0.2), have("p1", [[0, 3]], 0.3),
    { on: "request", peer: "p1", index: 2, now: 0.4 }, frame("p1", { type: "request", index: 0 }, 0.5),
    { on: "chunkAdded", index: 2, now: 0.6 }, tick(0.7), frame("p1", { type: "lookup", track: T, rendition: R }, 0.8),
    { on: "startSession", now: 1, session: { track: "next", rendition: R, chunks: [0, 1], complete: true, held: [] } },
    { on: "info", now: 1 },
  ] },
  { name: "upload stopped and started: the announcement withdrawn and made again, neighbours told, queued requests choked", steps: [
    welcome(), session(4, [0, 1, 2, 3]), ...dialled("p", [], 0.1),
    frame("p", { type: "request", index: 0 }, 1), frame("p", { type: "request", index: 1 }, 1),
    { on: "setUpload", upload: false, now: 1.1 }, { on: "served", peer: "p", index: 0, data_hex: "0a0b", now: 1.2 },
    frame("p", { type: "request", index: 2 }, 1.3), { on: "setUpload", upload: false, now: 1.4 }, tick(1.5),
    { on: "setUpload", upload: true, now: 2 }, frame("p", { type: "request", index: 2 }, 2.1), { on: "info", now: 2.1 },
  ] },
  { name: "upload off from the start, then on: the first announcement is the whole holding", settings: { upload: false }, steps: [
    welcome(), session(3, [0, 1, 2]), { on: "setUpload", upload: true, now: 1 }, { on: "controlClosed", now: 2 },
    { on: "setUpload", upload: false, now: 2.5 }, welcome("me2", {}, 3), { on: "setUpload", upload: true, now: 4 },
  ] },
  { name: "upload cap: a chunk starts while the budget lasts, the next waits for tick until the debt is paid", settings: { uploadKbps: 8, uploadBurst: 1 }, steps: [
    welcome("me", { upload_kbps: 16 }), session(4, [0, 1, 2, 3]), ...dialled("p", [], 0),
    frame("p", { type: "request", index: 0 }, 1), frame("p", { type: "request", index: 1 }, 1),
    { on: "served", peer: "p", index: 0, data_pattern: 3000, now: 1 }, tick(2), tick(2.9), tick(3.1),
    { on: "served", peer: "p", index: 1, data_pattern: 100, now: 3.2 }, frame("p", { type: "request", index: 2 }, 3.3), { on: "info", now: 3.3 },
  ] },
  { name: "upload cap: the welcome's applies where stricter", steps: [
    welcome("me", { upload_kbps: 8 }), { on: "info", now: 0 }, welcome("me", { upload_kbps: 0 }, 1), { on: "info", now: 1 },
  ] },
  { name: "a frame of an unknown type (a newer peer's) is ignored, not a ban", steps: [
    welcome(), session(5), ...dialled("p", [[0, 4]]), { on: "frame", peer: "p", now: 1, hex: "010900000001" }, { on: "info", now: 1 },
  ] },
];

const cases = scenarios.map(({ name, settings = {}, steps }) => {
  const c = newCore(settings);
  return { name, settings, steps: steps.map((step) => ({ ...step, expect: runStep(c, step) })) };
});
const url = new URL("./cases.json", import.meta.url);
writeFileSync(url, `${JSON.stringify({ note: "written by generate.mjs from client/p2p.js; see that file", cases }, null, 1)}\n`);
console.log(`${cases.length} cases, ${cases.reduce((n, c) => n + c.steps.length, 0)} steps -> ${url.pathname}`);
