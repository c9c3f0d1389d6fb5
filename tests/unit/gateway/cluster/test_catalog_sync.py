"""The shared catalog's Redis shell against a real redis-server: two nodes' catalogs in one process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.cluster import RedisServer
from gateway.cluster import keys
from gateway.cluster.catalog import CatalogSync
from gateway.cluster.link import RedisLink
from gateway.cluster.records import decode
from gateway.health import Health
from gateway.media.catalog import Track, TrackCatalog, track_id_for
from gateway.metrics import Metrics
from transcode.analysis import Tags


@dataclass
class Node:
    link: RedisLink
    sync: CatalogSync
    catalog: TrackCatalog


def _track(name: str) -> Track:
    url = f"https://media.example.org/{name}.mp3"
    return Track(id=track_id_for("url", url), source="url", locator=url, title=name)


@pytest.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    server = RedisServer(tmp_path)
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
async def two(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    made: list[Node] = []
    for name in ("n1", "n2"):
        link = RedisLink(redis_url, health=Health(), metrics=Metrics())
        sync = CatalogSync(link, name)
        catalog = TrackCatalog(tmp_path / name, shared=sync)
        await link.start()
        sync.start(catalog)
        made.append(Node(link, sync, catalog))
    yield made[0], made[1]
    for node in made:
        await node.sync.stop()
        await node.link.close()
        node.catalog.close()


async def _until(check: object, timeout: float = 3.0) -> float:
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - start < timeout
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_a_registration_and_its_changes_reach_the_other_node(two: tuple[Node, Node]) -> None:
    n1, n2 = two
    track = _track("a")
    n1.catalog.add(track)
    await n1.catalog.shared(track.id)
    assert await n2.catalog.find(track.id) is not None  # at once, looked up
    other = _track("b")
    n2.catalog.add(other)
    # Without a look-up: the index, read every POLL_SECONDS.
    assert await _until(lambda: n1.catalog.get(other.id) is not None) < 1.0
    n2.catalog.apply_tags(track.id, Tags(title="Tagged"))
    n2.catalog.mark_transcoded(track.id)
    await _until(lambda: (t := n1.catalog.get(track.id)) is not None and t.title == "Tagged" and t.listed)
    assert n1.catalog.played(track.id)
    n1.catalog.remove(other.id)
    await _until(lambda: n2.catalog.get(other.id) is None)


async def test_concurrent_changes_of_one_track_all_land(two: tuple[Node, Node]) -> None:
    n1, n2 = two
    track = _track("c")
    n1.catalog.add(track)
    await n1.catalog.shared(track.id)
    await n2.catalog.find(track.id)
    # Each node sets its own fields at once, many times: the compare-and-set retries, nothing is lost.
    for i in range(20):
        n1.catalog.set_duration(track.id, 10.0 + i)
        n2.catalog.set_artwork_size(track.id, 100 + i, 100 + i)
        await asyncio.sleep(0.005)

    def landed() -> bool:
        a, b = n1.catalog.get(track.id), n2.catalog.get(track.id)
        return a is not None and a == b and a.duration == 29.0 and a.artwork_width == 119

    await _until(landed)
    raw = await n1.link.call(lambda c: c.get(keys.track(track.id)))
    record = decode(raw)
    assert record is not None and record.fields()["duration"] == 29.0 and record.fields()["artwork_width"] == 119
