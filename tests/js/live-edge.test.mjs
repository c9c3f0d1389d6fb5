// client/live-edge.js against tests/vectors/live-edge.json, the vectors
// peer/live.py passes too (tests/unit/peer/test_live.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import * as edge from "../../client/live-edge.js";

const vectors = JSON.parse(readFileSync(new URL("../vectors/live-edge.json", import.meta.url)));
const close = (a, b) => Math.abs(a - b) <= 1e-9;

test("the constants are the Python twin's", () => {
  for (const [name, value] of Object.entries(vectors.constants)) assert.equal(edge[name], value, name);
});

test("fnv1a32 hashes UTF-8 like the twin", () => {
  for (const [text, hash] of vectors.fnv1a32) assert.equal(edge.fnv1a32(text), hash, text);
});

test("fmix32 and electionHash like the twin", () => {
  for (const [h, out] of vectors.fmix32) assert.equal(edge.fmix32(h), out, String(h));
  for (const [id, index, hash] of vectors.electionHash) assert.equal(edge.electionHash(id, index), hash, `${id}:${index}`);
});

test("electionFairness: no pair of listeners splits consecutive chunks worse than maxShare", () => {
  const { first, count, maxShare, pairs } = vectors.electionFairness;
  assert.equal(pairs.length, 200);
  let worst = 0;
  for (const [a, b] of pairs) {
    let wins = 0;
    for (let index = first; index < first + count; index++) if (edge.electedFetcher(a, [b], index) === a) wins++;
    worst = Math.max(worst, wins / count, 1 - wins / count);
  }
  assert.ok(worst <= maxShare, String(worst));
});

for (const v of vectors.startIndex) {
  test(`startIndex: ${v.name}`, () => {
    assert.equal(edge.startIndex(v.entries, v.behindSeconds), v.expect);
  });
}

test("paceAction keeps the distance like the twin", () => {
  for (const v of vectors.paceAction) {
    const got = edge.paceAction(v.latency, v.target, v.recovering ?? false);
    assert.deepEqual(Object.keys(got), Object.keys(v.expect), JSON.stringify(v));
    for (const k of Object.keys(v.expect)) assert.ok(close(got[k], v.expect[k]), JSON.stringify({ v, got }));
  }
});

for (const v of vectors.electedFetcher) {
  test(`electedFetcher: ${v.name}`, () => {
    assert.equal(edge.electedFetcher(v.selfId, v.neighbourIds, v.index), v.expect);
    // the election does not depend on the order neighbours are listed in
    assert.equal(edge.electedFetcher(v.selfId, [...v.neighbourIds].reverse(), v.index), v.expect);
  });
}

for (const v of vectors.fetchWait) {
  test(`fetchWait: ${v.name}`, () => {
    assert.ok(close(edge.fetchWait(v.selfId, v.neighbourIds, v.index, v.peerWait), v.expect));
    assert.ok(close(edge.fetchWait(v.selfId, [...v.neighbourIds].reverse(), v.index, v.peerWait), v.expect));
  });
}

test("liveFetchDelay and liveLatency like the twin", () => {
  for (const v of vectors.liveFetchDelay) assert.ok(close(edge.liveFetchDelay(v.args), v.expect), JSON.stringify(v));
  for (const v of vectors.liveLatency) assert.ok(close(edge.liveLatency(v.now, v.wall, v.offset), v.expect), JSON.stringify(v));
});

test("every listener of a group elects the same one when all see each other", () => {
  const ids = ["a1", "b2", "c3", "d4", "e5"];
  const counts = new Map(ids.map((id) => [id, 0]));
  for (let index = 58_000_000; index < 58_000_500; index++) {
    const picks = new Set(ids.map((id) => edge.electedFetcher(id, ids.filter((x) => x !== id), index)));
    assert.equal(picks.size, 1);
    const [winner] = picks;
    counts.set(winner, counts.get(winner) + 1);
  }
  // the hash spreads the fetching: nobody takes every chunk, everyone some
  for (const n of counts.values()) assert.ok(n > 20 && n < 250, JSON.stringify([...counts]));
});
