"""``ztream bench live``: headless listeners at the live edge of a real Icecast station.

Starts Debian's ``icecast2`` (``bench/icecast.py``) fed in real time by an
``ffmpeg -re`` source (``--codec mp3|opus|aac``), a gateway subprocess that
may fetch from it, registers the mount's URL (a live track: docs/live.md),
then starts ``--peers`` headless peers (``peer/``: the live-edge rules of
``peer/live.py``, the browser's twin) in this process, one every
``--arrival`` seconds, each listening ``--seconds`` real seconds. With
``--pause-at T`` the source is stopped (SIGSTOP: the mount stays, silent) T
seconds after the first listener arrived, for ``--pause`` seconds; with
``--restart-at T`` it is ended (the mount disappears) and a new source
starts on the same mount ``--restart-gap`` seconds later.

Printed, per listener and in total (and with ``--json`` as one last JSON line):

- ``latency_p50``/``latency_p95`` (s): from the moment a chunk's first sample
  reached the gateway from the upstream (the manifest's ``wall``) to its
  playback, sampled twice a second while playing; also split by where the
  chunk playing came from (``..._server``, ``..._peer``). The gateway and the
  listeners share one clock here, so nothing is corrected. What the upstream
  and Icecast add before the gateway (Icecast's burst, ffmpeg's cut) is
  upstream of ``wall`` and not in it.
- ``offload``: peer bytes / (peer + server bytes) of audio as the listeners
  counted them, with the gateway's own ``/metrics`` growth beside it
  (``ztream_live_server_bytes_total`` against ``ztream_live_peer_bytes_total``);
- ``http_fetches_per_chunk``: chunk requests the listeners made of the
  server, per chunk the station produced while they listened (the elected
  fetcher rule aims at about n / (d + 1) for n listeners of d neighbours);
- stalls, stalled seconds, start-up p50/p95, jumps back to the edge;
- for each pause or restart, ``recovery_p50``/``recovery_max``: seconds from
  the source's return (SIGCONT, or the new mount answering) until a listener
  plays audio that reached the gateway after it.

Everything runs on loopback; figures are printed, never asserted (the system
test ``tests/system/test_live_peers.py`` asserts a small run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import GatewayProcess, restrict_ice_to_loopback, workspace
from bench.icecast import CODECS, Icecast, IcecastSource, start_icecast
from bench.swarm import metrics_snapshot
from peer.node import PeerNode, PeerOptions
from peer.report import PeerReport

__all__ = ["LiveResult", "main", "run_live", "start_station"]

MOUNT = "live"


@dataclass
class Event:
    kind: str  # "pause" or "restart"
    at: float  # UNIX time the source went away
    back: float = 0.0  # UNIX time it returned


@dataclass
class LiveResult:
    reports: list[PeerReport]
    wall_seconds: float
    chunks_produced: int
    events: list[Event] = field(default_factory=list)
    before: dict[str, float] | None = None
    after: dict[str, float] | None = None
    states: list[str] = field(default_factory=list)  # the manifest's state, as polled

    def summary(self) -> dict[str, Any]:
        rs = self.reports
        server = sum(r.http_down_bytes for r in rs)
        peer = sum(r.p2p_down_bytes for r in rs)
        samples = [s for r in rs for s in r.live_samples]
        startups = sorted(r.startup_seconds for r in rs if r.startup_seconds is not None)
        out: dict[str, Any] = {
            "peers": len(rs),
            "wall_seconds": round(self.wall_seconds, 1),
            "server_bytes": server,
            "peer_bytes": peer,
            "offload": round(peer / (peer + server), 4) if peer + server else 0.0,
            "chunks_produced": self.chunks_produced,
            "http_chunk_fetches": sum(r.chunks_server for r in rs),
            "http_fetches_per_chunk": round(sum(r.chunks_server for r in rs) / self.chunks_produced, 2)
            if self.chunks_produced else None,
            "peer_chunk_fetches": sum(r.chunks_peer for r in rs),
            "latency_p50": _pct([s[1] for s in samples], 50),
            "latency_p95": _pct([s[1] for s in samples], 95),
            "latency_p95_server": _pct([s[1] for s in samples if s[2] == "server"], 95),
            "latency_p95_peer": _pct([s[1] for s in samples if s[2] == "peer"], 95),
            "latency_samples": len(samples),
            "stalls": sum(r.stalls for r in rs),
            "stalled_seconds": round(sum(r.stalled_seconds for r in rs), 2),
            "startup_p50_ms": _ms(_pct(startups, 50)),
            "startup_p95_ms": _ms(_pct(startups, 95)),
            "jumps": sum(r.live_jumps for r in rs),
            "skipped": sum(r.live_skipped for r in rs),
            "verify_failures": sum(r.verify_failures for r in rs),
            "hash_mismatches": sum(r.hash_mismatches for r in rs),
            "never_started": sum(1 for r in rs if r.startup_seconds is None),
            # live polls: deltas (manifest?after=N) after each listener's first, whole, read
            "manifest_bytes_per_read": round(sum(r.manifest_bytes for r in rs) / reads)
            if (reads := sum(r.manifest_reads for r in rs)) else None,
        }
        if self.before is not None and self.after is not None:
            grown = {k: self.after.get(k, 0.0) - self.before.get(k, 0.0) for k in self.after}
            srv, p2p = grown.get("server", 0.0), grown.get("peer", 0.0)
            out["metrics_offload"] = round(p2p / (p2p + srv), 4) if p2p + srv else 0.0
        for n, event in enumerate(self.events):
            recoveries = [t for r in rs if (t := recovery(r, event.back)) is not None]
            out[f"{event.kind}{n}_recovery_p50"] = _pct(recoveries, 50)
            out[f"{event.kind}{n}_recovery_max"] = round(max(recoveries), 2) if recoveries else None
            out[f"{event.kind}{n}_recovered"] = f"{len(recoveries)}/{len(rs)}"
        return out


def recovery(report: PeerReport, back: float) -> float | None:
    """Seconds from ``back`` until the listener played audio that reached the gateway
    after ``back`` (None: it never did while it listened)."""
    for t, latency, _source in report.live_samples:
        if t - latency >= back:
            return round(t - back, 2)
    return None


def _pct(values: Sequence[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))], 3)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def start_station(work: Path, codec: str, seconds: float) -> tuple[Icecast, IcecastSource]:
    """Icecast with one source on ``/live``, bounded by ``seconds``."""
    ice = start_icecast(work / "icecast")
    try:
        source = ice.source(MOUNT, codec=codec, seconds=seconds)
    except BaseException:
        ice.close()
        raise
    return ice, source


def register(gateway: str, url: str) -> str:
    request = urllib.request.Request(f"{gateway}/v1/tracks", data=json.dumps({"url": url}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        track = json.loads(r.read())
    if not track.get("live"):
        raise RuntimeError(f"the station did not register as a live track: {track}")
    return str(track["id"])


def wait_chunks(gateway: str, track: str, n: int = 4, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{gateway}/v1/tracks/{track}/manifest", timeout=10) as r:
            manifest: dict[str, Any] = json.loads(r.read())
        if len(manifest["chunks"]) >= n:
            return manifest
        if time.monotonic() > deadline:
            raise RuntimeError(f"the live window has {len(manifest['chunks'])} chunks after {timeout:.0f} s")
        time.sleep(0.3)


async def run_live(
    gateway: str,
    track: str,
    *,
    peers: int = 20,
    arrival: float = 0.5,
    seconds: float = 60.0,
    ice: Icecast | None = None,
    source: IcecastSource | None = None,
    codec: str = "mp3",
    pause_at: float | None = None,
    pause: float = 5.0,
    restart_at: float | None = None,
    restart_gap: float = 2.0,
    with_metrics: bool = True,
) -> LiveResult:
    """Run the listeners; returns their reports and the run's figures."""
    restrict_ice_to_loopback()
    before = await asyncio.to_thread(_metrics, gateway) if with_metrics else None
    produced: dict[int, float] = {}  # chunk index -> wall, every chunk the station produced while listened to
    states: list[str] = []
    events: list[Event] = []
    started = time.time()
    stop_polling = asyncio.Event()

    async def poll(session: aiohttp.ClientSession) -> None:
        while not stop_polling.is_set():
            try:
                async with session.get(f"{gateway}/v1/tracks/{track}/manifest") as r:
                    m = await r.json()
                for c in m["chunks"]:
                    produced[int(c["index"])] = float(c["wall"])
                if not states or states[-1] != m["state"]:
                    states.append(m["state"])
            except (aiohttp.ClientError, ValueError, KeyError, TimeoutError):
                pass
            try:
                await asyncio.wait_for(stop_polling.wait(), 2.0)
            except TimeoutError:
                pass

    async def pause_source() -> None:
        assert pause_at is not None and source is not None
        await asyncio.sleep(pause_at)
        event = Event("pause", time.time())
        source.pause()
        await asyncio.sleep(pause)
        source.resume()
        event.back = time.time()
        events.append(event)

    async def restart_source() -> None:
        assert restart_at is not None and source is not None and ice is not None
        await asyncio.sleep(restart_at)
        event = Event("restart", time.time())
        await asyncio.to_thread(source.stop)
        await asyncio.sleep(restart_gap)
        await asyncio.to_thread(ice.source, MOUNT, codec=codec, seconds=seconds + 120, wait=False)
        await asyncio.to_thread(ice.wait_mount, MOUNT)
        event.back = time.time()
        events.append(event)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        side: list[asyncio.Task[Any]] = [asyncio.create_task(poll(session))]
        if pause_at is not None:
            side.append(asyncio.create_task(pause_source()))
        if restart_at is not None:
            side.append(asyncio.create_task(restart_source()))
        nodes: list[PeerNode] = []
        tasks: list[asyncio.Task[PeerReport]] = []
        own: list[aiohttp.ClientSession] = []
        for i in range(peers):
            # Each listener from an address of its own, as listeners are: the gateway's per-client
            # caps (64 sockets an address) and the tracker's address groups see what they would.
            own.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(listener_address(i), 0))))
            node = PeerNode(gateway, track, options=PeerOptions(name=f"peer{i:03d}", live_seconds=seconds, linger=0.0),
                            session=own[-1])
            nodes.append(node)
            tasks.append(asyncio.create_task(node.run(), name=node.options.name))
            if i + 1 < peers:
                await asyncio.sleep(arrival)
        reports: list[PeerReport] = []
        for node, task in zip(nodes, tasks):
            try:
                reports.append(await asyncio.wait_for(task, seconds + 60))
            except Exception as exc:  # a listener that failed still counts what it did
                logging.getLogger("ztream.bench").error("%s failed: %r", node.options.name, exc)
                reports.append(node.report)
        for own_session in own:
            await own_session.close()
        for task in side[1:]:
            if not task.done():
                task.cancel()
        stop_polling.set()
        await asyncio.gather(*side, return_exceptions=True)
    ended = time.time()
    after = None
    if with_metrics:
        await asyncio.sleep(0.3)  # the last reports are in
        after = await asyncio.to_thread(_metrics, gateway)
    # The chunks that reached the gateway while someone listened.
    chunks = sum(1 for wall in produced.values() if started <= wall <= ended)
    return LiveResult(reports, ended - started, chunks, events, before, after, states)


def listener_address(i: int) -> str:
    """Listener ``i``'s loopback address: 127.0.2.1, 127.0.2.2, ... (250 an octet)."""
    return f"127.0.{2 + i // 250}.{1 + i % 250}"


def _metrics(gateway: str) -> dict[str, float]:
    snap = metrics_snapshot(gateway)
    return {"server": snap["live_server_bytes"], "peer": snap["live_peer_bytes"]}


def print_table(result: LiveResult) -> None:
    print(f"{'peer':8} {'start ms':>8} {'server KB':>9} {'peer KB':>8} {'up KB':>7} {'srv/p2p':>8} "
          f"{'lat p50':>7} {'lat p95':>7} {'stalls':>6} {'jumps':>5}")
    for r in result.reports:
        lat = [s[1] for s in r.live_samples]
        start = "-" if r.startup_seconds is None else f"{r.startup_seconds * 1000:.0f}"
        print(f"{r.name:8} {start:>8} {r.http_down_bytes / 1000:9.1f} {r.p2p_down_bytes / 1000:8.1f} "
              f"{r.p2p_up_bytes / 1000:7.1f} {f'{r.chunks_server}/{r.chunks_peer}':>8} "
              f"{_fmt(_pct(lat, 50)):>7} {_fmt(_pct(lat, 95)):>7} {r.stalls:6d} {r.live_jumps:5d}")
    s = result.summary()
    print(f"offload {s['offload']:.1%} (gateway metrics: {s.get('metrics_offload', 0):.1%}); "
          f"HTTP chunk fetches {s['http_chunk_fetches']} for {s['chunks_produced']} chunks produced: "
          f"{s['http_fetches_per_chunk']} per chunk")
    print(f"latency p50 {_fmt(s['latency_p50'])} s, p95 {_fmt(s['latency_p95'])} s "
          f"(chunks from the server: p95 {_fmt(s['latency_p95_server'])} s; from peers: "
          f"p95 {_fmt(s['latency_p95_peer'])} s; {s['latency_samples']} samples); "
          f"stalls {s['stalls']} ({s['stalled_seconds']} s); start-up p50 {s['startup_p50_ms']} ms, "
          f"p95 {s['startup_p95_ms']} ms; jumps {s['jumps']}; verify failures {s['verify_failures']}")
    for n, event in enumerate(result.events):
        key = f"{event.kind}{n}"
        print(f"{event.kind} at +{event.at - result.events[0].at if n else 0:.0f} s "
              f"({event.back - event.at:.1f} s without a source): back at the edge after "
              f"p50 {_fmt(s[key + '_recovery_p50'])} s, max {_fmt(s[key + '_recovery_max'])} s "
              f"({s[key + '_recovered']} listeners)")
    if result.states:
        print("station states seen: " + " -> ".join(result.states))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench live")
    parser.add_argument("--peers", type=int, default=20)
    parser.add_argument("--arrival", type=float, default=0.5, help="real seconds between two arrivals")
    parser.add_argument("--seconds", type=float, default=60.0, help="real seconds each listener listens")
    parser.add_argument("--codec", choices=sorted(CODECS), default="mp3", help="the Icecast source's codec")
    parser.add_argument("--pause-at", type=float, help="pause the source (SIGSTOP) this long after the first arrival")
    parser.add_argument("--pause", type=float, default=5.0, help="seconds the source stays paused")
    parser.add_argument("--restart-at", type=float, help="end the source this long after the first arrival, "
                        "and start a new one on the same mount")
    parser.add_argument("--restart-gap", type=float, default=2.0, help="seconds without a source at a restart")
    parser.add_argument("--json", action="store_true", help="also print one JSON line, last")
    args = parser.parse_args(argv)
    for name in ("aioice", "aiortc", "ztream.peer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    total = args.seconds + args.peers * args.arrival + 120
    with workspace("ztream-live-") as (work, _procs):
        ice, source = start_station(work, args.codec, total)
        gw = GatewayProcess(Path(tempfile.mkdtemp(dir=work)), None,
                            {"sources.url": {"allow_hosts": [f"127.0.0.1:{ice.port}"]}})
        try:
            gw.start()
            track = register(gw.url, ice.url(MOUNT))
            wait_chunks(gw.url, track)
            print(f"live: {args.peers} listeners, one every {args.arrival} s, {args.seconds:g} s each, "
                  f"an Icecast {args.codec} source on {gw.url} (track {track})", flush=True)
            result = asyncio.run(run_live(
                gw.url, track, peers=args.peers, arrival=args.arrival, seconds=args.seconds, ice=ice,
                source=source, codec=args.codec, pause_at=args.pause_at, pause=args.pause,
                restart_at=args.restart_at, restart_gap=args.restart_gap,
            ))
        finally:
            gw.stop()
            ice.close()
        print_table(result)
        if args.json:
            print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
