// SoundCloud's widget protocol as the /player/ page speaks it: client/sc-widget-protocol.js.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  COMMANDS,
  EVENTS,
  GETTERS,
  MAX_MESSAGE_CHARS,
  WidgetSession,
  knownParentOrigin,
  message,
  originAllowed,
  parseColor,
  parseMessage,
  playerOptions,
  progressValue,
  soundObject,
  soundcloudId,
} from "../../client/sc-widget-protocol.js";

const view = {
  getVolume: () => 80,
  getDuration: () => 20000,
  getPosition: () => 1234,
  getSounds: () => [{ id: 1 }],
  getCurrentSound: () => ({ id: 1 }),
  getCurrentSoundIndex: () => 0,
  isPaused: () => true,
};

test("messages are the JSON strings api.js sends", () => {
  assert.deepEqual(parseMessage('{"method":"play","value":null}'), { method: "play", value: null });
  assert.deepEqual(parseMessage('{"method":"seekTo","value":1500}'), { method: "seekTo", value: 1500 });
  assert.deepEqual(parseMessage('{"method":"setVolume","value":50}'), { method: "setVolume", value: 50 });
  assert.deepEqual(parseMessage('{"method":"skip","value":2}'), { method: "skip", value: 2 });
  assert.deepEqual(parseMessage('{"method":"addEventListener","value":"playProgress"}'), {
    method: "addEventListener",
    value: "playProgress",
  });
  for (const g of GETTERS) assert.deepEqual(parseMessage(JSON.stringify({ method: g, value: null })), { method: g, value: null });
  for (const c of ["play", "pause", "toggle", "next", "prev"]) assert.equal(parseMessage(JSON.stringify({ method: c })).method, c);
  assert.deepEqual(COMMANDS, ["play", "pause", "toggle", "seekTo", "setVolume", "next", "prev", "skip"]);
});

test("malformed messages are ignored, never thrown", () => {
  const bad = [
    undefined,
    null,
    42,
    { method: "play" }, // an object, not a JSON string
    ["play"],
    "",
    "play",
    "{not json",
    "null",
    "[]",
    '"play"',
    "{}",
    '{"method":5}',
    '{"method":"hello"}',
    '{"method":"__proto__"}',
    '{"method":"constructor"}',
    '{"method":"toString"}',
    '{"method":"seekTo","value":"1000"}',
    '{"method":"seekTo","value":-1}',
    '{"method":"seekTo","value":1e300}',
    '{"method":"seekTo"}',
    '{"method":"setVolume","value":"50"}',
    '{"method":"setVolume","value":null}',
    '{"method":"skip","value":1.5}',
    '{"method":"skip","value":-1}',
    '{"method":"skip","value":1e9}',
    '{"method":"addEventListener","value":"nope"}',
    '{"method":"addEventListener","value":["play"]}',
    '{"method":"removeEventListener"}',
    JSON.stringify({ method: "play", pad: "x".repeat(MAX_MESSAGE_CHARS) }),
  ];
  for (const raw of bad) assert.equal(parseMessage(raw), null, String(raw).slice(0, 60));
  // a huge string is refused by length before JSON.parse sees it
  assert.equal(parseMessage("[".repeat(5_000_000)), null);
  // setVolume clamps to SoundCloud's 0..100
  assert.equal(parseMessage('{"method":"setVolume","value":500}').value, 100);
  assert.equal(parseMessage('{"method":"setVolume","value":-3}').value, 0);
});

test("outgoing messages, byte for byte", () => {
  assert.equal(message("ready"), '{"method":"ready"}');
  assert.equal(message("getVolume", 80), '{"method":"getVolume","value":80}');
  assert.equal(message("isPaused", false), '{"method":"isPaused","value":false}');
  assert.equal(
    message("playProgress", { soundId: 7, loadedProgress: 0.5, currentPosition: 1000, relativePosition: 0.05 }),
    '{"method":"playProgress","value":{"soundId":7,"loadedProgress":0.5,"currentPosition":1000,"relativePosition":0.05}}',
  );
});

test("a session answers getters, routes commands, emits only bound events", () => {
  const s = new WidgetSession();
  assert.equal(s.emit("ready"), '{"method":"ready"}'); // whether or not anyone bound it
  assert.equal(s.emit("play", { soundId: 1 }), null);
  assert.deepEqual(s.receive('{"method":"addEventListener","value":"play"}', view), {});
  assert.equal(s.emit("play", { soundId: 1 }), '{"method":"play","value":{"soundId":1}}');
  assert.equal(s.emit("pause", {}), null);
  assert.equal(s.emit("bogus", {}), null);
  s.receive('{"method":"removeEventListener","value":"play"}', view);
  assert.equal(s.emit("play", {}), null);

  assert.deepEqual(s.receive('{"method":"getVolume","value":null}', view), { reply: '{"method":"getVolume","value":80}' });
  assert.deepEqual(s.receive('{"method":"isPaused","value":null}', view), { reply: '{"method":"isPaused","value":true}' });
  assert.deepEqual(s.receive('{"method":"getSounds","value":null}', view), { reply: '{"method":"getSounds","value":[{"id":1}]}' });
  assert.deepEqual(s.receive('{"method":"seekTo","value":15000}', view), { command: { method: "seekTo", value: 15000 } });
  assert.deepEqual(s.receive("garbage", view), {});
  // a getter whose answer is not JSON-able still answers something api.js can parse
  const odd = { getDuration: () => NaN, getCurrentSound: () => undefined };
  assert.deepEqual(s.receive('{"method":"getDuration","value":null}', odd), { reply: '{"method":"getDuration","value":0}' });
  assert.deepEqual(s.receive('{"method":"getCurrentSound","value":null}', odd), { reply: '{"method":"getCurrentSound","value":null}' });
  assert.deepEqual(s.receive('{"method":"getPosition","value":null}', {}), {});
  assert.deepEqual(Object.values(EVENTS).sort(), [
    "buyClicked", "downloadClicked", "error", "finish", "loadProgress", "pause", "play", "playProgress", "ready", "seek", "sharePanelOpened",
  ]);
});

test("event values and sound objects", () => {
  assert.deepEqual(progressValue({ soundId: 5, position: 10, duration: 20, loaded: 30 }), {
    soundId: 5,
    loadedProgress: 1,
    currentPosition: 10000,
    relativePosition: 0.5,
  });
  assert.deepEqual(progressValue({ soundId: "x", position: NaN, duration: Infinity, loaded: -1 }), {
    soundId: "x",
    loadedProgress: 0,
    currentPosition: 0,
    relativePosition: 0,
  });
  const sc = { id: "abc", title: "Song", duration: 8.5, artist: "Artist One", url: "soundcloud:tracks:101", permalink: "https://soundcloud.com/artist-one/song", artwork: "https://i1.sndcdn.com/a.jpg" };
  assert.equal(soundcloudId(sc), 101);
  const o = soundObject(sc, { publicUrl: "https://gw.example" });
  assert.equal(o.id, 101);
  assert.equal(o.ztream_id, "abc");
  assert.equal(o.duration, 8500);
  assert.equal(o.title, "Song");
  assert.equal(o.permalink_url, "https://soundcloud.com/artist-one/song");
  assert.equal(o.artwork_url, "https://i1.sndcdn.com/a.jpg");
  assert.equal(o.waveform_url, null);
  assert.deepEqual(o.user, { username: "Artist One", permalink_url: "https://soundcloud.com/artist-one" });
  const plain = soundObject({ id: "f00", title: "t", duration: null, artwork_url: "/v1/tracks/f00/artwork", waveform_url: "/w" }, { publicUrl: "https://gw.example", duration: 3 });
  assert.equal(plain.id, "f00");
  assert.equal(plain.duration, 3000);
  assert.equal(plain.permalink_url, "https://gw.example/embed/f00");
  assert.equal(plain.artwork_url, "/v1/tracks/f00/artwork");
  assert.equal(plain.waveform_url, "/w");
  assert.equal(soundObject(null).title, "");
});

test("query parameters with SoundCloud's meanings", () => {
  const o = playerOptions("?auto_play=true&color=%23FF00aa&sharing=false&visual=1&start_track=2&show_user=false&what=ever");
  assert.equal(o.autoPlay, true);
  assert.equal(o.color, "#ff00aa");
  assert.equal(o.sharing, false);
  assert.equal(o.visual, true);
  assert.equal(o.startTrack, 2);
  assert.equal(o.showUser, false);
  assert.equal(o.showArtwork, true);
  assert.equal(o.singleActive, true);
  const d = playerOptions("");
  assert.equal(d.autoPlay, false);
  assert.equal(d.visual, false);
  assert.equal(d.color, null);
  assert.equal(d.startTrack, 0);
  assert.equal(playerOptions("?start_track=-1").startTrack, 0);
  assert.equal(playerOptions("?start_track=1e9").startTrack, 0);
  assert.equal(playerOptions("?auto_play=maybe").autoPlay, false);
  assert.equal(d.upload, null);
  assert.equal(playerOptions("?upload=opt-in").upload, "opt-in");
  assert.equal(playerOptions("?upload=whatever").upload, "off", "an unknown policy is the strictest");
  assert.equal(parseColor("f50"), "#f50");
  assert.equal(parseColor("red"), null);
  assert.equal(parseColor("#12345g"), null);
});

test("the parent's origin", () => {
  assert.equal(knownParentOrigin({ ancestorOrigins: ["https://blog.example"], referrer: "https://other.example/x" }), "https://blog.example");
  assert.equal(knownParentOrigin({ ancestorOrigins: [], referrer: "http://localhost:8080/post?x=1" }), "http://localhost:8080");
  assert.equal(knownParentOrigin({ ancestorOrigins: ["null"], referrer: "" }), null);
  assert.equal(knownParentOrigin({}), null);
  assert.equal(knownParentOrigin({ referrer: "not a url" }), null);
  assert.equal(originAllowed("https://a.example", ["*"]), true);
  assert.equal(originAllowed("https://a.example", ["https://b.example"]), false);
  assert.equal(originAllowed("null", ["*"]), false);
  assert.equal(originAllowed("https://a.example", []), false);
});
