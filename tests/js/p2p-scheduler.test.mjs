// The scheduler's side of P2P: waiting for peers being looked for (setPeerWait),
// peer deadlines, and peers that vanish. node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import { SERVER, Scheduler } from "../../client/scheduler.js";

function sched(n = 15, settings = {}) {
  const s = new Scheduler(settings);
  const chunks = [];
  for (let i = 0; i < n; i++) chunks.push({ index: i, start: i * 2, duration: 2 });
  s.setManifest({ chunks, complete: true });
  s.seek(0);
  return s;
}

const summary = (reqs) => reqs.map((r) => `${r.index}@${r.source}`);

/** Mark chunks received (as the shell would once appended). */
function buffer(s, indices) {
  for (const i of indices) {
    s.start({ index: i, source: SERVER });
    s.received(i);
  }
}

test("while peers are being looked for, chunks past the server lead wait; the lead does not", () => {
  const s = sched();
  s.setPeerWait(3);
  // the first 10 s (chunks 0..4) from the server, two at a time; the rest waits
  assert.deepEqual(summary(s.next({ now: 1, playhead: 0 })), ["0@server", "1@server"]);
  buffer(s, [0, 1]);
  assert.deepEqual(summary(s.next({ now: 1, playhead: 0 })), ["2@server", "3@server"]);
  buffer(s, [2, 3]);
  assert.deepEqual(summary(s.next({ now: 1, playhead: 0 })), ["4@server"]);
  buffer(s, [4]);
  assert.deepEqual(summary(s.next({ now: 2, playhead: 0 })), []);
  // a peer shows up: the waiting chunks go to it (two at a time)
  s.setPeer("p", { have: [5, 6, 7, 8, 9], slots: 2 });
  assert.deepEqual(summary(s.next({ now: 2.1, playhead: 0 })), ["5@p", "6@p"]);
});

test("the wait is bounded in time: past it, the server", () => {
  const s = sched();
  s.setPeerWait(3);
  buffer(s, [0, 1, 2, 3, 4]);
  assert.deepEqual(summary(s.next({ now: 2.9, playhead: 0 })), []);
  assert.deepEqual(summary(s.next({ now: 3, playhead: 0 })).slice(0, 2), ["5@server", "6@server"]);
});

test("the wait never holds back a chunk whose peer window is gone", () => {
  const s = sched();
  buffer(s, [0, 1, 2, 3, 4]);
  s.setPeerWait(100);
  assert.deepEqual(summary(s.next({ now: 0.5, playhead: 0 })), []); // 10 s buffered: no emergency
  // playhead 5: chunk 5 (10 s) has 10 - 5 - 4 = 1 s of slack, under minPeerWindow
  const reqs = summary(s.next({ now: 1, playhead: 5 }));
  assert.deepEqual(reqs, ["5@server"]);
});

test("emergency ignores the wait", () => {
  const s = sched(15, { serverParallel: 10, maxInflight: 20 });
  s.setPeerWait(100);
  s.seek(0);
  buffer(s, [0]);
  s.anchor = -100; // past the lead: only emergency sends chunk 1 to the server
  assert.equal(s.bufferedAhead(0) < 4, true);
  assert.deepEqual(summary(s.next({ now: 1, playhead: 0 })).slice(0, 1), ["1@server"]);
});

test("setPeerWait(-Infinity) ends the wait; junk is treated as no wait", () => {
  const s = sched();
  s.setPeerWait(5);
  assert.equal(s.peerWaitUntil, 5);
  s.setPeerWait(-Infinity);
  assert.equal(s.peerWaitUntil, -Infinity);
  s.setPeerWait(NaN);
  assert.equal(s.peerWaitUntil, -Infinity);
});

test("a vanished peer's requests are reassigned; a crawling one expires at its deadline", () => {
  const s = sched();
  buffer(s, [0, 1, 2, 3, 4]);
  s.setPeer("p", { have: [5, 6, 7, 8, 9, 10, 11, 12, 13, 14], slots: 2 });
  const reqs = s.next({ now: 0, playhead: 0 });
  assert.deepEqual(summary(reqs), ["5@p", "6@p"]);
  // deadline: chunk 5 starts at 10 s, minus 4 s of emergency margin = 6 s from now
  assert.equal(reqs[0].deadline, 6);
  assert.deepEqual(summary(s.expired({ now: 5.9, playhead: 0 })), []);
  assert.deepEqual(summary(s.expired({ now: 6, playhead: 0 })), ["5@p"]);
  // gone: its other request comes back for reassignment, to the server
  assert.deepEqual(summary(s.removePeer("p")), ["6@p"]);
  assert.deepEqual(summary(s.next({ now: 6.1, playhead: 0 })).slice(0, 2), ["5@server", "6@server"]);
});
