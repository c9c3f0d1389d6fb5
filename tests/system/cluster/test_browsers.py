"""Two Chromium listeners on different gateway nodes of one cluster exchange chunks (docs/cluster.md).

The world of tests/system/browser/test_p2p.py (each listener behind its own NAT
router, shipped defaults, no media permissions: only server-reflexive
candidates connect), with two gateway nodes instead of one: both on the
public namespace's 198.18.0.1, on ports 8000 and 8001, sharing one
``redis-server`` on that namespace's own loopback. The first listener's page
and control socket are on node 1, the second's on node 2: the second finds
the first through Redis (its holders hash), its signals reach the first
through node 1's pub/sub channel, and the chunks then travel browser to
browser.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.async_api import async_playwright

from bench.cluster import RedisServer
from tests.support.browser import ErrorLog, until
from tests.support.nat import PUBLIC_ADDRESS, NatTopology
from tests.support.netns import NamespacedGateway, NetNamespace, require_netns
from tests.support.world import (
    SERVER_LEAD,
    Browser,
    World,
    check_audio,
    manifest,
    p2p,
    play,
    seeded,
    server_bytes,
    tone_track,
    until_metric,
)

pytestmark = [pytest.mark.timeout(150)]

PORTS = (8000, 8001)
REDIS_PORT = 6379  # the public namespace's own loopback: nothing else listens there


class NamespacedRedis(RedisServer):
    """redis-server inside a namespace, on its 127.0.0.1, probed from a thread that entered it."""

    def __init__(self, ns: NetNamespace, directory: Path) -> None:
        super().__init__(directory, REDIS_PORT)
        self.ns = ns
        self.command_prefix = list(ns.exec_prefix)

    def ping(self) -> bool:
        return self.ns.run_inside(lambda: bool(redis.Redis(port=self.port, socket_timeout=1).ping()))

    def client_call(self, fn: Any) -> Any:
        """``fn(client)`` on a Redis client made inside the namespace."""
        return self.ns.run_inside(lambda: fn(redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)))


class ClusterWorld(World):
    """A NAT topology with ``len(PORTS)`` gateway nodes and their Redis on its public namespace."""

    def __init__(self, tmp_path: Path, audio_dir: Path, *, count: int = 2,
                 libraries: tuple[Path | None, ...] | None = None) -> None:
        require_netns()
        self.topology = NatTopology(count, "eim")
        self.homes = [listener.ns for listener in self.topology.listeners]
        self.nodes: list[NamespacedGateway] = []
        self.redis: NamespacedRedis | None = None
        try:
            self.redis = NamespacedRedis(self.topology.public, tmp_path)
            self.redis.start()
            for i, port in enumerate(PORTS, 1):
                sub = tmp_path / f"n{i}"
                sub.mkdir()
                library = audio_dir if libraries is None else libraries[i - 1]
                node = NamespacedGateway(
                    self.topology.public, sub, library, port=port, server={"host": PUBLIC_ADDRESS},
                    cluster={"redis_url": f"redis://127.0.0.1:{REDIS_PORT}/0", "node_id": f"n{i}"},
                )
                node.url = f"http://{PUBLIC_ADDRESS}:{port}"
                self.nodes.append(node)
                node.start()
            self.gw = self.nodes[0]
            self._wait_nodes()
        except BaseException:
            self.close()
            raise

    def _wait_nodes(self, timeout: float = 10.0) -> None:
        import time

        assert self.redis is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.redis.client_call(lambda c: c.hgetall("ztream:nodes"))) >= len(self.nodes):
                time.sleep(1.2)  # one more heartbeat: each node has read the others
                return
            time.sleep(0.1)
        raise AssertionError("the nodes did not all register in Redis")

    @property
    def chromium_args(self) -> list[str]:
        origins = ",".join(node.url for node in self.nodes)
        return [f"--unsafely-treat-insecure-origin-as-secure={origins}",
                f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.local, EXCLUDE {PUBLIC_ADDRESS}"]

    def close(self) -> None:
        try:
            for node in self.nodes:
                node.stop()
            if self.redis is not None:
                self.redis.stop()
        finally:
            self.topology.close()


@pytest.fixture
def cluster_world(tmp_path: Path, audio_dir: Path) -> Iterator[ClusterWorld]:
    w = ClusterWorld(tmp_path, audio_dir)
    try:
        yield w
    finally:
        w.close()


async def test_listeners_on_two_nodes_exchange_chunks(cluster_world: ClusterWorld, tmp_path: Path) -> None:
    """A seeder on node 1, a second listener on node 2: after its server lead, the rest comes from the seeder."""
    world = cluster_world
    n1, n2 = world.nodes
    assert world.redis is not None
    tid = tone_track(n1)["id"]
    m = manifest(n1, tid)
    m2 = manifest(n2, tid)  # node 2 pulls it from node 1 (one transcode in the cluster)
    assert [c["sha256"] for c in m2["chunks"]] == [c["sha256"] for c in m["chunks"]]
    assert m2["init"]["sha256"] == m["init"]["sha256"]
    log = ErrorLog()
    async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
        first = await b.listener(tid, home=0, gw=n1)
        await play(first)
        await seeded(first, m)
        before = await asyncio.to_thread(server_bytes, n2)

        second = await b.listener(tid, home=1, gw=n2)
        await play(second)
        await until(second, "window.finished", timeout=45)
        after = await asyncio.to_thread(server_bytes, n2)

        stats = await second.evaluate("document.getElementById('p').stats")
        chunks = await second.evaluate("window.chunks")
        info1, info2 = await p2p(first), await p2p(second)
        # Where each control socket is: the holders hash names each peer's node, and each node counts one socket.
        holders = await asyncio.to_thread(
            world.redis.client_call, lambda c: c.hgetall(f"ztream:{{{tid}}}:holders:{m['rendition']}"))
        connected = [(await asyncio.to_thread(n.metrics)).get("ztream_peers_connected", 0.0) for n in world.nodes]
        await check_audio(second, m)

    placement = {peer: json.loads(entry)["n"] for peer, entry in holders.items()}
    starts = {c["index"]: c for c in m["chunks"]}
    lead = {i for i, c in starts.items() if c["start"] < SERVER_LEAD}
    lead_bytes = m["init"]["size"] + sum(starts[i]["size"] for i in lead)
    rest_bytes = sum(c["size"] for i, c in starts.items() if i not in lead)
    grown = after - before
    print(f"\nsecond listener (node 2): server bytes {grown:.0f} (lead {lead_bytes}, rest {rest_bytes}); "
          f"stats {stats}; placement {placement}; sockets per node {connected}; outcomes {info2['outcomes']}; "
          f"sources {[c['source'] for c in chunks]}")
    assert placement.get(info1["peerId"]) == "n1" and placement.get(info2["peerId"]) == "n2", placement
    assert connected == [1.0, 1.0], connected
    assert [n["id"] for n in info2["neighbours"]] == [info1["peerId"]]
    assert stats["stalls"] == 0
    assert stats["httpBytes"] == grown, "node 2 counted other bytes than the player fetched"
    assert stats["peerBytes"] >= 0.8 * rest_bytes, (stats, rest_bytes)
    assert grown - lead_bytes <= 0.2 * rest_bytes, (grown, lead_bytes, rest_bytes, chunks)
    assert info1["upBytes"] >= stats["peerBytes"]
    assert any(c["source"] == "peer" for c in chunks)
    assert info2["outcomes"] and {o["outcome"] for o in info2["outcomes"]} <= {"srflx", "prflx"}, info2["outcomes"]
    # the second listener's report of what peers carried reaches its own node's metrics
    await until_metric(n2, "ztream_peer_bytes_total", stats["peerBytes"])
    log.assert_clean()


async def test_a_listener_plays_through_a_node_that_never_saw_the_track(tmp_path: Path, audio_dir: Path) -> None:
    """The library is node 1's alone, and node 2 is never told of the track: its listener plays it all the
    same (node 2 finds the track in the shared catalog and pulls it from node 1, which holds the file)."""
    world = ClusterWorld(tmp_path, audio_dir, libraries=(audio_dir, None))
    try:
        n1, n2 = world.nodes
        tid = tone_track(n1)["id"]
        log = ErrorLog()
        async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
            listener = await b.listener(tid, home=1, gw=n2)
            await play(listener)
            await until(listener, "window.finished", timeout=60)
            stats = await listener.evaluate("document.getElementById('p').stats")
            m = manifest(n2, tid)
            await check_audio(listener, m)
        assert stats["stalls"] == 0, stats
        assert [c["sha256"] for c in manifest(n1, tid)["chunks"]] == [c["sha256"] for c in m["chunks"]]
        log.assert_clean()
    finally:
        world.close()
