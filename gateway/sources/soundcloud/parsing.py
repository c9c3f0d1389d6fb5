"""SoundCloud's URLs, API answers and site pages, parsed without any I/O.

Everything here takes text or decoded JSON and returns a typed record or
raises a ``ZtreamError``: what a user's URL names (:class:`SoundCloudRef`),
which stream of a track to play (:func:`choose_transcoding` for api-v2,
:func:`choose_official_stream` for the official API), the track's metadata
(:func:`track_info`), a ``Retry-After`` header, and the script bundles and
client id of the site's page (``client_id = "auto"``).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from urllib.parse import SplitResult, urlencode, urljoin, urlsplit

from ...errors import BadRequest, Forbidden, UpstreamError
from .errors import Unavailable

__all__ = [
    "MAX_SET_TRACKS",
    "SetEntry",
    "SetInfo",
    "SoundCloudRef",
    "StreamChoice",
    "TrackInfo",
    "TranscodingChoice",
    "choose_official_stream",
    "choose_transcoding",
    "find_client_id",
    "find_script_urls",
    "is_soundcloud_url",
    "locator_id",
    "numeric_id",
    "parse_soundcloud_set_url",
    "parse_soundcloud_url",
    "playlist_info",
    "retry_after_seconds",
    "tracks_answer",
    "track_info",
    "with_query",
]

_PAGE_HOSTS = frozenset({"soundcloud.com", "www.soundcloud.com", "m.soundcloud.com"})
_SHORT_HOSTS = frozenset({"on.soundcloud.com"})
_API_HOSTS = frozenset({"api.soundcloud.com", "api-v2.soundcloud.com"})
_URN = re.compile(r"^soundcloud:tracks:(\d{1,20})$")
_API_TRACK_PATH = re.compile(r"^/tracks/(?:soundcloud:tracks:)?(\d{1,20})/?$")
_SHORT_CODE = re.compile(r"^/([A-Za-z0-9_-]{1,64})/?$")
_PLAYLIST_URN = re.compile(r"^soundcloud:playlists:(\d{1,20})$")
_API_PLAYLIST_PATH = re.compile(r"^/playlists/(?:soundcloud:playlists:)?(\d{1,20})/?$")
_SET_PAGE_PATH = re.compile(r"^/([^/]+)/sets/([^/]+)/?$")

# The most tracks one set gives: a set is resolved whole, so this bounds the
# requests (one /tracks?ids= batch per TRACK_BATCH ids) and the answer.
MAX_SET_TRACKS = 500


@dataclass(frozen=True, slots=True)
class SoundCloudRef:
    """What a user's URL names: ``kind`` is "page", "short" or "id"."""

    kind: Literal["page", "short", "id"]
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


def _split_web_url(url: str, what: str) -> tuple[SplitResult, str]:
    """``url`` split, with its lower-cased host (trailing dot dropped).

    Raises:
        BadRequest(code="bad_url"): not parseable, not http(s), or carrying
        credentials or an explicit port (no SoundCloud URL has those);
        ``what`` ("track", "set") names the expected kind in the message.
    """
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port
    except ValueError:
        raise BadRequest("not a valid SoundCloud URL", code="bad_url") from None
    if parts.scheme not in ("http", "https") or parts.username is not None or port is not None:
        raise BadRequest(f"not a SoundCloud {what} URL", code="bad_url")
    return parts, host


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
    parts, host = _split_web_url(url, "track")
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


def parse_soundcloud_set_url(url: str) -> SoundCloudRef:
    """Classify a SoundCloud set URL without any request.

    Takes ``https://(www.|m.)soundcloud.com/<user>/sets/<name>`` (query and
    fragment dropped) and ``https://api(-v2).soundcloud.com/playlists/<id>``
    (also ``/playlists/soundcloud:playlists:<id>``). Returns a "page" ref
    (the canonical page URL) or an "id" ref (the playlist's numeric id).

    Raises:
        BadRequest(code="bad_url"): anything else.
    """
    parts, host = _split_web_url(url, "set")
    if host in _API_HOSTS:
        api = _API_PLAYLIST_PATH.match(parts.path)
        if api is not None:
            return SoundCloudRef("id", api.group(1))
    elif host in _PAGE_HOSTS:
        page = _SET_PAGE_PATH.match(parts.path)
        if page is not None:
            return SoundCloudRef("page", f"https://soundcloud.com/{page.group(1)}/sets/{page.group(2)}")
    raise BadRequest("not a SoundCloud set URL (expected /<user>/sets/<name> or /playlists/<id>)", code="bad_url")


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


class TranscodingChoice(NamedTuple):
    """The api-v2 transcoding to play; a tuple, so ``transcoding, preview = ...`` reads it."""

    transcoding: dict[str, Any]
    preview: bool  # only a ``snipped`` 30-second preview exists


def choose_transcoding(transcodings: object) -> TranscodingChoice:
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
    return TranscodingChoice(best, snipped)


# Official /streams keys, best first, and how their URL is played. The mp3
# and opus keys disappeared in November 2025 but are still taken if present.
_OFFICIAL_STREAMS: tuple[tuple[str, Literal["hls", "progressive"]], ...] = (
    ("hls_aac_160_url", "hls"),
    ("hls_aac_96_url", "hls"),
    ("http_mp3_128_url", "progressive"),
    ("hls_mp3_128_url", "hls"),
    ("hls_opus_64_url", "hls"),
)


class StreamChoice(NamedTuple):
    """An official stream URL and how to play it."""

    url: str
    protocol: Literal["hls", "progressive", "auto"]
    preview: bool


def choose_official_stream(streams: object) -> StreamChoice:
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
                return StreamChoice(url, protocol, False)
        preview = streams.get("preview_mp3_128_url")
        if isinstance(preview, str) and preview:
            return StreamChoice(preview, "auto", True)
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


def locator_id(locator: str) -> int | None:
    """The numeric id of a ``soundcloud:tracks:<id>`` locator, or None for anything else."""
    match = _URN.match(locator)
    return int(match.group(1)) if match else None


def numeric_id(data: Mapping[str, Any]) -> int:
    """The track id of a track's JSON (``id``, else its ``urn``).

    Raises UpstreamError(code="soundcloud_bad_answer") if it has neither.
    """
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
    numeric = numeric_id(data)
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


@dataclass(frozen=True, slots=True)
class SetEntry:
    """One track of a set, in the set's order: its id, and its JSON if the set carried it whole."""

    id: int
    data: dict[str, Any] | None  # None for a stub (api-v2 sends only ids beyond the first few)


@dataclass(frozen=True, slots=True)
class SetInfo:
    """The parts of a SoundCloud set's (playlist's) JSON the gateway uses."""

    id: int
    title: str
    permalink: str | None
    entries: tuple[SetEntry, ...]  # at most MAX_SET_TRACKS, in the set's order, no id twice


def _is_full_track(data: Mapping[str, Any]) -> bool:
    # A stub has an id (and a few flags) but no title and no media; a whole
    # track object always has a title.
    return isinstance(data.get("title"), str)


def playlist_info(data: object, *, limit: int = MAX_SET_TRACKS) -> SetInfo:
    """Check a set's JSON (api-v2 or official) and list its tracks in order.

    ``kind`` must be "playlist" (or api-v2's "system-playlist"); a track
    repeated in the set is kept once, at its first place; entries without a
    usable id are dropped; at most ``limit`` entries are kept.

    Raises:
        BadRequest(code="soundcloud_not_a_set"): the URL names a track, a user...
        UpstreamError(code="soundcloud_bad_answer"): not a playlist object at all.
    """
    if not isinstance(data, dict):
        raise UpstreamError("SoundCloud answered something that is not a set", code="soundcloud_bad_answer")
    kind = data.get("kind")
    if kind not in ("playlist", "system-playlist"):
        raise BadRequest(f"this SoundCloud URL is a {kind or 'thing'}, not a set", code="soundcloud_not_a_set")
    raw_id = data.get("id")
    urn = data.get("urn")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool) and raw_id > 0:
        numeric = raw_id
    elif isinstance(urn, str) and _PLAYLIST_URN.match(urn):
        numeric = int(urn.rsplit(":", 1)[1])
    else:
        raise UpstreamError("SoundCloud answered a set without an id", code="soundcloud_bad_answer")
    raw_tracks = data.get("tracks")
    entries: list[SetEntry] = []
    seen: set[int] = set()
    for raw in raw_tracks if isinstance(raw_tracks, list) else []:
        if len(entries) >= limit:
            break
        if not isinstance(raw, dict):
            continue
        try:
            track_id = numeric_id(raw)
        except UpstreamError:
            continue
        if track_id in seen:
            continue
        seen.add(track_id)
        entries.append(SetEntry(track_id, raw if _is_full_track(raw) else None))
    title = data.get("title")
    permalink = data.get("permalink_url")
    return SetInfo(
        id=numeric,
        title=title if isinstance(title, str) and title else f"SoundCloud set {numeric}",
        permalink=permalink if isinstance(permalink, str) and permalink else None,
        entries=tuple(entries),
    )


def tracks_answer(data: object) -> dict[int, dict[str, Any]]:
    """A ``/tracks?ids=`` (or ``?urns=``) answer by track id: a list, or ``{"collection": [...]}``.

    Objects without an id or not whole tracks are left out (the caller skips
    those tracks, as it skips the ones SoundCloud left out: private, removed).
    """
    if isinstance(data, dict):
        data = data.get("collection")
    found: dict[int, dict[str, Any]] = {}
    for raw in data if isinstance(data, list) else []:
        if isinstance(raw, dict) and _is_full_track(raw):
            try:
                found.setdefault(numeric_id(raw), raw)
            except UpstreamError:
                continue
    return found


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


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` appended to its query (kept as it is when there are none)."""
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)
