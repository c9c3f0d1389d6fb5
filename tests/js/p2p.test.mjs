// Unit tests of the pure P2P core (client/p2p.js): node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import { DEFAULT_P2P_SETTINGS, P2PCore, controlUrl, corruptCopy, expandRanges } from "../../client/p2p.js";
import { decode, encode, splitChunk } from "../../client/protocol.js";

const TRACK = "trk";
const REND = "r1";

function welcome(id = "me", limits = {}) {
  return { type: "welcome", peer_id: id, ice_servers: [{ urls: "stun:example" }], limits: { upload_slots: 4, stats_interval: 5, ...limits } };
}

/** A core that is welcomed and in a session of `n` chunks holding `held`. */
function core({ id = "me", n = 10, held = [], complete = true, settings = {}, limits = {} } = {}) {
  const c = new P2PCore(settings);
  c.onControl(welcome(id, limits), 0);
  const out = c.startSession({ track: TRACK, rendition: REND, chunks: [...Array(n).keys()], complete, held }, 0);
  return { c, out };
}

const controls = (effects, type) => effects.filter((e) => e.kind === "control" && (!type || e.msg.type === type)).map((e) => e.msg);
const kinds = (effects) => effects.map((e) => e.kind);
const frames = (effects, peer) => effects.filter((e) => e.kind === "send" && (!peer || e.peer === peer)).map((e) => decode(e.frame));

/** Make `peer` an open neighbour of `c` (dialled by c) that announced `have`. */
function neighbour(c, peer, have = [], now = 0) {
  c.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: peer, chunks: [], complete: false }] }, now);
  assert.ok(c.neighbours.has(peer));
  c.channelOpen(peer, now);
  return c.onFrame(peer, encode({ type: "have", ranges: have.length ? [[Math.min(...have), Math.max(...have)]] : [] }), now);
}

/** Make `peer` an open neighbour that dialled `c`. */
function dialledBy(c, peer, now = 0) {
  const out = c.onControl({ type: "signal", from: peer, data: { sdp: { type: "offer", sdp: "v=0" } } }, now);
  assert.deepEqual(kinds(out), ["open", "rtc"]);
  c.channelOpen(peer, now);
  c.onFrame(peer, encode({ type: "have", ranges: [] }), now);
}

test("settings are checked and default to the issue's numbers", () => {
  assert.equal(DEFAULT_P2P_SETTINGS.wantNeighbours, 5);
  assert.equal(DEFAULT_P2P_SETTINGS.maxNeighbours, 16);
  assert.equal(DEFAULT_P2P_SETTINGS.uploadSlots, 4);
  assert.throws(() => new P2PCore({ maxNeighbour: 3 }), TypeError);
});

test("controlUrl: the gateway's /v1/ws from a track URL", () => {
  assert.equal(controlUrl("http://127.0.0.1:8000/v1/tracks/abc"), "ws://127.0.0.1:8000/v1/ws");
  assert.equal(controlUrl("https://cdn.example/gw/v1/tracks/abc/"), "wss://cdn.example/gw/v1/ws");
  assert.equal(controlUrl("/v1/tracks/abc?x=1#y", "http://h:1/page"), "ws://h:1/v1/ws");
});

test("welcome then session: the whole holding is announced (replace) and holders are wanted", () => {
  const c = new P2PCore();
  assert.deepEqual(c.startSession({ track: TRACK, rendition: REND, chunks: [0, 1, 2, 3], complete: true, held: [0, 1] }, 0), []);
  const out = c.onControl(welcome("me", { upload_slots: 3, stats_interval: 7 }), 1);
  assert.equal(c.peerId, "me");
  assert.equal(c.uploadSlots, 3);
  assert.equal(c.statsInterval, 7);
  assert.deepEqual(c.iceServers, [{ urls: "stun:example" }]);
  assert.deepEqual(controls(out), [
    { type: "have", track: TRACK, rendition: REND, ranges: [[0, 1]], complete: false, replace: true },
    { type: "want", track: TRACK, rendition: REND, chunks: [2, 3] },
  ]);
});

test("a peer holding everything announces complete and wants nothing", () => {
  const { out } = core({ n: 3, held: [0, 1, 2] });
  assert.deepEqual(controls(out), [{ type: "have", track: TRACK, rendition: REND, ranges: [[0, 2]], complete: true, replace: true }]);
});

test("chunks obtained are added on tick: tracker `have` and HAVE to open neighbours", () => {
  const { c } = core({ n: 4, held: [0] });
  neighbour(c, "p1", [0, 1, 2, 3]);
  c.chunkAdded(2, 1);
  c.chunkAdded(1, 1);
  c.chunkAdded(1, 1); // twice: once is enough
  const out = c.tick(1.2);
  assert.deepEqual(controls(out, "have"), [{ type: "have", track: TRACK, rendition: REND, ranges: [[1, 2]], complete: false }]);
  assert.deepEqual(frames(out, "p1"), [{ type: "have", ranges: [[0, 2]] }]);
  // nothing new: nothing sent
  assert.deepEqual(controls(c.tick(1.5), "have"), []);
  // the last one completes the holding
  c.chunkAdded(3, 2);
  assert.deepEqual(controls(c.tick(2), "have"), [{ type: "have", track: TRACK, rendition: REND, ranges: [[3, 3]], complete: true }]);
});

test("a chunk dropped makes the next announcement a replacement", () => {
  const { c } = core({ n: 4, held: [0, 1, 2] });
  c.chunkDropped(1);
  assert.deepEqual(controls(c.tick(1), "have"), [
    { type: "have", track: TRACK, rendition: REND, ranges: [[0, 0], [2, 2]], complete: false, replace: true },
  ]);
});

test("peers answer: dial new candidates, never self, banned, known or cooling ones, at most 5", () => {
  const { c } = core();
  c.banned.add("bad");
  c.cooldown.set("cool", 100);
  const peers = ["me", "bad", "cool", "a", "b", "c", "d", "e", "f"].map((peer_id) => ({ peer_id, chunks: [1], complete: false }));
  const out = c.onControl({ type: "peers", track: TRACK, rendition: REND, peers }, 1);
  assert.deepEqual(out.map((e) => [e.kind, e.peer, e.role]), ["a", "b", "c", "d", "e"].map((p) => ["open", p, "offerer"]));
  assert.equal(c.neighbours.size, 5);
  // full: no want while at five neighbours
  assert.deepEqual(controls(c.tick(4), "want"), []);
});

test("a peers answer for another track is ignored", () => {
  const { c } = core();
  const out = c.onControl({ type: "peers", track: "other", rendition: REND, peers: [{ peer_id: "a", chunks: [] }] }, 1);
  assert.deepEqual(out, []);
});

test("want: again after the interval, backing off while nobody new comes", () => {
  const { c } = core({ settings: { wantInterval: 4, maxWantInterval: 16 } });
  const empty = { type: "peers", track: TRACK, rendition: REND, peers: [] };
  c.onControl(empty, 0.1); // nobody: next in 8 s
  assert.deepEqual(controls(c.tick(8), "want"), []);
  assert.equal(controls(c.tick(8.2), "want").length, 1);
  c.onControl(empty, 8.3); // nobody again: 16 s (the cap)
  assert.deepEqual(controls(c.tick(24.2), "want"), []);
  assert.equal(controls(c.tick(24.4), "want").length, 1);
  // somebody: back to the short interval
  c.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: "a", chunks: [1] }] }, 24.5);
  assert.equal(c.want.interval, 4);
});

test("an unanswered want is given up, and a refused one too", () => {
  const { c } = core({ settings: { wantTimeout: 10 } });
  assert.ok(c.want.outstanding);
  c.tick(11);
  assert.ok(c.want.outstanding); // a new want went out at 11 (the interval had passed)
  c.onControl({ type: "error", error: "rate_limited", detail: "", for: "want" }, 11.1);
  assert.equal(c.want.outstanding, false);
});

test("waitUntil: the scheduler may wait for the tracker and for connections, never beyond", () => {
  const st = { startWait: 2, wantGrace: 1.5, connectTimeout: 5 };
  const c = new P2PCore(st);
  assert.equal(c.waitUntil(0), -Infinity); // no session
  c.startSession({ track: TRACK, rendition: REND, chunks: [0, 1, 2], complete: true, held: [] }, 10);
  assert.equal(c.waitUntil(10), 12); // not connected yet: the start wait
  assert.equal(c.waitUntil(12.5), -Infinity); // over
  c.onControl(welcome(), 12.5); // want sent now
  assert.equal(c.waitUntil(12.6), 14);
  c.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: "a", chunks: [0] }] }, 12.7);
  assert.equal(c.waitUntil(12.8), 17.7); // connecting to "a"
  c.channelOpen("a", 13);
  assert.equal(c.waitUntil(13), 17.7); // open, its HAVE not yet here
  c.onFrame("a", encode({ type: "have", ranges: [[0, 2]] }), 13.1);
  assert.equal(c.waitUntil(13.1), -Infinity);
  // no wait at all when the tracker answered nobody
  const d = new P2PCore(st);
  d.onControl(welcome(), 0);
  d.startSession({ track: TRACK, rendition: REND, chunks: [0, 1], complete: true, held: [] }, 0);
  d.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [] }, 0.01);
  assert.equal(d.waitUntil(0.02), -Infinity);
  // nor when nothing is missing
  const { c: e } = core({ n: 2, held: [0, 1] });
  assert.equal(e.waitUntil(0), -Infinity);
});

test("offers: answered while there is room, refused when full or without a session", () => {
  const { c } = core();
  const offer = { sdp: { type: "offer", sdp: "v=0" } };
  const out = c.onControl({ type: "signal", from: "x", data: offer }, 1);
  assert.deepEqual(out, [
    { kind: "open", peer: "x", role: "answerer" },
    { kind: "rtc", peer: "x", data: offer },
  ]);
  // ICE candidates and answers go to the connection of a known peer only
  const cand = { candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", sdpMid: "0" } };
  assert.deepEqual(c.onControl({ type: "signal", from: "x", data: cand }, 1), [{ kind: "rtc", peer: "x", data: cand }]);
  assert.deepEqual(c.onControl({ type: "signal", from: "nobody", data: cand }, 1), []);
  // offers are answered up to maxNeighbours (16), beyond the 5 we dial ourselves:
  // the 6th is accepted, the 17th refused
  for (const p of ["a", "b", "c", "d"]) c.onControl({ type: "signal", from: p, data: offer }, 1);
  assert.equal(c.neighbours.size, 5);
  assert.deepEqual(kinds(c.onControl({ type: "signal", from: "f", data: offer }, 1)), ["open", "rtc"]);
  for (const p of ["g", "h", "i", "j", "k", "l", "m", "n", "o", "q"]) c.onControl({ type: "signal", from: p, data: offer }, 1);
  assert.equal(c.neighbours.size, 16);
  assert.deepEqual(c.onControl({ type: "signal", from: "r", data: offer }, 1), [
    { kind: "control", msg: { type: "signal", to: "r", data: { reject: "full" } } },
  ]);
  c.stopSession(2);
  assert.deepEqual(controls(c.onControl({ type: "signal", from: "g", data: offer }, 3)), [{ type: "signal", to: "g", data: { reject: "full" } }]);
});

test("a banned peer is neither answered nor dialled", () => {
  const { c } = core();
  c.banned.add("bad");
  const out = c.onControl({ type: "signal", from: "bad", data: { sdp: { type: "offer", sdp: "" } } }, 1);
  assert.equal(out.filter((e) => e.kind === "open").length, 0);
});

test("glare: the smaller peer id keeps its offer, the larger answers the other's", () => {
  const offer = { sdp: { type: "offer", sdp: "v=0" } };
  // we are "a" < "b": our offer stands, theirs is ignored
  const { c: a } = core({ id: "a" });
  a.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: "b", chunks: [] }] }, 0);
  assert.deepEqual(a.onControl({ type: "signal", from: "b", data: offer }, 0.1), []);
  assert.equal(a.neighbours.get("b").role, "offerer");
  // we are "c" > "b": drop ours, answer theirs
  const { c: cc } = core({ id: "c" });
  cc.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: "b", chunks: [] }] }, 0);
  const out = cc.onControl({ type: "signal", from: "b", data: offer }, 0.1);
  assert.deepEqual(kinds(out), ["close", "open", "rtc"]);
  assert.equal(cc.neighbours.get("b").role, "answerer");
  assert.equal(cc.cooldown.has("b"), false);
});

test("a second offer from an open neighbour replaces the connection", () => {
  const { c } = core();
  neighbour(c, "p", [1]);
  const out = c.onControl({ type: "signal", from: "p", data: { sdp: { type: "offer", sdp: "" } } }, 1);
  assert.deepEqual(kinds(out), ["peerGone", "close", "open", "rtc"]);
  assert.equal(c.neighbours.get("p").state, "connecting");
});

test("a refusal closes our pending dial and cools that peer down", () => {
  const { c } = core();
  c.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: "p", chunks: [] }] }, 0);
  const out = c.onControl({ type: "signal", from: "p", data: { reject: "full" } }, 0.2);
  assert.deepEqual(kinds(out), ["close"]);
  assert.equal(c.neighbours.size, 0);
  assert.ok(c.cooldown.get("p") > 10);
});

test("a connection that does not open in time is closed and not retried at once", () => {
  const { c } = core({ settings: { connectTimeout: 5, retryCooldown: 30 } });
  const peers = { type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: "p", chunks: [] }] };
  c.onControl(peers, 0);
  assert.deepEqual(kinds(c.tick(4)).filter((k) => k === "close"), []);
  assert.deepEqual(kinds(c.tick(5.1)).filter((k) => k === "close"), ["close"]);
  assert.deepEqual(c.onControl(peers, 6), []); // cooling down
  assert.deepEqual(kinds(c.onControl(peers, 40)), ["open"]);
});

test("open channel: each side greets with HAVE; a HAVE is passed to the scheduler, clamped", () => {
  const { c } = core({ n: 5, held: [0, 1, 3] });
  c.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: "p", chunks: [] }] }, 0);
  assert.deepEqual(frames(c.channelOpen("p", 0.3)), [{ type: "have", ranges: [[0, 1], [3, 3]] }]);
  const out = c.onFrame("p", encode({ type: "have", ranges: [[2, 4], [90, 0xffffffff]] }), 0.4);
  assert.deepEqual(out.length, 1);
  assert.equal(out[0].kind, "peerHave");
  const have = out[0].have;
  assert.deepEqual(have.slice(0, 3), [2, 3, 4]);
  assert.ok(have.length < 100, "an absurd range is clamped to the manifest");
  assert.deepEqual(expandRanges([[0, 2], [5, 9]], 7), [0, 1, 2, 5, 6]);
  assert.deepEqual(expandRanges([[5, 9], [0, 6], [1, 2], [8, 8]], 100), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const hostile = Array.from({ length: 4096 }, () => [0, 0xffffffff]);
  assert.equal(expandRanges(hostile, 1000).length, 1000);
});

test("request → pieces → deliver; the bytes are the chunk's", () => {
  const { c } = core();
  neighbour(c, "p", [0, 9]);
  assert.equal(c.request("nobody", 3, 1), null);
  const req = c.request("p", 3, 1);
  assert.deepEqual(frames(req), [{ type: "request", index: 3 }]);
  assert.equal(c.request("p", 3, 1), null); // already asked
  const chunk = new Uint8Array(40000).map((_, i) => i % 251);
  const pieces = splitChunk(3, chunk).map(encode);
  assert.equal(pieces.length, 3);
  assert.deepEqual(c.onFrame("p", pieces[0], 1.1), []);
  assert.deepEqual(c.onFrame("p", pieces[1], 1.1), []);
  const out = c.onFrame("p", pieces[2], 1.2);
  assert.deepEqual(kinds(out), ["deliver"]);
  assert.deepEqual(out[0].data, chunk);
});

test("CHOKE rejects the request", () => {
  const { c } = core();
  neighbour(c, "p", [0, 9]);
  c.request("p", 4, 1);
  assert.deepEqual(c.onFrame("p", encode({ type: "choke", index: 4 }), 1.1), [{ kind: "reject", peer: "p", index: 4, reason: "choked" }]);
  assert.deepEqual(c.onFrame("p", encode({ type: "choke", index: 4 }), 1.1), []);
});

test("cancel: CANCEL is sent and the pieces still on their way are ignored", () => {
  const { c } = core();
  neighbour(c, "p", [0, 9]);
  c.request("p", 5, 1);
  assert.deepEqual(frames(c.cancel("p", 5)), [{ type: "cancel", index: 5 }]);
  assert.deepEqual(c.cancel("p", 5), []);
  assert.equal(c.request("p", 5, 1), null, "not again while its pieces may still come");
  const pieces = splitChunk(5, new Uint8Array(20000)).map(encode);
  for (const f of pieces) assert.deepEqual(c.onFrame("p", f, 1.2), []);
  assert.ok(c.neighbours.has("p"));
  assert.ok(c.request("p", 5, 2), "asked again once the old transfer is over");
});

test("a malformed or unrequested frame bans the sender", () => {
  for (const frame of [new Uint8Array([9, 9]), encode(splitChunk(7, new Uint8Array(10))[0]), new Uint8Array(0)]) {
    const { c } = core();
    neighbour(c, "p", [0, 9]);
    c.request("p", 1, 1);
    const out = c.onFrame("p", frame, 1.1);
    assert.deepEqual(kinds(out), ["peerGone", "reject", "close"]);
    assert.ok(c.banned.has("p"));
  }
});

test("serving: held chunks in pieces, one after the other; CHOKE for what is not held", () => {
  const { c } = core({ n: 4, held: [0, 1] });
  dialledBy(c, "l");
  assert.deepEqual(c.onFrame("l", encode({ type: "request", index: 0 }), 1), [{ kind: "serve", peer: "l", index: 0 }]);
  assert.deepEqual(c.onFrame("l", encode({ type: "request", index: 1 }), 1), []); // queued
  assert.deepEqual(c.onFrame("l", encode({ type: "request", index: 1 }), 1), []); // asked twice
  assert.deepEqual(frames(c.onFrame("l", encode({ type: "request", index: 3 }), 1)), [{ type: "choke", index: 3 }]);
  assert.equal(c.slotsInUse(), 1);
  const data = new Uint8Array(20000).fill(7);
  const out = c.served("l", 0, data, 1.1);
  const sent = frames(out);
  assert.deepEqual(sent.map((f) => [f.type, f.index, f.offset, f.total]), [["piece", 0, 0, 20000], ["piece", 0, 16384, 20000]]);
  assert.deepEqual(out.at(-1), { kind: "serve", peer: "l", index: 1 });
  assert.equal(c.upBytes, 20000);
  const last = c.served("l", 1, new Uint8Array(10), 1.2);
  assert.deepEqual(frames(last).map((f) => f.type), ["piece"]);
  assert.equal(c.slotsInUse(), 0);
});

test("serving: a neighbour cannot queue requests without bound", () => {
  const { c } = core({ n: 40, held: [...Array(40).keys()], settings: { maxQueued: 3 } });
  dialledBy(c, "l");
  const out = [];
  for (let i = 0; i < 6; i++) out.push(...c.onFrame("l", encode({ type: "request", index: i }), 1));
  assert.deepEqual(kinds(out), ["serve", "send", "send"]); // 1 being read, 3 queued, 2 choked
  assert.deepEqual(frames(out).map((f) => [f.type, f.index]), [["choke", 4], ["choke", 5]]);
});

test("serving: a chunk that cannot be read is choked and no longer announced", () => {
  const { c } = core({ n: 4, held: [0, 1] });
  dialledBy(c, "l");
  c.onFrame("l", encode({ type: "request", index: 1 }), 1);
  assert.deepEqual(frames(c.served("l", 1, null, 1.1)), [{ type: "choke", index: 1 }]);
  assert.equal(c.session.held.has(1), false);
});

test("serving: a cancelled request is not sent", () => {
  const { c } = core({ n: 4, held: [0, 1, 2] });
  dialledBy(c, "l");
  c.onFrame("l", encode({ type: "request", index: 0 }), 1);
  c.onFrame("l", encode({ type: "request", index: 1 }), 1);
  c.onFrame("l", encode({ type: "cancel", index: 1 }), 1); // queued one
  c.onFrame("l", encode({ type: "cancel", index: 0 }), 1); // the one being read
  assert.deepEqual(c.served("l", 0, new Uint8Array(10), 1.1), []);
  assert.equal(c.slotsInUse(), 0);
});

test("upload slots: a listener beyond the slots in use gets CHOKE; slots are reported", () => {
  const { c } = core({ n: 4, held: [0, 1, 2, 3], limits: { upload_slots: 2 } });
  for (const p of ["l1", "l2", "l3"]) dialledBy(c, p);
  assert.deepEqual(kinds(c.onFrame("l1", encode({ type: "request", index: 0 }), 1)), ["serve"]);
  assert.deepEqual(kinds(c.onFrame("l2", encode({ type: "request", index: 0 }), 1)), ["serve"]);
  assert.deepEqual(frames(c.onFrame("l3", encode({ type: "request", index: 0 }), 1)), [{ type: "choke", index: 0 }]);
  // a listener already served may queue more
  assert.deepEqual(c.onFrame("l1", encode({ type: "request", index: 1 }), 1), []);
  assert.deepEqual(controls(c.tick(1.1), "slots"), [{ type: "slots", in_use: 2 }]);
  c.served("l2", 0, new Uint8Array(5), 1.2);
  assert.deepEqual(controls(c.tick(1.3), "slots"), []); // at most one report a second, unless full
  assert.deepEqual(controls(c.tick(2.2), "slots"), [{ type: "slots", in_use: 1 }]);
  assert.deepEqual(kinds(c.onFrame("l3", encode({ type: "request", index: 2 }), 2.3)), ["serve"]);
});

test("TEST ONLY corrupt: the chunk served differs by one byte", () => {
  const { c } = core({ n: 2, held: [0, 1], settings: { corrupt: true } });
  dialledBy(c, "l");
  c.onFrame("l", encode({ type: "request", index: 0 }), 1);
  const data = new Uint8Array(100).fill(1);
  const [piece] = frames(c.served("l", 0, data, 1.1));
  assert.equal(piece.data.filter((b, i) => b !== data[i]).length, 1);
  assert.deepEqual(data, new Uint8Array(100).fill(1), "the held copy is untouched");
  assert.deepEqual(corruptCopy(new Uint8Array([0, 0, 0]))[1], 0xff);
});

test("a verify failure drops and bans the peer for the session and is reported", () => {
  const { c } = core();
  neighbour(c, "p", [0, 9]);
  c.request("p", 6, 1);
  c.request("p", 7, 1);
  const out = c.verifyFailed("p", 1.5);
  assert.deepEqual(out, [
    { kind: "peerGone", peer: "p" },
    { kind: "reject", peer: "p", index: 6, reason: "closed" },
    { kind: "reject", peer: "p", index: 7, reason: "closed" },
    { kind: "close", peer: "p" },
  ]);
  c.verifyFailed("p", 1.6); // its other chunk was bad too: counted, banned once
  assert.equal(c.verifyFailures, 2);
  assert.deepEqual(c.info().banned, ["p"]);
  const stats = controls(c.tick(2.7, { httpBytes: 0, peerBytes: 0, stalls: 0 }), "stats");
  assert.equal(stats.length, 1);
  assert.equal(stats[0].verify_failures, 2);
  assert.deepEqual(c.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [{ peer_id: "p", chunks: [] }] }, 3), []);
});

test("stats: counts since the last report, integers, every interval; a refused one is added back", () => {
  const { c } = core({ n: 2, held: [0, 1] }); // a seeder: no wants in the way
  c.upBytes = 100;
  let out = c.tick(0.5, { httpBytes: 1000.7, peerBytes: 0, stalls: 0 });
  assert.deepEqual(controls(out, "stats"), [
    { type: "stats", p2p_down_bytes: 0, p2p_up_bytes: 100, http_down_bytes: 1000, stalls: 0, startup_seconds: null, verify_failures: 0 },
  ]);
  c.noteStartup(0.42);
  out = c.tick(1, { httpBytes: 1500, peerBytes: 300, stalls: 1 });
  assert.deepEqual(controls(out, "stats"), [], "urgent reports wait a second too");
  out = c.tick(1.6, { httpBytes: 1500, peerBytes: 300, stalls: 1 });
  assert.deepEqual(controls(out, "stats"), [
    { type: "stats", p2p_down_bytes: 300, p2p_up_bytes: 0, http_down_bytes: 500, stalls: 1, startup_seconds: 0.42, verify_failures: 0 },
  ]);
  c.onControl({ type: "error", error: "rate_limited", detail: "", for: "stats" }, 1.7);
  out = c.tick(6.7, { httpBytes: 1600, peerBytes: 300, stalls: 1 });
  assert.deepEqual(controls(out, "stats"), [
    { type: "stats", p2p_down_bytes: 300, p2p_up_bytes: 0, http_down_bytes: 600, stalls: 1, startup_seconds: 0.42, verify_failures: 0 },
  ]);
  // nothing new: no report, but a ping after a minute of silence
  assert.deepEqual(controls(c.tick(12, { httpBytes: 1600, peerBytes: 300, stalls: 1 })), []);
  assert.deepEqual(controls(c.tick(70, { httpBytes: 1600, peerBytes: 300, stalls: 1 })), [{ type: "ping" }]);
  // the page goes away: whatever is left goes out now
  assert.deepEqual(controls(c.flushStats(70.1, { httpBytes: 1700, peerBytes: 300, stalls: 1 }), "stats")[0].http_down_bytes, 100);
});

test("nothing is sent on a closed control socket; a new welcome announces everything again", () => {
  const { c } = core({ n: 3, held: [0] });
  c.controlClosed();
  c.chunkAdded(1, 1);
  assert.deepEqual(controls(c.tick(10, { httpBytes: 5 })), []);
  const out = c.onControl(welcome("me2"), 11);
  assert.deepEqual(controls(out), [
    { type: "have", track: TRACK, rendition: REND, ranges: [[0, 1]], complete: false, replace: true },
    { type: "want", track: TRACK, rendition: REND, chunks: [2] },
  ]);
});

test("stopSession: leave, every neighbour closed and its requests rejected", () => {
  const { c } = core();
  neighbour(c, "p", [0, 9]);
  c.request("p", 8, 1);
  const out = c.stopSession(2);
  assert.deepEqual(kinds(out), ["peerGone", "reject", "close", "control"]);
  assert.deepEqual(controls(out), [{ type: "leave", track: TRACK, rendition: REND }]);
  assert.equal(c.session, null);
  assert.equal(c.waitUntil(2), -Infinity);
});

test("a live manifest that grows re-reads the neighbours' announcements", () => {
  const { c } = core({ n: 2, complete: false });
  neighbour(c, "p", [0, 200]);
  const out = c.updateManifest({ chunks: [0, 1, 2, 3, 4, 5], complete: true }, 1);
  assert.equal(out[0].kind, "peerHave");
  assert.ok(out[0].have.includes(5));
});

// ---- two cores through a fake tracker and fake channels -------------------------

/**
 * A tiny in-memory world: a tracker that introduces everyone to everyone,
 * signaling relayed verbatim, and DataChannels that open as soon as both
 * sides have exchanged an offer and an answer.
 */
class World {
  constructor(settings = {}) {
    this.peers = new Map(); // id -> {core, data: Map(index -> bytes), delivered: []}
    this.now = 0;
    this.settings = settings;
    this.sent = []; // [peer id, control message, now] in order
  }
  add(id, held, n) {
    const core = new P2PCore(this.settings);
    const data = new Map(held.map((i) => [i, new Uint8Array(3000 + i).fill(i)]));
    const p = { id, core, data, delivered: [], links: new Map() };
    this.peers.set(id, p);
    this.run(p, core.startSession({ track: TRACK, rendition: REND, chunks: [...Array(n).keys()], complete: true, held }, this.now));
    this.run(p, core.onControl(welcome(id), this.now));
    return p;
  }
  run(p, effects) {
    for (const e of effects) {
      const other = this.peers.get(e.peer);
      switch (e.kind) {
        case "control":
          this.control(p, e.msg);
          break;
        case "open":
          p.links.set(e.peer, { role: e.role, offered: false });
          if (e.role === "offerer") this.deliver(other, { type: "signal", from: p.id, data: { sdp: { type: "offer", sdp: "o" } } });
          break;
        case "rtc":
          if (e.data.sdp?.type === "offer") this.deliver(other, { type: "signal", from: p.id, data: { sdp: { type: "answer", sdp: "a" } } });
          if (e.data.sdp?.type === "answer") {
            // both ends open before either greets the other
            const greetings = [p.core.channelOpen(e.peer, this.now), other.core.channelOpen(p.id, this.now)];
            this.run(p, greetings[0]);
            this.run(other, greetings[1]);
          }
          break;
        case "send":
          this.run(other, other.core.onFrame(p.id, e.frame, this.now));
          break;
        case "serve":
          this.run(p, p.core.served(e.peer, e.index, p.data.get(e.index) ?? null, this.now));
          break;
        case "deliver":
          p.delivered.push([e.peer, e.index, e.data]);
          break;
        default:
          break;
      }
    }
  }
  deliver(p, msg) {
    this.run(p, p.core.onControl(msg, this.now));
  }
  control(p, msg) {
    this.sent.push([p.id, msg, this.now]);
    const holds = (q) => q !== undefined && q !== p && msg.chunks.some((i) => q.core.session?.held.has(i));
    if (msg.type === "want") {
      const peers = [...this.peers.values()].filter(holds).map((q) => ({ peer_id: q.id, chunks: [], complete: false }));
      this.deliver(p, { type: "peers", track: msg.track, rendition: msg.rendition, peers });
    }
    if (msg.type === "introduce") {
      const q = this.peers.get(msg.peer_id);
      const answer = { type: "peers", track: msg.track, rendition: msg.rendition, for: "introduce", peer_id: msg.peer_id };
      if (holds(q)) this.deliver(p, { ...answer, peers: [{ peer_id: q.id, chunks: [], complete: false }] });
      else this.deliver(p, { ...answer, peers: [], reason: "not_a_holder" });
    }
  }
  /** Every core's tick every `step` seconds until `until`. */
  runUntil(until, step = 0.5) {
    while (this.now + step <= until) {
      this.now += step;
      for (const p of this.peers.values()) this.run(p, p.core.tick(this.now));
    }
  }
  /** When each peer sent a control message of `type`: {peer id: [now, ...]}. */
  times(type) {
    const at = {};
    for (const [id, msg, now] of this.sent) if (msg.type === type) (at[id] ??= []).push(now);
    return at;
  }
}

test("two cores: the newcomer dials the seeder, learns its holding and gets exact chunks", () => {
  const w = new World();
  const seeder = w.add("s", [0, 1, 2, 3], 4);
  const leecher = w.add("l", [], 4);
  assert.equal(leecher.core.neighbours.get("s").state, "open");
  assert.equal(seeder.core.neighbours.get("l").role, "answerer");
  assert.equal(leecher.core.info().neighbours[0].have, 4);
  w.run(leecher, leecher.core.request("s", 2, 1));
  w.run(leecher, leecher.core.request("s", 3, 1));
  assert.deepEqual(leecher.delivered.map(([p, i]) => [p, i]), [["s", 2], ["s", 3]]);
  assert.deepEqual(leecher.delivered[0][2], seeder.data.get(2));
  assert.equal(seeder.core.upBytes, 3002 + 3003);
  // the leecher announces what it got, and the seeder learns it on the next tick
  leecher.core.chunkAdded(2, 2);
  w.run(leecher, leecher.core.tick(2));
  assert.equal(seeder.core.info().neighbours[0].have, 1);
});

test("overlay: a small swarm that knows itself leaves the tracker alone; it is still asked at maxWantInterval", () => {
  // four listeners, fewer than wantNeighbours: each one keeps missing chunks
  // and places, the case where a tracker-only peer keeps wanting
  const wants = {};
  for (const overlay of [false, true]) {
    const w = new World({ overlay });
    for (const [i, id] of ["a", "b", "c", "d"].entries()) w.add(id, [i], 10);
    for (const p of w.peers.values()) assert.equal(p.core.neighbours.size, 3);
    w.runUntil(120);
    wants[overlay] = w.times("want");
    if (overlay) assert.deepEqual(w.times("introduce"), {}); // everybody known is a neighbour already
  }
  // tracker only: at the start, then after every back-off step (1.5, 3, ... 30 s)
  assert.deepEqual(wants.false.d, [0, 1.5, 4.5, 10.5, 22.5, 46.5, 76.5, 106.5]);
  // the overlay: each lookup round is answered by every neighbour naming nobody
  // new, so the want backs off instead; it goes out once the interval is at
  // its cap (30 s), and then every 30 s, as a tracker-only peer's does
  assert.deepEqual(wants.true.d, [0, 76.5, 106.5]);
  for (const id of ["a", "b", "c"]) assert.equal(wants.true[id].length, 3, JSON.stringify(wants.true));
});

test("overlay: a session's start with known candidates waits for their introductions, not beside them", () => {
  const { c } = core({ n: 4, held: [0] });
  neighbour(c, "p", [0, 1, 2, 3]);
  c.lookup({ track: "next", rendition: REND }, 1);
  c.onFrame("p", encode({ type: "holders", track: "next", rendition: REND, peers: ["x", "y"] }), 1.1);
  const start = c.startSession({ track: "next", rendition: REND, chunks: [0, 1, 2], complete: true, held: [] }, 2);
  assert.deepEqual(controls(start, "introduce").map((m) => m.peer_id), ["x", "y"]);
  assert.deepEqual(controls(start, "want"), []);
  const answer = { type: "peers", track: "next", rendition: REND, for: "introduce" };
  // x is introduced (dialled): the round found somebody, no want
  assert.deepEqual(kinds(c.onControl({ ...answer, peer_id: "x", peers: [{ peer_id: "x", chunks: [0] }] }, 2.1)), ["open"]);
  assert.deepEqual(controls(c.onControl({ ...answer, peer_id: "y", peers: [], reason: "busy" }, 2.2)), []);
  assert.deepEqual(controls(c.tick(2.6), "want"), []);
  // the same start, every candidate refused: the want goes out with the last answer
  const { c: d } = core({ n: 4, held: [0] });
  neighbour(d, "p", [0, 1, 2, 3]);
  d.lookup({ track: "next", rendition: REND }, 1);
  d.onFrame("p", encode({ type: "holders", track: "next", rendition: REND, peers: ["x"] }), 1.1);
  assert.deepEqual(controls(d.startSession({ track: "next", rendition: REND, chunks: [0, 1, 2], complete: true, held: [] }, 2), "want"), []);
  assert.equal(controls(d.onControl({ ...answer, peer_id: "x", peers: [], reason: "not_a_holder" }, 2.05), "want").length, 1);
});

test("overlay: an exhausted round backs off only when every neighbour asked has answered", () => {
  const { c } = core({ settings: { wantInterval: 2 } });
  neighbour(c, "p", [0, 1]);
  neighbour(c, "q", [2, 3]);
  assert.deepEqual(frames(c.tick(2)).map((f) => f.type), ["lookup", "lookup"]);
  // p answers, q stays silent: after lookupWait the tracker is asked
  c.onFrame("p", encode({ type: "holders", track: TRACK, rendition: REND, peers: ["q"] }), 2.1);
  assert.equal(controls(c.tick(2.6), "want").length, 1);
  c.onControl({ type: "peers", track: TRACK, rendition: REND, peers: [] }, 2.7); // nobody new: 4 s
  // both answer the next round (5 s later) naming nobody new: no want, the interval doubles
  const round = c.tick(7.1);
  assert.deepEqual(frames(round).map((f) => f.type), ["lookup", "lookup"]);
  c.onFrame("p", encode({ type: "holders", track: TRACK, rendition: REND, peers: ["q"] }), 7.2);
  assert.deepEqual(c.onFrame("q", encode({ type: "holders", track: TRACK, rendition: REND, peers: ["p"] }), 7.3), []);
  assert.equal(c.want.interval, 8);
  assert.equal(c.want.nextAt, 15.3);
});
