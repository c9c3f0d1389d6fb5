"""Any http(s) URL, fetched through the SSRF-safe fetcher.

Registering a new URL asks the upstream once for its headers (``probe_live``,
the body is not read): an answer with ``icy-*`` headers (Icecast, SHOUTcast) or an audio type
with no length is endless, a live track (docs/live.md), named after its
``icy-name`` when it says one. An upstream that cannot be asked at
registration registers as a file, as it always did: the transcode reports
what is wrong with it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from dataclasses import replace
from urllib.parse import unquote, urlsplit

from transcode.seekable import MAX_MOOV_BYTES, FetchTail

from ..errors import NotAudio, UpstreamError, ZtreamError
from ..media.catalog import Track, track_id_for
from ..media.upstream import BoundedSource, LiveSource, NowPlaying, SizedStream, TailSource
from .base import CountBytes
from .fetch import SafeFetcher
from .icy import IcyDemuxer, IcyError, parse_metaint

__all__ = ["UrlSource", "is_live_answer", "LIVE_RATE_WINDOW"]

log = logging.getLogger("ztream.sources")

# Playlists served with audio/* types: never a stream of audio themselves.
_PLAYLIST_TYPES = ("audio/mpegurl", "audio/x-mpegurl", "audio/x-scpls", "application/vnd.apple.mpegurl",
                   "application/x-mpegurl", "application/pls+xml")
# A live upstream has no total size; what bounds it is its rate (the fetcher's
# minimum, judged over this long so that a source pausing a few seconds rides
# through) and each read's timeout.
LIVE_RATE_WINDOW = 30.0
LIVE_MAX_BYTES = 1 << 62
# How much of an icy-name becomes the title.
MAX_STATION_NAME = 200


def is_live_answer(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an upstream's answer is an endless stream: ``icy-*`` headers, or audio with no length.

    "No length" is a body that runs until the connection closes (no
    ``Content-Length`` and not chunked), as Icecast and SHOUTcast send: a file
    server that chunks a file it streams (a proxy, a slow generator) is not a
    station unless it says so with ``icy-*`` headers.
    """
    if status >= 400:
        return False
    names = [name.lower() for name in headers]
    if any(name.startswith("icy-") for name in names):
        return True
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    audio = ctype.startswith("audio/") or ctype == "application/ogg"
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    return audio and ctype not in _PLAYLIST_TYPES and "content-length" not in names and not chunked


def _station_name(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("icy-name", "")
    # Header values arrive as Latin-1; Icecast sends UTF-8 bytes in them.
    try:
        raw = raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    name = "".join(ch for ch in raw if ch.isprintable()).strip()
    return name[:MAX_STATION_NAME] or None

# Content types that are certainly not audio; anything else goes to ffmpeg,
# which is the real judge (upstreams often say application/octet-stream).
_NOT_AUDIO = ("text/", "application/json", "application/xml", "application/xhtml", "image/")


def _title_from_url(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    name = unquote(path.rsplit("/", 1)[-1]) if path else ""
    if "." in name:
        name = name.rsplit(".", 1)[0]
    return name.replace("_", " ").strip() or urlsplit(url).hostname or url


class UrlSource(TailSource, BoundedSource, LiveSource):
    name = "url"

    def __init__(self, fetcher: SafeFetcher, *, max_bytes: int, count: CountBytes | None = None) -> None:
        self.fetcher = fetcher
        self.max_bytes = max_bytes
        self._count = count

    def accepts(self, url: str) -> bool:
        """The catch-all: every other URL is tried as a plain http(s) upstream."""
        return True

    async def register(self, url: str) -> Track:
        """Validate ``url`` (scheme, host policy, resolved address) and name its track."""
        normalized = await self.fetcher.check_url(url)
        return Track(
            id=track_id_for("url", normalized),
            source="url",
            locator=normalized,
            title=_title_from_url(normalized),
        )

    async def probe_live(self, track: Track) -> Track:
        """``track``, live (named after its ``icy-name``) if the upstream's answer headers say it is endless.

        One request whose body is not read; an upstream that cannot be asked is a file, as before.
        """
        try:
            async with self.fetcher.open(track.locator, max_bytes=0, headers={"Icy-MetaData": "1"}) as response:
                if not is_live_answer(response.status, response.headers):
                    return track
                return replace(track, live=True, title=_station_name(response.headers) or track.title)
        except ZtreamError as exc:
            log.info("registering %s as a file: its headers could not be read (%s)", track.locator, exc.detail)
            return track

    async def open_live(self, track: Track) -> AsyncGenerator[bytes | NowPlaying, None]:
        """One connection to a live upstream: its audio, ICY metadata stripped into ``NowPlaying``."""
        async with self.fetcher.stream(track.locator, max_bytes=LIVE_MAX_BYTES, headers={"Icy-MetaData": "1"},
                                       rate_window=LIVE_RATE_WINDOW) as response:
            ctype = response.headers.get("content-type", "").lower()
            if ctype.startswith(_NOT_AUDIO):
                raise NotAudio(f"the upstream answered {ctype.split(';')[0]}, not audio")
            try:
                metaint = parse_metaint(response.headers.get("icy-metaint"))
            except IcyError as exc:
                raise UpstreamError(str(exc), code="upstream_bad_metadata") from None
            demuxer = IcyDemuxer(metaint) if metaint is not None else None
            async for piece in response.aiter_bytes():
                if self._count is not None:
                    self._count(len(piece))
                if demuxer is None:
                    yield piece
                    continue
                for item in demuxer.feed(piece):
                    yield item

    def open(self, track: Track) -> SizedStream:
        """The upstream's body; its ``size`` is the Content-Length (for the expected duration)."""
        sized = SizedStream()
        return sized.attach(self._body(track, sized))

    async def _body(self, track: Track, sized: SizedStream) -> AsyncGenerator[bytes, None]:
        async with self.fetcher.stream(track.locator, max_bytes=self.max_bytes) as response:
            ctype = response.headers.get("content-type", "").lower()
            if ctype.startswith(_NOT_AUDIO):
                raise NotAudio(f"the upstream answered {ctype.split(';')[0]}, not audio")
            sized.size = response.content_length
            async for piece in response.aiter_bytes():
                if self._count is not None:
                    self._count(len(piece))
                yield piece

    def tail_fetcher(self, track: Track, *, max_bytes: int = MAX_MOOV_BYTES) -> FetchTail:
        """``fetch_tail(offset)`` for ``transcode.seekable.prepare_input``: one Range request.

        Only a 206 whose Content-Range starts at ``offset`` is read (at most
        ``max_bytes``); a server that ignores ranges answers 200, which is
        refused unread, and ``prepare_input`` spools instead.
        """

        async def fetch_tail(offset: int) -> bytes:
            headers = {"Range": f"bytes={offset}-"}
            async with self.fetcher.stream(track.locator, max_bytes=max_bytes, headers=headers) as response:
                content_range = response.headers.get("content-range", "")
                if response.status != 206 or not content_range.startswith(f"bytes {offset}-"):
                    raise UpstreamError("the upstream does not answer Range requests", code="upstream_no_range")
                data = bytearray()
                async for piece in response.aiter_bytes():
                    if self._count is not None:
                        self._count(len(piece))
                    data += piece
                return bytes(data)

        return fetch_tail
