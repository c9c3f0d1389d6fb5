// client/p2p.js against the shared P2P vectors (tests/vectors/p2p/); peer/core.py
// runs the same ones in tests/unit/peer/test_core.py.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { DEFAULT_P2P_SETTINGS, MAX_REPORT } from "../../client/p2p.js";
import { newCore, runStep } from "./p2p-vectors-run.mjs";

const read = (name) => JSON.parse(readFileSync(new URL(`../vectors/p2p/${name}`, import.meta.url)));
const constants = read("constants.json");
const { cases } = read("cases.json");

test("the defaults are the shared constants", () => {
  assert.deepEqual({ ...DEFAULT_P2P_SETTINGS }, constants.settings);
  assert.equal(MAX_REPORT, constants.max_report);
});

test("the vectors cover every kind of event and effect", () => {
  const steps = cases.flatMap((c) => c.steps);
  const events = new Set(steps.map((s) => s.on));
  const kinds = new Set(steps.flatMap((s) => (Array.isArray(s.expect) ? s.expect.map((e) => e.kind) : [])));
  for (const e of ["control", "controlClosed", "startSession", "updateManifest", "stopSession", "chunkAdded", "chunkDropped",
    "request", "cancel", "verifyFailed", "noteStartup", "channelOpen", "channelClosed", "frame", "served", "tick", "flushStats", "waitUntil", "lookup"]) {
    assert.ok(events.has(e), e);
  }
  for (const k of ["control", "open", "rtc", "close", "send", "serve", "deliver", "reject", "peerHave", "peerGone"]) assert.ok(kinds.has(k), k);
});

for (const c of cases) {
  test(`vector: ${c.name}`, () => {
    const core = newCore(c.settings);
    c.steps.forEach((step, i) => {
      assert.deepEqual(runStep(core, step), step.expect, `step ${i} (${step.on} at ${step.now})`);
    });
  });
}
