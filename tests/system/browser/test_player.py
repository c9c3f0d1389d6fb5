"""<ztream-player> in real Chromium against a real ``ztream serve`` gateway.

Each test drives a host page on another loopback origin (``localhost``
against the gateway's ``127.0.0.1``) that imports the player from the
gateway's ``/client/``, and asserts that no page error or console error
happened. Waits are on events and states, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import struct
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.support.browser import (
    ROOT,
    ErrorLog,
    HostSite,
    LiveEdgeLog,
    launch,
    require_chromium,
    serve_on_loopback,
    until,
)

pytestmark = [pytest.mark.timeout(60)]


WAIT = 30_000  # ms, for one awaited state on a loaded machine

EVENTS = [
    "ready", "play", "pause", "playing", "waiting", "seeked", "ended", "finish",
    "startup", "error", "trackchange", "prefetch",
]


def host_page(client_base: str, body: str, *, style: str = "") -> str:
    """A third-party page that loads the player and records its events in ``window.events``."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>host</title>
<style>
  body {{ font-family: system-ui, sans-serif; background: #f5f5f7; margin: 0; padding: 28px; }}
  .wrap {{ max-width: 680px; display: grid; gap: 18px; }}
  {style}
</style>
<script>
  window.events = [];
  for (const type of {json.dumps(EVENTS)}) {{
    document.addEventListener(type, (e) => {{
      if (e.target.tagName !== "ZTREAM-PLAYER") return;
      window.events.push({{ type, id: e.target.id, t: performance.now(), detail: JSON.parse(JSON.stringify(e.detail ?? null)) }});
    }}, true);
  }}
  window.seen = (type, id) => window.events.filter((e) => e.type === type && (!id || e.id === id));
</script>
<script type="module" src="{client_base}/client/ztream-player.js"></script>
</head><body><div class="wrap">{body}</div></body></html>"""


def track_url(gateway: Any, track_id: str) -> str:
    return f"{gateway.url}/v1/tracks/{track_id}"


def long_ids(gateway: Any) -> list[str]:
    """Ids of the library's 20 s tracks ("tone a", "tone b"), then the rest."""
    with urllib.request.urlopen(f"{gateway.url}/v1/tracks", timeout=10) as r:
        tracks = json.loads(r.read())["tracks"]
    titles = {t["id"]: t["title"] for t in tracks}
    ids = list(gateway.library_ids)
    return sorted(ids, key=lambda i: (not titles.get(i, "").startswith("tone"), titles.get(i, "")))


async def new_page(browser: Any, log: ErrorLog, **context_args: Any) -> Any:
    context = await browser.new_context(**context_args)
    page = await context.new_page()
    log.watch(page)
    return page


async def wait_event(page: Any, type_: str, pid: str = "p", count: int = 1) -> None:
    await page.wait_for_function(f"window.seen({json.dumps(type_)}, {json.dumps(pid)}).length >= {count}", timeout=WAIT)


async def test_player_plays_seeks_to_middle_and_ends(gateway: Any) -> None:
    require_chromium()
    tid = long_ids(gateway)[0]
    page_html = host_page(gateway.url, f'<ztream-player id="p" src="{track_url(gateway, tid)}"></ztream-player>')
    log = ErrorLog()
    async with HostSite({"": page_html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            await page.goto(host.url("/"))
            await wait_event(page, "ready")
            # a fresh gateway may still be transcoding: the player follows the manifest
            await page.wait_for_function("document.getElementById('p').live === false", timeout=WAIT)
            state = await page.evaluate(
                """() => { const p = document.getElementById('p');
                   return {title: p.shadowRoot.querySelector('.title').textContent, mode: p.mode,
                           duration: p.duration, label: p.shadowRoot.querySelector('.play').getAttribute('aria-label')}; }"""
            )
            assert state["mode"] == "mse"
            assert state["label"] == "Play"
            assert state["title"]
            assert 19 < state["duration"] < 21

            # play: through the button, as a listener would
            await page.locator("ztream-player").locator(".play").click()
            await wait_event(page, "playing")
            await wait_event(page, "startup")
            startup = await page.evaluate("document.getElementById('p').startupSeconds")
            assert isinstance(startup, (int, float)) and startup >= 0
            await page.wait_for_function("document.getElementById('p').currentTime > 1", timeout=WAIT)
            ui = await page.evaluate(
                """() => { const r = document.getElementById('p').shadowRoot;
                   return {label: r.querySelector('.play').getAttribute('aria-label'),
                           now: Number(r.querySelector('.seek').getAttribute('aria-valuenow')),
                           max: Number(r.querySelector('.seek').getAttribute('aria-valuemax')),
                           total: r.querySelector('.total').textContent,
                           buffered: r.querySelectorAll('.buffered').length}; }"""
            )
            assert ui["label"] == "Pause"
            assert ui["max"] == 20 and ui["total"] == "0:20"
            assert ui["buffered"] >= 1

            # seek to the middle and play on from there
            await page.evaluate("document.getElementById('p').seek(10)")
            await wait_event(page, "seeked")
            await page.wait_for_function("document.getElementById('p').currentTime > 11", timeout=WAIT)
            assert await page.evaluate("!document.getElementById('p').paused")

            # keyboard: the seek slider takes arrow keys, k toggles
            slider = page.locator("ztream-player").locator(".seek")
            await slider.focus()
            before = await page.evaluate("document.getElementById('p').currentTime")
            await page.keyboard.press("ArrowLeft")
            await page.wait_for_function(f"document.getElementById('p').currentTime < {before - 3}", timeout=WAIT)
            await page.keyboard.press("k")
            await wait_event(page, "pause")
            await page.keyboard.press("k")
            await wait_event(page, "play", count=2)

            # on to the end: `ended` then `finish`
            await page.evaluate("document.getElementById('p').seek(17)")
            await wait_event(page, "finish")
            ended = await page.evaluate("document.getElementById('p').audio.ended")
            assert ended
            stats = await page.evaluate("document.getElementById('p').stats")
            assert stats["httpBytes"] > 0
        finally:
            await browser.close()
    log.assert_clean()


def wav_bytes(seconds: float, rate: int = 22050, freq: float = 440.0) -> bytes:
    """A mono 16-bit WAV tone, made in Python (no ffmpeg needed for the upstream)."""
    import math

    n = int(seconds * rate)
    frames = bytearray()
    for i in range(n):
        v = int(12000 * math.sin(2 * math.pi * freq * i / rate) * (0.6 + 0.4 * math.sin(2 * math.pi * 0.5 * i / rate)))
        frames += struct.pack("<h", v)
    header = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(frames))
    return header + bytes(frames)


class SlowUpstream:
    """A loopback upstream that sends a WAV at `speed` times real time, so the transcode is live."""

    def __init__(self, seconds: float, speed: float) -> None:
        self.data = wav_bytes(seconds)
        self.rate = 22050 * 2 * speed  # bytes per second
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def serve(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/wav"})
        response.content_length = len(self.data)
        await response.prepare(request)
        piece = int(self.rate / 10)
        for offset in range(0, len(self.data), piece):
            await response.write(self.data[offset : offset + piece])
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    async def __aenter__(self) -> SlowUpstream:
        app = web.Application()
        app.router.add_get("/{name}", self.serve)
        self.runner, self.port = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        answer: dict[str, Any] = json.loads(r.read())
        return answer


async def test_live_transcode_plays_from_its_start(gateway_factory: Any) -> None:
    """A track whose transcode is still running plays from 0 and follows the manifest to the end."""
    require_chromium()
    async with SlowUpstream(seconds=14, speed=2.0) as upstream:
        gateway = gateway_factory(sources__url={"allow_hosts": [f"127.0.0.1:{upstream.port}"]})
        track = await asyncio.to_thread(post_json, f"{gateway.url}/v1/tracks", {"url": f"http://127.0.0.1:{upstream.port}/live.wav"})
        # Waiting at the live edge, the player may ask for the chunk after the
        # last: the contract answers 404 once the transcode has ended.
        log = LiveEdgeLog()
        page_html = host_page(gateway.url, f'<ztream-player id="p" src="{track_url(gateway, track["id"])}" autoplay></ztream-player>')
        async with HostSite({"": page_html}) as host, async_playwright() as pw:
            browser = await launch(pw)
            try:
                page = await new_page(browser, log)
                await page.goto(host.url("/"))
                await wait_event(page, "ready")
                # the manifest was not complete when the player loaded it
                assert await page.evaluate("document.getElementById('p').live") is True
                await wait_event(page, "playing")
                first = await page.evaluate("document.getElementById('p').bufferedRanges")
                assert first and first[0][0] < 0.1, first  # from the start
                await page.wait_for_function("document.getElementById('p').currentTime > 3", timeout=WAIT)
                # the transcode completes while playing; the player notices
                await page.wait_for_function("document.getElementById('p').live === false", timeout=WAIT)
                duration = await page.evaluate("document.getElementById('p').duration")
                assert 13 < duration < 15
                await page.evaluate(f"document.getElementById('p').seek({duration - 2})")
                await wait_event(page, "finish")
            finally:
                await browser.close()
    log.assert_clean()


async def test_replay_from_indexeddb_with_gateway_stopped(gateway: Any) -> None:
    """Played once, a track replays after a reload with the gateway down (manifest and chunks in IndexedDB)."""
    require_chromium()
    tid = long_ids(gateway)[1]
    # the host serves its own copy of client/, so the page itself loads with the gateway down
    page_html = host_page("", f'<ztream-player id="p" src="{track_url(gateway, tid)}"></ztream-player>')
    log = ErrorLog(allow=["ERR_CONNECTION_REFUSED", "Failed to fetch"])
    async with HostSite({"": page_html}, serve_client=True) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            await page.goto(host.url("/"))
            await wait_event(page, "ready")
            await page.evaluate("document.getElementById('p').play()")
            # everything cached: the manifest, the init segment and every chunk
            await until(
                page,
                """async () => {
                    const { sharedCache } = await import('/client/cache.js');
                    const cache = await sharedCache();
                    const p = document.getElementById('p');
                    const m = p.manifest;
                    if (!cache || !m || !m.complete) return false;
                    const rec = await cache.getManifest(m.id);
                    return rec && rec.manifest.complete && cache.has(m.id, m.rendition, 'init')
                        && cache.indices(m.id, m.rendition).length === m.chunks.length;
                }""",
            )
            await asyncio.to_thread(gateway.stop)
            await page.reload()
            await wait_event(page, "ready")
            await page.evaluate("document.getElementById('p').play()")
            await wait_event(page, "playing")
            await page.wait_for_function("document.getElementById('p').currentTime > 1", timeout=WAIT)
            await page.evaluate("document.getElementById('p').seek(17)")
            await wait_event(page, "finish")
            stats = await page.evaluate("document.getElementById('p').stats")
            assert stats["httpBytes"] == 0, stats
            assert stats["cacheBytes"] > 0, stats
        finally:
            await browser.close()
    log.assert_clean()


async def test_playlist_prefetches_next_track_and_moves_on(gateway: Any) -> None:
    """A playlist fetches the start of the next track near the end of the current one, then plays it."""
    require_chromium()
    a, b = long_ids(gateway)[:2]
    body = (
        f'<ztream-player id="p">'
        f'<ztream-track src="{track_url(gateway, a)}"></ztream-track>'
        f'<ztream-track src="{track_url(gateway, b)}"></ztream-track>'
        f"</ztream-player>"
    )
    log = ErrorLog()
    async with HostSite({"": host_page(gateway.url, body)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            requests: list[tuple[float, str]] = []
            loop = asyncio.get_running_loop()
            page.on("request", lambda r: requests.append((loop.time(), r.url)))
            await page.goto(host.url("/"))
            await wait_event(page, "ready")
            items = page.locator("ztream-player").locator(".playlist button")
            assert await items.count() == 2
            await page.evaluate("document.getElementById('p').play()")
            await wait_event(page, "playing")
            # 5 s before the end (once the duration is known): inside the 10 s prefetch lead
            await page.wait_for_function("document.getElementById('p').live === false", timeout=WAIT)
            await page.evaluate("document.getElementById('p').seek(15)")
            await wait_event(page, "prefetch")
            prefetch = await page.evaluate("window.seen('prefetch', 'p')[0].detail")
            assert prefetch["ok"] is True and prefetch["src"].endswith(b)
            await wait_event(page, "trackchange", count=2)
            ended_first = loop.time()
            await wait_event(page, "playing", count=2)
            assert await page.evaluate("document.getElementById('p').index") == 1
            current = await items.nth(1).get_attribute("aria-current")
            assert current == "true"
            first_chunk_b = [t for t, u in requests if u.endswith(f"/v1/tracks/{b}/chunks/0")]
            assert first_chunk_b and min(first_chunk_b) < ended_first
        finally:
            await browser.close()
    log.assert_clean()


async def test_fallback_to_audio_stream_without_mse(gateway: Any) -> None:
    """Where Media Source cannot play WebM/Opus, the player uses <audio src=.../stream>."""
    require_chromium()
    tid = long_ids(gateway)[0]
    page_html = host_page(gateway.url, f'<ztream-player id="p" src="{track_url(gateway, tid)}"></ztream-player>')
    log = ErrorLog()
    async with HostSite({"": page_html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            await page.add_init_script("delete window.MediaSource; delete window.ManagedMediaSource;")
            await page.goto(host.url("/"))
            await wait_event(page, "ready")
            assert await page.evaluate("document.getElementById('p').mode") == "stream"
            src = await page.evaluate("document.getElementById('p').audio.src")
            assert src.endswith(f"/v1/tracks/{tid}/stream")
            await page.evaluate("document.getElementById('p').play()")
            await page.wait_for_function("document.getElementById('p').currentTime > 1", timeout=WAIT)
        finally:
            await browser.close()
    log.assert_clean()


async def test_plays_from_the_server_when_webrtc_throws(gateway: Any) -> None:
    """An RTCPeerConnection that throws (a policy, an extension): the player plays
    from the server with no error, no P2P agent and no control socket."""
    require_chromium()
    tid = long_ids(gateway)[0]
    page_html = host_page(gateway.url, f'<ztream-player id="p" src="{track_url(gateway, tid)}"></ztream-player>')
    blocked = """
      window.__sockets = 0;
      const NativeSocket = window.WebSocket;
      window.WebSocket = class extends NativeSocket {
        constructor(...args) { super(...args); window.__sockets += 1; }
      };
      window.RTCPeerConnection = function RTCPeerConnection() {
        throw new DOMException("WebRTC is blocked here", "NotSupportedError");
      };
    """
    log = ErrorLog()
    async with HostSite({"": page_html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            await page.add_init_script(blocked)
            await page.goto(host.url("/"))
            await wait_event(page, "ready")
            await page.evaluate("document.getElementById('p').play()")
            await page.wait_for_function("document.getElementById('p').currentTime > 1.5", timeout=WAIT)
            state = await page.evaluate(
                """() => { const p = document.getElementById('p');
                   return {mode: p.mode, p2p: p.p2p, stats: p.stats, sockets: window.__sockets,
                           errors: window.seen('error').length}; }"""
            )
            assert state["mode"] == "mse"
            assert state["p2p"] is None and state["sockets"] == 0
            assert state["stats"]["httpBytes"] > 0 and state["stats"]["peerBytes"] == 0
            assert state["errors"] == 0
        finally:
            await browser.close()
    log.assert_clean()


async def test_managed_source_refused_falls_back_to_media_source(gateway: Any) -> None:
    """A ManagedMediaSource is taken first (remote playback off); when the
    element refuses it before anything played (seen in WebKitGTK on reloads),
    the player starts again on a plain MediaSource and still plays."""
    require_chromium()
    tid = long_ids(gateway)[0]
    page_html = host_page(gateway.url, f'<ztream-player id="p" src="{track_url(gateway, tid)}"></ztream-player>')
    managed = """
      window.__managed = 0;
      window.ManagedMediaSource = class ManagedMediaSource extends MediaSource {
        constructor() { super(); window.__managed += 1; }
        addSourceBuffer(type) {
          const sb = super.addSourceBuffer(type);
          setTimeout(() => sb.dispatchEvent(new Event("error")), 0);
          return sb;
        }
      };
    """
    log = ErrorLog()
    async with HostSite({"": page_html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            await page.add_init_script(managed)
            await page.goto(host.url("/"))
            await page.evaluate("document.getElementById('p').play()")
            await page.wait_for_function("document.getElementById('p').currentTime > 1.5", timeout=WAIT)
            state = await page.evaluate(
                """() => { const p = document.getElementById('p');
                   return {mode: p.mode, managed: window.__managed, remote: p.audio.disableRemotePlayback,
                           errors: window.seen('error').length}; }"""
            )
            assert state == {"mode": "mse", "managed": 1, "remote": True, "errors": 0}
        finally:
            await browser.close()
    log.assert_clean()


async def test_managed_source_fallback_appends_the_init_segment_first(gateway: Any) -> None:
    """The fallback from a refused ManagedMediaSource aborts the chunk requests in flight
    and starts them again at once, while its new init segment loads: a chunk that comes
    back first waits behind it, never reaching the new SourceBuffer first (seen under
    load: "Found Cluster element before Info", a media error, no playback). Here chunks
    take 0.6 s, the refusal comes while they are in flight, and the fallback's init
    segment takes 2 s."""
    require_chromium()
    tid = long_ids(gateway)[0]
    page_html = host_page(gateway.url, f'<ztream-player id="p" src="{track_url(gateway, tid)}"></ztream-player>')
    # No IndexedDB (as in some browsers' private windows): the fallback fetches its init
    # segment again rather than read it from the persistent cache.
    managed = """
      Object.defineProperty(globalThis, "indexedDB", { value: undefined, configurable: true });
      window.ManagedMediaSource = class ManagedMediaSource extends MediaSource {
        addSourceBuffer(type) {
          const sb = super.addSourceBuffer(type);
          setTimeout(() => sb.dispatchEvent(new Event("error")), 300);
          return sb;
        }
      };
    """
    inits = 0

    async def slow_init(route: Any) -> None:
        nonlocal inits
        inits += 1
        if inits > 1:
            await asyncio.sleep(2.0)
        await route.continue_()

    async def slow_chunk(route: Any) -> None:
        await asyncio.sleep(0.6)
        await route.continue_()

    log = ErrorLog()
    async with HostSite({"": page_html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            await page.add_init_script(managed)
            await page.route("**/init*", slow_init)
            await page.route("**/chunks/*", slow_chunk)
            await page.goto(host.url("/"))
            await page.wait_for_function("document.getElementById('p').mode === 'mse'", timeout=WAIT)
            await page.evaluate("document.getElementById('p').play()")
            await page.wait_for_function("document.getElementById('p').currentTime > 1.5", timeout=WAIT)
            assert await page.evaluate("window.seen('error').length") == 0
            assert inits == 2
        finally:
            await browser.close()
    log.assert_clean()


async def test_landing_page_lists_plays_and_embeds(gateway_factory: Any, tmp_path: Path) -> None:
    """The landing page lists the library, takes a pasted URL, plays it and shows the embed code."""
    require_chromium()
    log = ErrorLog()
    async with SlowUpstream(seconds=6, speed=50.0) as upstream:
        gateway = gateway_factory(sources__url={"allow_hosts": [f"127.0.0.1:{upstream.port}"]})
        async with async_playwright() as pw:
            browser = await launch(pw)
            try:
                page = await new_page(browser, log)
                await page.goto(gateway.url + "/")
                for tid in gateway.library_ids:
                    await page.wait_for_selector(f'#tracks li[data-id="{tid}"]', timeout=WAIT)
                # play a library track from the list
                await page.locator(f'#tracks li[data-id="{gateway.library_ids[0]}"] button').click()
                await until(page, "document.getElementById('main-player').currentTime > 0.5")
                await until(page, "/started in \\d+ ms/.test(document.getElementById('startup').textContent)")
                code = await page.locator("#code-iframe code").text_content()
                assert f"{gateway.url}/embed/{gateway.library_ids[0]}" in (code or "")
                # paste a URL
                await page.fill("#url", f"http://127.0.0.1:{upstream.port}/pasted_tune.wav")
                await page.click("#add-button")
                await until(page, "document.getElementById('add-status').textContent.startsWith('Added')")
                await until(page, "document.getElementById('main-player').track?.title === 'pasted tune' && document.getElementById('main-player').currentTime > 0.5")
                code = await page.locator("#code-component code").text_content()
                assert "<ztream-player src=" in (code or "")
                # a bad URL is refused with the gateway's message
                await page.fill("#url", "not a url")
                await page.click("#add-button")
                await until(page, "document.getElementById('add-status').classList.contains('error')")
            finally:
                await browser.close()
    log.assert_clean()


async def test_screenshot_for_readme(gateway: Any) -> None:
    """docs/player.png: a single player and a themed playlist, mid-playback."""
    require_chromium()
    a, b, c = long_ids(gateway)
    body = f"""
      <ztream-player id="p" src="{track_url(gateway, a)}"></ztream-player>
      <ztream-player id="q" class="dark">
        <ztream-track src="{track_url(gateway, b)}"></ztream-track>
        <ztream-track src="{track_url(gateway, c)}"></ztream-track>
        <ztream-track src="{track_url(gateway, a)}"></ztream-track>
      </ztream-player>"""
    style = """.dark { --ztream-bg: #18181b; --ztream-fg: #f4f4f5; --ztream-muted: #a1a1aa;
                       --ztream-accent: #7c5cff; --ztream-border: 1px solid #27272a; }"""
    log = ErrorLog()
    async with HostSite({"": host_page(gateway.url, body, style=style)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log, viewport={"width": 740, "height": 520}, device_scale_factor=2)
            await page.goto(host.url("/"))
            await wait_event(page, "ready", "p")
            await wait_event(page, "ready", "q")
            await page.evaluate("document.getElementById('p').play()")
            await page.wait_for_function("document.getElementById('p').currentTime > 0.3", timeout=WAIT)
            await page.wait_for_function("document.getElementById('p').live === false", timeout=WAIT)
            await page.evaluate("document.getElementById('p').seek(7.5)")
            await page.wait_for_function("document.getElementById('p').currentTime > 8", timeout=WAIT)
            await page.evaluate("document.getElementById('p').pause()")
            await page.evaluate("document.getElementById('q').seek(4)")
            await wait_event(page, "seeked", "q")
            out = ROOT / "docs" / "player.png"
            out.parent.mkdir(exist_ok=True)
            await page.locator(".wrap").screenshot(path=str(out))
            assert out.stat().st_size > 10_000
        finally:
            await browser.close()
    log.assert_clean()


async def test_quota_exceeded_removes_played_ranges(gateway: Any) -> None:
    """On QuotaExceededError the player removes what was played, appends again, and re-fetches on a seek back."""
    require_chromium()
    tid = long_ids(gateway)[0]
    # a short buffer-ahead, so that chunks keep being appended while playing
    body = f'<ztream-player id="p" buffer-ahead="4" emergency-ahead="2" src="{track_url(gateway, tid)}"></ztream-player>'
    quota = """
      window.quota = { thrown: 0, removed: [] };
      const append = SourceBuffer.prototype.appendBuffer;
      SourceBuffer.prototype.appendBuffer = function (data) {
        const ranges = this.buffered;
        // once playback is well past 6 s with the start still buffered: "full"
        if (window.quota.thrown === 0 && window.quotaArmed && ranges.length && ranges.start(0) < 1) {
          window.quota.thrown += 1;
          throw new DOMException("the buffer is full", "QuotaExceededError");
        }
        return append.call(this, data);
      };
      const remove = SourceBuffer.prototype.remove;
      SourceBuffer.prototype.remove = function (start, end) {
        window.quota.removed.push([start, end]);
        return remove.call(this, start, end);
      };
    """
    log = ErrorLog()
    async with HostSite({"": host_page(gateway.url, body)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await new_page(browser, log)
            await page.add_init_script(quota)
            await page.goto(host.url("/"))
            await wait_event(page, "ready")
            await page.wait_for_function("document.getElementById('p').live === false", timeout=WAIT)
            await page.evaluate("document.getElementById('p').play()")
            await page.wait_for_function("document.getElementById('p').currentTime > 0.5", timeout=WAIT)
            await page.evaluate("document.getElementById('p').seek(9)")
            await page.wait_for_function("document.getElementById('p').currentTime > 9.2", timeout=WAIT)
            await page.evaluate("window.quotaArmed = true")
            await page.wait_for_function("window.quota.thrown === 1 && window.quota.removed.length >= 1", timeout=WAIT)
            start, end = (await page.evaluate("window.quota.removed"))[0]
            assert start == 0 and 3 < end < 12
            await page.wait_for_function("document.getElementById('p').currentTime > 12", timeout=WAIT)
            ranges = await page.evaluate("document.getElementById('p').bufferedRanges")
            assert ranges[0][0] > 1, ranges  # the played start is gone
            # seeking back: the removed chunks are fetched again
            await page.evaluate("document.getElementById('p').seek(1)")
            await wait_event(page, "seeked")
            await page.wait_for_function("document.getElementById('p').currentTime > 2", timeout=WAIT)
            ranges = await page.evaluate("document.getElementById('p').bufferedRanges")
            assert ranges[0][0] < 1.1, ranges
        finally:
            await browser.close()
    log.assert_clean()
