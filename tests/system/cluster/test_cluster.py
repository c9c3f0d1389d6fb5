"""Several gateway processes and a real redis-server (or a 3-master Redis Cluster) on loopback: one swarm,
one transcode per track cluster-wide, takeover after a SIGKILL, Redis going away and coming back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support.audio import make_audio
from tests.support.cluster import RedisServer, RedisSetup, start_node, wait_nodes
from tests.support.gateway import GatewayProcess
from tests.support.upstream import Upstream

RENDITION = "opus"  # any name the wire accepts: the tracker never checks renditions


@pytest.fixture(params=["server", "cluster"])
def redis_setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisSetup]:
    setup = RedisSetup(tmp_path, cluster=request.param == "cluster")
    setup.start()
    yield setup
    setup.stop()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gw in started:
        gw.stop()


async def open_peer(session: aiohttp.ClientSession, gw: GatewayProcess) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await session.ws_connect(f"{gw.url}/v1/ws")
    welcome = await ws.receive_json(timeout=5)
    assert welcome["type"] == "welcome"
    return ws, welcome["peer_id"]


async def roundtrip(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Every message sent before this one has been applied by the hub."""
    await ws.send_json({"type": "ping"})
    while (await ws.receive_json(timeout=5))["type"] != "pong":
        pass


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.receive_json(timeout=max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


async def nothing_for(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    with pytest.raises(asyncio.TimeoutError):
        message = await ws.receive_json(timeout=seconds)
        raise AssertionError(f"unexpected {message}")


async def want_until(ws: aiohttp.ClientWebSocketResponse, track: str, chunks: list[int], expect: str | None,
                     timeout: float = 10) -> dict[str, Any]:
    """Send ``want`` until the answer offers ``expect`` (or, with None, answer once)."""
    deadline = time.monotonic() + timeout
    while True:
        await ws.send_json({"type": "want", "track": track, "rendition": RENDITION, "chunks": chunks})
        peers = await next_of(ws, "peers")
        if expect is None or any(p["peer_id"] == expect for p in peers["peers"]):
            return peers
        if time.monotonic() > deadline:
            raise AssertionError(f"{expect} never offered: {peers}")
        await asyncio.sleep(0.1)


# -- one swarm ---------------------------------------------------------------------------


async def test_one_swarm_across_nodes(redis_setup: RedisSetup, nodes: list[GatewayProcess], tmp_path: Path) -> None:
    for name in ("n1", "n2", "n3"):
        nodes.append(start_node(tmp_path, name, None, redis_setup.url))
    wait_nodes(redis_setup.url, 3, cluster=redis_setup.cluster)
    n1, n2, n3 = nodes
    track = "t" * 22
    async with aiohttp.ClientSession() as session:
        a, a_id = await open_peer(session, n1)
        b, b_id = await open_peer(session, n2)
        c, c_id = await open_peer(session, n3)
        await a.send_json({"type": "have", "track": track, "rendition": RENDITION, "chunks": [0, 1, 2]})
        await roundtrip(a)

        # C, not introduced to A, is refused by its own node, and A hears nothing.
        await c.send_json({"type": "signal", "to": a_id, "data": {"sdp": "from a stranger"}})
        assert (await next_of(c, "error"))["error"] == "not_introduced"

        peers = await want_until(b, track, [1, 2, 5], a_id)
        offered = next(p for p in peers["peers"] if p["peer_id"] == a_id)
        assert offered["chunks"] == [1, 2] and offered["complete"] is False

        # B's signal reaches A on the other node, "from" B's real id whatever B wrote.
        await b.send_json({"type": "signal", "to": a_id, "from": c_id, "data": {"sdp": "offer"}})
        got = await next_of(a, "signal")
        assert got == {"type": "signal", "from": b_id, "data": {"sdp": "offer"}}
        # ... and A's answer comes back: the introduction holds both ways, across nodes.
        await a.send_json({"type": "signal", "to": b_id, "data": {"sdp": "answer"}})
        assert await next_of(b, "signal") == {"type": "signal", "from": a_id, "data": {"sdp": "answer"}}

        # Still nothing for C, and C still may not signal A or B.
        await c.send_json({"type": "signal", "to": b_id, "data": {}})
        assert (await next_of(c, "error"))["error"] == "not_introduced"
        await nothing_for(a, 0.5)

        # A peer on the same node as the asker and one elsewhere are ranked together.
        d, d_id = await open_peer(session, n2)
        await d.send_json({"type": "have", "track": track, "rendition": RENDITION, "complete": True})
        await roundtrip(d)
        peers = await want_until(b, track, [1], d_id)
        assert {p["peer_id"] for p in peers["peers"]} == {a_id, d_id}

        # A leaves: after its node has told Redis, nobody is offered A.
        await a.close()
        deadline = time.monotonic() + 10
        while True:
            peers = await want_until(c, track, [1], None)
            if a_id not in {p["peer_id"] for p in peers["peers"]}:
                break
            assert time.monotonic() < deadline, peers
            await asyncio.sleep(0.1)
        for ws in (b, c, d):
            await ws.close()
    for gw in nodes:
        assert gw.proc is not None and gw.proc.poll() is None, gw.log()[-2000:]


# -- one transcode ---------------------------------------------------------------------------


async def start_upstream(files: dict[str, Path]) -> tuple[Upstream, TestServer]:
    up = Upstream(files)
    server = TestServer(up.app, host="127.0.0.1")
    await server.start_server()
    return up, server


async def read(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url) as r:
        return r.status, await r.read()


async def wait_complete(session: aiohttp.ClientSession, base: str, track: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with session.get(f"{base}/v1/tracks/{track}/manifest") as r:
            if r.status == 200:
                manifest: dict[str, Any] = await r.json()
                if manifest["complete"]:
                    return manifest
        await asyncio.sleep(0.2)
    raise AssertionError("never complete")


async def test_one_transcode_cluster_wide(
    redis_setup: RedisSetup, nodes: list[GatewayProcess], tmp_path: Path, ffmpeg_counter: tuple[str, Path],
    upstream_files: dict[str, Path],
) -> None:
    wrapper, spawns = ffmpeg_counter
    up, server = await start_upstream(upstream_files)
    try:
        for name in ("n1", "n2", "n3"):
            nodes.append(start_node(
                tmp_path, name, None, redis_setup.url,
                transcode={"ffmpeg": wrapper}, **{"sources.url": {"allow_hosts": [f"127.0.0.1:{server.port}"]}},
            ))
        wait_nodes(redis_setup.url, 3, cluster=redis_setup.cluster)
        url = f"http://127.0.0.1:{server.port}/audio/song.mp3"
        async with aiohttp.ClientSession() as session:
            ids = set()
            for gw in nodes:
                async with session.post(f"{gw.url}/v1/tracks", json={"url": url}) as r:
                    assert r.status in (200, 201)
                    ids.add((await r.json())["id"])
            (track,) = ids
            assert up.hits["song.mp3"] == 0  # registering fetches nothing
            paths = ["stream", "init", "chunks/0", "chunks/1", "manifest"]
            requests = [(nodes[i % 3].url, paths[i % len(paths)]) for i in range(30)]
            answers = await asyncio.gather(*(read(session, f"{base}/v1/tracks/{track}/{p}") for base, p in requests))
            assert all(status == 200 for status, _ in answers), [a[0] for a in answers]
            # Identical bytes from every node.
            by_path: dict[str, set[str]] = {}
            for (_base, path), (_status, body) in zip(requests, answers):
                if path != "manifest" and path != "stream":
                    by_path.setdefault(path, set()).add(hashlib.sha256(body).hexdigest())
            assert all(len(hashes) == 1 for hashes in by_path.values()), by_path
            manifests = [await wait_complete(session, gw.url, track) for gw in nodes]
            assert manifests[0] == manifests[1] == manifests[2]
            # What the owner measured besides the chunks is the same everywhere too.
            for extra in ("waveform", "artwork"):
                bodies = [await read(session, f"{gw.url}/v1/tracks/{track}/{extra}") for gw in nodes]
                assert all(status == 200 for status, _ in bodies) and len({b for _, b in bodies}) == 1, extra
            streams = {hashlib.sha256(body).hexdigest() for (_b, p), (_s, body) in zip(requests, answers) if p == "stream"}
            assert len(streams) == 1
            for gw in nodes:
                for c in manifests[0]["chunks"]:
                    status, body = await read(session, f"{gw.url}/v1/tracks/{track}/chunks/{c['index']}")
                    assert status == 200 and hashlib.sha256(body).hexdigest() == c["sha256"]
        assert up.hits["song.mp3"] == 1
        assert len(spawns.read_text().split()) == 1
    finally:
        await server.close()


class SlowUpstream:
    """Serves one file slowly, so that a transcode is still running when its node is killed."""

    def __init__(self, data: bytes, bytes_per_second: int) -> None:
        self.data = data
        self.rate = bytes_per_second
        self.hits = 0
        self.app = web.Application()
        self.app.router.add_get("/slow.mp3", self.serve)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        response.content_length = len(self.data)
        await response.prepare(request)
        piece = self.rate // 10
        for offset in range(0, len(self.data), piece):
            await response.write(self.data[offset : offset + piece])
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response


async def test_owner_killed_mid_transcode(
    nodes: list[GatewayProcess], tmp_path: Path, ffmpeg_counter: tuple[str, Path],
) -> None:
    wrapper, spawns = ffmpeg_counter
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    audio = make_audio(tmp_path / "slow.mp3", 60, freq=392, fmt="mp3")
    slow = SlowUpstream(audio.read_bytes(), bytes_per_second=len(audio.read_bytes()) // 6)  # ~6 s to send
    server = TestServer(slow.app, host="127.0.0.1")
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}/slow.mp3"
    allow = {"sources.url": {"allow_hosts": [f"127.0.0.1:{server.port}"]}}
    try:
        for name in ("n1", "n2", "n3"):
            nodes.append(start_node(tmp_path, name, None, redis_server.url, transcode={"ffmpeg": wrapper}, **allow))
        wait_nodes(redis_server.url, 3, cluster=False)
        n1, n2, n3 = nodes
        async with aiohttp.ClientSession() as session:
            for gw in nodes:
                async with session.post(f"{gw.url}/v1/tracks", json={"url": url}) as r:
                    track = (await r.json())["id"]
            # n1 starts the transcode, so it owns the lock; n2 and n3 follow it.
            status, _ = await read(session, f"{n1.url}/v1/tracks/{track}/manifest")
            assert status == 200
            streams = [asyncio.create_task(read(session, f"{gw.url}/v1/tracks/{track}/stream")) for gw in (n2, n3)]
            await asyncio.sleep(1.5)
            assert n1.proc is not None
            os.killpg(n1.proc.pid, signal.SIGKILL)
            n1.proc.wait(timeout=5)
            n1.proc = None
            results = await asyncio.wait_for(asyncio.gather(*streams), 90)
            assert [s for s, _ in results] == [200, 200]
            assert results[0][1] == results[1][1]
            manifest2 = await wait_complete(session, n2.url, track)
            manifest3 = await wait_complete(session, n3.url, track)
            assert manifest2 == manifest3
            body = results[0][1]
            status, init = await read(session, f"{n2.url}/v1/tracks/{track}/init")
            chunks = [(await read(session, f"{n2.url}/v1/tracks/{track}/chunks/{c['index']}"))[1]
                      for c in manifest2["chunks"]]
            assert body == init + b"".join(chunks)
            assert [hashlib.sha256(c).hexdigest() for c in chunks] == [c["sha256"] for c in manifest2["chunks"]]
        # The same hashes as one node alone makes of the same upstream.
        (tmp_path / "alone").mkdir()
        alone = GatewayProcess(tmp_path / "alone", None, {**allow})  # the real ffmpeg: not counted
        alone.start()
        nodes.append(alone)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{alone.url}/v1/tracks", json={"url": url}) as r:
                assert (await r.json())["id"] == track
            await read(session, f"{alone.url}/v1/tracks/{track}/manifest")
            reference = await wait_complete(session, alone.url, track, timeout=90)
        assert [c["sha256"] for c in reference["chunks"]] == [c["sha256"] for c in manifest2["chunks"]]
        assert reference["init"] == manifest2["init"]
        # n1's transcode, then exactly one takeover.
        assert len(spawns.read_text().split()) == 2
    finally:
        await server.close()
        redis_server.stop()


# -- Redis going away -----------------------------------------------------------------------


def health(gw: GatewayProcess) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(f"{gw.url}/healthz", timeout=5) as r:
        result: dict[str, Any] = json.load(r)
        return result


def wait_health(gw: GatewayProcess, expect: dict[str, Any], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health(gw) == expect:
            return
        time.sleep(0.2)
    raise AssertionError(f"healthz never became {expect}: {health(gw)}")


async def test_redis_down_then_back(nodes: list[GatewayProcess], tmp_path: Path, audio_dir: Path) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        for name in ("n1", "n2"):
            nodes.append(start_node(tmp_path, name, audio_dir, redis_server.url))
        wait_nodes(redis_server.url, 2, cluster=False)
        n1, n2 = nodes
        track = n1.library_ids[2]
        async with aiohttp.ClientSession() as session:
            a, a_id = await open_peer(session, n1)
            b, _ = await open_peer(session, n2)
            await a.send_json({"type": "have", "track": track, "rendition": RENDITION, "chunks": [0]})
            await roundtrip(a)
            await want_until(b, track, [0], a_id)

            redis_server.stop()
            for gw in nodes:
                wait_health(gw, {"status": "degraded", "reason": "redis", "reasons": ["redis"]})
            # Each node carries on: HTTP serves (a transcode made alone), the swarm is per node.
            manifest = await wait_complete(session, n2.url, track)
            assert manifest["chunks"]
            status, _ = await read(session, f"{n1.url}/v1/tracks/{track}/chunks/0")
            assert status == 200
            peers = await want_until(b, track, [0], None)
            assert peers["peers"] == []
            c, c_id = await open_peer(session, n1)
            peers = await want_until(c, track, [0], a_id)  # n1's own peers still meet

            redis_server.start()  # empty: everything is written again
            for gw in nodes:
                wait_health(gw, {"status": "ok"})
            await want_until(b, track, [0], a_id, timeout=10)
            await b.send_json({"type": "signal", "to": a_id, "data": {"x": 1}})
            assert (await next_of(a, "signal", timeout=10))["data"] == {"x": 1}
            for ws in (a, b, c):
                await ws.close()
            async with session.get(f"{n1.url}/metrics") as r:
                text = await r.text()
            assert "ztream_redis_outages_total 1.0" in text
    finally:
        redis_server.stop()
    for gw in nodes:
        assert gw.proc is not None and gw.proc.poll() is None, gw.log()[-2000:]


# -- administration ------------------------------------------------------------------------


async def test_admin_changes_reach_every_node(nodes: list[GatewayProcess], tmp_path: Path, audio_dir: Path) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    token = "t0ken-" * 6
    auth = {"Authorization": f"Bearer {token}"}
    try:
        for name in ("n1", "n2"):
            nodes.append(start_node(tmp_path, name, audio_dir, redis_server.url, admin={"token": token}))
        wait_nodes(redis_server.url, 2, cluster=False)
        n1, n2 = nodes
        track = n1.library_ids[2]
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{n2.url}/v1/ws") as ws:
                await ws.receive_json(timeout=5)
                deadline = time.monotonic() + 5
                while True:  # n2's heartbeat carries its stats, n1's reads them
                    async with session.get(f"{n1.url}/v1/admin/stats", headers=auth) as r:
                        stats = await r.json()
                    assert stats["peers_connected"] == 0 and stats["cluster"]["nodes"] == 2
                    if stats["cluster"]["peers_connected"] == 1:
                        break
                    assert time.monotonic() < deadline, stats
                    await asyncio.sleep(0.2)
            async with session.post(f"{n1.url}/v1/admin/reload", headers=auth) as r:
                assert r.status == 200
            deadline = time.monotonic() + 5
            while True:
                async with session.get(f"{n2.url}/v1/admin/stats", headers=auth) as r:
                    if (await r.json())["config"]["reloads"] == 1:
                        break
                assert time.monotonic() < deadline, "n2 never reloaded"
                await asyncio.sleep(0.1)
            # A purge on n1 purges n2's copy too.
            await wait_complete(session, n2.url, track)
            await wait_complete(session, n1.url, track)
            async with session.delete(f"{n1.url}/v1/admin/tracks/{track}", headers=auth) as r:
                assert r.status == 200, await r.text()
            deadline = time.monotonic() + 5
            while True:
                async with session.get(f"{n2.url}/v1/tracks/{track}") as r:
                    if r.status == 404:
                        break
                assert time.monotonic() < deadline, "n2 never purged"
                await asyncio.sleep(0.1)
    finally:
        redis_server.stop()


async def test_a_want_costs_redis_the_same_in_a_huge_swarm(nodes: list[GatewayProcess], tmp_path: Path) -> None:
    """A swarm of 100,000 holders: a `want` is answered from a random sample of them, and the
    Redis time it takes stays that of a small swarm (the whole hash took 1.3 s of Redis a want)."""
    import redis as redis_client

    server = RedisServer(tmp_path)
    server.start()
    try:
        for name in ("n1", "n2"):
            nodes.append(start_node(tmp_path, name, None, server.url))
        wait_nodes(server.url, 2, cluster=False)
        track = "h" * 22
        client: Any = redis_client.Redis.from_url(server.url)
        key = f"ztream:{{{track}}}:holders:{RENDITION}"
        entry = json.dumps({"n": "n1", "r": [[0, 99]], "c": False, "u": 0, "s": time.time() + 3600})
        fakes = [f"holder-{i:06d}" for i in range(100_000)]
        pipe = client.pipeline(transaction=False)
        for start in range(0, len(fakes), 10_000):
            pipe.hset(key, mapping={peer: entry for peer in fakes[start:start + 10_000]})
        pipe.execute()
        client.config_resetstat()
        async with aiohttp.ClientSession() as session:
            ws, _ = await open_peer(session, nodes[1])
            for _ in range(5):
                peers = await want_until(ws, track, [1, 2], None, timeout=5)
                offered = {p["peer_id"] for p in peers["peers"]}
                assert offered and offered <= set(fakes), peers
            await ws.close()
        used = sum(int(stats["usec"]) for stats in client.info("commandstats").values())
        assert used < 250_000, client.info("commandstats")
    finally:
        for gw in nodes:
            gw.stop()
        nodes.clear()
        server.stop()
