// What <ztream-player> tells the Media Session (media-session.js): pure.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SKIP_SECONDS, positionState, seekTarget, sessionActions, sessionMetadata } from "../../client/media-session.js";

test("metadata: title (override first), artist, album, artwork with its size", () => {
  const track = { title: "Song", artist: "Band", album: "LP", artwork_url: "https://gw/v1/tracks/a/artwork", artwork_width: 500, artwork_height: 500 };
  assert.deepEqual(sessionMetadata(track), {
    title: "Song", artist: "Band", album: "LP", artwork: [{ src: "https://gw/v1/tracks/a/artwork", sizes: "500x500" }],
  });
  assert.equal(sessionMetadata(track, "Shown title").title, "Shown title");
  assert.deepEqual(sessionMetadata({ ...track, artwork_width: undefined }).artwork, [{ src: "https://gw/v1/tracks/a/artwork" }]);
  assert.deepEqual(sessionMetadata(null), { title: "Untitled", artist: "", album: "", artwork: [] });
  assert.deepEqual(sessionMetadata({ title: 5, artist: null }), { title: "Untitled", artist: "", album: "", artwork: [] });
});

test("actions: next/previous only in a playlist", () => {
  const one = sessionActions({ tracks: 1 });
  assert.deepEqual(one.on, ["play", "pause", "seekto", "seekbackward", "seekforward"]);
  assert.deepEqual(one.off, ["previoustrack", "nexttrack"]);
  const many = sessionActions({ tracks: 3 });
  assert.ok(many.on.includes("nexttrack") && many.on.includes("previoustrack"));
  assert.deepEqual(many.off, []);
});

test("seek targets: to, back, forward, clamped to the track", () => {
  const at = { position: 50, duration: 100 };
  assert.equal(seekTarget("seekto", { seekTime: 20 }, at), 20);
  assert.equal(seekTarget("seekto", { seekTime: 500 }, at), 100);
  assert.equal(seekTarget("seekbackward", {}, at), 50 - SKIP_SECONDS);
  assert.equal(seekTarget("seekbackward", { seekOffset: 90 }, at), 0);
  assert.equal(seekTarget("seekforward", { seekOffset: 5 }, at), 55);
  assert.equal(seekTarget("seekforward", {}, { position: 5, duration: NaN }), 5 + SKIP_SECONDS);
  assert.equal(seekTarget("seekto", {}, at), null);
  assert.equal(seekTarget("play", {}, at), null);
});

test("position state: none while the duration is unknown, clamped otherwise", () => {
  assert.equal(positionState({ duration: NaN, position: 1, rate: 1 }), null);
  assert.equal(positionState({ duration: 0, position: 0, rate: 1 }), null);
  assert.deepEqual(positionState({ duration: 20, position: 25, rate: 1 }), { duration: 20, position: 20, playbackRate: 1 });
  assert.deepEqual(positionState({ duration: 20, position: NaN, rate: 0 }), { duration: 20, position: 0, playbackRate: 1 });
});
