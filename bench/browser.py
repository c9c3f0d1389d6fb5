"""Helpers for the Playwright tests: Debian's Chromium, error collection, host pages.

- ``launch(playwright)`` starts ``/usr/bin/chromium`` headless with the
  arguments that work on these machines (autoplay without a gesture, no
  sandbox as root, no background traffic);
- ``ErrorLog`` gathers page errors, console errors and failed requests of a
  page so that a test can assert there were none;
- ``HostSite`` serves a third-party page on another loopback origin
  (``http://localhost:PORT`` against the gateway's ``http://127.0.0.1:PORT``),
  optionally with its own copy of ``client/``.

Everything stays on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.harness import MissingTool

ROOT = Path(__file__).resolve().parent.parent
CLIENT_DIR = ROOT / "client"
CHROMIUM = os.environ.get("ZTREAM_CHROMIUM", "/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    return shutil.which("chromium")


def require_chromium() -> str:
    """The Chromium binary; a test without it fails (never skips): `make test` installs it."""
    path = chromium_path()
    if path is None:
        raise MissingTool("chromium is not installed: run `make test`, which installs Debian's")
    return path


async def launch(playwright: Any, *, extra_args: Iterable[str] = ()) -> Any:
    """A headless Chromium browser (playwright.async_api)."""
    return await playwright.chromium.launch(
        executable_path=require_chromium(),
        headless=True,
        args=[*CHROMIUM_ARGS, *extra_args],
    )


class ErrorLog:
    """Page errors and console errors of one or more pages.

    ``allow`` holds substrings of console messages that a test expects (for
    instance the refused connections of a test that stops the gateway).
    """

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.errors: list[str] = []
        self.allow = list(allow)

    def watch(self, page: Any) -> Any:
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        page.on("crash", lambda _p: self.errors.append("page crashed"))
        return page

    def _console(self, msg: Any) -> None:
        if msg.type != "error":
            return
        text = msg.text
        where = str(msg.location.get("url", "")) if isinstance(msg.location, dict) else ""
        if any(a in text or a in where for a in self.allow):
            return
        self.errors.append(f"console: {text} @ {msg.location}")

    def assert_clean(self) -> None:
        assert self.errors == [], "\n".join(self.errors)


_CHUNK_URL = re.compile(r"^(?P<track>.*/v1/tracks/[^/]+)/chunks/(?P<index>\d+)$")


class LiveEdgeLog(ErrorLog):
    """An ``ErrorLog`` that accepts the one 404 a live transcode's player may meet.

    Waiting at the live edge, the player asks for the chunk after the last
    listed one; once the transcode has ended the contract answers 404
    ``chunk_not_found`` (docs/http.md), which Chromium logs as a console
    error. Only that 404 passes, checked against the finished manifest: a 404
    on any other chunk, or any other URL, is still an error.
    """

    def __init__(self, allow: Iterable[str] = ()) -> None:
        super().__init__(allow)
        self.edges: list[str] = []

    def watch(self, page: Any) -> Any:
        super().watch(page)
        page.on("response", lambda r: self.edges.append(r.url) if r.status == 404 and _CHUNK_URL.match(r.url) else None)
        return page

    def _console(self, msg: Any) -> None:
        where = str(msg.location.get("url", "")) if isinstance(msg.location, dict) else ""
        if msg.type == "error" and "status of 404" in msg.text and _CHUNK_URL.match(where):
            return  # judged in assert_clean, from the response
        super()._console(msg)

    def assert_clean(self) -> None:
        for url in self.edges:
            m = _CHUNK_URL.match(url)
            assert m is not None
            with urllib.request.urlopen(f"{m['track']}/manifest", timeout=10) as r:
                manifest = json.loads(r.read())
            assert manifest["complete"] and int(m["index"]) == len(manifest["chunks"]), f"404 on {url}: not the live edge"
        super().assert_clean()


class HostSite:
    """A third-party site on ``http://localhost:PORT``: pages given as strings.

    With ``serve_client=True`` it also serves ``client/`` under ``/client/``,
    so that a page of this origin keeps working when the gateway is down.
    """

    def __init__(self, pages: dict[str, str] | None = None, *, serve_client: bool = False) -> None:
        self.pages = dict(pages or {})
        self.serve_client = serve_client
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    async def _page(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.pages:
            raise web.HTTPNotFound()
        return web.Response(text=self.pages[name], content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _client(self, request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        path = (CLIENT_DIR / rel).resolve()
        if not path.is_relative_to(CLIENT_DIR) or not path.is_file():
            raise web.HTTPNotFound()
        ctype = "text/javascript" if path.suffix == ".js" else "text/css" if path.suffix == ".css" else "text/html"
        return web.FileResponse(path, headers={"Content-Type": ctype, "Cache-Control": "no-store"})

    async def __aenter__(self) -> HostSite:
        app = web.Application()
        if self.serve_client:
            app.router.add_get("/client/{path:.+}", self._client)
        app.router.add_get("/{name:.*}", self._page)
        self.runner, self.port = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def serve_on_loopback(app: web.Application) -> tuple[web.AppRunner, int]:
    """Start ``app`` on a free 127.0.0.1 port; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


async def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll a (sync) predicate until it is truthy; returns its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def until(page: Any, js: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Evaluate ``js`` (an expression or a possibly async function) until it is truthy.

    Unlike ``page.wait_for_function`` this works under a strict
    Content-Security-Policy (no eval) and awaits promises.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await page.evaluate(js)
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"not true within {timeout} s: {js}")
        await asyncio.sleep(interval)
