"""The headless peer: its pure cores, then aiortc peers through a real gateway.

The pure parts (``Playback``, the cache, the
clock) are tested synchronously. The rest runs real ``ztream serve``
subprocesses and real aiortc connections on loopback: an aiortc peer fetches
chunks from another aiortc peer over a DataChannel, checks every SHA-256,
and the gateway's metrics agree with what the peers counted.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bench.harness import LOOPBACK_ZTREAM, restrict_ice_to_loopback
from peer.cache import ChunkCache
from peer.cli import split_url
from peer.clock import VirtualClock
from peer.playback import Playback, State
from tests.support.audio import make_audio
from tests.support.gateway import ROOT, ZTREAM

# ---- pure: playback, clock, cache, URLs ------------------------------------------


def test_playback_starts_plays_stalls_and_ends() -> None:
    p = Playback()
    assert p.advance(0.0, ahead=0, end=10.0) is State.STARTING
    assert p.advance(0.5, ahead=2, end=10.0, ready=False) is State.STARTING  # no init yet
    assert p.advance(0.6, ahead=2, end=10.0) is State.PLAYING
    assert p.started_at == 0.6 and p.position == 0
    assert p.advance(1.6, ahead=2, end=10.0) is State.PLAYING and p.position == pytest.approx(1.0)
    # 1 s buffered ahead, 3 s pass: a stall at the buffer's edge
    assert p.advance(4.6, ahead=1, end=10.0) is State.STALLED
    assert p.stalls == 1 and p.position == pytest.approx(2.0) and p.stalled_seconds == pytest.approx(2.0)
    assert p.advance(5.0, ahead=0, end=10.0) is State.STALLED
    assert p.advance(5.5, ahead=4, end=10.0) is State.PLAYING
    assert p.stalls == 1
    assert p.advance(20.0, ahead=8, end=10.0) is State.ENDED
    assert p.position == 10.0 and p.stalls == 1
    # reaching the end of a complete track is no stall
    q = Playback()
    q.advance(0, ahead=3, end=3.0)
    assert q.advance(10, ahead=3, end=3.0) is State.ENDED and q.stalls == 0


def test_virtual_clock_runs_faster_than_real_time() -> None:
    t = [100.0]
    clock = VirtualClock(8, real=lambda: t[0])
    assert clock.now() == 0
    t[0] += 0.5
    assert clock.now() == 4.0 and clock.real() == 100.5 and clock.to_real(8) == 1.0
    with pytest.raises(ValueError):
        VirtualClock(0)


def test_cache_keeps_only_chunks_that_match_the_manifest(tmp_path: Path) -> None:
    import hashlib

    good, bad = b"good chunk", b"tampered"
    manifest = {"complete": True, "chunks": [
        {"index": 0, "sha256": hashlib.sha256(good).hexdigest()},
        {"index": 1, "sha256": hashlib.sha256(b"original").hexdigest()},
    ]}
    cache = ChunkCache(tmp_path, "track1", "rend1")
    cache.write(0, good)
    cache.write(1, bad)
    cache.write(7, b"past the end")
    assert cache.load(manifest) == {0: good}
    assert sorted(p.name for p in cache.dir.iterdir()) == ["0.chunk"]
    with pytest.raises(ValueError):
        ChunkCache(tmp_path, "..", "r")


def test_split_url() -> None:
    assert split_url("http://127.0.0.1:8000") == ("http://127.0.0.1:8000", None)
    assert split_url("http://127.0.0.1:8000/v1/tracks/abc123") == ("http://127.0.0.1:8000", "abc123")
    assert split_url("https://h.example/base/embed/x_y") == ("https://h.example/base", "x_y")
    with pytest.raises(ValueError):
        split_url("ftp://x")


# ---- real aiortc peers through a real gateway ----------------------------------------


@pytest.fixture(scope="module")
def minute_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("minute")
    make_audio(d / "minute.flac", 60, freq=392)
    return d


def warm(gateway: Any, track: str, timeout: float = 60) -> dict[str, Any]:
    """The complete manifest (the transcode finished)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{gateway.url}/v1/tracks/{track}/manifest", timeout=10) as r:
            manifest: dict[str, Any] = json.load(r)
        if manifest["complete"] or time.monotonic() > deadline:
            return manifest
        time.sleep(0.1)


def peer_bytes_metric(gateway: Any) -> float:
    from bench.swarm import metrics_snapshot

    return metrics_snapshot(gateway.url)["peer_bytes"]


async def test_aiortc_peer_fetches_from_aiortc_peer(gateway_factory: Any, minute_library: Path, tmp_path: Path) -> None:
    from peer.node import PeerNode, PeerOptions

    restrict_ice_to_loopback()
    gw = gateway_factory(library=minute_library)
    track = gw.library_ids[0]
    manifest = warm(gw, track)
    clock = VirtualClock(10)
    stop = asyncio.Event()
    seeder = PeerNode(gw.url, track, clock=clock, options=PeerOptions(speed=10, seed_only=True, linger=None, name="seed"))
    seeding = asyncio.create_task(seeder.run(stop))
    async with asyncio.timeout(20):
        while seeder.report.chunks_server < len(manifest["chunks"]):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # announced to the tracker (within HAVE_FLUSH)
    cache = tmp_path / "cache"
    listener = PeerNode(gw.url, track, clock=clock,
                        options=PeerOptions(speed=10, linger=0, cache_dir=cache, name="listener"))
    async with asyncio.timeout(30):
        report = await listener.run()
    stop.set()
    async with asyncio.timeout(15):
        seed_report = await seeding

    n = len(manifest["chunks"])
    assert report.played_to_end and report.stalls == 0
    assert report.held == n and report.hash_mismatches == 0 and report.verify_failures == 0
    assert report.chunks_peer > 0 and report.links_opened >= 1
    # only the server lead (the first ~10 s) came from the server
    lead = sum(1 for c in manifest["chunks"] if c["start"] < 10)
    assert report.chunks_server <= lead + 1, report
    assert report.chunks_peer + report.chunks_server == n
    assert seed_report.p2p_up_bytes == report.p2p_down_bytes > 0
    # what the gateway was told agrees with what the peers counted
    assert peer_bytes_metric(gw) == report.p2p_down_bytes

    # A reload: the cache holds every chunk, which is played from it and
    # announced, and costs the server no audio byte.
    again = PeerNode(gw.url, track, clock=VirtualClock(20), options=PeerOptions(speed=20, linger=0, cache_dir=cache))
    async with asyncio.timeout(30):
        second = await again.run()
    assert second.played_to_end and second.stalls == 0
    assert second.chunks_cache == n and second.http_down_bytes == 0 and second.p2p_down_bytes == 0


async def _seed_then_listen(gw: Any, track: str, seeders: list[Any], listener_options: Any) -> tuple[Any, list[Any], float]:
    """Seeders (``PeerOptions``) fetch the whole track, then one listener plays it: its report,
    the seeders' reports, and the real seconds the listener ran."""
    from peer.node import PeerNode

    manifest = warm(gw, track)
    clock = VirtualClock(10)
    stop = asyncio.Event()
    nodes = [PeerNode(gw.url, track, clock=clock, options=o) for o in seeders]
    tasks = [asyncio.create_task(n.run(stop)) for n in nodes]
    async with asyncio.timeout(20):
        while any(n.report.chunks_server < len(manifest["chunks"]) for n in nodes):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # announced to the tracker
    started = time.monotonic()
    async with asyncio.timeout(40):
        report = await PeerNode(gw.url, track, clock=clock, options=listener_options).run()
    elapsed = time.monotonic() - started
    stop.set()
    async with asyncio.timeout(15):
        seeded = [await t for t in tasks]
    return report, seeded, elapsed


async def test_python_peer_keeps_the_upload_cap_and_the_no_upload_choice(gateway_factory: Any, minute_library: Path) -> None:
    """``p2p.upload_kbps`` caps what a seeder sends (in its own time: at 10x speed, ten times the
    bytes a real second); a ``--no-upload`` peer serves no one."""
    from peer.node import PeerOptions

    restrict_ice_to_loopback()
    kbps = 16  # at speed 10: 160 kbit/s of real time
    gw = gateway_factory(library=minute_library, p2p={"upload_kbps": kbps})
    track = gw.library_ids[0]
    capped = PeerOptions(speed=10, seed_only=True, linger=None, name="capped")
    refuser = PeerOptions(speed=10, seed_only=True, linger=None, name="refuser", upload="stop")
    report, (seed, refused), elapsed = await _seed_then_listen(
        gw, track, [capped, refuser], PeerOptions(speed=10, linger=0, name="listener"))
    rate = kbps * 10 * 1000 / 8  # bytes a real second
    manifest = warm(gw, track)
    biggest = max(c["size"] for c in manifest["chunks"])
    print(f"\ncap {kbps} kbit/s at 10x: the seeder sent {seed.p2p_up_bytes} B while the listener ran {elapsed:.1f} s "
          f"(bound {rate * (elapsed + 2) + biggest:.0f} B); the listener took {report.p2p_down_bytes} B from peers, "
          f"{report.http_down_bytes} B from the server")
    assert report.played_to_end and report.hash_mismatches == 0
    assert refused.p2p_up_bytes == 0
    assert 0 < seed.p2p_up_bytes <= rate * (elapsed + 2) + biggest
    assert 0 < report.p2p_down_bytes <= seed.p2p_up_bytes
    # at speed 10 the listener wanted the minute in ~6 s: far more than the cap allows
    assert report.http_down_bytes > sum(c["size"] for c in manifest["chunks"]) / 2


async def test_python_peer_follows_the_gateways_upload_off(gateway_factory: Any, minute_library: Path) -> None:
    from peer.node import PeerOptions

    restrict_ice_to_loopback()
    gw = gateway_factory(library=minute_library, p2p={"upload": "off"})
    track = gw.library_ids[0]
    report, (seed,), _elapsed = await _seed_then_listen(
        gw, track, [PeerOptions(speed=10, seed_only=True, linger=None, name="seed")],
        PeerOptions(speed=10, linger=0, name="listener"))
    assert report.played_to_end and report.p2p_down_bytes == 0 and seed.p2p_up_bytes == 0
    assert report.links_opened == 0  # nobody announced anything: the tracker named no one


def test_ztream_peer_command(gateway_factory: Any, minute_library: Path) -> None:
    gw = gateway_factory(library=minute_library)
    track = gw.library_ids[0]
    warm(gw, track)
    out = subprocess.run(
        [*LOOPBACK_ZTREAM, "peer", f"{gw.url}/v1/tracks/{track}", "--speed", "30", "--linger", "0", "--progress", "0", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["played_to_end"] and report["stalls"] == 0 and report["hash_mismatches"] == 0
    assert report["track"] == track and report["held"] == report["total_chunks"] > 0
    assert report["startup_seconds"] is not None and report["startup_seconds"] < 5
    bad = subprocess.run([*ZTREAM, "peer", "not a url"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert bad.returncode == 2 and "not an http(s) URL" in bad.stderr
    unknown = subprocess.run([*ZTREAM, "peer", gw.url, "--track", "nosuchtrack", "--linger", "0"],
                             capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert unknown.returncode == 1 and "404" in unknown.stderr, unknown.stderr[-2000:]


# ---- aiortc peer <-> Chromium ---------------------------------------------------------


def _ns_peer(ns: Any, url: str, *args: str) -> subprocess.Popen[str]:
    """``ztream peer`` inside the namespace (its 127.0.0.1 is the namespace's)."""
    return subprocess.Popen(
        [*ns.exec_prefix, *ZTREAM, "peer", url, "--progress", "0", "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
    )


def _report(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


@pytest.mark.timeout(120)
async def test_aiortc_peer_and_chromium_exchange_chunks(tmp_path: Path, audio_dir: Path) -> None:
    """An aiortc seeder feeds a Chromium listener; then that listener feeds an aiortc listener."""
    import signal

    from playwright.async_api import async_playwright

    from tests.support.browser import ErrorLog, until
    from tests.support.world import (
        Browser,
        World,
        check_audio,
        manifest,
        p2p,
        play,
        server_bytes,
        tone_track,
    )

    # Chromium behind one NAT router, the aiortc peers behind another, the
    # gateway (and its STUN responder) on the public side: no media
    # permissions, shipped defaults (bench/nat.py).
    world = World(tmp_path, audio_dir, count=2)
    gw = world.gw
    aiortc_home = world.homes[1]
    seeder: subprocess.Popen[str] | None = None
    try:
        tid = tone_track(gw)["id"]
        m = manifest(gw, tid)
        track_url = f"{gw.url}/v1/tracks/{tid}"
        whole = m["init"]["size"] + sum(c["size"] for c in m["chunks"])
        seeder = _ns_peer(aiortc_home, track_url, "--seed-only")
        async with asyncio.timeout(20):  # the seeder fetched the track once, then announced it
            while await asyncio.to_thread(server_bytes, gw) < whole:
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)

        log = ErrorLog()
        async with async_playwright() as pw, Browser(pw, world, tmp_path, log) as b:
            page = await b.listener(tid, home=0)
            await play(page)
            await until(page, "window.finished", timeout=45)
            stats = await page.evaluate("document.getElementById('p').stats")
            info = await p2p(page)
            await check_audio(page, m)
            # The aiortc seeder leaves: the next listener can only use Chromium.
            seeder.send_signal(signal.SIGINT)
            seed_report = await asyncio.to_thread(_report, seeder, 30)
            seeder = None
            listener = _ns_peer(aiortc_home, track_url, "--speed", "4", "--linger", "0")
            report = await asyncio.to_thread(_report, listener, 60)
            info_after = await p2p(page)
        log.assert_clean()

        lead = sum(c["size"] for c in m["chunks"] if c["start"] < 10)
        rest = sum(c["size"] for c in m["chunks"]) - lead
        # Chromium got (nearly) everything past the server lead from aiortc
        assert stats["stalls"] == 0 and stats["peerBytes"] >= 0.8 * rest, (stats, info)
        assert seed_report["p2p_up_bytes"] == stats["peerBytes"]
        # and aiortc from Chromium
        assert report["played_to_end"] and report["stalls"] == 0 and report["hash_mismatches"] == 0, report
        assert report["verify_failures"] == 0 and report["p2p_down_bytes"] >= 0.8 * rest, report
        assert info_after["upBytes"] - info["upBytes"] == report["p2p_down_bytes"]
    finally:
        if seeder is not None and seeder.poll() is None:
            seeder.kill()
            seeder.wait(10)
        world.close()
