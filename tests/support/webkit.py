"""A real WebKit for the tests: WebKitGTK's MiniBrowser under Xvfb, driven by
Debian's ``WebKitWebDriver`` over plain W3C WebDriver HTTP.

Playwright's WebKit build cannot be downloaded here, and the protocol needs
nothing more than a few JSON requests, so this is a small client on aiohttp
(already a dependency): new session, navigate, execute (sync and async)
script, delete session. Everything listens on loopback only.

``WebKitGTK`` checks WebKit's JavaScript, DOM, Media Source /
ManagedMediaSource and IndexedDB; its codec answers come from GStreamer
(``gstreamer1.0-plugins-bad`` is needed for MSE), and Debian builds it
without WebRTC (docs/browsers.md).

The driver, the browser and WebKit's helper processes run in a process group
of their own (the driver is started as a session leader): stopping kills
that group, by its id, and waits for the processes this test started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

DRIVER = "/usr/bin/WebKitWebDriver"
XVFB = "/usr/bin/Xvfb"
MINIBROWSER = "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"
# Autoplay is allowed as the Chromium tests allow it (--autoplay-policy);
# no media permission is granted to any browser.
BROWSER_ARGS = ["--automation", "--autoplay-policy=allow"]
# A bad browser argument makes POST /session hang (MiniBrowser exits): every
# request has a deadline.
REQUEST_SECONDS = 30.0


def require_webkit() -> None:
    for path in (DRIVER, XVFB, MINIBROWSER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: run `make system-deps` (scripts/system-deps.sh installs webkit2gtk-driver, xvfb)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class WebDriverError(RuntimeError):
    pass


class WebKit:
    """One Xvfb display, one WebKitWebDriver, one browser session."""

    def __init__(self, args: list[str] | None = None) -> None:
        self.args = BROWSER_ARGS if args is None else args
        self.tmp = Path(tempfile.mkdtemp(prefix="ztream-webkit-"))
        self.xvfb: subprocess.Popen[bytes] | None = None
        self.driver: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.base = ""
        self.session = ""

    async def start(self) -> None:
        require_webkit()
        read, write = os.pipe()
        # -displayfd: Xvfb picks a free display and writes its number.
        self.xvfb = subprocess.Popen(
            [XVFB, "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        os.close(write)
        display = await asyncio.wait_for(asyncio.to_thread(self._read_display, read), 20)
        port = _free_port()
        env = {
            **os.environ,
            "DISPLAY": f":{display}",
            "HOME": str(self.tmp),
            "XDG_RUNTIME_DIR": str(self.tmp),
            "XDG_CACHE_HOME": str(self.tmp / "cache"),
            "XDG_DATA_HOME": str(self.tmp / "data"),
            # no desktop bus or accessibility bus to wait for
            "NO_AT_BRIDGE": "1",
            "GST_REGISTRY": str(self.tmp / "gst-registry.bin"),
        }
        self.driver = subprocess.Popen(
            [DRIVER, f"--port={port}", "--host=127.0.0.1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_SECONDS))
        for _ in range(100):
            try:
                async with self.http.get(f"{self.base}/status") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise WebDriverError("WebKitWebDriver did not start")
        caps = {
            "capabilities": {
                "alwaysMatch": {"webkitgtk:browserOptions": {"binary": MINIBROWSER, "args": self.args}},
            },
        }
        value = await self._call("POST", "/session", caps)
        self.session = value["sessionId"]

    @staticmethod
    def _read_display(fd: int) -> str:
        with os.fdopen(fd, "rb") as f:
            return f.readline().decode().strip()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        assert self.http is not None
        async with self.http.request(method, self.base + path, json=body if body is not None else None) as r:
            data = json.loads(await r.text() or "{}")
        value = data.get("value")
        if r.status >= 400:
            raise WebDriverError(f"{method} {path}: {r.status} {value}")
        return value

    async def goto(self, url: str) -> None:
        await self._call("POST", f"/session/{self.session}/url", {"url": url})

    async def run(self, script: str, *args: Any) -> Any:
        """The value of a function body (``return ...``), awaited if it is a promise."""
        wrapped = (
            "const done = arguments[arguments.length - 1];"
            f"Promise.resolve((function () {{ {script} }}).apply(null, Array.from(arguments).slice(0, -1)))"
            ".then((v) => done({ok: v === undefined ? null : v}), (e) => done({error: String(e && e.stack || e)}));"
        )
        out = await self._call("POST", f"/session/{self.session}/execute/async", {"script": wrapped, "args": list(args)})
        if isinstance(out, dict) and "error" in out:
            raise WebDriverError(f"script failed: {out['error']}")
        return out.get("ok") if isinstance(out, dict) else out

    async def value(self, expression: str) -> Any:
        return await self.run(f"return ({expression});")

    async def until(self, expression: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
        """Poll ``expression`` until it is truthy; its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Any = None
        while loop.time() < deadline:
            try:
                last = await self.value(expression)
            except WebDriverError as e:  # a navigation in progress
                last = e
            if last and not isinstance(last, Exception):
                return last
            await asyncio.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {expression!r} (last: {last!r})")

    async def click(self, css: str, *, shadow_host: str | None = None) -> None:
        """A WebDriver element click (a user gesture for the page) on ``css``, inside ``shadow_host``'s shadow root if given."""
        sid = self.session
        if shadow_host is None:
            found = await self._call("POST", f"/session/{sid}/element", {"using": "css selector", "value": css})
        else:
            host = await self._call("POST", f"/session/{sid}/element", {"using": "css selector", "value": shadow_host})
            host_id = next(iter(host.values()))
            root = await self._call("GET", f"/session/{sid}/element/{host_id}/shadow")
            root_id = next(iter(root.values()))
            found = await self._call("POST", f"/session/{sid}/shadow/{root_id}/element", {"using": "css selector", "value": css})
        element = next(iter(found.values()))
        await self._call("POST", f"/session/{sid}/element/{element}/click", {})

    async def stop(self) -> None:
        if self.http is not None:
            if self.session:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._call("DELETE", f"/session/{self.session}"), 10)
            await self.http.close()
        for proc in (self.driver, self.xvfb):
            if proc is None:
                continue
            # the group holds the browser and WebKit's helper processes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 10)
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.asynccontextmanager
async def webkit(args: list[str] | None = None) -> AsyncIterator[WebKit]:
    """A started WebKit; ``args``: MiniBrowser's arguments instead of BROWSER_ARGS."""
    browser = WebKit(args)
    try:
        await browser.start()
        yield browser
    finally:
        await browser.stop()


# Installed before a page's own scripts cannot be done over WebDriver; this
# is installed as soon as the page has loaded and records what follows.
ERRORS = """
if (!window.__errors) {
  window.__errors = [];
  window.addEventListener("error", (e) => window.__errors.push(String(e.message || e)));
  window.addEventListener("unhandledrejection", (e) => window.__errors.push(String(e.reason && e.reason.stack || e.reason)));
}
return true;
"""
