"""Starting the gateway as a new operator does: from outside, as a subprocess.

``ztream serve --host/--port``, ``make run PORT=... HOST=...``, and every
start-up failure (a busy port, an address not of this machine, a missing
ffmpeg) ending in one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from tests.support.gateway import ROOT, ZTREAM, free_port


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "ztream.toml"
    path.write_text(f'[cache]\ndir = "{tmp_path / "cache"}"\n[sources.local]\ndemo = false\n{extra}')
    return path


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ZTREAM, "serve", *args], capture_output=True, text=True, cwd=ROOT, env=_env(),
                          timeout=timeout)


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and " @ 0x" not in stderr
    return lines[0]


def test_a_busy_port_is_one_line_naming_the_port_and_the_fix(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _serve("--config", str(_config(tmp_path)), "--port", str(port), timeout=30)
    assert done.returncode != 0
    line = _one_line(done.stderr)
    assert f"127.0.0.1:{port}" in line and "already in use" in line
    assert "--port" in line and "PORT=" in line, line


def test_a_busy_port_from_the_config_file_too(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _serve("--config", str(_config(tmp_path, f"[server]\nport = {port}\n")), timeout=30)
    assert done.returncode == 1
    assert str(port) in _one_line(done.stderr)


def test_an_address_not_of_this_machine_names_host(tmp_path: Path) -> None:
    done = _serve("--config", str(_config(tmp_path)), "--host", "192.0.2.7", "--port", str(free_port()), timeout=30)
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "192.0.2.7" in line and "--host" in line


def test_any_start_up_failure_is_one_line(tmp_path: Path) -> None:
    # The services start after the port check: a failure there (no ffmpeg) too.
    config = _config(tmp_path, '[transcode]\nffmpeg = "/nonexistent/ffmpeg"\n')
    done = _serve("--config", str(config), "--port", str(free_port()), timeout=60)
    assert done.returncode == 1
    line = _one_line(done.stderr)
    assert "start-up failed" in line and "transcode.ffmpeg" in line


def test_a_bad_port_argument_is_refused(tmp_path: Path) -> None:
    done = _serve("--config", str(_config(tmp_path)), "--port", "99999", timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "99999" in done.stderr


def test_command_line_wins_over_the_file_and_the_overlay(tmp_path: Path) -> None:
    path = _config(tmp_path, '[server]\nhost = "127.0.0.1"\nport = 8123\n')
    path.with_suffix(".admin.toml").write_text('[sources.url]\nallow_hosts = ["a.example"]\n')
    config = load_config(path, overrides={"server": {"port": 9001, "host": "0.0.0.0"}})
    assert (config.server.host, config.server.port) == ("0.0.0.0", 9001)
    assert config.url.allow_hosts == ("a.example",)


@pytest.mark.parametrize("text", [
    "[server]\nport = 9000\n",
    "[server]\nport = 9000\n[sources.local]\ndirs = []\n",
    '[sources.url]\nallow_hosts = ["media.example.org"]\n',
])
def test_demo_library_whenever_no_directory_is_configured(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ztream.toml"
    path.write_text(text)
    assert load_config(path).local.demo is True
    path.write_text(text + ("" if "[sources.local]" in text else "[sources.local]\n") + "demo = false\n")
    assert load_config(path).local.demo is False


def _make(*args: str) -> str:
    done = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_passes_host_and_port_and_installs_no_extras() -> None:
    out = _make("-B", "run", "PORT=8123", "HOST=0.0.0.0")
    assert "ztream serve  --host 0.0.0.0 --port 8123" in out or "ztream serve --host 0.0.0.0 --port 8123" in out, out
    assert "[test" not in out and "bench]" not in out, out
    # make test installs the extras, also after a make run (its own stamp).
    out = _make("-B", "test")
    assert "pip install --quiet -e '.[test,bench]'" in out
    assert "--config" not in _make("-B", "run")


async def test_a_busy_stun_port_is_a_warning_naming_the_key(make_gateway: Any, caplog: pytest.LogCaptureFixture) -> None:
    # The gateway still serves (listeners behind NAT find fewer peers); the log says what to change.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        with caplog.at_level(logging.WARNING, logger="ztream"):
            client = await make_gateway(p2p={"stun_port": busy.getsockname()[1]})
            assert (await client.get("/healthz")).status == 200
    assert any("p2p.stun_port" in r.getMessage() for r in caplog.records), caplog.text
