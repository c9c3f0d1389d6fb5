// TURN on request and stats sources in the pure P2P core (client/p2p.js).
import { test } from "node:test";
import assert from "node:assert/strict";

import { P2PCore } from "../../client/p2p.js";

const welcome = (id = "me") => ({ type: "welcome", peer_id: id, ice_servers: [{ urls: "stun:example" }], limits: { stats_interval: 5 } });
const TURN = { urls: ["turn:198.51.100.1:3478"], username: "600:me", credential: "x" };
const controls = (effects, type) => effects.filter((e) => e.kind === "control" && e.msg.type === type).map((e) => e.msg);

test("a player that allows only relays asks for TURN at welcome, before anything else", () => {
  const c = new P2PCore();
  c.needsRelay = true;
  c.startSession({ track: "t", rendition: "r", chunks: [0, 1], held: [] }, 0);
  const out = c.onControl(welcome(), 0);
  assert.equal(out[0].kind, "control");
  assert.deepEqual(out[0].msg, { type: "turn" });
  assert.deepEqual(c.iceServers, [{ urls: "stun:example" }]);
  c.onControl({ type: "turn", ice_servers: [TURN], ttl_seconds: 600 }, 1);
  assert.deepEqual(c.iceServers, [{ urls: "stun:example" }, TURN]);
  // renewed halfway through, once, while the socket lives
  assert.deepEqual(controls(c.tick(200), "turn"), []);
  assert.deepEqual(controls(c.tick(301), "turn"), [{ type: "turn" }]);
  assert.deepEqual(controls(c.tick(302), "turn"), []);
});

test("others ask only once a direct connection failed; never again after no_turn", () => {
  const c = new P2PCore();
  assert.deepEqual(c.onControl(welcome(), 0).filter((e) => e.msg?.type === "turn"), []);
  assert.deepEqual(controls(c.needRelay(1), "turn"), [{ type: "turn" }]);
  assert.deepEqual(c.needRelay(1), []); // asked already
  c.onControl({ type: "error", error: "no_turn", detail: "none", for: "turn" }, 2);
  assert.deepEqual(c.needRelay(3), []);
});

test("a refused request (rate limited) is asked again later", () => {
  const c = new P2PCore();
  c.onControl(welcome(), 0);
  c.needRelay(0);
  c.onControl({ type: "error", error: "rate_limited", detail: "slow down", for: "turn" }, 1);
  assert.deepEqual(c.needRelay(2), []);
  assert.deepEqual(controls(c.needRelay(1 + c.settings.maxWantInterval), "turn"), [{ type: "turn" }]);
});

test("stats name the neighbours that delivered verified bytes", () => {
  const c = new P2PCore();
  c.onControl(welcome(), 0);
  c.deliveredBy("a", 1000);
  c.deliveredBy("b", 3000);
  c.deliveredBy("a", 500);
  const [stats] = controls(c.tick(10, { peerBytes: 4500 }), "stats");
  assert.deepEqual(stats.sources, { b: 3000, a: 1500 });
  const [next] = controls(c.tick(20, { peerBytes: 4600 }), "stats");
  assert.equal(next.sources, undefined);
});

test("a neighbour that could not be reached directly is dialled again as soon as TURN credentials come", () => {
  const c = new P2PCore();
  c.onControl(welcome(), 0);
  c.startSession({ track: "t", rendition: "r", chunks: [0, 1, 2], held: [] }, 0);
  const dial = c.onControl({ type: "peers", track: "t", rendition: "r", peers: [{ peer_id: "a", chunks: [0, 1, 2], complete: true }] }, 1);
  assert.ok(dial.some((e) => e.kind === "open" && e.peer === "a"));
  // ICE failed (a symmetric NAT): cooled down for retryCooldown, and the relay asked for
  c.channelClosed("a", 6);
  assert.equal(c.neighbours.has("a"), false);
  assert.deepEqual(controls(c.needRelay(6), "turn"), [{ type: "turn" }]);
  const granted = c.onControl({ type: "turn", ice_servers: [TURN], ttl_seconds: 600 }, 7);
  // Not retryCooldown (30 s) later: it looks for holders now (an overlay round, or a want).
  assert.equal(controls(granted, "introduce").length + controls(granted, "want").length, 1, JSON.stringify(granted));
  const again = c.onControl({ type: "peers", track: "t", rendition: "r", peers: [{ peer_id: "a", chunks: [0, 1, 2], complete: true }] }, 8);
  assert.ok(again.some((e) => e.kind === "open" && e.peer === "a"), again);
  // A renewal is not a new relay: nothing is dialled again for it.
  const renewed = c.onControl({ type: "turn", ice_servers: [TURN], ttl_seconds: 600 }, 310);
  assert.deepEqual([...controls(renewed, "want"), ...controls(renewed, "introduce")], []);
});
