"""The player in Firefox ESR: plays, seeks and ends; survives a media error.

It plays the WebM/Opus rendition, and each fMP4 rendition through MSE: the
page makes Firefox's MSE take only that rendition's type (Firefox ESR 153
takes both fMP4 types and WebM/Opus), as tests/system/browser/test_fmp4.py
does in Chromium.

Firefox is Debian's firefox-esr driven by puppeteer-core (bench/firefox.py),
with a PulseAudio null sink as its audio output. The page is on another
origin than the gateway (a loopback host site), as an embedding site's is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import RENDITION_MIMES, HostSite, only_mse_type
from tests.support.firefox import Firefox, PulseAudio, require_firefox

pytestmark = [pytest.mark.timeout(150)]

RECORDER = """
window.events = [];
window.appends = 0;
const append = SourceBuffer.prototype.appendBuffer;
SourceBuffer.prototype.appendBuffer = function (data) {
  window.appends += 1;
  if (window.corruptAppend && window.appends === window.corruptAppend) {
    const junk = new Uint8Array(data.byteLength);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919) & 0xff;
    return append.call(this, junk);
  }
  return append.call(this, data);
};
for (const name of ["ready", "play", "pause", "finish", "error", "seek"]) {
  document.addEventListener(name, (e) => window.events.push([name, e.detail && e.detail.error || null]), true);
}
"""


def page(gateway_url: str, track_id: str, corrupt_append: int = 0, script: str = "") -> str:
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ff</title>
<script>window.corruptAppend = {corrupt_append};{RECORDER}{script}</script>
<script type="module" src="{gateway_url}/client/ztream-player.js"></script></head>
<body><ztream-player id="p" src="{gateway_url}/v1/tracks/{track_id}"></ztream-player></body></html>"""


@pytest.fixture
async def firefox(tmp_path: Path) -> AsyncIterator[Firefox]:
    require_firefox()
    pulse = PulseAudio(tmp_path / "pulse")
    ff = await Firefox.launch(tmp_path / "ff-home", pulse)
    try:
        yield ff
    finally:
        await ff.close()
        pulse.close()


@pytest.mark.parametrize("rendition", ["webm", *RENDITION_MIMES])
async def test_firefox_plays_seeks_and_ends_without_a_false_stall(gateway_factory: Any, firefox: Firefox,
                                                                   rendition: str) -> None:
    gw = gateway_factory()
    track = gw.library_ids[1]  # tone_a.flac, 20 s (ids are sorted by path: short.flac first)
    mime = RENDITION_MIMES.get(rendition)
    script = only_mse_type(mime) if mime else ""
    async with HostSite({"play.html": page(gw.url, track, script=script)}) as site:
        await firefox.goto(site.url("/play.html"))
        await firefox.until("customElements.get('ztream-player') && document.getElementById('p').ready")
        chosen = await firefox.evaluate(
            "({mode: document.getElementById('p').mode, mime: document.getElementById('p').manifest.mime})"
        )
        assert chosen["mode"] == "mse", chosen
        if mime:
            assert chosen["mime"] == mime, chosen
        await firefox.evaluate("document.getElementById('p').play()")
        await firefox.until("document.getElementById('p').currentTime > 1", timeout=20)
        await firefox.evaluate("document.getElementById('p').seek(15)")
        await firefox.until("window.events.some(([n]) => n === 'finish')", timeout=40)
        state = await firefox.evaluate(
            "({stalls: document.getElementById('p').stats.stalls, t: document.getElementById('p').currentTime,"
            " d: document.getElementById('p').duration, events: window.events})"
        )
        fetched = await firefox.evaluate(
            "performance.getEntriesByType('resource').map((e) => e.name).filter((u) => u.includes('/v1/tracks/'))"
        )
    media = [u for u in fetched if any(f"/{p}" in u for p in ("init", "chunks/", "manifest", "stream"))]
    # Every media request names the rendition chosen (none for the default, WebM/Opus).
    assert media and all(("?rendition=" in u) == bool(mime) for u in media), media
    if mime:
        assert all(u.endswith(f"?rendition={rendition}") for u in media), media
    assert abs(state["t"] - 20.0) < 0.5 and abs(state["d"] - 20.0) < 0.5, state
    assert ["error", None] not in state["events"] and not [e for e in state["events"] if e[0] == "error"], state
    # Firefox fires `waiting` just before `ended`: that is the end, not a stall.
    assert state["stalls"] == 0, state
    assert not firefox.errors(), firefox.errors()


async def test_firefox_media_error_stops_the_player_and_play_tries_again(gateway_factory: Any, firefox: Firefox) -> None:
    gw = gateway_factory()
    track = gw.library_ids[1]
    # Append 3 is chunk 1 (init is append 1): its bytes are replaced by junk,
    # once. The player buffers ahead on its own, so the error comes unasked.
    async with HostSite({"bad.html": page(gw.url, track, corrupt_append=3)}) as site:
        await firefox.goto(site.url("/bad.html"))
        await firefox.until("window.events.some(([n]) => n === 'error')", timeout=20)
        before = await firefox.evaluate("window.appends")
        await asyncio.sleep(3)
        after = await firefox.evaluate(
            "({appends: window.appends, playing: document.getElementById('p').hasAttribute('playing'),"
            " status: document.getElementById('p').shadowRoot.querySelector('[role=alert]')?.textContent || null,"
            " label: document.getElementById('p').shadowRoot.querySelector('button[aria-label]')?.getAttribute('aria-label')})"
        )
        # Before the fix: every append threw InvalidStateError, the chunk was
        # re-read from IndexedDB and appended again, ~30 times a second, forever.
        assert after["appends"] - before <= 1, (before, after)
        assert after["status"], after  # the error is shown, as an alert
        assert not after["playing"] and after["label"] == "Play", after
        # Play after the error starts the track afresh, and this time it plays.
        await firefox.evaluate("document.getElementById('p').play()")
        await firefox.until("document.getElementById('p').currentTime > 1.5", timeout=20)
        assert await firefox.evaluate("document.getElementById('p').hasAttribute('playing')")
