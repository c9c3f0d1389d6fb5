"""The browser P2P world (bench/world.py): the browser tests and ``ztream bench browsers`` build the same one.

Here too what only the tests use: metrics read from the namespaced gateway
until they reach a value, and the TURN secret of the relay tests.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.nat import Topology, pair_ends
from bench.netns import NamespacedGateway
from bench.world import (
    CRAWL,
    FIREFOX_PREFS,
    LIVE_LEAD,
    LIVE_OVERRIDES,
    NAT_ARGS,
    PAGE_PATH,
    PORT,
    PUBLIC_URL,
    RECORDER,
    SERVER_LEAD,
    Browser,
    LiveListener,
    World,
    buffered_ahead,
    check_audio,
    firefox_listener,
    listen_live,
    listener_page,
    live_station,
    live_window,
    manifest,
    metric,
    metric_sum,
    p2p,
    play,
    seeded,
    server_bytes,
    tone_track,
)

__all__ = [
    "CRAWL", "FIREFOX_PREFS", "LIVE_LEAD", "LIVE_OVERRIDES", "LiveListener", "listen_live", "live_station",
    "live_window", "NAT_ARGS", "PAGE_PATH", "PORT", "PUBLIC_URL", "RECORDER", "SERVER_LEAD", "Browser",
    "World", "buffered_ahead", "check_audio", "firefox_listener", "listener_page", "manifest", "metric", "p2p", "play", "seeded",
    "server_bytes", "tone_track", "TURN_SECRET", "assert_pair_ends", "metric_sum", "until_metric",
]

TURN_SECRET = "test-turn-secret"


async def until_metric(gw: NamespacedGateway, name: str, at_least: float, timeout: float = 12.0) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(metric_sum, gw, name)
        if value >= at_least:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{name} = {value}, expected >= {at_least}")
        await asyncio.sleep(0.5)


def assert_pair_ends(info: dict[str, Any], kind: Topology = "bridge") -> None:
    """A listener connected to another of topology ``kind``: each connection's outcome and
    its end of the selected pair are what that topology allows (``bench.nat.pair_ends``:
    across NATs the remote end reflexive, a host pair cannot cross two NATs; in the
    office host pairs on the LAN, never server-reflexive), both ends known."""
    local_types, remote_types = pair_ends(kind)
    connected = [o for o in info["outcomes"] if o["outcome"] not in ("failed", "timeout")]
    ends = [(o.get("local"), o.get("remote")) for o in connected]
    assert ends, info["outcomes"]
    assert all(local in local_types and remote in remote_types for local, remote in ends), (kind, ends)
    # the pair's `candidate`: relay when either end is relayed, else the remote end's type
    assert all(o["outcome"] == ("relay" if "relay" in (o.get("local"), o.get("remote")) else o.get("remote"))
               for o in connected), connected
