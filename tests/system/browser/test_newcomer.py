"""The newcomer's first hour, end to end in Chromium.

A fresh config file whose port is taken by another program: ``ztream serve``
says so in one line and names ``--port``; with ``--port`` it serves. On the
landing page a link that answers 404 shows the server's reason and is
neither played nor listed; a good link plays and is listed; the iframe code
the page offers, pasted into a page of another origin (another loopback
port), plays too. Chromium runs as every browser test's does, with no media
permission granted.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from tests.support.audio import make_audio
from tests.support.browser import ErrorLog, HostSite, launch, require_chromium, until
from tests.support.gateway import ROOT, ZTREAM, GatewayProcess, free_port
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.timeout(90)]


@pytest.fixture
async def upstream(tmp_path: Path) -> Any:
    up = Upstream({"song.mp3": make_audio(tmp_path / "song.mp3", 6, freq=440, fmt="mp3")})
    server = TestServer(up.app, host="127.0.0.1")
    await server.start_server()
    up.host = f"127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    yield up
    await server.close()


def public_urls(gw: GatewayProcess) -> list[str]:
    with urllib.request.urlopen(f"{gw.url}/v1/tracks", timeout=10) as r:
        return [t["url"] for t in json.load(r)["tracks"] if t["source"] == "url"]


async def test_busy_port_then_404_then_play_then_embed_elsewhere(tmp_path: Path, upstream: Any) -> None:
    require_chromium()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        # The operator's file names a port another program holds (as 8000 often is).
        gw = GatewayProcess(tmp_path, None, {"server": {"port": taken},
                                             "sources.url": {"allow_hosts": [upstream.host]}}, port=free_port())
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        refused = await asyncio.to_thread(
            subprocess.run, [*ZTREAM, "serve", "--config", str(gw.config_path)],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
        )
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode != 0 and len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert str(taken) in lines[0] and "--port" in lines[0], lines[0]
        await asyncio.to_thread(gw.start, args=["--port", str(gw.port)])
    missing = f"http://{upstream.host}/missing"
    song = f"http://{upstream.host}/audio/song.mp3"
    # The one failed request the test causes on purpose: the manifest of the 404 link.
    errors = ErrorLog(allow=["status of 404"])
    try:
        async with async_playwright() as pw:
            browser = await launch(pw)
            try:
                page = errors.watch(await browser.new_page())
                await page.goto(f"{gw.url}/")
                await until(page, "document.querySelector('#lib-status').textContent.includes('No tracks yet')")

                # A link that answers 404: the reason, no "Added", nothing played, nothing listed.
                await page.fill("#url", missing)
                await page.click("#add-button")
                await until(page, "document.querySelector('#add-status').classList.contains('error')")
                status = str(await page.text_content("#add-status"))
                assert "HTTP 404" in status and "Added" not in status and "Checking" not in status, status
                assert await page.locator("#tracks li").count() == 0
                assert await page.is_hidden("#main-player")
                assert public_urls(gw) == []

                # A good one: said to play only once the gateway answered its manifest, and it plays.
                await page.fill("#url", song)
                await page.click("#add-button")
                await until(page, "document.querySelector('#add-status').textContent.startsWith('Added')")
                assert not await page.evaluate("document.querySelector('#add-status').classList.contains('error')")
                await until(page, "document.getElementById('main-player').currentTime > 1", timeout=20)
                assert await page.locator("#tracks li").count() == 1
                # Listed for every visitor once its transcode has completed (6 s of audio: at once).
                for _ in range(100):
                    if public_urls(gw):
                        break
                    await asyncio.sleep(0.1)
                assert public_urls(gw) == [song]

                # The iframe code the page offers, pasted into a page of another origin.
                snippet = str(await page.text_content("#code-iframe code"))
                assert snippet.startswith("<iframe") and gw.url in snippet, snippet
                blog = ('<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">'
                        f"<title>a blog</title></head><body><h1>My post</h1>{snippet}</body></html>")
                async with HostSite({"": blog}) as host:
                    assert host.origin != gw.url
                    other = errors.watch(await browser.new_page())
                    await other.goto(host.url("/"))
                    frame = other.frame_locator("iframe")
                    await frame.locator("ztream-player button.play").click()
                    embed = next(f for f in other.frames if f.url.startswith(f"{gw.url}/embed/"))
                    await until(embed, "document.querySelector('ztream-player').currentTime > 1", timeout=20)
            finally:
                await browser.close()
        errors.assert_clean()
    finally:
        await asyncio.to_thread(gw.stop)
