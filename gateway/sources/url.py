"""Any http(s) URL, fetched through the SSRF-safe fetcher.

Theory of operation
-------------------
A URL names one of three things, told apart by its path when it is
registered and by the answer's content type when it is opened:

* a file or stream of audio: its body goes to ffmpeg as it arrives;
* an HLS playlist (RFC 8216: a ``.m3u8`` path, or an HLS content type): the
  playlist is fetched at registration, so that a broken or encrypted one is
  refused before any track exists. A complete one (``#EXT-X-ENDLIST``, or a
  VOD playlist) is a file: at open time the generic
  :class:`~gateway.sources.hls_follow.HlsFollower` fetches its init
  sections and segments, in order, to ffmpeg's stdin (ffmpeg is never given
  a URL). MPEG-TS, fMP4 and packed AAC/MP3 segments all reach ffmpeg as one
  continuous stream of their container. Any other is live (``Track.live``):
  ``open_live`` follows the playlist at its edge, new segments only, and
  its ``#EXTINF`` titles as ``NowPlaying`` (``HlsFollower.follow_live``);
* a station file (``.m3u``, ``.pls``, or a ``.m3u8`` that holds no ``#EXT-X-``
  tag): the file is fetched at registration and its first entry that passes
  the URL checks is registered in its place (a station's entries are
  mirrors of one stream), with the entry's title. The entry may be an HLS
  playlist, not another station file (one level, no loops).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import unquote, urlsplit

from transcode.seekable import MAX_MOOV_BYTES, FetchTail

from ..errors import BadRequest, NotAudio, Unsupported, UpstreamError, ZtreamError
from ..media.catalog import Track, track_id_for
from ..media.upstream import BoundedSource, LiveSource, NowPlaying, SizedStream, TailSource
from . import hls
from .base import CountBytes
from .fetch import SafeFetcher
from .hls_follow import HlsFollower, Target, looks_like_playlist
from .playlists import MAX_PLAYLIST_BYTES, fetch_playlist_text, is_hls, parse_playlist

__all__ = ["MAX_STATION_ENTRIES", "UrlSource", "looks_like_hls_url", "looks_like_station_url"]

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

        A plain URL is not fetched. An HLS playlist is (its variant too, for a
        master playlist), and so is a station file, whose first entry that
        passes the checks is the track.

        A live HLS playlist (no ``#EXT-X-ENDLIST``) makes a live track.

        Raises: the fetcher's refusals (``bad_url``, ``host_not_allowed``,
        ``upstream_forbidden``...); for HLS ``hls_bad_playlist``,
        ``hls_encrypted``, ``hls_empty``; for a station file
        ``playlist_bad`` or the first entry's refusal.
        """
        normalized = await self.fetcher.check_url(url)
        if looks_like_station_url(normalized) or looks_like_hls_url(normalized):
            return await self._register_listed(normalized)
        return self._track(normalized)

    def _track(self, url: str, title: str | None = None, *, live: bool = False) -> Track:
        return Track(id=track_id_for("url", url), source="url", locator=url, title=title or _title_from_url(url),
                     live=live)

    async def _register_listed(self, url: str) -> Track:
        """An HLS playlist or a station file: fetched once to know which."""
        # A station file is kilobytes; an HLS VOD playlist may list thousands of segments.
        limit = hls.MAX_PLAYLIST_CHARS if looks_like_hls_url(url) else MAX_PLAYLIST_BYTES
        text, final_url = await fetch_playlist_text(self.fetcher, url, max_bytes=limit)
        if is_hls(text):
            return self._track(url, live=await self._hls_is_live(text, final_url))
        entries = parse_playlist(text, final_url)
        first_error: ZtreamError | None = None
        for entry in entries[:MAX_STATION_ENTRIES]:
            live = False
            try:
                normalized = await self.fetcher.check_url(entry.url)
                if looks_like_station_url(normalized):
                    continue  # a station file naming another one: one level only
                if looks_like_hls_url(normalized):
                    entry_text, entry_url = await fetch_playlist_text(
                        self.fetcher, normalized, max_bytes=hls.MAX_PLAYLIST_CHARS)
                    if not is_hls(entry_text):
                        continue
                    live = await self._hls_is_live(entry_text, entry_url)
            except ZtreamError as exc:
                first_error = first_error or exc
                continue
            return self._track(normalized, entry.title, live=live)
        if first_error is not None:
            raise first_error
        raise BadRequest("the station file lists no stream the gateway can play", code="playlist_bad")

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

    def open_live(self, track: Track) -> AsyncIterator[bytes | NowPlaying]:
        """One connection to a live track's upstream: a live HLS playlist followed at its edge.

        Raises Unsupported for a live track of another kind (the Icecast reader
        is not part of this source yet).
        """
        if _is_hls_locator(track.locator):
            return self._hls.follow_live(track.locator)
        raise Unsupported("this live upstream is not an HLS playlist", code="not_implemented")

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
