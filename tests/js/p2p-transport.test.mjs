// The P2P I/O shell (client/transport.js) over fake WebSocket and
// RTCPeerConnection objects: the effects of the core reach the right sockets,
// and socket events reach the core and the player. node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import { decode, encode, splitChunk, channelLabel } from "../../client/protocol.js";
import { prefetchTrack } from "../../client/player.js";
import { CLOSE_GRACE_SECONDS, ControlSocket, P2PAgent } from "../../client/transport.js";
import { FakePlayer, FakeWS } from "./helpers/fakes.mjs";

const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

// A DataChannel. `hold = true`: frames stay in the browser's buffer
// (bufferedAmount) until `drainBuffer()` puts them on the wire (`sent`), and
// closing the connection loses them, as in Chromium. close() is a closing
// procedure: the close event comes a little later, once the buffer left.
class FakeDC {
  constructor(label) {
    this.label = label;
    this.readyState = "connecting";
    this.bufferedAmount = 0;
    this.bufferedAmountLowThreshold = 0;
    this.sent = [];
    this.hold = false;
    this.buffer = [];
  }
  send(frame) {
    if (this.readyState !== "open") throw new DOMException("not open", "InvalidStateError");
    if (!this.hold) {
      this.sent.push(decode(frame));
      return;
    }
    this.buffer.push(frame);
    this.bufferedAmount += frame.byteLength;
  }
  drainBuffer() {
    for (const frame of this.buffer.splice(0)) this.sent.push(decode(frame));
    const was = this.bufferedAmount;
    this.bufferedAmount = 0;
    if (was > this.bufferedAmountLowThreshold) this.onbufferedamountlow?.();
  }
  close() {
    if (this.readyState === "closed" || this.readyState === "closing") return;
    this.readyState = "closing";
    setTimeout(() => {
      if (this.readyState === "closed") return;
      this.drainBuffer();
      this.readyState = "closed";
      this.onclose?.();
    }, 0);
  }
  lose() {
    // the connection closed under it
    this.buffer = [];
    this.bufferedAmount = 0;
    this.readyState = "closed";
  }
  open() {
    this.readyState = "open";
    this.onopen?.();
  }
  receive(msg) {
    const bytes = encode(msg);
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
}

class FakeRTC {
  static all = [];
  constructor(config) {
    this.config = config;
    this.connectionState = "new";
    this.localDescription = null;
    this.remote = null;
    this.candidates = [];
    FakeRTC.all.push(this);
  }
  createDataChannel(label) {
    this.dc = new FakeDC(label);
    return this.dc;
  }
  async createOffer() {
    return { type: "offer", sdp: "offer-sdp" };
  }
  async createAnswer() {
    return { type: "answer", sdp: "answer-sdp" };
  }
  async setLocalDescription(d) {
    this.localDescription = { ...d, toJSON: () => ({ type: d.type, sdp: d.sdp }) };
  }
  async setRemoteDescription(d) {
    this.remote = d;
  }
  async addIceCandidate(c) {
    this.candidates.push(c);
  }
  close() {
    this.connectionState = "closed";
    this.dc?.lose();
  }
}

function agentWithSeeder(options = {}) {
  FakeWS.all = [];
  FakeRTC.all = [];
  const player = new FakePlayer();
  const agent = new P2PAgent(player, { url: "ws://gw/v1/ws", tickSeconds: 3600, WebSocketImpl: FakeWS, RTCPeerConnectionImpl: FakeRTC, ...options });
  return { player, agent };
}

test("the agent plugs into the player, opens the socket with the first session, announces and asks", async () => {
  const { player, agent } = agentWithSeeder();
  assert.equal(player.peers, agent);
  assert.equal(FakeWS.all.length, 0, "no socket before a track is loaded");
  player.start(4);
  assert.equal(FakeWS.all.length, 1);
  const ws = FakeWS.all[0];
  assert.equal(ws.url, "ws://gw/v1/ws");
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [{ urls: "stun:x" }], limits: { upload_slots: 4 } });
  assert.deepEqual(ws.take().map((m) => m.type), ["have", "want"]);
  // the scheduler was told to wait for the answer
  assert.ok(player.scheduler.peerWaitUntil > performance.now() / 1000);
  ws.receive({ type: "peers", track: "trk", rendition: "r1", peers: [] });
  assert.equal(player.scheduler.peerWaitUntil, -Infinity);
  assert.ok(player.kicks >= 1, "the player is woken when the wait ends");
  agent.destroy();
  assert.equal(player.peers, null);
});

test("dial, signal, open, fetch a chunk, cancel one, ban on a bad chunk", async () => {
  const { player, agent } = agentWithSeeder();
  player.start(10);
  const ws = FakeWS.all[0];
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [{ urls: "stun:x" }], limits: {} });
  ws.take();
  ws.receive({ type: "peers", track: "trk", rendition: "r1", peers: [{ peer_id: "s", chunks: [5], complete: true }] });
  assert.equal(FakeRTC.all.length, 1);
  const pc = FakeRTC.all[0];
  assert.deepEqual(pc.config, { iceServers: [{ urls: "stun:x" }] });
  assert.equal(pc.dc.label, channelLabel("trk", "r1"));
  await flush();
  assert.deepEqual(ws.take("signal"), [{ type: "signal", to: "s", data: { sdp: { type: "offer", sdp: "offer-sdp" } } }]);
  // a candidate before the answer waits for it
  ws.receive({ type: "signal", from: "s", data: { candidate: { candidate: "c1", sdpMid: "0" } } });
  ws.receive({ type: "signal", from: "s", data: { sdp: { type: "answer", sdp: "answer-sdp" } } });
  await flush();
  assert.deepEqual(pc.remote, { type: "answer", sdp: "answer-sdp" });
  assert.deepEqual(pc.candidates, [{ candidate: "c1", sdpMid: "0" }]);
  // the channel opens: HAVE both ways; the scheduler learns the seeder's chunks
  pc.dc.open();
  assert.deepEqual(pc.dc.sent, [{ type: "have", ranges: [] }]);
  pc.dc.receive({ type: "have", ranges: [[0, 9]] });
  assert.deepEqual([...player.scheduler.peers.get("s").have].length, 10);

  // fetch: REQUEST out, PIECEs in, the chunk's bytes back as an ArrayBuffer
  pc.dc.sent = [];
  const chunk = new Uint8Array(20000).map((_, i) => i & 0xff);
  const got = agent.fetch("s", 5);
  assert.deepEqual(pc.dc.sent, [{ type: "request", index: 5 }]);
  for (const piece of splitChunk(5, chunk)) pc.dc.receive(piece);
  const data = await got;
  assert.ok(data instanceof ArrayBuffer);
  assert.deepEqual(new Uint8Array(data), chunk);

  // abort: CANCEL out, AbortError back
  const controller = new AbortController();
  const aborted = agent.fetch("s", 6, { signal: controller.signal });
  controller.abort();
  await assert.rejects(aborted, { name: "AbortError" });
  assert.deepEqual(pc.dc.sent.at(-1), { type: "cancel", index: 6 });

  // a chunk that failed its hash: the peer is closed, forgotten by the scheduler, banned
  const pending = agent.fetch("s", 7);
  player.emit("badchunk", { index: 5, peer: "s" });
  await assert.rejects(pending, /closed/);
  await flush(); // the channel's close event
  assert.equal(pc.connectionState, "closed");
  assert.equal(player.scheduler.peers.has("s"), false);
  assert.deepEqual(agent.info().banned, ["s"]);
  await assert.rejects(agent.fetch("s", 8), /cannot take a request/);
  agent.destroy();
});

test("answer an offer; the channel with another label is refused", async () => {
  const { player, agent } = agentWithSeeder();
  player.start(4);
  const ws = FakeWS.all[0];
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: {} });
  ws.take();
  ws.receive({ type: "signal", from: "l", data: { sdp: { type: "offer", sdp: "o" } } });
  await flush();
  const pc = FakeRTC.all[0];
  assert.deepEqual(pc.remote, { type: "offer", sdp: "o" });
  assert.deepEqual(ws.take("signal"), [{ type: "signal", to: "l", data: { sdp: { type: "answer", sdp: "answer-sdp" } } }]);
  const wrong = new FakeDC("ztream/1/other/r1");
  pc.ondatachannel({ channel: wrong });
  await flush();
  assert.equal(wrong.readyState, "closed");
  assert.equal(pc.connectionState, "closed");
  assert.equal(agent.info().neighbours.length, 0);
  agent.destroy();
});

test("serving: a request is answered from the chunks the player obtained", async () => {
  const { player, agent } = agentWithSeeder();
  player.start(4);
  const ws = FakeWS.all[0];
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: {} });
  ws.take();
  const bytes = new Uint8Array(3000).fill(9);
  player.emit("chunk", { index: 2, source: "server", peer: null, bytes: 3000, data: bytes.buffer });
  agent.tick();
  assert.deepEqual(ws.take("have"), [{ type: "have", track: "trk", rendition: "r1", ranges: [[2, 2]], complete: false }]);
  ws.receive({ type: "signal", from: "l", data: { sdp: { type: "offer", sdp: "o" } } });
  await flush();
  const pc = FakeRTC.all[0];
  const dc = new FakeDC(channelLabel("trk", "r1"));
  pc.ondatachannel({ channel: dc });
  dc.open();
  assert.deepEqual(dc.sent, [{ type: "have", ranges: [[2, 2]] }]);
  dc.receive({ type: "have", ranges: [] });
  dc.receive({ type: "request", index: 2 });
  await flush();
  const pieces = dc.sent.filter((f) => f.type === "piece");
  assert.equal(pieces.length, 1);
  assert.deepEqual(pieces[0].data, bytes);
  dc.receive({ type: "request", index: 3 });
  await flush();
  assert.deepEqual(dc.sent.at(-1), { type: "choke", index: 3 });
  // stats carry the bytes sent
  player.stats.httpBytes = 3000;
  agent.tick();
  const [stats] = ws.take("stats");
  assert.equal(stats.p2p_up_bytes, 3000);
  assert.equal(stats.http_down_bytes, 3000);
  agent.destroy();
});

/** An agent on trk/r1 whose neighbour "s" is open (we dialled it); the peer id is "me". */
async function agentWithNeighbour(options = {}) {
  const { player, agent } = agentWithSeeder(options);
  player.start(10);
  const ws = FakeWS.all[0];
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: {} });
  ws.receive({ type: "peers", track: "trk", rendition: "r1", peers: [{ peer_id: "s", chunks: [5], complete: true }] });
  await flush();
  const pc = FakeRTC.all[0];
  ws.receive({ type: "signal", from: "s", data: { sdp: { type: "answer", sdp: "answer-sdp" } } });
  await flush();
  pc.dc.open();
  pc.dc.receive({ type: "have", ranges: [[0, 9]] });
  pc.dc.sent = [];
  ws.take();
  return { player, agent, ws, pc, dc: pc.dc };
}

function nextTrack(player, trackId = "trk2", rendition = "r1") {
  const chunks = [...Array(4).keys()].map((index) => ({ index, start: index * 2, duration: 2, sha256: "x" }));
  player.emit("session", { trackId, manifest: { id: trackId, rendition, complete: true, chunks } });
}

const notice = { type: "holders", track: "trk2", rendition: "r1", peers: ["me"] };

test("another track: the departure notice reaches the neighbour before the link closes", async () => {
  const { player, agent, pc, dc } = await agentWithNeighbour();
  const link = agent.links.get("s");
  dc.hold = true; // what is sent stays in the browser's buffer for now
  nextTrack(player);
  assert.equal(agent.links.has("s"), false, "the agent forgets the link at once");
  assert.equal(pc.connectionState, "new", "not closed while the notice is still buffered");
  assert.equal(dc.readyState, "open");
  link.send(encode({ type: "have", ranges: [] }));
  assert.equal(dc.buffer.length, 1, "nothing new is queued once closing");
  dc.receive({ type: "have", ranges: [[0, 3]] }); // ignored, no error
  dc.drainBuffer();
  assert.deepEqual(dc.sent, [notice]);
  assert.equal(dc.readyState, "closing", "the channel closes once its buffer is empty");
  await flush();
  assert.equal(pc.connectionState, "closed", "the connection closes once the channel has");
  agent.destroy();
});

test("the player's own order (unload {next}, then the next session): the neighbours still get the notice", async () => {
  const { player, agent, pc, dc } = await agentWithNeighbour();
  player.emit("unload", { trackId: "trk", next: "trk2" }); // PlayerCore.load of trk2
  assert.equal(agent.links.has("s"), true, "kept until the next session starts");
  dc.receive({ type: "request", index: 0 }); // still served meanwhile: not held, so choked
  await flush();
  assert.deepEqual(dc.sent, [{ type: "choke", index: 0 }]);
  nextTrack(player);
  assert.deepEqual(dc.sent.at(-1), notice);
  await flush();
  assert.equal(pc.connectionState, "closed");
  agent.destroy();
});

test("unload without a next session: the session stops after the load wait; a plain unload stops it at once", async () => {
  const { player, agent, ws, pc } = await agentWithNeighbour({ loadWaitSeconds: 0.05 });
  player.emit("unload", { trackId: "trk", next: "trk2" });
  assert.equal(agent.links.has("s"), true);
  await new Promise((resolve) => setTimeout(resolve, 80));
  assert.equal(agent.links.has("s"), false, "no session came: stopped");
  assert.deepEqual(ws.take("leave"), [{ type: "leave", track: "trk", rendition: "r1" }]);
  await flush();
  assert.equal(pc.connectionState, "closed");
  assert.equal(agent.info().track, null);
  agent.destroy();

  const plain = await agentWithNeighbour();
  plain.player.emit("unload", { trackId: "trk", next: null });
  assert.equal(plain.agent.links.has("s"), false);
  assert.deepEqual(plain.ws.take("leave"), [{ type: "leave", track: "trk", rendition: "r1" }]);
  plain.agent.destroy();
});

test("closing: frames the channel had no room for yet are delivered too, in order", async () => {
  const { player, agent, pc, dc } = await agentWithNeighbour();
  dc.hold = true;
  dc.bufferedAmount = 2 * 1024 * 1024; // above the high-water mark: the notice waits in the link's queue
  nextTrack(player);
  assert.equal(dc.buffer.length, 0);
  dc.drainBuffer(); // room again: the notice goes to the channel
  assert.equal(dc.buffer.length, 1);
  assert.equal(dc.readyState, "open");
  dc.drainBuffer();
  assert.deepEqual(dc.sent, [notice]);
  await flush();
  assert.equal(pc.connectionState, "closed");
  agent.destroy();
});

test("closing: a channel that never drains is closed within the grace", async () => {
  const { player, agent, pc, dc } = await agentWithNeighbour();
  dc.hold = true;
  nextTrack(player);
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(pc.connectionState, "new");
  await new Promise((resolve) => setTimeout(resolve, CLOSE_GRACE_SECONDS * 1000));
  assert.equal(pc.connectionState, "closed");
  assert.deepEqual(dc.sent, [], "a dead channel: lost, but not kept open");
  agent.destroy();
});

test("leaving the page closes at once (timers may not run); so does the other side closing the channel", async () => {
  const { player, agent, pc, dc } = await agentWithNeighbour();
  dc.hold = true;
  agent.links.get("s").send(encode({ type: "have", ranges: [] }));
  agent.leave();
  assert.equal(pc.connectionState, "closed");
  assert.equal(agent.info().neighbours.length, 0);
  agent.destroy();

  const other = await agentWithNeighbour();
  other.dc.hold = true;
  nextTrack(other.player);
  assert.equal(other.pc.connectionState, "new");
  other.dc.readyState = "closed";
  other.dc.onclose();
  assert.equal(other.pc.connectionState, "closed");
  other.agent.destroy();
});

test("lookupAhead asks the open neighbours about the next track; the next session starts from their answer", async () => {
  const { player, agent, ws, dc } = await agentWithNeighbour();
  assert.equal(agent.lookupAhead("trk2", "r2"), 1);
  assert.deepEqual(dc.sent, [{ type: "lookup", track: "trk2", rendition: "r2" }]);
  assert.equal(agent.lookupAhead("trk2", "r2"), 0, "asked within lookupInterval: not again");
  dc.receive({ type: "holders", track: "trk2", rendition: "r2", peers: ["x"] });
  assert.equal(agent.core.directory.get("trk2/r2").get("x").source, "s");
  nextTrack(player, "trk2", "r2");
  const [first] = ws.take().filter((m) => m.type === "introduce" || m.type === "want");
  assert.equal(first.type, "introduce");
  assert.equal(first.peer_id, "x");
  agent.destroy();
  assert.equal(agent.lookupAhead("trk3", "r1"), 0);
});

test("prefetchTrack names the next track's rendition (what lookupAhead needs) before it fetches chunks; from the cache too", async () => {
  const manifest = { id: "t2", rendition: "r9", complete: true, chunks: [0, 1, 2].map((index) => ({ index, start: index * 2, duration: 2 })) };
  const fetched = [];
  const seen = [];
  const fetchImpl = async (url) => {
    fetched.push(url);
    if (url.endsWith("/manifest")) return new Response(JSON.stringify(manifest));
    if (url.endsWith("/t2")) return new Response(JSON.stringify({ id: "t2" }));
    return new Response(new Uint8Array(4));
  };
  const onManifest = (track, m) => seen.push([track, m.rendition, fetched.length]);
  assert.equal(await prefetchTrack("http://gw/v1/tracks/t2", { fetchImpl, onManifest }), true);
  assert.deepEqual(seen, [["t2", "r9", 2]], "after the track and its manifest, before init and chunks");
  assert.ok(fetched.length > 2);

  const held = new Set(["init", 0, 1]);
  const cache = { getManifest: async () => ({ manifest }), has: (track, r, i) => r === "r9" && held.has(i) };
  seen.length = 0;
  fetched.length = 0;
  assert.equal(await prefetchTrack("http://gw/v1/tracks/t2", { cache, fetchImpl, onManifest }), true);
  assert.deepEqual(seen, [["t2", "r9", 0]], "all in the cache: told from it, nothing fetched");
  // a failing callback does not fail the prefetch
  assert.equal(await prefetchTrack("http://gw/v1/tracks/t2", { cache, fetchImpl, onManifest: () => { throw new Error("x"); } }), true);
});

test("ControlSocket reconnects with back-off after a drop", async () => {
  FakeWS.all = [];
  let opened = 0;
  const socket = new ControlSocket("ws://gw/v1/ws", { WebSocketImpl: FakeWS, minDelay: 0.001, maxDelay: 0.004, onOpen: () => (opened += 1) });
  socket.start();
  FakeWS.all[0].open();
  assert.equal(opened, 1);
  assert.equal(socket.send({ type: "ping" }), true);
  FakeWS.all[0].drop();
  assert.equal(socket.send({ type: "ping" }), false);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(FakeWS.all.length, 2);
  socket.close();
  FakeWS.all[1].drop();
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(FakeWS.all.length, 2, "no reconnect once closed");
});

// A browser may dispatch a neighbour's first frames before the channel's
// `open` event (the channel is open by then). The seeder sends its HAVE once,
// as its first frame: dropped, the leecher would never ask it for anything.
async function dialled() {
  const { player, agent } = agentWithSeeder();
  player.start(10);
  const ws = FakeWS.all[0];
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: {} });
  ws.receive({ type: "peers", track: "trk", rendition: "r1", peers: [{ peer_id: "s", chunks: [5], complete: true }] });
  const pc = FakeRTC.all[0];
  await flush();
  ws.receive({ type: "signal", from: "s", data: { sdp: { type: "answer", sdp: "answer-sdp" } } });
  await flush();
  return { player, agent, pc };
}

test("the neighbour's HAVE dispatched before the open event is kept, and the neighbour is asked", async () => {
  const { player, agent, pc } = await dialled();
  pc.dc.readyState = "open"; // open, its open event not dispatched yet
  pc.dc.receive({ type: "have", ranges: [[0, 9]] });
  assert.equal(player.scheduler.peers.get("s")?.have.size, 10, "the seeder's HAVE was dropped");
  assert.deepEqual(pc.dc.sent, [{ type: "have", ranges: [] }], "ours went out");
  pc.dc.onopen(); // the late open event changes nothing
  assert.deepEqual(pc.dc.sent, [{ type: "have", ranges: [] }]);
  agent.fetch("s", 5).catch(() => {});
  assert.deepEqual(pc.dc.sent.at(-1), { type: "request", index: 5 });
  agent.destroy();
});

test("an answerer's channel handed over open opens the neighbour without an open event", async () => {
  const { player, agent } = agentWithSeeder();
  player.start(10);
  const ws = FakeWS.all[0];
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: {} });
  ws.receive({ type: "peers", track: "trk", rendition: "r1", peers: [] });
  ws.receive({ type: "signal", from: "l", data: { sdp: { type: "offer", sdp: "offer-sdp" } } });
  assert.equal(FakeRTC.all.length, 1);
  const pc = FakeRTC.all[0];
  const dc = new FakeDC(channelLabel("trk", "r1"));
  dc.readyState = "open";
  pc.ondatachannel({ channel: dc });
  assert.deepEqual(dc.sent, [{ type: "have", ranges: [] }]);
  dc.receive({ type: "have", ranges: [[0, 3]] });
  assert.equal(player.scheduler.peers.get("l")?.have.size, 4);
  agent.destroy();
});

test("upload policy: opt-in announces nothing until the listener says yes; off by the operator is kept; the cap comes from the welcome", async () => {
  const { player, agent } = agentWithSeeder();
  player.start(4);
  player.emit("chunk", { index: 0, source: "server", bytes: 3, data: new Uint8Array([1, 2, 3]).buffer });
  const ws = FakeWS.all[0];
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: { upload_kbps: 640 }, upload: "opt-in" });
  assert.deepEqual(ws.take().map((m) => m.type), ["want"], "no have: the listener was not asked yet");
  assert.deepEqual(agent.info().operator, { upload: "opt-in", uploadKbps: 640 });
  assert.equal(agent.info().uploading, false);
  assert.equal(agent.info().uploadKbps, 640);
  // a neighbour that dials us gets an empty HAVE, and CHOKE for what it asks
  ws.receive({ type: "signal", from: "l", data: { sdp: { type: "offer", sdp: "o" } } });
  await flush();
  const pc = FakeRTC.all[0];
  const dc = new FakeDC(channelLabel("trk", "r1"));
  pc.ondatachannel({ channel: dc });
  dc.open();
  assert.deepEqual(dc.sent, [{ type: "have", ranges: [] }]);
  dc.receive({ type: "have", ranges: [] });
  dc.receive({ type: "request", index: 0 });
  assert.deepEqual(dc.sent.at(-1), { type: "choke", index: 0 });
  // the listener says yes: the holding is announced, to the tracker and the neighbour
  agent.setUpload(true);
  assert.deepEqual(ws.take("have"), [{ type: "have", track: "trk", rendition: "r1", ranges: [[0, 0]], complete: false, replace: true }]);
  assert.deepEqual(dc.sent.at(-1), { type: "have", ranges: [[0, 0]] });
  // and stops: withdrawn
  agent.setUpload(false);
  assert.deepEqual(ws.take("have"), [{ type: "have", track: "trk", rendition: "r1", ranges: [], complete: false, replace: true }]);
  agent.destroy();

  // a decider that says no whatever the operator says: a new socket's welcome announces nothing
  const second = agentWithSeeder({ decideUpload: () => false });
  second.player.start(2);
  const ws2 = FakeWS.all[0];
  ws2.open();
  ws2.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: {} });
  assert.deepEqual(ws2.take().map((m) => m.type), ["want"]);
  second.agent.destroy();

  // by default the operator decides: "on" (or nothing said) uploads
  const third = agentWithSeeder();
  third.player.start(2);
  third.player.emit("chunk", { index: 1, source: "server", bytes: 1, data: new Uint8Array([9]).buffer });
  const ws3 = FakeWS.all[0];
  ws3.open();
  ws3.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: {} });
  assert.deepEqual(ws3.take().map((m) => m.type), ["have", "want"]);
  third.agent.destroy();
});
