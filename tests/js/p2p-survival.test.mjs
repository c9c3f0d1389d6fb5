// client/transport.js: connections that survive real networks (ICE grace and
// one restart), connection outcomes in stats, relay-only mode; over fake
// WebSocket and RTCPeerConnection objects. node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import { PeerLink, P2PAgent, selectedCandidateType, selectedPair } from "../../client/transport.js";
import { FakePlayer, FakeWS } from "./helpers/fakes.mjs";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function stats(localType, remoteType) {
  const entries = [
    ["t", { type: "transport", selectedCandidatePairId: "p" }],
    ["p", { type: "candidate-pair", localCandidateId: "l", remoteCandidateId: "r" }],
    ["l", { type: "local-candidate", candidateType: localType }],
    ["r", { type: "remote-candidate", candidateType: remoteType }],
  ];
  return new Map(entries);
}

class FakeRTC {
  static all = [];
  constructor(config) {
    this.config = config;
    this.connectionState = "new";
    this.offers = [];
    this.types = ["srflx", "srflx"];
    FakeRTC.all.push(this);
  }
  createDataChannel(label) {
    this.dc = { label, readyState: "connecting", close() {}, send() {} };
    return this.dc;
  }
  async createOffer(options = {}) {
    this.offers.push(options);
    return { type: "offer", sdp: `offer-${this.offers.length}` };
  }
  async createAnswer() {
    return { type: "answer", sdp: "answer" };
  }
  async setLocalDescription(d) {
    this.localDescription = { ...d, toJSON: () => ({ type: d.type, sdp: d.sdp }) };
  }
  async setRemoteDescription() {}
  async addIceCandidate() {}
  async getStats() {
    return stats(...this.types);
  }
  close() {
    this.connectionState = "closed";
  }
  set(state) {
    this.connectionState = state;
    this.onconnectionstatechange?.();
  }
}

function link(role, extra = {}) {
  const events = { signals: [], closed: 0, connected: [] };
  const l = new PeerLink({
    role, label: "x", iceServers: [], graceSeconds: 0.05, RTCPeerConnectionImpl: FakeRTC,
    onSignal: (d) => events.signals.push(d), onOpen() {}, onFrame() {},
    onClose: () => { events.closed += 1; }, onConnected: (c) => events.connected.push(c), ...extra,
  });
  return { l, pc: l.pc, events };
}

test("the candidate type: relay when either side relays, else the remote side's", async () => {
  const pc = new FakeRTC({});
  for (const [types, want] of [[["host", "host"], "host"], [["srflx", "prflx"], "prflx"], [["relay", "srflx"], "relay"], [["host", "relay"], "relay"]]) {
    pc.types = types;
    assert.equal(await selectedCandidateType(pc), want);
  }
  // Firefox: no transport stats, the pair says it is selected
  pc.getStats = async () => new Map([
    ["p", { type: "candidate-pair", selected: true, localCandidateId: "l", remoteCandidateId: "r" }],
    ["l", { type: "local-candidate", candidateType: "host" }],
    ["r", { type: "remote-candidate", candidateType: "srflx" }],
  ]);
  assert.equal(await selectedCandidateType(pc), "srflx");
});

test("disconnected: a grace period, then one ICE restart by the offerer, then it fails", async () => {
  const { l, pc, events } = link("offerer");
  await sleep(0);
  assert.equal(pc.offers.length, 1);
  pc.set("connected");
  await sleep(0);
  assert.deepEqual(events.connected, ["srflx"]);
  pc.set("disconnected");
  await sleep(20);
  assert.equal(pc.offers.length, 1, "no restart within the grace period");
  assert.equal(events.closed, 0);
  await sleep(60);
  assert.equal(pc.offers.length, 2, "one ICE restart after the grace period");
  assert.deepEqual(pc.offers[1], { iceRestart: true });
  assert.equal(events.signals.at(-1).sdp.sdp, "offer-2", "the restart offer is signalled");
  assert.equal(events.closed, 0);
  await sleep(80);
  assert.equal(events.closed, 1, "the restart did not bring it back: dropped");
  assert.equal(l.closed, true);
});

test("disconnected that heals within the grace period keeps the link, no restart", async () => {
  const { l, pc, events } = link("offerer");
  pc.set("connected");
  pc.set("disconnected");
  await sleep(20);
  pc.set("connected");
  await sleep(100);
  assert.equal(pc.offers.length, 1);
  assert.equal(events.closed, 0);
  assert.equal(l.closed, false);
  assert.deepEqual(events.connected, ["srflx"], "connected is reported once");
  l.close();
});

test("a restart that works keeps the link; the answerer never offers", async () => {
  const offerer = link("offerer");
  offerer.pc.set("connected");
  offerer.pc.set("disconnected");
  await sleep(70);
  assert.equal(offerer.pc.offers.length, 2);
  offerer.pc.set("connected");
  await sleep(100);
  assert.equal(offerer.events.closed, 0);
  offerer.l.close();

  const answerer = link("answerer");
  answerer.pc.set("connected");
  answerer.pc.set("disconnected");
  await sleep(70);
  assert.equal(answerer.pc.offers.length, 0, "the answerer waits for the offerer's restart");
  await sleep(80);
  assert.equal(answerer.events.closed, 1);
});

test("ICE failed before ever connecting fails at once, as 'failed'", async () => {
  const { l, pc, events } = link("offerer");
  pc.set("checking");
  pc.set("failed");
  assert.equal(events.closed, 1);
  assert.equal(l.failure, "failed");
});

test("relay mode asks for TURN candidates only", () => {
  const { pc, l } = link("offerer", { relay: true, iceServers: [{ urls: ["turn:t"] }] });
  assert.deepEqual(pc.config, { iceServers: [{ urls: ["turn:t"] }], iceTransportPolicy: "relay" });
  l.close();
});

test("outcomes reach the next stats report: connected by type, timed out, with the neighbour count", async () => {
  FakeWS.all = [];
  FakeRTC.all = [];
  const player = new FakePlayer();
  const agent = new P2PAgent(player, { url: "ws://gw/v1/ws", tickSeconds: 3600, WebSocketImpl: FakeWS, RTCPeerConnectionImpl: FakeRTC,
    settings: { connectTimeout: 0.05, statsInterval: 0.01 } });
  player.start(10);
  const ws = FakeWS.all[0];
  ws.open();
  ws.receive({ type: "welcome", peer_id: "me", ice_servers: [], limits: {} });
  ws.receive({ type: "peers", track: "trk", rendition: "r1", peers: [
    { peer_id: "a", chunks: [5], complete: true }, { peer_id: "b", chunks: [5], complete: true }] });
  assert.equal(FakeRTC.all.length, 2);
  const [pa] = FakeRTC.all;
  pa.types = ["host", "relay"];
  pa.set("connected");
  await sleep(0);
  // b never connects: the core closes it at connectTimeout
  await sleep(80);
  player.stats.httpBytes = 1000;
  agent.tick();
  const reports = ws.sent.filter((m) => m.type === "stats");
  assert.equal(reports.length, 1, JSON.stringify(ws.sent));
  assert.deepEqual(reports[0].connections, { "host/relay": 1, timeout: 1 });
  assert.equal(reports[0].neighbours, 1 - (agent.links.has("a") ? 0 : 1));
  assert.deepEqual(agent.info().outcomes.map((o) => [o.peer, o.outcome, o.local, o.remote]),
    [["a", "relay", "host", "relay"], ["b", "timeout", undefined, undefined]]);
  // reported once: the next report carries none
  player.stats.httpBytes = 2000;
  await sleep(20);
  agent.tick();
  const next = ws.sent.filter((m) => m.type === "stats").at(-1);
  assert.equal(next.connections, undefined);
  agent.destroy();
});

test("both ends' candidate types of the selected pair; a type the browser does not say is unknown", async () => {
  const pc = new FakeRTC({});
  pc.types = ["srflx", "prflx"];
  assert.deepEqual(await selectedPair(pc), { local: "srflx", remote: "prflx" });
  pc.types = [undefined, "srflx"];
  assert.deepEqual(await selectedPair(pc), { local: "unknown", remote: "srflx" });
  pc.getStats = async () => new Map([["p", { type: "candidate-pair", state: "in-progress" }]]);
  assert.equal(await selectedPair(pc), null);
});

test("connected before a pair is selected: the pair is reported once getStats has one, never a default", async () => {
  const { l, pc, events } = link("offerer");
  let calls = 0;
  pc.getStats = async () => {
    calls += 1;
    return calls < 3 ? new Map() : stats("prflx", "srflx");
  };
  const seen = [];
  l.onConnected = (type, pair) => seen.push([type, pair]);
  pc.set("connected");
  await sleep(100);
  assert.deepEqual(seen, [], "nothing reported while no pair is selected");
  assert.equal(l.candidate, null);
  await sleep(600);
  assert.deepEqual(seen, [["srflx", { local: "prflx", remote: "srflx" }]]);
  assert.deepEqual(l.pair, { local: "prflx", remote: "srflx" });
  assert.equal(calls, 3);
  assert.deepEqual(events.connected, []);
  l.close();
});

test("a pair never selected is reported as unknown at both ends; a closed link reports nothing", async () => {
  const { l, pc } = link("offerer");
  pc.getStats = async () => new Map();
  const seen = [];
  l.onConnected = (type, pair) => seen.push([type, pair]);
  pc.set("connected");
  await sleep(20 * 250 + 300);
  assert.deepEqual(seen, [["unknown", { local: "unknown", remote: "unknown" }]]);

  const other = link("offerer");
  other.pc.getStats = async () => new Map();
  const none = [];
  other.l.onConnected = (type) => none.push(type);
  other.pc.set("connected");
  await sleep(50);
  other.l.close();
  await sleep(600);
  assert.deepEqual(none, []);
  l.close();
});
