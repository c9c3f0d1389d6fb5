// The widget wire format: node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  CHANNEL,
  EVENTS,
  command,
  event,
  eventName,
  originAllowed,
  originOf,
  parseColor,
  parseCommand,
  parseFromEmbed,
  reply,
  volumeFraction,
} from "../../client/widget-protocol.js";

test("the seven events of the design, and a live track's two", () => {
  assert.deepEqual(Object.keys(EVENTS).sort(), ["ERROR", "FINISH", "LIVE_CHANGE", "PAUSE", "PLAY", "PLAY_PROGRESS", "READY", "SEEK", "TITLE_CHANGE"]);
  assert.equal(eventName("TITLE_CHANGE"), "titleChange");
  assert.equal(parseFromEmbed(event("liveChange", { state: "reconnecting", title: null, station: "R" }))?.event, "liveChange");
  assert.deepEqual(parseCommand(command("getLiveState", undefined, 4)), { method: "getLiveState", value: undefined, id: 4 });
  assert.equal(eventName("PLAY_PROGRESS"), "playProgress");
  assert.equal(eventName("playProgress"), "playProgress");
  assert.equal(eventName("READY"), "ready");
  assert.equal(eventName("nope"), null);
  assert.equal(eventName("toString"), null);
  assert.equal(eventName(undefined), null);
});

test("commands round-trip and are validated", () => {
  assert.deepEqual(parseCommand(command("play")), { method: "play", value: undefined, id: undefined });
  assert.deepEqual(parseCommand(command("seekTo", 1500)), { method: "seekTo", value: 1500, id: undefined });
  assert.deepEqual(parseCommand(command("getPosition", undefined, 7)), { method: "getPosition", value: undefined, id: 7 });
  assert.equal(parseCommand(command("seekTo", "1500")), null);
  assert.equal(parseCommand(command("seekTo", NaN)), null);
  assert.equal(parseCommand(command("setVolume", Infinity)), null);
  assert.equal(parseCommand(command("getPosition")), null); // a getter needs an id
  assert.equal(parseCommand(command("getDuration", undefined, -1)), null);
  assert.equal(parseCommand(command("eval")), null);
  assert.equal(parseCommand(command("__proto__")), null);
  assert.equal(parseCommand({ ...command("play"), channel: "other" }), null);
  assert.equal(parseCommand({ ...command("play"), v: 2 }), null);
  assert.equal(parseCommand(event("play")), null);
  for (const junk of [null, undefined, 3, "play", [], { method: "play" }]) assert.equal(parseCommand(junk), null);
});

test("events and replies from the embed", () => {
  assert.deepEqual(parseFromEmbed(event(EVENTS.PLAY_PROGRESS, { currentPosition: 10 })), {
    kind: "event",
    event: "playProgress",
    data: { currentPosition: 10 },
  });
  assert.deepEqual(parseFromEmbed(event(EVENTS.READY, null)), { kind: "event", event: "ready", data: {} });
  assert.deepEqual(parseFromEmbed(reply(3, 1234)), { kind: "reply", id: 3, value: 1234 });
  assert.equal(parseFromEmbed(event("explode")), null);
  assert.equal(parseFromEmbed(reply("3", 1)), null);
  assert.equal(parseFromEmbed(command("play")), null);
  assert.equal(parseFromEmbed({ channel: CHANNEL, v: 1 }), null);
});

test("origins", () => {
  assert.equal(originOf("http://127.0.0.1:8000/embed/x?autoplay=1"), "http://127.0.0.1:8000");
  assert.equal(originOf("/embed/x", "https://host.example/page"), "https://host.example");
  assert.equal(originOf("about:blank"), null);
  assert.equal(originOf("not a url"), null);
  assert.equal(originAllowed("https://a.example", ["*"]), true);
  assert.equal(originAllowed("https://a.example", ["https://a.example"]), true);
  assert.equal(originAllowed("https://b.example", ["https://a.example"]), false);
  assert.equal(originAllowed("null", ["*"]), false);
  assert.equal(originAllowed("https://a.example", []), false);
  assert.equal(originAllowed(undefined, ["*"]), false);
});

test("colour and volume parameters", () => {
  assert.equal(parseColor("ff5500"), "#ff5500");
  assert.equal(parseColor("#F50"), "#f50");
  assert.equal(parseColor(" 00aa88 "), "#00aa88");
  for (const bad of ["red", "#12345", "ff550g", "url(x)", "", null, "00aa88;background:red"]) assert.equal(parseColor(bad), null);
  assert.equal(volumeFraction(50), 0.5);
  assert.equal(volumeFraction(150), 1);
  assert.equal(volumeFraction(-3), 0);
  assert.equal(volumeFraction("50"), null);
});
