// The other pure client modules: interface formatting, embed snippets, cache eviction.
import { test } from "node:test";
import assert from "node:assert/strict";

import { chunkKey, planEviction } from "../../client/cache.js";
import { formatTime, rangeFractions, seekKey, spokenTime } from "../../client/format.js";
import { componentSnippet, escapeHtml, iframeSnippet, oembedUrl, widgetSnippet } from "../../client/snippets.js";

test("formatTime", () => {
  assert.equal(formatTime(0), "0:00");
  assert.equal(formatTime(9.99), "0:09");
  assert.equal(formatTime(75.4), "1:15");
  assert.equal(formatTime(3725), "1:02:05");
  assert.equal(formatTime(NaN), "--:--");
  assert.equal(formatTime(Infinity), "--:--");
  assert.equal(formatTime(-1), "--:--");
});

test("spokenTime for aria-valuetext", () => {
  assert.equal(spokenTime(0), "0 seconds");
  assert.equal(spokenTime(61), "1 minute 1 second");
  assert.equal(spokenTime(3600), "1 hour");
  assert.equal(spokenTime(NaN), "unknown");
});

test("rangeFractions", () => {
  const round = (parts) => parts.map(({ left, width }) => [+left.toFixed(6), +width.toFixed(6)]);
  assert.deepEqual(round(rangeFractions([[0, 10], [30, 40]], 100)), [[0, 0.1], [0.3, 0.1]]);
  assert.deepEqual(round(rangeFractions([[90, 120]], 100)), [[0.9, 0.1]]);
  assert.deepEqual(rangeFractions([[0, 10]], NaN), []);
  assert.deepEqual(rangeFractions([[5, 5]], 10), []);
});

test("seekKey follows the WAI-ARIA slider keys", () => {
  const at = { position: 50, duration: 100 };
  assert.equal(seekKey("ArrowRight", at), 55);
  assert.equal(seekKey("ArrowUp", at), 55);
  assert.equal(seekKey("ArrowLeft", at), 45);
  assert.equal(seekKey("PageUp", at), 60);
  assert.equal(seekKey("PageDown", at), 40);
  assert.equal(seekKey("Home", at), 0);
  assert.equal(seekKey("End", at), 99.75);
  assert.equal(seekKey("ArrowLeft", { position: 2, duration: 100 }), 0);
  assert.equal(seekKey("ArrowRight", { position: 98, duration: 100 }), 100);
  assert.equal(seekKey("a", at), null);
});

test("embed snippets escape and point at the gateway", () => {
  assert.equal(escapeHtml(`<a href="x">'&'</a>`), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  const iframe = iframeSnippet("http://gw.example/", "abc", 'Say "hi" <now>');
  assert.match(iframe, /^<iframe /);
  assert.ok(iframe.includes('src="http://gw.example/embed/abc"'));
  assert.ok(iframe.includes('title="Say &quot;hi&quot; &lt;now&gt;"'));
  assert.ok(componentSnippet("http://gw.example", "abc").includes('<ztream-player src="http://gw.example/v1/tracks/abc">'));
  assert.ok(widgetSnippet("http://gw.example", "abc").includes('import { Widget } from "http://gw.example/client/widget.js"'));
  assert.equal(oembedUrl("http://gw.example", "a b"), "http://gw.example/oembed?url=http%3A%2F%2Fgw.example%2Fembed%2Fa%2520b&format=json");
});

test("cache eviction: least recently used first, down to the cap", () => {
  const entries = [
    { key: "t/r/0", size: 100, lastUsed: 5 },
    { key: "t/r/1", size: 100, lastUsed: 1 },
    { key: "t/r/2", size: 100, lastUsed: 3 },
    { key: "u/r/init", size: 50, lastUsed: 2 },
  ];
  assert.deepEqual(planEviction(entries, { maxBytes: 1000 }), []);
  assert.deepEqual(planEviction(entries, { maxBytes: 350 }), []);
  assert.deepEqual(planEviction(entries, { maxBytes: 350, incoming: 1 }), ["t/r/1"]);
  assert.deepEqual(planEviction(entries, { maxBytes: 300, incoming: 100 }), ["t/r/1", "u/r/init"]);
  assert.deepEqual(planEviction(entries, { maxBytes: 300, incoming: 100, keep: new Set(["t/r/1"]) }), ["u/r/init", "t/r/2"]);
  assert.deepEqual(planEviction(entries, { maxBytes: 0 }), ["t/r/1", "u/r/init", "t/r/2", "t/r/0"]);
  assert.equal(chunkKey("trk", "rend", 3), "trk/rend/3");
  assert.notEqual(chunkKey("a", "r", 1), chunkKey("b", "r", 1));
});
