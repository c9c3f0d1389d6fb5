"""A loopback upstream for tests: good audio, and every way an upstream breaks."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

from aiohttp import web


class Upstream:
    """Serves ``/audio/<name>`` from a directory plus broken variants; counts requests."""

    def __init__(self, audio: dict[str, Path]) -> None:
        self.audio = {name: path.read_bytes() for name, path in audio.items()}
        self.hits: Counter[str] = Counter()
        # A new URL's registration looks at its headers once (``Icy-MetaData: 1``, the
        # body unread: is it a station?); counted apart, so that ``hits`` are the fetches.
        self.probes: Counter[str] = Counter()
        self.gate: asyncio.Event | None = None  # when set, audio waits for it
        self.stall: asyncio.Event | None = None  # with stall_after: the rest of the audio waits for it
        self.stall_after: int | None = None
        self.app = web.Application()
        self.app.router.add_get("/audio/{name}", self.serve_audio)
        self.app.router.add_get("/html", self.html)
        self.app.router.add_get("/random", self.random)
        self.app.router.add_get("/short/{name}", self.short)
        self.app.router.add_get("/missing", self.missing)
        self.app.router.add_get("/redirect", self.redirect)
        self.app.router.add_get("/chunked/{name}", self.chunked)

    def _count(self, request: web.Request, name: str) -> None:
        (self.probes if request.headers.get("Icy-MetaData") else self.hits)[name] += 1

    async def serve_audio(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._count(request, name)
        if name not in self.audio:
            raise web.HTTPNotFound()
        if self.gate is not None:
            await self.gate.wait()
        if self.stall_after is not None and self.stall is not None:
            # Headers and the first bytes, then nothing until ``stall`` is set.
            data = self.audio[name]
            response = web.StreamResponse(headers={"Content-Type": "audio/mpeg", "Content-Length": str(len(data))})
            await response.prepare(request)
            await response.write(data[: self.stall_after])
            await self.stall.wait()
            await response.write(data[self.stall_after :])
            return response
        return web.Response(body=self.audio[name], content_type="audio/mpeg")

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        """No Content-Length: only the streaming byte limit can stop it."""
        name = request.match_info["name"]
        self._count(request, "chunked/" + name)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        data = self.audio[name]
        for i in range(0, len(data), 32768):
            await response.write(data[i : i + 32768])
        await response.write_eof()
        return response

    async def html(self, request: web.Request) -> web.Response:
        self._count(request, "html")
        return web.Response(text="<html><body>not audio</body></html>" * 50, content_type="text/html")

    async def random(self, request: web.Request) -> web.Response:
        self._count(request, "random")
        return web.Response(body=os.urandom(200_000), content_type="application/octet-stream")

    async def short(self, request: web.Request) -> web.StreamResponse:
        """Promises the whole file, sends a third, then hangs up."""
        data = self.audio[request.match_info["name"]]
        self._count(request, "short")
        response = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 3])
        assert request.transport is not None
        request.transport.close()
        return response

    async def missing(self, request: web.Request) -> web.Response:
        self._count(request, "missing")
        raise web.HTTPNotFound()

    async def redirect(self, request: web.Request) -> web.Response:
        self._count(request, "redirect")
        raise web.HTTPFound(request.query["to"])
