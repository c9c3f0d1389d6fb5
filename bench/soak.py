"""``ztream bench soak --minutes N``: a gateway under mixed load for N minutes.

Starts a loopback upstream and a gateway subprocess (with an admin token),
then for N minutes runs, all at once:

* listeners: HTTP readers that pick a track, read its manifest, then either
  fetch init and a run of chunks (checking every SHA-256 against the
  manifest) or read part of ``/stream``, and leave at a random point (churn);
* headless peers (aiortc, ``peer/``) that play a track at 8x, some leaving
  mid-track, replaced as they end;
* new tracks (a fresh short MP3 registered by URL every ``--new-every`` s),
  purges (``DELETE /v1/admin/tracks/{id}``, the track registered again a
  little later) and reloads (``POST /v1/admin/reload``).

Every ``--interval`` s (10) it samples the gateway process from outside:
RSS and threads (``/proc/<pid>/status``), open fds (``/proc/<pid>/fd``),
ffmpeg children (``/proc/*/stat``), and the running-transcode and
connected-peer gauges from ``/metrics``. asyncio tasks are not sampled: the
gateway has no way to show them without a new endpoint, and a debug
endpoint is not worth its attack surface for a benchmark.

Prints the samples as a table, writes them as a PNG plot (``--plot``; needs
matplotlib, the ``bench`` extra), and prints the goal: RSS and fds grow by at
most 5% between minute 5 and the end (for a run shorter than 10 minutes the
warm-up is half the run, and that is said), with nothing lost: no chunk with
a wrong hash and no unexpected error answer. Figures are printed, never
asserted. Everything runs on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

import aiohttp

__all__ = ["main", "Sample", "growth", "sample_process"]

log = logging.getLogger("ztream.bench.soak")

TOKEN = "soak-admin-token"
GOAL_GROWTH = 0.05
WARMUP_SECONDS = 300.0
# Answers a listener may meet in a soak and that are no fault: a purged track
# (404) or a transcode queue that is full (503 overloaded).
EXPECTED = {"track_not_found", "overloaded", "chunk_not_found"}


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the load started
    rss_mib: float
    fds: int
    threads: int
    ffmpeg: int
    transcodes: float
    peers_ws: float


def _proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def ffmpeg_children(pid: int) -> int:
    """Processes whose parent is ``pid`` and whose name says ffmpeg (imageio's binary included)."""
    count = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and "ffmpeg" in comm:
            count += 1
    return count


def _gauges(metrics: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(("ztream_transcodes_running ", "ztream_peers_connected ")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def sample_process(pid: int, t: float, metrics: str) -> Sample:
    status = _proc_status(pid)
    gauges = _gauges(metrics)
    return Sample(
        t=round(t, 1),
        rss_mib=int(status["VmRSS"].split()[0]) / 1024,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(status["Threads"]),
        ffmpeg=ffmpeg_children(pid),
        transcodes=gauges.get("ztream_transcodes_running", 0.0),
        peers_ws=gauges.get("ztream_peers_connected", 0.0),
    )


def growth(samples: list[Sample], name: str, warmup: float) -> float | None:
    """Relative change of ``name`` from the first sample at or after ``warmup`` to the last."""
    after = [s for s in samples if s.t >= warmup]
    if len(after) < 2:
        return None
    first, last = float(getattr(after[0], name)), float(getattr(after[-1], name))
    return (last - first) / first if first else None


@dataclass
class Activity:
    sessions: int = 0
    chunks: int = 0
    bytes: int = 0
    streams: int = 0
    bad_hashes: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    peers_started: int = 0
    peers_played: int = 0
    peers_failed: int = 0
    tracks_added: int = 0
    purges: int = 0
    purges_refused: int = 0
    reloads: int = 0
    reload_errors: int = 0

    @property
    def unexpected(self) -> int:
        return sum(n for code, n in self.answers.items() if code not in EXPECTED)


class Soak:
    def __init__(self, gateway: str, upstream: str, files: Path, ffmpeg: str, args: argparse.Namespace) -> None:
        self.gateway, self.upstream, self.files, self.ffmpeg, self.args = gateway, upstream, files, ffmpeg, args
        self.rng = random.Random(args.seed)
        self.tracks: dict[str, str] = {}  # track id -> upstream URL (what listeners pick from)
        self.peer_track = ""
        self.activity = Activity()
        self.deadline = 0.0
        self.admin = {"Authorization": f"Bearer {TOKEN}"}

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def register(self, http: aiohttp.ClientSession, name: str) -> str:
        url = f"{self.upstream}/files/{name}"
        async with http.post(f"{self.gateway}/v1/tracks", json={"url": url}) as r:
            r.raise_for_status()
            tid: str = (await r.json())["id"]
        self.tracks[tid] = url
        return tid

    async def listener(self, http: aiohttp.ClientSession, n: int) -> None:
        rng = random.Random(self.args.seed * 1000 + n)
        while self.running():
            if not self.tracks:
                await asyncio.sleep(0.5)
                continue
            tid = rng.choice(sorted(self.tracks))
            self.activity.sessions += 1
            try:
                await self._listen(http, rng, tid)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.activity.answers[f"client:{type(exc).__name__}"] += 1
            await asyncio.sleep(rng.uniform(0.1, 1.0))

    async def _answer(self, r: aiohttp.ClientResponse) -> bool:
        if r.status in (200, 206, 304):
            return True
        try:
            code = (await r.json())["error"]
        except (ValueError, KeyError, aiohttp.ContentTypeError):
            code = f"http:{r.status}"
        self.activity.answers[code] += 1
        return False

    async def _listen(self, http: aiohttp.ClientSession, rng: random.Random, tid: str) -> None:
        base = f"{self.gateway}/v1/tracks/{tid}"
        async with http.get(f"{base}/manifest") as r:
            if not await self._answer(r):
                return
            manifest = await r.json()
        if manifest["complete"] and rng.random() < 0.25:
            async with http.get(f"{base}/stream") as r:
                if await self._answer(r):
                    want = rng.randint(1, 400_000)  # then hang up mid-stream
                    got = 0
                    async for piece in r.content.iter_chunked(65536):
                        got += len(piece)
                        if got >= want:
                            break
                    self.activity.streams += 1
                    self.activity.bytes += got
            return
        async with http.get(f"{base}/init") as r:
            if not await self._answer(r):
                return
            init = await r.read()
        if manifest["init"] and hashlib.sha256(init).hexdigest() != manifest["init"]["sha256"]:
            self.activity.bad_hashes += 1
        chunks = manifest["chunks"]
        if not chunks:
            return
        start = rng.randrange(len(chunks))
        for c in chunks[start : start + rng.randint(1, len(chunks))]:
            async with http.get(f"{base}/chunks/{c['index']}") as r:
                if not await self._answer(r):
                    return
                data = await r.read()
            self.activity.chunks += 1
            self.activity.bytes += len(data)
            if hashlib.sha256(data).hexdigest() != c["sha256"]:
                self.activity.bad_hashes += 1
            await asyncio.sleep(rng.uniform(0.0, 0.1))

    async def peer_slot(self, session: aiohttp.ClientSession, n: int) -> None:
        from bench.harness import restrict_ice_to_loopback
        from peer.clock import VirtualClock
        from peer.faults import Faults
        from peer.node import PeerNode, PeerOptions, is_loopback_url

        if is_loopback_url(self.gateway):
            restrict_ice_to_loopback()
        rng = random.Random(self.args.seed * 7919 + n)
        while self.running():
            leave = rng.random() < 0.3
            linger = rng.uniform(1.0, 5.0)  # drawn first, as ever: the same seed, the same run
            faults = Faults(leave_at=rng.uniform(5.0, 40.0) if leave else None, vanish=leave and rng.random() < 0.5)
            options = PeerOptions(speed=8.0, linger=linger, name=f"soak{n}", faults=faults)
            node = PeerNode(self.gateway, self.peer_track, clock=VirtualClock(8.0), options=options, session=session)
            self.activity.peers_started += 1
            stop = asyncio.Event()
            task = asyncio.create_task(node.run(stop))
            try:
                while not task.done() and self.running():
                    await asyncio.sleep(0.2)
                stop.set()
                report = await asyncio.wait_for(task, 30)
                self.activity.peers_played += int(report.played_to_end)
            except Exception as exc:  # a failed peer is counted, the soak goes on
                self.activity.peers_failed += 1
                log.warning("peer %s failed: %r", options.name, exc)
            await asyncio.sleep(rng.uniform(0.5, 2.0))

    async def churn_tracks(self, http: aiohttp.ClientSession) -> None:
        """New tracks, purges (registered again later) and reloads, on their own clocks."""
        loop = asyncio.get_running_loop()
        next_new = next_purge = next_reload = loop.time()
        next_purge += self.args.purge_every
        next_reload += self.args.reload_every
        again: list[tuple[float, str]] = []
        made = 0
        while self.running():
            now = loop.time()
            if now >= next_new:
                next_new = now + self.args.new_every
                made += 1
                name = f"new{made:04d}.mp3"
                await asyncio.to_thread(make_track, self.ffmpeg, self.files / name, 10, 200 + 37 * made % 600)
                await self.register(http, name)
                self.activity.tracks_added += 1
            if now >= next_purge:
                next_purge = now + self.args.purge_every
                candidates = sorted(t for t in self.tracks if t != self.peer_track)
                if candidates:
                    tid = self.rng.choice(candidates)
                    async with http.delete(f"{self.gateway}/v1/admin/tracks/{tid}", headers=self.admin) as r:
                        if r.status == 200:
                            self.activity.purges += 1
                            again.append((now + 5.0, self.tracks.pop(tid)))
                        else:
                            self.activity.purges_refused += 1  # 409 while it is being transcoded
            if now >= next_reload:
                next_reload = now + self.args.reload_every
                async with http.post(f"{self.gateway}/v1/admin/reload", headers=self.admin) as r:
                    if r.status == 200:
                        self.activity.reloads += 1
                    else:
                        self.activity.reload_errors += 1
            for item in [a for a in again if a[0] <= now]:
                again.remove(item)
                await self.register(http, item[1].rsplit("/", 1)[1])
            await asyncio.sleep(0.5)

    async def sampler(self, http: aiohttp.ClientSession, pid: int, started: float, samples: list[Sample]) -> None:
        while True:
            async with http.get(f"{self.gateway}/metrics") as r:
                text = await r.text()
            s = sample_process(pid, time.monotonic() - started, text)
            samples.append(s)
            print(row(s), flush=True)
            if not self.running():
                return
            await asyncio.sleep(min(self.args.interval, max(self.deadline - time.monotonic(), 0.0)) or 0.01)

    async def run(self, pid: int, base_names: list[str]) -> list[Sample]:
        timeout = aiohttp.ClientTimeout(total=60)
        samples: list[Sample] = []
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
            ids = [await self.register(http, name) for name in base_names]
            self.peer_track = ids[0]
            for tid in ids:  # transcode the base library first: the soak measures serving, not start-up
                await self._complete(http, tid)
            started = time.monotonic()
            self.deadline = started + self.args.minutes * 60
            print(header(), flush=True)
            tasks = [asyncio.create_task(self.listener(http, n)) for n in range(self.args.listeners)]
            tasks += [asyncio.create_task(self.peer_slot(http, n)) for n in range(self.args.peers)]
            tasks.append(asyncio.create_task(self.churn_tracks(http)))
            await self.sampler(http, pid, started, samples)
            done, pending = await asyncio.wait(tasks, timeout=60)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    log.error("soak task failed: %r", task.exception())
        return samples

    async def _complete(self, http: aiohttp.ClientSession, tid: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            async with http.get(f"{self.gateway}/v1/tracks/{tid}/manifest") as r:
                if r.status == 200 and (await r.json())["complete"]:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"track {tid} did not finish transcoding")


COLUMNS = [("min", 6), ("rss MiB", 8), ("fds", 5), ("threads", 8), ("ffmpeg", 7), ("transc", 7), ("peers", 6)]


def header() -> str:
    return " ".join(f"{name:>{width}}" for name, width in COLUMNS)


def row(s: Sample) -> str:
    values = [f"{s.t / 60:.2f}", f"{s.rss_mib:.1f}", str(s.fds), str(s.threads), str(s.ffmpeg),
              f"{s.transcodes:g}", f"{s.peers_ws:g}"]
    return " ".join(f"{v:>{width}}" for v, (_, width) in zip(values, COLUMNS))


def plot(samples: list[Sample], path: Path, warmup: float) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [("rss_mib", "RSS (MiB)"), ("fds", "open fds"), ("threads", "threads"), ("ffmpeg", "ffmpeg processes")]
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 9), sharex=True)
    minutes = [s.t / 60 for s in samples]
    for ax, (name, label) in zip(axes, names):
        ax.plot(minutes, [getattr(s, name) for s in samples], marker=".")
        ax.set_ylabel(label)
        ax.axvline(warmup / 60, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes (dotted: end of warm-up)")
    fig.suptitle("ztream bench soak: gateway process, sampled from outside")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def make_track(ffmpeg: str, path: Path, seconds: int, freq: int) -> None:
    subprocess.run(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
         f"aevalsrc=0.3*sin(2*PI*{freq}*t)*(0.6+0.4*sin(2*PI*0.7*t))|0.3*sin(2*PI*{freq * 3 // 2}*t)"
         f":s=44100:d={seconds}", "-c:a", "libmp3lame", "-b:a", "128k", str(path)],
        check=True, timeout=120,
    )


def report(samples: list[Sample], activity: Activity, minutes: float, plot_path: Path | None) -> None:
    warmup = WARMUP_SECONDS if minutes >= 10 else minutes * 60 / 2
    print()
    print(f"listeners: {activity.sessions} sessions, {activity.chunks} chunks and {activity.streams} partial "
          f"streams, {activity.bytes / 1e6:.1f} MB; chunks with a wrong hash: {activity.bad_hashes}")
    print(f"peers: {activity.peers_started} started, {activity.peers_played} played to the end, "
          f"{activity.peers_failed} failed")
    print(f"tracks added {activity.tracks_added}, purged {activity.purges} (refused while transcoding "
          f"{activity.purges_refused}), reloads {activity.reloads} (failed {activity.reload_errors})")
    answers = ", ".join(f"{code} x{n}" for code, n in sorted(activity.answers.items())) or "none"
    print(f"error answers met: {answers}")
    if warmup != WARMUP_SECONDS:
        print(f"(a {minutes:g}-minute run: the warm-up is the first {warmup / 60:g} minutes, not 5)")
    verdicts = []
    for name in ("rss_mib", "fds", "threads"):
        g = growth(samples, name, warmup)
        verdicts.append(g is not None and g <= GOAL_GROWTH)
        shown = "n/a (too few samples)" if g is None else f"{g * 100:+.1f}%"
        print(f"growth of {name} from minute {warmup / 60:g} to the end: {shown} (goal <= +5%)")
    lost = activity.bad_hashes + activity.unexpected
    print(f"nothing lost: {'yes' if lost == 0 else f'no ({activity.bad_hashes} bad hashes, {activity.unexpected} unexpected answers)'}")
    print(f"ffmpeg processes left at the end: {samples[-1].ffmpeg if samples else 'n/a'}")
    print(f"goal (flat after warm-up, nothing lost): {'met' if all(verdicts) and lost == 0 else 'NOT met'}")
    print("asyncio tasks: not sampled (no way to read them from outside without a new endpoint)")
    if plot_path is not None:
        if plot(samples, plot_path, warmup):
            print(f"plot: {plot_path}")
        else:
            print("plot: skipped, matplotlib is not installed (pip install -e '.[bench]')")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench soak")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (bounded: at most 1440)")
    parser.add_argument("--listeners", type=int, default=20, help="HTTP readers at once")
    parser.add_argument("--peers", type=int, default=4, help="headless aiortc peers at once")
    parser.add_argument("--tracks", type=int, default=4, help="tracks in the starting library")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--new-every", type=float, default=20.0, help="seconds between new tracks")
    parser.add_argument("--purge-every", type=float, default=30.0, help="seconds between purges")
    parser.add_argument("--reload-every", type=float, default=45.0, help="seconds between reloads")
    parser.add_argument("--plot", default="soak.png", help="PNG to write ('' for none)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the samples as one JSON line, last")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 1440:
        parser.error("--minutes must be within (0, 1440]")
    for name in ("aioice", "aiortc", "ztream.peer", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from bench.harness import UPSTREAM_SERVER, Proc, free_port, wait_http, workspace
    from transcode.ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg("")
    with workspace("ztream-soak-") as (work, procs):
        files = work / "files"
        files.mkdir()
        names = []
        for i in range(max(args.tracks, 1)):
            names.append(f"base{i}.mp3")
            make_track(ffmpeg, files / names[-1], 60 if i == 0 else 30, 220 + 55 * i)
        up_port = free_port()
        procs.append(Proc([sys.executable, "-c", UPSTREAM_SERVER, str(files), str(up_port)], work / "up.log"))
        upstream = f"http://127.0.0.1:{up_port}"
        wait_http(f"{upstream}/files/{names[0]}")
        port = free_port()
        config = work / "gw.toml"
        config.write_text(
            f'[server]\nport = {port}\n[cache]\ndir = "{work / "cache"}"\nmax_bytes = 300000000\n'
            f'[sources.url]\nallow_hosts = ["127.0.0.1:{up_port}"]\nmax_bytes = 50000000\n'
            f'[admin]\ntoken = "{TOKEN}"\n'
        )
        gw = Proc([sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)], work / "gw.log")
        procs.append(gw)
        gateway = f"http://127.0.0.1:{port}"
        wait_http(f"{gateway}/healthz")
        print(f"soak: {args.minutes:g} min, {args.listeners} listeners, {args.peers} peers, a new track every "
              f"{args.new_every:g} s, a purge every {args.purge_every:g} s, a reload every {args.reload_every:g} s, "
              f"samples every {args.interval:g} s; gateway pid {gw.p.pid} on {gateway}", flush=True)
        soak = Soak(gateway, upstream, files, ffmpeg, args)
        samples = asyncio.run(soak.run(gw.p.pid, names))
        report(samples, soak.activity, args.minutes, Path(args.plot) if args.plot else None)
        if args.json:
            print(json.dumps([{f.name: getattr(s, f.name) for f in fields(Sample)} for s in samples]))
        return 0


if __name__ == "__main__":
    sys.exit(main())
