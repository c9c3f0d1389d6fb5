"""Chromium and Firefox exchange chunks over WebRTC, both ways, behind NAT.

The same world as tests/system/browser/test_p2p.py (whose helpers this module
imports): each listener behind its own NAT router (``bench.nat``,
endpoint-independent mapping), the gateway on the public namespace with its
shipped defaults (its built-in STUN responder is the only ICE server), no
media permissions in either browser, so both hide host candidates behind
mDNS names and only server-reflexive candidates connect; in the ``office``
topology (one router for both, no hairpinning) they connect host to host,
their mDNS names resolved on the LAN. Each topology of ``bench.nat`` is a
parameter of both directions.

Firefox ESR runs inside its listener's namespace: its remote agent listens
on that namespace's loopback, so the whole puppeteer-core driver runs there
(``bench.firefox``, ``prefix=ns.exec_prefix``); its audio output is a
PulseAudio null sink whose unix socket works across namespaces. The gateway
is plain http on 198.18.0.1, which Firefox treats as a secure context (for
WebCrypto) only with the pref ``dom.securecontext.allowlist``. The test page
is served at the gateway's own origin by request interception (the driver's
``route``), as Playwright's ``page.route`` does for Chromium.

Asserted on the bytes the leecher's player took from its peer (its stats and
``chunk`` events), the SHA-256 of every buffer it appended against the
manifest, and 0 stalls. Chromium to Firefox also with the fMP4/Opus
rendition: both pages' MSE take only its type (tests/system/browser/test_fmp4.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.support.browser import RENDITION_MIMES, ErrorLog, only_mse_type, until
from tests.support.firefox import Firefox
from tests.support.nat import TOPOLOGIES, Topology
from tests.support.world import (
    SERVER_LEAD,
    Browser,
    World,
    assert_pair_ends,
    check_audio,
    firefox_listener,
    manifest,
    p2p,
    play,
    seeded,
    tone_track,
    until_metric,
)

pytestmark = [pytest.mark.timeout(180)]

def page_errors(ff: Firefox) -> list[dict[str, Any]]:
    return ff.errors()


def rest_bytes(m: dict[str, Any]) -> int:
    """The bytes after the server lead: what a second listener may take from its peer."""
    return sum(c["size"] for c in m["chunks"] if c["start"] >= SERVER_LEAD)


async def leeched(page: Any, m: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Once ``page``'s player has finished: its stats, its ``chunk`` events and its P2P
    info, after checking every appended buffer against the manifest."""
    await until(page, "window.finished", timeout=60)
    stats = await page.evaluate("document.getElementById('p').stats")
    chunks = await page.evaluate("window.chunks")
    info = await p2p(page)
    await check_audio(page, m)
    return stats, chunks, info


def assert_took_the_rest(m: dict[str, Any], stats: dict[str, Any], chunks: list[dict[str, Any]],
                         info: dict[str, Any], seeder_info: dict[str, Any], kind: Topology, *,
                         fmp4: bool = False) -> None:
    """The leecher got the bytes after the server lead from its one neighbour, the
    seeder, over a connection the topology allows (server-reflexive across NATs,
    host to host on the office LAN), and counted them right."""
    # WebM: 80 % of the rest from the peer. fMP4: the rest has only 5 chunks, so
    # one chunk from the server (the first, when the scheduler needs it before the
    # peer connection is up) is already 20 %: all but that one from the peer.
    wanted = 0.8 * rest_bytes(m)
    if fmp4:
        wanted = min(wanted, rest_bytes(m) - max(c["size"] for c in m["chunks"] if c["start"] >= SERVER_LEAD))
    assert stats["peerBytes"] >= wanted, (stats, rest_bytes(m))
    assert sum(c["bytes"] for c in chunks if c["source"] == "peer") == stats["peerBytes"]
    assert seeder_info["upBytes"] >= stats["peerBytes"]
    assert [n["id"] for n in info["neighbours"]] == [seeder_info["peerId"]]
    assert info["outcomes"], "no connection outcome recorded"
    assert_pair_ends(info, kind)
    assert_pair_ends(seeder_info, kind)


@pytest.mark.parametrize(("rendition", "kind"), [*(("webm", kind) for kind in TOPOLOGIES), ("fmp4-opus", "bridge")])
async def test_chromium_seeds_firefox_leeches(tmp_path: Path, audio_dir: Path, rendition: str, kind: Topology) -> None:
    """Chromium behind one NAT holds the track; Firefox behind another (in the office: the
    same one) gets the rest of it from Chromium."""
    world = World(tmp_path, audio_dir, kind=kind)
    try:
        gw = world.gw
        tid = tone_track(gw)["id"]
        mime = RENDITION_MIMES.get(rendition)
        m = manifest(gw, tid, rendition if mime else "")
        script = only_mse_type(mime) if mime else ""
        log = ErrorLog()
        async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
            seeder = await b.listener(tid, home=0, script=script)
            await play(seeder)
            await seeded(seeder, m)
            async with firefox_listener(world, tmp_path, tid, home=1, script=script) as ff:
                playing = await ff.evaluate("document.getElementById('p').manifest.rendition")
                assert playing == m["rendition"] == await seeder.evaluate("document.getElementById('p').manifest.rendition")
                await play(ff)
                stats, chunks, info = await leeched(ff, m)
                errors = page_errors(ff)
            seeder_info = await p2p(seeder)
        from_peer = [c["index"] for c in chunks if c["source"] == "peer"]
        print(f"\nChromium -> Firefox ({rendition}, {kind}): stats {stats}; chunks from the peer {from_peer}; outcomes {info['outcomes']}; "
              f"Chromium sent {seeder_info['upBytes']}")
        assert stats["stalls"] == 0, stats
        assert_took_the_rest(m, stats, chunks, info, seeder_info, kind, fmp4=mime is not None)
        assert not errors, errors
        log.assert_clean()
        await until_metric(gw, 'ztream_p2p_connections_total{result="connected"}', 1)
    finally:
        world.close()


@pytest.mark.parametrize("kind", TOPOLOGIES)
async def test_firefox_seeds_chromium_leeches(tmp_path: Path, audio_dir: Path, kind: Topology) -> None:
    """Firefox behind one NAT holds the track; Chromium behind another (in the office: the
    same one) gets the rest of it from Firefox."""
    world = World(tmp_path, audio_dir, kind=kind)
    try:
        gw = world.gw
        tid = tone_track(gw)["id"]
        m = manifest(gw, tid)
        log = ErrorLog()
        async with firefox_listener(world, tmp_path, tid, home=0) as ff:
            await play(ff)
            await seeded(ff, m)
            async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
                leecher = await b.listener(tid, home=1)
                await play(leecher)
                stats, chunks, info = await leeched(leecher, m)
            seeder_info = await p2p(ff)
            seeder_stats = await ff.evaluate("document.getElementById('p').stats")
            errors = page_errors(ff)
        from_peer = [c["index"] for c in chunks if c["source"] == "peer"]
        print(f"\nFirefox -> Chromium ({kind}): stats {stats}; chunks from the peer {from_peer}; outcomes {info['outcomes']}; "
              f"Firefox sent {seeder_info['upBytes']}, its own stats {seeder_stats}")
        assert stats["stalls"] == 0, stats
        assert seeder_stats["stalls"] == 0, seeder_stats
        assert_took_the_rest(m, stats, chunks, info, seeder_info, kind)
        assert not errors, errors
        log.assert_clean()
        await until_metric(gw, 'ztream_p2p_connections_total{result="connected"}', 1)
    finally:
        world.close()
