"""ICY (SHOUTcast/Icecast) in-band metadata: the audio without it, and the titles it carried. Pure.

Theory of operation: a client that asks with ``Icy-MetaData: 1`` gets an
``icy-metaint: N`` header, and the body is then N audio bytes, one length
byte L, L x 16 bytes of metadata (``StreamTitle='Artist - Title';`` and
others, padded with NULs), N audio bytes again, and so on. ``IcyDemuxer`` is
fed the body in pieces of any size (``feed(data)``) and returns what they
completed: audio bytes, and a ``NowPlaying`` each time ``StreamTitle``
changes (an empty title is a title too: the station cleared it). A block
is at most 255 x 16 bytes, so the demuxer never holds more than that.
There is no specification beyond the SHOUTcast and Icecast sources; titles
are UTF-8 in practice, Latin-1 from older encoders (the fallback).
"""

from __future__ import annotations

import re

from ..media.upstream import NowPlaying

__all__ = ["IcyDemuxer", "IcyError", "MAX_METAINT", "parse_metaint", "stream_title"]

# No server uses more than a few tens of KB (Icecast: 16000, SHOUTcast: 8192).
MAX_METAINT = 1 << 20
# Titles longer than this are cut (a block holds at most 4080 bytes anyway).
MAX_TITLE = 500

_TITLE = re.compile(rb"StreamTitle='(.*?)';(?=[A-Za-z]+=|\x00|$)", re.DOTALL)


class IcyError(ValueError):
    """An ``icy-metaint`` header that is not a sane positive integer."""


def parse_metaint(value: str | None) -> int | None:
    """The ``icy-metaint`` header's interval; None when absent; ``IcyError`` when bad."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_METAINT:
        raise IcyError(f"icy-metaint {value[:20]!r} is not an interval from 1 to {MAX_METAINT}")
    return int(text)


def stream_title(block: bytes) -> str | None:
    """The ``StreamTitle`` of one metadata block (NULs stripped), None if the block has none."""
    match = _TITLE.search(block.rstrip(b"\x00"))
    if match is None:
        return None
    raw = match.group(1)
    try:
        title = raw.decode("utf-8")
    except UnicodeDecodeError:
        title = raw.decode("latin-1")
    title = "".join(ch for ch in title if ch.isprintable()).strip()
    return title[:MAX_TITLE]


class IcyDemuxer:
    """Splits an ICY body into audio bytes and ``NowPlaying`` events (see the module docstring)."""

    def __init__(self, metaint: int) -> None:
        if not 0 < metaint <= MAX_METAINT:
            raise IcyError(f"icy-metaint {metaint} out of range")
        self.metaint = metaint
        self._audio_left = metaint  # audio bytes before the next length byte
        self._meta_left = -1  # metadata bytes still to read; -1: not in a block
        self._meta = bytearray()
        self._title: str | None = None

    def feed(self, data: bytes) -> list[bytes | NowPlaying]:
        out: list[bytes | NowPlaying] = []
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self._meta_left < 0 and self._audio_left > 0:
                take = min(self._audio_left, len(view) - pos)
                out.append(bytes(view[pos : pos + take]))
                pos += take
                self._audio_left -= take
            elif self._meta_left < 0:  # the length byte
                self._meta_left = view[pos] * 16
                pos += 1
                self._meta.clear()
                if self._meta_left == 0:
                    self._end_block(out)
            else:
                take = min(self._meta_left, len(view) - pos)
                self._meta += view[pos : pos + take]
                pos += take
                self._meta_left -= take
                if self._meta_left == 0:
                    self._end_block(out)
        # Adjacent audio pieces of one feed are one piece.
        merged: list[bytes | NowPlaying] = []
        for item in out:
            if isinstance(item, bytes) and merged and isinstance(merged[-1], bytes):
                merged[-1] += item
            else:
                merged.append(item)
        return merged

    def _end_block(self, out: list[bytes | NowPlaying]) -> None:
        if self._meta:
            title = stream_title(bytes(self._meta))
            if title is not None and title != self._title:
                self._title = title
                out.append(NowPlaying(title))
        self._meta.clear()
        self._meta_left = -1
        self._audio_left = self.metaint
