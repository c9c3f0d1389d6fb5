"""Same network first, measured: two ISPs of three NATed listeners each, headless peers.

The ``two-isps`` topology (bench/nat.py): every listener behind its own
endpoint-independent NAT, its router's public address in its ISP's prefix,
the gateway on the public side with its shipped STUN responder. In each
network one listener holds the whole track first (``ztream peer
--seed-only``), then the two others play it, staggered. Run twice: with
``[p2p.networks]`` naming the two ISPs' prefixes, and without. With them, at
least 80% of the bytes peers carried stay inside a network, the total
offload is that of the run without (within 5 points), and the gateway's
``ztream_peer_bytes_total{scope}`` says the same as the peers' own count of
where their bytes came from.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bench.nat import NETWORKS
from bench.netns import NetNamespace
from tests.support.audio import make_audio
from tests.support.gateway import ROOT, ZTREAM
from tests.support.world import World, manifest, tone_track

SPEED = 4.0  # audio seconds per real second
STAGGER = 2.0  # real seconds between the listeners' starts


@pytest.fixture(scope="module")
def minute_of_tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("two-isps")
    make_audio(d / "tone_minute.flac", 60, freq=392)
    return d


def peer(ns: NetNamespace, url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ns.exec_prefix, *ZTREAM, "peer", url, "--progress", "0", "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
    )


def report(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def scopes(metrics: dict[str, float]) -> dict[str, float]:
    prefix = 'ztream_peer_bytes_total{scope="'
    return {k[len(prefix):-2]: v for k, v in metrics.items() if k.startswith(prefix)}


def run(tmp_path: Path, library: Path, *, networks: bool) -> dict[str, Any]:
    """One run; the peers' reports, each with the network of the listener it ran at, and the scopes counted."""
    tmp_path.mkdir()
    # World configures the topology's networks; an empty table: none.
    world = World(tmp_path, library, count=6, kind="two-isps", **({} if networks else {"p2p__networks": {}}))
    if networks:
        assert world.gw.config["p2p.networks"] == world_networks()
    procs: list[subprocess.Popen[str]] = []
    try:
        gw = world.gw
        track = tone_track(gw)["id"]
        m = manifest(gw, track)
        url = f"{gw.url}/v1/tracks/{track}"
        listeners = world.topology.listeners
        # Listener i is in isp-a when i is even: 0 and 1 seed, 2..5 play.
        seeders = [peer(listeners[i].ns, url, "--seed-only") for i in (0, 1)]
        procs.extend(seeders)
        whole = m["init"]["size"] + sum(c["size"] for c in m["chunks"])
        deadline = time.monotonic() + 30
        while sum(v for k, v in gw.metrics().items() if k.startswith("ztream_server_bytes_total")) < 2 * whole:
            assert time.monotonic() < deadline, "the seeders did not fetch the track"
            time.sleep(0.2)
        time.sleep(1.0)  # their `have` is in
        duration = sum(c["duration"] for c in m["chunks"])
        players = []
        for k, i in enumerate(range(2, 6)):
            # Each stays until the last one has played to the end.
            linger = (3 - k) * STAGGER + 5
            players.append(peer(listeners[i].ns, url, "--speed", str(SPEED), "--linger", str(linger)))
            procs.append(players[-1])
            time.sleep(STAGGER)
        reports = [report(p, duration / SPEED + 60) for p in players]
        for p in seeders:
            p.send_signal(signal.SIGINT)
        reports = [report(p, 30) for p in seeders] + reports
        time.sleep(6)  # the last stats reports (every 5 s) are counted
        for r, listener in zip(reports, [listeners[0], listeners[1], *listeners[2:6]]):
            r["network"] = listener.network
        return {"reports": reports, "scopes": scopes(gw.metrics()), "whole": whole}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        world.close()


def world_networks() -> dict[str, list[str]]:
    return {name: [prefix] for name, (prefix, _uplink) in NETWORKS.items()}


def figures(result: dict[str, Any]) -> dict[str, float]:
    reports = result["reports"]
    network_of = {r["peer_id"]: r["network"] for r in reports}
    within = sum(n for r in reports for src, n in r["p2p_sources"].items() if network_of.get(src) == r["network"])
    p2p = sum(r["p2p_down_bytes"] for r in reports)
    http = sum(r["http_down_bytes"] for r in reports)
    return {"p2p": p2p, "http": http, "offload": p2p / (p2p + http), "within": within / p2p if p2p else 0.0}


@pytest.mark.timeout(300)
def test_most_p2p_bytes_stay_within_a_network(tmp_path: Path, minute_of_tone: Path) -> None:
    with_networks = run(tmp_path / "with", minute_of_tone, networks=True)
    without = run(tmp_path / "without", minute_of_tone, networks=False)
    near, plain = figures(with_networks), figures(without)
    print(f"\nwith [p2p.networks]: {near}\n  gateway scopes {with_networks['scopes']}"
          f"\nwithout:            {plain}\n  gateway scopes {without['scopes']}")
    for result in (with_networks, without):
        seeders, players = result["reports"][:2], result["reports"][2:]
        assert all(r["hash_mismatches"] == 0 and r["p2p_down_bytes"] == 0 for r in seeders), seeders
        for r in players:
            assert r["played_to_end"] and r["stalls"] == 0 and r["hash_mismatches"] == 0, r
            assert set(r["p2p_sources"]) <= {q["peer_id"] for q in result["reports"]}
    assert near["within"] >= 0.8, near
    assert near["offload"] >= plain["offload"] - 0.05, (near, plain)
    # The gateway's scopes agree with the peers' count: their sources' networks.
    scoped = with_networks["scopes"]
    assert scoped["same_network"] == pytest.approx(near["within"] * near["p2p"], rel=0.01), (scoped, near)
    assert scoped["same_lan"] == 0 and scoped["unknown"] == 0, scoped
    assert scoped["other"] == pytest.approx((1 - near["within"]) * near["p2p"], rel=0.01, abs=1), (scoped, near)
    # Without networks the gateway can tell only LANs apart: no listener shares one.
    assert without["scopes"]["same_network"] == 0 and without["scopes"]["same_lan"] == 0, without["scopes"]
