"""SoundCloud tracks, resolved through SoundCloud's APIs, never its web pages.

Theory of operation
-------------------
A track is known by its numeric id: every URL form (``soundcloud.com``,
``m.``/``www.``, ``on.soundcloud.com`` short links, ``soundcloud:tracks:<id>``)
is resolved to the same id, and the track id is
``track_id_for("soundcloud", "tracks:<id>")``, so they all share one track.

Two modes, chosen by ``[sources.soundcloud]``:

* **api-v2** (``client_id`` alone, the web player's API): ``/resolve`` and
  ``/tracks/<id>`` answer the track's JSON; its ``media.transcodings`` list
  the streams. One is picked (progressive MP3, else HLS MP3, else HLS AAC,
  else HLS Opus; ``snipped`` 30-second previews only when nothing else
  exists, and then the track says ``preview``), and ``GET <transcoding.url>``
  answers ``{"url": <signed media URL>}``. ``client_id = "auto"`` finds a
  public client id the way yt-dlp does: the site's page lists its script
  bundles, and one of them holds ``client_id:"<32 chars>"``. That is
  unofficial and may break whenever SoundCloud changes its site; the id is
  cached and discovered again when the API answers 401.
* **official** (``client_id`` + ``client_secret``): an OAuth 2.1 client
  credentials token from ``{auth_base}/oauth/token``, sent as
  ``Authorization: OAuth <token>``. SoundCloud caps the tokens an app may
  obtain, so one token is shared and kept until shortly before it expires,
  or until the API answers 401. ``/resolve`` then ``/tracks/<urn>/streams``;
  since November 2025 that answers ``hls_aac_160_url`` (sometimes
  ``hls_aac_96_url``) and ``preview_mp3_128_url`` only, so the official
  path is HLS AAC (fMP4 with an ``EXT-X-MAP`` init section).

Registering resolves once, for the id and the metadata (title, artist,
duration, artwork, permalink), which are cached for ``META_TTL``. The
signed media URL expires within minutes, so it is only asked for in
:meth:`SoundCloudSource.open`, right before fetching; ``open`` runs once per
transcode (the transcoder is single-flight), so SoundCloud's per-client-id
stream limits see one resolution per transcode, never one per listener.

HLS is fetched here, never by ffmpeg: the media playlist is parsed by
:mod:`gateway.sources.hls`, then the init section and the segments are
fetched in order, each whole, through the same SSRF-safe fetcher, and handed
on as one byte stream. Fetching whole segments means a segment refused with
401/403 (its signature expired midway) has sent nothing yet: the stream URL
is resolved again, the new playlist fetched, and the stream resumes at that
same segment.

Errors, all ``ZtreamError``s and nothing cached for them: 404 for removed or
private tracks (SoundCloud answers 404 for those), 403 for refused or
not-streamable ones, 451 (:class:`Unavailable`) for geo-blocked ones
(``policy: BLOCK``, ``access: blocked``), 503 with ``retry_after``
(:class:`RateLimited`) when SoundCloud answers 429; that also starts a back
off during which no request is sent to SoundCloud at all.

SafeFetcher's public API only GETs, follows every redirect and turns error
statuses into exceptions; this source needs a POST (the token), one
unfollowed redirect (short links) and the statuses themselves (401, 403,
429, Retry-After). :class:`_Http` builds those from the fetcher's own per-hop
primitives, so every request still goes through the same address checks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import httpx

from ..config import SoundCloudConfig
from ..errors import (
    BadRequest,
    Forbidden,
    NotAudio,
    NotFound,
    Overloaded,
    UpstreamError,
    ZtreamError,
)
from ..media.catalog import Track, track_id_for
from . import hls
from .base import CountBytes
from .fetch import SafeFetcher, UpstreamResponse
from .netpolicy import parse_url

__all__ = [
    "RateLimited",
    "SiteEndpoints",
    "SoundCloudRef",
    "SoundCloudSource",
    "TrackInfo",
    "Unavailable",
    "choose_official_stream",
    "choose_transcoding",
    "find_client_id",
    "find_script_urls",
    "is_soundcloud_url",
    "parse_soundcloud_url",
    "retry_after_seconds",
    "track_info",
]

log = logging.getLogger("ztream.soundcloud")

META_TTL = 600.0  # seconds a resolved track's JSON is reused
API_MAX_BYTES = 2_000_000  # one API answer (track JSON, stream URLs, token)
PLAYLIST_MAX_BYTES = 2_000_000
PAGE_MAX_BYTES = 4_000_000  # the site's page, client-id discovery only
SCRIPT_MAX_BYTES = 10_000_000  # one script bundle
MAX_SCRIPTS = 8  # bundles tried per discovery, from the last
MAX_RENEWALS = 3  # re-resolutions of an expired media URL per transcode
DEFAULT_RETRY_AFTER = 60.0  # a 429 without a usable Retry-After
MAX_RETRY_AFTER = 3600.0
MAX_SHORT_HOPS = 3
_CACHE_LIMIT = 2048


# -- errors ------------------------------------------------------------------


class Unavailable(ZtreamError):
    """451: SoundCloud does not stream the track here (geo-blocked, ``policy: BLOCK``)."""

    status = 451
    code = "unavailable_for_legal_reasons"


class RateLimited(Overloaded):
    """503 with ``retry_after``: SoundCloud answered 429 and we are backing off.

    ``retry_after`` is computed when read, so an error remembered for a
    while (the transcoder keeps failures briefly) still tells the truth.
    """

    code = "soundcloud_rate_limited"

    def __init__(self, detail: str, *, retry_at: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(detail)
        self._retry_at = retry_at
        self._clock = clock

    @property
    def retry_after(self) -> int:
        """Whole seconds until SoundCloud may be asked again (at least 1)."""
        return max(1, math.ceil(self._retry_at - self._clock()))


class _Expired(Exception):
    """A signed media URL was refused (401/403): resolve it again and resume."""


# -- pure parts: URLs, JSON, pages -------------------------------------------

_PAGE_HOSTS = frozenset({"soundcloud.com", "www.soundcloud.com", "m.soundcloud.com"})
_SHORT_HOSTS = frozenset({"on.soundcloud.com"})
_API_HOSTS = frozenset({"api.soundcloud.com", "api-v2.soundcloud.com"})
_URN = re.compile(r"^soundcloud:tracks:(\d{1,20})$")
_API_TRACK_PATH = re.compile(r"^/tracks/(?:soundcloud:tracks:)?(\d{1,20})/?$")
_SHORT_CODE = re.compile(r"^/([A-Za-z0-9_-]{1,64})/?$")


@dataclass(frozen=True, slots=True)
class SoundCloudRef:
    """What a user's URL names: ``kind`` is "page", "short" or "id"."""

    kind: str
    value: str  # the canonical page URL, the short code, or the numeric id

    @property
    def cache_key(self) -> str:
        return f"{self.kind}:{self.value}"


def is_soundcloud_url(url: str) -> bool:
    """True for ``soundcloud:tracks:<id>`` and any http(s) URL on a SoundCloud host."""
    if url.startswith("soundcloud:"):
        return True
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host in (_PAGE_HOSTS | _SHORT_HOSTS | _API_HOSTS)


def parse_soundcloud_url(url: str) -> SoundCloudRef:
    """Classify a SoundCloud URL without any request.

    Takes ``soundcloud:tracks:<id>``, ``https://(www.|m.)soundcloud.com/<user>/<track>[/<secret>]``
    (query and fragment dropped: ``?in=...``, ``?si=...`` are tracking only),
    ``https://on.soundcloud.com/<code>`` and ``https://api(-v2).soundcloud.com/tracks/<id>``.
    Returns the :class:`SoundCloudRef`.

    Raises:
        BadRequest(code="bad_url"): anything else, or a page URL with fewer
        than two path segments (a profile, not a track).
    """
    match = _URN.match(url.strip())
    if match:
        return SoundCloudRef("id", match.group(1))
    if url.startswith("soundcloud:"):
        raise BadRequest("expected soundcloud:tracks:<numeric id>", code="bad_url")
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port
    except ValueError:
        raise BadRequest("not a valid SoundCloud URL", code="bad_url") from None
    if parts.scheme not in ("http", "https") or parts.username is not None or port is not None:
        raise BadRequest("not a SoundCloud track URL", code="bad_url")
    if host in _SHORT_HOSTS:
        short = _SHORT_CODE.match(parts.path)
        if short is None:
            raise BadRequest("not a SoundCloud short link", code="bad_url")
        return SoundCloudRef("short", short.group(1))
    if host in _API_HOSTS:
        api = _API_TRACK_PATH.match(parts.path)
        if api is None:
            raise BadRequest("only /tracks/<id> API URLs name a track", code="bad_url")
        return SoundCloudRef("id", api.group(1))
    if host not in _PAGE_HOSTS:
        raise BadRequest("not a SoundCloud URL", code="bad_url")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2:
        raise BadRequest("this SoundCloud URL names no track (expected /<user>/<track>)", code="bad_url")
    return SoundCloudRef("page", "https://soundcloud.com/" + "/".join(segments))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP-date, RFC 9110 10.2.3).

    ``now`` is the Unix time to measure an HTTP-date from. Returns None if
    the header is absent or unusable.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


# Ranks of api-v2 transcodings, best first. Encrypted HLS ("ctr-encrypted-hls",
# "cbc-encrypted-hls": Go+ DRM) has no rank: it is never picked.
def _transcoding_rank(transcoding: Mapping[str, Any]) -> int | None:
    fmt = transcoding.get("format")
    if not isinstance(fmt, Mapping) or not isinstance(transcoding.get("url"), str):
        return None
    protocol = str(fmt.get("protocol") or "")
    mime = str(fmt.get("mime_type") or "").lower()
    if protocol == "progressive" and mime.startswith("audio/mpeg"):
        return 0
    if protocol == "hls":
        if mime.startswith("audio/mpeg"):
            return 1
        if mime.startswith(("audio/mp4", "audio/aac")) or "mp4a" in mime:
            return 2
        if "opus" in mime or mime.startswith("audio/ogg"):
            return 3
    return None


def choose_transcoding(transcodings: object) -> tuple[dict[str, Any], bool]:
    """Pick the api-v2 transcoding to play.

    Takes ``media.transcodings``. Returns (transcoding, preview): progressive
    MP3 before HLS MP3 before HLS AAC before HLS Opus, full streams before
    ``snipped`` ones; ``preview`` is True when only a snippet exists.

    Raises:
        Forbidden(code="soundcloud_not_streamable"): nothing playable
        (no transcodings, or only encrypted ones).
    """
    candidates: list[tuple[bool, int, int, dict[str, Any]]] = []
    if isinstance(transcodings, list):
        for position, transcoding in enumerate(transcodings):
            if not isinstance(transcoding, dict):
                continue
            rank = _transcoding_rank(transcoding)
            if rank is not None:
                candidates.append((bool(transcoding.get("snipped")), rank, position, transcoding))
    if not candidates:
        raise Forbidden("SoundCloud offers no stream of this track that the gateway can play",
                        code="soundcloud_not_streamable")
    snipped, _, _, best = min(candidates, key=lambda c: c[:3])
    return best, snipped


# Official /streams keys, best first, and how their URL is played. The mp3
# and opus keys disappeared in November 2025 but are still taken if present.
_OFFICIAL_STREAMS: tuple[tuple[str, str], ...] = (
    ("hls_aac_160_url", "hls"),
    ("hls_aac_96_url", "hls"),
    ("http_mp3_128_url", "progressive"),
    ("hls_mp3_128_url", "hls"),
    ("hls_opus_64_url", "hls"),
)


def choose_official_stream(streams: object) -> tuple[str, str, bool]:
    """Pick from an official ``/tracks/<urn>/streams`` answer.

    Returns (url, protocol, preview) where protocol is "hls", "progressive"
    or "auto" (decided by the answer's content type), preview True for
    ``preview_mp3_128_url``, taken only when nothing else exists.

    Raises:
        Forbidden(code="soundcloud_not_streamable"): no usable URL.
    """
    if isinstance(streams, dict):
        for key, protocol in _OFFICIAL_STREAMS:
            url = streams.get(key)
            if isinstance(url, str) and url:
                return url, protocol, False
        preview = streams.get("preview_mp3_128_url")
        if isinstance(preview, str) and preview:
            return preview, "auto", True
    raise Forbidden("SoundCloud offers no stream of this track", code="soundcloud_not_streamable")


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """The parts of a SoundCloud track's JSON the gateway uses."""

    id: int
    title: str
    artist: str | None
    duration: float | None  # seconds of what will play (the preview's, for a preview)
    artwork: str | None
    permalink: str | None
    preview: bool


def _numeric_id(data: Mapping[str, Any]) -> int:
    raw = data.get("id")
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    urn = data.get("urn")
    if isinstance(urn, str):
        match = _URN.match(urn)
        if match:
            return int(match.group(1))
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise UpstreamError("SoundCloud answered a track without an id", code="soundcloud_bad_answer")


def _seconds(ms: object) -> float | None:
    if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0:
        return round(ms / 1000.0, 3)
    return None


def track_info(data: object, *, official: bool) -> TrackInfo:
    """Check a track's JSON (api-v2 or official) and extract its metadata.

    Raises:
        BadRequest(code="soundcloud_not_a_track"): a user, playlist...
        Unavailable: geo-blocked (``policy: BLOCK`` / ``access: blocked``).
        Forbidden(code="soundcloud_not_streamable"): ``streamable: false``
            or, for api-v2, no playable transcoding.
        UpstreamError(code="soundcloud_bad_answer"): not a track object at all.
    """
    if not isinstance(data, dict):
        raise UpstreamError("SoundCloud answered something that is not a track", code="soundcloud_bad_answer")
    kind = data.get("kind")
    if kind is not None and kind != "track":
        raise BadRequest(f"this SoundCloud URL is a {kind}, not a track", code="soundcloud_not_a_track")
    numeric = _numeric_id(data)
    policy = str(data.get("policy") or "").upper()
    access = str(data.get("access") or "").lower()
    if policy == "BLOCK" or access == "blocked":
        raise Unavailable("SoundCloud does not stream this track in the gateway's country (geo-blocked)",
                          code="soundcloud_geo_blocked")
    if data.get("streamable") is False:
        raise Forbidden("the uploader does not allow this track to be streamed", code="soundcloud_not_streamable")
    full = _seconds(data.get("full_duration")) or _seconds(data.get("duration"))
    if official:
        preview = access == "preview"
        duration = None if preview else full
    else:
        media = data.get("media")
        transcoding, preview = choose_transcoding(media.get("transcodings") if isinstance(media, dict) else None)
        preview = preview or policy == "SNIP"
        duration = _seconds(transcoding.get("duration")) if preview else full
    raw_user = data.get("user")
    user: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
    artist = user.get("username") if isinstance(user.get("username"), str) else None
    artwork = data.get("artwork_url") or user.get("avatar_url")
    if isinstance(artwork, str):
        # "-large" is 100x100; the same image exists at 500x500.
        artwork = artwork.replace("-large.", "-t500x500.")
    else:
        artwork = None
    permalink = data.get("permalink_url") if isinstance(data.get("permalink_url"), str) else None
    raw_title = data.get("title")
    title = raw_title if isinstance(raw_title, str) and raw_title else f"SoundCloud track {numeric}"
    return TrackInfo(
        id=numeric, title=title, artist=artist, duration=duration,
        artwork=artwork, permalink=permalink, preview=preview,
    )


_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=[\"']([^\"']+)[\"']", re.IGNORECASE)
_CLIENT_ID = re.compile(r"client_id\s*:\s*\"([0-9a-zA-Z]{32})\"")


def find_script_urls(html: str, page_url: str, assets_prefix: str) -> list[str]:
    """The page's script bundles under ``assets_prefix``, in page order."""
    found: list[str] = []
    for src in _SCRIPT_SRC.findall(html):
        url = urljoin(page_url, src)
        if url.startswith(assets_prefix) and url.split("?", 1)[0].endswith(".js") and url not in found:
            found.append(url)
    return found


def find_client_id(script: str) -> str | None:
    """The ``client_id:"<32 alphanumerics>"`` in a script bundle, if any."""
    match = _CLIENT_ID.search(script)
    return match.group(1) if match else None


def _with_query(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _is_playlist(url: str, content_type: str) -> bool:
    ctype = content_type.split(";", 1)[0].strip().lower()
    return ctype in ("application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl",
                     "audio/x-mpegurl") or urlsplit(url).path.endswith(".m3u8")


# -- HTTP on top of SafeFetcher's per-hop checks ------------------------------


@dataclass(slots=True)
class _Reply:
    status: int
    url: str
    headers: httpx.Headers
    body: bytes


@dataclass(slots=True)
class _Opened:
    status: int
    url: str
    headers: httpx.Headers
    body: UpstreamResponse


class _Http:
    """GET with redirects, a single hop (POST, or a redirect left unfollowed), statuses kept.

    Every hop goes through ``SafeFetcher.open`` (one lookup, every address
    checked, the connection pinned to it). Every body byte read is counted.
    """

    def __init__(self, fetcher: SafeFetcher, count: CountBytes | None) -> None:
        self._fetcher = fetcher
        self._count = count

    @contextlib.asynccontextmanager
    async def open(self, url: str, *, max_bytes: int, headers: Mapping[str, str] | None = None,
                   method: str = "GET", body: bytes | None = None, follow: bool = True) -> AsyncIterator[_Opened]:
        """Send the request; yield the final response with its body unread.

        Raises BadRequest, Forbidden, UpstreamError, UpstreamTimeout as
        ``SafeFetcher.stream`` does, but never for an HTTP status.
        """
        async with self._fetcher.open(url, max_bytes=max_bytes, headers=headers, method=method, body=body,
                                      follow_redirects=follow) as response:
            yield _Opened(response.status, response.url, response.headers, response)

    async def pieces(self, opened: _Opened) -> AsyncIterator[bytes]:
        async for piece in opened.body.aiter_bytes():
            if self._count is not None:
                self._count(len(piece))
            yield piece

    async def read(self, opened: _Opened, limit: int | None = None) -> bytes:
        """The whole body; ``limit`` refuses a bigger one with UpstreamError."""
        out = bytearray()
        async for piece in self.pieces(opened):
            out += piece
            if limit is not None and len(out) > limit:
                raise UpstreamError(f"SoundCloud sent more than {limit} bytes where a small document was expected",
                                    code="soundcloud_bad_answer")
        return bytes(out)

    async def request(self, url: str, *, max_bytes: int, headers: Mapping[str, str] | None = None,
                      method: str = "GET", body: bytes | None = None, follow: bool = True) -> _Reply:
        """A small document whole; the body is read for 2xx answers only."""
        async with self.open(url, max_bytes=max_bytes, headers=headers, method=method, body=body,
                             follow=follow) as opened:
            data = await self.read(opened) if 200 <= opened.status < 300 else b""
        return _Reply(opened.status, opened.url, opened.headers, data)


# -- the source ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteEndpoints:
    """Where SoundCloud's public web site lives (client-id discovery, short links).

    Not configuration: tests point these at a fake SoundCloud.
    """

    page: str = "https://soundcloud.com/"
    assets: str = "https://a-v2.sndcdn.com/assets/"
    short: str = "https://on.soundcloud.com/"


@dataclass(frozen=True, slots=True)
class _Stream:
    url: str
    protocol: str  # "progressive" | "hls" | "auto"
    preview: bool


@dataclass(slots=True)
class _Progress:
    """How far one ``open`` got, so a re-resolved URL resumes where it stopped."""

    started: bool = False  # bytes went downstream
    hls: bool | None = None
    next_segment: int = 0
    init_of: int | None = None  # the segment whose init section was written last
    segment_count: int | None = None
    sent: int = 0


@dataclass(slots=True)
class _Entry:
    expires: float
    value: Any


@dataclass
class _TtlCache:
    clock: Callable[[], float]
    ttl: float
    entries: dict[str, _Entry] = field(default_factory=dict)

    def get(self, key: str) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            del self.entries[key]
            return None
        return entry.value

    def put(self, key: str, value: Any) -> None:
        now = self.clock()
        if len(self.entries) >= _CACHE_LIMIT:
            for stale in [k for k, e in self.entries.items() if e.expires <= now] or list(self.entries)[:256]:
                del self.entries[stale]
        self.entries[key] = _Entry(now + self.ttl, value)


class SoundCloudDisabled:
    """Stands in for the SoundCloud source when no credentials are configured.

    It takes SoundCloud URLs so that none falls through to the URL source:
    the gateway never fetches SoundCloud's web pages.
    """

    def accepts(self, url: str) -> bool:
        return is_soundcloud_url(url)

    async def register(self, url: str) -> Track:
        raise Forbidden(
            "SoundCloud is not configured on this gateway ([sources.soundcloud] client_id)",
            code="soundcloud_disabled",
        )


class SoundCloudSource:
    name = "soundcloud"

    def __init__(
        self,
        fetcher: SafeFetcher,
        config: SoundCloudConfig,
        *,
        max_bytes: int,
        count: CountBytes | None = None,
        site: SiteEndpoints | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Build the source.

        Takes the shared fetcher, the ``[sources.soundcloud]`` section (its
        ``client_id`` must be set; ``"auto"`` discovers one, api-v2 only),
        the byte limit for one track's media, and the byte counter.

        Raises:
            ValueError: no client_id, or "auto" together with a client_secret.
        """
        if not config.client_id:
            raise ValueError("sources.soundcloud.client_id is empty")
        self.official = bool(config.client_secret)
        self.auto = config.client_id == "auto"
        if self.auto and self.official:
            raise ValueError('sources.soundcloud.client_id = "auto" works with api-v2 only (no client_secret)')
        self.config = config
        self.api_base = config.api_base.rstrip("/")
        self.auth_base = config.auth_base.rstrip("/")
        self.site = site or SiteEndpoints()
        self.max_bytes = max_bytes
        self.clock = clock
        self._http = _Http(fetcher, count)
        self._meta = _TtlCache(lambda: self.clock(), META_TTL)
        self._backoff_until = 0.0
        self._client_id: str | None = None if self.auto else config.client_id
        self._discovery_lock = asyncio.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        # Requests by purpose ("token", "discovery", "resolve", "stream_url"),
        # for tests and the admin page.
        self.requests: Counter[str] = Counter()

    # -- the Source interface ------------------------------------------------

    def accepts(self, url: str) -> bool:
        """Every SoundCloud URL, so none falls through to a plain page fetch."""
        return is_soundcloud_url(url)

    async def register(self, url: str) -> Track:
        """Resolve ``url`` to its track (metadata only; the stream is resolved in ``open``).

        Raises BadRequest (not a track URL), NotFound (removed or private),
        Forbidden, Unavailable, RateLimited, UpstreamError, UpstreamTimeout.
        """
        ref = parse_soundcloud_url(url)
        if ref.kind == "short":
            ref = await self._expand_short(ref.value)
        info = track_info(await self._track_json(ref), official=self.official)
        title = f"{info.title} (preview)" if info.preview else info.title
        return Track(
            id=track_id_for("soundcloud", f"tracks:{info.id}"),
            source="soundcloud",
            locator=f"soundcloud:tracks:{info.id}",
            title=title,
            duration=info.duration,
            artist=info.artist,
            artwork=info.artwork,
            permalink=info.permalink,
            preview=info.preview,
        )

    async def open(self, track: Track) -> AsyncIterator[bytes]:
        """The track's media bytes (progressive, or HLS init + segments in order).

        Resolves the signed media URL first, and again (up to
        ``MAX_RENEWALS`` times) when SoundCloud refuses it midway, resuming
        at the refused segment. Raises the errors of :meth:`register`, plus
        NotAudio (encrypted HLS, an HTML answer), TooLarge.
        """
        match = _URN.match(track.locator)
        if match is None:
            raise NotFound(f"not a SoundCloud track locator: {track.locator!r}", code="track_not_found")
        numeric = int(match.group(1))
        progress = _Progress()
        renewals = 0
        fresh = False
        while True:
            stream = await self._stream_url(numeric, fresh=fresh)
            if stream.preview and not track.preview:
                # Never pass a 30 s snippet off as the track that was registered.
                raise Forbidden("SoundCloud now offers only a preview of this track", code="soundcloud_preview_only")
            try:
                async for piece in self._play(stream, progress):
                    yield piece
                return
            except _Expired:
                renewals += 1
                if renewals > MAX_RENEWALS or (progress.started and not progress.hls):
                    raise Forbidden("SoundCloud refused its own signed media URL",
                                    code="soundcloud_media_refused") from None
                log.info("soundcloud track %s: media URL expired at segment %d; resolving again",
                         numeric, progress.next_segment)
                fresh = True

    # -- requests to SoundCloud -----------------------------------------------

    def _check_backoff(self) -> None:
        if self._backoff_until > self.clock():
            raise RateLimited("SoundCloud is rate limiting the gateway; try again later",
                              retry_at=self._backoff_until, clock=self.clock)

    def _rate_limited(self, headers: httpx.Headers) -> RateLimited:
        seconds = retry_after_seconds(headers.get("retry-after"), time.time())
        seconds = min(MAX_RETRY_AFTER, max(1.0, seconds if seconds is not None else DEFAULT_RETRY_AFTER))
        self._backoff_until = max(self._backoff_until, self.clock() + seconds)
        log.warning("SoundCloud answered 429; backing off for %.0f s", seconds)
        return RateLimited("SoundCloud is rate limiting the gateway; try again later",
                           retry_at=self._backoff_until, clock=self.clock)

    async def _get(self, url: str, purpose: str, *, headers: Mapping[str, str] | None = None,
                   follow: bool = True) -> _Reply:
        """One API GET: refused at once while backing off, 429 starts a back off."""
        self._check_backoff()
        self.requests[purpose] += 1
        reply = await self._http.request(url, max_bytes=API_MAX_BYTES, headers=headers, follow=follow)
        if reply.status == 429:
            raise self._rate_limited(reply.headers)
        return reply

    async def _api(self, url: str, purpose: str, params: Mapping[str, str] | None = None, *,
                   follow: bool = True) -> _Reply:
        """GET an API URL with the mode's credentials, renewing them once on 401."""
        for attempt in (0, 1):
            if self.official:
                token = await self._oauth_token()
                reply = await self._get(_with_query(url, params or {}), purpose, follow=follow,
                                        headers={"Authorization": f"OAuth {token}"})
                if reply.status == 401 and attempt == 0:
                    self._drop_token(token)
                    continue
            else:
                client_id = await self._current_client_id()
                reply = await self._get(_with_query(url, {**(params or {}), "client_id": client_id}), purpose,
                                        follow=follow)
                if reply.status == 401 and self.auto and attempt == 0:
                    await self._rediscover(client_id)
                    continue
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _api_error(reply: _Reply, what: str) -> ZtreamError:
        status = reply.status
        if status in (404, 410):
            return NotFound(f"SoundCloud has no {what} here: it is private, removed or never existed",
                            code="soundcloud_not_found")
        if status == 403:
            return Forbidden(f"SoundCloud refuses access to this {what} (private or restricted)",
                             code="soundcloud_private")
        if status == 451:
            return Unavailable(f"SoundCloud does not offer this {what} here", code="soundcloud_geo_blocked")
        if status == 401:
            return UpstreamError("SoundCloud refused the gateway's credentials", code="soundcloud_unauthorized")
        return UpstreamError(f"SoundCloud answered HTTP {status} for the {what}", code="upstream_status")

    @staticmethod
    def _json(reply: _Reply) -> Any:
        try:
            return json.loads(reply.body)
        except ValueError:
            raise UpstreamError("SoundCloud answered something that is not JSON",
                                code="soundcloud_bad_answer") from None

    # -- credentials -------------------------------------------------------------

    async def _oauth_token(self) -> str:
        """The shared OAuth token, obtained once and kept until shortly before expiry."""
        if self._token is not None and self.clock() < self._token_expires:
            return self._token
        async with self._token_lock:
            # Whoever waited on the lock finds the token the first one got.
            if self._token is not None and self.clock() < self._token_expires:
                return self._token
            self._check_backoff()
            basic = base64.b64encode(f"{self.config.client_id}:{self.config.client_secret}".encode()).decode()
            self.requests["token"] += 1
            reply = await self._http.request(
                f"{self.auth_base}/oauth/token",
                max_bytes=API_MAX_BYTES,
                method="POST",
                follow=False,
                body=b"grant_type=client_credentials",
                headers={
                    "Authorization": f"Basic {basic}",
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json; charset=utf-8",
                },
            )
            if reply.status == 429:
                raise self._rate_limited(reply.headers)
            if reply.status in (400, 401, 403):
                raise UpstreamError("SoundCloud refused the configured client credentials",
                                    code="soundcloud_unauthorized")
            if reply.status != 200:
                raise UpstreamError(f"SoundCloud's token endpoint answered HTTP {reply.status}", code="upstream_status")
            data = self._json(reply)
            token = data.get("access_token") if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                raise UpstreamError("SoundCloud's token answer has no access_token", code="soundcloud_bad_answer")
            expires_in = data.get("expires_in")
            if not isinstance(expires_in, (int, float)) or isinstance(expires_in, bool) or expires_in <= 0:
                expires_in = 3600
            # Renew a little before SoundCloud would refuse it: a minute, or
            # a tenth of a short lifetime.
            self._token_expires = self.clock() + expires_in - min(60.0, expires_in / 10)
            self._token = token
            return token

    def _drop_token(self, token: str) -> None:
        # Only the token that was refused: another request may have renewed it already.
        if self._token == token:
            self._token = None

    async def _current_client_id(self) -> str:
        if self._client_id is not None:
            return self._client_id
        async with self._discovery_lock:
            if self._client_id is None:
                self._client_id = await self._discover_client_id()
            return self._client_id

    async def _rediscover(self, stale: str) -> None:
        async with self._discovery_lock:
            if self._client_id == stale:
                log.info("SoundCloud refused the discovered client id; discovering again")
                self._client_id = await self._discover_client_id()

    async def _discover_client_id(self) -> str:
        """Find a public client id in the site's script bundles, as yt-dlp does (unofficial)."""
        self._check_backoff()
        self.requests["discovery"] += 1
        async with self._http.open(self.site.page, max_bytes=PAGE_MAX_BYTES) as opened:
            if opened.status != 200:
                raise UpstreamError(f"SoundCloud's site answered HTTP {opened.status}", code="soundcloud_client_id")
            page = (await self._http.read(opened)).decode("utf-8", "replace")
            page_url = opened.url
        scripts = find_script_urls(page, page_url, self.site.assets)
        # The client id sits in one of the last bundles: try those first.
        for script_url in reversed(scripts[-MAX_SCRIPTS:]):
            try:
                async with self._http.open(script_url, max_bytes=SCRIPT_MAX_BYTES) as opened:
                    if opened.status != 200:
                        continue
                    script = (await self._http.read(opened)).decode("utf-8", "replace")
            except ZtreamError as exc:
                log.debug("script bundle %s: %s", script_url, exc.detail)
                continue
            client_id = find_client_id(script)
            if client_id is not None:
                return client_id
        raise UpstreamError("could not discover a SoundCloud client id from the site's scripts",
                            code="soundcloud_client_id")

    # -- resolving ----------------------------------------------------------------

    async def _expand_short(self, code: str) -> SoundCloudRef:
        """Follow an ``on.soundcloud.com`` link one hop: its Location names the track page."""
        cached = self._meta.get(f"short:{code}")
        if isinstance(cached, SoundCloudRef):
            return cached
        url = urljoin(self.site.short, quote(code))
        for _ in range(MAX_SHORT_HOPS):
            reply = await self._get(url, "short", follow=False)
            location = reply.headers.get("location")
            if reply.status in (404, 410):
                raise NotFound("this SoundCloud short link leads nowhere", code="soundcloud_not_found")
            if reply.status not in (301, 302, 303, 307, 308) or not location:
                raise UpstreamError(f"the SoundCloud short link answered HTTP {reply.status}, not a redirect",
                                    code="upstream_status")
            target = urljoin(url, location)
            ref = parse_soundcloud_url(target)
            if ref.kind == "short":  # a short link to a short link
                url = urljoin(self.site.short, quote(ref.value))
                continue
            self._meta.put(f"short:{code}", ref)
            return ref
        raise UpstreamError("the SoundCloud short link redirects too often", code="too_many_redirects")

    async def _track_json(self, ref: SoundCloudRef, *, fresh: bool = False) -> dict[str, Any]:
        """The track's JSON, from the TTL cache or the API; only playable tracks are cached."""
        if not fresh:
            cached = self._meta.get(ref.cache_key)
            if cached is not None:
                return dict(cached)
        if ref.kind == "page":
            reply = await self._api(f"{self.api_base}/resolve", "resolve", {"url": ref.value})
        elif self.official:
            reply = await self._api(f"{self.api_base}/tracks/{quote('soundcloud:tracks:' + ref.value)}", "resolve")
        else:
            reply = await self._api(f"{self.api_base}/tracks/{ref.value}", "resolve")
        if reply.status != 200:
            raise self._api_error(reply, "track")
        data = self._json(reply)
        info = track_info(data, official=self.official)  # raises for what must not be cached
        self._meta.put(ref.cache_key, data)
        self._meta.put(f"id:{info.id}", data)
        return dict(data)

    async def _stream_url(self, numeric: int, *, fresh: bool) -> _Stream:
        """Resolve the signed media URL right now (and the track JSON, if stale or ``fresh``)."""
        data = await self._track_json(SoundCloudRef("id", str(numeric)), fresh=fresh)
        if self.official:
            return await self._official_stream(data)
        return await self._v2_stream(data, numeric, fresh=fresh)

    async def _v2_stream(self, data: dict[str, Any], numeric: int, *, fresh: bool) -> _Stream:
        media = data.get("media")
        transcoding, preview = choose_transcoding(media.get("transcodings") if isinstance(media, dict) else None)
        params = {}
        if isinstance(data.get("track_authorization"), str):
            params["track_authorization"] = data["track_authorization"]
        reply = await self._api(transcoding["url"], "stream_url", params)
        if reply.status in (401, 403) and not fresh:
            # track_authorization may have expired with the cached JSON.
            return await self._stream_url(numeric, fresh=True)
        if reply.status != 200:
            raise self._api_error(reply, "stream")
        answer = self._json(reply)
        url = answer.get("url") if isinstance(answer, dict) else None
        if not isinstance(url, str) or not url:
            raise UpstreamError("SoundCloud's stream answer has no url", code="soundcloud_bad_answer")
        return _Stream(url=url, protocol=transcoding["format"]["protocol"], preview=preview)

    async def _official_stream(self, data: dict[str, Any]) -> _Stream:
        # The official API names tracks by URN since 2025.
        urn = f"soundcloud:tracks:{_numeric_id(data)}"
        reply = await self._api(f"{self.api_base}/tracks/{quote(urn)}/streams", "stream_url")
        if reply.status != 200:
            raise self._api_error(reply, "stream")
        url, protocol, preview = choose_official_stream(self._json(reply))
        if parse_url(url).origin == parse_url(self.api_base).origin:
            # An API URL wants the token and answers with a redirect to the
            # signed media URL, which must not get the token: stop at the hop.
            reply = await self._api(url, "stream_url", follow=False)
            if reply.status >= 400:
                raise self._api_error(reply, "stream")
            location = reply.headers.get("location")
            answer = self._json(reply) if reply.status == 200 else None
            if reply.status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
            elif isinstance(answer, dict) and isinstance(answer.get("url"), str):
                url = answer["url"]
            else:
                raise UpstreamError("SoundCloud's stream URL led to no media", code="soundcloud_bad_answer")
        return _Stream(url=url, protocol=protocol, preview=preview)

    # -- media ----------------------------------------------------------------------

    def _media_status(self, opened: _Opened) -> None:
        status = opened.status
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise _Expired()
        if status == 429:
            raise self._rate_limited(opened.headers)
        if status in (404, 410):
            raise NotFound("SoundCloud's media is gone", code="soundcloud_media_gone")
        raise UpstreamError(f"SoundCloud's media host answered HTTP {status}", code="upstream_status")

    def _remaining(self, progress: _Progress) -> int:
        return max(1, self.max_bytes - progress.sent)

    async def _play(self, stream: _Stream, progress: _Progress) -> AsyncIterator[bytes]:
        self._check_backoff()
        async with self._http.open(stream.url, max_bytes=self._remaining(progress)) as opened:
            self._media_status(opened)
            ctype = opened.headers.get("content-type", "")
            is_hls = stream.protocol == "hls" or (stream.protocol == "auto" and _is_playlist(opened.url, ctype))
            if progress.started and is_hls != progress.hls:
                raise UpstreamError("SoundCloud changed the stream's format midway", code="soundcloud_bad_answer")
            progress.hls = is_hls
            if not is_hls:
                if ctype.lower().startswith(("text/", "application/json", "application/xml")):
                    raise NotAudio(f"SoundCloud's media URL answered {ctype.split(';')[0]}, not audio")
                async for piece in self._http.pieces(opened):
                    progress.started = True
                    progress.sent += len(piece)
                    yield piece
                return
            text = (await self._http.read(opened, PLAYLIST_MAX_BYTES)).decode("utf-8", "replace")
            playlist_url = opened.url
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
        """Parse the playlist; a master playlist's first variant is fetched in its place."""
        playlist = self._parse_playlist(text, url)
        if isinstance(playlist, hls.MasterPlaylist):
            variant = playlist.variants[0].uri
            async with self._http.open(variant, max_bytes=PLAYLIST_MAX_BYTES) as opened:
                self._media_status(opened)
                text = (await self._http.read(opened, PLAYLIST_MAX_BYTES)).decode("utf-8", "replace")
                playlist = self._parse_playlist(text, opened.url)
            if isinstance(playlist, hls.MasterPlaylist):
                raise UpstreamError("the HLS variant is another master playlist", code="hls_bad_playlist")
        if not playlist.complete:
            raise UpstreamError("live HLS playlists (no EXT-X-ENDLIST) are not supported", code="hls_live")
        if not playlist.segments:
            raise NotAudio("the HLS playlist lists no segments", code="hls_empty")
        return playlist

    @staticmethod
    def _parse_playlist(text: str, url: str) -> hls.MediaPlaylist | hls.MasterPlaylist:
        try:
            return hls.parse_playlist(text, url)
        except hls.EncryptedPlaylist as exc:
            raise NotAudio(f"the HLS stream is encrypted, which the gateway does not decrypt ({exc})",
                           code="hls_encrypted") from None
        except hls.PlaylistError as exc:
            raise UpstreamError(f"SoundCloud sent a bad HLS playlist: {exc}", code="hls_bad_playlist") from None

    async def _media_piece(self, request: hls.MediaRequest, progress: _Progress) -> bytes:
        """One init section or segment, whole (so a refusal leaves nothing half-sent)."""
        self._check_backoff()
        byterange = request.byterange
        headers = {"Range": byterange.header()} if byterange is not None else None
        async with self._http.open(request.uri, max_bytes=self._remaining(progress), headers=headers) as opened:
            self._media_status(opened)
            data = await self._http.read(opened)
        if byterange is not None:
            if opened.status != 206:  # the server ignored Range and sent the whole resource
                data = data[byterange.offset : byterange.end]
            if len(data) != byterange.length:
                raise UpstreamError("an HLS byte range came back short", code="hls_bad_range")
        return data

