"""The player in a real WebKit (WebKitGTK through WebDriver, tests/support/webkit.py).

WebKitGTK has ``MediaSource`` and ``ManagedMediaSource`` (the player takes
the managed one, as on Safari), IndexedDB and no ``RTCPeerConnection``
(Debian builds it without WebRTC): so every page here also checks that a
page without WebRTC plays from the server and the cache, with no P2P agent
and no control socket. Waits are on states, never fixed sleeps.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.browser import HostSite
from tests.support.webkit import ERRORS, WebKit, webkit

pytestmark = [pytest.mark.timeout(120)]

PLAYER = "document.getElementById('player')"


def tone_id(gateway: Any) -> str:
    """A 20 s track of the library."""
    with urllib.request.urlopen(f"{gateway.url}/v1/tracks", timeout=10) as r:
        tracks = json.loads(r.read())["tracks"]
    for t in tracks:
        if t["title"].startswith("tone") and t["id"] in gateway.library_ids:
            return str(t["id"])
    raise AssertionError("no 20 s track in the library")


async def plays(browser: WebKit, player: str, *, beyond: float = 1.5) -> dict[str, Any]:
    """Wait until ``player`` plays past ``beyond`` seconds; its mode, stats and P2P state."""
    await browser.until(f"{player} && {player}.currentTime > {beyond}")
    t0 = await browser.value(f"{player}.currentTime")
    await browser.until(f"{player}.currentTime > {t0} + 0.5")
    state: dict[str, Any] = await browser.value(
        f"({{mode: {player}.mode, stats: {player}.stats, p2p: {player}.p2p, paused: {player}.paused,"
        f" status: {player}.shadowRoot.querySelector('.status').textContent,"
        " errors: window.__errors || [], webrtc: typeof RTCPeerConnection})"
    )
    return state


def assert_server_only(state: dict[str, Any]) -> None:
    """Played through ManagedMediaSource, without WebRTC and with no P2P agent (so no control socket)."""
    assert state["mode"] == "managed-mse", state
    assert state["webrtc"] == "undefined"
    assert state["p2p"] is None
    assert state["stats"]["peerBytes"] == 0
    assert state["errors"] == [] and state["status"] == "", state


async def test_embed_page_plays_through_managed_media_source(gateway: Any) -> None:
    """/embed/{id}?autoplay=1: ManagedMediaSource, time advances, bytes from the server, no errors."""
    tid = tone_id(gateway)
    async with webkit() as browser:
        await browser.goto(f"{gateway.url}/embed/{tid}?autoplay=1")
        await browser.run(ERRORS)
        state = await plays(browser, PLAYER)
        assert_server_only(state)
        assert state["stats"]["httpBytes"] > 0
        assert state["stats"]["rendition"]
        assert await browser.value(f"{PLAYER}.audio.disableRemotePlayback") is True


async def test_soundcloud_player_page_plays(gateway: Any) -> None:
    """/player/?url=<track>: the drop-in page's engine plays through ManagedMediaSource."""
    tid = tone_id(gateway)
    url = f"{gateway.url}/v1/tracks/{tid}"
    async with webkit() as browser:
        await browser.goto(f"{gateway.url}/player/?url={quote(url, safe='')}&auto_play=true")
        await browser.run(ERRORS)
        engine = "document.getElementById('engine')"
        await browser.until(f"{engine} && {engine}.ready")
        if await browser.value(f"{engine}.paused"):
            await browser.run("document.querySelector('.play').click(); return true;")
        state = await plays(browser, engine)
        assert_server_only(state)


async def test_widget_api_events_arrive(gateway: Any) -> None:
    """A host page on another origin drives the embed with widget.js: READY, PLAY, PLAY_PROGRESS, PAUSE."""
    tid = tone_id(gateway)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>a blog</title></head><body>
<iframe id="f" src="{gateway.url}/embed/{tid}" width="600" height="166" allow="autoplay" style="border:0"></iframe>
<script type="module">
  import {{ Widget }} from "{gateway.url}/client/widget.js";
  window.log = [];
  const w = new Widget(document.getElementById("f"));
  window.w = w;
  for (const name of Object.keys(Widget.Events)) w.bind(Widget.Events[name], (data) => window.log.push({{ name, data }}));
  window.count = (name) => window.log.filter((e) => e.name === name).length;
  window.last = (name) => window.log.filter((e) => e.name === name).at(-1)?.data;
</script></body></html>"""
    async with HostSite({"": page}) as host, webkit() as browser:
        await browser.goto(host.url("/"))
        await browser.run(ERRORS)
        await browser.until("window.count && window.count('READY') >= 1")
        await browser.run("window.w.play(); return true;")
        await browser.until("window.count('PLAY') >= 1 && window.count('PLAY_PROGRESS') >= 3")
        await browser.until("window.last('PLAY_PROGRESS').currentPosition > 1000")
        progress = await browser.value("window.log.filter((e) => e.name === 'PLAY_PROGRESS').map((e) => e.data.currentPosition)")
        assert progress == sorted(progress) and progress[-1] > progress[0]
        await browser.run("window.w.pause(); return true;")
        await browser.until("window.count('PAUSE') >= 1")
        assert await browser.value("window.count('ERROR')") == 0
        assert await browser.value("window.__errors") == []


async def test_cache_serves_a_second_play(gateway: Any) -> None:
    """Once a track is in IndexedDB, loading the page again (same tab: the
    previous page may sit in WebKit's back/forward cache) plays it from the
    cache, with no byte from the server; three times in a row."""
    tid = tone_id(gateway)
    embed = f"{gateway.url}/embed/{tid}?autoplay=1"
    async with webkit() as browser:
        await browser.goto(embed)
        await plays(browser, PLAYER)
        # every chunk of the (complete) manifest is kept
        await browser.until(
            f"(async () => {{ const p = {PLAYER}; const m = p.manifest; const c = await p.core.cachePromise;"
            " return Boolean(m && m.complete && c && c.has(m.id ?? p.core.session.trackId, m.rendition, 'init')"
            " && c.indices(p.core.session.trackId, m.rendition).length === m.chunks.length); })()"
        )
        for _ in range(3):
            await browser.goto(embed)
            await browser.run(ERRORS)
            state = await plays(browser, PLAYER)
            # Reloaded in the same tab, WebKitGTK now and then refuses the
            # ManagedMediaSource before the first append (about 1 load in 30
            # here); the player then plays on a plain MediaSource.
            assert state["mode"] in ("managed-mse", "mse") and state["errors"] == [], state
            assert state["stats"]["cacheBytes"] > 0, state
            assert state["stats"]["httpBytes"] == 0, state


async def test_autoplay_refused_shows_the_play_button_then_media_session(gateway: Any) -> None:
    """Autoplay denied: no silent failure (the button is marked, the status says
    so); a press plays, and the Media Session then has the track's title,
    artwork and playing state."""
    tid = tone_id(gateway)
    async with webkit(["--automation", "--autoplay-policy=deny"]) as browser:
        await browser.goto(f"{gateway.url}/embed/{tid}?autoplay=1")
        await browser.run(ERRORS)
        await browser.until(f"{PLAYER}.hasAttribute('needs-play')")
        refused = await browser.value(
            f"({{paused: {PLAYER}.paused, status: {PLAYER}.shadowRoot.querySelector('.status').textContent}})"
        )
        assert refused == {"paused": True, "status": "Press play to listen"}
        await browser.click(".play", shadow_host="#player")
        state = await plays(browser, PLAYER)
        assert_server_only(state)
        session = await browser.value(
            "({title: navigator.mediaSession.metadata.title, artwork: navigator.mediaSession.metadata.artwork.map((a) => a.src),"
            f" state: navigator.mediaSession.playbackState, marked: {PLAYER}.hasAttribute('needs-play')}})"
        )
        assert session["title"] == await browser.value(f"{PLAYER}.track.title")
        assert session["artwork"] == [await browser.value(f"{PLAYER}.track.artwork_url")]
        assert session["state"] == "playing" and session["marked"] is False


async def test_managed_source_streaming_and_removals(gateway: Any) -> None:
    """Between `endstreaming` and `startstreaming` no fetch starts (a seek
    waits); ranges removed from the ManagedSourceBuffer are fetched again
    when the playhead needs them. The streaming events are dispatched by the
    test, and the removal is the page's own `remove()` (its `updateend` and
    the managed buffer's `bufferedchange` both reconcile): WebKitGTK decides
    its own by its memory and power state, which a test does not control."""
    tid = tone_id(gateway)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>host</title>
<script>
  window.chunks = [];
  document.addEventListener("chunk", (e) => window.chunks.push(e.detail.index), true);
</script>
<script type="module" src="{gateway.url}/client/ztream-player.js"></script>
</head><body>
<ztream-player id="player" src="{gateway.url}/v1/tracks/{tid}" buffer-ahead="6" emergency-ahead="2"></ztream-player>
</body></html>"""
    session = f"{PLAYER}.core.session"
    async with HostSite({"": page}) as host, webkit() as browser:
        await browser.goto(host.url("/"))
        await browser.run(ERRORS)
        await browser.until(f"{PLAYER}.ready && {PLAYER}.mode === 'managed-mse' && {PLAYER}.live === false")
        await browser.until(f"{session}.scheduler.bufferedAhead(0) >= 6 && {session}.controllers.size === 0")
        # the browser says it has enough: a seek past the buffer fetches nothing
        await browser.run(f"{session}.mediaSource.dispatchEvent(new Event('endstreaming')); return true;")
        before = await browser.value("window.chunks.length")
        await browser.run(f"{PLAYER}.seek(12); return true;")
        await browser.run("return new Promise((r) => setTimeout(r, 1500));")
        assert await browser.value("window.chunks.length") == before
        assert await browser.value(f"{session}.controllers.size") == 0
        # it wants data again: the chunks at 12 s come
        await browser.run(f"{session}.mediaSource.dispatchEvent(new Event('startstreaming')); return true;")
        await browser.until(f"{session}.scheduler.bufferedAhead(12) >= 4")
        # the first seconds are removed from the buffer (as the browser may do under memory pressure)
        await browser.until(f"!{session}.sourceBuffer.updating")
        await browser.run(f"{session}.sourceBuffer.remove(0, 6); return true;")
        await browser.until(f"!{session}.scheduler.buffered.has(0)")
        again = await browser.value("window.chunks.length")
        await browser.run(f"{PLAYER}.seek(0); return true;")
        await browser.until(f"window.chunks.slice({again}).includes(0) && {session}.scheduler.bufferedAhead(0) >= 4")
        await browser.run(f"{PLAYER}.play(); return true;")
        await browser.until(f"{PLAYER}.currentTime > 1")
        assert await browser.value("window.__errors") == []
