"""``ztream serve --workers N``: N processes on one port (SO_REUSEPORT), one cluster through Redis.

The parent only starts and stops workers: each is a whole ``ztream serve``
of the same config, told by its environment to bind the public port with
SO_REUSEPORT (the kernel spreads connections among them) and a private
loopback port of its own, its ``node_url``, which other nodes pull from
(a puller must reach that worker, not whichever the kernel picks). Workers
share nothing but Redis, so N > 1 needs ``[cluster] redis_url``.

Signals to the parent (SIGINT, SIGTERM, SIGHUP) are passed on to every
worker; when one worker ends, the others are stopped and the parent exits
with its status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from ..config import Config

__all__ = ["run_workers", "worker_sockets", "WORKER_ENV", "PRIVATE_ENV"]

WORKER_ENV = "ZTREAM_WORKER"
PRIVATE_ENV = "ZTREAM_PRIVATE_PORT"
NODE_URL_ENV = "ZTREAM_NODE_URL"


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_sockets(config: Config) -> list[socket.socket] | None:
    """In a worker: the public socket (SO_REUSEPORT) and the private one; None when not a worker."""
    if WORKER_ENV not in os.environ:
        return None
    host, port = config.server.host, config.server.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    public = socket.socket(family, socket.SOCK_STREAM)
    public.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    public.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    public.bind((host, port))
    private = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    private.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    private.bind(("127.0.0.1", int(os.environ[PRIVATE_ENV])))
    return [public, private]


def run_workers(config: Config, config_path: str | None, workers: int, verbose: bool,
                serve_args: list[str] | None = None) -> int:
    if not config.cluster.redis_url:
        print("ztream: --workers > 1 needs [cluster] redis_url: the workers share the swarm and the "
              "transcodes through Redis", file=sys.stderr)
        return 2
    procs: list[subprocess.Popen[bytes]] = []
    base = [sys.executable, "-m", "gateway.cli", *(["-v"] if verbose else []), "serve"]
    if config_path is not None:
        base += ["--config", config_path]
    base += serve_args or []
    for i in range(workers):
        port = _free_loopback_port()
        env = {**os.environ, WORKER_ENV: f"{i}/{workers}", PRIVATE_ENV: str(port),
               NODE_URL_ENV: f"http://127.0.0.1:{port}"}
        procs.append(subprocess.Popen(base, env=env))

    def forward(signum: int, _frame: FrameType | None) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    status = 0
    while all(p.poll() is None for p in procs):
        time.sleep(0.2)
    for p in procs:
        if p.poll() is not None:
            status = status or (p.returncode or 0)
    forward(signal.SIGTERM, None)
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return abs(status)
