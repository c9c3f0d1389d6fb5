"""What the benchmarks share: ports, subprocesses, a gateway started on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "LOOPBACK_ZTREAM",
    "UPSTREAM_SERVER",
    "Proc",
    "free_port",
    "get",
    "restrict_ice_to_loopback",
    "start_gateway",
    "wait_http",
    "workspace",
]

UPSTREAM_SERVER = r"""
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/files/", sys.argv[1])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def get(url: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=120) as r:
        return bytes(r.read())


class Proc:
    """A subprocess in its own group, proxies unset, output to ``log``."""

    def __init__(self, argv: list[str], log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        with log.open("ab") as out:
            self.p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)


def start_gateway(work: Path, upstream_port: int, name: str) -> tuple[Proc, str]:
    port = free_port()
    cfg = work / f"{name}.toml"
    cfg.write_text(
        f'[server]\nport = {port}\n[cache]\ndir = "{work / name}"\n'
        f'[sources.url]\nallow_hosts = ["127.0.0.1:{upstream_port}"]\nmax_bytes = 500000000\n'
    )
    proc = Proc([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)], work / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz")
    return proc, url


# -- aiortc on loopback ---------------------------------------------------------------
# aioice gathers every address but 127.0.0.1. Peers of a benchmark or a test
# talk over loopback (some inside a network namespace that has nothing else),
# so there its address list is 127.0.0.1 alone. Only harnesses do this; the
# shipped peer gathers what aioice gathers.

_ICE_PATCHED = False


def restrict_ice_to_loopback() -> None:
    """Make aiortc (through aioice) gather 127.0.0.1 only, in this process, from now on."""
    global _ICE_PATCHED
    if not _ICE_PATCHED:
        import aioice.ice

        def loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            return ["127.0.0.1"]

        aioice.ice.get_host_addresses = loopback
        _ICE_PATCHED = True


# ``ztream`` (argv prefix) whose aiortc gathers 127.0.0.1 only: ``[*LOOPBACK_ZTREAM, "peer", url, ...]``.
LOOPBACK_ZTREAM = [
    sys.executable, "-c",
    "import sys; from bench.harness import restrict_ice_to_loopback; restrict_ice_to_loopback(); "
    "from gateway.cli import main; sys.exit(main())",
]


@contextmanager
def workspace(prefix: str) -> Iterator[tuple[Path, list[Proc]]]:
    """A fresh temporary directory and an empty list for the run's processes; on the way
    out (return or exception) every listed process is stopped, then the directory removed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    procs: list[Proc] = []
    try:
        yield work, procs
    finally:
        for proc in procs:
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)
