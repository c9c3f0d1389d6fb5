"""Now-playing titles of an Ogg stream (Opus, Vorbis, FLAC): its comment headers. Pure.

Theory of operation: Icecast sends no ICY metadata on an Ogg mount. A source
that changes tracks ends the logical stream and begins a new one (a *chained*
Ogg stream) whose header packets carry the new Vorbis comments (``TITLE``,
``ARTIST``), and Icecast gives a new listener the current stream's headers
first. ``OggTitles`` is fed the body in pieces of any size (``feed(data)``)
and returns a ``NowPlaying`` each time a logical stream's comments give a
title different from the last (``"Artist - Title"``, either alone, or ``""``
when a stream has neither: the title was cleared). It never changes or holds
back the audio: the caller passes the same bytes on to ffmpeg.

Ogg framing (RFC 3533): pages of a 27-byte header (``OggS``, version 0, the
flags: 2 = first page of a logical stream, 4 = last; the stream's serial
number; the segment count), a segment table, and the segments; a packet ends
at a segment shorter than 255. The comment header is each stream's second
packet: ``OpusTags``, ``\\x03vorbis`` (Vorbis I), or the VORBIS_COMMENT
metadata block (FLAC-in-Ogg, whose first header packet is ``\\x7fFLAC``).

Bounds: a page is at most ``MAX_PAGE`` bytes, so at most one is held while
incomplete; a comment packet is collected up to ``MAX_COMMENTS`` bytes
(embedded cover art makes some much larger: such a stream gives no title);
at most ``MAX_STREAMS`` logical streams are followed at once. Bytes that are
not a page are skipped up to the next ``OggS`` (resynchronised, never an
error): a title is a courtesy, and the audio decides whether the stream plays.
"""

from __future__ import annotations

import struct

from ..media.upstream import NowPlaying

__all__ = ["OggTitles", "comment_title", "MAX_COMMENTS", "MAX_PAGE", "MAX_STREAMS"]

MAX_PAGE = 27 + 255 + 255 * 255
MAX_COMMENTS = 64 * 1024
MAX_STREAMS = 8
MAX_TITLE = 500  # as ICY titles (icy.py)

_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, sequence, crc, segments
_BOS, _EOS = 2, 4

# First-packet magic -> where the comment packet's comments start (after its own magic).
_CODECS = {b"OpusHead": (b"OpusTags", 8), b"\x01vorbis": (b"\x03vorbis", 7), b"\x7fFLAC": (b"", 4)}


def comment_title(packet: bytes, skip: int) -> str:
    """``"Artist - Title"`` from a Vorbis comment block starting at ``skip`` (either alone; "" for neither).
    A block cut short gives what was read before the cut."""
    fields: dict[str, str] = {}
    pos = skip
    try:
        (vendor,) = struct.unpack_from("<I", packet, pos)
        pos += 4 + vendor
        (count,) = struct.unpack_from("<I", packet, pos)
        pos += 4
        for _ in range(min(count, len(packet))):
            (size,) = struct.unpack_from("<I", packet, pos)
            pos += 4
            if pos + size > len(packet):
                break
            key, sep, value = packet[pos : pos + size].partition(b"=")
            pos += size
            name = key.decode("ascii", "replace").upper()
            if sep and name in ("TITLE", "ARTIST") and name not in fields:
                fields[name] = _text(value)
    except struct.error:
        pass
    title, artist = fields.get("TITLE", ""), fields.get("ARTIST", "")
    return (f"{artist} - {title}" if artist and title else artist or title)[:MAX_TITLE]


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return "".join(ch for ch in text if ch.isprintable()).strip()


class _Stream:
    """One logical stream's headers, while its comment packet is awaited."""

    __slots__ = ("codec", "packets", "packet", "done")

    def __init__(self) -> None:
        self.codec: bytes | None = None  # the first packet's magic (a key of _CODECS)
        self.packets = 0  # packets completed
        self.packet = bytearray()
        self.done = False  # its comments were read, or will not be


class OggTitles:
    """Titles from an Ogg stream's comment headers (see the module docstring)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._streams: dict[int, _Stream] = {}
        self._title: str | None = None

    def feed(self, data: bytes) -> list[NowPlaying]:
        out: list[NowPlaying] = []
        self._buf += data
        while True:
            start = self._buf.find(b"OggS")
            if start < 0:
                del self._buf[: max(0, len(self._buf) - 3)]  # keep what could begin "OggS"
                return out
            if start:
                del self._buf[:start]
            if len(self._buf) < _HEADER.size:
                return out
            _, version, flags, _, serial, _, _, segments = _HEADER.unpack_from(self._buf)
            if version != 0:
                del self._buf[:4]  # "OggS" inside other bytes: look further
                continue
            lacing_end = _HEADER.size + segments
            if len(self._buf) < lacing_end:
                return out
            lacing = self._buf[_HEADER.size : lacing_end]
            end = lacing_end + sum(lacing)
            if len(self._buf) < end:
                return out
            followed = self._streams.get(serial)
            if flags & _BOS or (followed is not None and not followed.done):  # else only its flags matter
                self._page(bool(flags & _BOS), serial, bytes(lacing), bytes(self._buf[lacing_end:end]), out)
            if flags & _EOS:
                self._streams.pop(serial, None)
            del self._buf[:end]

    def _page(self, first: bool, serial: int, lacing: bytes, body: bytes, out: list[NowPlaying]) -> None:
        if first:
            if len(self._streams) >= MAX_STREAMS:
                self._streams.pop(next(iter(self._streams)))
            self._streams[serial] = _Stream()
        stream = self._streams[serial]  # feed calls only for a new stream or one still awaited
        pos = 0
        for size in lacing:
            stream.packet += body[pos : pos + size]
            pos += size
            if len(stream.packet) > MAX_COMMENTS:
                stream.done = True
            elif size < 255:
                self._packet(stream, bytes(stream.packet), out)
                stream.packet.clear()
            if stream.done:
                break

    def _packet(self, stream: _Stream, packet: bytes, out: list[NowPlaying]) -> None:
        stream.packets += 1
        if stream.packets == 1:
            stream.codec = next((magic for magic in _CODECS if packet.startswith(magic)), None)
            stream.done = stream.codec is None  # not audio this knows (a video or skeleton stream)
            return
        stream.done = True
        assert stream.codec is not None
        magic, skip = _CODECS[stream.codec]
        if stream.codec == b"\x7fFLAC" and (not packet or packet[0] & 0x7F != 4):
            return  # no VORBIS_COMMENT block where the mapping puts it
        if not packet.startswith(magic):
            return
        title = comment_title(packet, skip)
        if title != self._title:
            self._title = title
            out.append(NowPlaying(title))
