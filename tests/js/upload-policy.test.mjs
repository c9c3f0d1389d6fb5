// client/upload-policy.js: the rules of listeners' consent and the upload cap,
// against the vectors peer/upload.py passes too (tests/vectors/upload/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { POLICIES, UploadBudget, decideUpload, formatBytes, metered, policyOf, shareView, stricter, stricterCap } from "../../client/upload-policy.js";

const vectors = JSON.parse(readFileSync(new URL("../vectors/upload/cases.json", import.meta.url)));

test("every decision of the vectors", () => {
  assert.equal(vectors.decide.length, 150);
  for (const { operator, embed, metered: m, choice, expect } of vectors.decide) {
    assert.deepEqual(decideUpload({ operator, embed, metered: m, choice }), expect, JSON.stringify({ operator, embed, m, choice }));
  }
});

test("every cap and budget sequence of the vectors", () => {
  for (const { a, b, expect } of vectors.caps) assert.equal(stricterCap(a, b), expect);
  for (const c of vectors.budgets) {
    const budget = new UploadBudget(c.kbps, c.burst);
    for (const step of c.steps) {
      let got = null;
      if (step.op === "canStart") got = budget.canStart(step.now);
      else if (step.op === "spend") budget.spend(step.bytes, step.now);
      else if (step.op === "readyAt") got = budget.readyAt(step.now);
      else if (step.op === "setCap") budget.setCap(step.kbps);
      assert.equal(got, step.expect, `${c.name}: ${JSON.stringify(step)}`);
    }
  }
});

test("the embed can only be stricter than the operator", () => {
  assert.equal(stricter("on", "off"), "off");
  assert.equal(stricter("off", "on"), "off");
  assert.equal(stricter("opt-in", null), "opt-in");
  assert.equal(stricter(null, null), "on");
  assert.deepEqual(decideUpload({ operator: "off", embed: "on", choice: "share" }), { share: false, ask: false, canShare: false, reason: "operator" });
  assert.deepEqual(decideUpload({ operator: "on", embed: "off", choice: "share" }), { share: false, ask: false, canShare: false, reason: "embed" });
  assert.equal(decideUpload({ operator: "opt-in", embed: "on" }).ask, true);
  assert.deepEqual([...POLICIES], ["on", "opt-in", "off"]);
});

test("an unknown policy is the strictest; an empty one is not said", () => {
  assert.equal(policyOf("sometimes"), "off");
  assert.equal(policyOf(""), null);
  assert.equal(policyOf(undefined), null);
  assert.equal(decideUpload({ operator: "maybe" }).share, false);
});

test("metered or save-data: no upload unless the listener says share; under opt-in the prompt still asks", () => {
  assert.equal(metered({ saveData: true }), true);
  assert.equal(metered({ type: "cellular" }), true);
  assert.equal(metered({ type: "wifi", saveData: false }), false);
  assert.equal(metered(undefined), false);
  assert.deepEqual(decideUpload({ operator: "on", metered: true }), { share: false, ask: false, canShare: true, reason: "metered" });
  assert.deepEqual(decideUpload({ operator: "opt-in", metered: true }), { share: false, ask: true, canShare: true, reason: "metered" });
  assert.equal(decideUpload({ operator: "on", metered: true, choice: "share" }).share, true);
});

test("the listener's stop wins over on; share over opt-in", () => {
  assert.deepEqual(decideUpload({ operator: "on", choice: "stop" }), { share: false, ask: false, canShare: true, reason: "listener" });
  assert.deepEqual(decideUpload({ operator: "opt-in", choice: "share" }), { share: true, ask: false, canShare: true, reason: "listener" });
  assert.deepEqual(decideUpload({ operator: "on" }), { share: true, ask: false, canShare: true, reason: "on" });
});

test("the cap holds over any window: rate × (window + burst) plus one chunk", () => {
  // 24 kB chunks served back to back whenever the budget allows, 60 s at 256 kbit/s
  const kbps = 256;
  const budget = new UploadBudget(kbps, 2);
  const sent = [];
  for (let now = 0; now <= 60; now += 0.01) {
    if (budget.canStart(now)) {
      budget.spend(24000, now);
      sent.push(now);
    }
  }
  const rate = kbps * 125;
  for (const w of [1, 5, 10, 30, 60]) {
    for (const start of sent) {
      const bytes = sent.filter((t) => t >= start && t < start + w).length * 24000;
      assert.ok(bytes <= rate * (w + 2) + 24000, `${bytes} B in ${w} s from ${start}`);
    }
  }
  const total = sent.length * 24000;
  assert.ok(total / 60 <= rate * 1.05 + (rate * 2 + 24000) / 60, `${total / 60} B/s`);
  assert.ok(total / 60 >= rate * 0.95, `${total / 60} B/s: the cap is not a brake beyond itself`);
});

test("what the player shows: nothing, the prompt, what it sent, or that it does not share", () => {
  assert.equal(shareView(null).mode, "hidden");
  assert.equal(shareView(decideUpload({ operator: "off" })).mode, "hidden", "off: nothing to offer");
  const ask = shareView(decideUpload({ operator: "opt-in" }), { kbps: 1000 });
  assert.equal(ask.mode, "prompt");
  assert.equal(ask.text, "Share this audio with other listeners? It uses up to 1000 kbit/s of your upload, and they see your IP address.");
  assert.match(shareView(decideUpload({ operator: "opt-in", metered: true }), { kbps: 0 }).text, /some of your upload.*metered connection/);
  assert.deepEqual(shareView(decideUpload({ operator: "on" }), { upBytes: 177027 }),
    { mode: "sharing", text: "Sharing: 177 kB sent", action: "stop", actionLabel: "Stop sharing" });
  assert.deepEqual(shareView(decideUpload({ operator: "on", metered: true })),
    { mode: "stopped", text: "Not sharing (metered connection)", action: "share", actionLabel: "Share" });
  assert.equal(shareView(decideUpload({ operator: "on", choice: "stop" })).text, "Not sharing");
  assert.deepEqual([0, 999, 1000, 9949, 177027, 1234567, 3.4e9].map(formatBytes), ["0 B", "999 B", "1.0 kB", "9.9 kB", "177 kB", "1.2 MB", "3.4 GB"]);
});
