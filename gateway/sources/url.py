"""Any http(s) URL, fetched through the SSRF-safe fetcher.

Theory of operation
-------------------
Registering a URL fetches nothing but a station file; a *new* track is then
looked at once (``probe_live``, before it joins the catalog; a known URL
costs nothing). A URL names one of four things, told apart by its path,
else by the headers of one request whose body is not read, and again by the
answer's content type when it is opened:

* a file of audio: its body goes to ffmpeg as it arrives;
* an endless stream (Icecast, SHOUTcast): an answer with ``icy-*`` headers,
  or an audio type with no length, is a live track (docs/live.md), named
  after its ``icy-name`` when it says one; ``open_live`` reads it with
  ``Icy-MetaData: 1`` and strips the metadata into ``NowPlaying`` (an Ogg
  stream without it: its comment headers' titles, ``ogg_titles.py``). An
  upstream that cannot be asked registers as a file, as it always did: the
  transcode reports what is wrong with it;
* an HLS playlist (RFC 8216: a ``.m3u8`` path, or a playlist content type
  whose text has ``#EXT-X-`` tags): the playlist is fetched by
  ``probe_live``, so that a broken or encrypted one is refused before any
  track exists. A complete one (``#EXT-X-ENDLIST``, or a VOD playlist) is a
  file: at open time the generic :class:`~gateway.sources.hls_follow.HlsFollower`
  fetches its init sections and segments, in order, to ffmpeg's stdin
  (ffmpeg is never given a URL). MPEG-TS, fMP4 and packed AAC/MP3 segments
  all reach ffmpeg as one continuous stream of their container. Any other
  is live: ``open_live`` follows the playlist at its edge, new segments
  only, with its ``#EXTINF`` titles as ``NowPlaying``
  (``HlsFollower.follow_live``);
* a station file (``.m3u``, ``.pls``; a ``.m3u8`` or a playlist content type
  without ``#EXT-X-`` tags): the file is fetched and its first entry that
  passes the URL checks is the track in its place (a station's entries are
  mirrors of one stream), looked at as any new URL: a file, an Icecast
  stream or an HLS playlist, not another station file (one level, no loops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import replace
from urllib.parse import unquote, urlsplit

from transcode.finite import HEAD_BYTES, declares_finite
from transcode.seekable import MAX_MOOV_BYTES, FetchTail

from ..errors import BadRequest, NotAudio, UpstreamError, ZtreamError
from ..media.catalog import Track, track_id_for
from ..media.upstream import BoundedSource, LiveSource, NowPlaying, SizedStream, TailSource
from . import hls
from .base import CountBytes
from .fetch import SafeFetcher, UpstreamResponse
from .hls_follow import HlsFollower, Target, looks_like_playlist
from .icy import IcyDemuxer, IcyError, parse_metaint
from .ogg_titles import OggTitles
from .playlists import MAX_PLAYLIST_BYTES, fetch_playlist_text, is_hls, parse_playlist

__all__ = [
    "LIVE_RATE_WINDOW", "MAX_STATION_ENTRIES", "UrlSource", "is_live_answer", "looks_like_hls_url",
    "looks_like_station_url",
]

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
# How long registration waits for the first bytes of an audio answer with no
# length and no icy-* header, to see whether they declare a finite file.
HEAD_SECONDS = 5.0


def is_live_answer(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an upstream's answer looks endless by its headers: ``icy-*`` headers, or audio with no length.

    Audio with no length may still be a file sent chunked (a proxy, a slow
    generator): without ``icy-*`` headers, registration then reads its first
    bytes (:func:`transcode.finite.declares_finite`). How the body is framed
    says nothing: an HTTP/1.1 proxy in front of a station chunks it too.
    """
    if status >= 400:
        return False
    names = [name.lower() for name in headers]
    if any(name.startswith("icy-") for name in names):
        return True
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    audio = ctype.startswith("audio/") or ctype == "application/ogg"
    return audio and ctype not in _PLAYLIST_TYPES and "content-length" not in names


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
# A station file's entries tried in turn (each a host check and maybe a DNS look-up).
MAX_STATION_ENTRIES = 10
# File names that say nothing of an HLS stream: its title comes from the folder above.
_GENERIC_NAMES = frozenset({"index", "playlist", "master", "prog_index", "main", "chunklist", "stream", "live",
                            "mono", "audio"})


def looks_like_hls_url(url: str) -> bool:
    """Whether ``url``'s path names an HLS playlist (``.m3u8``)."""
    return urlsplit(url).path.lower().endswith(".m3u8")


def looks_like_station_url(url: str) -> bool:
    """Whether ``url``'s path names a station or playlist file (``.m3u``, ``.pls``)."""
    return urlsplit(url).path.lower().endswith((".m3u", ".pls"))


def _is_hls_locator(locator: str) -> bool:
    """A track's URL is HLS: a ``.m3u8``, or a station file's path (registered as a track only when it held HLS)."""
    return looks_like_hls_url(locator) or looks_like_station_url(locator)


def _title_from_url(url: str) -> str:
    path = urlsplit(url).path.rstrip("/")
    parts = [unquote(p) for p in path.split("/") if p]
    name = parts[-1] if parts else ""
    if "." in name:
        name = name.rsplit(".", 1)[0]
    if name.lower() in _GENERIC_NAMES and looks_like_hls_url(url) and len(parts) > 1:
        name = parts[-2]
    return name.replace("_", " ").strip() or urlsplit(url).hostname or url


class UrlSource(TailSource, BoundedSource, LiveSource):
    name = "url"

    def __init__(self, fetcher: SafeFetcher, *, max_bytes: int, count: CountBytes | None = None) -> None:
        self.fetcher = fetcher
        self.max_bytes = max_bytes
        self._count = count
        self._hls = HlsFollower(fetcher, max_bytes=max_bytes, count=count)

    def accepts(self, url: str) -> bool:
        """The catch-all: every other URL is tried as a plain http(s) upstream."""
        return True

    async def register(self, url: str) -> Track:
        """Validate ``url`` (scheme, host policy, resolved address) and name its track.

        Nothing is fetched but a station file (``.m3u``, ``.pls``): its track is
        its first entry that passes the URL checks (not another station file),
        with the entry's title; or the file's own URL when it holds HLS. A new
        track is then looked at once by :meth:`probe_live`.

        Raises: the fetcher's refusals (``bad_url``, ``host_not_allowed``,
        ``upstream_forbidden``...); for a station file ``playlist_bad`` or
        the first entry's refusal.
        """
        normalized = await self.fetcher.check_url(url)
        if looks_like_station_url(normalized):
            return await self._station(normalized)
        return self._track(normalized)

    def _track(self, url: str, title: str | None = None) -> Track:
        return Track(id=track_id_for("url", url), source="url", locator=url, title=title or _title_from_url(url))

    async def _station(self, url: str) -> Track:
        """A station file's track: its first entry that passes the checks, or its own URL if it is HLS."""
        text, final_url = await fetch_playlist_text(self.fetcher, url, max_bytes=MAX_PLAYLIST_BYTES)
        if is_hls(text):
            return self._track(url)
        return await self._first_entry(text, final_url, resolve=False)

    async def _first_entry(self, text: str, url: str, *, resolve: bool) -> Track:
        """The track of the first of a station file's entries that passes the URL checks.

        ``resolve``: look at the entry too (:meth:`probe_live`'s work, one level).
        """
        first_error: ZtreamError | None = None
        for entry in parse_playlist(text, url)[:MAX_STATION_ENTRIES]:
            try:
                normalized = await self.fetcher.check_url(entry.url)
                if looks_like_station_url(normalized):
                    raise BadRequest("a station file's entry is another station file", code="playlist_bad")
                track = self._track(normalized, entry.title)
                return await self._look(track, nested=True) if resolve else track
            except ZtreamError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        raise BadRequest("the station file lists no stream the gateway can play", code="playlist_bad")

    async def probe_live(self, track: Track) -> Track:
        """A new track's upstream, looked at once, before it joins the catalog.

        A ``.m3u8`` (or a station file that held HLS) is fetched and parsed: an
        HLS playlist that cannot play is refused here, one without
        ``#EXT-X-ENDLIST`` is live, and a ``.m3u8`` without ``#EXT-X-`` tags is a
        station file, whose first usable entry is the track instead. Any other
        URL is asked once for its headers (the body is not read): ``icy-*``
        headers or audio with no length make it live (named after its
        ``icy-name``), a playlist content type is fetched as above, and an
        upstream that cannot be asked is a file, as before.

        Raises: for HLS ``hls_bad_playlist``, ``hls_encrypted``, ``hls_empty``;
        ``playlist_bad``; the fetcher's errors for a playlist it fetches.
        """
        return await self._look(track, nested=False)

    async def _look(self, track: Track, *, nested: bool) -> Track:
        url = track.locator
        if not (looks_like_station_url(url) or looks_like_hls_url(url)):
            live, station, playlist = await self._probe(url)
            if not playlist:
                return replace(track, live=live, title=station or track.title)
        text, final_url = await fetch_playlist_text(self.fetcher, url, max_bytes=hls.MAX_PLAYLIST_CHARS)
        if is_hls(text):
            return replace(track, live=await self._hls_is_live(text, final_url))
        if nested:
            raise BadRequest("a station file's entry is another station file", code="playlist_bad")
        return await self._first_entry(text, final_url, resolve=True)

    async def _probe(self, url: str) -> tuple[bool, str | None, bool]:
        """(live, icy-name, playlist) from the upstream's answer headers; all False when it cannot be asked.

        ``playlist``: the answer has a playlist content type (HLS or a station file).
        """
        try:
            async with self.fetcher.open(url, max_bytes=1 << 20, headers={"Icy-MetaData": "1"}) as response:
                ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if response.status < 400 and (ctype in _PLAYLIST_TYPES or looks_like_hls_url(response.url)):
                    return False, None, True
                live = is_live_answer(response.status, response.headers)
                if live and not any(name.lower().startswith("icy-") for name in response.headers):
                    live = not await self._head_declares_finite(response)
                return live, _station_name(response.headers) if live else None, False
        except ZtreamError as exc:
            log.info("registering %s as a file: its headers could not be read (%s)", url, exc.detail)
            return False, None, False

    async def _head_declares_finite(self, response: UpstreamResponse) -> bool:
        """Whether an answer with no length is a file after all: its first bytes say how long it is
        (transcode/finite.py), or the whole body is shorter than those bytes."""
        head = b""
        try:
            async with asyncio.timeout(HEAD_SECONDS):
                async for piece in response.aiter_bytes():
                    if self._count is not None:
                        self._count(len(piece))
                    head += piece
                    if len(head) >= HEAD_BYTES:
                        return declares_finite(head[:HEAD_BYTES])
        except (TimeoutError, ZtreamError):
            return declares_finite(head)
        return True  # the body ended: nothing endless about it

    async def _hls_is_live(self, text: str, url: str) -> bool:
        """Whether an HLS playlist is live; refuses one that cannot play (before any track exists).

        A live playlist with no segment yet is a station about to start: it is
        live, and its ingest waits for segments.
        """
        playlist = await self._hls.media_playlist(text, url)
        if playlist.complete and not playlist.segments:
            raise NotAudio("the HLS playlist lists no segments", code="hls_empty")
        return not playlist.complete

    def open(self, track: Track) -> SizedStream:
        """The upstream's body; its ``size`` is the Content-Length (for the expected duration).

        An HLS playlist's media, followed segment by segment, declares no size.
        """
        sized = SizedStream()
        return sized.attach(self._body(track, sized))

    async def _body(self, track: Track, sized: SizedStream) -> AsyncGenerator[bytes, None]:
        if not _is_hls_locator(track.locator):
            async with self.fetcher.stream(track.locator, max_bytes=self.max_bytes) as response:
                ctype = response.headers.get("content-type", "").lower()
                if not looks_like_playlist(response.url, ctype):
                    if ctype.startswith(_NOT_AUDIO):
                        raise NotAudio(f"the upstream answered {ctype.split(';')[0]}, not audio")
                    sized.size = response.content_length
                    async for piece in response.aiter_bytes():
                        if self._count is not None:
                            self._count(len(piece))
                        yield piece
                    return
            # An HLS content type on a path that did not say so: follow it as a playlist.

        async def resolve(fresh: bool) -> Target:
            return Target(track.locator, "hls")

        async for piece in self._hls.follow(resolve):
            yield piece

    async def open_live(self, track: Track) -> AsyncGenerator[bytes | NowPlaying, None]:
        """One connection to a live upstream: a live HLS playlist followed at its edge, or a stream's
        audio with its ICY metadata stripped into ``NowPlaying``."""
        if not _is_hls_locator(track.locator):
            async with self.fetcher.stream(track.locator, max_bytes=LIVE_MAX_BYTES, headers={"Icy-MetaData": "1"},
                                           rate_window=LIVE_RATE_WINDOW) as response:
                ctype = response.headers.get("content-type", "").lower()
                if not looks_like_playlist(response.url, ctype):
                    async with contextlib.aclosing(self._icy(response.headers, response.aiter_bytes())) as items:
                        async for item in items:
                            yield item
                    return
            # A playlist content type on a path that did not say so (registered by its headers).
        async with contextlib.aclosing(self._hls.follow_live(track.locator)) as live:
            async for item in live:
                yield item

    async def _icy(self, headers: Mapping[str, str], body: AsyncIterator[bytes]) -> AsyncGenerator[bytes | NowPlaying, None]:
        ctype = headers.get("content-type", "").lower()
        if ctype.startswith(_NOT_AUDIO):
            raise NotAudio(f"the upstream answered {ctype.split(';')[0]}, not audio")
        try:
            metaint = parse_metaint(headers.get("icy-metaint"))
        except IcyError as exc:
            raise UpstreamError(str(exc), code="upstream_bad_metadata") from None
        demuxer = IcyDemuxer(metaint) if metaint is not None else None
        # Without ICY metadata an Ogg stream names its tracks in its own comment headers.
        ogg: OggTitles | None = None
        first = True
        async for piece in body:
            if self._count is not None:
                self._count(len(piece))
            if demuxer is not None:
                for item in demuxer.feed(piece):
                    yield item
                continue
            if first and piece:
                first = False
                ogg = OggTitles() if piece.startswith(b"OggS") else None
            yield piece
            for title in ogg.feed(piece) if ogg is not None else ():
                yield title

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
