"""The fMP4 renditions in real Chromium: played through MSE, and shared P2P.

Chromium takes WebM/Opus, so the page makes it answer like a browser that
does not: ``MediaSource.isTypeSupported`` says yes only to one fMP4 type (as
Safari before 17.4 does for WebM), and the player must pick that rendition
(client/rendition.js), fetch its URLs with ``?rendition=`` and play its
fragments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.support.browser import RENDITION_MIMES as MIMES
from tests.support.browser import ErrorLog, HostSite, launch, only_mse_type, require_chromium, until
from tests.support.world import Browser, World, check_audio, manifest, p2p, play, seeded, tone_track

from .test_player import WAIT, host_page, long_ids, new_page, track_url, wait_event

pytestmark = [pytest.mark.timeout(120)]

@pytest.mark.parametrize("rendition", list(MIMES))
async def test_fmp4_rendition_plays_through_mse(gateway: Any, rendition: str) -> None:
    require_chromium()
    tid = long_ids(gateway)[0]
    page_html = host_page(gateway.url, f'<ztream-player id="p" src="{track_url(gateway, tid)}"></ztream-player>')
    log = ErrorLog()
    async with HostSite({"": page_html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url) if "/v1/tracks/" in r.url else None)
            await page.add_init_script(only_mse_type(MIMES[rendition]))
            await page.goto(host.url("/"))
            await wait_event(page, "ready")
            await page.wait_for_function("document.getElementById('p').live === false", timeout=WAIT)
            state = await page.evaluate(
                "(() => { const p = document.getElementById('p'); return {mode: p.mode, manifest: p.manifest, duration: p.duration}; })()"
            )
            assert state["mode"] == "mse"
            assert state["manifest"]["mime"] == MIMES[rendition]
            assert 19 < state["duration"] < 21
            await page.evaluate("document.getElementById('p').play()")
            await page.wait_for_function("document.getElementById('p').currentTime > 1", timeout=WAIT)
            await page.evaluate("document.getElementById('p').seek(10)")
            await wait_event(page, "seeked")
            await page.wait_for_function("document.getElementById('p').currentTime > 11", timeout=WAIT)
            await page.evaluate("document.getElementById('p').seek(17)")
            await wait_event(page, "finish")
            assert await page.evaluate("document.getElementById('p').audio.ended")
        finally:
            await browser.close()
    media = [u for u in requests if any(f"/{p}" in u for p in ("init", "chunks/", "manifest", "stream"))]
    assert media and all(u.endswith(f"?rendition={rendition}") for u in media), media
    log.assert_clean()


@pytest.fixture
def world(tmp_path: Path, audio_dir: Path) -> Any:
    w = World(tmp_path, audio_dir)
    try:
        yield w
    finally:
        w.close()


async def test_fmp4_chunks_go_peer_to_peer(world: World, tmp_path: Path) -> None:
    """Two listeners of the fMP4/Opus rendition behind their NATs: the second gets chunks from the first."""
    gw = world.gw
    tid = tone_track(gw)["id"]
    m = manifest(gw, tid, "fmp4-opus")
    assert m["mime"] == MIMES["fmp4-opus"]
    log = ErrorLog()
    script = only_mse_type(MIMES["fmp4-opus"])
    async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
        first = await b.listener(tid, script=script)
        assert await first.evaluate("document.getElementById('p').manifest.rendition") == m["rendition"]
        await play(first)
        await seeded(first, m)
        second = await b.listener(tid, script=script, home=1)
        await play(second)
        await until(second, "window.finished", timeout=45)
        stats = await second.evaluate("document.getElementById('p').stats")
        info1 = await p2p(first)
        await check_audio(second, m)
    print(f"\nfMP4 second listener: stats {stats}")
    assert stats["stalls"] == 0
    assert stats["peerBytes"] > 0 and info1["upBytes"] >= stats["peerBytes"]
    log.assert_clean()
