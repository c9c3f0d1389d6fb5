"""A live station in a cluster: two or three gateway processes, a real redis-server (or a 3-master Redis Cluster) and a
real Icecast fed by ffmpeg in real time. One ingest in the whole cluster, the other node copying the owner's
window with the same indices and hashes, and the owner SIGKILLed: the other node takes the station over."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.audio import decoded_seconds
from tests.support.cluster import RedisServer, RedisSetup, start_node, wait_nodes
from tests.support.gateway import GatewayProcess
from tests.support.icecast import Icecast, start_icecast


@pytest.fixture(params=["server", "cluster"])
def redis_setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisSetup]:
    setup = RedisSetup(tmp_path, cluster=request.param == "cluster")
    setup.start()
    yield setup
    setup.stop()


@pytest.fixture
def icecast(tmp_path: Path) -> Iterator[Icecast]:
    server = start_icecast(tmp_path / "icecast")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nodes() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gw in started:
        gw.stop()


def icecast_listeners(icecast: Icecast, mount: str) -> int:
    with urllib.request.urlopen(f"{icecast.base}/status-json.xsl", timeout=5) as response:
        stats = json.loads(response.read().decode("utf-8", "replace"))
    sources = stats["icestats"].get("source", [])
    for source in [sources] if isinstance(sources, dict) else sources:
        if source.get("listenurl", "").endswith("/" + mount):
            return int(source.get("listeners", 0))
    return 0


async def settled_listeners(icecast: Icecast, mount: str, want: int, seconds: float = 5.0) -> int:
    """Icecast's listener count once it is ``want`` (or whatever it is after ``seconds``).

    Icecast drops a closed connection from its count only when a write to it
    fails: the registration's look at the mount (one GET, closed once its
    headers are in) is still counted for a moment after, more so on a loaded
    machine. A second ingest would stay counted.
    """
    deadline = time.monotonic() + seconds
    while (count := icecast_listeners(icecast, mount)) != want and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return count


async def manifest(session: aiohttp.ClientSession, gw: GatewayProcess, track: str) -> dict[str, Any]:
    async with session.get(f"{gw.url}/v1/tracks/{track}/manifest") as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def metric(session: aiohttp.ClientSession, gw: GatewayProcess, name: str) -> float:
    async with session.get(f"{gw.url}/metrics") as r:
        text = await r.text()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def live_ingests(session: aiohttp.ClientSession, gw: GatewayProcess) -> float:
    return sum([await metric(session, gw, f'ztream_live_ingests{{state="{s}"}}')
                for s in ("starting", "live", "reconnecting")])


async def test_a_station_is_ingested_once_and_moves_when_its_owner_dies(
        redis_setup: RedisSetup, icecast: Icecast, nodes: list[GatewayProcess], tmp_path: Path) -> None:
    mount = "cluster.mp3"
    icecast.source(mount, seconds=300)
    sections: dict[str, Any] = {"sources.url": {"allow_hosts": [f"127.0.0.1:{icecast.port}"]},
                                "live": {"reconnect_max_seconds": 1.0, "idle_seconds": 4.0}}
    for name in ("n1", "n2", "n3"):
        nodes.append(start_node(tmp_path, name, None, redis_setup.url, **sections))
    wait_nodes(redis_setup.url, 3, cluster=redis_setup.cluster)
    n1, n2, n3 = nodes

    async def listen_on_n3() -> None:  # a third node's listener throughout: a second follower
        while True:
            await manifest(session, n3, track)
            await asyncio.sleep(0.5)

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{n1.url}/v1/tracks", json={"url": icecast.url(mount)}) as r:
            assert r.status == 201, await r.text()
            track = (await r.json())["id"]
        # n1's listener starts the station there (its lock); n2's follows n1's ingest.
        first = await manifest(session, n1, track)
        assert first["edge"] is not None and first["state"] == "live"
        n3_listener = asyncio.create_task(listen_on_n3())
        copied = await manifest(session, n2, track)
        # n2's first answer is n1's window, whole: not its oldest chunk alone.
        assert copied["state"] == "live" and copied["chunks"][0] == first["chunks"][0]
        assert copied["edge"] >= first["edge"]
        # Listeners on both nodes for a while: each index seen first on n1, then on n2.
        seen: dict[str, dict[int, float]] = {"n1": {}, "n2": {}}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for name, gw in (("n1", n1), ("n2", n2)):
                edge = (await manifest(session, gw, track))["edge"]
                seen[name].setdefault(edge, time.monotonic())
            await asyncio.sleep(0.05)
        m1, m2 = await manifest(session, n1, track), await manifest(session, n2, track)
        by_index = {c["index"]: c for c in m1["chunks"]}
        shared = [c for c in m2["chunks"] if c["index"] in by_index]
        assert len(shared) >= 10
        assert all(c == by_index[c["index"]] for c in shared), "n2's entries differ from n1's"
        assert m1["init"] == m2["init"] and m1["epoch"] == m2["epoch"]
        for entry in shared[-3:]:
            async with session.get(f"{n2.url}/v1/tracks/{track}/chunks/{entry['index']}") as r:
                assert r.status == 200 and hashlib.sha256(await r.read()).hexdigest() == entry["sha256"]
        lags = [seen["n2"][i] - t for i, t in seen["n1"].items() if i in seen["n2"]]
        assert len(lags) >= 6
        lags.sort()
        print(f"\nn2 behind n1: p50 {lags[len(lags) // 2]:.3f} s, max {lags[-1]:.3f} s over {len(lags)} chunks"
              " (polled every 50 ms)")
        assert lags[len(lags) // 2] < 0.5 and lags[-1] <= 1.0 + 0.2, lags  # <= one chunk (+ the polling)
        # One ingest in the cluster: Icecast has one listener; n2 serves the station by following.
        assert icecast_listeners(icecast, mount) == 1
        assert await metric(session, n1, "ztream_live_following") == 0
        assert await metric(session, n2, "ztream_live_following") == 1
        assert await metric(session, n3, "ztream_live_following") == 1
        assert await live_ingests(session, n1) == 1 and await live_ingests(session, n2) == 1

        # n1's own listener leaves: n2's copy keeps n1's ingest up (no restart: the same one Icecast listener).
        last = (await manifest(session, n2, track))["edge"]
        for _ in range(16):  # 8 s, twice idle_seconds
            await asyncio.sleep(0.5)
            edge = (await manifest(session, n2, track))["edge"]
            assert edge >= last
            last = edge
        assert last >= m2["edge"] + 6
        assert icecast_listeners(icecast, mount) == 1
        assert await metric(session, n1, "ztream_live_following") == 0
        assert await live_ingests(session, n1) == 1

        # The owner dies. A listener polling n2 keeps getting new chunks, indices growing.
        before = (await manifest(session, n2, track))["edge"]
        assert n1.proc is not None
        killed = time.monotonic()
        os.killpg(n1.proc.pid, signal.SIGKILL)
        n1.proc.wait(timeout=5)
        n1.proc = None
        edges: list[int] = []
        states: set[str] = set()
        resumed = None
        while time.monotonic() - killed < 30:
            m = await manifest(session, n2, track)
            states.add(m["state"])
            edges.append(m["edge"])
            if m["edge"] > before and m["state"] == "live" and resumed is None:
                resumed = time.monotonic() - killed
            if resumed is not None and m["edge"] >= before + 5:
                break
            await asyncio.sleep(0.2)
        assert resumed is not None, f"n2 never resumed: edges {edges[-5:]}, states {states}"
        print(f"new chunks on n2 {resumed:.2f} s after the owner's SIGKILL (states {sorted(states)})")
        assert resumed < 10.0
        assert edges == sorted(edges)
        taken = await manifest(session, n2, track)
        indices = [c["index"] for c in taken["chunks"]]
        assert indices == sorted(set(indices)) and indices[-1] >= before + 5
        assert taken["id"] == track
        newest = taken["chunks"][-1]
        async with session.get(f"{n2.url}/v1/tracks/{track}/chunks/{newest['index']}") as r:
            assert r.status == 200 and hashlib.sha256(await r.read()).hexdigest() == newest["sha256"]
        async with session.get(f"{n2.url}/v1/tracks/{track}/init?epoch={newest['epoch']}") as r:
            assert r.status == 200
        # The new owner's chunks decode as the audio they list, with their epoch's init segment.
        fresh = [c for c in taken["chunks"] if c["index"] > before]
        assert len({c["epoch"] for c in fresh}) == 1
        async with session.get(f"{n2.url}/v1/tracks/{track}/init?epoch={fresh[0]['epoch']}") as r:
            media = await r.read()
        for entry in fresh:
            async with session.get(f"{n2.url}/v1/tracks/{track}/chunks/{entry['index']}") as r:
                media += await r.read()
        assert abs(decoded_seconds(media) - sum(c["duration"] for c in fresh)) < 0.1
        print(f"epoch {'kept' if fresh[0]['epoch'] == m1['epoch'] else 'changed'} by the takeover; "
              f"first index after it {fresh[0]['index']} (the copied edge {before}, "
              f"+{fresh[0]['index'] - before})")
        # One of n2 and n3 took the station over, the other copies it.
        assert [await metric(session, gw, "ztream_live_takeovers_total") for gw in (n2, n3)] in ([1, 0], [0, 1])
        assert sorted([await metric(session, gw, "ztream_live_following") for gw in (n2, n3)]) == [0, 1]
        deadline = time.monotonic() + 10
        while True:
            m2, m3 = await manifest(session, n2, track), await manifest(session, n3, track)
            if m2["chunks"][-1] == m3["chunks"][-1]:
                break
            assert time.monotonic() < deadline, (m2["chunks"][-1], m3["chunks"][-1])
            await asyncio.sleep(0.1)
        assert not n3_listener.done()
        n3_listener.cancel()
        deadline = time.monotonic() + 10
        while icecast_listeners(icecast, mount) != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert icecast_listeners(icecast, mount) == 1  # the new owner's connection, the dead owner's gone


def health(gw: GatewayProcess) -> str:
    with urllib.request.urlopen(f"{gw.url}/healthz", timeout=5) as r:
        return str(json.load(r)["status"])


async def test_redis_away_each_node_ingests_and_back_one_ingest_again(
        icecast: Icecast, nodes: list[GatewayProcess], tmp_path: Path) -> None:
    mount = "split.mp3"
    icecast.source(mount, seconds=300)
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    sections: dict[str, Any] = {"sources.url": {"allow_hosts": [f"127.0.0.1:{icecast.port}"]},
                                "live": {"reconnect_max_seconds": 1.0}}
    try:
        for name in ("n1", "n2"):
            nodes.append(start_node(tmp_path, name, None, redis_server.url, **sections))
        wait_nodes(redis_server.url, 2, cluster=False)
        n1, n2 = nodes
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{n1.url}/v1/tracks", json={"url": icecast.url(mount)}) as r:
                assert r.status == 201, await r.text()
                track = (await r.json())["id"]
            await manifest(session, n2, track)  # known on n2 (the shared catalog) before Redis goes
            assert await settled_listeners(icecast, mount, 1) == 1
            # n2 stops following (no listener), then Redis goes away and both nodes have listeners.
            redis_server.stop()
            deadline = time.monotonic() + 15
            while {health(n1), health(n2)} != {"degraded"} and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert {health(n1), health(n2)} == {"degraded"}
            for _ in range(12):  # n1 keeps its ingest; n2's listener makes one of its own
                for gw in (n1, n2):
                    assert (await manifest(session, gw, track))["edge"] is not None
                await asyncio.sleep(0.5)
            assert icecast_listeners(icecast, mount) == 2
            # Redis back (empty): one of the two holds the lock, the other stops its ingest and follows.
            redis_server.start()
            back = time.monotonic()
            one = None
            m1 = m2 = {"edge": None}
            while time.monotonic() - back < 30:
                for gw in (n1, n2):
                    await manifest(session, gw, track)
                if one is None and icecast_listeners(icecast, mount) == 1:
                    one = time.monotonic() - back
                if one is not None:
                    following = [await metric(session, gw, "ztream_live_following") for gw in (n1, n2)]
                    m1, m2 = await manifest(session, n1, track), await manifest(session, n2, track)
                    if sorted(following) == [0, 1] and m1["chunks"][-1] == m2["chunks"][-1]:
                        break
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"not one ingest again: {icecast_listeners(icecast, mount)} Icecast listeners, "
                                     f"n1 edge {m1['edge']}, n2 edge {m2['edge']}")
            print(f"\none ingest again {one:.1f} s after Redis came back; the copy caught up "
                  f"{time.monotonic() - back:.1f} s after")
            assert icecast_listeners(icecast, mount) == 1
            for gw in (n1, n2):
                edges = [(await manifest(session, gw, track))["edge"]]
                await asyncio.sleep(2.5)
                edges.append((await manifest(session, gw, track))["edge"])
                assert edges[1] > edges[0]
    finally:
        redis_server.stop()


async def test_a_declared_always_station_is_ingested_by_one_node(
        icecast: Icecast, nodes: list[GatewayProcess], tmp_path: Path) -> None:
    mount = "always.mp3"
    icecast.source(mount, seconds=300)
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    try:
        for name in ("n1", "n2"):
            (tmp_path / name).mkdir()
            gw = GatewayProcess(tmp_path / name, None, {
                "cluster": {"redis_url": redis_server.url, "node_id": name},
                "sources.url": {"allow_hosts": [f"127.0.0.1:{icecast.port}"]}})
            with gw.config_path.open("a") as config:
                config.write(f'[[live.stations]]\nname = "Always"\nurl = "{icecast.url(mount)}"\nmode = "always"\n')
            gw.start()
            nodes.append(gw)
        wait_nodes(redis_server.url, 2, cluster=False)
        # No listener anywhere: each node starts the station before its Redis link is up, then one keeps
        # the ingest and the other follows it.
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                following = [await metric(session, gw, "ztream_live_following") for gw in nodes]
                if sorted(following) == [0, 1] and icecast_listeners(icecast, mount) == 1:
                    break
                await asyncio.sleep(0.5)
            assert sorted(following) == [0, 1], following
            assert icecast_listeners(icecast, mount) == 1
            assert [await live_ingests(session, gw) for gw in nodes] == [1, 1]
    finally:
        redis_server.stop()


async def test_a_purge_on_a_follower_stops_the_owners_ingest(
        icecast: Icecast, nodes: list[GatewayProcess], tmp_path: Path) -> None:
    mount = "purged.mp3"
    icecast.source(mount, seconds=300)
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    token = "t0ken-" * 6
    sections: dict[str, Any] = {"sources.url": {"allow_hosts": [f"127.0.0.1:{icecast.port}"]},
                                "admin": {"token": token}}
    try:
        for name in ("n1", "n2"):
            nodes.append(start_node(tmp_path, name, None, redis_server.url, **sections))
        wait_nodes(redis_server.url, 2, cluster=False)
        n1, n2 = nodes
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{n1.url}/v1/tracks", json={"url": icecast.url(mount)}) as r:
                track = (await r.json())["id"]
            await manifest(session, n1, track)
            await manifest(session, n2, track)
            assert await settled_listeners(icecast, mount, 1) == 1
            assert await metric(session, n2, "ztream_live_following") == 1
            async with session.delete(f"{n2.url}/v1/admin/tracks/{track}",
                                      headers={"Authorization": f"Bearer {token}"}) as r:
                assert r.status in (200, 204), await r.text()
            # The broadcast reaches n1, whose ingest stops at once (not after idle_seconds).
            deadline = time.monotonic() + 5
            while icecast_listeners(icecast, mount) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert icecast_listeners(icecast, mount) == 0
            assert [await live_ingests(session, gw) for gw in nodes] == [0, 0]
            assert await metric(session, n2, "ztream_live_following") == 0
            for gw in nodes:
                async with session.get(f"{gw.url}/v1/tracks/{track}/manifest") as r:
                    assert r.status == 404
    finally:
        redis_server.stop()
