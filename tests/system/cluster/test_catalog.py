"""One catalog across nodes with separate cache dirs and a real redis-server (or a 3-master Redis Cluster):
a track registered on one node is served by every node, a library file on one node is served by all, a purge
on one is gone on all, and registrations made while Redis was away are not lost (docs/cluster.md, "One catalog")."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import redis as sync_redis

from tests.support.cluster import RedisServer, RedisSetup, start_node, wait_nodes
from tests.support.gateway import GatewayProcess
from tests.system.cluster.test_cluster import read, start_upstream, wait_complete, wait_health

TOKEN = "t0ken-" * 6
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["server", "cluster"])
def redis_setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisSetup]:
    setup = RedisSetup(tmp_path, cluster=request.param == "cluster")
    setup.start()
    yield setup
    setup.stop()


@pytest.fixture
def nodes() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gw in started:
        gw.stop()


async def until(check: Any, timeout: float, what: str) -> float:
    """Seconds until ``await check()`` is true (polled every 20 ms)."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def status_of(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as r:
        await r.read()
        return r.status


async def listed_ids(session: aiohttp.ClientSession, gw: GatewayProcess) -> set[str]:
    async with session.get(f"{gw.url}/v1/tracks") as r:
        assert r.status == 200
        return {t["id"] for t in (await r.json())["tracks"]}


async def test_registered_on_one_node_served_by_all(
    redis_setup: RedisSetup, nodes: list[GatewayProcess], tmp_path: Path, upstream_files: dict[str, Path],
    ffmpeg_counter: tuple[str, Path],
) -> None:
    wrapper, spawns = ffmpeg_counter
    up, server = await start_upstream(upstream_files)
    allow = {"sources.url": {"allow_hosts": [f"127.0.0.1:{server.port}"]}}
    try:
        for name in ("n1", "n2", "n3"):
            nodes.append(start_node(tmp_path, name, None, redis_setup.url, transcode={"ffmpeg": wrapper}, **allow))
        wait_nodes(redis_setup.url, 3, cluster=redis_setup.cluster)
        n1, n2, n3 = nodes
        url = f"http://127.0.0.1:{server.port}/audio/song.mp3"
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{n1.url}/v1/tracks", json={"url": url}) as r:
                assert r.status == 201
                described = await r.json()
            track = described["id"]
            # Known everywhere at once: the JSON is the same on the nodes that never saw the registration.
            for gw in (n2, n3):
                async with session.get(f"{gw.url}/v1/tracks/{track}") as r:
                    assert r.status == 200, await r.text()
                    assert same(await r.json(), gw) == same(described, n1)
            # Played from n2: the transcode runs once in the cluster (n2 wins the lock) and every
            # piece is the same from every node.
            status, stream = await read(session, f"{n2.url}/v1/tracks/{track}/stream")
            assert status == 200
            manifests = [await wait_complete(session, gw.url, track) for gw in nodes]
            assert manifests[0] == manifests[1] == manifests[2]
            status, init = await read(session, f"{n3.url}/v1/tracks/{track}/init")
            chunks = [(await read(session, f"{n3.url}/v1/tracks/{track}/chunks/{c['index']}"))[1]
                      for c in manifests[0]["chunks"]]
            assert stream == init + b"".join(chunks)
            for extra in ("waveform", "artwork"):
                bodies = [await read(session, f"{gw.url}/v1/tracks/{track}/{extra}") for gw in nodes]
                assert all(s == 200 for s, _ in bodies) and len({b for _, b in bodies}) == 1, extra
            # The pages too, from the node that never saw the registration.
            for page in (f"/embed/{track}", f"/oembed?url={quote(n3.url + '/embed/' + track)}",
                         f"/player/?url={quote(url)}"):
                assert await status_of(session, n3.url + page) == 200, page
            # Listed everywhere once played (the listing is the catalog's, not a look-up).
            for gw in nodes:
                await until(lambda gw=gw: _has(session, gw, track), 1.0, f"listed on {gw.url}")
            # The tags read by n2's transcode reached the others.
            titles = set()
            for gw in nodes:
                async with session.get(f"{gw.url}/v1/tracks/{track}") as r:
                    titles.add(json_title(await r.json()))
            assert len(titles) == 1

            # Another registration: how long until a node lists it with no request for it.
            other = f"http://127.0.0.1:{server.port}/audio/other.mp3"
            async with session.post(f"{n3.url}/v1/tracks", json={"url": other}) as r:
                assert r.status == 201
                other_id = (await r.json())["id"]
            await read(session, f"{n3.url}/v1/tracks/{other_id}/stream")
            await wait_complete(session, n3.url, other_id)
            seconds = await until(lambda: _has(session, n1, other_id), 1.0, "listed on n1")
            print(f"listed on another node {seconds * 1000:.0f} ms after the transcode completed")
        assert up.hits["song.mp3"] == 1 and up.hits["other.mp3"] == 1
        assert len(spawns.read_text().split()) == 2
    finally:
        await server.close()


def same(described: dict[str, Any], gw: GatewayProcess) -> dict[str, Any]:
    """``{track}`` without the answering node's own address (each test node is its own public URL)."""
    return {k: v.replace(gw.url, "") if isinstance(v, str) else v for k, v in described.items()}


def json_title(described: dict[str, Any]) -> str:
    return str(described["title"])


async def _has(session: aiohttp.ClientSession, gw: GatewayProcess, track: str) -> bool:
    return track in await listed_ids(session, gw)


async def test_library_file_on_one_node(nodes: list[GatewayProcess], tmp_path: Path, audio_dir: Path) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        nodes.append(start_node(tmp_path, "n1", audio_dir, redis_server.url))
        nodes.append(start_node(tmp_path, "n2", None, redis_server.url))  # no library (and no demo one)
        wait_nodes(redis_server.url, 2, cluster=False)
        n1, n2 = nodes
        track = n1.library_ids[2]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{n1.url}/v1/tracks/{track}") as r:
                described = await r.json()
            # n2 lists n1's library as n1 does.
            assert await listed_ids(session, n2) == set(n1.library_ids) == await listed_ids(session, n1)
            async with session.get(f"{n2.url}/v1/tracks/{track}") as r:
                assert r.status == 200 and same(await r.json(), n2) == same(described, n1)
            # n2 has no such file: it pulls the track from n1, which makes it.
            status, stream = await read(session, f"{n2.url}/v1/tracks/{track}/stream")
            assert status == 200, stream[:300]
            manifest = await wait_complete(session, n2.url, track)
            assert manifest == await wait_complete(session, n1.url, track)
            status, init = await read(session, f"{n2.url}/v1/tracks/{track}/init")
            chunks = [(await read(session, f"{n2.url}/v1/tracks/{track}/chunks/{c['index']}"))[1]
                      for c in manifest["chunks"]]
            assert stream == init + b"".join(chunks)
            assert [hashlib.sha256(c).hexdigest() for c in chunks] == [c["sha256"] for c in manifest["chunks"]]
            # With n1 gone nobody has the file; what n2 pulled it still serves.
            assert n1.proc is not None
            n1.stop()
            status, again = await read(session, f"{n2.url}/v1/tracks/{track}/stream")
            assert status == 200 and again == stream
            other = next(i for i in n1.library_ids if i != track)
            await asyncio.sleep(6)  # n1's heartbeat is older than NODE_TTL: not alive
            assert await listed_ids(session, n2) == set()  # nobody alive has those files
            async with session.get(f"{n2.url}/v1/tracks/{other}/manifest") as r:
                assert r.status == 404 and (await r.json())["error"] == "upstream_not_found", await r.text()
    finally:
        redis_server.stop()


async def test_purge_on_one_gone_on_all(
    nodes: list[GatewayProcess], tmp_path: Path, upstream_files: dict[str, Path],
) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    up, server = await start_upstream(upstream_files)
    allow = {"sources.url": {"allow_hosts": [f"127.0.0.1:{server.port}"]}}
    try:
        for name in ("n1", "n2", "n3"):
            nodes.append(start_node(tmp_path, name, None, redis_server.url, admin={"token": TOKEN}, **allow))
        wait_nodes(redis_server.url, 3, cluster=False)
        n1, n2, n3 = nodes
        url = f"http://127.0.0.1:{server.port}/audio/other.mp3"
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{n1.url}/v1/tracks", json={"url": url}) as r:
                track = (await r.json())["id"]
            for gw in nodes:
                await read(session, f"{gw.url}/v1/tracks/{track}/stream")
                await wait_complete(session, gw.url, track)
            async with session.delete(f"{n2.url}/v1/admin/tracks/{track}", headers=AUTH) as r:
                assert r.status == 200, await r.text()
            for gw in (n1, n3):
                async def gone(gw: GatewayProcess = gw) -> bool:
                    return await status_of(session, f"{gw.url}/v1/tracks/{track}") == 404
                seconds = await until(gone, 1.0, f"purged on {gw.url}")
                print(f"purge seen on {gw.url} after {seconds * 1000:.0f} ms")
                assert track not in await listed_ids(session, gw)
            # Registering it again brings it back, everywhere, and it is transcoded anew.
            async with session.post(f"{n3.url}/v1/tracks", json={"url": url}) as r:
                assert r.status == 201
            assert await status_of(session, f"{n1.url}/v1/tracks/{track}") == 200
    finally:
        await server.close()
        redis_server.stop()


async def test_registrations_while_redis_is_away(
    nodes: list[GatewayProcess], tmp_path: Path, upstream_files: dict[str, Path],
) -> None:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    up, server = await start_upstream(upstream_files)
    allow = {"sources.url": {"allow_hosts": [f"127.0.0.1:{server.port}"]}}
    base = f"http://127.0.0.1:{server.port}/audio"
    try:
        for name in ("n1", "n2"):
            nodes.append(start_node(tmp_path, name, None, redis_server.url, admin={"token": TOKEN}, **allow))
        wait_nodes(redis_server.url, 2, cluster=False)
        n1, n2 = nodes
        async with aiohttp.ClientSession() as session:
            async def register(gw: GatewayProcess, name: str) -> str:
                async with session.post(f"{gw.url}/v1/tracks", json={"url": f"{base}/{name}"}) as r:
                    assert r.status == 201, await r.text()
                    return str((await r.json())["id"])

            before = await register(n1, "song.mp3")
            await read(session, f"{n2.url}/v1/tracks/{before}/stream")  # n2 knows it and has it

            redis_server.stop()
            for gw in nodes:
                wait_health(gw, {"status": "degraded", "reason": "redis", "reasons": ["redis"]})
            # Each node serves what it knows ...
            status, _ = await read(session, f"{n2.url}/v1/tracks/{before}/chunks/0")
            assert status == 200
            # ... and registers alone meanwhile: the other node cannot know.
            on_n1 = await register(n1, "other.mp3")
            on_n2 = await register(n2, "big.wav")
            assert await status_of(session, f"{n2.url}/v1/tracks/{on_n1}") == 404
            assert await status_of(session, f"{n1.url}/v1/tracks/{on_n2}") == 404

            redis_server.start()  # empty: the nodes write their catalogs back
            for gw in nodes:
                wait_health(gw, {"status": "ok"})
            for gw, track in ((n1, on_n2), (n2, on_n1), (n1, before), (n2, before)):
                async def known(gw: GatewayProcess = gw, track: str = track) -> bool:
                    return await status_of(session, f"{gw.url}/v1/tracks/{track}") == 200
                await until(known, 5.0, f"{track} on {gw.url}")
            # One catalog again: Redis holds every registration, even the ones made while it was away.
            client = sync_redis.Redis.from_url(redis_server.url)
            for track in (before, on_n1, on_n2):
                assert client.get(f"ztream:{{{track}}}:track") is not None, track

            # Redis unreachable for a while but keeping its data (a partition, here a stopped process):
            # the nodes find the same catalog when it answers again and write only what changed meanwhile.
            assert redis_server.proc is not None
            epoch = client.get("ztream:{catalog}:epoch")
            redis_server.proc.send_signal(signal.SIGSTOP)
            try:
                for gw in nodes:
                    wait_health(gw, {"status": "degraded", "reason": "redis", "reasons": ["redis"]})
                # n2 played `before` (its chunks are on n2); n1 purges it now.
                async with session.delete(f"{n1.url}/v1/admin/tracks/{before}", headers=AUTH) as r:
                    assert r.status == 200, await r.text()
                async with session.post(f"{n2.url}/v1/tracks", json={"url": f"{base}/other.mp3?again"}) as r:
                    assert r.status == 201, await r.text()
                    partitioned = str((await r.json())["id"])
            finally:
                redis_server.proc.send_signal(signal.SIGCONT)
            for gw in nodes:
                wait_health(gw, {"status": "ok"})

            async def settled() -> bool:
                return (await status_of(session, f"{n1.url}/v1/tracks/{partitioned}") == 200
                        and await status_of(session, f"{n2.url}/v1/tracks/{before}") == 404)
            await until(settled, 5.0, "the changes made during the partition")
            # The purge reached n2's chunks too (its broadcast was lost): registered again, it is made again.
            assert up.hits["song.mp3"] == 1
            await register(n2, "song.mp3")
            status, _ = await read(session, f"{n2.url}/v1/tracks/{before}/stream")
            assert status == 200 and up.hits["song.mp3"] == 2
            assert client.get("ztream:{catalog}:epoch") == epoch
            client.close()
    finally:
        await server.close()
        redis_server.stop()
