"""Follow an HLS stream to its bytes, re-resolving and resuming when its signature expires.

Theory of operation
-------------------
An upstream that serves HLS hands out a playlist URL that is often signed
and valid for minutes only. The follower is given one callable,
``resolve(fresh) -> Target``, which answers the URL to play *now*: ``fresh``
is False the first time and True after the media host refused a request
with 401/403, meaning "ask your API again, not a cache".

For each target the follower GETs the URL through the SSRF-safe fetcher. A
playlist (``kind="hls"``, or ``"auto"`` and an HLS content type or a
``.m3u8`` path) is parsed by the pure :mod:`gateway.sources.hls`, in a
worker thread so that a hostile playlist does not stall the event loop
(docs/hls.md); a master playlist's first variant is fetched in its place. Then the init sections and
segments are fetched one by one, each *whole*, and yielded in playlist
order. Because a segment is handed on only once it is whole, a 401/403
midway has sent nothing of that segment: the follower resolves again, reads
the new playlist, checks that it lists as many segments, and resumes at that
same segment, without a second copy of an init section the consumer already
has (:meth:`hls.MediaPlaylist.requests` with ``holding``).

A target that is not a playlist (``kind="progressive"``) is passed through
as it arrives; it can be resolved again only while nothing has been sent.

Every body byte read is given to ``count``; at most ``max_renewals``
re-resolutions happen per :meth:`HlsFollower.follow`. The words and codes of
the errors, and a guard run before every request (a back-off), come from a
:class:`FollowPolicy`, which an upstream subclasses to name itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

from ..errors import Forbidden, NotAudio, NotFound, UpstreamError, UpstreamTimeout, ZtreamError
from ..media.upstream import NowPlaying
from . import hls
from .base import CountBytes
from .fetch import SafeFetcher, UpstreamResponse
from .hls_live import Ended, Fetch, LiveCursor, Skipped, Title

__all__ = [
    "FollowPolicy",
    "HlsFollower",
    "MAX_LIVE_SEGMENT_BYTES",
    "MAX_RENEWALS",
    "PLAYLIST_MAX_BYTES",
    "Resolve",
    "Target",
    "looks_like_playlist",
]

log = logging.getLogger("ztream.hls")

MAX_RENEWALS = 3  # re-resolutions of an expired media URL per follow
PLAYLIST_MAX_BYTES = hls.MAX_PLAYLIST_CHARS  # one playlist document
# One segment of a live stream: a live stream has no total, each piece is bounded
# (10 s of 320 kbit/s audio is 400 KB; a video variant's segment a few MB).
MAX_LIVE_SEGMENT_BYTES = 16 * 1024 * 1024

_PLAYLIST_TYPES = frozenset({"application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl",
                             "audio/x-mpegurl"})
# Answers that are certainly not media (an error page, an API answer).
_NOT_MEDIA = ("text/", "application/json", "application/xml")


@dataclass(frozen=True, slots=True)
class Target:
    """What to play now: a URL and how to read it.

    ``kind`` is "hls" (a playlist), "progressive" (the media bytes
    themselves) or "auto" (decided by the answer's content type and path).
    """

    url: str
    kind: Literal["hls", "progressive", "auto"] = "hls"


# Called with fresh=False first, then fresh=True after a 401/403.
Resolve = Callable[[bool], Awaitable[Target]]


def looks_like_playlist(url: str, content_type: str) -> bool:
    """True for an HLS content type (RFC 8216 section 4) or a ``.m3u8`` path."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    return ctype in _PLAYLIST_TYPES or urlsplit(url).path.endswith(".m3u8")


class FollowPolicy:
    """How the follower guards its requests and words its errors.

    The defaults suit any HLS upstream; a source subclasses this to keep its
    own error codes and back-off (SoundCloud's maps 429 to its rate limit).
    ``name`` starts the error details ("SoundCloud sent a bad HLS playlist").
    """

    name = "The upstream"

    def before_request(self) -> None:
        """Run before every request; raise a ``ZtreamError`` to refuse it."""

    def status_error(self, status: int, headers: httpx.Headers) -> ZtreamError:
        """The error for a media answer that is neither 2xx nor 401/403."""
        if status in (404, 410):
            return NotFound(f"{self.name}'s media is gone", code="upstream_not_found")
        return UpstreamError(f"{self.name}'s media host answered HTTP {status}", code="upstream_status")

    def bad_answer(self, detail: str) -> ZtreamError:
        """The error for an answer that makes no sense (a playlist too big, a format change)."""
        return UpstreamError(detail, code="upstream_bad_answer")

    def refused(self) -> ZtreamError:
        """The error once re-resolving no longer helps."""
        return Forbidden(f"{self.name} refused its own signed media URL", code="upstream_media_refused")


class _Refused(Exception):
    """A signed URL was refused (401/403): resolve again and resume."""


@dataclass(slots=True)
class _Progress:
    """How far one follow got, so a re-resolved URL resumes where it stopped."""

    started: bool = False  # bytes went downstream
    hls: bool | None = None
    next_segment: int = 0
    init_of: int | None = None  # the segment whose init section was written last
    segment_count: int | None = None
    sent: int = 0


class HlsFollower:
    """Plays targets from a :data:`Resolve` callable; one instance serves many follows."""

    def __init__(
        self,
        fetcher: SafeFetcher,
        *,
        max_bytes: int,
        count: CountBytes | None = None,
        policy: FollowPolicy | None = None,
        max_renewals: int = MAX_RENEWALS,
        playlist_max_bytes: int = PLAYLIST_MAX_BYTES,
    ) -> None:
        """Takes the shared fetcher, the byte limit of one track's media (playlists
        included), the byte counter, the policy, and the renewal and playlist limits."""
        self._fetcher = fetcher
        self.max_bytes = max_bytes
        self._count = count
        self.policy = policy if policy is not None else FollowPolicy()
        self.max_renewals = max_renewals
        self.playlist_max_bytes = playlist_max_bytes

    async def follow(self, resolve: Resolve) -> AsyncIterator[bytes]:
        """The media bytes of what ``resolve`` names: progressive, or HLS init + segments in order.

        Raises what ``resolve`` raises; ``policy.refused()`` after more than
        ``max_renewals`` refusals, or one once a progressive stream started;
        ``policy.status_error`` for other statuses; ``policy.bad_answer`` for a
        playlist over its limit or a format change between resolutions;
        NotAudio (an encrypted or empty playlist, a text answer), UpstreamError
        (``hls_bad_playlist``, ``hls_live``, ``hls_changed``, ``hls_bad_range``),
        TooLarge, UpstreamTimeout and the fetcher's address refusals.
        """
        progress = _Progress()
        renewals = 0
        fresh = False
        while True:
            target = await resolve(fresh)
            try:
                async for piece in self._play(target, progress):
                    yield piece
                return
            except _Refused:
                renewals += 1
                if renewals > self.max_renewals or (progress.started and not progress.hls):
                    raise self.policy.refused() from None
                log.info("%s refused a signed media URL at segment %d; resolving again",
                         self.policy.name, progress.next_segment)
                fresh = True

    async def follow_live(self, url: str, *, start_seconds: float = 0.0) -> AsyncGenerator[bytes | NowPlaying, None]:
        """One connection to the live HLS playlist at ``url``: new segments as they appear, titles between.

        A master playlist's first variant is chosen once and reloaded alone.
        The playlist is reloaded on the schedule of :class:`hls_live.LiveCursor`,
        which starts near the live edge (``start_seconds`` of it; 0: the last
        segment) and hands on each segment once, whole, with its init section
        first. Ends (returns) when the playlist ends, restarts or changes its
        init section: the caller opens it again. A segment that answers
        404/410 left the window before it was fetched and is skipped.

        Nothing bounds the total: each playlist is at most
        ``playlist_max_bytes``, each segment ``MAX_LIVE_SEGMENT_BYTES``, each
        body is held to the fetcher's minimum rate.

        Raises: UpstreamTimeout (``hls_stalled``) for a playlist that
        brings nothing new for ``hls_live.STALL_TARGETS`` target durations;
        ``policy.refused()`` on 401/403; the errors of :meth:`media_playlist`
        and ``policy.status_error`` for the playlist's own statuses.
        """
        loop = asyncio.get_running_loop()
        cursor = LiveCursor(start_seconds=start_seconds)
        playlist_url = url
        try:
            while True:
                self.policy.before_request()
                async with self._fetcher.open(playlist_url, max_bytes=self.playlist_max_bytes) as response:
                    self._status(response)
                    text = (await self._read(response, self.playlist_max_bytes)).decode("utf-8", "replace")
                    final_url = response.url
                parsed = await self._parse(text, final_url)
                if isinstance(parsed, hls.MasterPlaylist):
                    if playlist_url != url:
                        raise UpstreamError("the HLS variant is another master playlist", code="hls_bad_playlist")
                    playlist_url = parsed.variants[0].uri
                    continue
                for event in cursor.update(parsed, loop.time()):
                    if isinstance(event, Fetch):
                        data = await self._live_piece(event.request)
                        if data is not None:
                            yield data
                    elif isinstance(event, Title):
                        yield NowPlaying(event.text)
                    elif isinstance(event, Skipped):
                        log.info("live HLS %s: %d segments left the window unfetched", final_url, event.count)
                    elif isinstance(event, Ended):
                        log.info("live HLS %s ended this connection: %s", final_url, event.reason)
                        return
                now = loop.time()
                if cursor.stalled(now):
                    raise UpstreamTimeout(
                        f"{self.policy.name}'s live HLS playlist brought no new segment for over "
                        f"{cursor.stall_seconds:.0f} s", code="hls_stalled")
                await asyncio.sleep(max(0.0, cursor.next_load_at() - now))
        except _Refused:
            raise self.policy.refused() from None

    async def _live_piece(self, request: hls.MediaRequest) -> bytes | None:
        """A live init section or segment, whole; None for one already gone from the server."""
        self.policy.before_request()
        byterange = request.byterange
        headers = {"Range": byterange.header()} if byterange is not None else None
        async with self._fetcher.open(request.uri, max_bytes=MAX_LIVE_SEGMENT_BYTES, headers=headers) as response:
            if response.status in (404, 410) and request.kind == "segment":
                log.info("live HLS segment %s is gone already; skipped", response.url)
                return None
            self._status(response)
            data = await self._read(response, MAX_LIVE_SEGMENT_BYTES)
            status = response.status
        if byterange is not None:
            if status != 206:
                data = data[byterange.offset : byterange.end]
            if len(data) != byterange.length:
                raise UpstreamError("an HLS byte range came back short", code="hls_bad_range")
        return data

    # -- one target -----------------------------------------------------------------

    def _remaining(self, progress: _Progress) -> int:
        return max(1, self.max_bytes - progress.sent)

    def _status(self, response: UpstreamResponse) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise _Refused()
        raise self.policy.status_error(status, response.headers)

    async def _pieces(self, response: UpstreamResponse) -> AsyncIterator[bytes]:
        async for piece in response.aiter_bytes():
            if self._count is not None:
                self._count(len(piece))
            yield piece

    async def _read(self, response: UpstreamResponse, limit: int | None = None) -> bytes:
        out = bytearray()
        async for piece in self._pieces(response):
            out += piece
            if limit is not None and len(out) > limit:
                raise self.policy.bad_answer(
                    f"{self.policy.name} sent more than {limit} bytes where a small document was expected")
        return bytes(out)

    async def _play(self, target: Target, progress: _Progress) -> AsyncIterator[bytes]:
        self.policy.before_request()
        async with self._fetcher.open(target.url, max_bytes=self._remaining(progress)) as response:
            self._status(response)
            ctype = response.headers.get("content-type", "")
            is_hls = target.kind == "hls" or (target.kind == "auto" and looks_like_playlist(response.url, ctype))
            if progress.started and is_hls != progress.hls:
                raise self.policy.bad_answer(f"{self.policy.name} changed the stream's format midway")
            progress.hls = is_hls
            if not is_hls:
                if ctype.lower().startswith(_NOT_MEDIA):
                    raise NotAudio(f"{self.policy.name}'s media URL answered {ctype.split(';')[0]}, not audio")
                async for piece in self._pieces(response):
                    progress.started = True
                    progress.sent += len(piece)
                    yield piece
                return
            text = (await self._read(response, self.playlist_max_bytes)).decode("utf-8", "replace")
            playlist_url = response.url
        playlist = await self._media_playlist(text, playlist_url)
        if progress.segment_count is not None and len(playlist.segments) != progress.segment_count:
            raise UpstreamError("the re-signed playlist lists other segments", code="hls_changed")
        progress.segment_count = len(playlist.segments)
        for request in playlist.requests(progress.next_segment, holding=progress.init_of):
            data = await self._media_piece(request, progress)
            progress.started = True
            progress.sent += len(data)
            if request.kind == "init":
                progress.init_of = request.segment
            else:
                progress.next_segment = request.segment + 1
            yield data

    async def _media_playlist(self, text: str, url: str) -> hls.MediaPlaylist:
        """The media playlist to play whole: a complete one with segments."""
        playlist = await self._resolve_media(text, url)
        if not playlist.complete:
            raise UpstreamError("live HLS playlists (no EXT-X-ENDLIST) are not supported", code="hls_live")
        if not playlist.segments:
            raise NotAudio("the HLS playlist lists no segments", code="hls_empty")
        return playlist

    async def media_playlist(self, text: str, url: str) -> hls.MediaPlaylist:
        """Parse ``text`` (fetched from ``url``); a master playlist's first variant is fetched in its place.

        Live or complete, empty or not: the caller judges. Raises NotAudio
        (``hls_encrypted``), UpstreamError (``hls_bad_playlist``), what the
        policy's errors say for a variant that answers an error status or is
        over the playlist limit, ``policy.refused()`` for a variant refused
        with 401/403, and the fetcher's errors.
        """
        try:
            return await self._resolve_media(text, url)
        except _Refused:
            raise self.policy.refused() from None

    async def _resolve_media(self, text: str, url: str) -> hls.MediaPlaylist:
        playlist = await self._parse(text, url)
        if isinstance(playlist, hls.MasterPlaylist):
            variant = playlist.variants[0].uri
            self.policy.before_request()
            async with self._fetcher.open(variant, max_bytes=self.playlist_max_bytes) as response:
                self._status(response)
                text = (await self._read(response, self.playlist_max_bytes)).decode("utf-8", "replace")
                playlist = await self._parse(text, response.url)
            if isinstance(playlist, hls.MasterPlaylist):
                raise UpstreamError("the HLS variant is another master playlist", code="hls_bad_playlist")
        return playlist

    async def _parse(self, text: str, url: str) -> hls.MediaPlaylist | hls.MasterPlaylist:
        try:
            # Bounded (hls.py's limits), but a hostile playlist within them still
            # costs tenths of a second: spend them off the event loop.
            return await asyncio.to_thread(hls.parse_playlist, text, url)
        except hls.EncryptedPlaylist as exc:
            raise NotAudio(f"the HLS stream is encrypted, which the gateway does not decrypt ({exc})",
                           code="hls_encrypted") from None
        except hls.PlaylistError as exc:
            raise UpstreamError(f"{self.policy.name} sent a bad HLS playlist: {exc}",
                                code="hls_bad_playlist") from None

    async def _media_piece(self, request: hls.MediaRequest, progress: _Progress) -> bytes:
        """One init section or segment, whole (so a refusal leaves nothing half-sent)."""
        self.policy.before_request()
        byterange = request.byterange
        headers = {"Range": byterange.header()} if byterange is not None else None
        async with self._fetcher.open(request.uri, max_bytes=self._remaining(progress), headers=headers) as response:
            self._status(response)
            data = await self._read(response)
            status = response.status
        if byterange is not None:
            if status != 206:  # the server ignored Range and sent the whole resource
                data = data[byterange.offset : byterange.end]
            if len(data) != byterange.length:
                raise UpstreamError("an HLS byte range came back short", code="hls_bad_range")
        return data
