"""What the benchmarks share: ports, subprocesses, generated audio, gateways on loopback.

The test suite's harness (tests/support/) imports the gateway process and the
audio generator from here rather than keeping a second copy; nothing here
imports tests/.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.media.catalog import track_id_for
from transcode.ffmpeg import find_ffmpeg

__all__ = [
    "TICK",
    "cpu_seconds",
    "tree_pids",
    "wrk_measured",
    "LOOPBACK_ZTREAM", "ROOT", "UPSTREAM_SERVER", "ZTREAM", "GatewayProcess", "MissingTool", "Proc", "base_config",
    "ffmpeg_bin", "free_port", "get", "make_audio", "restrict_ice_to_loopback", "start_gateway", "terminate", "to_toml", "wait_http",
    "workspace",
]

ROOT = Path(__file__).resolve().parent.parent
ZTREAM = [sys.executable, "-m", "gateway.cli"]


class MissingTool(RuntimeError):
    """A system tool a browser, namespace or NAT run needs is not installed (``make test`` installs them)."""

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


def terminate(proc: subprocess.Popen[Any]) -> None:
    """End a helper server (coturn, PulseAudio, redis-server): SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


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
        # No demo library: each fresh cache dir would encode it before serving.
        '[sources.local]\ndemo = false\n'
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


def ffmpeg_bin() -> str:
    return find_ffmpeg("")


def make_audio(path: Path, seconds: float, *, freq: int = 440, fmt: str = "flac") -> Path:
    """A tone with a slow tremolo, so encoded frames differ from one another."""
    codec = {"flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
             "wav": ["-c:a", "pcm_s16le"], "ogg": ["-c:a", "libvorbis"]}[fmt]
    expr = f"0.4*sin(2*PI*{freq}*t)*(0.6+0.4*sin(2*PI*0.7*t))|0.4*sin(2*PI*{freq * 3 // 2}*t)"
    subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
         "-i", f"aevalsrc={expr}:s=44100:d={seconds}", *codec, "-f", fmt, str(path)],
        check=True, timeout=120,
    )
    return path


def to_toml(config: dict[str, Any]) -> str:
    """Enough TOML for generated configs: tables of scalars and lists (JSON literals are valid TOML)."""
    lines: list[str] = []
    for table, values in config.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def base_config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "chunk_wait_seconds": 20.0},
        "cache": {"dir": str(tmp_path / "cache"), "max_bytes": 500_000_000},
        "sources.url": {"allow_hosts": [], "max_bytes": 50_000_000},
        # The demo library is on by default whenever no directory is listed; a
        # test or bench gateway gets it only when it asks (ffmpeg makes it in ~10 s).
        "sources.local": {"dirs": [], "demo": False},
    }
    for name, values in sections.items():
        config.setdefault(name.replace("__", "."), {}).update(values)
    return config


class GatewayProcess:
    """A real ``ztream serve`` subprocess on a free loopback port."""

    # How the process is launched and probed; bench/netns.py runs it in a namespace.
    command_prefix: list[str] = []

    def __init__(self, tmp_path: Path, library: Path | None, overrides: dict[str, dict[str, Any]],
                 port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = base_config(tmp_path)
        config["server"]["port"] = self.port
        if library is not None:
            config["sources.local"]["dirs"] = [str(library)]
        for name, values in overrides.items():
            config.setdefault(name, {}).update(values)
        self.config = config
        self.config_path = tmp_path / f"ztream-{self.port}.toml"
        self.config_path.write_text(to_toml(config))
        self.log_path = tmp_path / f"ztream-{self.port}.log"
        self.library_ids = (
            [track_id_for("local", str(p.resolve())) for p in sorted(library.iterdir()) if p.suffix == ".flac"]
            if library is not None else []
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def healthy(self) -> bool:
        """Whether ``/healthz`` answers; raises OSError while nothing listens."""
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
            return bool(r.status == 200)

    def start(self, timeout: float = 30.0, *, args: Sequence[str] = ()) -> None:
        """Run ``ztream serve --config <file> *args`` and wait for ``/healthz``."""
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [*self.command_prefix, *ZTREAM, "serve", "--config", str(self.config_path), *args],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log()[-2000:]}")
            try:
                if self.healthy():
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not start: {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# -- measuring processes under load ------------------------------------------------------


def wrk_measured(url: str, seconds: int, conns: int, threads: int = 2) -> tuple[float, float]:
    """(requests/s, CPU seconds wrk itself used): wrk shares the cores with what it measures."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate: {out}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(match.group(1)), cpu


TICK = os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (``--workers``: the parent and its worker processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo.extend(int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split())
        except OSError:
            continue
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK
