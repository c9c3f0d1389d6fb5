"""Shared fixtures: generated audio, loopback upstreams, gateways.

Everything here talks to loopback only. Audio is generated with the real
ffmpeg once per session; gateways are either in-process (``make_gateway``:
``create_app`` under aiohttp's ``TestServer``) or real ``ztream serve``
subprocesses (``gateway``, ``gateway_factory``). The helpers behind them are in
tests/support/.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.support.audio import ffmpeg_bin, make_audio
from tests.support.gateway import Client, GatewayProcess, InProcessGateways, config_of
from tests.support.upstream import Upstream


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


@pytest.fixture
def make_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``make_config(**{"sources.url": {...}})`` -> validated ``Config``."""

    def make(**sections: dict[str, Any]):  # type: ignore[no-untyped-def]
        return config_of(tmp_path, **sections)

    return make


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
async def make_gateway(tmp_path: Path, audio_dir: Path) -> AsyncIterator[Any]:
    """``make_gateway(**sections)`` starts an in-process gateway over the generated
    library; ``library=`` another directory or ``None``; ``config_path=`` a TOML
    file instead of sections. Every gateway is closed at the end of the test."""
    gateways = InProcessGateways(tmp_path)

    async def make(*, library: Path | None = audio_dir, config_path: Path | None = None,
                   **sections: dict[str, Any]) -> Client:
        return await gateways.start(library=None if config_path is not None else library,
                                    config_path=config_path, **sections)

    yield make
    await gateways.close()


# Browsers, network namespaces and real server clusters make a test slow: they
# are marked `slow` by what their module drives, so that `make test-fast`
# (pytest -m "not slow") gives a quick subset while working. `make test` and
# CI run everything.
_SLOW_MARKS = ("async_playwright", "NetNamespace", "puppeteer", "redis-server", "turnserver", "tests.support.webkit",
               "tests.support.icecast")

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
