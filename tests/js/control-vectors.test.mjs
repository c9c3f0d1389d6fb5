// client/control-protocol.js against tests/vectors/control/messages.json, the
// vectors protocol/codec.py passes too (tests/unit/protocol/test_messages.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { encodePeerMessage, parseServerMessage, mergeRanges } from "../../client/control-protocol.js";

const vectors = JSON.parse(readFileSync(new URL("../vectors/control/messages.json", import.meta.url)));

for (const v of vectors.server) {
  test(`reads the server's ${v.name} frame like the Python side`, () => {
    if (v.ok) assert.deepEqual(parseServerMessage(v.text), v.fields);
    else assert.equal(parseServerMessage(v.text), null);
  });
}

for (const v of vectors.cases.filter((c) => c.ok)) {
  test(`builds the canonical ${v.name} frame the gateway parses`, () => {
    assert.equal(encodePeerMessage({ type: v.type, ...v.fields }), v.encoded);
  });
}

test("every server message type has a vector", () => {
  assert.deepEqual(new Set(vectors.server.filter((v) => v.ok).map((v) => v.fields.type)),
    new Set(["welcome", "peers", "signal", "pong", "error", "turn"]));
});

test("a holding given as chunks and ranges is merged like the tracker's ChunkSet", () => {
  assert.equal(
    encodePeerMessage({ type: "have", track: "t", rendition: "r", chunks: [4, 9, 3], ranges: [[0, 2], [8, 8]] }),
    '{"type":"have","track":"t","rendition":"r","ranges":[[0,4],[8,9]]}',
  );
  assert.deepEqual(mergeRanges([[5, 9], [0, 3], [2, 6]]), [[0, 9]]);
});

test("refuses to build what the gateway could not read", () => {
  assert.throws(() => encodePeerMessage({ type: "dance" }), TypeError);
  assert.throws(() => encodePeerMessage({ type: "have", track: 1, rendition: "r" }), TypeError);
  assert.throws(() => encodePeerMessage({ type: "want", track: "t", rendition: "r", chunks: [1.5] }), TypeError);
  assert.throws(() => encodePeerMessage({ type: "signal", to: "p", data: "v=0" }), TypeError);
  assert.throws(() => encodePeerMessage({ type: "stats", startup_seconds: NaN }), TypeError);
  assert.throws(() => encodePeerMessage(null), TypeError);
});

test("optional fields are written only when given", () => {
  assert.equal(encodePeerMessage({ type: "have", track: "t", rendition: "r", ranges: [[2, 2]], complete: false }),
    '{"type":"have","track":"t","rendition":"r","ranges":[[2,2]],"complete":false}');
  assert.equal(encodePeerMessage({ type: "want", track: "t", rendition: "r" }), '{"type":"want","track":"t","rendition":"r"}');
  assert.equal(encodePeerMessage({ type: "stats", stalls: 1 }), '{"type":"stats","stalls":1}');
  assert.throws(() => encodePeerMessage({ type: "have", track: "t", rendition: "r", replace: 1 }), TypeError);
});
