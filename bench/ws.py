"""``ztream bench ws``: idle control connections and the signaling relay.

Starts a gateway subprocess, then measures, each figure against a baseline
from the same run:

1. gateway RSS per idle control connection: RSS with ``--conns`` idle
   WebSockets open (each greeted with its ``welcome``, answering the
   gateway's heartbeat pings) minus RSS with none, divided by their number,
   2 s after they are all open; with ``--hold S``, again once they have all
   been open S seconds (35 s covers every socket's first heartbeat, 20 to
   30 s after its open, and its answer: what a socket keeps for its
   heartbeat is counted too).
   The connections come from worker processes (each holds at most
   ``PER_WORKER``) and from several 127.x.y.z source addresses, so neither
   a process's descriptor limit nor one address's ephemeral ports bound them;
2. signaling relay latency: ``--pairs`` pairs of peers introduced to each
   other through the tracker (one track per pair) exchange ``signal``s at
   ``--rate`` signals a second for ``--seconds``; the latency from the
   sender's ``send`` to the receiver's ``receive``, p50 and p99 — first with
   no idle connection open (the baseline), then with all of them open.

3. announces/s per core: ``--announcers`` peers each send ``have`` at
   ``--announce-rate`` a second (under the per-socket message budget of
   docs/websocket.md) for ``--seconds``, each then a ``want`` whose answer
   proves every earlier message of that socket was handled; the figure is
   announces handled per CPU second the gateway's processes used (the load
   generator runs on the same cores and is not counted).

``--workers N`` runs ``ztream serve --workers N`` (a ``redis-server`` on
loopback started for it): RSS and CPU are summed over the parent and its
workers, the gauge over each worker's /metrics, and relayed signals cross
workers through Redis whenever the kernel put a pair on different workers.

Descriptor limits: the bench raises its soft ``RLIMIT_NOFILE`` to the hard
limit before spawning anything, so the gateway inherits it. Where the hard
limit is below what ``--conns`` needs (raising it takes CAP_SYS_RESOURCE),
the bench opens as many as fit and says so; the per-connection figure
extrapolates. Everything runs on loopback; figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["main", "rss_bytes", "IdleClient"]

PER_WORKER = 9_000  # idle connections per worker process
GATEWAY_FD_RESERVE = 200  # descriptors the gateway needs besides its sockets
CONNECT_PARALLEL = 128  # connection attempts in flight per worker


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tree(pid: int) -> list[int]:
    from bench.harness import tree_pids

    return tree_pids(pid)


def tree_rss(pid: int) -> int:
    """RSS of ``pid`` and its descendants (``--workers``: the parent and every worker)."""
    total = 0
    for p in _tree(pid):
        try:
            total += rss_bytes(p)
        except (OSError, RuntimeError):
            continue
    return total


def tree_fds(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        try:
            total += open_fds(p)
        except OSError:
            continue
    return total


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard one (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- the idle clients (worker processes) -------------------------------------------


class IdleClient(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455) that upgrades, reads its welcome,
    then only answers pings: a few hundred bytes per connection, so that
    the worker's own memory does not limit the count."""

    def __init__(self, host: str, ready: asyncio.Future[bool]) -> None:
        self.host = host
        self.ready = ready
        self.buf = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /v1/ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self._fail()
                return
            del self.buf[: end + 4]
            self.upgraded = True
        while len(self.buf) >= 2:
            opcode = self.buf[0] & 0x0F
            length = self.buf[1] & 0x7F
            head = 2
            if length == 126:
                if len(self.buf) < 4:
                    return
                length = struct.unpack_from(">H", self.buf, 2)[0]
                head = 4
            elif length == 127:
                if len(self.buf) < 10:
                    return
                length = struct.unpack_from(">Q", self.buf, 2)[0]
                head = 10
            if len(self.buf) < head + length:
                return
            payload = bytes(self.buf[head : head + length])
            del self.buf[: head + length]
            if opcode == 0x1 and not self.ready.done():
                self.ready.set_result(b'"welcome"' in payload)
            elif opcode == 0x9:
                self._send(0xA, payload)  # pong
            elif opcode == 0x8:
                self._send(0x8, payload[:2])
                if self.transport is not None:
                    self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def _fail(self) -> None:
        if not self.ready.done():
            self.ready.set_result(False)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_result(False)


async def _hold(port: int, count: int, sources: list[str]) -> None:
    """Worker: open ``count`` idle connections, report, hold until stdin closes."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_PARALLEL)
    clients: list[IdleClient] = []
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        source = sources[i % len(sources)]
        async with gate:
            for _attempt in range(5):
                ready: asyncio.Future[bool] = loop.create_future()
                try:
                    _t, proto = await loop.create_connection(
                        functools.partial(IdleClient, f"127.0.0.1:{port}", ready), "127.0.0.1", port,
                        local_addr=(source, 0),
                    )
                    if await asyncio.wait_for(ready, 30):
                        clients.append(proto)
                        return
                except (TimeoutError, OSError):
                    pass
                await asyncio.sleep(0.2)
            failed += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    print(json.dumps({"ready": len(clients), "failed": failed}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()  # EOF: the bench is done
    print(json.dumps({"still_open": sum(1 for c in clients if not c.closed)}), flush=True)
    for c in clients:
        if c.transport is not None:
            c.transport.close()


# ---- the relay load ----------------------------------------------------------------


async def relay_latency(url: str, pairs: int, rate: float, seconds: float) -> dict[str, Any]:
    """Latencies (ms) of ``signal``s relayed between introduced pairs."""
    import aiohttp

    ws_url = "ws" + url[len("http"):] + "/v1/ws"
    latencies: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        conns = []
        for _ in range(2 * pairs):
            ws = await session.ws_connect(ws_url, heartbeat=None)
            welcome = json.loads((await ws.receive(timeout=10)).data)
            conns.append((ws, welcome["peer_id"]))
        # introduce each pair: a holds a chunk of its own track, b wants it
        for k in range(pairs):
            (a, _aid), (b, _bid) = conns[2 * k], conns[2 * k + 1]
            await a.send_str(json.dumps({"type": "have", "track": f"bench{k}", "rendition": "r", "chunks": [0]}))
        for k in range(pairs):
            (b, _bid) = conns[2 * k + 1]
            # Across workers the holder reaches Redis a moment after its have: ask again until it is there.
            for _attempt in range(50):
                await b.send_str(json.dumps({"type": "want", "track": f"bench{k}", "rendition": "r",
                                             "chunks": [0]}))
                answer = json.loads((await b.receive(timeout=10)).data)
                assert answer["type"] == "peers", answer
                if answer["peers"]:
                    break
                await asyncio.sleep(0.1)
            assert answer["peers"], answer

        async def read(ws: Any) -> None:
            async for msg in ws:
                body = json.loads(msg.data)
                if body.get("type") == "signal":
                    latencies.append((time.perf_counter_ns() - body["data"]["t"]) / 1e6)
                elif body.get("type") == "error":
                    errors.append(body.get("error", "?"))

        readers = [asyncio.create_task(read(ws)) for ws, _ in conns]
        # senders: both sides of every pair, round robin, ``rate`` a second in all
        senders = [(conns[2 * k][0], conns[2 * k + 1][1]) for k in range(pairs)]
        senders += [(conns[2 * k + 1][0], conns[2 * k][1]) for k in range(pairs)]
        tick = 0.01
        per_tick = rate * tick
        due = 0.0
        sent = 0
        n = 0
        start = time.perf_counter()
        candidate = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0"
        while time.perf_counter() - start < seconds:
            due += per_tick
            while sent < int(due):
                ws, to = senders[n % len(senders)]
                n += 1
                data = {"candidate": {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0},
                        "t": time.perf_counter_ns()}
                await ws.send_str(json.dumps({"type": "signal", "to": to, "data": data}))
                sent += 1
            await asyncio.sleep(max(0.0, start + (due / rate) - time.perf_counter()))
        await asyncio.sleep(0.5)
        for task in readers:
            task.cancel()
        for ws, _ in conns:
            await ws.close()
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else float("nan")

    return {
        "sent": sent,
        "received": len(latencies),
        "rate": round(sent / seconds),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": pct(0.99),
        "max_ms": round(latencies[-1], 2) if latencies else None,
        "errors": len(errors),
    }


async def announce_load(url: str, peers: int, rate: float, seconds: float, tracks: int = 50) -> dict[str, Any]:
    """``peers`` sockets each send ``have`` at ``rate``/s for ``seconds``; then a ``want`` each, answered."""
    import aiohttp

    ws_url = "ws" + url[len("http"):] + "/v1/ws"
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        conns = [await session.ws_connect(ws_url, heartbeat=None) for _ in range(peers)]
        for ws in conns:
            await ws.receive(timeout=10)  # welcome
        sent = 0
        start = time.perf_counter()

        async def announcer(k: int, ws: Any) -> None:
            nonlocal sent
            n = 0
            t0 = time.perf_counter() + (k / peers) / rate  # spread the sockets over one period
            while t0 + n / rate - start < seconds:
                await asyncio.sleep(max(0.0, t0 + n / rate - time.perf_counter()))
                # a growing run of chunks: each have is a real change to the tracker
                have = {"type": "have", "track": f"bench{k % tracks}", "rendition": "r",
                        "chunks": list(range(n % 64 + 1))}
                await ws.send_str(json.dumps(have))
                n += 1
                sent += 1

        await asyncio.gather(*(announcer(k, ws) for k, ws in enumerate(conns)))

        async def settled(k: int, ws: Any) -> None:
            nonlocal errors
            await ws.send_str(json.dumps({"type": "want", "track": f"bench{k % tracks}", "rendition": "r",
                                          "chunks": [0]}))
            while True:
                body = json.loads((await ws.receive(timeout=30)).data)
                if body.get("type") == "peers":
                    return
                if body.get("type") == "error":
                    errors += 1

        await asyncio.gather(*(settled(k, ws) for k, ws in enumerate(conns)))
        elapsed = time.perf_counter() - start
        for ws in conns:
            await ws.close()
    return {"announces": sent, "seconds": elapsed, "rate": sent / elapsed, "errors": errors}


def _cpu(pid: int) -> float:
    from bench.harness import cpu_seconds

    return cpu_seconds(_tree(pid))


def _gauge_sum(url: str, redis_url: str) -> int:
    """ztream_peers_connected of one gateway, or summed over the workers' own /metrics."""
    if not redis_url:
        return _peers_connected(url)
    import redis

    client: Any = redis.Redis.from_url(redis_url)
    total = 0
    for raw in client.hgetall("ztream:nodes").values():
        total += max(0, _peers_connected(json.loads(raw)["url"]))
    return total


# ---- the bench -----------------------------------------------------------------------


def _peers_connected(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("ztream_peers_connected "):
                return int(float(line.split()[1]))
    return -1


def _sources(k: int) -> list[str]:
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(k)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztream bench ws")
    parser.add_argument("--conns", type=int, default=20_000, help="idle control connections")
    parser.add_argument("--sources", type=int, default=8, help="127.x.y.z source addresses to spread them over")
    parser.add_argument("--pairs", type=int, default=100, help="signaling pairs of the relay load")
    parser.add_argument("--rate", type=float, default=1000.0, help="signals a second, all pairs together")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each relay measurement")
    parser.add_argument("--announcers", type=int, default=200, help="sockets of the announce load")
    parser.add_argument("--announce-rate", type=float, default=40.0, help="have messages a second per socket")
    parser.add_argument("--workers", type=int, default=1, help="ztream serve --workers N (with a redis-server)")
    parser.add_argument("--hold", type=float, default=0.0,
                        help="seconds after the open to measure RSS again (35: after the first heartbeats); 0: not")
    parser.add_argument("--json", action="store_true", help="also print one JSON line, last")
    args = parser.parse_args(argv)

    from bench.harness import Proc, free_port, wait_http

    limit = raise_nofile()
    relay_conns = 2 * args.pairs
    fit = limit - GATEWAY_FD_RESERVE - relay_conns
    if args.workers > 1:  # each worker has its own limit; SO_REUSEPORT's spread is even only on average
        fit = int(fit * args.workers * 0.9)
    conns = min(args.conns, fit)
    work = Path(tempfile.mkdtemp(prefix="ztream-ws-"))
    procs: list[Proc] = []
    workers: list[subprocess.Popen[str]] = []
    redis_server: Any = None
    try:
        port = free_port()
        # Every socket comes from this one machine: the per-client caps of a
        # public gateway would refuse all but 64; the process cap still fits ulimit -n.
        config = (f'[server]\nport = {port}\nmax_sockets_per_client = 1000000\n'
                  f'max_connections_per_client = 1000000\nmax_connections = 1000000\n'
                  f'[cache]\ndir = "{work / "cache"}"\n')
        extra: list[str] = []
        redis_url = ""
        if args.workers > 1:
            from bench.cluster import RedisServer

            redis_server = RedisServer(work)
            redis_server.start()
            redis_url = redis_server.url
            config += f'[cluster]\nredis_url = "{redis_url}"\n'
            extra = ["--workers", str(args.workers)]
        (work / "gw.toml").write_text(config)
        gw = Proc([sys.executable, "-m", "gateway.cli", "serve", "--config", str(work / "gw.toml"), *extra],
                  work / "gw.log")
        procs.append(gw)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        pid = gw.p.pid
        if args.workers > 1:
            time.sleep(2.2)  # heartbeats: every worker knows the others
            while len(_tree(pid)) < args.workers + 1:
                time.sleep(0.2)
        print(f"gateway pid {pid} ({args.workers} worker{'s' if args.workers > 1 else ''}), "
              f"RLIMIT_NOFILE {limit} (gateway and bench)", flush=True)
        if conns < args.conns:
            print(f"note: {args.conns} idle connections need more descriptors than the hard RLIMIT_NOFILE "
                  f"({limit}) leaves the gateway; raising it takes CAP_SYS_RESOURCE, which this machine does "
                  f"not grant. Running {conns}; the per-connection figure extrapolates.", flush=True)

        base = asyncio.run(relay_latency(url, args.pairs, args.rate, args.seconds))  # also warms the code paths
        time.sleep(1.0)
        cpu0 = _cpu(pid)
        announced = asyncio.run(announce_load(url, args.announcers, args.announce_rate, args.seconds))
        time.sleep(0.5)  # a cluster node's batched holder writes to Redis (20 ms later) are counted too
        announce_cpu = _cpu(pid) - cpu0
        per_core = announced["announces"] / announce_cpu if announce_cpu else float("nan")
        print(f"announces: {announced['announces']} from {args.announcers} sockets in {announced['seconds']:.1f} s "
              f"({announced['rate']:.0f}/s, {announced['errors']} errors); gateway CPU {announce_cpu:.2f} s: "
              f"{per_core:.0f} announces per core-second", flush=True)
        time.sleep(1.0)
        rss0, fds0 = tree_rss(pid), tree_fds(pid)
        print(f"baseline: RSS {rss0 / 2**20:.1f} MiB, {fds0} descriptors; relay at {base['rate']}/s: "
              f"p50 {base['p50_ms']} ms p99 {base['p99_ms']} ms", flush=True)

        t0 = time.monotonic()
        sources = _sources(args.sources)
        left = conns
        while left > 0:
            n = min(PER_WORKER, left)
            left -= n
            w = subprocess.Popen(
                [sys.executable, "-m", "bench.ws", "--worker", str(port), str(n), ",".join(sources)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
            )
            workers.append(w)
        opened = failed = 0
        for w in workers:
            assert w.stdout is not None
            line = w.stdout.readline()
            status = json.loads(line) if line.strip() else {"ready": 0, "failed": 0}
            opened += status["ready"]
            failed += status["failed"]
        connect_s = time.monotonic() - t0
        time.sleep(2.0)
        rss1, fds1 = tree_rss(pid), tree_fds(pid)
        gauge = _gauge_sum(url, redis_url)
        per_conn = (rss1 - rss0) / max(1, opened)
        projected = rss0 + per_conn * 20_000
        per_gib = 2**30 / per_conn if per_conn > 0 else float("inf")
        print(f"{opened} idle connections open ({failed} failed) in {connect_s:.1f} s from {len(sources)} "
              f"source addresses and {len(workers)} workers; ztream_peers_connected {gauge}", flush=True)
        print(f"gateway RSS {rss1 / 2**20:.1f} MiB ({fds1} descriptors): {per_conn / 1024:.1f} KiB per connection; "
              f"projected for 20,000: {projected / 2**30:.2f} GiB (goal <= 1 GiB); {per_gib:.0f} idle sockets per GiB "
              f"(goal >= 80k, <= 12 KiB each)", flush=True)

        loaded = asyncio.run(relay_latency(url, args.pairs, args.rate, args.seconds))
        print(f"relay at {loaded['rate']}/s with {opened} idle connections: p50 {loaded['p50_ms']} ms "
              f"p99 {loaded['p99_ms']} ms max {loaded['max_ms']} ms (goal p99 <= 10 ms); "
              f"baseline with none: p50 {base['p50_ms']} ms p99 {base['p99_ms']} ms", flush=True)
        held = None
        if args.hold > 0:
            time.sleep(max(0.0, t0 + connect_s + args.hold - time.monotonic()))
            held = (tree_rss(pid) - rss0) / max(1, opened)
            print(f"after {args.hold:.0f} s open (heartbeats included): gateway RSS "
                  f"{(rss0 + held * opened) / 2**20:.1f} MiB, {held / 1024:.1f} KiB per connection", flush=True)
        still = 0
        for w in workers:
            assert w.stdin is not None and w.stdout is not None
            w.stdin.close()
            line = w.stdout.readline()
            still += json.loads(line)["still_open"] if line.strip() else 0
        print(f"idle connections still open at the end: {still} of {opened}", flush=True)
        result = {
            "conns": opened,
            "conns_asked": args.conns,
            "nofile_limit": limit,
            "connect_seconds": round(connect_s, 1),
            "rss_baseline_mib": round(rss0 / 2**20, 1),
            "rss_mib": round(rss1 / 2**20, 1),
            "rss_per_conn_kib": round(per_conn / 1024, 2),
            "rss_per_conn_held_kib": round(held / 1024, 2) if held is not None else None,
            "rss_projected_20k_gib": round(projected / 2**30, 3),
            "relay_rate": loaded["rate"],
            "relay_p50_ms": loaded["p50_ms"],
            "relay_p99_ms": loaded["p99_ms"],
            "relay_max_ms": loaded["max_ms"],
            "relay_errors": loaded["errors"],
            "relay_baseline_p50_ms": base["p50_ms"],
            "relay_baseline_p99_ms": base["p99_ms"],
            "still_open": still,
            "workers": args.workers,
            "idle_per_gib": round(per_gib),
            "announces": announced["announces"],
            "announces_per_s": round(announced["rate"]),
            "announce_cpu_seconds": round(announce_cpu, 2),
            "announces_per_core_second": round(per_core),
            "announce_errors": announced["errors"],
        }
        if args.json:
            print(json.dumps(result))
        return 0
    finally:
        for w in workers:
            if w.poll() is None:
                with_pid = w.pid
                try:
                    os.killpg(with_pid, signal.SIGTERM)
                    w.wait(10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        for proc in procs:
            proc.stop()
        if redis_server is not None:
            redis_server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        raise_nofile()
        asyncio.run(_hold(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(",")))
    else:
        sys.exit(main())
