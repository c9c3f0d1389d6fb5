"""The embed page, the widget API across origins, oEmbed and the client files.

The host pages live on ``http://localhost:PORT`` (``bench.browser.HostSite``),
the gateway on ``http://127.0.0.1:PORT``: two origins, as for a real site
that embeds the player.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.support.browser import ErrorLog, HostSite, launch, require_chromium, until

pytestmark = [pytest.mark.timeout(60)]

from playwright.async_api import async_playwright

WAIT = 30_000


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(fetch, url, headers)


def long_id(gateway: Any) -> str:
    _, _, body = fetch(f"{gateway.url}/v1/tracks")
    for t in json.loads(body)["tracks"]:
        if t["title"].startswith("tone") and t["id"] in gateway.library_ids:
            return str(t["id"])
    raise AssertionError("no 20 s track in the library")


def widget_page(gateway_url: str, track_id: str, *, extra: str = "", query: str = "") -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>a blog</title></head>
<body>
<h1>A post with a track</h1>
<iframe id="f" src="{gateway_url}/embed/{track_id}{query}" width="600" height="166" allow="autoplay" style="border:0"></iframe>
{extra}
<script type="module">
  import {{ Widget }} from "{gateway_url}/client/widget.js";
  window.log = [];
  const w = new Widget(document.getElementById("f"));
  window.w = w;
  for (const name of Object.keys(Widget.Events)) {{
    w.bind(Widget.Events[name], (data) => window.log.push({{ name, data, t: performance.now() }}));
  }}
  window.ask = (method) => new Promise((resolve) => w[method](resolve));
  window.count = (name) => window.log.filter((e) => e.name === name).length;
  window.last = (name) => window.log.filter((e) => e.name === name).at(-1)?.data;
</script>
</body></html>"""


async def wait_count(page: Any, name: str, n: int = 1) -> None:
    await page.wait_for_function(f"window.count && window.count({json.dumps(name)}) >= {n}", timeout=WAIT)


async def test_widget_drives_embed_from_another_origin(gateway: Any) -> None:
    """READY, play, PLAY_PROGRESS advancing, getters, volume, pause/toggle, seek, FINISH."""
    require_chromium()
    tid = long_id(gateway)
    log = ErrorLog()
    async with HostSite({"": widget_page(gateway.url, tid)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            await page.goto(host.url("/"))
            assert host.origin.startswith("http://localhost:") and gateway.url.startswith("http://127.0.0.1:")
            await wait_count(page, "READY")
            ready = await page.evaluate("window.last('READY')")
            assert ready["id"] == tid

            await page.evaluate("window.w.play()")
            await wait_count(page, "PLAY")
            await wait_count(page, "PLAY_PROGRESS", 4)
            progress = await page.evaluate("window.log.filter((e) => e.name === 'PLAY_PROGRESS').map((e) => e.data.currentPosition)")
            assert progress == sorted(progress) and progress[-1] > progress[0]
            await page.wait_for_function("window.last('PLAY_PROGRESS').currentPosition > 1000", timeout=WAIT)

            # the transcode may still be running at READY: ask once it is over
            await until(page, "window.ask('getDuration').then((d) => d > 19000)")
            duration = await page.evaluate("window.ask('getDuration')")
            assert 19_000 < duration < 21_000
            position = await page.evaluate("window.ask('getPosition')")
            assert 0 < position < duration

            await page.evaluate("window.w.setVolume(30)")
            assert await page.evaluate("window.ask('getVolume')") == 30

            await page.evaluate("window.w.pause()")
            await wait_count(page, "PAUSE")
            assert await page.evaluate("window.ask('isPaused')") is True
            await page.evaluate("window.w.toggle()")
            await wait_count(page, "PLAY", 2)

            await page.evaluate("window.w.seekTo(15000)")
            await wait_count(page, "SEEK")
            seek = await page.evaluate("window.last('SEEK').currentPosition")
            assert 14_500 <= seek <= 16_000
            await wait_count(page, "FINISH")
            finish = await page.evaluate("window.last('FINISH')")
            assert finish["currentPosition"] > 19_000
            assert await page.evaluate("window.count('ERROR')") == 0
        finally:
            await browser.close()
    log.assert_clean()


async def test_messages_only_from_the_right_windows(gateway: Any) -> None:
    """The widget ignores events not from its iframe; the embed ignores commands not from its parent."""
    require_chromium()
    tid = long_id(gateway)
    # a sibling frame of the host's origin that tries to drive the player and to fake events
    evil = """<iframe id="evil" srcdoc="<script>
        const fake = (kind, extra) => Object.assign({channel: 'ztream-widget', v: 1, kind}, extra);
        window.run = () => setTimeout(() => {
          parent.frames[0].postMessage(fake('command', {method: 'hello'}), '*');
          parent.frames[0].postMessage(fake('command', {method: 'play'}), '*');
          parent.postMessage(fake('event', {event: 'finish', data: {currentPosition: 1}}), '*');
          parent.evilDone = true;
        });
      </script>"></iframe>"""
    log = ErrorLog()
    async with HostSite({"": widget_page(gateway.url, tid, extra=evil)}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            await page.goto(host.url("/"))
            await wait_count(page, "READY")
            await page.evaluate("document.getElementById('evil').contentWindow.run()")
            await page.wait_for_function("window.evilDone === true", timeout=WAIT)
            # the host page itself fakes an event too
            await page.evaluate(
                "window.postMessage({channel: 'ztream-widget', v: 1, kind: 'event', event: 'finish', data: {}}, '*')"
            )
            # a round trip through the embed: everything posted before it has been handled
            assert await page.evaluate("window.ask('isPaused')") is True
            await page.evaluate("new Promise((r) => setTimeout(r, 0))")
            assert await page.evaluate("window.count('FINISH')") == 0
            assert await page.evaluate("window.count('PLAY')") == 0

            # the embed page on its own (no parent): commands posted to it do nothing
            embed = log.watch(await browser.new_page())
            await embed.goto(f"{gateway.url}/embed/{tid}")
            await until(embed, "document.getElementById('player').ready === true")
            await embed.evaluate(
                "window.postMessage({channel: 'ztream-widget', v: 1, kind: 'command', method: 'play'}, '*')"
            )
            await embed.evaluate("new Promise((r) => setTimeout(r, 300))")
            assert await embed.evaluate("document.getElementById('player').paused") is True
        finally:
            await browser.close()
    log.assert_clean()


async def test_embed_autoplay_color_and_oembed_discovery(gateway: Any) -> None:
    """?autoplay=1 plays at once, ?color= sets the accent, and the page links its oEmbed."""
    require_chromium()
    tid = long_id(gateway)
    log = ErrorLog()
    page_html = widget_page(gateway.url, tid, query="?autoplay=1&color=00aa88")
    async with HostSite({"": page_html}) as host, async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = log.watch(await browser.new_page())
            await page.goto(host.url("/"))
            await wait_count(page, "PLAY_PROGRESS", 2)
            frame = page.frame_locator("#f")
            accent = await frame.locator("#player").evaluate(
                "(p) => getComputedStyle(p).getPropertyValue('--ztream-accent').trim()"
            )
            assert accent == "#00aa88"
            href = await frame.locator('link[rel="alternate"][type="application/json+oembed"]').get_attribute("href")
            assert href is not None
            status, _, body = await get(href)
            assert status == 200 and json.loads(body)["type"] == "rich"
            label = await frame.locator("#player").evaluate("(p) => p.shadowRoot.querySelector('.play').getAttribute('aria-label')")
            assert label == "Pause"
        finally:
            await browser.close()
    log.assert_clean()


async def test_oembed_answers(gateway: Any) -> None:
    tid = long_id(gateway)
    embed_url = f"{gateway.url}/embed/{tid}"

    def oembed(**params: str) -> str:
        return f"{gateway.url}/oembed?" + urllib.parse.urlencode(params)

    status, headers, body = await get(oembed(url=embed_url, format="json"))
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert headers.get("access-control-allow-origin") == "*"
    data = json.loads(body)
    assert data["version"] == "1.0" and data["type"] == "rich"
    assert data["title"] == "tone a" or data["title"].startswith("tone")
    assert data["provider_name"] == "Ztream"
    assert (data["width"], data["height"]) == (600, 166)
    assert f'src="{embed_url}"' in data["html"] and data["html"].startswith("<iframe")
    assert f'width="{data["width"]}"' in data["html"] and f'height="{data["height"]}"' in data["html"]

    # format defaults to json; the API URL of the track works too; maxwidth/maxheight honoured
    status, _, body = await get(oembed(url=f"{gateway.url}/v1/tracks/{tid}", maxwidth="400", maxheight="120"))
    data = json.loads(body)
    assert status == 200 and (data["width"], data["height"]) == (400, 120)
    assert 'width="400"' in data["html"]
    # larger limits do not grow the player
    _, _, body = await get(oembed(url=embed_url, maxwidth="5000"))
    assert json.loads(body)["width"] == 600

    # errors, as JSON
    status, _, body = await get(oembed(url=embed_url, format="xml"))
    assert status == 501 and json.loads(body)["error"] == "format_not_implemented"
    status, _, body = await get(oembed(url="https://elsewhere.example/embed/abc"))
    assert status == 404 and "error" in json.loads(body)
    status, _, body = await get(oembed(url=f"{gateway.url}/embed/0000000000000000"))
    assert status == 404 and json.loads(body)["error"] == "track_not_found"
    status, _, body = await get(oembed(format="json"))
    assert status == 400 and json.loads(body)["error"] == "bad_request"
    status, _, body = await get(oembed(url=embed_url, maxwidth="wide"))
    assert status == 400
    status, _, body = await get(oembed(url=embed_url, maxwidth="0"))
    assert status == 400
    # never larger than the consumer asks (oEmbed 2.2), however small
    _, _, body = await get(oembed(url=embed_url, maxwidth="150", maxheight="60"))
    assert (json.loads(body)["width"], json.loads(body)["height"]) == (150, 60)


async def test_embed_page_and_client_files(gateway: Any) -> None:
    tid = long_id(gateway)
    status, headers, body = await get(f"{gateway.url}/embed/{tid}")
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = body.decode()
    assert '<link rel="alternate" type="application/json+oembed"' in page
    assert f'src="{gateway.url}/v1/tracks/{tid}"' in page
    assert "<script>" not in page  # no inline script: the CSP can stay strict
    assert "frame-ancestors" not in headers.get("content-security-policy", "")  # embed_origins = ["*"]

    status, _, body = await get(f"{gateway.url}/embed/0000000000000000")
    assert status == 404 and json.loads(body) == {"error": "track_not_found", "detail": json.loads(body)["detail"]}

    for name in ("widget.js", "ztream-player.js", "scheduler.js"):
        status, headers, body = await get(f"{gateway.url}/client/{name}", {"Origin": "http://localhost:1"})
        assert status == 200, name
        assert headers["content-type"].startswith("text/javascript")
        assert headers["access-control-allow-origin"] == "*"
    status, headers, _ = await get(f"{gateway.url}/client/embed.css")
    assert status == 200 and headers["content-type"].startswith("text/css")
    for bad in ("../gateway/web.py", "%2e%2e/pyproject.toml", "..%2fpyproject.toml", ".hidden", "nope.js", ""):
        status, headers, body = await get(f"{gateway.url}/client/{bad}")
        assert status == 404, bad
        assert "error" in json.loads(body), bad

    status, headers, body = await get(f"{gateway.url}/")
    assert status == 200 and b"<ztream-player" in body
    assert b"{{" not in body


async def test_embed_origins_are_enforced(gateway_factory: Any) -> None:
    """With embed_origins set, only those origins can frame the player or call the API."""
    require_chromium()
    allowed_log = ErrorLog()
    # Chromium reports the refused frame, and the widget then meets an error page.
    foreign_log = ErrorLog(allow=["frame-ancestors", "postMessage", "CORS", "Failed to load resource", "Failed to fetch"])
    async with HostSite() as allowed, HostSite() as foreign, async_playwright() as pw:
        gateway = await asyncio.to_thread(gateway_factory, server={"embed_origins": [allowed.origin]})
        tid = long_id(gateway)
        status, headers, _ = await get(f"{gateway.url}/embed/{tid}")
        assert status == 200
        csp = headers["content-security-policy"]
        ancestors = re.search(r"frame-ancestors ([^;]+)", csp)
        assert ancestors is not None
        assert ancestors.group(1).split() == ["'self'", allowed.origin]

        allowed.pages[""] = widget_page(gateway.url, tid)
        foreign.pages[""] = widget_page(gateway.url, tid)
        foreign.pages["component"] = (
            f'<!doctype html><link rel="icon" href="data:,"><script type="module" src="{gateway.url}/client/ztream-player.js"></script>'
            f'<ztream-player id="p" src="{gateway.url}/v1/tracks/{tid}"></ztream-player>'
            "<script>window.errors = []; document.addEventListener('error', (e) => "
            "{ if (e.target.id === 'p') window.errors.push(e.detail); }, true);</script>"
        )
        browser = await launch(pw)
        try:
            # the allowed origin: the widget works
            page = allowed_log.watch(await browser.new_page())
            await page.goto(allowed.url("/"))
            await wait_count(page, "READY")
            await page.evaluate("window.w.play()")
            await wait_count(page, "PLAY_PROGRESS")

            # another origin: the browser refuses to frame the embed page
            page = foreign_log.watch(await browser.new_page())
            await page.goto(foreign.url("/"))
            frame = page.frames[1] if len(page.frames) > 1 else None
            assert frame is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while loop.time() < deadline and not page.frames[1].url.startswith("chrome-error://"):
                await asyncio.sleep(0.1)
            assert page.frames[1].url.startswith("chrome-error://"), page.frames[1].url
            assert await page.evaluate("window.count('READY')") == 0
            # and the API answers it without CORS, so the web component cannot load the track
            page = foreign_log.watch(await browser.new_page())
            await page.goto(foreign.url("/component"))
            await page.wait_for_function("window.errors.length > 0", timeout=WAIT)
        finally:
            await browser.close()
    allowed_log.assert_clean()
    foreign_log.assert_clean()  # nothing beyond the expected refusals
