"""The waveform seek bar of <ztream-player> in real Chromium (issue 13).

A real ``ztream serve`` gateway transcodes a track from a slow loopback
upstream (ten times real time), so the waveform is seen while the
transcode still runs; then it is complete, clicking on it seeks, the
keyboard seeks, hovering shows a time, and ``normalize="-14"`` scales the
element's volume by the manifest's loudness. The screenshot goes to
docs/waveform.png. No media permissions are needed: nothing is captured.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from tests.support.browser import ROOT, ErrorLog, HostSite, launch, require_chromium
from transcode.ffmpeg import find_ffmpeg

pytestmark = [pytest.mark.timeout(120)]

WAIT = 30_000


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wave") / "song.wav"
    # Swells and fades, so the waveform has a shape worth seeing.
    expr = "0.6*sin(2*PI*220*t)*abs(sin(2*PI*t/20))*(0.7+0.3*sin(2*PI*3*t))"
    subprocess.run(
        [find_ffmpeg(""), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
         "-i", f"aevalsrc='{expr}|{expr}':s=48000:d=60", "-c:a", "pcm_s16le",
         "-metadata", "title=Night Drive", "-metadata", "artist=The Examples", str(path)],
        check=True, timeout=60,
    )
    return path


async def test_waveform_seek_bar(gateway_factory: Any, song: Path) -> None:
    require_chromium()

    async def slow(request: web.Request) -> web.StreamResponse:
        data = song.read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        await response.prepare(request)
        for i in range(0, len(data), 192_000):  # 1 s of audio per 0.1 s
            await response.write(data[i : i + 192_000])
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/song.wav", slow)
    upstream = TestServer(app, host="127.0.0.1")
    await upstream.start_server()
    try:
        gw = await asyncio.to_thread(
            gateway_factory, None, **{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}}
        )

        def post() -> dict[str, Any]:
            req = urllib.request.Request(
                f"{gw.url}/v1/tracks", data=json.dumps({"url": f"http://127.0.0.1:{upstream.port}/song.wav"}).encode(),
                headers={"Content-Type": "application/json"}, method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                return dict(json.loads(r.read()))

        track = await asyncio.to_thread(post)
        src = f"{gw.url}/v1/tracks/{track['id']}"
        page_html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>host</title><style>body {{ font-family: system-ui, sans-serif; background: #f5f5f7; margin: 0; padding: 24px; }}
ztream-player {{ max-width: 640px; }}</style>
<script>window.waves = []; document.addEventListener("waveform", (e) => window.waves.push(e.detail), true);</script>
<script type="module" src="{gw.url}/client/ztream-player.js"></script></head>
<body><ztream-player id="p" src="{src}" normalize="-14"></ztream-player></body></html>"""
        log = ErrorLog()
        async with HostSite({"": page_html}) as host, async_playwright() as pw:
            browser = await launch(pw)
            try:
                context = await browser.new_context(viewport={"width": 700, "height": 200}, device_scale_factor=2)
                page = await context.new_page()
                log.watch(page)
                await page.goto(host.url("/"))
                # It appears while the transcode still runs.
                await page.wait_for_function("window.waves.length > 0", timeout=WAIT)
                first = await page.evaluate("window.waves[0]")
                assert first["complete"] is False and first["length"] > 0
                assert await page.evaluate(
                    "document.getElementById('p').shadowRoot.querySelector('.seek').classList.contains('has-wave')")
                await page.wait_for_function(
                    "document.getElementById('p').waveform?.complete === true && document.getElementById('p').live === false",
                    timeout=WAIT)
                state = await page.evaluate("""() => { const p = document.getElementById('p');
                    const c = p.shadowRoot.querySelector('.wave'); const ctx = c.getContext('2d');
                    const px = ctx.getImageData(0, 0, c.width, c.height).data; let ink = 0;
                    for (let i = 3; i < px.length; i += 4) ink += px[i] > 0;
                    const s = p.shadowRoot.querySelector('.seek');
                    return {ink, area: c.width * c.height, role: s.getAttribute('role'), length: p.waveform.length,
                            duration: p.duration, gain: p.normalizationGain, volume: p.audio.volume,
                            userVolume: p.volume, loudness: p.manifest.loudness_lufs, peak: p.manifest.true_peak_db,
                            title: p.shadowRoot.querySelector('.title').textContent,
                            artist: p.shadowRoot.querySelector('.artist').textContent}; }""")
                assert state["role"] == "slider" and state["length"] == 1800
                assert 0.05 * state["area"] < state["ink"] < 0.9 * state["area"]  # drawn, and not a block
                assert 59 < state["duration"] < 61
                # normalize="-14": gain = target - loudness, clamped by the true peak and at 0 dB.
                expected_db = min(-14 - state["loudness"], -1 - state["peak"], 0)
                assert state["gain"] == pytest.approx(10 ** (expected_db / 20), rel=1e-6)
                assert state["gain"] < 1 and state["volume"] == pytest.approx(state["userVolume"] * state["gain"], abs=1e-3)
                # The title bar shows the file's tags, read again once the transcode ended.
                await page.wait_for_function(
                    "document.getElementById('p').shadowRoot.querySelector('.artist').textContent === 'The Examples'",
                    timeout=WAIT)
                assert await page.evaluate(
                    "document.getElementById('p').shadowRoot.querySelector('.title').textContent") == "Night Drive"

                seek = page.locator("ztream-player").locator(".seek")
                box = await seek.bounding_box()
                assert box is not None
                # Hovering shows the time under the pointer.
                await page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
                tip = await page.evaluate("""() => { const t = document.getElementById('p').shadowRoot.querySelector('.hover-time');
                    return {hidden: t.hidden, text: t.textContent}; }""")
                assert tip == {"hidden": False, "text": "0:30"}
                # Clicking seeks there.
                await page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
                await page.wait_for_function(
                    "Math.abs(document.getElementById('p').currentTime - 45) < 1", timeout=WAIT)
                now = await page.evaluate(
                    "Number(document.getElementById('p').shadowRoot.querySelector('.seek').getAttribute('aria-valuenow'))")
                assert 44 <= now <= 46
                # Keyboard: the slider takes the arrows.
                await seek.focus()
                before = await page.evaluate("document.getElementById('p').currentTime")
                await page.keyboard.press("ArrowLeft")
                await page.wait_for_function(
                    f"document.getElementById('p').currentTime < {before - 4}", timeout=WAIT)
                await page.keyboard.press("ArrowRight")
                await page.keyboard.press("ArrowRight")
                await page.wait_for_function(
                    f"document.getElementById('p').currentTime > {before + 4}", timeout=WAIT)
                text = await page.evaluate(
                    "document.getElementById('p').shadowRoot.querySelector('.seek').getAttribute('aria-valuetext')")
                assert "of" in text and "minute" in text
                await page.mouse.move(box["x"] + box["width"] * 0.62, box["y"] + box["height"] / 2)
                await page.locator("ztream-player").screenshot(path=str(ROOT / "docs" / "waveform.png"))
                log.assert_clean()
            finally:
                await browser.close()
    finally:
        await upstream.close()
