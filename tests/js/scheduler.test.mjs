// Unit tests of the pure download scheduler: node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  CACHE,
  DEFAULT_SETTINGS,
  SERVER,
  Scheduler,
  chunkIndexAt,
  chunksInRanges,
  prefetchIndices,
  shouldPrefetchNext,
} from "../../client/scheduler.js";

/** A manifest of `n` chunks of `d` seconds each. */
function manifest(n, { d = 2, complete = true } = {}) {
  const chunks = [];
  for (let i = 0; i < n; i++) chunks.push({ index: i, start: i * d, duration: d, size: 1000, sha256: "x" });
  return { chunks, complete, duration: complete ? n * d : null };
}

function sched(n = 60, settings = {}, opts = {}) {
  const s = new Scheduler(settings);
  s.setManifest(manifest(n, opts));
  return s;
}

const summary = (reqs) => reqs.map((r) => `${r.index}@${r.source}`);

test("defaults match the design: 30 s ahead, 4 s emergency, 10 s from the server", () => {
  assert.equal(DEFAULT_SETTINGS.bufferAhead, 30);
  assert.equal(DEFAULT_SETTINGS.emergencyAhead, 4);
  assert.equal(DEFAULT_SETTINGS.serverLead, 10);
  assert.throws(() => new Scheduler({ bufferAhaed: 3 }), TypeError);
});

test("chunkIndexAt maps a time to the chunk through start", () => {
  const { chunks } = manifest(5);
  assert.equal(chunkIndexAt(chunks, 0), 0);
  assert.equal(chunkIndexAt(chunks, 1.99), 0);
  assert.equal(chunkIndexAt(chunks, 2), 1);
  assert.equal(chunkIndexAt(chunks, 5.5), 2);
  assert.equal(chunkIndexAt(chunks, 9.999), 4);
  assert.equal(chunkIndexAt(chunks, 10), -1);
  assert.equal(chunkIndexAt([], 3), -1);
  // uneven chunks
  const uneven = [
    { index: 0, start: 0, duration: 2.02 },
    { index: 1, start: 2.02, duration: 1.98 },
    { index: 2, start: 4, duration: 0.5 },
  ];
  assert.equal(chunkIndexAt(uneven, 2.01), 0);
  assert.equal(chunkIndexAt(uneven, 2.03), 1);
  assert.equal(chunkIndexAt(uneven, 4.4), 2);
  assert.equal(chunkIndexAt(uneven, 4.6), -1);
});

test("chunksInRanges finds the chunks that time ranges cover", () => {
  const { chunks } = manifest(6);
  assert.deepEqual([...chunksInRanges(chunks, [[0, 4.01]])], [0, 1]);
  assert.deepEqual([...chunksInRanges(chunks, [[0.01, 3.99], [6, 12]])], [0, 1, 3, 4, 5]);
  assert.deepEqual([...chunksInRanges(chunks, [[1, 3]])], []);
  assert.deepEqual([...chunksInRanges(chunks, [])], []);
  // a last chunk of a few milliseconds still counts once covered
  const tail = [{ index: 0, start: 0, duration: 19.981 }, { index: 1, start: 19.981, duration: 0.026 }];
  assert.deepEqual([...chunksInRanges(tail, [[0, 20.021]])], [0, 1]);
  assert.deepEqual([...chunksInRanges(tail, [[0, 19.98]])], [0]);
});

test("prefetch helpers", () => {
  assert.deepEqual(prefetchIndices(manifest(10), 4), [0, 1]);
  assert.deepEqual(prefetchIndices(manifest(10), 5), [0, 1, 2]);
  assert.deepEqual(prefetchIndices(null), []);
  assert.equal(shouldPrefetchNext({ position: 5, duration: 20 }), false);
  assert.equal(shouldPrefetchNext({ position: 11, duration: 20 }), true);
  assert.equal(shouldPrefetchNext({ position: 0, duration: NaN }), false);
});

test("start: the server, nearest first, bounded in parallel", () => {
  const s = sched();
  const reqs = s.next({ now: 0, playhead: 0 });
  assert.deepEqual(summary(reqs), ["0@server", "1@server"]);
  assert.ok(reqs.every((r) => r.deadline === null));
  // nothing more while both server slots are busy
  assert.deepEqual(s.next({ now: 0.1, playhead: 0 }), []);
  s.received(0);
  assert.deepEqual(summary(s.next({ now: 0.2, playhead: 0 })), ["2@server"]);
});

test("the window stops at bufferAhead seconds ahead of the playhead", () => {
  const s = sched(60, { serverParallel: 100, maxInflight: 100 });
  const reqs = s.next({ now: 0, playhead: 0 });
  assert.equal(reqs.length, 15); // 30 s of 2 s chunks
  assert.equal(reqs.at(-1).index, 14);
  const s2 = sched(60, { bufferAhead: 6, serverParallel: 100, maxInflight: 100 });
  assert.deepEqual(summary(s2.next({ now: 0, playhead: 3 })), ["1@server", "2@server", "3@server", "4@server"]);
});

test("nothing is fetched twice; everything buffered means nothing to do", () => {
  const s = sched(5, { serverParallel: 10 });
  const first = s.next({ now: 0, playhead: 0 });
  assert.equal(first.length, 5);
  assert.deepEqual(s.next({ now: 1, playhead: 0 }), []);
  for (const r of first) s.received(r.index);
  assert.deepEqual(s.next({ now: 2, playhead: 0 }), []);
  assert.ok(s.bufferedToEnd(0));
  assert.equal(s.bufferedAhead(0), 10);
  assert.equal(s.bufferedAhead(3), 7);
});

test("the persistent cache comes first", () => {
  const s = sched(10);
  s.setCached([0, 1, 2, 5]);
  const reqs = s.next({ now: 0, playhead: 0 });
  assert.deepEqual(summary(reqs), ["0@cache", "1@cache", "2@cache", "3@server", "4@server", "5@cache"]);
  // a cache miss falls back to the network
  s.failed(5, { now: 0 });
  assert.equal(s.cached.has(5), false);
  s.received(3);
  assert.deepEqual(summary(s.next({ now: 0.1, playhead: 0 })), ["5@server"]);
});

function warm(s, upTo) {
  // buffer chunks [0, upTo) as if they came from the server
  for (let i = 0; i < upTo; i++) s.received(i);
}

test("after the first ~10 s, chunks come from peers with a deadline", () => {
  const s = sched(60);
  s.setPeer("a", { have: range(0, 60), slots: 2 });
  s.seek(0);
  // first 10 s: server even though a peer has them
  assert.deepEqual(summary(s.next({ now: 0, playhead: 0 })), ["0@server", "1@server"]);
  warm(s, 5); // 10 s buffered, out of emergency
  const reqs = s.next({ now: 10, playhead: 0 });
  assert.deepEqual(summary(reqs), ["5@a", "6@a"]);
  // deadline: when the playhead would come within 4 s of the chunk's start
  // (chunk 5 starts at 10 s: 10 - 0 - 4 = 6 s from now), capped at 8 s
  assert.equal(reqs[0].deadline, 16);
  assert.equal(reqs[1].deadline, 10 + Math.min(12 - 4, 8));
});

function range(a, b) {
  const out = [];
  for (let i = a; i < b; i++) out.push(i);
  return out;
}

test("peers are chosen by load then failures, slots respected, busy holders waited for", () => {
  const s = sched(60, { serverParallel: 1 });
  s.setPeer("a", { have: range(0, 60), slots: 1 });
  s.setPeer("b", { have: range(0, 60), slots: 1 });
  warm(s, 5);
  const reqs = s.next({ now: 0, playhead: 0 });
  // a and b each take one; then every holder is busy and there is time: wait
  assert.deepEqual(summary(reqs), ["5@a", "6@b"]);
  assert.deepEqual(s.next({ now: 0.5, playhead: 0.5 }), []);
  s.received(5);
  assert.deepEqual(summary(s.next({ now: 1, playhead: 1 })), ["7@a"]);
});

test("a chunk no peer holds comes from the server", () => {
  const s = sched(60, { serverParallel: 1 });
  s.setPeer("a", { have: [5], slots: 4 });
  warm(s, 5);
  assert.deepEqual(summary(s.next({ now: 0, playhead: 0 })), ["5@a", "6@server"]);
  s.peerHave("a", [7, 8]);
  assert.deepEqual(summary(s.next({ now: 0, playhead: 0 })), ["7@a", "8@a"]);
});

test("too close to the playhead for a peer: the server", () => {
  const s = sched(60);
  s.setPeer("a", { have: range(0, 60) });
  warm(s, 5); // buffered up to 10 s
  // playhead at 4.6: chunk 5 starts at 10, slack = 10 - 4.6 - 4 = 1.4 < 1.5
  s.seek(0); // anchor stays at 0, lead covers up to 10 s
  const reqs = s.next({ now: 0, playhead: 4.6 });
  assert.equal(reqs[0].index, 5);
  assert.equal(reqs[0].source, SERVER);
});

test("a peer past its deadline is given up and the server asked instead", () => {
  const s = sched(60);
  s.setPeer("a", { have: range(0, 60) });
  warm(s, 5);
  const [r5] = s.next({ now: 0, playhead: 0 });
  assert.equal(r5.source, "a");
  assert.deepEqual(s.expired({ now: r5.deadline - 0.01, playhead: 0 }), []);
  const gone = s.expired({ now: r5.deadline, playhead: 0 });
  assert.deepEqual(summary(gone), ["5@a"]);
  // the peer is not asked for chunk 5 again, even with free slots
  const reqs = s.next({ now: r5.deadline, playhead: 0 });
  assert.equal(reqs.find((r) => r.index === 5).source, SERVER);
  assert.equal(s.peers.get("a").failures, 1);
});

test("emergency mode: under 4 s buffered ahead everything comes from the server", () => {
  const s = sched(60, { serverParallel: 4 });
  s.setPeer("a", { have: range(0, 60), slots: 4 });
  warm(s, 10); // 20 s buffered
  s.seek(0);
  // the playhead moved on to 17: 3 s buffered ahead, chunk 10 onwards missing
  const reqs = s.next({ now: 17, playhead: 17 });
  assert.equal(s.emergency, true);
  assert.ok(reqs.length > 0);
  assert.ok(reqs.every((r) => r.source === SERVER), summary(reqs).join());
  // hysteresis: 6 s ahead is not yet healthy (recoverAhead 8)
  s.received(10);
  s.received(11);
  s.received(12); // buffered to 26: 9 s ahead of 17
  for (const r of reqs) if (r.index > 12) s.failed(r.index, { now: 17 });
  const after = s.next({ now: 20, playhead: 17 });
  assert.equal(s.emergency, false);
  assert.ok(after.some((r) => r.source === "a"), summary(after).join());
});

test("emergency mode expires in-flight peer requests inside the zone", () => {
  const s = sched(60);
  s.setPeer("a", { have: range(0, 60), slots: 4 });
  warm(s, 5);
  const reqs = s.next({ now: 0, playhead: 0 });
  assert.deepEqual(summary(reqs), ["5@a", "6@a", "7@a", "8@a"]);
  // time passes faster than the peer: playhead 7.5 (2.5 s ahead), before any deadline
  const gone = s.expired({ now: 3, playhead: 7.5 });
  assert.equal(s.emergency, true);
  assert.deepEqual(summary(gone), ["5@a"]);
  const next = s.next({ now: 3, playhead: 7.5 });
  assert.equal(next[0].index, 5);
  assert.equal(next[0].source, SERVER);
});

test("seek: the new window, a new server lead, stale requests returned", () => {
  const s = sched(60, { serverParallel: 2 });
  s.setPeer("a", { have: range(0, 60) });
  s.next({ now: 0, playhead: 0 }); // 0, 1 in flight
  const stale = s.seek(60);
  assert.deepEqual(summary(stale), ["0@server", "1@server"]);
  const reqs = s.next({ now: 1, playhead: 60 });
  assert.deepEqual(summary(reqs), ["30@server", "31@server"]);
  // seeking into the middle of a chunk starts with that chunk
  const s2 = sched(60);
  s2.seek(33.3);
  assert.equal(s2.next({ now: 0, playhead: 33.3 })[0].index, 16);
});

test("removing a peer hands its requests back", () => {
  const s = sched(60);
  s.setPeer("a", { have: range(0, 60) });
  warm(s, 5);
  s.next({ now: 0, playhead: 0 });
  const lost = s.removePeer("a");
  assert.deepEqual(summary(lost), ["5@a", "6@a"]);
  assert.deepEqual(summary(s.next({ now: 0, playhead: 0 })), ["5@server", "6@server"]);
});

test("a failed server request is retried after retryDelay", () => {
  const s = sched(10, { serverParallel: 1 });
  s.next({ now: 0, playhead: 0 });
  s.failed(0, { now: 0 });
  assert.deepEqual(summary(s.next({ now: 0.5, playhead: 0 })), ["1@server"]);
  s.received(1);
  assert.deepEqual(summary(s.next({ now: 1, playhead: 0 })), ["0@server"]);
});

test("live transcode: the live edge is asked from the server, once", () => {
  const s = new Scheduler();
  s.setManifest({ chunks: [], complete: false });
  assert.deepEqual(summary(s.next({ now: 0, playhead: 0 })), ["0@server"]);
  assert.equal(s.inflight.get(0).live, true);
  assert.deepEqual(s.next({ now: 0, playhead: 0 }), []);
  s.received(0);
  s.setManifest(manifest(1, { complete: false }));
  const reqs = s.next({ now: 1, playhead: 0 });
  assert.deepEqual(summary(reqs), ["1@server"]);
  assert.equal(reqs[0].live, true);
  // a 404 past the end: retried only after retryDelay
  s.failed(1, { now: 1 });
  assert.deepEqual(s.next({ now: 1.5, playhead: 0 }), []);
  // once complete, no live edge
  s.setManifest(manifest(1));
  assert.deepEqual(s.next({ now: 5, playhead: 0 }), []);
  assert.ok(s.bufferedToEnd(0));
});

test("the live edge is asked only when little is buffered ahead", () => {
  const s = new Scheduler();
  s.setManifest(manifest(10, { complete: false })); // 20 s listed
  for (let i = 0; i < 10; i++) s.received(i);
  // 20 s buffered ahead: re-reading the manifest is enough
  assert.deepEqual(s.next({ now: 0, playhead: 0 }), []);
  assert.deepEqual(s.next({ now: 0, playhead: 16 }), []);
  // under liveEdgeAhead (4 s)
  assert.deepEqual(summary(s.next({ now: 0, playhead: 16.5 })), ["10@server"]);
  assert.equal(s.bufferedToEnd(0), false);
  // a hole before the edge counts: nothing buffered ahead of 3 s here
  const holes = new Scheduler({ serverParallel: 1 });
  holes.setManifest(manifest(3, { complete: false }));
  holes.received(0);
  assert.deepEqual(summary(holes.next({ now: 0, playhead: 0 })), ["1@server"]);
  holes.received(1);
  holes.received(2);
  assert.deepEqual(holes.next({ now: 0, playhead: 0 }), []);
  // beyond the window, never
  const small = new Scheduler({ bufferAhead: 6 });
  small.setManifest(manifest(10, { complete: false }));
  assert.deepEqual(summary(small.next({ now: 0, playhead: 20 - 7 })), ["6@server", "7@server"]);
});

test("eviction makes a chunk wanted again; setBuffered reconciles", () => {
  const s = sched(5, { serverParallel: 5 });
  for (let i = 0; i < 5; i++) s.received(i);
  s.evicted(2);
  assert.equal(s.bufferedAhead(0), 4);
  assert.deepEqual(summary(s.next({ now: 0, playhead: 0 })), ["2@server"]);
  s.setBuffered([3, 4]);
  assert.equal(s.bufferedAhead(0), 0);
  assert.equal(s.bufferedAhead(6), 4);
  assert.equal(s.load(CACHE), 0);
});

test("maxInflight bounds all sources together", () => {
  const s = sched(60, { maxInflight: 3, serverParallel: 10 });
  assert.equal(s.next({ now: 0, playhead: 0 }).length, 3);
});
