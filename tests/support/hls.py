"""HLS upstreams for tests: playlists written by ffmpeg, served on loopback.

``write_vod(dir, kind, seconds)`` writes a complete (VOD) HLS stream with
ffmpeg's own muxers: MPEG-TS with AAC or MP3 (``hls``), fMP4 with AAC
(``hls -hls_segment_type fmp4``), or packed audio, raw ADTS AAC or MP3
segments (the ``segment`` muxer's m3u8 list). ``LiveHls`` runs ffmpeg in real
time (``-re``) writing a live playlist (``-hls_list_size 5 -hls_flags
delete_segments``, no ``#EXT-X-ENDLIST`` until it ends). ``HlsSite`` serves a
directory over HTTP on 127.0.0.1 with the content types an HLS server sends,
plus documents set by the test, and counts requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections import Counter
from pathlib import Path

from aiohttp import web

from bench.browser import serve_on_loopback
from bench.harness import ffmpeg_bin

__all__ = ["HlsSite", "LiveHls", "VOD_KINDS", "write_vod"]

VOD_KINDS = ("ts-aac", "ts-mp3", "fmp4-aac", "packed-aac", "packed-mp3")

_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".aac": "audio/aac",
    ".mp3": "audio/mpeg",
}
# A tone whose pitch moves, so segments differ from one another.
_TONE = "aevalsrc=0.4*sin(2*PI*(330+40*sin(2*PI*0.3*t))*t):s=44100"


def _codec(kind: str) -> list[str]:
    return ["-c:a", "libmp3lame", "-b:a", "64k"] if kind.endswith("mp3") else ["-c:a", "aac", "-b:a", "64k"]


def _hls_args(kind: str, out: Path, *, segment_seconds: float, live: bool) -> list[str]:
    """The muxer arguments that write ``kind`` of HLS to ``out`` (the playlist)."""
    if kind.startswith("packed"):
        ext = "mp3" if kind.endswith("mp3") else "aac"
        fmt = "mp3" if ext == "mp3" else "adts"
        args = ["-f", "segment", "-segment_format", fmt, "-segment_time", str(segment_seconds),
                "-segment_list", str(out), "-segment_list_type", "m3u8"]
        if live:  # +live: no #EXT-X-ENDLIST until the stream ends
            args += ["-segment_list_size", "5", "-segment_list_flags", "+live", "-segment_wrap", "50"]
        return [*args, str(out.parent / f"seg%03d.{ext}")]
    args = ["-f", "hls", "-hls_time", str(segment_seconds)]
    if kind.startswith("fmp4"):
        args += ["-hls_segment_type", "fmp4"]
    if live:
        args += ["-hls_list_size", "5", "-hls_flags", "delete_segments"]
    else:
        args += ["-hls_playlist_type", "vod"]
    return [*args, str(out)]


def write_vod(directory: Path, kind: str, seconds: float, *, segment_seconds: float = 2.0,
              master: bool = False) -> Path:
    """Write a VOD HLS stream of ``kind`` (one of ``VOD_KINDS``) into ``directory``; its playlist's path.

    ``master``: also a master playlist, ``master.m3u8``, naming the media one
    (only for the ``hls`` muxer's kinds).
    """
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "index.m3u8"
    extra = ["-master_pl_name", "master.m3u8"] if master else []
    subprocess.run(
        [ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
         "-i", f"{_TONE}:d={seconds}", *_codec(kind), *extra,
         *_hls_args(kind, out, segment_seconds=segment_seconds, live=False)],
        check=True, timeout=120,
    )
    return out


class LiveHls:
    """ffmpeg writing a live HLS stream in real time into a directory; at most ``seconds`` long."""

    def __init__(self, directory: Path, kind: str = "ts-aac", *, seconds: float = 120,
                 segment_seconds: float = 1.0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.playlist = directory / "index.m3u8"
        self.kind = kind
        self.seconds = seconds
        self.segment_seconds = segment_seconds
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start ffmpeg and wait for a playlist that lists a segment."""
        self.process = await asyncio.create_subprocess_exec(
            ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-re", "-f", "lavfi",
            "-i", f"{_TONE}:d={self.seconds}", *_codec(self.kind),
            *_hls_args(self.kind, self.playlist, segment_seconds=self.segment_seconds, live=True),
            stdin=asyncio.subprocess.DEVNULL,
        )
        for _ in range(200):
            if self.playlist.exists() and "#EXTINF" in self.playlist.read_text():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("ffmpeg wrote no live playlist within 10 s")

    async def stop(self) -> None:
        """End ffmpeg (it writes no ENDLIST when killed: the playlist stays live, frozen)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


class HlsSite:
    """Serves ``root``'s files at ``/files/...`` and ``documents`` (path -> (body, content type)) by path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.documents: dict[str, tuple[bytes, str]] = {}
        self.headers: dict[str, dict[str, str]] = {}  # path -> extra answer headers (icy-name...)
        self.hits: Counter[str] = Counter()
        self.base = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> HlsSite:
        app = web.Application()
        app.router.add_get("/{path:.*}", self.serve)
        self._runner, self.port = await serve_on_loopback(app)
        self.base = f"http://127.0.0.1:{self.port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    async def serve(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.hits[path] += 1
        if path in self.documents:
            body, ctype = self.documents[path]
            return web.Response(body=body, headers={"Content-Type": ctype, **self.headers.get(path, {})})
        if path.startswith("files/"):
            file = (self.root / path.removeprefix("files/")).resolve()
            if file.is_relative_to(self.root.resolve()) and file.is_file():
                with contextlib.suppress(FileNotFoundError):  # a live segment deleted meanwhile
                    return web.Response(body=file.read_bytes(),
                                        headers={"Content-Type": _TYPES.get(file.suffix, "application/octet-stream")})
        raise web.HTTPNotFound()
