"""``ztream bench cluster``: three nodes and Redis (and nginx) on loopback, figures printed.

Starts a redis-server, a loopback upstream with a generated track and three
gateway nodes sharing that Redis, then prints, each against a baseline from
the same run:

1. **offload**: a swarm of headless peers (bench/swarm.py) on one node alone
   vs the same swarm spread over the three nodes (goal: within 2 points);
2. **signal relay**: p50/p99 of a ``signal`` from one peer to another, both
   on one node vs on two nodes (through Redis pub/sub);
3. **the edge** (bench/edge.py): a cached chunk through the shipped
   deploy/nginx/ztream.conf vs nginx serving the same bytes as a static file,
   requests/s and nginx's CPU per request (goal >= 0.8x), and the requests a
   cold chunk asked for by 30 listeners at once makes to the nodes (goal 1);
4. **workers**: cached chunk requests/s of ``ztream serve --workers 2`` vs
   one process (``wrk``; goal >= 1.7x on 2 cores).

Also the helpers the cluster tests use: ``RedisServer``, ``RedisSetup``
(one server or a 3-master Redis Cluster) and ``NginxEdge`` (the shipped
nginx config pointed at loopback nodes). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.edge import static_locations
from bench.harness import TICK, cpu_seconds, free_port, terminate, tree_pids, wrk_measured

__all__ = ["RedisServer", "RedisSetup", "NginxEdge", "main"]

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHIPPED_CONF = ROOT / "deploy" / "nginx" / "ztream.conf"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (Redis wants the port <= 55535)."""
    import random

    for _ in range(200):
        port = random.randint(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisServer:
    """One ``redis-server`` on a loopback port, nothing saved to disk.

    ``command_prefix`` and ``ping`` are how it is launched and probed: the
    browser cluster test runs it in a network namespace (tests/system/cluster/test_browsers.py).
    """

    command_prefix: list[str] = []

    def __init__(self, directory: Path, port: int | None = None, *, cluster: bool = False) -> None:
        self.port = port if port is not None else (cluster_port() if cluster else free_port())
        self.dir = directory / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--protected-mode", "no", "--loglevel", "warning"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
                     "--cluster-node-timeout", "2000"]
        with (self.dir / "redis.log").open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen([*self.command_prefix, *args], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.ping():
                    return
            except redis.RedisError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server on {self.port} did not start")

    def ping(self) -> bool:
        import redis

        return bool(redis.Redis(port=self.port, socket_timeout=1).ping())

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None


class RedisSetup:
    """Either one server or three cluster masters (``redis-cli --cluster create``); ``url`` names the first."""

    def __init__(self, directory: Path, *, cluster: bool) -> None:
        self.servers = [RedisServer(directory, cluster=cluster) for _ in range(3 if cluster else 1)]
        self.cluster = cluster

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()  # no server left running when one of them failed
            raise

    def _start(self) -> None:
        import redis

        for s in self.servers:
            s.start()
        if not self.cluster:
            return
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            infos: list[Any] = [redis.Redis(port=s.port).cluster("info") for s in self.servers]
            if all(info.get("cluster_state") == "ok" for info in infos):
                return
            time.sleep(0.1)
        raise RuntimeError("the redis cluster did not become ok")

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


class NginxEdge:
    """The shipped deploy/nginx/ztream.conf, its EDIT lines pointed at loopback nodes and a scratch cache.

    ``static`` adds a location serving that directory as plain files (the
    benchmark's baseline: nginx at its fastest on the same bytes).
    """

    def __init__(self, directory: Path, node_ports: list[int], port: int | None = None,
                 *, static: Path | None = None, workers: int = 1, access_log: bool = True) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = directory / f"nginx-{self.port}"
        self.dir.mkdir(parents=True)
        servers = "".join(f"    server 127.0.0.1:{p};\n" for p in node_ports)
        lines = []
        for line in SHIPPED_CONF.read_text().splitlines(keepends=True):
            if "EDIT: one line per node" in line:
                lines.append(servers)
            elif line.strip().startswith("listen ") and "EDIT" in line:
                lines.append(f"    listen 127.0.0.1:{self.port};\n")
                if static is not None:
                    lines.append(static_locations(static))
            else:
                lines.append(line.replace("/var/cache/nginx/ztream", str(self.dir / "cache")))
        (self.dir / "ztream.conf").write_text("".join(lines))
        user = "user root root;\n" if os.geteuid() == 0 else ""
        d = self.dir
        # With access_log off, only the requests nginx passed to a node are logged
        # (bench/edge.py counts them), so the log costs the measured hits nothing.
        log = (f"access_log {d}/access.log;" if access_log
               else f"access_log {d}/upstream.log ztream_edge if=$ztream_upstream_used;")
        (d / "nginx.conf").write_text(
            f"{user}worker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            # Debian's stock http block: sendfile, tcp_nopush; the shipped config goes inside it.
            "http {\n sendfile on;\n tcp_nopush on;\n"
            ' log_format ztream_edge "$uri $status $upstream_cache_status $upstream_addr";\n'
            " map $upstream_addr $ztream_upstream_used { '' 0; default 1; }\n"
            f" {log}\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n"
            f" fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n"
            f" include {d}/ztream.conf;\n}}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        conf = str(self.dir / "nginx.conf")
        check = subprocess.run([NGINX, "-t", "-p", str(self.dir), "-c", conf], capture_output=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t: {check.stderr.decode()}")
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", conf, "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


# -- the benchmark -------------------------------------------------------------------------


def _wrk(url: str, seconds: int, conns: int, threads: int = 2) -> float:
    return wrk_measured(url, seconds, conns, threads)[0]


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat: other load shows here."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def _worker_share(redis_url: str) -> dict[str, float]:
    """Chunk bytes each node (worker) served, from its own /metrics at its private node_url."""
    import redis

    from bench.harness import get

    shares = {}
    client: Any = redis.Redis.from_url(redis_url)
    for node, raw in client.hgetall("ztream:nodes").items():
        entry = json.loads(raw)
        if time.time() - float(entry.get("seen", 0)) > 5:  # a node stopped earlier in this run
            continue
        try:
            text = get(entry["url"] + "/metrics").decode()
        except OSError:
            continue
        shares[node.decode()] = sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                                    if line.startswith('ztream_server_bytes_total{kind="chunk"'))
    return shares


def _redis_commands(redis_url: str) -> int:
    """Commands Redis has processed so far: heartbeats only, unless something sits on the chunk path."""
    import redis

    client: Any = redis.Redis.from_url(redis_url)
    return int(client.info("stats")["total_commands_processed"])


def measure_workers(work: Path, up_port: int, track_url: str, redis_url: str,
                    seconds: int, conns: int, threads: int) -> dict[int, dict[str, Any]]:
    """Cached chunk requests/s of one process and of ``--workers 2``, with where the CPU went."""
    from bench.harness import get

    results: dict[int, dict[str, Any]] = {}
    for workers in (1, 2):
        extra = ("--workers", str(workers)) if workers > 1 else ()
        proc, url, _ = _node(work, f"w{workers}", up_port, redis_url, *extra)
        try:
            time.sleep(2.2)
            track = _register(url, track_url)
            index = min(5, len(_complete(url, track)["chunks"]) - 1)
            chunk_url = f"{url}/v1/tracks/{track}/chunks/{index}"
            for _ in range(8):  # every worker has it cached (pulled once, then local)
                get(chunk_url)
            _wrk(chunk_url, 2, conns, threads)  # warm-up
            pids = tree_pids(proc.p.pid)
            shares_before = _worker_share(redis_url)
            gw_before, (busy_before, total_before) = cpu_seconds(pids), _machine_busy()
            redis_before = _redis_commands(redis_url)
            rps, wrk_cpu = wrk_measured(chunk_url, seconds, conns, threads)
            redis_per_s = (_redis_commands(redis_url) - redis_before) / seconds
            gw_cpu = cpu_seconds(pids) - gw_before
            busy_after, total_after = _machine_busy()
            shares = {k: v - shares_before.get(k, 0.0) for k, v in _worker_share(redis_url).items()}
            # Our own counter is one of these; the rest is other processes (here: the other helpers' load).
            results[workers] = {
                "rps": rps, "gateway_cpu": gw_cpu / seconds, "wrk_cpu": wrk_cpu / seconds,
                "machine_busy": (busy_after - busy_before) / seconds,
                "machine_cores": (total_after - total_before) / seconds,
                "rps_per_gateway_core": rps / (gw_cpu / seconds) if gw_cpu else 0.0,
                "redis_commands_per_s": redis_per_s,
                "spread": sorted(round(v / max(sum(shares.values()), 1.0), 3) for v in shares.values()),
            }
        finally:
            proc.stop()
    return results


def print_workers(results: dict[int, dict[str, Any]], conns: int, threads: int) -> None:
    for workers, r in results.items():
        print(f"cached chunk, {'1 process ' if workers == 1 else '--workers 2'}  {r['rps']:9.0f} req/s   "
              f"gateway {r['gateway_cpu']:.2f} cores ({r['rps_per_gateway_core']:.0f} req/s per core)   "
              f"wrk {r['wrk_cpu']:.2f} cores   redis {r['redis_commands_per_s']:.0f} cmd/s   machine busy {r['machine_busy']:.2f} of {r['machine_cores']:.2f}"
              + (f"   spread over workers {r['spread']}" if workers > 1 else ""), flush=True)
    one, two = results[1], results[2]
    print(f"--workers 2 / 1 process    {two['rps'] / one['rps']:.2f} (goal >= 1.7 on {os.cpu_count()} cores; "
          f"wrk -t{threads} -c{conns} shares them);  per gateway core "
          f"{two['rps_per_gateway_core'] / one['rps_per_gateway_core']:.2f}", flush=True)


def _node(work: Path, name: str, up_port: int, redis_url: str, *extra: str) -> tuple[Any, str, int]:
    from bench.harness import Proc, wait_http

    port = free_port()
    cfg = work / f"{name}.toml"
    cluster = f'[cluster]\nredis_url = "{redis_url}"\nnode_id = "{name}"\n' if redis_url else ""
    cfg.write_text(
        f'[server]\nport = {port}\n[cache]\ndir = "{work / name}"\n'
        f'[sources.url]\nallow_hosts = ["127.0.0.1:{up_port}"]\nmax_bytes = 500000000\n{cluster}'
    )
    proc = Proc([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg), *extra], work / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz")
    return proc, url, port


def _register(url: str, track_url: str) -> str:
    from bench.harness import get

    track: str = json.loads(get(url + "/v1/tracks", json.dumps({"url": track_url}).encode()))["id"]
    return track


def _complete(url: str, track: str) -> dict[str, Any]:
    from bench.harness import get

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        manifest: dict[str, Any] = json.loads(get(f"{url}/v1/tracks/{track}/manifest"))
        if manifest["complete"]:
            return manifest
        time.sleep(0.1)
    raise RuntimeError("the transcode did not finish")


async def _relay_times(a_url: str, b_url: str, count: int) -> list[float]:
    """Seconds from B sending a signal to A receiving it, ``count`` times."""
    import aiohttp

    track = "bench" + "x" * 11
    async with aiohttp.ClientSession() as session:
        a = await session.ws_connect(f"{a_url}/v1/ws")
        b = await session.ws_connect(f"{b_url}/v1/ws")
        a_id = (await a.receive_json())["peer_id"]
        await b.receive_json()
        await a.send_json({"type": "have", "track": track, "rendition": "opus", "complete": True})
        await asyncio.sleep(0.3)
        for _ in range(50):
            await b.send_json({"type": "want", "track": track, "rendition": "opus", "chunks": []})
            peers = await b.receive_json()
            if any(p["peer_id"] == a_id for p in peers.get("peers", [])):
                break
            await asyncio.sleep(0.1)
        times = []
        for i in range(count):
            sent = time.perf_counter()
            await b.send_json({"type": "signal", "to": a_id, "data": {"i": i}})
            while True:
                msg = await a.receive_json(timeout=5)
                if msg.get("type") == "signal":
                    break
            times.append(time.perf_counter() - sent)
            await asyncio.sleep(0.06)  # under the signal budget: the relay is measured, not the rate limit
        await a.close()
        await b.close()
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _edge(work: Path, node_url: str, node_ports: list[int], track: str, manifest: dict[str, Any],
          args: argparse.Namespace, servers: list[Any]) -> dict[str, float]:
    from bench.edge import measure_misses, measure_rates, print_edge
    from bench.harness import get

    index = min(5, len(manifest["chunks"]) - 1)
    chunk = get(f"{node_url}/v1/tracks/{track}/chunks/{index}")
    (work / "static").mkdir(exist_ok=True)
    (work / "static" / "chunk.webm").write_bytes(chunk)
    edge = NginxEdge(work, node_ports, static=work / "static", workers=1, access_log=False)
    edge.start()
    servers.append(edge)
    assert edge.proc is not None
    cached = f"/v1/tracks/{track}/chunks/{index}"
    get(edge.url + cached)
    workers = [p for p in tree_pids(edge.proc.pid) if p != edge.proc.pid]
    rates = measure_rates(edge.url, cached, workers, seconds=args.seconds, rounds=args.edge_rounds)
    cold = [f"/v1/tracks/{track}/chunks/{i}" for i in range(len(manifest["chunks"])) if i != index][:10]
    misses = measure_misses(edge.url, edge.dir / "upstream.log", cold, listeners=30)
    return print_edge(rates, misses, len(chunk), args.edge_rounds, args.seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench cluster")
    parser.add_argument("--peers", type=int, default=12)
    parser.add_argument("--speed", type=float, default=16.0)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the generated track")
    parser.add_argument("--seconds", type=int, default=6, help="duration of each wrk run")
    parser.add_argument("--signals", type=int, default=200)
    parser.add_argument("--skip-swarm", action="store_true", help="leave out the aiortc swarm (the slowest part)")
    parser.add_argument("--only-workers", action="store_true", help="only --workers 2 vs one process")
    parser.add_argument("--only-edge", action="store_true", help="only the nginx edge (one node, no Redis needed)")
    parser.add_argument("--edge-rounds", type=int, default=5, help="interleaved wrk rounds per edge variant")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk threads for the workers part (1: wrk takes as little of the 2 cores as it can)")
    parser.add_argument("--wrk-connections", type=int, default=32)
    args = parser.parse_args(argv)
    for name in ("aioice", "aiortc", "ztream.peer"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if shutil.which("wrk") is None:
        print("ztream bench cluster: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2

    from bench.harness import UPSTREAM_SERVER, Proc, wait_http
    from bench.swarm import _make_track, run_swarm
    from transcode.ffmpeg import find_ffmpeg

    work = Path(tempfile.mkdtemp(prefix="ztream-cluster-"))
    procs: list[Any] = []
    servers: list[Any] = []
    try:
        (work / "files").mkdir()
        _make_track(find_ffmpeg(""), work / "files" / "track.mp3", int(args.minutes * 60))
        up_port = free_port()
        procs.append(Proc([sys.executable, "-c", UPSTREAM_SERVER, str(work / "files"), str(up_port)], work / "up.log"))
        wait_http(f"http://127.0.0.1:{up_port}/files/track.mp3")
        track_url = f"http://127.0.0.1:{up_port}/files/track.mp3"
        redis_server = RedisServer(work)
        redis_server.start()
        servers.append(redis_server)
        if args.only_edge:
            proc, url, port = _node(work, "n1", up_port, "")
            procs.append(proc)
            track = _register(url, track_url)
            print(json.dumps(_edge(work, url, [port], track, _complete(url, track), args, servers)))
            return 0
        if args.only_workers:
            results = measure_workers(work, up_port, track_url, redis_server.url, args.seconds,
                                      args.wrk_connections, args.wrk_threads)
            print_workers(results, args.wrk_connections, args.wrk_threads)
            print(json.dumps(results))
            return 0
        nodes = [_node(work, f"n{i}", up_port, redis_server.url) for i in (1, 2, 3)]
        procs.extend(p for p, _, _ in nodes)
        urls = [u for _, u, _ in nodes]
        time.sleep(2.2)  # heartbeats: every node knows the others
        track = ""
        for url in urls:
            track = _register(url, track_url)
        manifest = _complete(urls[0], track)
        for url in urls[1:]:
            _complete(url, track)
        print(f"cluster: 3 nodes + redis-server on loopback, track {track} ({args.minutes:g} min, "
              f"{len(manifest['chunks'])} chunks)", flush=True)

        # 2. signal relay
        same = asyncio.run(_relay_times(urls[0], urls[0], args.signals))
        across = asyncio.run(_relay_times(urls[1], urls[0], args.signals))
        print(f"signal relay, one node    p50 {_pct(same, .5) * 1000:6.2f} ms  p99 {_pct(same, .99) * 1000:6.2f} ms")
        print(f"signal relay, two nodes   p50 {_pct(across, .5) * 1000:6.2f} ms  p99 {_pct(across, .99) * 1000:6.2f} ms"
              "  (through Redis pub/sub)", flush=True)

        # 1. offload
        if not args.skip_swarm:
            alone_proc, alone_url, _ = _node(work, "alone", up_port, "")
            procs.append(alone_proc)
            _register(alone_url, track_url)
            _complete(alone_url, track)
            one = asyncio.run(run_swarm(alone_url, track, peers=args.peers, arrival=0.5, speed=args.speed,
                                        timeout=600)).summary()
            spread = asyncio.run(run_swarm(urls[0], track, peers=args.peers, arrival=0.5, speed=args.speed,
                                           timeout=600, peer_gateways=urls)).summary()
            print(f"offload, one node alone   {one['offload']:.3f}   stalls {one['stalls']}")
            print(f"offload, three nodes      {spread['offload']:.3f}   stalls {spread['stalls']}   "
                  f"(difference {abs(one['offload'] - spread['offload']) * 100:.1f} points, goal <= 2)", flush=True)

        # 3. nginx: cached chunk through the shipped config vs the same bytes as a static file
        edge_figures = _edge(work, urls[0], [p for _, _, p in nodes], track, manifest, args, servers)

        # 4. --workers 2 vs 1 (the cluster nodes stopped first: the cores are the workers')
        for p, _, _ in nodes:
            p.stop()
        results = measure_workers(work, up_port, track_url, redis_server.url, args.seconds,
                                  args.wrk_connections, args.wrk_threads)
        print_workers(results, args.wrk_connections, args.wrk_threads)
        rates = {w: r["rps"] for w, r in results.items()}
        print(json.dumps({"relay_p50_ms_one": _pct(same, .5) * 1000, "relay_p50_ms_two": _pct(across, .5) * 1000,
                          "relay_p99_ms_two": _pct(across, .99) * 1000, **edge_figures,
                          "workers_ratio": rates[2] / rates[1],
                          "relay_mean_ms_two": statistics.mean(across) * 1000}))
        return 0
    finally:
        for server in reversed(servers):
            server.stop()
        for proc in procs:
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
