"""Bounded upstreams: four crawling URLs must not starve a healthy track.

Each crawler sends its headers, then one byte a second of a real MP3: every
single read is fast (so ``read_timeout`` never fires) while the body would
take weeks. Strict xfail marks: see tests/system/reliability/test_http_edges.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.audio import make_audio
from tests.support.gateway import GatewayProcess

# The key that bounds a crawling body, set as the shipped default is.
MIN_RATE = {"min_bytes_per_second": 2000}


class CrawlingUpstream:
    def __init__(self, audio: bytes) -> None:
        self.audio = audio
        self.crawling = 0
        self.app = web.Application()
        self.app.router.add_get("/crawl/{n}", self.crawl)
        self.app.router.add_get("/healthy.mp3", self.healthy)

    async def crawl(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        response.content_length = len(self.audio)
        await response.prepare(request)
        self.crawling += 1
        try:
            for i in range(120):  # bounded: two minutes at most, far past any test
                await response.write(self.audio[i : i + 1])
                await asyncio.sleep(1.0)
        finally:
            self.crawling -= 1
        return response

    async def healthy(self, request: web.Request) -> web.Response:
        return web.Response(body=self.audio, content_type="audio/mpeg")


def start_gateway(tmp_path: Path, audio_dir: Path, upstream_port: int) -> GatewayProcess:
    url = {"allow_hosts": [f"127.0.0.1:{upstream_port}"], "read_timeout": 3.0}
    overrides = {
        "sources.url": {**url, **MIN_RATE},
        # Every slot open to one client and one host: this test is about the fetcher's own floor
        # (test_fair_slots.py covers the shares and the speed rule, which would end the crawl first).
        "transcode": {"max_concurrent": 4, "reserved_slots": 0, "max_per_client": 0, "max_per_host": 0,
                      "min_speed": 0.0},
        "server": {"chunk_wait_seconds": 12.0},
    }
    (tmp_path / "with-key").mkdir()
    gw = GatewayProcess(tmp_path / "with-key", audio_dir, overrides)
    try:
        gw.start()
        return gw
    except RuntimeError as exc:
        if "min_bytes_per_second" not in str(exc):
            raise
    overrides["sources.url"] = url
    (tmp_path / "without-key").mkdir()
    gw = GatewayProcess(tmp_path / "without-key", audio_dir, overrides)
    gw.start()
    return gw


@pytest.mark.slow
async def test_crawling_upstreams_do_not_starve_a_healthy_track(tmp_path: Path, audio_dir: Path) -> None:
    up = CrawlingUpstream(make_audio(tmp_path / "song.mp3", 12, freq=440, fmt="mp3").read_bytes())
    server = TestServer(up.app, host="127.0.0.1")
    await server.start_server()
    gw: GatewayProcess | None = None
    crawlers: list[asyncio.Task[Any]] = []
    try:
        gw = await asyncio.to_thread(start_gateway, tmp_path, audio_dir, server.port)
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession(gw.url, timeout=aiohttp.ClientTimeout(total=30)) as http:
            ids = []
            for url in [*(f"{base}/crawl/{n}" for n in range(4)), f"{base}/healthy.mp3"]:
                r = await http.post("/v1/tracks", json={"url": url})
                assert r.status == 201, await r.text()
                ids.append((await r.json())["id"])
            crawlers = [asyncio.create_task(http.get(f"/v1/tracks/{tid}/manifest")) for tid in ids[:4]]
            deadline = time.monotonic() + 10
            while up.crawling < 4:  # every slot is now held by a crawler
                assert time.monotonic() < deadline, f"only {up.crawling} crawlers connected"
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)
            started = time.monotonic()
            r = await http.get(f"/v1/tracks/{ids[4]}/manifest")
            waited = time.monotonic() - started
            body = await r.text()
            assert r.status == 200, f"healthy track: {r.status} after {waited:.1f} s: {body[:200]}"
            assert waited < 10, f"the healthy track started after {waited:.1f} s"
    finally:
        for task in crawlers:
            task.cancel()
        await asyncio.gather(*crawlers, return_exceptions=True)
        if gw is not None:
            await asyncio.to_thread(gw.stop)
        await server.close()
