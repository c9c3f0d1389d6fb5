"""What one transcode learns besides the chunks: tags, waveform, loudness.

Theory of operation
-------------------

The transcode's ffmpeg writes the file's tags as ``ffmetadata`` to one extra
pipe and the decoded PCM to another, which the analysis ffmpeg reads (see
``transcode/ffmpeg.py``). Everything here is pure: parsers are fed the bytes
those pipes carry, in pieces cut anywhere, and keep bounded state.

* ``parse_ffmetadata(text) -> Tags``: the global section of ffmpeg's
  ``;FFMETADATA1`` format (``key=value`` lines; ``=``, ``;``, ``#``, ``\\`` and
  newline escaped with a backslash). Only ffmpeg reads the file's own tags
  (ID3v1/v2, Vorbis comments, MP4 atoms, FLAC); this only reads ffmpeg's output.
* ``Waveform``: fed the analysis process's stdout, ``ametadata`` records of one
  ``Peak_level`` (dBFS) per 20 ms window of the mono downmix
  (``PEAKS_PER_SECOND`` = 50). The duration is unknown while streaming, so
  the raw peaks accumulate at that fixed rate and ``json()`` downsamples them
  (maximum per bucket) to at most ``WAVEFORM_POINTS`` (1,800): a 36 s track
  or longer gets 1,800 points, a shorter one 50 per second. A snapshot can be
  taken at any time (the waveform grows while the transcode runs). Memory is
  bounded: past ``MAX_RAW_PEAKS`` the raw peaks are folded pairwise (each
  raw point then covers twice the time).
* ``parse_loudness(stderr) -> Loudness``: the ``ebur128`` summary the analysis
  process logs when it ends (integrated loudness in LUFS, true peak in dBFS).

Tag text is untrusted: ``clean_text`` drops control and bidi-override
characters, folds whitespace and caps the length. It does NOT HTML-escape:
that is for whoever puts the text into HTML (the landing page, the embed, the
oEmbed ``html``), at the place it is shown.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .ffmpeg import PEAKS_PER_SECOND

__all__ = [
    "Tags",
    "Loudness",
    "Waveform",
    "MediaAnalysis",
    "BoundedText",
    "clean_text",
    "parse_ffmetadata",
    "parse_loudness",
    "MAX_TAG_CHARS",
    "MAX_METADATA_BYTES",
    "WAVEFORM_POINTS",
    "MAX_RAW_PEAKS",
]

MAX_TAG_CHARS = 200
# The ffmetadata pipe is read up to this much; the rest is drained and dropped.
MAX_METADATA_BYTES = 1 << 20
WAVEFORM_POINTS = 1800
# 2^18 raw peaks at 50/s is 87 minutes before the first fold; then 2.9 h per fold.
MAX_RAW_PEAKS = 1 << 18
# One ametadata record line is ~60 bytes; a longer one is not ours.
_MAX_LINE = 512

# Bidi embeddings/overrides/isolates and BOM-like marks that can turn text
# around on a page; the rest of category Cf (ZWJ in emoji, soft hyphen) stays.
_BIDI = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C, 0xFEFF])


def clean_text(value: str | None, max_chars: int = MAX_TAG_CHARS) -> str | None:
    """Untrusted tag text made safe to store: no control characters, capped; None if empty.

    Control characters (Unicode Cc: C0, DEL, C1) become spaces and runs of
    whitespace one space, so a tag cannot carry line breaks or terminal
    escapes; bidi overrides are removed; the result is NFC and at most
    ``max_chars`` characters (an ellipsis marks a cut). No HTML escaping here.
    """
    if not value:
        return None
    # Bound the work before normalising: NFC may grow a string, never by much.
    text = value[: max_chars * 4].translate(_BIDI)
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    text = unicodedata.normalize("NFC", " ".join(text.split()))
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "\u2026"
    return text or None


@dataclass(frozen=True, slots=True)
class Tags:
    """The file's own tags as ffmpeg read them, cleaned. Every field may be None.

    ``duration`` is the file's own claim (ID3 ``TLEN``), seconds; the decoded
    duration (the manifest's, or ``Waveform.seconds``) is the authority.
    """

    title: str | None = None
    artist: str | None = None
    album: str | None = None
    track: int | None = None
    year: int | None = None
    duration: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "artist": self.artist,
            "album": self.album,
            "track": self.track,
            "year": self.year,
            "duration": self.duration,
        }


_UNESCAPE = re.compile(r"\\(.)", re.S)


def _split_unescaped(line: str) -> tuple[str, str] | None:
    """``key=value`` with ffmetadata escapes: the first unescaped ``=`` splits."""
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == "=":
            return _UNESCAPE.sub(r"\1", line[:i]), _UNESCAPE.sub(r"\1", line[i + 1 :])
        i += 1
    return None


def _logical_lines(text: str) -> list[str]:
    """Lines, where a backslash before a newline continues the line (an escaped newline)."""
    lines: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            current.append(text[i : i + 2])
            i += 2
            continue
        if c == "\n":
            lines.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    if current:
        lines.append("".join(current))
    return lines


def _first_int(value: str | None, lo: int, hi: int) -> int | None:
    if not value:
        return None
    m = re.match(r"\s*0*(\d{1,6})", value)
    if m is None:
        return None
    number = int(m.group(1))
    return number if lo <= number <= hi else None


def _year(value: str | None) -> int | None:
    if not value:
        return None
    m = re.search(r"(?<!\d)(\d{4})(?!\d)", value[:64])
    if m is None:
        return None
    year = int(m.group(1))
    return year if 1000 <= year <= 2999 else None


def parse_ffmetadata(text: str) -> Tags:
    """The global section of an ``;FFMETADATA1`` document as ``Tags``.

    Keys are matched case-insensitively (Vorbis comments keep their case);
    the first occurrence of a key wins. ``[STREAM]``/``[CHAPTER]`` sections
    and ``;``/``#`` comment lines are ignored. Never raises on bad input.
    """
    values: dict[str, str] = {}
    for line in _logical_lines(text):
        if line.startswith("["):
            break  # sections follow the global tags
        if not line or line[0] in ";#":
            continue
        pair = _split_unescaped(line)
        if pair is None:
            continue
        key, value = pair[0].strip().lower(), pair[1]
        if key and key not in values:
            values[key] = value

    def pick(*keys: str) -> str | None:
        for key in keys:
            value = clean_text(values.get(key))
            if value is not None:
                return value
        return None

    duration = None
    tlen = _first_int(values.get("tlen"), 1, 48 * 3600 * 1000)
    if tlen is not None:
        duration = tlen / 1000.0
    return Tags(
        title=pick("title"),
        artist=pick("artist", "album_artist", "album artist", "albumartist", "performer", "composer"),
        album=pick("album"),
        track=_first_int(values.get("track") or values.get("tracknumber"), 1, 9999),
        year=_year(values.get("date") or values.get("year") or values.get("originaldate")
                   or values.get("tyer") or values.get("creation_time")),
        duration=duration,
    )


@dataclass(frozen=True, slots=True)
class Loudness:
    """EBU R128 integrated loudness (LUFS) and true peak (dBFS; None for digital silence)."""

    loudness_lufs: float
    true_peak_db: float | None


_SUMMARY_I = re.compile(r"Integrated loudness:\s*\n\s*I:\s*(-?\d+(?:\.\d+)?|-?inf)\s*LUFS")
_SUMMARY_TP = re.compile(r"True peak:\s*\n\s*Peak:\s*(-?\d+(?:\.\d+)?|-?inf)\s*dBFS")


def parse_loudness(stderr: str) -> Loudness | None:
    """The last ``ebur128`` summary in the analysis process's log, or None."""
    start = stderr.rfind("Summary:")
    if start < 0:
        return None
    tail = stderr[start:]
    i = _SUMMARY_I.search(tail)
    if i is None or "inf" in i.group(1):
        return None
    tp = _SUMMARY_TP.search(tail)
    peak = None if tp is None or "inf" in tp.group(1) else float(tp.group(1))
    return Loudness(loudness_lufs=float(i.group(1)), true_peak_db=peak)


class BoundedText:
    """Bytes of a side pipe kept up to ``limit``; anything beyond is counted and dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, piece: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += piece[:room]
        self.dropped += max(0, len(piece) - max(room, 0))

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _db_to_linear(db: float) -> float:
    if math.isnan(db) or db <= -120.0:
        return 0.0
    return min(1.0, math.pow(10.0, db / 20.0))


class Waveform:
    """Peaks (0..1, linear) of the mono downmix, at ``PEAKS_PER_SECOND``, fed incrementally."""

    def __init__(self, *, max_raw: int = MAX_RAW_PEAKS) -> None:
        self._raw: list[float] = []
        self._span = 1  # analysis windows per raw point (doubles on each fold)
        self._pending = 0.0  # max of the windows of a partial raw point
        self._pending_n = 0
        self._windows = 0
        self._max_raw = max_raw
        self._line = bytearray()
        self.complete = False

    # -- feeding ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes of ametadata ``print`` output, cut anywhere."""
        self._line += data
        while True:
            end = self._line.find(b"\n")
            if end < 0:
                if len(self._line) > _MAX_LINE:
                    self._line.clear()  # not a record of ours; resynchronise on the next newline
                return
            line = bytes(self._line[:end])
            del self._line[: end + 1]
            self._feed_line(line)

    def _feed_line(self, line: bytes) -> None:
        key, sep, value = line.partition(b"=")
        if not sep or not key.endswith(b"Peak_level"):
            return  # the frame:N pts:... header, or noise
        try:
            db = float(value)
        except ValueError:
            return
        self.add(_db_to_linear(db))

    def add(self, peak: float) -> None:
        """One analysis window's peak (linear)."""
        self._windows += 1
        self._pending = max(self._pending, peak)
        self._pending_n += 1
        if self._pending_n == self._span:
            self._raw.append(self._pending)
            self._pending, self._pending_n = 0.0, 0
            if len(self._raw) >= self._max_raw:
                self._fold()

    def _fold(self) -> None:
        raw = self._raw
        self._raw = [max(raw[i : i + 2]) for i in range(0, len(raw), 2)]
        self._span *= 2

    def finish(self) -> None:
        """The analysis ended: a partial raw point counts; nothing more comes."""
        if self._pending_n:
            self._raw.append(self._pending)
            self._pending, self._pending_n = 0.0, 0
        self.complete = True

    # -- reading ---------------------------------------------------------------

    @property
    def seconds(self) -> float:
        """Decoded audio the peaks cover so far."""
        return self._windows / PEAKS_PER_SECOND

    def peaks(self, points: int = WAVEFORM_POINTS) -> list[float]:
        raw = self._raw + ([self._pending] if self._pending_n else [])
        n = len(raw)
        if n <= points:
            return [round(p, 3) for p in raw]
        # Bucket i covers raw[i*n//points : (i+1)*n//points]: every raw peak in exactly one.
        return [round(max(raw[i * n // points : (i + 1) * n // points]), 3) for i in range(points)]

    def json(self, points: int = WAVEFORM_POINTS) -> dict[str, Any]:
        """``{"version": 1, "length": n, "peaks": [...]}`` plus ``duration`` (s) and ``complete``."""
        peaks = self.peaks(points)
        return {
            "version": 1,
            "length": len(peaks),
            "peaks": peaks,
            "duration": round(self.seconds, 3),
            "complete": self.complete,
        }


@dataclass
class MediaAnalysis:
    """Filled by the runner during one transcode; read by the gateway at any time.

    ``tags`` is set once the tag pipe closes (the end of the transcode),
    ``waveform`` grows while the transcode runs, ``loudness`` is set when the
    analysis process ends, ``head`` holds the first ``head_limit`` bytes of a
    piped input (for ``transcode.artwork``). ``error`` says why the analysis
    gave nothing, when it did not.
    """

    head_limit: int = 0
    tags: Tags | None = None
    tags_truncated: bool = False
    waveform: Waveform = field(default_factory=Waveform)
    loudness: Loudness | None = None
    head: bytearray = field(default_factory=bytearray)
    error: str | None = None

    def keep_head(self, piece: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += piece[:room]

    def manifest_fields(self) -> dict[str, float | None]:
        """What the manifest gains: ``loudness_lufs`` and ``true_peak_db`` (None when unmeasured)."""
        if self.loudness is None:
            return {"loudness_lufs": None, "true_peak_db": None}
        return {"loudness_lufs": self.loudness.loudness_lufs, "true_peak_db": self.loudness.true_peak_db}
