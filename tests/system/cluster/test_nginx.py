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
