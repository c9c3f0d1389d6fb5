// The players' shared waveform scaling and the placeholder artwork: pure helpers of format.js.
import assert from "node:assert/strict";
import { test } from "node:test";

import { placeholderArt, scalePeaks } from "../../client/format.js";

test("scalePeaks: a quiet track fills the bar like a loud one", () => {
  assert.deepEqual(scalePeaks([0.01, 0.05, 0.025]).map((v) => Math.round(v * 1000) / 1000), [0.2, 1, 0.5]);
  assert.deepEqual(scalePeaks([0.5, 1, 0.25]), [0.5, 1, 0.25]);
  // signed or nonsense values: magnitudes, non-finite as 0
  assert.deepEqual(scalePeaks([-0.2, "x", null, 0.1, Infinity]), [1, 0, 0, 0.5, 0]);
  // silence stays flat, nothing stays nothing
  assert.deepEqual(scalePeaks([0, 0]), [0, 0]);
  assert.deepEqual(scalePeaks([]), []);
  assert.deepEqual(scalePeaks(null), []);
});

test("placeholderArt: initials of artist and title, a stable gradient per track", () => {
  assert.equal(placeholderArt("Night Drive", "Band").initials, "BN");
  assert.equal(placeholderArt("night_drive").initials, "ND");
  assert.equal(placeholderArt("—").initials, "♪");
  assert.equal(placeholderArt("élan vital").initials, "ÉV");
  const a = placeholderArt("Night Drive", "Band");
  assert.deepEqual(placeholderArt("Night Drive", "Band"), a);
  assert.match(a.background, /^linear-gradient\(135deg, hsl\(\d+ 62% 46%\), hsl\(\d+ 70% 28%\)\)$/);
  assert.notEqual(placeholderArt("Other", "Band").background, a.background);
  // the same hues as the server's placeholder JPEG (tests/unit/transcode/test_placeholder.py)
  assert.equal(a.background, "linear-gradient(135deg, hsl(284 62% 46%), hsl(7 70% 28%))");
  assert.equal(placeholderArt("night_drive").background, "linear-gradient(135deg, hsl(56 62% 46%), hsl(145 70% 28%))");
});
