import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  encode, decode, splitChunk, channelLabel, parseLabel, toRanges, Reassembler, WireError, PIECE_SIZE,
} from "../../client/protocol.js";

const vectors = JSON.parse(readFileSync(new URL("../vectors/wire/vectors.json", import.meta.url)));
const hex = (u8) => Buffer.from(u8).toString("hex");
const fromHex = (h) => new Uint8Array(Buffer.from(h, "hex"));

// data_size n stands for n zero bytes, ranges_count n for the ranges [2i, 2i]
function fromJson(m) {
  if (m.type === "piece") {
    const data = m.data_size !== undefined ? new Uint8Array(m.data_size) : fromHex(m.data_hex);
    return { type: "piece", index: m.index, offset: m.offset, total: m.total, data };
  }
  if (m.type === "have" && m.ranges_count !== undefined) {
    return { type: "have", ranges: Array.from({ length: m.ranges_count }, (_, i) => [2 * i, 2 * i]) };
  }
  return { ...m };
}

test("constants match the Python side", () => {
  assert.equal(vectors.piece_size, PIECE_SIZE);
  assert.equal(channelLabel(vectors.label.track, vectors.label.rendition), vectors.label.label);
  assert.deepEqual(parseLabel(vectors.label.label), { track: "abc123", rendition: "r1" });
  assert.throws(() => parseLabel("ztream/2/a/b"), WireError);
  assert.throws(() => parseLabel("other"), WireError);
});

for (const v of vectors.valid) {
  test(`encodes and decodes ${v.name} like the Python side`, () => {
    const msg = fromJson(v.message);
    assert.equal(hex(encode(msg)), v.hex);
    const back = decode(fromHex(v.hex));
    if (back.type === "piece") {
      assert.equal(hex(back.data), v.message.data_hex);
      assert.deepEqual({ ...back, data: null }, { ...msg, data: null });
    } else {
      assert.deepEqual(back, msg);
    }
  });
}

for (const v of vectors.invalid_encode) {
  test(`refuses to encode ${v.name}, as the Python side does`, () => {
    assert.throws(() => encode(fromJson(v.message)), WireError);
  });
}

for (const v of vectors.invalid) {
  test(`rejects ${v.name}`, () => {
    assert.throws(() => decode(fromHex(v.hex)), WireError);
  });
}

for (const v of vectors.unknown) {
  test(`decodes ${v.name} as unknown, as the Python side does`, () => {
    assert.deepEqual(decode(fromHex(v.hex)), { type: "unknown", code: v.code });
  });
}

test("a chunk split into pieces reassembles, and disorder is refused", () => {
  const data = new Uint8Array(40000).map((_, i) => i % 251);
  const pieces = splitChunk(7, data);
  assert.equal(pieces.length, 3);
  assert.ok(pieces.every((p) => p.data.length <= PIECE_SIZE));
  const r = new Reassembler();
  assert.throws(() => r.feed(pieces[0]), WireError); // not requested
  r.expect(7);
  assert.equal(r.feed(decode(encode(pieces[0]))), null);
  assert.throws(() => r.feed(pieces[2]), WireError); // skipped a piece
  r.expect(7);
  let out = null;
  for (const p of pieces) out = r.feed(decode(encode(p)));
  assert.deepEqual(out, data);
});

test("toRanges compacts indices", () => {
  assert.deepEqual(toRanges([5, 1, 2, 3, 9, 10, 2]), [[1, 3], [5, 5], [9, 10]]);
  assert.deepEqual(toRanges([]), []);
});
