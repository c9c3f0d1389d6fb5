"""Firefox ESR for the tests: a PulseAudio null sink and a puppeteer-core driver.

Firefox plays through MSE only when it has an audio output; without one,
playback fails after 2-3 s with a media error. ``PulseAudio`` starts a
private server with a null sink (as root, without ``--system``: HOME and
XDG_RUNTIME_DIR point into a temp dir) whose unix socket works across
network namespaces. ``Firefox`` runs ``bench/drivers/firefox.mjs`` under
node (optionally inside a namespace: ``prefix=ns.exec_prefix``) and speaks
its line protocol: ``goto``, ``route``, ``evaluate``, ``until``, ``close``.

Requires Debian's firefox-esr and pulseaudio and npm's puppeteer-core, all
installed by `make test`; ``require_firefox()`` fails (never skips) without.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import MissingTool, terminate

__all__ = ["PulseAudio", "Firefox", "require_firefox", "FIREFOX"]

ROOT = Path(__file__).resolve().parent.parent
FIREFOX = "/usr/bin/firefox-esr"
DRIVER = Path(__file__).resolve().parent / "drivers" / "firefox.mjs"


def require_firefox() -> None:
    missing = [what for what, ok in (
        ("firefox-esr", os.path.exists(FIREFOX)),
        ("pulseaudio", shutil.which("pulseaudio") is not None),
        ("node", shutil.which("node") is not None),
        ("puppeteer-core (npm)", (ROOT / "node_modules" / "puppeteer-core").is_dir()),
    ) if not ok]
    if missing:
        raise MissingTool(f"Firefox tests need {', '.join(missing)}: run `make test`, which installs them")


class PulseAudio:
    """A private PulseAudio server with one null sink; ``server`` is its PULSE_SERVER."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        socket_path = self.dir / "native"
        self.server = f"unix:{socket_path}"
        env = {**os.environ, "HOME": str(self.dir), "XDG_RUNTIME_DIR": str(self.dir)}
        self.proc = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--system=false",
             "--use-pid-file=no", "-n", "--load=module-null-sink",
             f"--load=module-native-protocol-unix socket={socket_path} auth-anonymous=1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.close()
                raise RuntimeError(f"pulseaudio did not start: {err[-1000:]}")
            time.sleep(0.05)

    def close(self) -> None:
        terminate(self.proc)
        if self.proc.stderr:
            self.proc.stderr.close()


class Firefox:
    """One Firefox ESR page, driven line by line."""

    def __init__(self, proc: asyncio.subprocess.Process, home: Path) -> None:
        self.proc = proc
        self.home = home
        self.console: list[dict[str, Any]] = []
        self._next = 0
        self._stderr_task = asyncio.create_task(self._read_stderr())

    @classmethod
    async def launch(cls, home: Path, pulse: PulseAudio, *, prefix: list[str] | None = None,
                     prefs: dict[str, Any] | None = None) -> Firefox:
        require_firefox()
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update({"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "PULSE_SERVER": pulse.server,
                    "MOZ_HEADLESS": "1", "PUPPETEER_SKIP_DOWNLOAD": "1"})
        options = {"executable": FIREFOX, "prefs": prefs or {}}
        proc = await asyncio.create_subprocess_exec(
            *(prefix or []), shutil.which("node") or "node", str(DRIVER), json.dumps(options),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env, cwd=str(ROOT), start_new_session=True, limit=16 * 1024 * 1024,
        )
        return cls(proc, home)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            try:
                self.console.append(json.loads(line))
            except ValueError:
                self.console.append({"driver": line.decode(errors="replace").rstrip()})

    async def _call(self, timeout: float = 60.0, **cmd: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._next += 1
        cmd["id"] = self._next
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the Firefox driver exited: {self.console[-10:]}")
        answer = json.loads(line)
        if answer.get("id") != cmd["id"] or not answer.get("ok"):
            raise RuntimeError(f"Firefox: {answer.get('error')!r} for {cmd['op']}")
        return answer.get("value")

    async def goto(self, url: str) -> None:
        await self._call(op="goto", url=url)

    async def route(self, url: str, body: str, content_type: str = "text/html") -> None:
        """Answer requests for exactly ``url`` with ``body`` (like Playwright's ``page.route``)."""
        await self._call(op="route", url=url, body=body, contentType=content_type)

    async def evaluate(self, js: str) -> Any:
        """The value of the JS expression ``js`` (awaited when it is a promise)."""
        return await self._call(op="eval", js=js)

    async def until(self, js: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
        """Poll ``js`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(js)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {js!r}; console: {self.console[-10:]}")
            await asyncio.sleep(interval)

    def errors(self) -> list[dict[str, Any]]:
        return [c for c in self.console if "pageerror" in c or c.get("console") == "error"]

    async def close(self) -> None:
        try:
            if self.proc.returncode is None:
                await self._call(op="close", timeout=10)
                await asyncio.wait_for(self.proc.wait(), 15)
        except (TimeoutError, RuntimeError, ConnectionError):
            pass
        finally:
            if self.proc.returncode is None:
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
                await self.proc.wait()
            self._stderr_task.cancel()
