"""SoundCloud's widget protocol, driven from a host page on another origin.

The host pages (``bench.browser.HostSite``, ``http://localhost:PORT``) embed
``{gateway}/player/?url=...`` (``http://127.0.0.1:PORT``) and talk to it with
a tiny client written here from the protocol as docs/soundcloud-dropin.md
states it (SoundCloud's api.js itself is not ours to copy): JSON strings
``{"method", "value"}``, bind = addEventListener, getters answered by the
next message of the same method, messages accepted only from the iframe's
window and origin (http and https counting as equal), ``load()`` re-sourcing
the iframe and re-binding on the next ready. Every string the frame posts is
recorded raw, so the tests check the bytes, not a parsed view.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from tests.support.audio import make_audio
from tests.support.browser import (
    ErrorLog,
    HostSite,
    LiveEdgeLog,
    launch,
    require_chromium,
    serve_on_loopback,
    until,
)
from tests.support.paths import ROOT
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.timeout(120)]

WAIT = 30_000

# The test-side client: what a host page's SC.Widget(iframe) does on the wire.
CLIENT = r"""
const GETTERS = ["getVolume", "getDuration", "getPosition", "getSounds", "getCurrentSound", "getCurrentSoundIndex", "isPaused"];
class TestWidget {
  constructor(iframe) {
    this.iframe = iframe;
    this.listeners = new Map();
    this.queues = new Map();
    this.isReady = false;
    this.pending = [];
    this.raw = [];  // every string the frame posted to us, in order
    this.src = new URL(iframe.src);
    window.addEventListener("message", (e) => this.onMessage(e));
  }
  sameOrigin(origin) {
    const strip = (o) => String(o).replace(/^https?:/, "");
    return strip(origin) === strip(this.src.origin);
  }
  onMessage(e) {
    if (e.source !== this.iframe.contentWindow || !this.sameOrigin(e.origin)) return;
    this.raw.push(e.data);
    let data;
    try { data = typeof e.data === "string" ? JSON.parse(e.data) : null; } catch { return; }
    if (!data || typeof data.method !== "string") return;
    if (data.method === "ready") {
      this.isReady = true;
      for (const name of this.listeners.keys()) if (name !== "ready") this.post("addEventListener", name);
      for (const [m, v] of this.pending.splice(0)) this.post(m, v);
    }
    if (GETTERS.includes(data.method)) {
      const queue = this.queues.get(data.method) || [];
      this.queues.set(data.method, []);
      for (const resolve of queue) resolve(data.value);
      return;
    }
    for (const cb of this.listeners.get(data.method) || []) cb(data.value);
  }
  post(method, value) {
    this.iframe.contentWindow.postMessage(JSON.stringify({ method, value: value === undefined ? null : value }), this.src.origin);
  }
  send(method, value) {
    if (this.isReady) this.post(method, value);
    else this.pending.push([method, value]);
  }
  bind(name, cb) {
    if (!this.listeners.has(name)) {
      this.listeners.set(name, []);
      if (this.isReady && name !== "ready") this.post("addEventListener", name);
    }
    this.listeners.get(name).push(cb);
  }
  unbind(name) {
    if (this.listeners.delete(name) && this.isReady) this.post("removeEventListener", name);
  }
  get(method) {
    return new Promise((resolve) => {
      const queue = this.queues.get(method) || [];
      queue.push(resolve);
      this.queues.set(method, queue);
      this.send(method, null);
    });
  }
  load(url, options = {}) {
    this.isReady = false;
    const q = new URLSearchParams({ url });
    for (const [k, v] of Object.entries(options)) q.set(k, String(v));
    this.iframe.src = `${this.src.origin}${this.src.pathname}?${q}`;
  }
}
window.log = [];
window.widgets = {};
window.track = (key, w, names) => {
  for (const name of names) w.bind(name, (value) => window.log.push({ key, name, value }));
};
window.count = (key, name) => window.log.filter((e) => e.key === key && e.name === name).length;
window.last = (key, name) => window.log.filter((e) => e.key === key && e.name === name).at(-1)?.value;
"""

ALL_EVENTS = ["ready", "loadProgress", "playProgress", "play", "pause", "finish", "seek", "error"]


def host_page(frames: dict[str, str], script: str = "", extra: str = "") -> str:
    iframes = "\n".join(
        f'<iframe id="{key}" src="{src}" width="600" height="166" allow="autoplay" style="border:0"></iframe>'
        for key, src in frames.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>blog</title></head>
<body>{iframes}{extra}
<script>{CLIENT}
{script}
</script></body></html>"""


def player_src(gateway_url: str, url: str, query: str = "") -> str:
    return f"{gateway_url}/player/?url={quote(url, safe='')}{query}"


def tone_ids(gateway: Any) -> list[str]:
    """The library's 20 s tracks."""
    import urllib.error
    import urllib.request

    with urllib.request.urlopen(f"{gateway.url}/v1/tracks", timeout=10) as r:
        tracks = json.loads(r.read())["tracks"]
    return [t["id"] for t in tracks if t["title"].startswith("tone") and t["id"] in gateway.library_ids]


async def count(page: Any, key: str, name: str, n: int = 1) -> None:
    await page.wait_for_function(f"window.count({json.dumps(key)}, {json.dumps(name)}) >= {n}", timeout=WAIT)


def check_raw(raw: list[Any]) -> list[dict[str, Any]]:
    """Every message is a JSON string {"method", "value"}; events carry the position shape."""
    out = []
    for text in raw:
        assert isinstance(text, str), text
        data = json.loads(text)
        assert isinstance(data, dict) and isinstance(data["method"], str)
        if data["method"] == "ready":
            assert text == '{"method":"ready"}'
        elif data["method"] in ("loadProgress", "playProgress", "play", "pause", "finish", "seek", "error"):
            assert set(data["value"]) >= {"soundId", "loadedProgress", "currentPosition", "relativePosition"}, text
            assert 0 <= data["value"]["loadedProgress"] <= 1 and 0 <= data["value"]["relativePosition"] <= 1
            assert isinstance(data["value"]["currentPosition"], int)
        out.append(data)
    return out


async def test_every_command_getter_and_event(gateway: Any) -> None:
    """Bound before ready: ready, play, playProgress, loadProgress, getters, volume, pause, toggle, seek, finish."""
    require_chromium()
    tid = tone_ids(gateway)[0]
    own = f"{gateway.url}/v1/tracks/{tid}"
    script = f"""
      const w = new TestWidget(document.getElementById("a"));
      window.widgets.a = w;
      window.track("a", w, {json.dumps(ALL_EVENTS)});
    """
    log = ErrorLog()
    async with HostSite({"": host_page({"a": player_src(gateway.url, own)}, script)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            await page.goto(host.url("/"))
            await count(page, "a", "ready")
            ask = "(m) => window.widgets.a.get(m)"
            assert await page.evaluate(ask, "isPaused") is True
            assert await page.evaluate(ask, "getCurrentSoundIndex") == 0
            assert await page.evaluate(ask, "getPosition") == 0
            sounds = await page.evaluate(ask, "getSounds")
            assert len(sounds) == 1
            sound = sounds[0]
            for key in ("id", "title", "duration", "permalink_url", "artwork_url", "waveform_url", "user"):
                assert key in sound, key
            assert sound["id"] == tid and sound["title"].startswith("tone") and "username" in sound["user"]
            # the duration grows while the first transcode runs: compare the rest
            current = await page.evaluate(ask, "getCurrentSound")
            assert {k: v for k, v in current.items() if k != "duration"} == {k: v for k, v in sound.items() if k != "duration"}

            await page.evaluate("window.widgets.a.send('play')")
            await count(page, "a", "play")
            await count(page, "a", "playProgress", 4)
            await count(page, "a", "loadProgress")
            progress = await page.evaluate("window.log.filter((e) => e.name === 'playProgress').map((e) => e.value.currentPosition)")
            assert progress == sorted(progress) and progress[-1] > progress[0]
            assert (await page.evaluate("window.last('a', 'play')"))["soundId"] == tid
            assert await page.evaluate(ask, "isPaused") is False

            await until(page, "window.widgets.a.get('getDuration').then((d) => d > 19000)")
            duration = await page.evaluate(ask, "getDuration")
            assert 19_000 < duration < 21_000
            position = await page.evaluate(ask, "getPosition")
            assert 0 < position < duration

            await page.evaluate("window.widgets.a.send('setVolume', 30)")
            assert await page.evaluate(ask, "getVolume") == 30
            await page.evaluate("window.widgets.a.send('setVolume', 100)")
            assert await page.evaluate(ask, "getVolume") == 100

            # several callbacks queued for one getter all get the one answer
            both = await page.evaluate("Promise.all([window.widgets.a.get('getVolume'), window.widgets.a.get('getVolume')])")
            assert both == [100, 100]

            await page.evaluate("window.widgets.a.send('pause')")
            await count(page, "a", "pause")
            assert await page.evaluate(ask, "isPaused") is True
            await page.evaluate("window.widgets.a.send('toggle')")
            await count(page, "a", "play", 2)
            await page.evaluate("window.widgets.a.send('toggle')")
            await count(page, "a", "pause", 2)
            await page.evaluate("window.widgets.a.send('play')")

            await page.evaluate("window.widgets.a.send('seekTo', 15000)")
            await count(page, "a", "seek")
            seek = await page.evaluate("window.last('a', 'seek').currentPosition")
            assert 14_500 <= seek <= 16_000
            await count(page, "a", "finish")
            assert (await page.evaluate("window.last('a', 'finish')"))["currentPosition"] > 19_000
            assert await page.evaluate("window.count('a', 'error')") == 0
            # next/prev/skip on a single track: nothing breaks
            await page.evaluate("window.widgets.a.send('next'); window.widgets.a.send('skip', 5)")
            assert await page.evaluate(ask, "getCurrentSoundIndex") == 0

            raw = await page.evaluate("window.widgets.a.raw")
            messages = check_raw(raw)
            assert [m["method"] for m in messages].count("ready") == 1
            assert {"play", "pause", "seek", "finish", "playProgress", "loadProgress"} <= {m["method"] for m in messages}
        finally:
            await browser.close()
    log.assert_clean()


async def test_bind_after_ready_unbind_malformed_and_wrong_windows(gateway: Any) -> None:
    """Events only while bound; garbage and other windows' messages are ignored."""
    require_chromium()
    tid = tone_ids(gateway)[0]
    own = f"{gateway.url}/v1/tracks/{tid}"
    # a sibling frame and the host page itself try to drive the player
    evil = """<iframe id="evil" srcdoc="<script>
        window.run = () => { parent.frames[0].postMessage(JSON.stringify({method: 'play', value: null}), '*');
                             parent.frames[0].postMessage(JSON.stringify({method: 'addEventListener', value: 'play'}), '*');
                             parent.evilDone = true; };
      </script>"></iframe>"""
    script = """
      const w = new TestWidget(document.getElementById("a"));
      window.widgets.a = w;
      window.track("a", w, ["ready"]);
    """
    log = ErrorLog()
    page_html = host_page({"a": player_src(gateway.url, own)}, script, extra=evil)
    async with HostSite({"": page_html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            await page.goto(host.url("/"))
            await count(page, "a", "ready")
            ask = "(m) => window.widgets.a.get(m)"
            # from a sibling frame: ignored (not the parent window)
            await page.evaluate("document.getElementById('evil').contentWindow.run()")
            await page.wait_for_function("window.evilDone === true", timeout=WAIT)
            assert await page.evaluate(ask, "isPaused") is True

            # malformed, from the right window: ignored, and the frame keeps working
            garbage = [
                "not json", "{", "null", "[]", '"play"', "{}", '{"method":42}', '{"method":"nope"}',
                '{"method":"seekTo","value":"1000"}', '{"method":"seekTo","value":1e308}',
                '{"method":"setVolume","value":"loud"}', '{"method":"skip","value":-4}',
                '{"method":"addEventListener","value":{"a":1}}', "x" * 1_000_000,
            ]
            await page.evaluate(
                """(list) => { const f = document.getElementById('a').contentWindow;
                   for (const m of list) f.postMessage(m, '*');
                   f.postMessage({method: 'play'}, '*'); f.postMessage(12, '*'); f.postMessage(null, '*'); }""",
                garbage,
            )
            assert await page.evaluate(ask, "isPaused") is True
            assert await page.evaluate(ask, "getVolume") == 100

            # nothing bound but ready: playing sends no event at all
            await page.evaluate("window.widgets.a.send('play')")
            await until(page, "window.widgets.a.get('getPosition').then((p) => p > 500)")
            methods = [m["method"] for m in check_raw(await page.evaluate("window.widgets.a.raw"))]
            assert set(methods) <= {"ready", "isPaused", "getVolume", "getPosition"}, methods

            # bind after ready: events flow; unbind: they stop
            await page.evaluate("window.track('a', window.widgets.a, ['playProgress', 'pause'])")
            await count(page, "a", "playProgress", 3)
            await page.evaluate("window.widgets.a.unbind('playProgress')")
            await page.evaluate(ask, "getPosition")  # in order: the unbind has been handled
            before = await page.evaluate("window.count('a', 'playProgress')")
            await until(page, "window.widgets.a.get('getPosition').then((p) => p > 3000)")
            assert await page.evaluate("window.count('a', 'playProgress')") == before
            await page.evaluate("window.widgets.a.send('pause')")
            await count(page, "a", "pause")
        finally:
            await browser.close()
    log.assert_clean()


async def test_two_widgets_load_and_error_frame(gateway: Any) -> None:
    """Two players on one page keep apart (single_active pauses the other); load() re-sources and re-binds."""
    require_chromium()
    a_id, b_id = tone_ids(gateway)[:2]
    script = """
      for (const key of ["a", "b"]) {
        const w = new TestWidget(document.getElementById(key));
        window.widgets[key] = w;
        window.track(key, w, ["ready", "play", "pause", "playProgress", "error"]);
      }
    """
    frames = {
        "a": player_src(gateway.url, f"{gateway.url}/v1/tracks/{a_id}"),
        "b": player_src(gateway.url, f"{gateway.url}/embed/{b_id}", "&color=00aa88&visual=true"),
    }
    log = ErrorLog(allow=["Failed to load resource"])  # the refused URL's frame answers 403
    async with HostSite({"": host_page(frames, script)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            await page.goto(host.url("/"))
            await count(page, "a", "ready")
            await count(page, "b", "ready")
            sound_a = await page.evaluate("window.widgets.a.get('getCurrentSound')")
            sound_b = await page.evaluate("window.widgets.b.get('getCurrentSound')")
            assert (sound_a["id"], sound_b["id"]) == (a_id, b_id)

            await page.evaluate("window.widgets.a.send('play')")
            await count(page, "a", "playProgress", 2)
            assert await page.evaluate("window.count('b', 'play')") == 0
            # b starts: a pauses (single_active, SoundCloud's default)
            await page.evaluate("window.widgets.b.send('play')")
            await count(page, "b", "play")
            await count(page, "a", "pause")
            assert await page.evaluate("window.widgets.a.get('isPaused')") is True
            await page.evaluate("window.widgets.b.send('pause')")

            # load(): a now plays b's track; the bound events are bound again at its ready
            await page.evaluate(f"window.widgets.a.load({json.dumps(f'{gateway.url}/embed/{b_id}')}, {{auto_play: true}})")
            await count(page, "a", "ready", 2)
            await count(page, "a", "play", 2)
            assert (await page.evaluate("window.widgets.a.get('getCurrentSound')"))["id"] == b_id
            await page.evaluate("window.widgets.a.send('pause')")

            # a URL the configuration does not allow: a message in the frame, and still a ready
            await page.evaluate("window.widgets.b.load('http://127.0.0.2:9/nope.mp3')")
            await count(page, "b", "ready", 2)
            frame = page.frame_locator("#b")
            text = await frame.locator(".message").text_content()
            assert text and "not allowed" in text
            assert await page.evaluate("window.widgets.b.get('getSounds')") == []
        finally:
            await browser.close()
    log.assert_clean()


# -- playlists ---------------------------------------------------------------------------


@pytest.fixture
async def audio_site(upstream_files: dict[str, Path]) -> AsyncIterator[Any]:
    files = {name: p.read_bytes() for name, p in upstream_files.items()}
    lists: dict[str, str] = {}

    async def audio(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type="audio/mpeg")

    async def playlist(request: web.Request) -> web.Response:
        return web.Response(text=lists[request.match_info["name"]], content_type="audio/x-mpegurl")

    app = web.Application()
    app.router.add_get("/audio/{name}", audio)
    app.router.add_get("/lists/{name}", playlist)
    runner, port = await serve_on_loopback(app)

    class SiteInfo:
        base = f"http://127.0.0.1:{port}"
        host = f"127.0.0.1:{port}"
        playlists = lists

    yield SiteInfo
    await runner.cleanup()


async def test_playlist_next_prev_skip_start_track_prefetch(gateway_factory: Any, audio_site: Any) -> None:
    require_chromium()
    gateway = await asyncio.to_thread(gateway_factory, **{"sources.url": {"allow_hosts": [audio_site.host]}})
    audio_site.playlists["mix.m3u"] = (
        f"#EXTM3U\n#EXTINF:6,Other\n{audio_site.base}/audio/other.mp3\n"
        f"#EXTINF:12,Song\n{audio_site.base}/audio/song.mp3\n"
        f"#EXTINF:6,Other again\n{audio_site.base}/audio/other.mp3?again=1\n"
    )
    src = player_src(gateway.url, f"{audio_site.base}/lists/mix.m3u", "&start_track=1")
    script = """
      const w = new TestWidget(document.getElementById("a"));
      window.widgets.a = w;
      window.track("a", w, ["ready", "play", "finish", "playProgress"]);
    """
    log = LiveEdgeLog()  # short fresh tracks: the player may wait at a live edge
    async with HostSite({"": host_page({"a": src}, script)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            chunk_requests: list[str] = []
            page.on("request", lambda r: chunk_requests.append(r.url) if "/chunks/" in r.url else None)
            await page.goto(host.url("/"))
            await count(page, "a", "ready")
            ask = "(m) => window.widgets.a.get(m)"
            sounds = await page.evaluate(ask, "getSounds")
            assert [s["title"] for s in sounds] == ["Other", "Song", "Other again"]
            ids = [s["id"] for s in sounds]
            assert len(set(ids)) == 3
            assert await page.evaluate(ask, "getCurrentSoundIndex") == 1  # start_track=1
            assert (await page.evaluate(ask, "getCurrentSound"))["title"] == "Song"
            # nothing of track 0 was fetched: start_track is chosen before loading
            assert not any(f"/v1/tracks/{ids[0]}/" in u for u in chunk_requests)

            await page.evaluate("window.widgets.a.send('play')")
            await count(page, "a", "playProgress")
            # the next track's first chunks are fetched while this one plays (12 s track, 10 s lead)
            await until(page, "window.widgets.a.get('getPosition').then((p) => p > 2500)")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while loop.time() < deadline and not any(f"/v1/tracks/{ids[2]}/chunks/0" in u for u in chunk_requests):
                await asyncio.sleep(0.2)
            assert any(f"/v1/tracks/{ids[2]}/chunks/0" in u for u in chunk_requests), chunk_requests
            assert await page.evaluate(ask, "getCurrentSoundIndex") == 1

            await page.evaluate("window.widgets.a.send('next')")
            await until(page, "window.widgets.a.get('getCurrentSoundIndex').then((i) => i === 2)")
            await count(page, "a", "play", 2)
            await page.evaluate("window.widgets.a.send('prev')")
            await until(page, "window.widgets.a.get('getCurrentSoundIndex').then((i) => i === 1)")
            await page.evaluate("window.widgets.a.send('skip', 0)")
            await until(page, "window.widgets.a.get('getCurrentSoundIndex').then((i) => i === 0)")
            assert (await page.evaluate(ask, "getCurrentSound"))["title"] == "Other"
            await page.evaluate("window.widgets.a.send('skip', 7)")  # past the end: ignored
            assert await page.evaluate(ask, "getCurrentSoundIndex") == 0
            # the end of a track is a finish, and the next one plays
            await page.evaluate("window.widgets.a.send('seekTo', 5000)")
            await count(page, "a", "finish")
            await until(page, "window.widgets.a.get('getCurrentSoundIndex').then((i) => i === 1)")
            # the list is in the frame, as buttons
            frame = page.frame_locator("#a")
            assert await frame.locator(".list button").count() == 3
            assert await frame.locator('.list button[aria-current="true"] .t').text_content() == "Song"
        finally:
            await browser.close()
    log.assert_clean()


async def test_skip_while_the_last_track_still_starts_and_seek_before_load(gateway_factory: Any, audio_site: Any) -> None:
    """A host that skips twice quickly and seeks at once gets the last track, playing, where it asked.

    The first skip's play() is still waiting for data (its chunks come over
    a slow network) when the second skip unloads it: that play()'s AbortError
    belongs to the old track and must not stop the new one. The seekTo arrives
    before the new track's manifest: it waits for it instead of being dropped.
    """
    require_chromium()
    gateway = await asyncio.to_thread(gateway_factory, **{"sources.url": {"allow_hosts": [audio_site.host]}})
    audio_site.playlists["quick.m3u"] = (
        f"#EXTM3U\n#EXTINF:12,Song\n{audio_site.base}/audio/song.mp3\n"
        f"#EXTINF:6,Slow\n{audio_site.base}/audio/other.mp3\n"
        f"#EXTINF:12,Last\n{audio_site.base}/audio/song.mp3?last=1\n"
    )
    src = player_src(gateway.url, f"{audio_site.base}/lists/quick.m3u")
    script = """
      const w = new TestWidget(document.getElementById("a"));
      window.widgets.a = w;
      window.track("a", w, ["ready", "play", "playProgress"]);
    """
    log = LiveEdgeLog()  # short fresh tracks: the player may wait at a live edge
    async with HostSite({"": host_page({"a": src}, script)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            await page.goto(host.url("/"))
            await count(page, "a", "ready")
            ask = "(m) => window.widgets.a.get(m)"
            ids = [s["id"] for s in await page.evaluate(ask, "getSounds")]

            async def slow_network(route: Any) -> None:
                await asyncio.sleep(3)
                await route.continue_()

            await page.route(f"**/v1/tracks/{ids[1]}/chunks/**", slow_network)
            await page.evaluate("window.widgets.a.send('play')")
            await count(page, "a", "playProgress")
            await page.evaluate("window.widgets.a.send('skip', 1)")
            await count(page, "a", "play", 2)  # track 1's play() was called; its data is still on the way
            assert await page.evaluate(ask, "isPaused") is False
            await page.evaluate("window.widgets.a.send('skip', 2); window.widgets.a.send('seekTo', 7000)")
            await until(page, "window.widgets.a.get('getCurrentSoundIndex').then((i) => i === 2)")
            await until(page, "window.widgets.a.get('getPosition').then((p) => p > 7000)")
            assert await page.evaluate(ask, "isPaused") is False
            assert (await page.evaluate(ask, "getCurrentSound"))["title"] == "Last"
        finally:
            await browser.close()
    log.assert_clean()


async def test_layouts_keyboard_and_screenshots(gateway: Any) -> None:
    """Compact and visual layouts at 320 and 800 px: usable, accessible; screenshots into docs/."""
    require_chromium()
    tid = tone_ids(gateway)[0]
    own = f"{gateway.url}/v1/tracks/{tid}"
    log = ErrorLog()
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            for layout, query, height in (("compact", "&color=3366ff", 166), ("visual", "&visual=true&color=3366ff", 400)):
                for width in (320, 800):
                    page = log.watch(await browser.new_page(viewport={"width": width, "height": height}))
                    await page.goto(player_src(gateway.url, own, query))
                    await until(page, "!document.querySelector('.play').disabled")
                    # every control inside the frame, none clipped
                    for sel in ("main .play", "main .wave", "main .title"):
                        box = await page.locator(sel).bounding_box()
                        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (layout, width, sel, box)
                        assert box["y"] >= 0 and box["y"] + box["height"] <= height + 1, (layout, width, sel, box)
                    # keyboard: tab to play, Enter plays; tab to the seek slider, End/Home seek
                    await page.keyboard.press("Tab")
                    assert await page.evaluate("document.activeElement.className") == "play"
                    assert await page.get_attribute("main .play", "aria-label") == "Play"
                    await page.keyboard.press("Enter")
                    await until(page, "document.querySelector('.play').getAttribute('aria-label') === 'Pause'")
                    # the sharing line (what this listener sends, and a way to stop) comes with the P2P agent's welcome
                    await until(page, "document.querySelector('.share-line') && !document.querySelector('.share-line').hidden")
                    await page.keyboard.press("Tab")  # the title link
                    await page.keyboard.press("Tab")
                    assert await page.evaluate("document.activeElement.getAttribute('aria-label')") == "Stop sharing with other listeners"
                    await page.keyboard.press("Tab")
                    assert await page.evaluate("document.activeElement.getAttribute('role')") == "slider"
                    await page.keyboard.press("ArrowRight")
                    await until(page, "Number(document.querySelector('.wave').getAttribute('aria-valuenow')) >= 5")
                    text = await page.get_attribute("main .wave", "aria-valuetext")
                    assert text and " of " in text
                    await page.keyboard.press("k")
                    await until(page, "document.querySelector('.play').getAttribute('aria-label') === 'Play'")
                    await page.evaluate("document.activeElement.blur()")
                    out = ROOT / "docs" / f"sc-player-{layout}-{width}.png"
                    await page.screenshot(path=str(out))
                    assert out.stat().st_size > 2000
                    await page.close()
        finally:
            await browser.close()
    log.assert_clean()


async def test_get_duration_after_ready_is_the_whole_track_on_a_first_play(gateway_factory: Any, tmp_path: Path) -> None:
    """Never played, its upstream stalled after ~6 s of a 30 s MP3: getDuration at ready says ~30 s, not 6 s,
    and a seek past what is transcoded waits for it."""
    require_chromium()
    upstream = Upstream({"long.mp3": make_audio(tmp_path / "long.mp3", 30, freq=440, fmt="mp3")})
    upstream.stall = asyncio.Event()
    upstream.stall_after = 100_000  # of 480 kB at 128 kb/s: ~6 s
    runner, port = await serve_on_loopback(upstream.app)
    try:
        # min_bytes_per_second 0: the stall is this test's doing, not a slow upstream to give up on
        url_source = {"allow_hosts": [f"127.0.0.1:{port}"], "min_bytes_per_second": 0}
        gateway = await asyncio.to_thread(gateway_factory, **{"sources.url": url_source})
        src = player_src(gateway.url, f"http://127.0.0.1:{port}/audio/long.mp3")
        script = """
          const w = new TestWidget(document.getElementById("a"));
          window.widgets.a = w;
          window.track("a", w, ["ready", "seek", "playProgress"]);
        """
        log = LiveEdgeLog()
        async with HostSite({"": host_page({"a": src}, script)}) as host, async_playwright() as pw:
            browser = await launch(pw)
            try:
                page = log.watch(await browser.new_page())
                # not "load": that waits for the frame's artwork, which waits for the transcode's end
                await page.goto(host.url("/"), wait_until="domcontentloaded")
                await count(page, "a", "ready")
                ask = "(m) => window.widgets.a.get(m)"
                duration = await page.evaluate(ask, "getDuration")
                sound = await page.evaluate(ask, "getCurrentSound")
                # the transcode is still held at ~6 s: what the frame said is the estimate
                manifest_url = f"{gateway.url}/v1/tracks/{sound['ztream_id']}/manifest"
                manifest = await asyncio.to_thread(_get_json, manifest_url)
                assert manifest["complete"] is False and manifest["duration_estimated"] is True
                done = manifest["chunks"][-1]["start"] + manifest["chunks"][-1]["duration"]
                assert done < 10, manifest
                assert 28_500 < duration < 31_500, duration
                assert 28_500 < sound["duration"] < 31_500, sound

                # a seek into the part not transcoded yet waits for it, then plays from there
                await page.evaluate("window.widgets.a.send('play'); window.widgets.a.send('seekTo', 20000)")
                await asyncio.sleep(0.5)
                assert await page.evaluate("window.count('a', 'seek')") == 0  # not there yet
                upstream.stall.set()
                await count(page, "a", "seek")
                assert await page.evaluate("window.last('a', 'seek').currentPosition") >= 19_500
                await until(page, "window.widgets.a.get('getPosition').then((p) => p > 20500)")
                await asyncio.sleep(1.0)  # 24 s of MP3 at ~100x real time
                manifest = await asyncio.to_thread(_get_json, manifest_url)
                assert manifest["complete"] is True and manifest["duration_estimated"] is False
                assert abs(manifest["expected_duration"] - 30) < 0.2
            finally:
                await browser.close()
        log.assert_clean()
    finally:
        upstream.stall.set()
        await runner.cleanup()


def _get_json(url: str) -> Any:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(e.read()) from None
