// The player's pure helpers for loudness and waveform: the normalisation gain and the waveform's bars.
import assert from "node:assert/strict";
import { test } from "node:test";

import { normalizeGain, waveformBars } from "../../client/player.js";

const db = (g) => 20 * Math.log10(g);

test("normalizeGain: target minus loudness, clamped by the true peak and at 0 dB", () => {
  // A loud master (-8 LUFS, peak -0.3 dBTP) is turned down by 6 dB.
  assert.ok(Math.abs(db(normalizeGain({ loudness_lufs: -8, true_peak_db: -0.3 }, "-14")) + 6) < 1e-9);
  // A quiet track is not amplified (element volume cannot go past 1).
  assert.equal(normalizeGain({ loudness_lufs: -20, true_peak_db: -6 }, "-14"), 1);
  // The true-peak clamp: -10 LUFS with a +0.5 dBTP peak needs -4 dB by loudness, -1.5 dB by peak: -4 wins.
  assert.ok(Math.abs(db(normalizeGain({ loudness_lufs: -10, true_peak_db: 0.5 }, "-14")) + 4) < 1e-9);
  // A -16 LUFS track at +1 dBTP aimed at -14: +2 dB by loudness, but the peak allows only -2 dB.
  assert.ok(Math.abs(db(normalizeGain({ loudness_lufs: -16, true_peak_db: 1 }, "-14")) + 2) < 1e-9);
  // Off, unknown or nonsense: no change.
  for (const [m, t] of [[{ loudness_lufs: -8 }, null], [{ loudness_lufs: null }, "-14"], [null, "-14"], [{ loudness_lufs: -8 }, "loud"]]) {
    assert.equal(normalizeGain(m, t), 1);
  }
});

test("waveformBars: maxima per bar, and only the covered part while the transcode runs", () => {
  const wave = { peaks: [0, 0.2, 1, 0.1, 0.5, 0.5, 0, 0.9], duration: 8 };
  const bars = waveformBars(wave, 8, 4);
  assert.deepEqual(bars.map((b) => b.peak), [0.2, 1, 0.5, 0.9]);
  assert.equal(bars[0].x0, 0);
  assert.equal(bars.at(-1).x1, 1);
  // 8 s of peaks of a 16 s track fill the first half only.
  const half = waveformBars(wave, 16, 4);
  assert.equal(half.length, 2);
  assert.equal(half.at(-1).x1, 0.5);
  assert.deepEqual(waveformBars({ peaks: [] }, 10, 4), []);
  assert.deepEqual(waveformBars(null, 10, 4), []);
});
