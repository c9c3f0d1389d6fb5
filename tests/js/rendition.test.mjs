// The rendition a browser picks (client/rendition.js), by what its media path takes.
import assert from "node:assert/strict";
import { test } from "node:test";

import { DEFAULT_RENDITION, RENDITIONS, pickRendition, renditionQuery } from "../../client/rendition.js";

/** @param {string[]} types */
const takes = (types) => (/** @type {string} */ mime) => types.includes(mime);

test("the list matches the gateway's (docs/http.md, Renditions), WebM first", () => {
  assert.deepEqual(
    RENDITIONS.map((r) => [r.name, r.mime]),
    [
      ["webm", 'audio/webm; codecs="opus"'],
      ["fmp4-opus", 'audio/mp4; codecs="Opus"'],
      ["fmp4-aac", 'audio/mp4; codecs="mp4a.40.2"'],
    ],
  );
  assert.equal(DEFAULT_RENDITION, "webm");
  assert.throws(() => /** @type {any} */ (RENDITIONS).push({ name: "x", mime: "y" }));
});

test("Chromium and Firefox (WebM/Opus in MSE) keep WebM", () => {
  assert.equal(pickRendition(takes(['audio/webm; codecs="opus"', 'audio/mp4; codecs="mp4a.40.2"', 'audio/mp4; codecs="opus"']))?.name, "webm");
});

test("Safari before 17.4: Opus in fMP4 with the capital O it wants", () => {
  assert.equal(pickRendition(takes(['audio/mp4; codecs="Opus"', 'audio/mp4; codecs="mp4a.40.2"']))?.name, "fmp4-opus");
  // lowercase "opus" is not what Safari's MSE takes, and not what is asked
  const asked = [];
  pickRendition((mime) => {
    asked.push(mime);
    return false;
  });
  assert.ok(asked.includes('audio/mp4; codecs="Opus"') && !asked.includes('audio/mp4; codecs="opus"'));
});

test("an MSE without Opus at all: AAC in fMP4", () => {
  assert.equal(pickRendition(takes(['audio/mp4; codecs="mp4a.40.2"']))?.name, "fmp4-aac");
});

test("nothing taken, or an engine that throws: null (the <audio src> path)", () => {
  assert.equal(pickRendition(() => false), null);
  assert.equal(
    pickRendition(() => {
      throw new TypeError("unparsable type");
    }),
    null,
  );
  const offered = [{ name: "fmp4-aac", mime: "a" }, { name: "webm", mime: "b" }];
  assert.equal(pickRendition(takes(["a", "b"]), offered)?.name, "fmp4-aac"); // the offered order wins
});

test("the default's URLs carry no query; the others name their rendition", () => {
  assert.equal(renditionQuery("webm"), "");
  assert.equal(renditionQuery(null), "");
  assert.equal(renditionQuery(undefined), "");
  assert.equal(renditionQuery("fmp4-opus"), "?rendition=fmp4-opus");
  assert.equal(renditionQuery("a b&c"), "?rendition=a%20b%26c");
});
