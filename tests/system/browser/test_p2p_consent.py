"""Listeners' consent and limits, in real Chromium pages behind NAT routers (docs/p2p.md, "Listeners' consent").

The world of ``test_p2p.py`` (``bench.world``): each listener in its own
namespace behind its own NAT router, the gateway's built-in STUN responder,
no media permissions, the 20 s tone track (2 s chunks; a listener's first
10 s come from the server).

- ``p2p.upload = "opt-in"``: a listener sees the prompt and, until it answers,
  serves nobody (a later listener gets every byte from the server); once it
  presses "Share" (a real click) the next listener gets the rest from it, and
  its player says how much it sent; "Stop sharing" withdraws it.
- ``p2p.upload_kbps``: a seeder uploads no faster than the cap, measured as
  bytes sent over time in the seeder's page, while a listener whose page says
  ``data-upload="off"`` holds the whole track and serves no one.
- A metered connection (``navigator.connection.saveData``, as Chromium
  exposes it; set by the test page) does not upload until the listener
  presses "Share"; this one on loopback, a third-party page embedding the
  player.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.support.browser import ErrorLog, HostSite, launch, require_chromium, until
from tests.support.netns import require_netns
from tests.support.world import (
    SERVER_LEAD,
    Browser,
    World,
    check_audio,
    manifest,
    p2p,
    play,
    seeded,
    server_bytes,
    tone_track,
)

pytestmark = [pytest.mark.timeout(150)]

SHARE = "document.getElementById('p').shadowRoot"

# The seeder's bytes sent, sampled in its page every 100 ms: [[ms, upBytes], ...].
SAMPLER = """
window.upSamples = [];
setInterval(() => {
  const info = document.getElementById('p')?.p2p;
  if (info) window.upSamples.push([performance.now(), info.upBytes]);
}, 100);
"""


def _lead_and_rest(m: dict[str, Any]) -> tuple[int, int]:
    lead = {c["index"] for c in m["chunks"] if c["start"] < SERVER_LEAD}
    lead_bytes = m["init"]["size"] + sum(c["size"] for c in m["chunks"] if c["index"] in lead)
    rest_bytes = sum(c["size"] for c in m["chunks"] if c["index"] not in lead)
    return lead_bytes, rest_bytes


async def _share_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(f"""(() => {{
      const root = {SHARE};
      const prompt = root.querySelector('.share-prompt');
      const line = root.querySelector('.share-line');
      const label = prompt.getAttribute('aria-labelledby');
      return {{
        prompt: !prompt.hidden, role: prompt.getAttribute('role'),
        label: label ? root.getElementById(label)?.textContent ?? null : null,
        buttons: [...prompt.querySelectorAll('button')].map((b) => b.textContent),
        line: line.hidden ? null : line.textContent, lineButton: line.querySelector('button').getAttribute('aria-label'),
      }};
    }})()""")
    return state


async def test_opt_in_prompt_nobody_served_before_yes_then_shared_and_stopped(tmp_path: Path, audio_dir: Path) -> None:
    require_netns()
    world = World(tmp_path, audio_dir, p2p={"upload": "opt-in"})
    try:
        gw = world.gw
        tid = tone_track(gw)["id"]
        m = manifest(gw, tid)
        lead_bytes, rest_bytes = _lead_and_rest(m)
        log = ErrorLog()
        async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
            seeder = await b.listener(tid)
            await play(seeder)
            await seeded(seeder, m)
            await until(seeder, f"!{SHARE}.querySelector('.share-prompt').hidden", timeout=10)
            asked = await _share_state(seeder)
            info = await p2p(seeder)
            assert info["operator"] == {"upload": "opt-in", "uploadKbps": 1000}
            assert info["uploading"] is False and info["upBytes"] == 0
            assert asked["prompt"] and asked["role"] == "group" and asked["line"] is None
            assert asked["buttons"] == ["Share", "Not now"]
            assert asked["label"] and asked["label"].startswith("Share this audio with other listeners?")
            assert "IP address" in asked["label"] and "up to 1000 kbit/s" in asked["label"]

            # Nobody answered: a second listener gets every byte from the server.
            before = await asyncio.to_thread(server_bytes, gw)
            first = await b.listener(tid, home=1)
            await play(first)
            await until(first, "window.finished", timeout=45)
            after = await asyncio.to_thread(server_bytes, gw)
            stats1 = await first.evaluate("document.getElementById('p').stats")
            assert stats1["peerBytes"] == 0 and stats1["stalls"] == 0
            assert stats1["httpBytes"] == after - before >= lead_bytes + rest_bytes
            assert (await p2p(seeder))["upBytes"] == 0
            await first.close()

            # The listener says yes (a real click on the prompt's button).
            await seeder.locator("ztream-player .share-yes").click()
            await until(seeder, "document.getElementById('p').p2p.uploading === true", timeout=5)
            yes = await _share_state(seeder)
            assert not yes["prompt"] and yes["line"] is not None and yes["line"].startswith("Sharing: 0 B sent")
            assert yes["lineButton"] == "Stop sharing with other listeners"
            assert await seeder.evaluate("localStorage.getItem('ztream-upload')") == "share"

            before = await asyncio.to_thread(server_bytes, gw)
            second = await b.listener(tid, home=1)
            await play(second)
            await until(second, "window.finished", timeout=45)
            after = await asyncio.to_thread(server_bytes, gw)
            stats2 = await second.evaluate("document.getElementById('p').stats")
            await check_audio(second, m)
            up = (await p2p(seeder))["upBytes"]
            await until(seeder, f"/Sharing: [0-9.]+ kB sent/.test({SHARE}.querySelector('.share-line').textContent)", timeout=3)
            line = (await _share_state(seeder))["line"]
            print(f"\nopt-in: before yes, the second listener took {stats1['httpBytes']} B from the server and 0 from peers; "
                  f"after yes the third took {after - before:.0f} B from the server and {stats2['peerBytes']} B from the seeder "
                  f"(seeder sent {up} B; its player says {line!r})")
            assert stats2["stalls"] == 0
            assert stats2["peerBytes"] >= 0.8 * rest_bytes
            assert up >= stats2["peerBytes"]
            assert line and re.match(r"Sharing: [0-9.]+ kB sent", line)

            # Stop sharing: the tracker's holding is withdrawn, requests are choked.
            await seeder.locator("ztream-player .share-toggle").click()
            await until(seeder, "document.getElementById('p').p2p.uploading === false", timeout=5)
            stopped = await _share_state(seeder)
            assert stopped["line"] is not None and stopped["line"].startswith("Not sharing")
            assert await seeder.evaluate("localStorage.getItem('ztream-upload')") == "stop"
        log.assert_clean()
    finally:
        world.close()


async def test_upload_cap_holds_and_a_page_with_upload_off_serves_no_one(tmp_path: Path, audio_dir: Path) -> None:
    require_netns()
    kbps = 64
    world = World(tmp_path, audio_dir, count=3, p2p={"upload_kbps": kbps})
    try:
        gw = world.gw
        tid = tone_track(gw)["id"]
        m = manifest(gw, tid)
        _lead, rest_bytes = _lead_and_rest(m)
        log = ErrorLog()
        async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
            capped = await b.listener(tid, script=SAMPLER)
            refuser = await b.listener(tid, attrs='data-upload="off"', home=1)
            for page in (capped, refuser):
                await play(page)
                await seeded(page, m)
            assert (await p2p(refuser))["uploading"] is False
            assert (await _share_state(refuser))["line"] is None, "off by the page: nothing to offer"

            leecher = await b.listener(tid, home=2)
            await play(leecher)
            await until(leecher, "window.finished", timeout=45)
            stats = await leecher.evaluate("document.getElementById('p').stats")
            info_l = await p2p(leecher)
            samples = await capped.evaluate("window.upSamples")
            info_c, info_r = await p2p(capped), await p2p(refuser)
            await check_audio(leecher, m)

        # The page with upload off served nothing, and nobody was introduced to it.
        assert info_r["upBytes"] == 0
        assert info_r["peerId"] not in [n["id"] for n in info_l["neighbours"]]
        assert info_c["uploadKbps"] == kbps

        # The cap, as bytes over time in the capped seeder's page: over every
        # window, at most rate × (window + 2 s burst) plus one chunk.
        rate = kbps * 1000 / 8
        biggest = max(c["size"] for c in m["chunks"])
        moving = [(t / 1000, n) for t, n in samples]
        start = next(t for t, n in moving if n > 0)
        sent = moving[-1][1]
        worst = 0.0
        for i, (t0, n0) in enumerate(moving):
            for t1, n1 in moving[i + 1:]:
                w = t1 - t0
                excess = (n1 - n0) - (rate * (w + 2) + biggest)
                worst = max(worst, excess)
        last = next(t for t, n in moving if n == sent)
        span = max(last - start, 1e-3)
        print(f"\ncap {kbps} kbit/s ({rate:.0f} B/s): the seeder sent {sent} B in {span:.1f} s "
              f"({sent / span:.0f} B/s incl. the first burst); the leecher took {stats['peerBytes']} B from peers, "
              f"{stats['httpBytes']} B from the server, {stats['stalls']} stalls; worst window excess {worst:.0f} B")
        assert worst <= 0, f"the cap was exceeded by {worst:.0f} B in some window"
        assert stats["peerBytes"] > 0 and sent >= stats["peerBytes"]
        assert stats["peerBytes"] + stats["httpBytes"] >= rest_bytes
        assert stats["stalls"] == 0
        log.assert_clean()
    finally:
        world.close()


async def test_metered_connection_does_not_upload_until_the_listener_says_share(gateway: Any) -> None:
    require_chromium()
    tid = gateway.library_ids[0]
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>host</title>
<script>Object.defineProperty(navigator, "connection", {{value: {{saveData: true, type: "wifi"}}, configurable: true}});</script>
<script type="module" src="{gateway.url}/client/ztream-player.js"></script></head>
<body><ztream-player id="p" src="{gateway.url}/v1/tracks/{tid}"></ztream-player></body></html>"""
    log = ErrorLog()
    async with HostSite({"": html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            await page.goto(host.url("/"))
            await until(page, f"!{SHARE}.querySelector('.share-line').hidden", timeout=20)
            state = await _share_state(page)
            info = await page.evaluate("document.getElementById('p').p2p")
            assert info["uploading"] is False and info["operator"]["upload"] == "on"
            assert not state["prompt"] and state["line"] == "Not sharing (metered connection)Share"
            assert state["lineButton"] == "Share with other listeners"
            await page.locator("ztream-player .share-toggle").click()
            await until(page, "document.getElementById('p').p2p.uploading === true", timeout=5)
            assert (await _share_state(page))["line"].startswith("Sharing: ")
        finally:
            await browser.close()
    log.assert_clean()
