"""Issue 12, storage faults: the cache on a 3 MB tmpfs that a long transcode fills.

The test mounts the tmpfs itself (it needs root, as the test machines run);
it must be able to fail, so it never skips. Strict xfail marks: see
tests/system/reliability/test_http_edges.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.audio import make_audio
from tests.support.gateway import GatewayProcess

TOKEN = "disk-test-admin-token"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True, timeout=10)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True, timeout=10)


def call(gw: GatewayProcess, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        kind = r.getheader("Content-Type", "")
        return r.status, json.loads(body) if kind.startswith("application/json") else body
    finally:
        conn.close()


def transcoded(gw: GatewayProcess, tid: str, timeout: float = 60.0) -> tuple[int, Any]:
    """Poll the manifest until complete or an error answer; returns the last (status, body)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = call(gw, "GET", f"/v1/tracks/{tid}/manifest")
        if status != 200 or body["complete"]:
            return status, body
        assert time.monotonic() < deadline, "the transcode neither finished nor failed"
        time.sleep(0.3)


def served_intact(gw: GatewayProcess, tid: str, manifest: dict[str, Any]) -> None:
    status, init = call(gw, "GET", f"/v1/tracks/{tid}/init")
    assert status == 200 and hashlib.sha256(init).hexdigest() == manifest["init"]["sha256"]
    for c in manifest["chunks"]:
        status, data = call(gw, "GET", f"/v1/tracks/{tid}/chunks/{c['index']}")
        assert status == 200 and hashlib.sha256(data).hexdigest() == c["sha256"]


@pytest.mark.slow
def test_disk_full_is_named_purge_frees_it_and_the_gateway_recovers(
    small_disk: Path, tmp_path: Path, audio_dir: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    shutil.copy(audio_dir / "short.flac", library / "a_short.flac")  # 7 s: fits easily
    make_audio(library / "b_long.flac", 150, freq=180)  # ~4.8 MB at 256 kbit/s: cannot fit
    shutil.copy(audio_dir / "tone_b.flac", library / "c_later.flac")  # for after the purge
    gw = GatewayProcess(tmp_path, library, {
        "cache": {"dir": str(small_disk / "cache"), "max_bytes": 500_000_000},
        "transcode": {"bitrate": 256000},
        "admin": {"token": TOKEN},
    })
    short, long, later = gw.library_ids
    gw.start()
    try:
        status, manifest = transcoded(gw, short)
        assert status == 200, manifest
        status, error = transcoded(gw, long)
        assert status in (503, 507), (status, error)
        assert error["error"] != "internal", error
        assert any(word in error["detail"].lower() for word in ("disk", "space", "storage", "full")), error
        status, health = call(gw, "GET", "/healthz")
        assert health.get("status") == "degraded" and health.get("reason"), (status, health)
        served_intact(gw, short, manifest)  # what is stored is still served
        status, body = call(gw, "DELETE", f"/v1/admin/tracks/{long}", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200, (status, body)
        status, body = transcoded(gw, later)
        assert status == 200 and body["complete"], (status, body)
        served_intact(gw, later, body)
        status, health = call(gw, "GET", "/healthz")
        assert status == 200 and health["status"] == "ok", health
    finally:
        gw.stop()
