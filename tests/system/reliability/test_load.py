"""Load: many slow ``/stream`` readers, and SIGTERM while they are connected.

Memory is counted where it really goes: the gateway's RSS plus the kernel's
socket queues (``ss -tmn``: ``w`` wmem_queued on the gateway's sockets, ``r``
rmem_alloc on the readers'). Readers are opened in batches and the test stops
as soon as the bound is crossed, so a failing run does not push the whole
machine's TCP into memory pressure. Strict xfail marks: see
tests/system/reliability/test_http_edges.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.audio import make_audio
from tests.support.gateway import GatewayProcess
from tests.support.process import alive

READERS = 300
# What 300 stalled readers may cost in total, user and kernel: about 330 KiB
# each. Today a reader costs ~2.8 MB of kernel send buffer (autotuned to 4 MB).
TOTAL_BOUND_MIB = 100


@pytest.fixture(scope="module")
def long_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    library = tmp_path_factory.mktemp("long-library")
    make_audio(library / "long.flac", 300, freq=200)  # ~9.6 MB at 256 kbit/s
    return library


def complete(gw: GatewayProcess, tid: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{gw.url}/v1/tracks/{tid}/manifest", timeout=60) as r:
            manifest: dict[str, Any] = json.load(r)
        if manifest["complete"]:
            return manifest
        assert time.monotonic() < deadline
        time.sleep(0.3)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


_SKMEM = re.compile(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f\d+,w(\d+),")


def socket_memory(port: int) -> tuple[int, int]:
    """(gateway-side wmem_queued, reader-side rmem_alloc) summed over connections of ``port``."""
    def total(selector: str, field: int) -> int:
        out = subprocess.run(["ss", "-tmnH", "state", "established", selector],
                             capture_output=True, text=True, check=True, timeout=10).stdout
        return sum(int(m.group(field)) for m in _SKMEM.finditer(out))

    return total(f"( sport = :{port} )", 2), total(f"( dport = :{port} )", 1)


def open_reader(port: int, path: str, source: str = "127.0.0.1") -> socket.socket:
    """A reader that takes the headers and a few bytes, then stops reading."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(16)
    return sock


@pytest.mark.slow
def test_slow_stream_readers_cost_bounded_memory(gateway_factory: Any, long_library: Path) -> None:
    gw = gateway_factory(library=long_library, transcode={"bitrate": 256000},
                         sources__url={"max_bytes": 500_000_000})
    tid = gw.library_ids[0]
    manifest = complete(gw, tid)
    size = manifest["init"]["size"] + sum(c["size"] for c in manifest["chunks"])
    assert size > 8_000_000  # more than any send buffer can hold: every reader stalls the server
    pid = gw.proc.pid
    baseline = rss_bytes(pid)
    readers: list[socket.socket] = []
    worst = ""
    try:
        while len(readers) < READERS:
            for _ in range(25):
                # Listeners from 30 addresses: one address is capped at
                # server.max_connections_per_client, and 300 listeners are not one client.
                source = f"127.0.2.{len(readers) % 30 + 1}"
                readers.append(open_reader(gw.port, f"/v1/tracks/{tid}/stream", source))
            time.sleep(1.5)  # let the queues fill
            user = max(rss_bytes(pid) - baseline, 0)
            sent, received = socket_memory(gw.port)
            total_mib = (user + sent + received) / 2**20
            worst = (f"{len(readers)} readers: RSS +{user / 2**20:.1f} MiB, gateway send queues "
                     f"{sent / 2**20:.1f} MiB, reader receive queues {received / 2**20:.1f} MiB")
            assert total_mib < TOTAL_BOUND_MIB, worst
        with urllib.request.urlopen(f"{gw.url}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        for sock in readers:
            sock.close()
    print(worst)
    # Readers who leave mid-stream are ordinary: a DEBUG line each, no ERROR traceback.
    time.sleep(1.0)
    log = gw.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


class HangingUpstream:
    """A loopback HTTP server (in a thread) that sends headers and the start of a file, then hangs."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: 50000000\r\n\r\n"
                         + self.head)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def hanging_upstream(tmp_path: Path) -> Iterator[HangingUpstream]:
    up = HangingUpstream(make_audio(tmp_path / "head.mp3", 20, fmt="mp3").read_bytes()[:100_000])
    yield up
    up.close()


@pytest.mark.slow
def test_sigterm_under_load_ends_within_2s_without_ffmpeg(
    gateway_factory: Any, long_library: Path, hanging_upstream: HangingUpstream, ffmpeg_counter: tuple[str, Path]
) -> None:
    wrapper, spawns = ffmpeg_counter
    gw = gateway_factory(library=long_library, transcode={"bitrate": 256000, "ffmpeg": wrapper},
                         sources__url={"max_bytes": 500_000_000,
                                       "allow_hosts": [f"127.0.0.1:{hanging_upstream.port}"]})
    tid = gw.library_ids[0]
    complete(gw, tid)
    readers = [open_reader(gw.port, f"/v1/tracks/{tid}/stream") for _ in range(100)]
    try:
        # A transcode that is running at the moment of SIGTERM: its ffmpeg waits on a hung upstream.
        before = len(spawns.read_text().split()) if spawns.exists() else 0
        body = json.dumps({"url": f"http://127.0.0.1:{hanging_upstream.port}/a.mp3"}).encode()
        request = urllib.request.Request(f"{gw.url}/v1/tracks", method="POST", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            hung = json.load(r)["id"]
        conn = socket.create_connection(("127.0.0.1", gw.port))
        conn.sendall(f"GET /v1/tracks/{hung}/manifest HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        readers.append(conn)
        deadline = time.monotonic() + 15
        while (len(spawns.read_text().split()) if spawns.exists() else 0) <= before:
            assert time.monotonic() < deadline, "the hung transcode did not start ffmpeg"
            time.sleep(0.05)
        ffmpeg = [int(p) for p in spawns.read_text().split()]
        assert alive(ffmpeg[-1])
        time.sleep(0.5)
        assert gw.proc is not None
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        try:
            gw.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - started
        left = [pid for pid in ffmpeg if alive(pid)]
        if gw.proc.poll() is None:
            os.killpg(gw.proc.pid, signal.SIGKILL)
            gw.proc.wait(5)
        assert not left, f"ffmpeg {left} outlived the gateway"
        assert took < 2.0, f"SIGTERM took {took:.1f} s"
    finally:
        for sock in readers:
            sock.close()
