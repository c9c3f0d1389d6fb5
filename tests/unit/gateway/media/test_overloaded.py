"""When 503 ``overloaded`` starts, as docs/config.md says: max_concurrent running and as many waiting.

The per-client and per-host shares and the reserved slot are
tests/unit/gateway/media/test_fairness.py's and tests/system/reliability/test_fair_slots.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.audio import make_audio


@pytest.fixture
async def hanging(tmp_path: Any) -> AsyncIterator[tuple[int, asyncio.Event]]:
    """An upstream that sends the first 4 KB of an MP3 (no whole chunk), then nothing until released."""
    head = make_audio(tmp_path / "head.mp3", 10, fmt="mp3").read_bytes()[:4096]
    release = asyncio.Event()

    async def serve(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg", "Content-Length": str(10_000_000)})
        await response.prepare(request)
        await response.write(head)
        await release.wait()
        return response

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, release
    release.set()
    await runner.cleanup()


async def test_overloaded_starts_past_max_concurrent_running_and_as_many_waiting(
    make_gateway: Any, hanging: tuple[int, asyncio.Event]
) -> None:
    port, _release = hanging
    client = await make_gateway(
        # One client, one host, URL tracks only: the shares and the reserved slot off, so this is the queue's rule.
        transcode={"max_concurrent": 2, "reserved_slots": 0, "max_per_client": 0, "max_per_host": 0, "min_speed": 0.0},
        server={"chunk_wait_seconds": 30.0},
        **{"sources.url": {"allow_hosts": [f"127.0.0.1:{port}"], "min_bytes_per_second": 0, "read_timeout": 60.0}},
    )
    ids = []
    for i in range(6):
        r = await client.post("/v1/tracks", json={"url": f"http://127.0.0.1:{port}/{i}.mp3"})
        assert r.status in (200, 201)
        ids.append((await r.json())["id"])
    # Four manifests asked for: two take the slots, two wait (their requests stay open).
    waiting = []
    for t in ids[:4]:
        waiting.append(asyncio.create_task(client.get(f"/v1/tracks/{t}/manifest")))
        await asyncio.sleep(0.5)  # each takes its slot or its place in the queue
    assert not any(t.done() for t in waiting), [t.result().status for t in waiting if t.done()]
    r = await client.get(f"/v1/tracks/{ids[4]}/manifest")
    assert r.status == 503 and (await r.json())["error"] == "overloaded" and r.headers["Retry-After"]
    for t in waiting:
        t.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
