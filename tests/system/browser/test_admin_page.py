"""The admin page in Chromium: sign in, watch the live figures, add an allowed host, see it take effect.

The gateway is a real ``ztream serve`` subprocess; the upstream is a loopback
aiohttp server of this test, which the gateway refuses (a private address)
until the page adds its ``host:port`` to ``sources.url.allow_hosts``.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from tests.support.audio import make_audio
from tests.support.browser import ErrorLog, launch, require_chromium, until
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.timeout(60)]


TOKEN = "page-token-3k9J"


@pytest.fixture
async def upstream(tmp_path: Path) -> Any:
    up = Upstream({"song.mp3": make_audio(tmp_path / "song.mp3", 4, freq=440, fmt="mp3")})
    server = TestServer(up.app, host="127.0.0.1")
    await server.start_server()
    up.host = f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    up.song = f"http://127.0.0.1:{server.port}/audio/song.mp3"  # type: ignore[attr-defined]
    yield up
    await server.close()


async def text(page: Any, selector: str) -> str:
    return str(await page.text_content(selector) or "")


async def test_sign_in_add_an_allowed_host_and_see_it_take_effect(gateway_factory: Any, upstream: Any) -> None:
    require_chromium()
    gw = await asyncio.to_thread(gateway_factory, admin={"token": TOKEN})
    # Failed requests the test causes on purpose: the wrong token.
    errors = ErrorLog(allow=["status of 403"])
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = errors.watch(await browser.new_page())
            await page.goto(f"{gw.url}/admin")
            assert await page.is_visible("#signin") and not await page.is_visible("#dashboard")

            await page.fill("#token", "not-the-token")
            await page.click("#signin-button")
            await until(page, "document.querySelector('#signin-status').textContent.includes('Wrong token')")
            assert not await page.is_visible("#dashboard")

            await page.fill("#token", TOKEN)
            await page.click("#signin-button")
            await until(page, "!document.querySelector('#dashboard').hidden")
            assert await text(page, "#hosts") == "any public host"
            assert (await page.input_value("#local-dirs")).strip()
            assert await page.input_value("#sc-client-secret") == ""

            # Live figures: the tiles fill in and the chart grows on its own.
            await until(page, "document.querySelector('#fig-tracks').textContent === '3'")
            await until(page, "document.querySelector('#line-offload').getAttribute('points').split(' ').length >= 2",
                        timeout=10)

            # Before: the loopback upstream is refused.
            await page.fill("#try-url", upstream.song)
            await page.click("#try-button")
            await until(page, "document.querySelector('#try-status').textContent.includes('Refused (403')")

            # Add the host, save: applied at once.
            await page.fill("#host-new", upstream.host)
            await page.click("#host-add")
            assert await page.get_attribute(f'#hosts li[data-host="{upstream.host}"]', "data-host") == upstream.host
            await page.click("#save")
            await until(page, "document.querySelector('#sources-status').textContent.includes('Saved')")
            assert "sources.url.allow_hosts" in await text(page, "#sources-status")

            # After: the same URL is accepted, from the page and from anywhere else.
            await page.fill("#try-url", upstream.song)
            await page.click("#try-button")
            await until(page, "document.querySelector('#try-status').textContent.includes('Accepted')")
            track_id = await page.get_attribute("#try-status", "data-track-id")
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{gw.url}/v1/tracks", json={"url": upstream.song}) as r:
                    assert r.status == 200 and (await r.json())["id"] == track_id
                async with session.get(f"{gw.url}/v1/tracks/{track_id}/manifest") as r:
                    assert r.status == 200 and (await r.json())["chunks"]
                async with session.get(f"{gw.url}/v1/admin/sources",
                                       headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                    body = await r.json()
            assert body["url"]["allow_hosts"] == [upstream.host]
            assert Path(body["saved_to"]).exists() and Path(body["saved_to"]).parent == gw.config_path.parent
            # The page sends every field; the overlay holds only the one the admin changed.
            overlay = tomllib.loads(Path(body["saved_to"]).read_text(encoding="utf-8"))
            assert overlay == {"sources": {"url": {"allow_hosts": [upstream.host]}}}, overlay

            # The token stays for this tab: a reload signs in again by itself and
            # shows the saved host; the token is nowhere in the page.
            await page.reload()
            await until(page, "!document.querySelector('#dashboard').hidden")
            await until(page, f"!!document.querySelector('#hosts li[data-host={json.dumps(upstream.host)}]')")
            assert TOKEN not in await page.content()

            await page.click("#signout")
            assert await page.is_visible("#signin")
            assert await page.evaluate("sessionStorage.length") == 0
            errors.assert_clean()
        finally:
            await browser.close()


async def test_the_track_list_shows_states_and_errors_searches_and_purges(gateway_factory: Any, upstream: Any) -> None:
    require_chromium()
    gw = await asyncio.to_thread(gateway_factory, admin={"token": TOKEN}, **{"sources.url": {"allow_hosts": [upstream.host]}})
    missing = upstream.song.replace("/audio/song.mp3", "/missing")
    async with aiohttp.ClientSession() as session:
        ids = {}
        for url in (missing, upstream.song):
            async with session.post(f"{gw.url}/v1/tracks", json={"url": url}) as r:
                ids[url] = (await r.json())["id"]
        async with session.get(f"{gw.url}/v1/tracks/{ids[missing]}/manifest") as r:
            assert r.status == 404
        while True:
            async with session.get(f"{gw.url}/v1/tracks/{ids[upstream.song]}/manifest") as r:
                if (await r.json())["complete"]:
                    break
            await asyncio.sleep(0.1)
        async with session.get(f"{gw.url}/v1/tracks") as r:
            public = len((await r.json())["tracks"])
    errors = ErrorLog()
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = errors.watch(await browser.new_page())
            await page.goto(f"{gw.url}/admin")
            await page.fill("#token", TOKEN)
            await page.click("#signin-button")
            row = f"#tracks-rows tr[data-id='{ids[missing]}']"
            await until(page, f"!!document.querySelector(\"{row}\")")
            # The count is what /v1/tracks lists (the library and the song), not every record.
            await until(page, f"document.querySelector('#fig-tracks').textContent === '{public}'")
            assert public == 4
            assert await page.get_attribute(row, "data-state") == "failed"
            assert "HTTP 404" in await text(page, f"{row} .err")
            assert "not listed" in await text(page, f"{row} .id")
            song_row = f"#tracks-rows tr[data-id='{ids[upstream.song]}']"
            assert await page.get_attribute(song_row, "data-state") == "ready"
            assert "1 failed" in await text(page, "#tracks-count")

            await page.fill("#tracks-q", "song")
            await until(page, "document.querySelectorAll('#tracks-rows tr').length === 1")
            assert await page.locator(song_row).count() == 1
            await page.fill("#tracks-q", "")
            await page.select_option("#tracks-state", "failed")
            await until(page, "document.querySelectorAll('#tracks-rows tr').length === 1")
            await page.click(f"{row} button")
            await until(page, "document.querySelector('#tracks-status').textContent.includes('Purged')")
            await until(page, "document.querySelectorAll('#tracks-rows tr').length === 0")
            errors.assert_clean()
        finally:
            await browser.close()
