"""The shipped deploy/nginx/ztream.conf, with real nginx in front of a real gateway on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.cluster import NginxEdge
from tests.support.gateway import GatewayProcess


@pytest.fixture
def edge(gateway: GatewayProcess, tmp_path: Path) -> Iterator[NginxEdge]:
    nginx = NginxEdge(tmp_path, [gateway.port])
    nginx.start()
    yield nginx
    nginx.stop()


def chunk_requests(metrics: str) -> float:
    """Chunk-store look-ups (one per chunk or init request the gateway answered)."""
    total = 0.0
    for name in ("ztream_cache_hits_total", "ztream_cache_misses_total"):
        match = re.search(rf"^{name} ([0-9.e+]+)$", metrics, re.M)
        assert match, name
        total += float(match.group(1))
    return total


async def test_cold_chunk_once_then_hits(gateway: GatewayProcess, edge: NginxEdge) -> None:
    track = gateway.library_ids[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.url}/metrics") as r:
            before = chunk_requests(await r.text())

        async def get(i: int) -> tuple[int, bytes, str]:
            # Cookies and query noise do not split the cache.
            url = f"{edge.url}/v1/tracks/{track}/chunks/3?noise={i}"
            async with session.get(url, headers={"Cookie": f"session={i}"}) as r:
                return r.status, await r.read(), r.headers.get("X-Cache-Status", "")

        answers = await asyncio.gather(*(get(i) for i in range(30)))
        assert all(status == 200 for status, _, _ in answers)
        assert len({hashlib.sha256(body).hexdigest() for _, body, _ in answers}) == 1
        async with session.get(f"{gateway.url}/metrics") as r:
            after = chunk_requests(await r.text())
        assert after - before == 1, (before, after, [c for _, _, c in answers])
        status, body, cache = await get(99)
        assert (status, cache) == (200, "HIT") and body == answers[0][1]
        async with session.get(f"{edge.url}/v1/tracks/{track}/manifest") as r:
            manifest: dict[str, Any] = await r.json()
        assert hashlib.sha256(body).hexdigest() == manifest["chunks"][3]["sha256"]

        # The stream and the control socket pass through, unbuffered and upgraded.
        async with session.get(f"{edge.url}/v1/tracks/{track}/stream") as r:
            assert r.status == 200 and len(await r.read()) > 0
        async with session.ws_connect(f"{edge.url}/v1/ws") as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"


async def test_each_rendition_its_own_cache_entry(gateway: GatewayProcess, edge: NginxEdge) -> None:
    """A chunk of an fMP4 rendition is other bytes than the WebM chunk of the same index: the
    edge keys its cache by path and rendition, so neither is answered with the other's bytes,
    while other query noise still shares one entry."""
    track = gateway.library_ids[0]
    async with aiohttp.ClientSession() as session:
        async def fetch(query: str) -> tuple[bytes, str]:
            async with session.get(f"{edge.url}/v1/tracks/{track}/chunks/2{query}") as r:
                assert r.status == 200, (query, r.status, await r.text())
                return await r.read(), r.headers["Content-Type"]

        async def hashes(rendition: str) -> str:
            async with session.get(f"{gateway.url}/v1/tracks/{track}/manifest?rendition={rendition}") as r:
                manifest: dict[str, Any] = await r.json()
            return str(manifest["chunks"][2]["sha256"])

        webm, webm_type = await fetch("")
        aac, aac_type = await fetch("?rendition=fmp4-aac")
        opus, _ = await fetch("?rendition=fmp4-opus&noise=1")
        again, _ = await fetch("?rendition=webm")
        assert hashlib.sha256(webm).hexdigest() == await hashes("webm") == hashlib.sha256(again).hexdigest()
        assert hashlib.sha256(aac).hexdigest() == await hashes("fmp4-aac")
        assert hashlib.sha256(opus).hexdigest() == await hashes("fmp4-opus")
        assert (webm_type, aac_type) == ("audio/webm", "audio/mp4")
        async with session.get(f"{edge.url}/v1/tracks/{track}/chunks/2?rendition=fmp4-aac&other=2") as r:
            assert r.headers["X-Cache-Status"] == "HIT" and await r.read() == aac
