// The media path choice (media-path.js), the bounded wait (deadline.js), the
// cache's bounded open and its pagehide/pageshow close and reopen (cache.js),
// and the WebRTC probe (transport.js).
import { test } from "node:test";
import assert from "node:assert/strict";

import { ChunkCache } from "../../client/cache.js";
import { within } from "../../client/deadline.js";
import { chooseMediaPath, mayFetch, sourceTakes } from "../../client/media-path.js";
import { webrtcUsable } from "../../client/transport.js";

const WEBM = 'audio/webm; codecs="opus"';
const MP4_OPUS = 'audio/mp4; codecs="Opus"';

/** A Media Source class that takes the given types. */
function source(...types) {
  const cls = class {};
  cls.isTypeSupported = (t) => types.includes(t);
  return cls;
}

test("ManagedMediaSource is preferred where it takes the type", () => {
  const Managed = source(WEBM);
  const Plain = source(WEBM);
  const path = chooseMediaPath({ ManagedMediaSource: Managed, MediaSource: Plain }, WEBM);
  assert.equal(path.mode, "managed-mse");
  assert.equal(path.MediaSource, Managed);
});

test("iPhone: only ManagedMediaSource", () => {
  const Managed = source(MP4_OPUS);
  assert.deepEqual(chooseMediaPath({ ManagedMediaSource: Managed }, MP4_OPUS), { mode: "managed-mse", MediaSource: Managed });
  // iOS before 17.4: WebM/Opus is not taken, and there is nothing else
  assert.deepEqual(chooseMediaPath({ ManagedMediaSource: Managed }, WEBM), { mode: "stream", MediaSource: null });
});

test("MediaSource when there is no managed one, or it refuses the type", () => {
  const Plain = source(WEBM);
  assert.deepEqual(chooseMediaPath({ MediaSource: Plain }, WEBM), { mode: "mse", MediaSource: Plain });
  assert.deepEqual(chooseMediaPath({ ManagedMediaSource: source(), MediaSource: Plain }, WEBM), { mode: "mse", MediaSource: Plain });
});

test("<audio src> when no Media Source takes the type, or the globals are odd", () => {
  assert.equal(chooseMediaPath({}, WEBM).mode, "stream");
  assert.equal(chooseMediaPath({ MediaSource: source(MP4_OPUS) }, WEBM).mode, "stream");
  assert.equal(chooseMediaPath({ MediaSource: {} }, WEBM).mode, "stream"); // not a class
  assert.equal(chooseMediaPath({ MediaSource: class {} }, WEBM).mode, "stream"); // no isTypeSupported
  const Throwing = class {};
  Throwing.isTypeSupported = () => {
    throw new Error("no");
  };
  assert.equal(chooseMediaPath({ ManagedMediaSource: Throwing }, WEBM).mode, "stream");
  const Truthy = class {};
  Truthy.isTypeSupported = () => "maybe"; // only `true` counts
  assert.equal(chooseMediaPath({ MediaSource: Truthy }, WEBM).mode, "stream");
});

test("sourceTakes: any Media Source of the page", () => {
  assert.equal(sourceTakes({ ManagedMediaSource: source(WEBM) }, WEBM), true);
  assert.equal(sourceTakes({ MediaSource: source(WEBM) }, MP4_OPUS), false);
});

test("mayFetch: a managed source that ended streaming stops fetches until the buffer runs nearly dry", () => {
  const base = { managed: true, playing: true, ahead: 20, emergencyAhead: 4 };
  assert.equal(mayFetch({ ...base, streaming: undefined }), true); // before it says anything
  assert.equal(mayFetch({ ...base, streaming: true }), true);
  assert.equal(mayFetch({ ...base, streaming: false }), false);
  assert.equal(mayFetch({ ...base, streaming: false, ahead: 3 }), true);
  assert.equal(mayFetch({ ...base, streaming: false, ahead: 3, playing: false }), false);
  assert.equal(mayFetch({ ...base, managed: false, streaming: false }), true);
});

test("within: the value in time, the fallback after the deadline, late values handed over", async () => {
  assert.equal(await within(Promise.resolve(7), 1000, null), 7);
  assert.equal(await within(Promise.reject(new Error("x")), 1000, "fallback"), "fallback");
  let late = null;
  let resolve;
  const slow = new Promise((r) => (resolve = r));
  const t0 = Date.now();
  assert.equal(await within(slow, 30, "fallback", (v) => (late = v)), "fallback");
  assert.ok(Date.now() - t0 < 1000);
  resolve("opened");
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(late, "opened");
});

// ---- a fake IndexedDB: enough of it for ChunkCache.open ---------------------------

function fakeIdb({ answerAfterMs = 0, records = [] } = {}) {
  const state = { opened: 0, closed: 0 };
  const db = {
    objectStoreNames: { contains: () => true },
    close() {
      state.closed += 1;
    },
    transaction() {
      return {
        objectStore: () => ({
          getAll() {
            const req = {};
            setTimeout(() => {
              req.result = records;
              req.onsuccess?.();
            }, 0);
            return req;
          },
        }),
      };
    },
  };
  const idb = {
    open() {
      const req = {};
      if (answerAfterMs !== null) {
        setTimeout(() => {
          state.opened += 1;
          req.result = db;
          req.onsuccess?.();
        }, answerAfterMs);
      }
      return req;
    },
  };
  return { idb, state };
}

test("ChunkCache.open: a database that answers is read", async () => {
  const { idb } = fakeIdb({ records: [{ key: "t/r/0", track: "t", rendition: "r", index: 0, size: 10, lastUsed: 1 }] });
  const cache = await ChunkCache.open({ idb, timeoutMs: 1000 });
  assert.ok(cache);
  assert.deepEqual(cache.indices("t", "r"), [0]);
});

test("ChunkCache.open: an open that never completes gives null within the deadline", async () => {
  const { idb } = fakeIdb({ answerAfterMs: null });
  const t0 = Date.now();
  assert.equal(await ChunkCache.open({ idb, timeoutMs: 50 }), null);
  assert.ok(Date.now() - t0 < 1000);
});

test("ChunkCache.open: a database that opens after the deadline is closed again", async () => {
  const { idb, state } = fakeIdb({ answerAfterMs: 80 });
  assert.equal(await ChunkCache.open({ idb, timeoutMs: 20 }), null);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(state.opened, 1);
  assert.equal(state.closed, 1);
});

test("suspend closes the database and misses; resume opens it again and re-reads", async () => {
  const records = [{ key: "t/r/0", track: "t", rendition: "r", index: 0, size: 10, lastUsed: 1 }];
  const { idb, state } = fakeIdb({ records });
  const cache = await ChunkCache.open({ idb, timeoutMs: 1000 });
  cache.suspend();
  assert.equal(state.closed, 1);
  assert.equal(cache.db, null);
  assert.equal(await cache.get("t", "r", 0), null);
  assert.equal(await cache.put("t", "r", 1, new ArrayBuffer(4)), false);
  assert.equal(await cache.getManifest("t"), null);
  records.push({ key: "t/r/1", track: "t", rendition: "r", index: 1, size: 10, lastUsed: 2 }); // another page added one
  assert.equal(await cache.resume(), true);
  assert.ok(cache.db);
  assert.deepEqual(cache.indices("t", "r"), [0, 1]);
});

test("resume that does not answer in time leaves the cache closed", async () => {
  const fake = fakeIdb();
  const cache = await ChunkCache.open({ idb: fake.idb, timeoutMs: 1000 });
  cache.suspend();
  const stuck = fakeIdb({ answerAfterMs: null });
  cache.reopen.idb = stuck.idb;
  cache.reopen.timeoutMs = 30;
  assert.equal(await cache.resume(), false);
  assert.equal(cache.db, null);
});

test("webrtcUsable: missing, throwing and working constructors", () => {
  assert.equal(webrtcUsable(undefined), false);
  assert.equal(
    webrtcUsable(function Blocked() {
      throw new Error("blocked by policy");
    }),
    false,
  );
  let closed = 0;
  class Works {
    close() {
      closed += 1;
    }
  }
  assert.equal(webrtcUsable(Works), true);
  assert.equal(closed, 1);
});
