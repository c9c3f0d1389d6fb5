"""SSRF through the public API, shutdown, and slow readers, against real processes."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.audio import make_audio
from tests.support.gateway import fetch_all, post_url
from tests.support.process import wait_dead


@pytest.fixture
async def canary() -> Any:
    """A loopback listener that must never be reached; counts connections."""
    hits: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    server.hits = hits  # type: ignore[attr-defined]
    server.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    yield server
    server.close()
    await server.wait_closed()


LOOPBACK_SPELLINGS = [
    "http://localhost:{c}/a.mp3",
    "http://[::1]:{c}/a.mp3",
    "http://0:{c}/a.mp3",
    "http://2130706433:{c}/a.mp3",
    "http://0x7f.1:{c}/a.mp3",
    "http://127.1:{c}/a.mp3",
    "http://0177.0.0.1:{c}/a.mp3",
    "http://[::ffff:127.0.0.1]:{c}/a.mp3",
    "http://127.0.0.1:{c}/a.mp3",
    "http://127.0.0.1:{u}@127.0.0.1:{c}/a.mp3",
    "http://127.0.0.1:{c}#@127.0.0.1:{u}/a.mp3",
    "http://127.0.0.1:{c}\\@127.0.0.1:{u}/a.mp3",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{c}/_x",
    "ftp://127.0.0.1:{c}/a.mp3",
    "HTTP://LOCALHOST:{c}/a.mp3",
]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
async def test_loopback_spellings_are_refused_without_a_connection(
    make_gateway: Any, upstream: Any, canary: Any, spelling: str
) -> None:
    client = await make_gateway(**{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}})
    r = await post_url(client, spelling.format(c=canary.port, u=upstream.port))
    assert 400 <= r.status < 500, await r.text()
    body = await r.json()
    assert body["error"] in {"bad_url", "upstream_forbidden", "host_not_allowed"}
    assert canary.hits == []


@pytest.mark.parametrize("target", ["http://127.0.0.1:{c}/", "http://localhost:{c}/x.mp3", "http://[::1]:{c}/"])
async def test_redirect_from_allowed_upstream_to_canary_is_refused(
    make_gateway: Any, upstream: Any, canary: Any, target: str
) -> None:
    client = await make_gateway(**{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}})
    to = target.format(c=canary.port)
    r = await post_url(client, f"{upstream.base}/redirect?to={to}")
    assert r.status == 201
    tid = (await r.json())["id"]
    r = await client.get(f"/v1/tracks/{tid}/manifest")
    assert r.status == 403, await r.text()
    assert upstream.hits["redirect"] == 1 and canary.hits == []


async def test_proxy_environment_is_ignored(
    make_gateway: Any, upstream: Any, canary: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{canary.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = await make_gateway(**{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}})
    tid = (await (await post_url(client, f"{upstream.base}/audio/other.mp3")).json())["id"]
    manifest, _, _ = await fetch_all(client, tid)
    assert manifest["complete"] and upstream.hits["other.mp3"] == 1
    assert canary.hits == []


async def test_private_upstream_refused_without_allow_list(make_gateway: Any, upstream: Any, canary: Any) -> None:
    client = await make_gateway()  # empty allow_hosts: public hosts only
    r = await post_url(client, f"{upstream.base}/audio/other.mp3")
    assert r.status == 403 and (await r.json())["error"] == "upstream_forbidden"
    assert upstream.hits["other.mp3"] == 0


async def test_shutdown_kills_running_ffmpeg(
    make_gateway: Any, upstream: Any, ffmpeg_counter: tuple[str, Path]
) -> None:
    wrapper, spawns = ffmpeg_counter
    client = await make_gateway(
        transcode={"ffmpeg": wrapper}, **{"sources.url": {"allow_hosts": [f"127.0.0.1:{upstream.port}"]}}
    )
    tid = (await (await post_url(client, f"{upstream.base}/audio/song.mp3")).json())["id"]
    # The upstream sends its first bytes, then hangs: ffmpeg has started (it
    # starts on the first bytes, not before the upstream answers) and stays running.
    upstream.stall_after, upstream.stall = 4096, asyncio.Event()
    request = asyncio.create_task(client.get(f"/v1/tracks/{tid}/manifest"))
    for _ in range(200):
        if spawns.exists() and spawns.read_text().strip():
            break
        await asyncio.sleep(0.05)
    pid = int(spawns.read_text().split()[0])
    await client.close()
    assert await wait_dead(pid)
    request.cancel()
    upstream.stall.set()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_reader_keeps_gateway_memory_flat(gateway_factory: Any, tmp_path: Path) -> None:
    """A 1 byte/s client on a ~19 MB stream: the gateway must not buffer the stream."""
    library = tmp_path / "long-library"
    library.mkdir()
    make_audio(library / "long.flac", 600, freq=200)
    gw = gateway_factory(library=library, transcode={"bitrate": 256000}, sources__url={"max_bytes": 500_000_000})
    tid = gw.library_ids[0]
    deadline = time.monotonic() + 120
    while True:  # transcode fully first, so only serving is measured
        with urllib.request.urlopen(f"{gw.url}/v1/tracks/{tid}/manifest", timeout=60) as r:
            import json

            manifest = json.load(r)
        if manifest["complete"]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.5)
    total = manifest["init"]["size"] + sum(c["size"] for c in manifest["chunks"])
    assert total > 15_000_000
    assert gw.proc is not None
    pid = gw.proc.pid
    before = rss_kib(pid)
    sock = socket.create_connection(("127.0.0.1", gw.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /v1/tracks/{tid}/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    peak = before
    try:
        for _ in range(6):
            assert sock.recv(1)
            time.sleep(1.0)
            peak = max(peak, rss_kib(pid))
    finally:
        sock.close()
    growth_mib = (peak - before) / 1024
    # Buffering the stream would add ~19 MB; the kernel's socket buffers take
    # a few MB of it outside the process.
    assert growth_mib < 8, f"gateway RSS grew {growth_mib:.1f} MiB for a stalled reader"
    with urllib.request.urlopen(f"{gw.url}/healthz", timeout=5) as r:
        assert r.status == 200
