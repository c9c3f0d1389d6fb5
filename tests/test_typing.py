"""The pure protocol cores stay fully typed (mypy --strict), as STYLE.md asks."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT

PURE_CORES = [
    "transcode/ebml.py",
    "gateway/errors.py",
    "gateway/swarm",
    "gateway/sources/netpolicy.py",
    "gateway/sources/hls.py",
    "peer/wire.py",
    "peer/scheduler.py",
    "peer/link.py",
    "peer/playback.py",
    "peer/clock.py",
]


def test_pure_cores_pass_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *PURE_CORES],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
