"""A compression bomb from a real loopback upstream, against a real gateway process: refused, RSS bounded."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.gateway import GatewayProcess

# 1 GiB of zeros, gzip-compressed: about 1 MB on the wire.
DECODED = 1 << 30


def gzip_of_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_of_zeros(DECODED)


@pytest.fixture
async def bomb_upstream(bomb: bytes) -> AsyncIterator[int]:
    async def serve(request: web.Request) -> web.Response:
        encoding = request.match_info["encoding"]
        return web.Response(body=bomb, headers={"Content-Type": "audio/mpeg", "Content-Encoding": encoding})

    app = web.Application()
    app.router.add_get("/{encoding}/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port
    await runner.cleanup()


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes: now and at its peak."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values["VmRSS"], values["VmHWM"]


async def _outcome(session: aiohttp.ClientSession, gw: GatewayProcess, url: str) -> tuple[int, str]:
    async with session.post(f"{gw.url}/v1/tracks", json={"url": url}) as r:
        assert r.status in (200, 201), await r.text()
        track = (await r.json())["id"]
    for _ in range(300):
        async with session.get(f"{gw.url}/v1/tracks/{track}/manifest") as r:
            body: dict[str, Any] = await r.json()
            if r.status >= 400:
                return r.status, str(body["error"])
        await asyncio.sleep(0.1)
    raise AssertionError("no answer")


async def test_a_gzip_bomb_is_refused_and_rss_stays_bounded(
    gateway_factory: Any, bomb: bytes, bomb_upstream: int
) -> None:
    assert len(bomb) < 1_200_000  # ~1 MB on the wire, 1 GiB decoded
    gw: GatewayProcess = gateway_factory(
        library=None, sources__url={"allow_hosts": [f"127.0.0.1:{bomb_upstream}"], "max_bytes": 200_000_000},
        # Four bombs at once from one client and one host: the fair-slot shares would refuse two of them.
        transcode={"max_per_client": 0, "max_per_host": 0},
    )
    assert gw.proc is not None
    async with aiohttp.ClientSession() as session:
        await asyncio.sleep(1.0)  # settled after start
        rss_before, peak_before = memory(gw.proc.pid)
        # Four at once, as the measurement that peaked at 866 MB; then each other spelling.
        urls = [f"http://127.0.0.1:{bomb_upstream}/gzip/{i}.mp3" for i in range(4)]
        outcomes = await asyncio.gather(*(_outcome(session, gw, u) for u in urls))
        for i, enc in enumerate(("deflate", "br", "GZIP", "x-gzip, identity")):
            urls.append(f"http://127.0.0.1:{bomb_upstream}/{enc}/{i}.mp3")
            outcomes.append(await _outcome(session, gw, urls[-1]))
        rss_after, peak_after = memory(gw.proc.pid)
    print(f"gzip bomb x{len(urls)}: RSS {rss_before >> 20} -> {rss_after >> 20} MiB, "
          f"peak {peak_before >> 20} -> {peak_after >> 20} MiB")
    assert outcomes == [(502, "upstream_encoding")] * len(urls)
    assert peak_after - peak_before < 30 << 20, (peak_before, peak_after)
    assert rss_after - rss_before < 30 << 20, (rss_before, rss_after)
    assert "Traceback" not in gw.log()
