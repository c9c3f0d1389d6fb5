// Drives Debian's Firefox ESR for the Python tests and benchmarks (bench/firefox.py), over
// WebDriver BiDi with puppeteer-core (no browser download, no geckodriver).
//
// argv[2]: JSON options {executable, prefs, args}. Then one JSON command a
// line on stdin, one JSON answer a line on stdout:
//   {"id": 1, "op": "goto", "url": "..."}     -> {"id": 1, "ok": true}
//   {"id": 2, "op": "eval", "js": "expr"}     -> {"id": 2, "ok": true, "value": ...}
//   {"id": 3, "op": "route", "url": "...", "body": "<html>...", "contentType": "text/html"}
//                                             -> {"id": 3, "ok": true}: from then on the page
//      gets that body for that exact URL (request interception; other requests go on untouched),
//      as Playwright's page.route does for the Chromium tests
//   {"id": 4, "op": "close"}                  -> {"id": 4, "ok": true}, then exit
// Console messages and page errors go to stderr as JSON lines.
//
// Firefox's remote agent listens on the loopback of the namespace it runs
// in, so a test that wants Firefox inside a network namespace runs this
// whole script there (`ip netns exec NS node firefox.mjs`).

import readline from "node:readline";
import puppeteer from "puppeteer-core";

const options = JSON.parse(process.argv[2] || "{}");
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const log = (obj) => process.stderr.write(JSON.stringify(obj) + "\n");

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: options.executable || "/usr/bin/firefox-esr",
  headless: true,
  args: options.args || [],
  extraPrefsFirefox: {
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    // no update checks, telemetry or other traffic off this machine
    "app.update.enabled": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "toolkit.telemetry.enabled": false,
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
    "browser.safebrowsing.malware.enabled": false,
    "browser.safebrowsing.phishing.enabled": false,
    ...(options.prefs || {}),
  },
});
const page = await browser.newPage();
page.on("console", (msg) => log({ console: msg.type(), text: msg.text() }));
page.on("pageerror", (err) => log({ pageerror: String(err?.message || err) }));

const routes = new Map(); // url -> {body, contentType}
async function route(url, body, contentType) {
  if (routes.size === 0) {
    await page.setRequestInterception(true);
    page.on("request", (request) => {
      if (request.isInterceptResolutionHandled()) return;
      const fixed = routes.get(request.url());
      if (fixed) request.respond({ status: 200, contentType: fixed.contentType, body: fixed.body });
      else request.continue();
    });
  }
  routes.set(url, { body, contentType });
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  try {
    if (cmd.op === "goto") {
      await page.goto(cmd.url, { waitUntil: "load" });
      out({ id: cmd.id, ok: true });
    } else if (cmd.op === "eval") {
      const value = await page.evaluate(cmd.js);
      out({ id: cmd.id, ok: true, value: value === undefined ? null : value });
    } else if (cmd.op === "route") {
      await route(cmd.url, cmd.body, cmd.contentType || "text/html");
      out({ id: cmd.id, ok: true });
    } else if (cmd.op === "close") {
      out({ id: cmd.id, ok: true });
      break;
    } else {
      out({ id: cmd.id, ok: false, error: `unknown op ${cmd.op}` });
    }
  } catch (err) {
    out({ id: cmd.id, ok: false, error: String(err?.message || err) });
  }
}
// browser.close() settles within a second, but node then stayed up (stdin's
// handle keeps its loop alive): 15 s of every Firefox test went to
// Firefox.close()'s wait. Exit once the browser is closed (bounded: puppeteer
// kills a browser still running when node exits).
await Promise.race([browser.close(), new Promise((resolve) => setTimeout(resolve, 10000))]);
process.exit(0);
