// Writes cases.json: client/upload-policy.js's answers for every combination
// of the policy's inputs, and upload budgets driven through a few sequences.
// Run `node tests/vectors/upload/generate.mjs` after a deliberate change of
// the rules, read the diff, and make peer/upload.py agree
// (tests/unit/peer/test_upload.py; tests/js/upload-policy.test.mjs runs the
// browser's side).
import { writeFileSync } from "node:fs";

import { UploadBudget, decideUpload, stricterCap } from "../../../client/upload-policy.js";

const decide = [];
for (const operator of [null, "on", "opt-in", "off", "sometimes"]) {
  for (const embed of [null, "", "on", "opt-in", "off"]) {
    for (const metered of [false, true]) {
      for (const choice of [null, "share", "stop"]) {
        decide.push({ operator, embed, metered, choice, expect: decideUpload({ operator, embed, metered, choice }) });
      }
    }
  }
}

const caps = [[0, 0], [0, 500], [800, 0], [800, 500], [300, 500], [-1, 200]].map(([a, b]) => ({ a, b, expect: stricterCap(a, b) }));

/** Each step: {op, ...args}; `expect` is what the budget answered (null for spend/setCap). */
function runBudget({ kbps, burst, steps }) {
  const b = new UploadBudget(kbps, burst);
  return steps.map((step) => {
    let expect = null;
    if (step.op === "canStart") expect = b.canStart(step.now);
    else if (step.op === "spend") b.spend(step.bytes, step.now);
    else if (step.op === "readyAt") expect = b.readyAt(step.now);
    else if (step.op === "setCap") b.setCap(step.kbps);
    return { ...step, expect };
  });
}

const budgets = [
  { name: "no cap: always", kbps: 0, burst: 2, steps: [
    { op: "canStart", now: 0 }, { op: "spend", bytes: 1e9, now: 0 }, { op: "canStart", now: 0 }, { op: "readyAt", now: 1 },
  ] },
  { name: "a burst, then debt paid back at the rate", kbps: 1000, burst: 2, steps: [
    { op: "canStart", now: 0 }, { op: "spend", bytes: 200000, now: 0 }, { op: "canStart", now: 0 }, { op: "spend", bytes: 100000, now: 0.1 },
    { op: "canStart", now: 0.2 }, { op: "readyAt", now: 0.2 }, { op: "canStart", now: 0.75 }, { op: "canStart", now: 0.85 },
    { op: "spend", bytes: 24000, now: 0.85 }, { op: "readyAt", now: 0.9 }, { op: "canStart", now: 100 }, { op: "spend", bytes: 1, now: 100 },
    { op: "canStart", now: 99 },
  ] },
  { name: "a new cap starts full", kbps: 8, burst: 1, steps: [
    { op: "spend", bytes: 5000, now: 0 }, { op: "canStart", now: 1 }, { op: "setCap", kbps: 16 }, { op: "canStart", now: 1 },
    { op: "spend", bytes: 2500, now: 1 }, { op: "readyAt", now: 1 }, { op: "setCap", kbps: 0 }, { op: "canStart", now: 1 },
  ] },
].map((c) => ({ ...c, steps: runBudget(c) }));

const url = new URL("./cases.json", import.meta.url);
writeFileSync(url, `${JSON.stringify({ note: "written by generate.mjs from client/upload-policy.js; see that file", decide, caps, budgets }, null, 1)}\n`);
console.log(`${decide.length} decisions, ${caps.length} caps, ${budgets.length} budgets -> ${url.pathname}`);
