"""An endless radio on loopback: MP3 from ffmpeg in real time, the way an
Icecast mount answers (docs/live.md).

``Radio`` is an aiohttp app with one route, ``/radio.mp3``: every request
starts its own ``ffmpeg -re`` (a sine tone, MP3, 128 kb/s) and streams its
output with no Content-Length, with ``icy-name`` and, when the client sends
``Icy-MetaData: 1``, ``icy-metaint`` and the metadata blocks that carry
``StreamTitle`` (the ICY protocol: after every ``metaint`` audio bytes, one
length byte n and 16 n bytes of ``StreamTitle='...';``, NUL padded). The
test drives it: ``title`` is sent in the next metadata block; ``pause(s)``
stops sending audio for ``s`` seconds (ffmpeg's output is dropped meanwhile,
as a source that stalled); ``drop()`` ends every connection (a source that
stopped; the next request starts a new one). Every loop is bounded by the
client's connection and the test's life.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web

from tests.support.audio import ffmpeg_bin

METAINT = 8192


def metadata_block(title: str) -> bytes:
    """One ICY metadata block carrying ``title``."""
    text = f"StreamTitle='{title}';".encode()[: 255 * 16]
    n = (len(text) + 15) // 16
    return bytes([n]) + text.ljust(16 * n, b"\0")


class Radio:
    def __init__(self, *, name: str = "Loopback Radio", freq: int = 440) -> None:
        self.name = name
        self.freq = freq
        self.title = "Artist - First Song"
        self.paused_until = 0.0
        self.connections = 0
        self.drops = 0
        self._live: set[asyncio.Event] = set()
        self.app = web.Application()
        self.app.router.add_get("/radio.mp3", self.handle)

    def pause(self, seconds: float) -> None:
        self.paused_until = time.monotonic() + seconds

    def drop(self) -> None:
        self.drops += 1
        for ended in self._live:
            ended.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        icy = request.headers.get("Icy-MetaData") == "1"
        headers = {"Content-Type": "audio/mpeg", "icy-name": self.name, "Cache-Control": "no-cache"}
        if icy:
            headers["icy-metaint"] = str(METAINT)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        self.connections += 1
        proc = await asyncio.create_subprocess_exec(
            ffmpeg_bin(), "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", f"sine=frequency={self.freq}:sample_rate=44100",
            "-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3", "pipe:1",
            stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        )
        ended = asyncio.Event()
        self._live.add(ended)
        sent_title: str | None = None
        budget = METAINT  # audio bytes until the next metadata block
        try:
            assert proc.stdout is not None
            while not ended.is_set():
                data = await proc.stdout.read(4096)
                if not data:
                    break
                if time.monotonic() < self.paused_until:
                    continue  # a stalled source: the audio of these seconds is lost
                while data:
                    if not icy:
                        await response.write(data)
                        break
                    part, data = data[:budget], data[budget:]
                    await response.write(part)
                    budget -= len(part)
                    if budget == 0:
                        block = metadata_block(self.title) if self.title != sent_title else b"\0"
                        sent_title = self.title
                        await response.write(block)
                        budget = METAINT
        except ConnectionResetError:
            pass  # the gateway went away
        finally:
            self._live.discard(ended)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        return response
