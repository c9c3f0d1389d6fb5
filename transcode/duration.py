"""How long the input will be, known before the transcode ends: ffmpeg's input dump.

Theory of operation
-------------------

The transcode's ffmpeg logs at ``level+info`` (``transcode/ffmpeg.py``): every
line carries its level (``[info] ...``, ``[mp3 @ 0x55...] [error] ...``). Once
it has probed the input, before it writes any output, it dumps what it found
at info level, as ffprobe does::

    [info] Input #0, mp3, from 'pipe:0':
    [info]   Duration: 00:00:30.00, start: 0.025057, bitrate: 128 kb/s
    [info]   Stream #0:0: Audio: mp3, 44100 Hz, stereo, fltp, 128 kb/s

``FFmpegLog`` is fed stderr in pieces cut anywhere and splits it by level:

* the error lines (``error``, ``fatal``, ``panic``: what ``-loglevel error``
  used to print, with their component prefix and without the level tag) are
  kept, bounded to their tail, for the error message;
* the input dump fills an ``InputInfo``: the container's ``Duration`` (from
  the header: MP4 ``mvhd``, FLAC ``STREAMINFO``, a Xing frame count, Matroska
  ``Duration``; from the size and bit rate when ffmpeg reads a file) and the
  bit rate (the container's, else the first audio stream's).

From a pipe ffmpeg cannot know the size, so a CBR MP3, a WAV or an Ogg file
says ``Duration: N/A``; ``InputInfo.size`` (the upstream's Content-Length)
and the bit rate then give the estimate. ``expected_duration()`` is the
container's duration when known, else size x 8 / bit rate, else None. It is
an estimate (ID3 tags count as audio, a VBR file's nominal rate may be off):
the decoded duration replaces it once the transcode ends.

Everything here is pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FFmpegLog", "InputInfo", "parse_clock", "parse_bitrate", "ERROR_LEVELS"]

# The levels ``-loglevel error`` shows: what the error message is made from.
ERROR_LEVELS = ("error", "fatal", "panic")
# "[mp3 @ 0x55d0c0] [error] text" or "[error] text": the component prefix (kept) and the level tag.
_LEVEL = re.compile(r"^((?:\[[^\]]* @ [^\]]*\] )?)\[(trace|debug|verbose|info|warning|error|fatal|panic)\] ?")
_DURATION = re.compile(r"^\s*Duration:\s*([^,]+)(?:,.*?bitrate:\s*([^,]+))?")
_AUDIO = re.compile(r"^\s*Stream #\d+:\d+.*?: Audio: .*?(\d+(?:\.\d+)?) kb/s")
# A line longer than this is not one the dump is made of: cut, so memory stays bounded.
_MAX_LINE = 4096


def parse_clock(text: str) -> float | None:
    """``00:03:25.52`` -> 205.52 seconds; ``N/A`` (or anything else) -> None."""
    m = re.fullmatch(r"\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)\s*", text)
    if m is None:
        return None
    seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return seconds if seconds > 0 else None


def parse_bitrate(text: str) -> int | None:
    """``128 kb/s`` -> 128000 bit/s; ``N/A`` -> None."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*kb/s\s*", text)
    if m is None:
        return None
    rate = round(float(m.group(1)) * 1000)
    return rate if rate > 0 else None


@dataclass
class InputInfo:
    """What is known of the input's length before it is decoded."""

    duration: float | None = None  # the container's, as ffmpeg's dump gives it
    bitrate: int | None = None  # bit/s: the container's, else the first audio stream's
    size: int | None = None  # bytes: the upstream's Content-Length, when ffmpeg reads a pipe

    def expected_duration(self) -> float | None:
        """Seconds (3 decimals): the container's duration, else size x 8 / bit rate, else None."""
        if self.duration is not None:
            return round(self.duration, 3)
        if self.size and self.bitrate:
            return round(self.size * 8 / self.bitrate, 3)
        return None


class FFmpegLog:
    """ffmpeg's ``level+info`` stderr, split: error lines kept (bounded), the input dump parsed."""

    def __init__(self, info: InputInfo | None = None, *, limit: int = 8 * 1024) -> None:
        self.info = info if info is not None else InputInfo()
        self.limit = limit
        self._errors = bytearray()
        self._partial = b""
        self._in_input = False  # inside the "Input #0" dump
        self._seen_input = False  # only the first input's dump counts

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[:_MAX_LINE]
        for line in lines:
            self._line(line[:_MAX_LINE].rstrip(b"\r").decode("utf-8", "replace"))

    def finish(self) -> None:
        if self._partial:
            self._line(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def errors(self) -> str:
        """The error lines so far, as ``-loglevel error`` would have printed them (the tail)."""
        return self._errors.decode("utf-8", "replace")

    def _line(self, line: str) -> None:
        m = _LEVEL.match(line)
        if m is None:
            # Not tagged: a continuation of a message; kept with the errors only
            # if nothing else can be said (ffmpeg tags every line it starts).
            return
        prefix, level, text = m.group(1), m.group(2), line[m.end():]
        if level in ERROR_LEVELS:
            self._errors += (prefix + text + "\n").encode()
            if len(self._errors) > self.limit:
                del self._errors[: len(self._errors) - self.limit]
            return
        if level != "info" or prefix:
            return
        if text.startswith("Input #"):
            self._in_input = not self._seen_input
            self._seen_input = True
            return
        if not text.startswith(" "):  # "Stream mapping:", "Output #0": the dump is over
            self._in_input = False
            return
        if not self._in_input:
            return
        d = _DURATION.match(text)
        if d is not None:
            self.info.duration = parse_clock(d.group(1))
            if d.group(2) is not None:
                self.info.bitrate = parse_bitrate(d.group(2))
            return
        a = _AUDIO.match(text)
        if a is not None and self.info.bitrate is None:
            self.info.bitrate = parse_bitrate(a.group(1) + " kb/s")
