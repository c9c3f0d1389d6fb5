// The shared scheduler vectors (tests/vectors/scheduler/*.json) against
// client/scheduler.js; tests/unit/peer/test_scheduler.py runs the same files
// against peer/scheduler.py, so both follow the same rules step by step.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";

import { Scheduler, chunkIndexAt } from "../../client/scheduler.js";

const DIR = new URL("../vectors/scheduler/", import.meta.url);
const files = readdirSync(DIR).filter((f) => f.endsWith(".json")).sort();

/** `{n, d, complete}` or `{chunks, complete}` to a manifest. */
function manifestOf(m) {
  if (Array.isArray(m.chunks)) return { chunks: m.chunks, complete: Boolean(m.complete) };
  const chunks = [];
  for (let i = 0; i < m.n; i++) chunks.push({ index: i, start: i * m.d, duration: m.d });
  return { chunks, complete: Boolean(m.complete) };
}

function chunksOf(c) {
  return Array.isArray(c) ? c : manifestOf(c).chunks;
}

function haveOf(step) {
  if (step.haveRange) {
    const out = [];
    for (let i = step.haveRange[0]; i < step.haveRange[1]; i++) out.push(i);
    return out;
  }
  return step.have ?? [];
}

function checkRequests(where, got, step) {
  assert.deepEqual(got.map((r) => `${r.index}@${r.source}`), step.expect, where);
  if (step.deadlines) {
    assert.equal(got.length, step.deadlines.length, where);
    got.forEach((r, k) => {
      const want = step.deadlines[k];
      if (want === null) assert.equal(r.deadline, null, `${where}: deadline of ${r.index}`);
      else assert.ok(Math.abs(r.deadline - want) < 1e-9, `${where}: deadline of ${r.index}: ${r.deadline} != ${want}`);
    });
  }
  if (step.live) assert.deepEqual(got.map((r) => r.live), step.live, where);
}

function check(where, s, step) {
  if ("emergency" in step) assert.equal(s.emergency, step.emergency, `${where}: emergency`);
  for (const [p, v] of step.bufferedAhead ?? []) {
    assert.ok(Math.abs(s.bufferedAhead(p) - v) < 1e-9, `${where}: bufferedAhead(${p}) = ${s.bufferedAhead(p)} != ${v}`);
  }
  for (const [p, v] of step.bufferedToEnd ?? []) assert.equal(s.bufferedToEnd(p), v, `${where}: bufferedToEnd(${p})`);
  for (const [id, n] of Object.entries(step.failures ?? {})) {
    assert.equal(s.peers.get(id).failures, n, `${where}: failures of ${id}`);
  }
  if (step.cached) assert.deepEqual([...s.cached].sort((a, b) => a - b), step.cached, `${where}: cached`);
  if (step.inflight) {
    const got = [...s.inflight.values()].sort((a, b) => a.index - b.index).map((r) => `${r.index}@${r.source}`);
    assert.deepEqual(got, step.inflight, `${where}: inflight`);
  }
}

function run(c) {
  const s = new Scheduler(c.settings ?? {});
  s.setManifest(manifestOf(c.manifest));
  c.steps.forEach((step, k) => {
    const where = `${c.name}, step ${k} (${step.op})`;
    switch (step.op) {
      case "setManifest": s.setManifest(manifestOf(step.manifest)); break;
      case "seek": checkRequests(where, s.seek(step.position), step); break;
      case "received": s.received(step.index); break;
      case "failed": s.failed(step.index, { now: step.now }); break;
      case "evicted": s.evicted(step.index); break;
      case "setBuffered": s.setBuffered(step.indices); break;
      case "setCached": s.setCached(step.indices); break;
      case "addCached": s.addCached(step.index); break;
      case "setPeer":
        s.setPeer(step.id, step.slots === undefined ? { have: haveOf(step) } : { have: haveOf(step), slots: step.slots });
        break;
      case "peerHave": s.peerHave(step.id, step.indices); break;
      case "setPeerWait": s.setPeerWait(step.until === null ? -Infinity : step.until); break;
      case "removePeer": checkRequests(where, s.removePeer(step.id), step); break;
      case "next": checkRequests(where, s.next({ now: step.now, playhead: step.playhead }), step); break;
      case "expired": checkRequests(where, s.expired({ now: step.now, playhead: step.playhead }), step); break;
      case "check": check(where, s, step); break;
      default: throw new Error(`${where}: unknown op`);
    }
  });
}

for (const file of files) {
  const vectors = JSON.parse(readFileSync(new URL(file, DIR)));
  for (const [k, v] of (vectors.chunkIndexAt ?? []).entries()) {
    test(`${file}: chunkIndexAt #${k}`, () => {
      const chunks = chunksOf(v.chunks);
      for (const [t, want] of v.at) assert.equal(chunkIndexAt(chunks, t), want, `t=${t}`);
    });
  }
  for (const c of vectors.cases) test(`${file}: ${c.name}`, () => run(c));
}
