"""HLS playlists (RFC 8216), parsed without any I/O.

Theory of operation
-------------------
The gateway never hands ffmpeg a URL: a source that meets HLS fetches the
media playlist and its segments itself, through the SSRF-safe fetcher, and
writes the bytes to ffmpeg's stdin in playlist order. This module is the
pure half of that: :func:`parse_playlist` takes the playlist's text and the
URL it was finally fetched from (after redirects: relative URIs resolve
against it, RFC 8216 section 4.1) and returns either

* a :class:`MediaPlaylist`: the segments in order, each with its absolute
  URI, its ``#EXTINF`` duration, its optional ``#EXT-X-BYTERANGE`` and the
  ``#EXT-X-MAP`` Media Initialization Section that applies to it (fMP4 needs
  the init section, ``ftyp`` + ``moov``, written before the first fragment);
* or a :class:`MasterPlaylist`: its variant streams, for the caller to pick
  one and fetch that playlist in turn.

:meth:`MediaPlaylist.requests` turns a media playlist into the exact list of
byte ranges to fetch and write, init sections first where they change, so the
I/O shell only walks a list and can resume from any segment index.

What is refused, with a :class:`PlaylistError` the caller maps to its own
errors: a text that is not an M3U8 playlist, a segment with no ``#EXTINF``,
a byte range that cannot be placed, and encryption (``#EXT-X-KEY`` with a
``METHOD`` other than ``NONE``: :class:`EncryptedPlaylist`), since decrypting
DRM-protected media is not the gateway's business.

The text comes from an upstream, so it is untrusted, and parsing runs on the
event loop: every cost is bounded before it is paid (docs/hls.md says why
this parser is kept rather than the ``m3u8`` package, with measurements).
Refused as well: a text over ``MAX_PLAYLIST_CHARS``, a line over
``MAX_LINE_CHARS``, more than ``MAX_SEGMENTS`` segments or
``MAX_ATTRIBUTE_TAGS`` attribute-list tags (the tags that cost a parse:
EXT-X-MAP, EXT-X-KEY, EXT-X-STREAM-INF), a duration that is negative, not a
number or over ``MAX_SEGMENT_SECONDS``, an integer of more than
``MAX_DIGITS`` digits, and any URI that is not an http(s) URL with a host
after resolution (``javascript:``, ``file:``, ``data:``...), or that holds
whitespace or control characters. Lines end at LF or CRLF only (RFC 8216
section 4.1), never at the other characters ``str.splitlines`` knows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

__all__ = [
    "ByteRange",
    "EncryptedPlaylist",
    "InitSection",
    "MAX_ATTRIBUTE_TAGS",
    "MAX_DIGITS",
    "MAX_LINE_CHARS",
    "MAX_PLAYLIST_CHARS",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_SECONDS",
    "MAX_TITLE_CHARS",
    "MasterPlaylist",
    "MediaPlaylist",
    "MediaRequest",
    "PlaylistError",
    "Segment",
    "Variant",
    "parse_attributes",
    "parse_byterange",
    "parse_playlist",
]


# Limits on untrusted input. Real playlists are far below each: SoundCloud's
# list a few hundred ~10 s segments with signed URLs of ~500 characters.
MAX_PLAYLIST_CHARS = 2_000_000  # one playlist's text
MAX_LINE_CHARS = 16_384  # one line; CDNs refuse longer URLs anyway
MAX_SEGMENTS = 20_000  # 11 hours of 2-second segments, 55 of SoundCloud's 10-second ones
MAX_ATTRIBUTE_TAGS = 4_096  # EXT-X-MAP / EXT-X-KEY / EXT-X-STREAM-INF lines
MAX_SEGMENT_SECONDS = 86_400.0  # one #EXTINF or #EXT-X-TARGETDURATION
MAX_DIGITS = 15  # byte offsets and lengths, BANDWIDTH: below 10**15 (a petabyte)
MAX_TITLE_CHARS = 300  # an #EXTINF title is kept to this many characters
_SCHEMES = frozenset({"http", "https"})


class PlaylistError(ValueError):
    """The text is not a playlist this parser can follow."""


class EncryptedPlaylist(PlaylistError):
    """The media is encrypted (``#EXT-X-KEY`` with a METHOD other than NONE)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """``length`` bytes starting at ``offset`` (RFC 8216 section 4.3.2.2)."""

    length: int
    offset: int

    @property
    def end(self) -> int:
        """The offset just past the range."""
        return self.offset + self.length

    def header(self) -> str:
        """The HTTP ``Range`` header value for this range (RFC 9110 section 14.2)."""
        return f"bytes={self.offset}-{self.end - 1}"


@dataclass(frozen=True, slots=True)
class InitSection:
    """An ``#EXT-X-MAP``: the Media Initialization Section (fMP4: ftyp + moov)."""

    uri: str
    byterange: ByteRange | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    uri: str
    duration: float
    byterange: ByteRange | None = None
    init: InitSection | None = None
    # The #EXTINF title (after the comma), at most MAX_TITLE_CHARS; live
    # radio playlists put what is playing there.
    title: str | None = None


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """One fetch of the I/O shell: a URI, maybe a byte range, and what it is."""

    uri: str
    byterange: ByteRange | None
    kind: str  # "init" | "segment"
    segment: int  # index of the segment this request belongs to


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    segments: tuple[Segment, ...]
    target_duration: float | None = None
    media_sequence: int = 0
    endlist: bool = False
    playlist_type: str | None = None  # "VOD" | "EVENT" | None

    @property
    def duration(self) -> float:
        """The sum of the segments' ``#EXTINF`` durations, in seconds."""
        return sum(s.duration for s in self.segments)

    @property
    def complete(self) -> bool:
        """True when no segment will ever be added (ENDLIST, or a VOD playlist)."""
        return self.endlist or self.playlist_type == "VOD"

    def requests(self, start: int = 0, *, holding: int | None = None) -> list[MediaRequest]:
        """The fetches that play segments ``start..`` in order.

        An init section is requested before the first segment that uses it
        and again only where it changes. ``holding`` is, when resuming, the
        index of the segment whose init section the consumer wrote last: it
        is compared in *this* playlist, so a playlist re-signed since (every
        URI changed) still resumes without a second init section.
        """
        out: list[MediaRequest] = []
        current = None
        if holding is not None and 0 <= holding < len(self.segments):
            current = self.segments[holding].init
        for index in range(start, len(self.segments)):
            segment = self.segments[index]
            if segment.init is not None and segment.init != current:
                out.append(MediaRequest(segment.init.uri, segment.init.byterange, "init", index))
                current = segment.init
            out.append(MediaRequest(segment.uri, segment.byterange, "segment", index))
        return out


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str
    bandwidth: int | None = None
    codecs: str | None = None


@dataclass(frozen=True, slots=True)
class MasterPlaylist:
    variants: tuple[Variant, ...]


# An attribute list (RFC 8216 section 4.2): NAME=value pairs separated by
# commas, where a quoted-string value may itself contain commas.
_ATTRIBUTE = re.compile(r'\s*([A-Z0-9-]+)=("[^"\r\n]*"|[^,]*)\s*(?:,|$)')
_BYTERANGE = re.compile(rf"^([0-9]{{1,{MAX_DIGITS}}})(?:@([0-9]{{1,{MAX_DIGITS}}}))?$")
_INTEGER = re.compile(rf"^[0-9]{{1,{MAX_DIGITS}}}$")
# Whitespace and control characters (C0, DEL, C1) never belong in a URI (RFC 3986 section 2).
_NOT_IN_URI = re.compile(r"[\x00-\x20\x7f-\x9f]")
_ATTRIBUTE_TAGS = frozenset({"#EXT-X-KEY", "#EXT-X-MAP", "#EXT-X-STREAM-INF"})


def parse_attributes(text: str) -> dict[str, str]:
    """Parse an attribute list; quoted values come back without their quotes.

    Raises ``PlaylistError`` if the text is not an attribute list.
    """
    out: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _ATTRIBUTE.match(text, pos)
        if match is None or match.end() == pos:
            raise PlaylistError(f"malformed attribute list: {text!r}")
        name, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        out[name] = value
        pos = match.end()
    return out


def parse_byterange(text: str, *, previous_end: int | None) -> ByteRange:
    """Parse ``<n>[@<o>]``; without ``@o`` the range follows ``previous_end``.

    Raises ``PlaylistError`` if malformed, or if the offset is missing and
    there is no previous sub-range of the same resource to follow.
    """
    match = _BYTERANGE.match(text.strip())
    if match is None:
        raise PlaylistError(f"malformed byte range {text!r}")
    length = int(match.group(1))
    if match.group(2) is not None:
        offset = int(match.group(2))
    elif previous_end is not None:
        offset = previous_end
    else:
        raise PlaylistError(f"byte range {text!r} has no offset and follows no range of the same URI")
    return ByteRange(length=length, offset=offset)


def _number(tag: str, value: str, maximum: float = MAX_SEGMENT_SECONDS) -> float:
    try:
        number = float(value)
    except ValueError:
        raise PlaylistError(f"{tag}: {value[:40]!r} is not a number") from None
    # NaN fails both comparisons; inf and absurd values fail the second.
    if not 0 <= number <= maximum:
        raise PlaylistError(f"{tag}: {value[:40]!r} is out of range")
    return number


def _uri(base_url: str, reference: str) -> str:
    """``reference`` resolved against ``base_url``; only an http(s) URL with a host is taken."""
    if not reference or _NOT_IN_URI.search(reference):
        raise PlaylistError(f"URI {reference[:60]!r} is empty or holds whitespace or control characters")
    try:
        uri = urljoin(base_url, reference)
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError:
        raise PlaylistError(f"URI {reference[:60]!r} is malformed") from None
    if parts.scheme.lower() not in _SCHEMES or not host or parts.username is not None:
        raise PlaylistError(f"URI {reference[:60]!r} is not an http(s) URL with a host")
    return uri


def parse_playlist(text: str, base_url: str) -> MediaPlaylist | MasterPlaylist:
    """Parse an M3U8 playlist fetched from ``base_url``.

    Takes the playlist text (a leading BOM and CRLF line ends are fine) and
    the URL it came from, against which every relative URI is resolved.
    Returns a ``MediaPlaylist`` or, if the text lists variant streams
    (``#EXT-X-STREAM-INF``), a ``MasterPlaylist``.

    Raises:
        EncryptedPlaylist: ``#EXT-X-KEY`` with a METHOD other than NONE.
        PlaylistError: not an M3U8 playlist, a segment with no ``#EXTINF``,
            a malformed tag the parser needs, a byte range with no place, a
            URI that is not http(s), or a limit exceeded (the module's
            ``MAX_*``); never another exception, whatever the text.
    """
    if len(text) > MAX_PLAYLIST_CHARS:
        raise PlaylistError(f"the playlist is over {MAX_PLAYLIST_CHARS} characters")
    # Only LF ends a line (a CR before it is dropped by strip).
    lines = [line.strip(" \t\r") for line in text.lstrip("\ufeff").split("\n")]
    lines = [line for line in lines if line]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("not an M3U8 playlist (no #EXTM3U header)")
    if max(map(len, lines)) > MAX_LINE_CHARS:
        raise PlaylistError(f"the playlist has a line over {MAX_LINE_CHARS} characters")

    segments: list[Segment] = []
    variants: list[Variant] = []
    target_duration: float | None = None
    media_sequence = 0
    endlist = False
    playlist_type: str | None = None
    init: InitSection | None = None
    duration: float | None = None
    title: str | None = None
    byterange_text: str | None = None
    stream_inf: dict[str, str] | None = None
    # Where the previous sub-range of each URI ended: EXT-X-BYTERANGE
    # without an offset continues from there (RFC 8216 section 4.3.2.2).
    range_ends: dict[str, int] = {}
    attribute_tags = 0

    for line in lines[1:]:
        if line.startswith("#"):
            tag, _, value = line.partition(":")
            if tag in _ATTRIBUTE_TAGS:
                attribute_tags += 1
                if attribute_tags > MAX_ATTRIBUTE_TAGS:
                    raise PlaylistError(f"the playlist has over {MAX_ATTRIBUTE_TAGS} EXT-X-MAP/KEY/STREAM-INF tags")
            if tag == "#EXTINF":
                seconds, _, text = value.partition(",")
                duration = _number(tag, seconds)
                title = " ".join(text.split())[:MAX_TITLE_CHARS] or None
            elif tag == "#EXT-X-BYTERANGE":
                byterange_text = value
            elif tag == "#EXT-X-TARGETDURATION":
                target_duration = _number(tag, value)
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                if not _INTEGER.match(value.strip()):
                    raise PlaylistError(f"{tag}: {value[:40]!r} is not a decimal integer (at most {MAX_DIGITS} digits)")
                media_sequence = int(value)
            elif tag == "#EXT-X-ENDLIST":
                endlist = True
            elif tag == "#EXT-X-PLAYLIST-TYPE":
                playlist_type = value.strip().upper() or None
            elif tag == "#EXT-X-KEY":
                method = parse_attributes(value).get("METHOD", "")
                if method != "NONE":
                    raise EncryptedPlaylist(f"the media is encrypted (EXT-X-KEY METHOD={method or '?'})")
            elif tag == "#EXT-X-MAP":
                attrs = parse_attributes(value)
                if "URI" not in attrs:
                    raise PlaylistError("EXT-X-MAP without URI")
                uri = _uri(base_url, attrs["URI"])
                map_range = None
                if "BYTERANGE" in attrs:
                    # An init section's range with no offset starts at 0.
                    map_range = parse_byterange(attrs["BYTERANGE"], previous_end=0)
                init = InitSection(uri=uri, byterange=map_range)
            elif tag == "#EXT-X-STREAM-INF":
                stream_inf = parse_attributes(value)
            # Every other tag (VERSION, DISCONTINUITY, PROGRAM-DATE-TIME,
            # INDEPENDENT-SEGMENTS, I-FRAME-STREAM-INF, comments...) changes
            # nothing about which bytes to fetch, in which order.
            continue

        uri = _uri(base_url, line)
        if stream_inf is not None:
            bandwidth = stream_inf.get("BANDWIDTH")
            variants.append(
                Variant(
                    uri=uri,
                    bandwidth=int(bandwidth) if bandwidth and _INTEGER.match(bandwidth) else None,
                    codecs=stream_inf.get("CODECS"),
                )
            )
            stream_inf = None
            continue
        if duration is None:
            raise PlaylistError(f"segment {line!r} has no #EXTINF")
        byterange = None
        if byterange_text is not None:
            byterange = parse_byterange(byterange_text, previous_end=range_ends.get(uri))
            range_ends[uri] = byterange.end
        if len(segments) >= MAX_SEGMENTS:
            raise PlaylistError(f"the playlist lists over {MAX_SEGMENTS} segments")
        segments.append(Segment(uri=uri, duration=duration, byterange=byterange, init=init, title=title))
        duration = None
        title = None
        byterange_text = None

    if variants:
        if segments:
            raise PlaylistError("the playlist mixes variant streams and media segments")
        return MasterPlaylist(variants=tuple(variants))
    return MediaPlaylist(
        segments=tuple(segments),
        target_duration=target_duration,
        media_sequence=media_sequence,
        endlist=endlist,
        playlist_type=playlist_type,
    )
