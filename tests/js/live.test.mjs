// The player's live side, pure: the timeline (live-timeline.js), the
// follower (live.js) and the scheduler's rule 7 (scheduler.js).
import { test } from "node:test";
import assert from "node:assert/strict";

import { LiveTimeline, SKEW_SAMPLES } from "../../client/live-timeline.js";
import { ERROR_POLL_MAX, LiveFollower, RECONNECT_POLL_MAX, deltaAfter, heardPastEdge, isLiveManifest, liveSchedulerSettings, liveStarted, mergeLiveManifest } from "../../client/live.js";
import { SERVER, Scheduler } from "../../client/scheduler.js";
import { electedFetcher, fetchWait } from "../../client/live-edge.js";

const BASE = 58_000_000;
const T0 = 1_796_600_000; // a wall-clock second

/** A live manifest: chunks `from`..`to` (inclusive) of `d` s, `wall` in real time from T0. */
function live(from, to, { d = 1, state = "live", title = null, station = "Radio", epoch = 1, startAt = 0, skip = 0 } = {}) {
  const chunks = [];
  for (let i = from; i <= to; i++) {
    const k = i - BASE;
    chunks.push({ index: i + (i > from + skip && skip ? skip : 0), start: startAt + k * d, duration: d, size: 100, sha256: "x", wall: T0 + k * d, epoch });
  }
  return {
    live: true, complete: false, rendition: "webm", epoch, init: { epoch }, chunks, edge: chunks.length ? chunks[chunks.length - 1].index : null,
    state, title, station, chunk_seconds: d, start_behind_seconds: 3, peer_wait_seconds: 0.7, window_seconds: 60,
  };
}

test("isLiveManifest: only live: true", () => {
  assert.equal(isLiveManifest({ live: true }), true);
  assert.equal(isLiveManifest({ live: "yes" }), false);
  assert.equal(isLiveManifest({ complete: false }), false);
  assert.equal(isLiveManifest(null), false);
});

test("the timeline starts at 0 with the chunk three seconds behind the edge and places new chunks after it", () => {
  const tl = new LiveTimeline({ behindSeconds: 3 });
  assert.deepEqual(tl.update(live(BASE, BASE + 9), T0 + 10.2), [BASE + 7, BASE + 8, BASE + 9]);
  assert.deepEqual(tl.manifest().chunks.map((c) => [c.index, c.start]), [[BASE + 7, 0], [BASE + 8, 1], [BASE + 9, 2]]);
  assert.equal(tl.end, 3);
  // the next read: the window slid, one new chunk
  assert.deepEqual(tl.update(live(BASE + 1, BASE + 10), T0 + 11.3), [BASE + 10]);
  assert.deepEqual(tl.at(BASE + 10), { index: BASE + 10, start: 3, duration: 1, wall: T0 + 10, epoch: 1 });
  assert.equal(tl.behindEdge(1.5), 2.5);
});

test("a reconnect's new indices and timeline follow the old chunks without a gap", () => {
  const tl = new LiveTimeline({ behindSeconds: 3 });
  tl.update(live(BASE, BASE + 9), T0 + 10);
  // the source came back: indices jump, its own timeline starts at 0 again, a new epoch
  const m = live(BASE, BASE + 9);
  m.chunks.push({ index: BASE + 500, start: 0, duration: 0.98, size: 1, sha256: "y", wall: T0 + 20, epoch: 2 });
  m.chunks.push({ index: BASE + 501, start: 0.98, duration: 1, size: 1, sha256: "z", wall: T0 + 21, epoch: 2 });
  assert.deepEqual(tl.update(m, T0 + 22), [BASE + 500, BASE + 501]);
  assert.equal(tl.at(BASE + 500).start, 3);
  assert.equal(tl.at(BASE + 500).epoch, 2);
  assert.ok(Math.abs(tl.at(BASE + 501).start - 3.98) < 1e-6);
});

test("chunks that left the window are forgotten; one skipped while away is no hole", () => {
  const tl = new LiveTimeline({ behindSeconds: 3 });
  tl.update(live(BASE, BASE + 9), T0 + 10);
  // a read much later: everything placed so far left the window
  tl.update(live(BASE + 40, BASE + 99), T0 + 100);
  const chunks = tl.manifest().chunks;
  assert.equal(chunks[0].index, BASE + 40);
  assert.equal(chunks[0].start, 3); // right after the last one placed
  assert.equal(tl.at(BASE + 9), null);
});

test("latency: from the gateway's receipt of the audio at the playhead, against the clock offset seen in new chunks", () => {
  const tl = new LiveTimeline({ behindSeconds: 3 });
  tl.update(live(BASE, BASE + 9), T0 + 10.5); // the first read gives no clock sample
  assert.equal(tl.skew(), 0);
  // playing 0.25 s into BASE+7 (wall T0+7) at T0+10.5: 3.25 s
  assert.ok(Math.abs(tl.latency(0.25, T0 + 10.5) - 3.25) < 1e-6);
  // this browser's clock runs 5 s ahead: the chunks that appear later say so
  for (let k = 10; k < 10 + SKEW_SAMPLES; k++) tl.update(live(BASE, BASE + k), T0 + k + 1 + 5.2);
  assert.ok(Math.abs(tl.skew() - 5.2) < 1e-6);
  assert.ok(Math.abs(tl.latency(0.25, T0 + 10.5 + 5.2) - 3.25) < 1e-6);
  assert.equal(tl.latency(1000, T0), null); // not on a placed chunk
});

test("a burst of chunks at once does not move the clock estimate much (median)", () => {
  const tl = new LiveTimeline({ behindSeconds: 3 });
  tl.update(live(BASE, BASE + 9), T0 + 10);
  for (let k = 10; k < 20; k++) tl.update(live(BASE, BASE + k), T0 + k + 1.3);
  // a reconnect burst: five chunks whose walls are all "now"
  const m = live(BASE, BASE + 19);
  for (let j = 0; j < 5; j++) m.chunks.push({ index: BASE + 100 + j, start: j, duration: 1, size: 1, sha256: "b", wall: T0 + 25, epoch: 1 });
  tl.update(m, T0 + 25.2);
  assert.ok(Math.abs(tl.skew() - 0.3) < 1e-6, String(tl.skew()));
});

test("the follower: settings, state changes, title and station", () => {
  const f = new LiveFollower(live(BASE, BASE + 9), { bufferAhead: 30 });
  assert.equal(f.scheduler.settings.emergencyAhead, 1);
  assert.equal(f.scheduler.settings.serverLead, 3);
  assert.deepEqual(f.read(live(BASE, BASE + 9, { title: "A - B" }), 0, T0 + 10), { state: "live", title: "A - B", station: "Radio", changed: ["state", "title", "station"] });
  assert.equal(f.read(live(BASE, BASE + 10, { title: "A - B" }), 1, T0 + 11), null);
  assert.deepEqual(f.read(live(BASE, BASE + 10, { title: "C - D" }), 2, T0 + 12)?.changed, ["title"]);
  assert.deepEqual(f.read(live(BASE, BASE + 10, { title: "C - D", state: "reconnecting" }), 3, T0 + 13)?.changed, ["state"]);
  assert.deepEqual(f.info(), { state: "reconnecting", title: "C - D", station: "Radio", latency: null });
  assert.deepEqual(liveSchedulerSettings({ bufferAhead: 20 }, 6, 1).emergencyAhead, 2);
});

test("polling: every chunk while live, backed off while reconnecting (bounded) and after errors", () => {
  const f = new LiveFollower(live(BASE, BASE + 9));
  f.read(live(BASE, BASE + 9), 0, T0);
  assert.equal(f.pollDelay(), 1);
  const delays = [];
  for (let k = 0; k < 5; k++) {
    f.read(live(BASE, BASE + 9, { state: "reconnecting" }), k, T0 + k);
    delays.push(f.pollDelay());
  }
  assert.deepEqual(delays, [1, 2, RECONNECT_POLL_MAX, RECONNECT_POLL_MAX, RECONNECT_POLL_MAX]);
  const errors = [];
  for (let k = 0; k < 6; k++) {
    f.readFailed();
    errors.push(f.pollDelay());
  }
  assert.deepEqual(errors, [2, 4, ERROR_POLL_MAX, ERROR_POLL_MAX, ERROR_POLL_MAX, ERROR_POLL_MAX]);
  f.read(live(BASE, BASE + 9), 9, T0 + 9);
  assert.equal(f.pollDelay(), 1);
});

test("the edge request stops while the source reconnects (its next index is unknown)", () => {
  const f = new LiveFollower(live(BASE, BASE + 9));
  f.read(live(BASE, BASE + 9), 0, T0 + 10);
  f.scheduler.setBuffered([BASE + 7, BASE + 8, BASE + 9]);
  f.scheduler.seek(0);
  const edgeAsked = (now) => f.scheduler.next({ now, playhead: 0.5 }).some((r) => r.live);
  assert.equal(edgeAsked(1), true);
  f.scheduler.inflight.clear();
  f.read(live(BASE, BASE + 9, { state: "reconnecting" }), 2, T0 + 12);
  assert.equal(edgeAsked(2), false);
});

test("pace: a rate, a jump back to the target, a hold right at the edge; nothing while paused", () => {
  const f = new LiveFollower(live(BASE, BASE + 9));
  f.read(live(BASE, BASE + 9), 0, T0 + 10);
  // placed: BASE+7..9 at 0..3 (walls T0+7..9)
  assert.deepEqual(f.pace(0.5, T0 + 10.5, true), { rate: 1 }); // 3 s behind
  assert.equal(f.latency, 3);
  assert.deepEqual(f.pace(0.5, T0 + 12, true), { rate: 1.03 }); // 4.5 s
  assert.deepEqual(f.pace(0.5, T0 + 12, false), { rate: 1 });
  assert.deepEqual(f.pace(2.5, T0 + 10.2, true), { rate: 0 }); // 0.7 s: hold
  assert.deepEqual(f.pace(0.5, T0 + 9.4, true), { rate: 0.97 }); // 1.9 s
  assert.deepEqual(f.pace(0.5, T0 + 8.9, true), { rate: 0 }); // 1.4 s: under half the target, hold

  // twenty seconds later, still on the same chunk (paused until now): jump
  for (let k = 10; k < 30; k++) f.read(live(BASE, BASE + k), k, T0 + k + 1);
  const p = f.pace(0.5, T0 + 30.5, true);
  assert.ok("seekTo" in p && Math.abs(p.seekTo - (0.5 + 23 - 3)) < 1e-6, JSON.stringify(p));
  assert.equal(f.clampSeek(1000), f.timeline.end - 3);
  assert.equal(f.clampSeek(-5), 0);
});

test("pace: resumed from a stall, a listener more than the tolerance behind jumps back, for RECOVER_SECONDS only", () => {
  const f = new LiveFollower(live(BASE, BASE + 9));
  f.read(live(BASE, BASE + 9), 0, T0 + 10);
  assert.deepEqual(f.pace(0.5, T0 + 12, true), { rate: 1.03 }); // 4.5 s behind, not recovering: creeps
  f.resumed(T0 + 11);
  const p = f.pace(0.5, T0 + 12, true);
  assert.ok("seekTo" in p && Math.abs(p.seekTo - (0.5 + 4.5 - 3)) < 1e-6, JSON.stringify(p));
  assert.deepEqual(f.pace(0.5, T0 + 16.5, true), { rate: 1.03 }, "5 s after resuming it creeps again");
});

// ---- scheduler rule 7 ------------------------------------------------------------

/** A scheduler in live mode with the window placed at 0.. and `n` neighbours. */
function liveScheduler({ self = "me", peers = [], playhead = 0 } = {}) {
  const s = new Scheduler(liveSchedulerSettings({}, 3, 1));
  s.setLive({ peerWait: 0.7 });
  s.setSelf(self);
  for (const p of peers) s.setPeer(p, { have: [] });
  const chunks = [0, 1, 2].map((k) => ({ index: BASE + k, start: k, duration: 1 }));
  s.setManifest({ chunks, complete: false }, { now: 0 });
  s.setBuffered([BASE, BASE + 1, BASE + 2]);
  s.seek(playhead);
  return s;
}

/** Neighbour ids such that `self` is (or is not) elected for `index`. */
function neighboursFor(self, index, elected) {
  for (let k = 0; k < 1000; k++) {
    const ids = [`n${k}a`, `n${k}b`];
    if ((electedFetcher(self, ids, index) === self) === elected) return ids;
  }
  throw new Error("no such neighbours");
}

test("rule 7: a new chunk nobody holds: the elected fetcher asks the server at once", () => {
  const next = BASE + 3;
  const s = liveScheduler({ peers: neighboursFor("me", next, true) });
  s.serverLead = 0;
  s.anchor = -100; // past the start-up lead
  s.setManifest({ chunks: [0, 1, 2, 3].map((k) => ({ index: BASE + k, start: k, duration: 1 })), complete: false }, { now: 10 });
  const reqs = s.next({ now: 10, playhead: 0.9 }).filter((r) => r.index === next);
  assert.deepEqual(reqs.map((r) => [r.index, r.source]), [[next, SERVER]]);
});

test("rule 7: the others wait peer_wait_seconds for a neighbour, then the server", () => {
  const next = BASE + 3;
  const peers = neighboursFor("me", next, false);
  const s = liveScheduler({ peers });
  s.anchor = -100;
  s.setManifest({ chunks: [0, 1, 2, 3].map((k) => ({ index: BASE + k, start: k, duration: 1 })), complete: false }, { now: 10 });
  assert.deepEqual(s.next({ now: 10, playhead: 0.9 }).filter((r) => r.index === next), []);
  assert.deepEqual(s.next({ now: 10.5, playhead: 0.9 }).filter((r) => r.index === next), []);
  // a neighbour announces it: fetched from that neighbour
  s.peerHave(peers[0], [next]);
  assert.deepEqual(s.next({ now: 10.6, playhead: 0.9 }).map((r) => [r.index, r.source]), [[next, peers[0]]]);
  // nobody had it: the server once the wait is over
  const t = liveScheduler({ peers });
  t.anchor = -100;
  t.setManifest({ chunks: [0, 1, 2, 3].map((k) => ({ index: BASE + k, start: k, duration: 1 })), complete: false }, { now: 10 });
  assert.deepEqual(t.next({ now: 10.69, playhead: 0.9 }).filter((r) => r.index === next), []);
  assert.deepEqual(t.next({ now: 10.71, playhead: 0.9 }).filter((r) => r.index === next).map((r) => [r.index, r.source]), [[next, SERVER]]);
});

test("rule 7: no wait when the playhead would reach the chunk before a server fetch (emergency unchanged)", () => {
  const next = BASE + 3;
  const s = liveScheduler({ peers: neighboursFor("me", next, false) });
  s.anchor = -100;
  s.setManifest({ chunks: [0, 1, 2, 3].map((k) => ({ index: BASE + k, start: k, duration: 1 })), complete: false }, { now: 10 });
  // 0.9 s before it plays: less than emergencyAhead (1 s) + minPeerWindow
  assert.deepEqual(s.next({ now: 10, playhead: 2.1 }).filter((r) => r.index === next).map((r) => [r.index, r.source]), [[next, SERVER]]);
});

test("rule 6 live: only the elected fetcher of the next index asks for the live edge", () => {
  const edgeIndex = BASE + 3;
  for (const elected of [true, false]) {
    const s = liveScheduler({ peers: neighboursFor("me", edgeIndex, elected) });
    s.anchor = -100;
    const reqs = s.next({ now: 10, playhead: 0.5 });
    assert.equal(reqs.some((r) => r.live && r.index === edgeIndex), elected, `elected ${elected}`);
  }
  // alone (no neighbours) or before the id is known: it asks
  const alone = liveScheduler({ peers: [] });
  assert.ok(alone.next({ now: 10, playhead: 0.5 }).some((r) => r.live));
});

test("the start moves into the chunk by the time the load took", () => {
  const f = new LiveFollower(live(BASE, BASE + 9));
  f.read(live(BASE, BASE + 9), 0, T0 + 10);
  // placed BASE+7 (wall T0+7) at 0: at T0+10.6 it is 3.6 s old, 0.6 s more than the target
  assert.ok(Math.abs(f.startPosition(T0 + 10.6) - 0.6) < 1e-6);
  assert.equal(f.startPosition(T0 + 9.5), 0); // younger than the target: its start
  assert.equal(f.startPosition(T0 + 30), 2); // never past the newest chunk's start
});

test("liveStarted: an init segment and a chunk", () => {
  assert.equal(liveStarted(live(BASE, BASE + 1)), true);
  assert.equal(liveStarted({ ...live(BASE, BASE + 1), init: null }), false);
  assert.equal(liveStarted(live(BASE, BASE - 1)), false);
});

/** What the gateway answers to `manifest?after=N` for the window `full` (docs/live.md). */
function deltaOf(full, after) {
  return { ...full, chunks: full.chunks.filter((c) => c.index > after), first: full.chunks.length ? full.chunks[0].index : null };
}

test("deltaAfter: the newest index held, null when nothing is (the first read is whole)", () => {
  assert.equal(deltaAfter(null), null);
  assert.equal(deltaAfter({ chunks: [] }), null);
  assert.equal(deltaAfter(live(BASE, BASE + 9)), BASE + 9);
  assert.equal(deltaAfter({ chunks: [{ index: 7 }, { index: 9 }, { index: 8 }] }), 9);
});

test("merging deltas gives the window a whole read gives: sliding, polls missed, a reconnect's jump, a window gone", () => {
  const full = (m) => ({ ...m, first: m.chunks.length ? m.chunks[0].index : null });
  const windows = [
    live(BASE, BASE + 59), // the first read, whole
    live(BASE + 1, BASE + 60), // one new chunk, one gone
    live(BASE + 1, BASE + 60), // nothing new: an empty delta
    live(BASE + 5, BASE + 64), // polls missed
    live(BASE + 200, BASE + 259), // away longer than the window: after is below it, the whole window comes
    { ...live(BASE + 240, BASE + 259), chunks: [...live(BASE + 240, BASE + 259).chunks, ...live(BASE + 900, BASE + 902).chunks] }, // a reconnect: indices jump
    { ...live(BASE, BASE), chunks: [], edge: null, state: "starting" }, // a restarted gateway, window empty
    live(BASE + 1000, BASE + 1003),
  ].map(full);
  let held = windows[0];
  for (const w of windows.slice(1)) {
    const after = deltaAfter(held);
    const delta = after === null ? w : deltaOf(w, after);
    held = mergeLiveManifest(held, delta);
    assert.deepEqual(held, w);
  }
});

test("a delta without first (a gateway that answered the whole window) is taken whole", () => {
  const w = live(BASE + 3, BASE + 62);
  assert.deepEqual(mergeLiveManifest(live(BASE, BASE + 59), w), w);
});

test("a delta is a few hundred bytes where the window is twelve kB", () => {
  const sha = "ab".repeat(32);
  const w = live(BASE, BASE + 59);
  for (const c of w.chunks) Object.assign(c, { sha256: sha, size: 14_600, wall: c.wall + 0.123456 });
  const full = JSON.stringify({ ...w, first: BASE });
  const delta = JSON.stringify(deltaOf({ ...w, first: BASE }, BASE + 58));
  assert.ok(full.length > 10_000 && delta.length < 1_000, `${full.length} ${delta.length}`);
});

test("the follower fed merged deltas places the chunks it places fed whole windows", () => {
  const a = new LiveFollower(live(BASE, BASE + 59));
  const b = new LiveFollower(live(BASE, BASE + 59));
  let held = { ...live(BASE, BASE + 59), first: BASE };
  a.read(held, 0, T0 + 60);
  b.read(held, 0, T0 + 60);
  for (let k = 1; k <= 80; k++) {
    const w = { ...live(BASE + k, BASE + 59 + k), first: BASE + k };
    held = mergeLiveManifest(held, deltaOf(w, /** @type {number} */ (deltaAfter(held))));
    a.read(held, k, T0 + 60 + k);
    b.read(w, k, T0 + 60 + k);
  }
  assert.deepEqual(a.timeline.manifest(), b.timeline.manifest());
  assert.equal(a.timeline.last, BASE + 139);
});

test("heardPastEdge: the newest index a neighbour holds past the manifest's edge, else null", () => {
  assert.equal(heardPastEdge([10, 11, 12], 11), 12);
  assert.equal(heardPastEdge(new Set([14, 12, 13]), 11), 14);
  assert.equal(heardPastEdge([9, 10, 11], 11), null); // nothing new: no extra read
  assert.equal(heardPastEdge([], 11), null);
  assert.equal(heardPastEdge([12], null), null); // no chunk listed yet: the regular polls find the first
  assert.equal(heardPastEdge([12], undefined), null);
});

/** Five neighbour ids such that `self` is elected for `index` with a hash above AT_ONCE_SHARE (it waits). */
function fiveSoon(self, index) {
  for (let k = 0; k < 5000; k++) {
    const ids = [0, 1, 2, 3, 4].map((j) => `n${k}x${j}`);
    const w = fetchWait(self, ids, index, 0.7);
    if (w > 0 && w < 0.7) return ids;
  }
  throw new Error("no such neighbours");
}

test("rule 6/7, a large neighbourhood: an elected fetcher above AT_ONCE_SHARE waits SOON_FACTOR x peerWait from when the chunk is due", () => {
  const edgeIndex = BASE + 3;
  const peers = fiveSoon("me", edgeIndex);
  // the window was listed at 0: chunk BASE + 3 is due at 0 + 1 (BASE + 2 seen at 0, 1 s long)
  const s = liveScheduler({ peers });
  s.anchor = -100;
  assert.ok(!s.next({ now: 1.2, playhead: 0.5 }).some((r) => r.live), "not before due + 0.28");
  assert.ok(s.next({ now: 1.3, playhead: 0.5 }).some((r) => r.live && r.index === edgeIndex), "then the edge request");
  // a neighbour announced it: no edge request, it is taken from the neighbour once listed
  const t = liveScheduler({ peers });
  t.anchor = -100;
  t.peerHave(peers[0], [edgeIndex]);
  assert.ok(!t.next({ now: 1.3, playhead: 0.5 }).some((r) => r.live));
  // listed late (a poll later): the wait counts from when it was due, not from the listing
  const u = liveScheduler({ peers });
  u.anchor = -100;
  u.setManifest({ chunks: [0, 1, 2, 3].map((k) => ({ index: BASE + k, start: k, duration: 1 })), complete: false }, { now: 1.9 });
  assert.deepEqual(u.next({ now: 1.9, playhead: 0.5 }).filter((r) => r.index === edgeIndex).map((r) => [r.index, r.source]), [[edgeIndex, SERVER]]);
});
