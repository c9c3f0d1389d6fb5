// api.js: the reader of the JSON error contract shared by the pages and the player.
import { test } from "node:test";
import assert from "node:assert/strict";

import { ApiError, errorOf, fetchJson, retryAfterSeconds } from "../../client/api.js";

/** A fetch that answers `response` and records what it was asked. */
function fakeFetch(response) {
  const calls = [];
  const impl = async (url, init) => {
    calls.push({ url, init });
    return typeof response === "function" ? response() : response;
  };
  return { impl, calls };
}

const json = (body, status = 200, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });

test("a 2xx JSON answer resolves to its body; url and init reach fetch as given", async () => {
  const { impl, calls } = fakeFetch(json({ id: "t1", title: "x" }));
  const init = { method: "POST", body: "{}", credentials: "omit" };
  assert.deepEqual(await fetchJson("/v1/tracks", init, impl), { id: "t1", title: "x" });
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url, "/v1/tracks");
  assert.equal(calls[0].init, init);
});

test("a 2xx answer without a body resolves to null; one that is not JSON rejects", async () => {
  assert.equal(await fetchJson("/x", {}, fakeFetch(new Response(null, { status: 204 })).impl), null);
  assert.equal(await fetchJson("/x", {}, fakeFetch(new Response("", { status: 200 })).impl), null);
  await assert.rejects(fetchJson("/x", {}, fakeFetch(new Response("<html>", { status: 200 })).impl), SyntaxError);
});

test("an error answer rejects with the contract's status, code and detail", async () => {
  const { impl } = fakeFetch(json({ error: "track_not_found", detail: "no track 'abc'" }, 404));
  const err = await fetchJson("/v1/tracks/abc", {}, impl).catch((e) => e);
  assert.ok(err instanceof ApiError);
  assert.ok(err instanceof Error);
  assert.equal(err.status, 404);
  assert.equal(err.code, "track_not_found");
  assert.equal(err.detail, "no track 'abc'");
  assert.equal(err.message, "no track 'abc'");
  assert.equal(err.retryAfter, null);
});

test("Retry-After: whole seconds are read, anything else is null", async () => {
  const limited = await errorOf(json({ error: "rate_limited", detail: "slow down" }, 429, { "Retry-After": "17" }));
  assert.equal(limited.status, 429);
  assert.equal(limited.code, "rate_limited");
  assert.equal(limited.retryAfter, 17);
  const overloaded = await errorOf(json({ error: "overloaded", detail: "busy" }, 503, { "Retry-After": " 0 " }));
  assert.equal(overloaded.retryAfter, 0);
  assert.equal(retryAfterSeconds("Wed, 21 Oct 2015 07:28:00 GMT"), null);
  assert.equal(retryAfterSeconds("1.5"), null);
  assert.equal(retryAfterSeconds("-3"), null);
  assert.equal(retryAfterSeconds(""), null);
  assert.equal(retryAfterSeconds(null), null);
});

test("an error answer that is not the contract's JSON falls back to the status", async () => {
  for (const response of [
    new Response("<h1>Bad Gateway</h1>", { status: 502 }),
    new Response(null, { status: 502 }),
    json(null, 502),
    json(["error"], 502),
    json({ error: 5, detail: { text: "x" } }, 502),
  ]) {
    const err = await errorOf(response);
    assert.equal(err.status, 502);
    assert.equal(err.code, "http_502");
    assert.equal(err.detail, "");
    assert.equal(err.message, "HTTP 502");
  }
  // a code without a detail, and a detail without a code
  const codeOnly = await errorOf(json({ error: "overloaded" }, 503));
  assert.equal(codeOnly.code, "overloaded");
  assert.equal(codeOnly.message, "HTTP 503");
  const detailOnly = await errorOf(json({ detail: "why" }, 500));
  assert.equal(detailOnly.code, "http_500");
  assert.equal(detailOnly.message, "why");
});

test("a failed fetch rejects with the fetch's own error", async () => {
  const boom = new TypeError("Failed to fetch");
  await assert.rejects(fetchJson("/x", {}, async () => { throw boom; }), (err) => err === boom);
  const abort = new DOMException("aborted", "AbortError");
  await assert.rejects(fetchJson("/x", {}, async () => { throw abort; }), (err) => err === abort);
});

test("ApiError built by hand: the player's failures without an HTTP answer", () => {
  const err = new ApiError(0, "bad_chunk", "hash mismatch");
  assert.equal(err.status, 0);
  assert.equal(err.code, "bad_chunk");
  assert.equal(err.message, "hash mismatch");
  assert.equal(err.retryAfter, null);
  const bare = new ApiError(404);
  assert.equal(bare.code, "http_404");
  assert.equal(bare.message, "HTTP 404");
  assert.equal(bare.detail, "");
});
