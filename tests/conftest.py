"""Shared fixtures: generated audio, loopback upstreams, gateways.

Everything here talks to loopback only. Audio is generated with the real
ffmpeg once per session; gateways are either in-process (``aiohttp_client``
over ``create_app``) or real ``ztream serve`` subprocesses (``gateway``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.config import config_from_dict
from gateway.media.catalog import track_id_for
from transcode.ffmpeg import find_ffmpeg

from .upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
ZTREAM = [sys.executable, "-m", "gateway.cli"]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def to_toml(config: dict[str, Any]) -> str:
    """Enough TOML for test configs: tables of scalars and lists (JSON literals are valid TOML)."""
    lines: list[str] = []
    for table, values in config.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library of generated tracks: two of 20 s, one of 7 s."""
    d = tmp_path_factory.mktemp("library")
    make_audio(d / "tone_a.flac", 20, freq=440)
    make_audio(d / "tone_b.flac", 20, freq=330)
    make_audio(d / "short.flac", 7, freq=550)
    return d


@pytest.fixture(scope="session")
def long_mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_audio(tmp_path_factory.mktemp("long") / "long.mp3", 180, freq=262, fmt="mp3")


def base_config(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "chunk_wait_seconds": 20.0},
        "cache": {"dir": str(tmp_path / "cache"), "max_bytes": 500_000_000},
        "sources.url": {"allow_hosts": [], "max_bytes": 50_000_000},
        "sources.local": {"dirs": []},
    }
    for name, values in sections.items():
        config.setdefault(name.replace("__", "."), {}).update(values)
    return config


@pytest.fixture
def make_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``make_config(**{"sources.url": {...}})`` -> validated ``Config``."""

    def make(**sections: dict[str, Any]):  # type: ignore[no-untyped-def]
        merged = base_config(tmp_path)
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        tables: dict[str, Any] = {}
        for name, values in merged.items():
            node = tables
            parts = name.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = values
        return config_from_dict(tables)

    return make


class GatewayProcess:
    """A real ``ztream serve`` subprocess on a free loopback port."""

    # How the process is launched and probed; tests/netns.py runs it in a namespace.
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

    def start(self, timeout: float = 30.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [*self.command_prefix, *ZTREAM, "serve", "--config", str(self.config_path)],
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


@pytest.fixture
def gateway_factory(tmp_path: Path, audio_dir: Path) -> Iterator[Any]:
    """``gateway_factory(**{"server": {...}})`` starts a subprocess gateway."""
    started: list[GatewayProcess] = []

    def factory(library: Path | None = audio_dir, **overrides: dict[str, Any]) -> GatewayProcess:
        sub = tmp_path / f"gw{len(started)}"
        sub.mkdir()
        gw = GatewayProcess(sub, library, {k.replace("__", "."): v for k, v in overrides.items()})
        gw.start()
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(gateway_factory: Any) -> GatewayProcess:
    """A subprocess gateway over the generated library (``.url``, ``.library_ids``)."""
    gw: GatewayProcess = gateway_factory()
    return gw


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


# -- in-process gateways over loopback upstreams ---------------------------------------


def decoded_seconds(webm: bytes) -> float:
    """Decode with ffmpeg to raw PCM and measure: independent of our parser."""
    out = subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1",
         "-ar", "48000", "pipe:1"],
        input=webm, capture_output=True, check=True, timeout=60,
    ).stdout
    return len(out) / 2 / 48000


@pytest.fixture(scope="module")
def upstream_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("upstream")
    return {
        "song.mp3": make_audio(d / "song.mp3", 12, freq=440, fmt="mp3"),
        "other.mp3": make_audio(d / "other.mp3", 6, freq=660, fmt="mp3"),
        "big.wav": make_audio(d / "big.wav", 30, freq=220, fmt="wav"),
    }


@pytest.fixture
async def upstream(upstream_files: dict[str, Path]) -> Any:
    up = Upstream(upstream_files)
    server = TestServer(up.app, host="127.0.0.1")
    await server.start_server()
    up.base = f"http://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    up.port = server.port  # type: ignore[attr-defined]
    up.server = server  # type: ignore[attr-defined]
    yield up
    await server.close()


@pytest.fixture
def ffmpeg_counter(tmp_path: Path) -> tuple[str, Path]:
    """A wrapper that logs each transcode ffmpeg runs, then execs the real one."""
    log = tmp_path / "spawns.log"
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *libopus*pipe:1*) echo $$ >> "{log}";; esac\n'
        f'exec "{ffmpeg_bin()}" "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return str(wrapper), log


@pytest.fixture
async def make_gateway(make_config: Any, audio_dir: Path):  # type: ignore[no-untyped-def]
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(**sections: dict[str, Any]) -> TestClient[web.Request, web.Application]:
        sections.setdefault("sources.local", {"dirs": [str(audio_dir)]})
        config = make_config(**sections)
        client = TestClient(TestServer(create_app(config), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def fetch_all(client: TestClient[web.Request, web.Application], track_id: str) -> tuple[dict[str, Any], bytes, list[bytes]]:
    r = await client.get(f"/v1/tracks/{track_id}/manifest")
    assert r.status == 200, await r.text()
    manifest = await r.json()
    while not manifest["complete"]:
        await asyncio.sleep(0.1)
        manifest = await (await client.get(f"/v1/tracks/{track_id}/manifest")).json()
    init = await (await client.get(f"/v1/tracks/{track_id}/init")).read()
    chunks = []
    for c in manifest["chunks"]:
        r = await client.get(f"/v1/tracks/{track_id}/chunks/{c['index']}")
        assert r.status == 200
        chunks.append(await r.read())
    return manifest, init, chunks


async def post_url(client: TestClient[web.Request, web.Application], url: str) -> Any:
    return await client.post("/v1/tracks", json={"url": url})


# Browsers, network namespaces and real server clusters make a test slow: they
# are marked `slow` by what their module drives, so that `make test-fast`
# (pytest -m "not slow") gives a quick subset while working. `make test` and
# CI run everything.
_SLOW_MARKS = ("async_playwright", "NetNamespace", "puppeteer", "redis-server", "turnserver")

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    sources: dict[str, bool] = {}
    for item in items:
        path = str(item.path)
        if path not in sources:
            try:
                text = item.path.read_text(encoding="utf-8")
            except OSError:
                text = ""
            sources[path] = any(mark in text for mark in _SLOW_MARKS)
        if sources[path]:
            item.add_marker(pytest.mark.slow)
