"""Incremental fragmented-MP4 splitter: bytes in, an init segment and fragments out.

Theory of operation
-------------------

ffmpeg (``-f mp4 -movflags +frag_keyframe+empty_moov+default_base_moof``)
and other CMAF muxers write ISO BMFF (ISO/IEC 14496-12) as a sequence of
top-level boxes; each box is a 32-bit size (1: a 64-bit size follows the
type; 0: the box runs to the end of the stream), a four-character type and
a payload::

    ftyp, moov (with mvex)              <- the init segment
    [styp] [sidx] [prft] [emsg] moof mdat ...   <- one fragment each
    mfra, free, ...                     <- skipped

A chunk of Ztream's fMP4 renditions is one fragment, byte-exact: the boxes
that lead up to a ``moof`` (``styp``, ``sidx``, ``prft``, ``emsg``), the
``moof`` and the ``mdat`` after it. The init segment is every byte before
the first fragment (``ftyp`` + ``moov`` for ffmpeg), so init + any fragment
is appendable to Media Source Extensions (the ISO BMFF byte stream format).
Boxes after a fragment that start none (``mfra``, ``free``, ``skip``,
``udta``, ``meta``...) are dropped without being buffered.

`FragmentSplitter` has no I/O, like `transcode.ebml.ClusterSplitter`:
``feed()`` appends bytes and runs a small state machine for as long as it
makes progress; pipe reads never align with boxes, so every step first
checks that the bytes it needs are buffered. The states::

    HEADER --first moof/styp/sidx/prft/emsg: emit InitSegment--> BODY
    BODY --styp/sidx/prft/emsg--> held, BODY
    BODY --moof--> held, MDAT (the next box must be an mdat)
    MDAT --mdat complete: emit Fragment--> BODY
    BODY --anything else--> SKIP --> BODY

A fragment is emitted as soon as the last byte of its ``mdat`` is buffered.
Its start is the ``tfdt`` base media decode time of its first track
fragment over that track's ``mdhd`` timescale; its duration is the sum of
the ``trun`` sample durations (each sample's own, else ``tfhd``'s default,
else ``trex``'s default from the init segment).

Buffers are bounded: an init segment over ``max_header_size`` or a fragment
over ``max_fragment_size`` raises `Fmp4Error`, as does anything that is not
an fMP4 this splitter can cut. No other exception leaves ``feed()`` or
``feed_eof()`` (fuzzed in tests/unit/transcode/test_fmp4.py).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .ebml import InitSegment

__all__ = ["Fmp4Error", "Fragment", "FragmentSplitter", "InitSegment"]

DEFAULT_MAX_FRAGMENT_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_HEADER_SIZE = 1024 * 1024

# Boxes that belong to the fragment that follows them.
_LEADING = frozenset({b"styp", b"sidx", b"ssix", b"prft", b"emsg"})
_HEADER_BOXES = frozenset({b"ftyp", b"moov", b"free", b"skip", b"udta", b"meta", b"uuid", b"pdin"})
_CONTAINERS_IN_MOOV = frozenset({b"trak", b"mdia", b"mvex"})


class Fmp4Error(ValueError):
    """The input is not fragmented MP4 this splitter can cut, or it is truncated."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """One fragment (leading boxes + ``moof`` + ``mdat``), byte-exact.

    ``start`` and ``duration`` are in seconds; ``index`` counts from 0.
    """

    index: int
    start: float
    duration: float
    data: bytes


class _State(enum.Enum):
    HEADER = "header"
    BODY = "body"
    MDAT = "mdat"  # a moof is held; its mdat comes next
    SKIP = "skip"
    CLOSED = "closed"
    ERROR = "error"


def _box_header(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[bytes, int, int] | None:
    """(type, header length, total size or -1 for "to the end") of the box at ``pos``, or None if cut."""
    if end - pos < 8:
        return None
    size, kind = struct.unpack_from(">I4s", buf, pos)
    header = 8
    if size == 1:
        if end - pos < 16:
            return None
        (size,) = struct.unpack_from(">Q", buf, pos + 8)
        header = 16
    elif size == 0:
        return bytes(kind), header, -1
    if size < header:
        raise Fmp4Error(f"box {bytes(kind)!r} of size {size} is smaller than its header")
    return bytes(kind), header, size


def _children(buf: memoryview, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in ``buf[start:end]``."""
    pos = start
    while pos < end:
        head = _box_header(buf, pos, end)
        if head is None:
            raise Fmp4Error("a box is cut short inside its parent")
        kind, header, size = head
        box_end = end if size < 0 else pos + size
        if box_end > end:
            raise Fmp4Error(f"box {kind!r} runs past its parent")
        yield kind, pos + header, box_end
        pos = box_end


def _u32(buf: memoryview, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise Fmp4Error("a box is too short for its fields")
    return int(struct.unpack_from(">I", buf, pos)[0])


def _u64(buf: memoryview, pos: int, end: int) -> int:
    if pos + 8 > end:
        raise Fmp4Error("a box is too short for its fields")
    return int(struct.unpack_from(">Q", buf, pos)[0])


class FragmentSplitter:
    """Cut a fragmented-MP4 byte stream into an `InitSegment` and `Fragment` events.

    ``feed(data)`` takes the next bytes, in pieces of any size, and returns
    the events they complete: at most one `InitSegment` (always first), then
    `Fragment` events in order. ``feed_eof()`` ends the stream. Both raise
    `Fmp4Error` for input that is not fMP4, that breaks the size limits, or
    (``feed_eof``) that ends mid-box or before any fragment. An error found
    after some events of the same call is raised by the next call instead,
    so that no completed event is lost.
    """

    def __init__(
        self,
        *,
        max_fragment_size: int = DEFAULT_MAX_FRAGMENT_SIZE,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    ) -> None:
        self.max_fragment_size = max_fragment_size
        self.max_header_size = max_header_size
        self._state = _State.HEADER
        self._buf = bytearray()
        self._pos = 0  # parse position in _buf: bytes before it are held (header or fragment)
        self._skip = 0  # SKIP: bytes left to drop
        self._index = 0
        self._moov = False
        self._timescales: dict[int, int] = {}  # mdhd timescale by track_ID
        self._trex_durations: dict[int, int] = {}  # trex default_sample_duration by track_ID
        self._error: Fmp4Error | None = None

    # -- public API --------------------------------------------------------

    def feed(self, data: bytes) -> list[InitSegment | Fragment]:
        """Add the next bytes of the stream; return the events completed."""
        self._check_open()
        if self._state is _State.SKIP:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
            if self._skip == 0:
                self._state = _State.BODY
        self._buf += data
        return self._run(eof=False)

    def feed_eof(self) -> list[InitSegment | Fragment]:
        """End the stream; return the events this completes.

        Raises `Fmp4Error` if the stream stops inside a box, after a
        ``moof`` without its ``mdat``, or before any fragment.
        """
        self._check_open()
        return self._run(eof=True)

    # -- machinery ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._state is _State.CLOSED:
            self._fail(Fmp4Error("input after feed_eof()"))

    def _fail(self, error: Fmp4Error) -> None:
        self._error = error
        self._state = _State.ERROR
        raise error

    def _run(self, *, eof: bool) -> list[InitSegment | Fragment]:
        events: list[InitSegment | Fragment] = []
        try:
            while self._step(events, eof):
                pass
            if eof:
                self._finish()
        except Fmp4Error as exc:
            if events:
                self._error = exc
                self._state = _State.ERROR
                return events
            self._fail(exc)
        except (struct.error, OverflowError, MemoryError) as exc:  # pragma: no cover - guarded above
            error = Fmp4Error(f"unparsable box: {exc}")
            if events:
                self._error, self._state = error, _State.ERROR
                return events
            self._fail(error)
        return events

    def _finish(self) -> None:
        if self._state is _State.SKIP or len(self._buf) > self._pos:
            raise Fmp4Error("the stream ends inside a box")
        if self._state is _State.HEADER:
            raise Fmp4Error("the stream ends before any fragment")
        if self._state is _State.MDAT:
            raise Fmp4Error("the stream ends after a moof without its mdat")
        if len(self._buf) > 0:
            raise Fmp4Error("the stream ends inside a box")
        self._state = _State.CLOSED

    def _step(self, events: list[InitSegment | Fragment], eof: bool) -> bool:
        if self._state is _State.SKIP:
            return False
        head = _box_header(self._buf, self._pos, len(self._buf))
        if head is None:
            self._check_bounds()
            return False
        kind, header, size = head
        if size < 0:
            if not eof:
                self._check_bounds(len(self._buf) - self._pos)
                return False
            size = len(self._buf) - self._pos  # a box of size 0 runs to the end of the stream
        if self._state is _State.HEADER:
            if kind in _LEADING or kind == b"moof":
                if not self._moov:
                    raise Fmp4Error("a fragment before the moov")
                events.append(InitSegment(bytes(self._buf[: self._pos])))
                self._drop(self._pos)
                self._state = _State.BODY
                return True
            if kind not in _HEADER_BOXES:
                raise Fmp4Error(f"unexpected box {kind!r} before the first fragment")
            if self._pos + size > self.max_header_size:
                raise Fmp4Error(f"init segment larger than {self.max_header_size} bytes")
            if len(self._buf) - self._pos < size:
                return False
            if kind == b"ftyp" and self._pos != 0:
                raise Fmp4Error("ftyp is not the first box")
            if kind == b"moov":
                self._parse_moov(memoryview(self._buf)[self._pos + header : self._pos + size])
                self._moov = True
            self._pos += size
            return True
        if self._state is _State.MDAT:
            if kind != b"mdat":
                raise Fmp4Error(f"a moof followed by {kind!r}, not an mdat")
            if self._pos + size > self.max_fragment_size:
                raise Fmp4Error(f"fragment larger than {self.max_fragment_size} bytes")
            if len(self._buf) - self._pos < size:
                return False
            self._pos += size
            self._emit(events)
            self._state = _State.BODY
            return True
        # BODY
        if kind in _LEADING or kind == b"moof":
            if self._pos + size > self.max_fragment_size:
                raise Fmp4Error(f"fragment larger than {self.max_fragment_size} bytes")
            if len(self._buf) - self._pos < size:
                return False
            self._pos += size
            if kind == b"moof":
                self._state = _State.MDAT
            return True
        if kind == b"mdat":
            raise Fmp4Error("an mdat without its moof")
        if kind in (b"ftyp", b"moov"):
            raise Fmp4Error(f"a second {kind.decode('latin-1')!r} after the first fragment")
        if self._pos != 0:
            raise Fmp4Error(f"box {kind!r} between a fragment's leading boxes and its moof")
        # Anything else (mfra, free, ...) is dropped without being buffered.
        dropped = min(size, len(self._buf))
        del self._buf[:dropped]
        if dropped < size:
            self._skip = size - dropped
            self._state = _State.SKIP
            return False
        return True

    def _check_bounds(self, pending: int = 0) -> None:
        limit = self.max_header_size if self._state is _State.HEADER else self.max_fragment_size
        if self._pos + pending > limit:
            raise Fmp4Error(f"{'init segment' if self._state is _State.HEADER else 'fragment'} "
                            f"larger than {limit} bytes")

    def _drop(self, length: int) -> None:
        del self._buf[:length]
        self._pos -= length

    def _emit(self, events: list[InitSegment | Fragment]) -> None:
        data = bytes(self._buf[: self._pos])
        start, duration = self._time_fragment(memoryview(data))
        events.append(Fragment(self._index, start, duration, data))
        self._index += 1
        self._drop(self._pos)

    # -- the boxes read for timing -----------------------------------------

    def _parse_moov(self, view: memoryview) -> None:
        for kind, start, end in _children(view, 0, len(view)):
            if kind == b"trak":
                self._parse_trak(view, start, end)
            elif kind == b"mvex":
                for child, c_start, c_end in _children(view, start, end):
                    if child == b"trex":
                        # version/flags, track_ID, default_sample_description_index, default_sample_duration
                        track = _u32(view, c_start + 4, c_end)
                        self._trex_durations[track] = _u32(view, c_start + 12, c_end)

    def _parse_trak(self, view: memoryview, start: int, end: int) -> None:
        track: int | None = None
        timescale: int | None = None
        for kind, c_start, c_end in _children(view, start, end):
            if kind == b"tkhd":
                version = view[c_start] if c_start < c_end else 0
                # after version/flags: creation and modification times (32 or 64 bits each)
                track = _u32(view, c_start + (20 if version == 1 else 12), c_end)
            elif kind == b"mdia":
                for child, m_start, m_end in _children(view, c_start, c_end):
                    if child == b"mdhd":
                        version = view[m_start] if m_start < m_end else 0
                        timescale = _u32(view, m_start + (20 if version == 1 else 12), m_end)
        if track is None or timescale is None:
            raise Fmp4Error("a trak without tkhd or mdhd")
        if timescale == 0:
            raise Fmp4Error("an mdhd timescale of 0")
        self._timescales[track] = timescale

    def _time_fragment(self, view: memoryview) -> tuple[float, float]:
        moof: tuple[int, int] | None = None
        for kind, start, end in _children(view, 0, len(view)):
            if kind == b"moof":
                moof = (start, end)
        if moof is None:  # pragma: no cover - a fragment always holds its moof
            raise Fmp4Error("a fragment without a moof")
        for kind, start, end in _children(view, *moof):
            if kind == b"traf":
                return self._time_traf(view, start, end)
        raise Fmp4Error("a moof without a traf")

    def _time_traf(self, view: memoryview, start: int, end: int) -> tuple[float, float]:
        track: int | None = None
        default_duration: int | None = None
        base: int | None = None
        total = 0
        runs: list[tuple[int, int]] = []
        for kind, c_start, c_end in _children(view, start, end):
            if kind == b"tfhd":
                flags = _u32(view, c_start, c_end) & 0xFFFFFF
                track = _u32(view, c_start + 4, c_end)
                pos = c_start + 8
                if flags & 0x01:  # base-data-offset
                    pos += 8
                if flags & 0x02:  # sample-description-index
                    pos += 4
                if flags & 0x08:  # default-sample-duration
                    default_duration = _u32(view, pos, c_end)
            elif kind == b"tfdt":
                version = view[c_start] if c_start < c_end else 0
                base = _u64(view, c_start + 4, c_end) if version == 1 else _u32(view, c_start + 4, c_end)
            elif kind == b"trun":
                runs.append((c_start, c_end))
        if track is None:
            raise Fmp4Error("a traf without a tfhd")
        timescale = self._timescales.get(track)
        if timescale is None:
            raise Fmp4Error(f"a traf of track {track}, which the moov does not have")
        if default_duration is None:
            default_duration = self._trex_durations.get(track, 0)
        for r_start, r_end in runs:
            total += self._trun_duration(view, r_start, r_end, default_duration)
        return (base or 0) / timescale, total / timescale

    @staticmethod
    def _trun_duration(view: memoryview, start: int, end: int, default_duration: int) -> int:
        flags = _u32(view, start, end) & 0xFFFFFF
        count = _u32(view, start + 4, end)
        pos = start + 8
        if flags & 0x001:  # data-offset
            pos += 4
        if flags & 0x004:  # first-sample-flags
            pos += 4
        if not flags & 0x100:  # no per-sample duration
            return count * default_duration
        stride = 4 * sum(1 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
        if pos + count * stride > end:
            raise Fmp4Error("a trun shorter than its sample count")
        return sum(_u32(view, pos + i * stride, end) for i in range(count))
