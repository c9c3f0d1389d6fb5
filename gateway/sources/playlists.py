"""M3U and PLS playlists: a pure parser, and a fetch through the SSRF-safe fetcher.

A playlist URL given to ``/player/?url=`` becomes a multi-track player; one
posted to ``/v1/tracks`` is a station file, which registers its first entry
that registers (``UrlSource``). The playlist is untrusted input from an upstream: its size, its line length and
its entry count are bounded, and only absolute http(s) entries (or entries
relative to the playlist's own URL) are kept. The entries are then
registered like any URL (``UrlSource.register``), so each one passes the
same host and address checks as a URL posted to ``/v1/tracks``; the
playlist's own URL is fetched with ``SafeFetcher`` like any upstream.

Formats: M3U / extended M3U (``#EXTM3U``, ``#EXTINF:<seconds>,<title>``) and
PLS (``[playlist]``, ``FileN=``, ``TitleN=``, ``LengthN=``). HLS (``.m3u8``
with ``#EXT-X-`` tags, :func:`is_hls`) is a single stream, not a list of
tracks: the parser refuses it, and ``UrlSource`` follows it instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from ..errors import BadRequest
from .fetch import SafeFetcher

__all__ = [
    "PlaylistEntry",
    "parse_playlist",
    "looks_like_playlist_url",
    "fetch_playlist",
    "fetch_playlist_text",
    "is_hls",
    "MAX_PLAYLIST_BYTES",
    "MAX_ENTRIES",
]

MAX_PLAYLIST_BYTES = 256 * 1024
MAX_ENTRIES = 100
MAX_LINE = 4096
MAX_TITLE = 300

_PLAYLIST_TYPES = frozenset({
    "audio/x-mpegurl",
    "audio/mpegurl",
    "application/x-mpegurl",
    "application/vnd.apple.mpegurl",
    "audio/x-scpls",
    "application/pls+xml",
})
_PLS_KEY = re.compile(r"^(file|title|length)(\d{1,4})\s*=\s*(.*)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class PlaylistEntry:
    url: str
    title: str | None = None


def looks_like_playlist_url(url: str) -> bool:
    """Whether ``url``'s path names an M3U or PLS file (``.m3u``, ``.pls``; not HLS ``.m3u8``)."""
    path = urlsplit(url).path.lower()
    return path.endswith(".m3u") or path.endswith(".pls")


def _entry_url(raw: str, base: str) -> str | None:
    raw = raw.strip()
    if not raw or len(raw) > MAX_LINE:
        return None
    url = urljoin(base, raw)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None  # file:, rtsp:, a Windows path...: nothing the gateway may fetch
    return url


def _title(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = " ".join(raw.split())[:MAX_TITLE]
    return text or None


def parse_playlist(text: str, base_url: str) -> list[PlaylistEntry]:
    """The entries of an M3U or PLS document, in order, at most ``MAX_ENTRIES``.

    Raises:
        BadRequest(code="playlist_bad"): HLS, or no usable entry.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.lower() == "[playlist]":
        entries = _parse_pls(lines, base_url)
    else:
        if is_hls(text):
            raise BadRequest("this is an HLS stream, not a playlist of tracks", code="playlist_bad")
        entries = _parse_m3u(lines, base_url)
    if not entries:
        raise BadRequest("the playlist has no http(s) entry", code="playlist_bad")
    return entries


def _parse_m3u(lines: list[str], base: str) -> list[PlaylistEntry]:
    out: list[PlaylistEntry] = []
    title: str | None = None
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.upper().startswith("#EXTINF:") and "," in line:
                title = _title(line.split(",", 1)[1])
            continue
        url = _entry_url(line, base)
        if url is not None:
            out.append(PlaylistEntry(url, title))
            if len(out) >= MAX_ENTRIES:
                break
        title = None
    return out


def _parse_pls(lines: list[str], base: str) -> list[PlaylistEntry]:
    files: dict[int, str] = {}
    titles: dict[int, str] = {}
    for line in lines:
        m = _PLS_KEY.match(line.strip())
        if m is None:
            continue
        key, n, value = m.group(1).lower(), int(m.group(2)), m.group(3)
        if key == "file":
            url = _entry_url(value, base)
            if url is not None:
                files.setdefault(n, url)
        elif key == "title":
            t = _title(value)
            if t:
                titles.setdefault(n, t)
    return [PlaylistEntry(files[n], titles.get(n)) for n in sorted(files)][:MAX_ENTRIES]


async def fetch_playlist_text(fetcher: SafeFetcher, url: str, *, max_bytes: int = MAX_PLAYLIST_BYTES) -> tuple[str, str]:
    """Fetch ``url`` through the safe fetcher as a playlist document: (text, final URL).

    The content type is judged as a whole (``audio/mpegurl`` is a playlist,
    ``audio/mpeg`` is audio): a playlist type, any ``text/`` but HTML,
    ``application/octet-stream`` or none are read; HTML, audio and video
    types are refused unread.

    Raises: what ``SafeFetcher.stream`` raises (host policy, addresses, size,
    status), and BadRequest(code="playlist_bad") for an answer that is not a
    playlist (HTML, audio, binary).
    """
    async with fetcher.stream(url, max_bytes=max_bytes) as response:
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not _playlist_type(ctype):
            raise BadRequest(f"the playlist URL answered {ctype}, not a playlist", code="playlist_bad")
        body = bytearray()
        async for piece in response.aiter_bytes():
            body += piece
    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError:
        text = bytes(body).decode("latin-1")  # PLS and old M3U files are often Latin-1; it decodes any byte
    if "\x00" in text:
        raise BadRequest("the playlist is not text", code="playlist_bad")
    # relative entries resolve against the final URL, after redirects
    return text, response.url


def _playlist_type(ctype: str) -> bool:
    """Whether an answer of content type ``ctype`` may be a playlist (read it and see)."""
    if not ctype or ctype in _PLAYLIST_TYPES or ctype == "application/octet-stream":
        return True
    if ctype == "text/html":
        return False
    # Whole types, never prefixes: "audio/mpegurl" starts with "audio/mpeg".
    return ctype.startswith("text/")


def is_hls(text: str) -> bool:
    """Whether an M3U document is an HLS playlist (RFC 8216 ``#EXT-X-`` tags), one stream, not a list."""
    return any(line.startswith("#EXT-X-") for line in text.replace("\r", "\n").split("\n"))


async def fetch_playlist(fetcher: SafeFetcher, url: str) -> list[PlaylistEntry]:
    """Fetch ``url`` through the safe fetcher and parse it.

    Raises: what ``fetch_playlist_text`` raises, and what ``parse_playlist``
    raises (``playlist_bad`` for HLS or no usable entry).
    """
    text, final_url = await fetch_playlist_text(fetcher, url)
    return parse_playlist(text, final_url)
