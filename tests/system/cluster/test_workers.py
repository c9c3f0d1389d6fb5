"""``ztream serve --workers N``: one port (SO_REUSEPORT), N processes, one swarm through a real redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.support.cluster import RedisServer
from tests.support.gateway import (
    ROOT,
    ZTREAM,
    GatewayProcess,
    base_config,
    free_port,
    to_toml,
)

from .test_cluster import RENDITION, open_peer, roundtrip, want_until


def test_workers_need_redis(tmp_path: Path) -> None:
    config = base_config(tmp_path)
    config["server"]["port"] = free_port()
    path = tmp_path / "ztream.toml"
    path.write_text(to_toml(config))
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "serve", "--config", str(path), "--workers", "2"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert "--workers > 1 needs [cluster] redis_url" in done.stderr


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_two_workers_one_swarm(tmp_path: Path, redis_server: RedisServer) -> None:
    (tmp_path / "w").mkdir()
    gw = GatewayProcess(tmp_path / "w", None, {"cluster": {"redis_url": redis_server.url}})
    log = gw.log_path.open("ab")
    proc = subprocess.Popen([*ZTREAM, "serve", "--config", str(gw.config_path), "--workers", "2"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    try:
        client = redis.Redis(port=redis_server.port)
        deadline = time.monotonic() + 30
        while len(client.hgetall("ztream:nodes")) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, gw.log()[-2000:]
            time.sleep(0.1)
        time.sleep(1.2)  # a heartbeat more: each worker has read the other
        assert gw.healthy()
        async with aiohttp.ClientSession() as session:
            # Peers land on either worker (the kernel picks); all of them meet.
            a, a_id = await open_peer(session, gw)
            await a.send_json({"type": "have", "track": "w" * 16, "rendition": RENDITION, "complete": True})
            await roundtrip(a)
            others = [await open_peer(session, gw) for _ in range(6)]
            for ws, _ in others:
                await want_until(ws, "w" * 16, [0], a_id)
            for ws, _ in [(a, a_id), *others]:
                await ws.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=20) == 0, gw.log()[-2000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            log.close()
    assert not client.hgetall("ztream:nodes")  # both workers left the cluster
