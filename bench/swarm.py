"""``ztream bench swarm``: a swarm of headless peers against one gateway.

Starts (unless ``--gateway`` is given) a loopback upstream serving a generated
track and a gateway subprocess, registers the track by URL and lets the
transcode finish, then starts ``--peers`` aiortc peers in this process, one
every ``--arrival`` seconds, playing at ``--speed`` times real time. Peers
that have played to the end keep seeding until every peer is done. With
``--churn P`` a share P of the peers leaves mid-track (half of them closing
their connections, half going silent, as a frozen machine does); with
``--bad-peers K``, K peers serve corrupt chunks; with ``--liars L``, L peers
lie to the tracker (claim the whole track, serve nothing, answer no offer). With ``--tracks N`` every
peer plays a playlist of N generated tracks, one after the other (churners
leave in a track drawn at random); ``--overlay on|off`` turns the neighbour
overlay (lookups among neighbours before the tracker, docs/wire.md) on or
off for every peer.

Prints one row per peer and the totals; with ``--json``, a last line
``{"peers", "server_bytes", "peer_bytes", "offload", "stalls",
"startup_p50_ms", "startup_p95_ms", "verify_failures", "wall_seconds",
"overlay", "tracks", "tracker_wants", ...}``; ``tracker_wants`` is the number of
``want`` frames the peers sent the tracker (``introduces``: the overlay's
``introduce`` requests; ``next_startup_p50_ms``: start-up of the tracks after
the first).
``offload`` is peer_bytes / (peer_bytes + server_bytes) over audio bytes
(init segments and chunks) as the peers counted them; the same figures from
the gateway's ``/metrics`` (growth of ``ztream_server_bytes_total`` and
``ztream_peer_bytes_total`` over the run) are printed beside them as a
cross-check. The baseline of the same run is the server-only cost: every
peer fetching the whole track from the gateway. ``honest_offload`` is the
offload over the peers that are not liars (a liar takes everything from the
server by its own choice; what matters is what it costs everyone else).

Everything runs on loopback. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import restrict_ice_to_loopback
from peer.clock import VirtualClock
from peer.core import DEFAULT_P2P_SETTINGS
from peer.faults import Faults
from peer.node import PeerNode, PeerOptions, is_loopback_url
from peer.report import PeerReport

__all__ = ["main", "run_swarm", "SwarmResult", "metrics_snapshot"]


def metrics_snapshot(gateway: str) -> dict[str, float]:
    """The gateway's P2P counters: server bytes (all kinds), peer bytes, their live parts, verify failures, stalls."""
    with urllib.request.urlopen(f"{gateway}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {"server_bytes": 0.0, "peer_bytes": 0.0, "live_server_bytes": 0.0, "live_peer_bytes": 0.0,
           "verify_failures": 0.0, "stalls": 0.0}
    names = {
        "ztream_server_bytes_total": "server_bytes",
        "ztream_peer_bytes_total": "peer_bytes",
        "ztream_live_server_bytes_total": "live_server_bytes",
        "ztream_live_peer_bytes_total": "live_peer_bytes",
        "ztream_chunk_verify_failures_total": "verify_failures",
        "ztream_playback_stalls_total": "stalls",
    }
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            out[names[name]] += float(line.rsplit(" ", 1)[1])
    return out


@dataclass
class SwarmResult:
    reports: list[PeerReport]
    roles: list[str]
    wall_seconds: float
    before: dict[str, float] | None
    after: dict[str, float] | None
    track_bytes: int
    overlay: bool = True
    tracks: int = 1

    @property
    def server_bytes(self) -> int:
        return sum(r.http_down_bytes for r in self.reports)

    @property
    def peer_bytes(self) -> int:
        return sum(r.p2p_down_bytes for r in self.reports)

    @property
    def offload(self) -> float:
        total = self.server_bytes + self.peer_bytes
        return self.peer_bytes / total if total else 0.0

    @property
    def honest_offload(self) -> float:
        honest = [r for r, role in zip(self.reports, self.roles) if role != "liar"]
        peer = sum(r.p2p_down_bytes for r in honest)
        total = peer + sum(r.http_down_bytes for r in honest)
        return peer / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        startups = sorted(r.startup_seconds * 1000 for r in self.reports if r.startup_seconds is not None)
        later = sorted(t * 1000 for r in self.reports for t in r.track_startups[1:])

        def pct(q: float, values: list[float] | None = None) -> float | None:
            values = startups if values is None else values
            if not values:
                return None
            return round(values[min(len(values) - 1, int(q * len(values)))], 1)

        out: dict[str, Any] = {
            "peers": len(self.reports),
            "server_bytes": self.server_bytes,
            "peer_bytes": self.peer_bytes,
            "offload": round(self.offload, 4),
            "honest_offload": round(self.honest_offload, 4),
            "liars": self.roles.count("liar"),
            "stalls": sum(r.stalls for r in self.reports),
            "startup_p50_ms": round(statistics.median(startups), 1) if startups else None,
            "startup_p95_ms": pct(0.95),
            "verify_failures": sum(r.verify_failures for r in self.reports),
            "wall_seconds": round(self.wall_seconds, 2),
            "bad_chunks_sent": sum(r.bad_sent for r in self.reports),
            "bad_chunks_discarded": sum(r.discarded for r in self.reports),
            "bad_chunks_lost": sum(r.bad_sent for r in self.reports)
            - sum(r.verify_failures + r.discarded for r in self.reports),
            "bad_chunks_used": sum(r.hash_mismatches for r in self.reports),
            "left_early": sum(1 for r in self.reports if r.left_early),
            "played_to_end": sum(1 for r in self.reports if r.played_to_end),
            "server_only_baseline_bytes": self.track_bytes * len(self.reports),
            "overlay": "on" if self.overlay else "off",
            "tracks": self.tracks,
            "tracker_wants": sum(r.wants for r in self.reports),
            "tracker_wants_at_start": sum(r.wants_at_start for r in self.reports),
            "tracker_wants_dropped": sum(r.wants_dropped for r in self.reports),
            "introduces": sum(r.introduces for r in self.reports),
            "introduced": sum(r.introduced for r in self.reports),
            "lookups": sum(r.lookups for r in self.reports),
            "next_startup_p50_ms": pct(0.5, later),
            "next_startup_p95_ms": pct(0.95, later),
        }
        if self.before is not None and self.after is not None:
            out["metrics_server_bytes"] = int(self.after["server_bytes"] - self.before["server_bytes"])
            out["metrics_peer_bytes"] = int(self.after["peer_bytes"] - self.before["peer_bytes"])
            out["metrics_verify_failures"] = int(self.after["verify_failures"] - self.before["verify_failures"])
            out["metrics_stalls"] = int(self.after["stalls"] - self.before["stalls"])
        return out


def plan_roles(peers: int, churn: float, bad_peers: int, rng: random.Random, liars: int = 0) -> list[str]:
    """Which peers are "bad" (corrupt chunks), "liar"s (claim everything, serve
    nothing), "close"/"vanish" churners, or "ok".

    The first peer is always a good one that stays (it is the swarm's first
    seed); bad peers are spread over the arrivals, then liars over the rest;
    churners are drawn among the remaining ones, alternating between closing
    and vanishing.
    """
    roles = ["ok"] * peers
    if peers > 1 and bad_peers > 0:
        k = min(bad_peers, peers - 1)
        for j in range(k):
            roles[1 + (j * (peers - 1)) // k] = "bad"
    if liars > 0:
        ok = [i for i in range(1, peers) if roles[i] == "ok"]
        k = min(liars, len(ok))
        for j in range(k):
            roles[ok[(j * len(ok)) // k]] = "liar"
    free = [i for i in range(1, peers) if roles[i] == "ok"]
    rng.shuffle(free)
    leaving = free[: round(churn * peers)]
    for n, i in enumerate(sorted(leaving)):
        roles[i] = "close" if n % 2 == 0 else "vanish"
    return roles


async def run_swarm(
    gateway: str,
    track: str | list[str],
    *,
    peers: int = 20,
    arrival: float = 1.0,
    speed: float = 8.0,
    churn: float = 0.0,
    bad_peers: int = 0,
    seed: int = 1,
    timeout: float = 900.0,
    with_metrics: bool = True,
    peer_gateways: Sequence[str] = (),
    overlay: bool = True,
    drop_wants_from: int | None = None,
    liars: int = 0,
) -> SwarmResult:
    """Run one swarm; returns every peer's report (bounded by ``timeout`` real
    seconds). ``track``: one track, or a playlist every peer plays in order.

    ``peer_gateways``: peer i joins ``peer_gateways[i % n]`` instead (the nodes
    of one cluster, bench/cluster.py); metrics still come from ``gateway``.
    """
    rng = random.Random(seed)
    tracks = [track] if isinstance(track, str) else list(track)
    durations: list[float] = []
    track_bytes = 0
    async with aiohttp.ClientSession() as session:
        for t in tracks:
            async with session.get(f"{gateway}/v1/tracks/{t}/manifest") as r:
                r.raise_for_status()
                manifest = await r.json()
            durations.append(sum(c["duration"] for c in manifest["chunks"]))
            track_bytes += manifest["init"]["size"] + sum(c["size"] for c in manifest["chunks"])
    roles = plan_roles(peers, churn, bad_peers, rng, liars)
    p2p = replace(DEFAULT_P2P_SETTINGS, overlay=overlay)
    before = await asyncio.to_thread(metrics_snapshot, gateway) if with_metrics else None
    clock = VirtualClock(speed)
    stop = asyncio.Event()
    nodes: list[PeerNode] = []
    connector = aiohttp.TCPConnector(limit=0)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks: list[asyncio.Task[PeerReport]] = []
        for i, role in enumerate(roles):
            leaving = role in ("close", "vanish")
            leave_track = rng.randrange(len(tracks)) if leaving else 0
            options = PeerOptions(
                speed=speed,
                linger=None,
                name=f"peer{i:02d}",
                faults=Faults(
                    corrupt=role == "bad",
                    leave_at=rng.uniform(0.25, 0.75) * durations[leave_track] if leaving else None,
                    leave_track=leave_track,
                    vanish=role == "vanish",
                    drop_wants_from=drop_wants_from,
                    liar=role == "liar",
                ),
                p2p=p2p,
                playlist=tuple(tracks[1:]),
            )
            entry = peer_gateways[i % len(peer_gateways)] if peer_gateways else gateway
            if is_loopback_url(entry):
                restrict_ice_to_loopback()
            node = PeerNode(entry, tracks[0], clock=clock, options=options, session=session)
            nodes.append(node)
            tasks.append(asyncio.create_task(node.run(stop), name=options.name))
            if i + 1 < len(roles):
                await asyncio.sleep(arrival)
        deadline = time.monotonic() + timeout
        # Done when every peer that stays has played to the end (or failed).
        while time.monotonic() < deadline:
            pending = [
                (n, t) for n, t in zip(nodes, tasks)
                if not t.done() and n.report.tracks_played < len(tracks) and not n.report.left_early
            ]
            if not pending:
                break
            await asyncio.sleep(0.1)
        wall = time.monotonic() - started
        stop.set()
        reports = []
        for node, task in zip(nodes, tasks):
            try:
                reports.append(await asyncio.wait_for(task, 30))
            except Exception as exc:  # a peer that failed still counts what it did
                logging.getLogger("ztream.bench").error("%s failed: %r", node.options.name, exc)
                reports.append(node.report)
    after = None
    if with_metrics:
        await asyncio.sleep(0.3)  # the last stats are in; let the gateway count them
        after = await asyncio.to_thread(metrics_snapshot, gateway)
    return SwarmResult(reports, roles, wall, before, after, track_bytes, overlay, len(tracks))


def print_table(result: SwarmResult) -> None:
    print(f"{'peer':8} {'role':7} {'start ms':>8} {'server KB':>9} {'peer KB':>8} {'up KB':>8} "
          f"{'srv/p2p':>8} {'stalls':>6} {'bad':>4} {'end':>5}")
    for r, role in zip(result.reports, result.roles):
        start = f"{r.startup_seconds * 1000:.0f}" if r.startup_seconds is not None else "-"
        end = "yes" if r.played_to_end else ("left" if r.left_early else "no")
        print(f"{r.name:8} {role:7} {start:>8} {r.http_down_bytes / 1000:9.0f} {r.p2p_down_bytes / 1000:8.0f} "
              f"{r.p2p_up_bytes / 1000:8.0f} {f'{r.chunks_server}/{r.chunks_peer}':>8} {r.stalls:6d} "
              f"{r.verify_failures:4d} {end:>5}")
    s = result.summary()
    print(f"server-only baseline (every peer from the gateway): {s['server_only_baseline_bytes'] / 1e6:.2f} MB")
    print(f"server bytes {s['server_bytes'] / 1e6:.2f} MB   peer bytes {s['peer_bytes'] / 1e6:.2f} MB   "
          f"offload {s['offload'] * 100:.1f}% (goal >= 90%)   "
          f"without the {s['liars']} liars {s['honest_offload'] * 100:.1f}%")
    if "metrics_server_bytes" in s:
        print(f"gateway /metrics: server bytes {s['metrics_server_bytes'] / 1e6:.2f} MB   "
              f"peer bytes {s['metrics_peer_bytes'] / 1e6:.2f} MB   stalls {s['metrics_stalls']}   "
              f"verify failures {s['metrics_verify_failures']}")
    print(f"stalls {s['stalls']} (goal 0)   start-up p50 {s['startup_p50_ms']} ms p95 {s['startup_p95_ms']} ms   "
          f"wall {s['wall_seconds']} s")
    print(f"overlay {s['overlay']}   tracks {s['tracks']}   tracker wants {s['tracker_wants']}   "
          f"introduce {s['introduces']} (introduced {s['introduced']})   lookups {s['lookups']}   "
          f"next-track start-up p50 {s['next_startup_p50_ms']} ms p95 {s['next_startup_p95_ms']} ms")
    print(f"bad chunks sent {s['bad_chunks_sent']}   caught: failed verification {s['verify_failures']}, "
          f"dropped unread after the sender's ban {s['bad_chunks_discarded']}, "
          f"lost with a closed connection {s['bad_chunks_lost']}   used {s['bad_chunks_used']} (goal 0)   "
          f"left early {s['left_early']}   "
          f"played to the end {s['played_to_end']}")


def _make_track(binary: str, path: Path, seconds: int, tone: int = 220) -> None:
    subprocess.run(
        [binary, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
         f"aevalsrc=0.3*sin(2*PI*({tone}+40*sin(t))*t)*(0.6+0.4*sin(2*PI*0.7*t))|0.3*sin(2*PI*330*t):s=44100:d={seconds}",
         "-c:a", "libmp3lame", "-b:a", "160k", str(path)],
        check=True, timeout=300,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench swarm")
    parser.add_argument("--peers", type=int, default=20)
    parser.add_argument("--arrival", type=float, default=1.0, help="real seconds between two arrivals")
    parser.add_argument("--speed", type=float, default=8.0, help="playback speed (audio seconds per real second)")
    parser.add_argument("--churn", type=float, default=0.0, help="share of peers that leave mid-track")
    parser.add_argument("--bad-peers", type=int, default=0, help="peers that send corrupt chunks")
    parser.add_argument("--liars", type=int, default=0, help="peers that claim the whole track and serve nothing")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of each generated track")
    parser.add_argument("--tracks", type=int, default=1, help="tracks in the playlist every peer plays")
    parser.add_argument("--overlay", choices=("on", "off"), default="on",
                        help="ask neighbours before the tracker (on) or the tracker only (off)")
    parser.add_argument("--gateway", help="use this gateway instead of starting one")
    parser.add_argument("--track", help="track id on --gateway (default: its first track)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", action="store_true", help="also print one JSON line, last")
    args = parser.parse_args(argv)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    logging.getLogger("ztream.peer").setLevel(logging.WARNING)

    from bench.harness import UPSTREAM_SERVER, Proc, free_port, get, start_gateway, wait_http, workspace

    with workspace("ztream-swarm-") as (work, procs):
        if args.gateway:
            gateway = args.gateway.rstrip("/")
            listed = [t["id"] for t in json.loads(get(f"{gateway}/v1/tracks"))["tracks"]]
            tracks = [args.track] if args.track else listed[: max(1, args.tracks)]
        else:
            from transcode.ffmpeg import find_ffmpeg

            (work / "files").mkdir()
            names = [f"track{i}.mp3" for i in range(max(1, args.tracks))]
            for i, file in enumerate(names):
                _make_track(find_ffmpeg(""), work / "files" / file, int(args.minutes * 60), tone=220 + 30 * i)
            up_port = free_port()
            procs.append(Proc([sys.executable, "-c", UPSTREAM_SERVER, str(work / "files"), str(up_port)],
                              work / "up.log"))
            wait_http(f"http://127.0.0.1:{up_port}/files/{names[0]}")
            gw, gateway = start_gateway(work, up_port, "gw")
            procs.append(gw)
            tracks = []
            for file in names:
                body = json.dumps({"url": f"http://127.0.0.1:{up_port}/files/{file}"}).encode()
                tracks.append(json.loads(get(gateway + "/v1/tracks", body))["id"])
        deadline = time.monotonic() + 300
        for track in tracks:
            while not json.loads(get(f"{gateway}/v1/tracks/{track}/manifest"))["complete"]:
                if time.monotonic() > deadline:
                    print("ztream bench swarm: the transcode did not finish", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        print(f"swarm: {args.peers} peers, one every {args.arrival} s, speed {args.speed}x, churn {args.churn}, "
              f"bad peers {args.bad_peers}, overlay {args.overlay}, {len(tracks)} track(s) {' '.join(tracks)} "
              f"({args.minutes:g} min each) on {gateway}", flush=True)
        result = asyncio.run(run_swarm(
            gateway, tracks, peers=args.peers, arrival=args.arrival, speed=args.speed, churn=args.churn,
            bad_peers=args.bad_peers, seed=args.seed, timeout=args.timeout, overlay=args.overlay == "on",
            liars=args.liars,
        ))
        print_table(result)
        if args.json:
            print(json.dumps(result.summary()))
        return 0


if __name__ == "__main__":
    sys.exit(main())
