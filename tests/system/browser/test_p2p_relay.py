"""p2p="relay": a listener that chose privacy connects through TURN only and shows peers no address of its own.

The world of tests/system/browser/test_p2p.py (whose helpers this module imports):
two Chromium listeners each behind its own endpoint-independent NAT router,
the gateway on the public namespace with ``[p2p.turn]`` pointing at a real
coturn (``use-auth-secret``) started by the test, no media permissions.
Without the option these two would connect directly (server-reflexive, the
EIM case of test_p2p.py), so a relayed connection here is the
option's doing.

The leecher is the gateway's own embed page, ``/embed/{id}?p2p=relay``: the
query parameter reaches the player as its ``p2p`` attribute. Every page
records what it *receives* over signaling (the SDP given to
``setRemoteDescription`` and the candidates given to ``addIceCandidate``):
the seeder's record is exactly what the relay listener revealed to its
neighbour.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.support.browser import ErrorLog, until
from tests.support.nat import PUBLIC_ADDRESS, Coturn
from tests.support.netns import require_netns
from tests.support.world import (
    RECORDER,
    SERVER_LEAD,
    TURN_SECRET,
    Browser,
    World,
    check_audio,
    manifest,
    seeded,
    tone_track,
    until_metric,
)

pytestmark = [pytest.mark.timeout(150)]

# What this page receives from its neighbours over signaling.
SIGNALS = """
window.remote = [];
const setRemote = RTCPeerConnection.prototype.setRemoteDescription;
RTCPeerConnection.prototype.setRemoteDescription = function (d) {
  if (d && d.sdp) window.remote.push({ kind: "sdp", type: d.type, text: d.sdp });
  return setRemote.apply(this, arguments);
};
const addCandidate = RTCPeerConnection.prototype.addIceCandidate;
RTCPeerConnection.prototype.addIceCandidate = function (c) {
  if (c && c.candidate) window.remote.push({ kind: "candidate", text: c.candidate });
  return addCandidate.apply(this, arguments);
};
"""

CANDIDATE_TYPE = re.compile(r"\btyp (host|srflx|prflx|relay)\b")


def candidate_lines(received: list[dict[str, Any]]) -> list[str]:
    """Every ICE candidate in what a page received: trickled ones and ``a=candidate`` lines of SDPs."""
    lines = [r["text"] for r in received if r["kind"] == "candidate"]
    for r in received:
        if r["kind"] == "sdp":
            lines += [line[2:] for line in r["text"].splitlines() if line.startswith("a=candidate:")]
    return lines


async def test_relay_listener_connects_only_through_turn_and_reveals_no_address(tmp_path: Path, audio_dir: Path) -> None:
    require_netns()
    turn_config: dict[str, Any] = {"p2p.turn": {"urls": [f"turn:{PUBLIC_ADDRESS}:3478?transport=udp"], "secret": TURN_SECRET}}
    world = World(tmp_path, audio_dir, nat="eim", **turn_config)
    turn = None
    try:
        turn_dir = tmp_path / "turn"
        turn_dir.mkdir()
        turn = Coturn(world.topology.public, TURN_SECRET, turn_dir)
        gw = world.gw
        tid = tone_track(gw)["id"]
        m = manifest(gw, tid)
        relay_home = world.topology.listeners[1]
        log = ErrorLog()
        async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
            seeder = await b.listener(tid, script=SIGNALS)
            await seeder.evaluate("document.getElementById('p').play()")
            await seeded(seeder, m)

            context = await (await b.at(1)).new_context(permissions=["local-network-access"])
            await context.add_init_script(RECORDER + SIGNALS)
            leecher = await context.new_page()
            log.watch(leecher)
            await leecher.goto(f"{gw.url}/embed/{tid}?p2p=relay")
            player = "document.getElementById('player')"
            await until(leecher, f"{player}.manifest !== null && {player}.p2p !== null")
            assert await leecher.evaluate(f"{player}.getAttribute('p2p')") == "relay"
            await leecher.evaluate(f"{player}.play()")
            await until(leecher, "window.finished", timeout=45)
            stats = await leecher.evaluate(f"{player}.stats")
            info = await leecher.evaluate(f"{player}.p2p")
            await check_audio(leecher, m)
            to_seeder = await seeder.evaluate("window.remote")
            to_leecher = await leecher.evaluate("window.remote")
        got = candidate_lines(to_seeder)
        seen = candidate_lines(to_leecher)
        print(f"\nrelay listener: stats {stats}; outcomes {info['outcomes']}; relay flag {info['relay']}")
        print(f"the seeder received from it: {sorted({t for c in got for t in CANDIDATE_TYPE.findall(c)})} "
              f"({len(got)} candidates); the relay listener received: "
              f"{sorted({t for c in seen for t in CANDIDATE_TYPE.findall(c)})} ({len(seen)} candidates)")
        rest = sum(c["size"] for c in m["chunks"] if c["start"] >= SERVER_LEAD)
        assert info["relay"] is True
        assert stats["stalls"] == 0
        assert stats["peerBytes"] >= 0.8 * rest, (stats, rest)
        assert info["outcomes"] and {o["outcome"] for o in info["outcomes"]} == {"relay"}, info["outcomes"]
        # What the neighbour received from the relay listener: relayed candidates only ...
        assert got, "the seeder received no candidate at all"
        assert all(CANDIDATE_TYPE.findall(c) == ["relay"] for c in got), got
        # ... and none of its addresses anywhere in the signaling (not even as a relay's raddr).
        everything = json.dumps(to_seeder)
        for address in (relay_home.lan_address, relay_home.wan_address):
            assert address not in everything, f"{address} reached the neighbour: {to_seeder}"
        await until_metric(gw, 'ztream_p2p_connections_total{candidate="relay"}', 1)
        await until_metric(gw, "ztream_peer_relay_bytes_total", stats["peerBytes"] * 0.9)
        log.assert_clean()
    finally:
        if turn is not None:
            turn.close()
        world.close()


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_embed_passes_the_p2p_option_to_the_player(gateway: Any) -> None:
    """/embed/{id}?p2p=off|relay becomes the player's attribute; anything else is a clear 400."""
    tid = gateway.library_ids[1]
    for value, attr in (("relay", 'p2p="relay"'), ("off", 'p2p="off"'), (None, 'p2p=""')):
        query = f"?p2p={value}" if value else ""
        status, body = await asyncio.to_thread(fetch, f"{gateway.url}/embed/{tid}{query}")
        assert status == 200, body
        player = re.search(r"<ztream-player [^>]*>", body)
        assert player and attr in player.group(0), player
    for bad in ("on", "RELAY", "relay%22%20onclick%3D%22x", ""):
        status, body = await asyncio.to_thread(fetch, f"{gateway.url}/embed/{tid}?p2p={bad}")
        if bad == "":
            assert status == 200  # ?p2p= (empty) is the default
            continue
        assert status == 400, (bad, body)
        assert json.loads(body)["error"] == "bad_request", body
