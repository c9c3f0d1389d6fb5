"""The neighbour overlay with real aiortc peers through a real gateway.

Listeners play a two-track playlist. From the second track on, their control
sockets drop every ``want`` frame (``PeerOptions.drop_wants_from``): the
tracker is unreachable for lookups. Listeners that had neighbours on the
first track still find holders of the second through them (departure
notices, LOOKUP/HOLDERS, ``introduce`` checked by the gateway), and take
part of it from peers. With the overlay off, the same run finds nobody for
the second track: the mechanism is real, not the test's.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from peer.clock import VirtualClock
from peer.core import DEFAULT_P2P_SETTINGS
from peer.node import PeerNode, PeerOptions, PeerReport
from tests.support.audio import make_audio

from .test_python_peer import warm

LISTENERS = 5
SPEED = 10.0


@pytest.fixture(scope="module")
def playlist_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("playlist")
    make_audio(d / "a.flac", 40, freq=392)
    make_audio(d / "b.flac", 40, freq=523)
    return d


async def swarm(gw: Any, tracks: list[str], *, overlay: bool) -> list[PeerReport]:
    clock = VirtualClock(SPEED)
    stop = asyncio.Event()
    p2p = replace(DEFAULT_P2P_SETTINGS, overlay=overlay)
    nodes = [
        PeerNode(gw.url, tracks[0], clock=clock, options=PeerOptions(
            speed=SPEED, linger=None, name=f"l{i}", p2p=p2p, playlist=tuple(tracks[1:]), drop_wants_from=1))
        for i in range(LISTENERS)
    ]
    tasks = []
    for node in nodes:
        tasks.append(asyncio.create_task(node.run(stop)))
        await asyncio.sleep(0.4)
    async with asyncio.timeout(90):
        while any(n.report.tracks_played < len(tracks) and not t.done() for n, t in zip(nodes, tasks)):
            await asyncio.sleep(0.1)
    stop.set()
    async with asyncio.timeout(30):
        return list(await asyncio.gather(*tasks))


async def test_listeners_find_the_next_track_through_neighbours_without_the_tracker(
    gateway_factory: Any, playlist_library: Path
) -> None:
    gw = gateway_factory(library=playlist_library)
    tracks = sorted(gw.library_ids)
    for t in tracks:
        warm(gw, t)

    reports = await swarm(gw, tracks, overlay=True)
    for r in reports:
        assert r.tracks_played == 2 and r.stalls == 0 and r.hash_mismatches == 0 and r.verify_failures == 0, r
        assert r.wants > 0  # the first track went through the tracker
    # the second track: not one want reached the tracker, yet the listeners
    # that followed someone found holders through their neighbours
    assert sum(r.wants_dropped for r in reports) > 0
    later = reports[1:]
    found = [r for r in later if r.introduced > 0 and r.track_p2p_bytes[1] > 0]
    assert len(found) >= len(later) - 1, [(r.name, r.introduced, r.track_p2p_bytes, r.lookups) for r in reports]
    assert sum(r.track_p2p_bytes[1] for r in reports) > 0

    # The control: the overlay off, the tracker still unreachable for the
    # second track: nobody finds anybody there.
    gw2 = gateway_factory(library=playlist_library)
    tracks2 = sorted(gw2.library_ids)
    for t in tracks2:
        warm(gw2, t)
    control = await swarm(gw2, tracks2, overlay=False)
    for r in control:
        assert r.tracks_played == 2 and r.stalls == 0, r
        assert r.introduces == 0 and r.lookups == 0
        assert r.track_p2p_bytes[1] == 0, (r.name, r.track_p2p_bytes)
