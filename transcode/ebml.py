"""Incremental WebM splitter: bytes in, an init segment and Clusters out.

Theory of operation
-------------------

ffmpeg writes WebM (a Matroska subset) to a pipe. WebM is EBML (RFC 8794):
every element is an ID (a 1-4 byte VINT, marker bit kept), a size (a 1-8
byte VINT, marker bit dropped; all value bits set means "unknown size") and a
payload. The stream is::

    EBML header (0x1A45DFA3)
    Segment (0x18538067), unknown size when ffmpeg runs with ``-live 1``
        SeekHead, Void, Info, Tracks, Tags, ...   <- the init segment
        Cluster (0x1F43B675) ...                  <- one chunk each
        Cues, Tags, ...                           <- skipped

A chunk of Ztream is one Cluster, byte-exact, and the init segment is every
byte before the first Cluster (docs/http.md, "The manifest"), so that
init + any Cluster is appendable to Media Source Extensions.

`ClusterSplitter` has no I/O, in the style of h11: `feed()` appends bytes to
an internal buffer and runs a small state machine over it for as long as it
makes progress, returning the events completed so far; `feed_eof()` says the
stream ended. Pipe reads never align with elements, so every step first
checks that the bytes it needs are buffered and otherwise waits for the next
`feed()`; nothing depends on how the input was cut.

The states, one per position in the grammar above::

    EBML_HEADER -> SEGMENT -> HEADER --Cluster ID: emit InitSegment--> BODY
    BODY --Cluster, known size----> CLUSTER ---------emit Cluster--> BODY
    BODY --Cluster, unknown size--> CLUSTER_UNKNOWN --emit Cluster--> BODY
    BODY --Cues, Tags, Void...----> SKIP -----------------------------> BODY
    BODY --end of a sized Segment--> SEGMENT_END (nothing may follow)

A Cluster of known size (what ffmpeg writes) is emitted as soon as its last
byte is buffered. A Cluster of unknown size has no end marker: RFC 8794
section 6.2 ends it at the first element that cannot be its child, so its
children are walked as they arrive and it is emitted when the next level-1
ID (or the end of the stream) shows up. Level-1 elements after the first
Cluster that are not Clusters (Cues, Tags, ...) are dropped without being
buffered.

A Cluster's start is its Timecode (0xE7) times the TimecodeScale from Info
(Matroska spec, default 1 ms). Its duration runs to the end of its last
block: that block's relative timecode plus its BlockDuration (0x9B) if it
has one, else the length of its Opus packets read from their TOC bytes (RFC
6716 section 3.1; laced frames are summed) less any DiscardPadding, else
(another codec) the median gap between the Cluster's blocks. ffmpeg's Opus
output has no BlockDuration, so the TOC is what is used in practice, and
its last packet carries DiscardPadding.

Buffers are bounded: an init segment over ``max_header_size`` or a Cluster
over ``max_cluster_size`` is an `EbmlError`, as is anything that is not
well-formed WebM. Events completed before an error are still returned; the
error is raised by the next call, the way h11 hands out events one at a time
before the one that fails. After an error, every call raises it again.

References: RFC 8794 (EBML), RFC 9559 (Matroska), the WebM container
guidelines (https://www.webmproject.org/docs/container/), RFC 6716 (Opus).
"""

from __future__ import annotations

import enum
import itertools
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Cluster", "ClusterSplitter", "EbmlError", "InitSegment"]


class EbmlError(ValueError):
    """The input is not WebM this splitter can cut, or it is truncated."""


@dataclass(frozen=True, slots=True)
class InitSegment:
    """Every byte before the first Cluster: EBML header, Segment header,
    SeekHead/Info/Tracks/Tags... Emitted once, before any `Cluster`."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Cluster:
    """One whole Cluster element (ID + size + payload), byte-exact.

    ``start`` and ``duration`` are in seconds; ``index`` counts from 0.
    """

    index: int
    start: float
    duration: float
    data: bytes


# Element IDs, marker bits kept as the specs write them.
EBML_ID = 0x1A45DFA3
DOCTYPE_ID = 0x4282
SEGMENT_ID = 0x18538067
SEEKHEAD_ID = 0x114D9B74
INFO_ID = 0x1549A966
TIMECODE_SCALE_ID = 0x2AD7B1
TRACKS_ID = 0x1654AE6B
TRACK_ENTRY_ID = 0xAE
TRACK_NUMBER_ID = 0xD7
CODEC_ID_ID = 0x86
CUES_ID = 0x1C53BB6B
CHAPTERS_ID = 0x1043A770
ATTACHMENTS_ID = 0x1941A469
TAGS_ID = 0x1254C367
CLUSTER_ID = 0x1F43B675
TIMECODE_ID = 0xE7
SIMPLE_BLOCK_ID = 0xA3
BLOCK_GROUP_ID = 0xA0
BLOCK_ID = 0xA1
BLOCK_DURATION_ID = 0x9B
DISCARD_PADDING_ID = 0x75A2
VOID_ID = 0xEC
CRC32_ID = 0xBF

# The children of a Segment (Matroska spec, "Segment" and its Level-1
# children), plus the two global elements RFC 8794 section 17 allows
# anywhere. Anything else at level 1 is taken as corruption rather than
# skipped: the producer is our own ffmpeg, and a wrong byte there would
# otherwise be read as an element of arbitrary size.
LEVEL1_IDS = frozenset(
    {
        SEEKHEAD_ID,
        INFO_ID,
        TRACKS_ID,
        CUES_ID,
        CHAPTERS_ID,
        ATTACHMENTS_ID,
        TAGS_ID,
        CLUSTER_ID,
        VOID_ID,
        CRC32_ID,
    }
)
# IDs that end a Cluster of unknown size (RFC 8794 section 6.2): a sibling
# or an element of a higher level. Void and CRC-32 are not here because they
# may also be children of the Cluster.
_CLUSTER_ENDERS = (LEVEL1_IDS - {VOID_ID, CRC32_ID}) | {EBML_ID, SEGMENT_ID}

DEFAULT_TIMECODE_SCALE = 1_000_000  # ns per tick, Matroska default
DEFAULT_MAX_CLUSTER_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_HEADER_SIZE = 1024 * 1024

_UNKNOWN = -1  # sentinel size; real sizes are >= 0


class _State(enum.Enum):
    EBML_HEADER = enum.auto()  # expecting the EBML header element
    SEGMENT = enum.auto()  # expecting the Segment header
    HEADER = enum.auto()  # level-1 elements before the first Cluster
    BODY = enum.auto()  # level-1 elements from the first Cluster on
    CLUSTER = enum.auto()  # inside a Cluster of known size
    CLUSTER_UNKNOWN = enum.auto()  # inside a Cluster of unknown size
    SKIP = enum.auto()  # dropping a level-1 element after the Clusters
    SEGMENT_END = enum.auto()  # a Segment of known size has ended
    CLOSED = enum.auto()  # feed_eof() returned
    ERROR = enum.auto()


# ---------------------------------------------------------------------------
# EBML primitives (RFC 8794 sections 4 and 5). Each returns None when the
# buffer ends too early, so callers can wait for more input.


def _vint_length(first: int, max_length: int, what: str) -> int:
    # The length is one more than the count of leading zero bits.
    if first == 0:
        raise EbmlError(f"{what} without a VINT marker in its first byte")
    length = 9 - first.bit_length()
    if length > max_length:
        raise EbmlError(f"{what} of {length} bytes, at most {max_length} allowed")
    return length


def _read_id(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int] | None:
    """Return (element ID with marker, its length) or None if incomplete."""
    if pos >= end:
        return None
    length = _vint_length(buf[pos], 4, "element ID")
    if pos + length > end:
        return None
    value = int.from_bytes(buf[pos : pos + length], "big")
    data_bits = value & ((1 << (7 * length)) - 1)
    # RFC 8794 section 5: VINT_DATA of an ID is never all zeros or all ones.
    if data_bits == 0 or data_bits == (1 << (7 * length)) - 1:
        raise EbmlError(f"invalid element ID 0x{value:X}")
    return value, length


def _read_size(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int] | None:
    """Return (data size or _UNKNOWN, its length) or None if incomplete."""
    if pos >= end:
        return None
    length = _vint_length(buf[pos], 8, "element data size")
    if pos + length > end:
        return None
    mask = (1 << (7 * length)) - 1
    value = int.from_bytes(buf[pos : pos + length], "big") & mask
    # RFC 8794 section 6.2: all VINT_DATA bits set is the unknown size.
    return (_UNKNOWN if value == mask else value), length


def _read_header(
    buf: bytes | bytearray | memoryview, pos: int, end: int
) -> tuple[int, int, int] | None:
    """Return (ID, data size or _UNKNOWN, header length) or None."""
    id_ = _read_id(buf, pos, end)
    if id_ is None:
        return None
    size = _read_size(buf, pos + id_[1], end)
    if size is None:
        return None
    return id_[0], size[0], id_[1] + size[1]


def _children(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (ID, data start, data end) of the children of a complete master
    element whose payload is buf[start:end]."""
    pos = start
    while pos < end:
        header = _read_header(buf, pos, end)
        if header is None:
            raise EbmlError("child element header crosses its parent's end")
        id_, size, header_length = header
        if size == _UNKNOWN:
            raise EbmlError(f"element 0x{id_:X} of unknown size inside a sized parent")
        data_start = pos + header_length
        pos = data_start + size
        if pos > end:
            raise EbmlError(f"element 0x{id_:X} crosses its parent's end")
        yield id_, data_start, pos


def _uint(data: memoryview) -> int:
    if len(data) > 8:
        raise EbmlError("unsigned integer element longer than 8 bytes")
    return int.from_bytes(data, "big")


def _int(data: memoryview) -> int:
    if len(data) > 8:
        raise EbmlError("signed integer element longer than 8 bytes")
    return int.from_bytes(data, "big", signed=True)


# ---------------------------------------------------------------------------
# Block timing


def _opus_duration(packet: memoryview) -> float | None:
    """Seconds of audio in one Opus packet, from its TOC byte (RFC 6716
    section 3.1), or None if the packet is too short to say."""
    if not packet:
        return None
    toc = packet[0]
    config = toc >> 3
    if config < 12:  # SILK-only
        frame = (0.010, 0.020, 0.040, 0.060)[config & 3]
    elif config < 16:  # hybrid
        frame = (0.010, 0.020)[config & 1]
    else:  # CELT-only
        frame = (0.0025, 0.005, 0.010, 0.020)[config & 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    elif len(packet) >= 2:
        count = packet[1] & 0x3F
    else:
        return None
    return count * frame


@dataclass(frozen=True, slots=True)
class _Block:
    track: int
    ticks: int  # absolute, in TimecodeScale units
    duration: float | None  # seconds, None when it must be estimated


def _lace_frames(data: memoryview, count: int, lacing: int) -> list[memoryview]:
    """Split the frames of a laced block (Matroska spec, "Block Lacing");
    ``data`` starts after the frame count byte."""
    sizes: list[int] = []
    pos = 0
    if lacing == 1:  # Xiph: each size a run of 255s plus a final byte
        for _ in range(count - 1):
            size = 0
            while True:
                if pos >= len(data):
                    raise EbmlError("truncated Xiph lace")
                byte = data[pos]
                pos += 1
                size += byte
                if byte != 255:
                    break
            sizes.append(size)
    elif lacing == 3:  # EBML: a VINT, then signed VINT differences
        for i in range(count - 1):
            vint = _read_size(data, pos, len(data))
            if vint is None or vint[0] == _UNKNOWN:
                raise EbmlError("truncated EBML lace")
            value, length = vint
            pos += length
            if i:
                value += sizes[-1] - ((1 << (7 * length - 1)) - 1)
            sizes.append(value)
    else:  # fixed: equal sizes
        if len(data) % count:
            raise EbmlError("fixed-size lace does not divide its block")
        sizes = [len(data) // count] * (count - 1)
    last = len(data) - pos - sum(sizes)
    if last < 0 or any(size < 0 for size in sizes):
        raise EbmlError("lace sizes overrun their block")
    frames = []
    for size in [*sizes, last]:
        frames.append(data[pos : pos + size])
        pos += size
    return frames


def _parse_block(
    data: memoryview,
    cluster_ticks: int,
    block_duration: int | None,
    discard_padding: int,
    timecode_scale: int,
    codecs: dict[int, str],
) -> _Block:
    # Block and SimpleBlock share this layout (Matroska spec, "Block
    # Structure"): track number VINT, int16 relative timecode, flags, frames.
    track = _read_size(data, 0, len(data))
    if track is None or track[0] == _UNKNOWN or track[1] + 3 > len(data):
        raise EbmlError("truncated block header")
    number, offset = track
    relative = int.from_bytes(data[offset : offset + 2], "big", signed=True)
    lacing = (data[offset + 2] >> 1) & 3
    ticks = cluster_ticks + relative
    if block_duration is not None:
        return _Block(number, ticks, block_duration * timecode_scale / 1e9)
    if codecs.get(number) != "A_OPUS":
        return _Block(number, ticks, None)
    body = data[offset + 3 :]
    if lacing:
        if not body:
            raise EbmlError("laced block without a frame count")
        frames = _lace_frames(body[1:], body[0] + 1, lacing)
    else:
        frames = [body]
    total = 0.0
    for frame in frames:
        duration = _opus_duration(frame)
        if duration is None:
            return _Block(number, ticks, None)
        total += duration
    # DiscardPadding (ns) trims the encoder's padding off the last packet;
    # without it the final chunk would claim a few ms that never play.
    return _Block(number, ticks, max(0.0, total - max(0, discard_padding) / 1e9))


# ---------------------------------------------------------------------------


class ClusterSplitter:
    """Cut a WebM byte stream into an `InitSegment` and `Cluster` events.

    ``feed(data)`` takes the next bytes of the stream, in pieces of any size,
    and returns the events they complete: at most one `InitSegment` (always
    first), then `Cluster` events in order. ``feed_eof()`` ends the stream
    and returns what that completes (a Cluster of unknown size).

    Both raise `EbmlError` for input that is not WebM, that breaks the
    configured size limits, or (``feed_eof``) that ends mid-element or
    before any Cluster. An error found after some events of the same call is
    raised by the next call instead, so that no completed event is lost.
    """

    def __init__(
        self,
        *,
        max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE,
        max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    ) -> None:
        self.max_cluster_size = max_cluster_size
        self.max_header_size = max_header_size
        self._timecode_scale = DEFAULT_TIMECODE_SCALE
        self._codecs: dict[int, str] = {}  # CodecID by TrackNumber
        self._state = _State.EBML_HEADER
        self._buf = bytearray()
        self._pos = 0  # parse position in _buf
        self._consumed = 0  # stream offset of _buf[0]
        self._segment_end: int | None = None  # stream offset, if sized
        self._need = 0  # CLUSTER: bytes of the Cluster; SKIP: bytes left
        self._index = 0
        self._gaps: dict[int, float] = {}  # last known block gap per track
        self._error: EbmlError | None = None

    # -- public API --------------------------------------------------------

    def feed(self, data: bytes) -> list[InitSegment | Cluster]:
        """Add the next bytes of the stream; return the events completed."""
        self._check_open()
        self._buf += data
        return self._run(eof=False)

    def feed_eof(self) -> list[InitSegment | Cluster]:
        """End the stream; return the events this completes.

        Raises `EbmlError` if the stream stops inside an element, inside a
        Segment of known size, or before any Cluster.
        """
        self._check_open()
        return self._run(eof=True)

    # -- machinery ---------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._state is _State.CLOSED:
            self._fail(EbmlError("input after feed_eof()"))

    def _fail(self, error: EbmlError) -> None:
        self._error = error
        self._state = _State.ERROR
        raise error

    def _run(self, *, eof: bool) -> list[InitSegment | Cluster]:
        events: list[InitSegment | Cluster] = []
        try:
            while self._step(events):
                pass
            if eof:
                self._finish(events)
                self._state = _State.CLOSED
        except EbmlError as error:
            self._error = error
            self._state = _State.ERROR
            self._buf = bytearray()  # nothing more will be parsed
            if not events:
                raise
        return events

    def _step(self, events: list[InitSegment | Cluster]) -> bool:
        """Advance by one element or piece of one; False when input is
        needed."""
        state = self._state
        if state is _State.CLUSTER:
            if len(self._buf) < self._need:
                return False
            self._emit_cluster(self._need, events)
            self._state = _State.BODY
            return True
        if state is _State.CLUSTER_UNKNOWN:
            return self._scan_unknown_cluster(events, eof=False)
        if state is _State.SKIP:
            dropped = min(self._need, len(self._buf))
            self._drop(dropped)
            self._need -= dropped
            if self._need:
                return False
            self._state = _State.BODY
            return True
        if state is _State.BODY:
            return self._step_body()
        if state is _State.SEGMENT_END:
            if self._buf:
                raise EbmlError("data after the end of the Segment")
            return False
        if state is _State.EBML_HEADER:
            return self._step_ebml_header()
        if state is _State.SEGMENT:
            return self._step_segment()
        if state is _State.HEADER:
            return self._step_header(events)
        raise AssertionError(state)  # pragma: no cover

    def _step_ebml_header(self) -> bool:
        # Fail on the first wrong byte rather than waiting for a header.
        magic = EBML_ID.to_bytes(4, "big")
        seen = bytes(self._buf[:4])
        if not magic.startswith(seen):
            raise EbmlError("not an EBML stream (no EBML header)")
        header = self._header_at(self._pos)
        if header is None:
            return False
        _, size, header_length = header
        end = self._element_end(size, header_length, "EBML header")
        if end is None:
            return False
        view = memoryview(self._buf)
        try:
            doctype = ""
            for id_, start, stop in _children(view, self._pos + header_length, end):
                if id_ == DOCTYPE_ID:
                    doctype = bytes(view[start:stop]).rstrip(b"\0").decode("ascii", "replace")
        finally:
            view.release()
        if doctype not in ("webm", "matroska"):
            raise EbmlError(f"EBML DocType {doctype!r} is not webm or matroska")
        self._pos = end
        self._state = _State.SEGMENT
        return True

    def _step_segment(self) -> bool:
        header = self._header_at(self._pos)
        if header is None:
            return False
        id_, size, header_length = header
        if id_ == VOID_ID:  # RFC 8794 section 17.2 allows Void anywhere
            end = self._element_end(size, header_length, "Void")
            if end is None:
                return False
            self._pos = end
            return True
        if id_ != SEGMENT_ID:
            raise EbmlError(f"expected a Segment, found element 0x{id_:X}")
        self._pos += header_length
        if size != _UNKNOWN:
            self._segment_end = self._consumed + self._pos + size
        self._state = _State.HEADER
        return True

    def _step_header(self, events: list[InitSegment | Cluster]) -> bool:
        if self._at_segment_end():
            raise EbmlError("Segment ends before its first Cluster")
        id_only = self._level1_id_at(self._pos)
        if id_only == CLUSTER_ID:
            # The init segment is complete as soon as a Cluster ID shows.
            events.append(InitSegment(bytes(self._buf[: self._pos])))
            self._drop(self._pos)
            self._state = _State.BODY
            return True
        header = self._header_at(self._pos)
        if header is None:
            return False
        id_, size, header_length = header
        if size == _UNKNOWN:
            raise EbmlError(f"level-1 element 0x{id_:X} of unknown size")
        end = self._element_end(size, header_length, "init segment")
        if end is None:
            return False
        if id_ in (INFO_ID, TRACKS_ID):
            view = memoryview(self._buf)
            try:
                if id_ == INFO_ID:
                    self._parse_info(view, self._pos + header_length, end)
                else:
                    self._parse_tracks(view, self._pos + header_length, end)
            finally:
                view.release()
        self._pos = end
        return True

    def _step_body(self) -> bool:
        # Here _buf starts at a level-1 element boundary (_pos == 0).
        if self._at_segment_end():
            self._state = _State.SEGMENT_END
            return True
        header = self._level1_header_at(0)
        if header is None:
            return False
        id_, size, header_length = header
        if id_ == CLUSTER_ID:
            self._start_cluster(size, header_length)
            return True
        if size == _UNKNOWN:
            raise EbmlError(f"level-1 element 0x{id_:X} of unknown size")
        self._check_in_segment(header_length + size)
        # Cues, Tags... after the Clusters belong to no chunk; drop them as
        # they pass instead of buffering them.
        self._need = header_length + size
        self._state = _State.SKIP
        return True

    def _start_cluster(self, size: int, header_length: int) -> None:
        if size == _UNKNOWN:
            self._pos = header_length  # scan position of the next child
            self._state = _State.CLUSTER_UNKNOWN
            return
        if header_length + size > self.max_cluster_size:
            raise EbmlError(
                f"Cluster of {header_length + size} bytes is over the"
                f" limit of {self.max_cluster_size}"
            )
        self._check_in_segment(header_length + size)
        self._need = header_length + size
        self._state = _State.CLUSTER

    def _scan_unknown_cluster(self, events: list[InitSegment | Cluster], *, eof: bool) -> bool:
        # Walk the children as they arrive so that each byte is looked at
        # once, and stop at the first ID that cannot be a child.
        buf = self._buf
        while True:
            if self._at_segment_end(self._pos) or (eof and self._pos == len(buf)):
                break
            # The ID alone says whether the Cluster has ended: emit it
            # without waiting for the size bytes of what follows.
            id_only = _read_id(buf, self._pos, len(buf))
            if id_only is None:
                return False
            if id_only[0] in _CLUSTER_ENDERS:
                break
            header = _read_header(buf, self._pos, len(buf))
            if header is None:
                return False
            id_, size, header_length = header
            if size == _UNKNOWN:
                raise EbmlError(f"element 0x{id_:X} of unknown size inside a Cluster")
            end = self._pos + header_length + size
            if end > self.max_cluster_size:
                raise EbmlError(
                    f"Cluster of unknown size grew over the limit of {self.max_cluster_size}"
                )
            self._check_in_segment(end)
            if end > len(buf):
                return False
            self._pos = end
        self._emit_cluster(self._pos, events)
        self._state = _State.BODY
        return True

    def _finish(self, events: list[InitSegment | Cluster]) -> None:
        state = self._state
        if state is _State.CLUSTER_UNKNOWN:
            if not self._scan_unknown_cluster(events, eof=True):
                raise EbmlError("input ends inside a Cluster")
            while self._step(events):
                pass
            state = self._state
        if state in (_State.EBML_HEADER, _State.SEGMENT, _State.HEADER):
            if self._buf[self._pos :] or state is not _State.HEADER:
                raise EbmlError("input ends before the first Cluster")
            raise EbmlError("no Cluster in the input")
        if state is _State.CLUSTER:
            raise EbmlError("input ends inside a Cluster")
        if state is _State.SKIP:
            raise EbmlError("input ends inside a level-1 element")
        if state is _State.BODY:
            if self._buf:
                raise EbmlError("input ends inside an element header")
            if self._segment_end is not None and self._consumed < self._segment_end:
                raise EbmlError("input ends before the end of the Segment")

    # -- helpers -----------------------------------------------------------

    def _drop(self, count: int) -> None:
        del self._buf[:count]
        self._consumed += count
        self._pos = 0

    def _header_at(self, pos: int) -> tuple[int, int, int] | None:
        return _read_header(self._buf, pos, len(self._buf))

    def _level1_id_at(self, pos: int) -> int | None:
        # Check the ID before the size: corrupt input should fail at once,
        # not after waiting for bytes that will never make sense.
        id_ = _read_id(self._buf, pos, len(self._buf))
        if id_ is None:
            return None
        if id_[0] not in LEVEL1_IDS:
            raise EbmlError(f"unexpected element 0x{id_[0]:X} at level 1")
        return id_[0]

    def _level1_header_at(self, pos: int) -> tuple[int, int, int] | None:
        if self._level1_id_at(pos) is None:
            return None
        return self._header_at(pos)

    def _element_end(self, size: int, header_length: int, what: str) -> int | None:
        """End offset in _buf of the header element at _pos, or None until
        it is all buffered. Header elements count against max_header_size."""
        if size == _UNKNOWN:
            raise EbmlError(f"{what} element of unknown size")
        end = self._pos + header_length + size
        if end > self.max_header_size:
            raise EbmlError(f"{what} is over the limit of {self.max_header_size} bytes")
        self._check_in_segment(end)
        return end if end <= len(self._buf) else None

    def _check_in_segment(self, end: int) -> None:
        if self._segment_end is not None and self._consumed + end > self._segment_end:
            raise EbmlError("element crosses the end of its Segment")

    def _at_segment_end(self, pos: int | None = None) -> bool:
        offset = self._consumed + (self._pos if pos is None else pos)
        return self._segment_end is not None and offset >= self._segment_end

    def _parse_info(self, view: memoryview, start: int, end: int) -> None:
        for id_, data_start, data_end in _children(view, start, end):
            if id_ == TIMECODE_SCALE_ID:
                scale = _uint(view[data_start:data_end])
                if scale == 0:
                    raise EbmlError("TimecodeScale of 0")
                self._timecode_scale = scale

    def _parse_tracks(self, view: memoryview, start: int, end: int) -> None:
        for id_, entry_start, entry_end in _children(view, start, end):
            if id_ != TRACK_ENTRY_ID:
                continue
            number: int | None = None
            codec = ""
            for child, data_start, data_end in _children(view, entry_start, entry_end):
                if child == TRACK_NUMBER_ID:
                    number = _uint(view[data_start:data_end])
                elif child == CODEC_ID_ID:
                    raw = bytes(view[data_start:data_end]).rstrip(b"\0")
                    codec = raw.decode("ascii", "replace")
            if number is not None:
                self._codecs[number] = codec

    def _emit_cluster(self, length: int, events: list[InitSegment | Cluster]) -> None:
        data = bytes(self._buf[:length])
        start, duration = self._time_cluster(data)
        events.append(Cluster(self._index, start, duration, data))
        self._index += 1
        self._drop(length)

    def _time_cluster(self, data: bytes) -> tuple[float, float]:
        view = memoryview(data)
        header = _read_header(view, 0, len(view))
        assert header is not None  # the Cluster header was read before
        cluster_ticks: int | None = None
        # (payload of a Block or SimpleBlock, BlockDuration, DiscardPadding)
        raw_blocks: list[tuple[memoryview, int | None, int]] = []
        for id_, start, end in _children(view, header[2], len(view)):
            if id_ == TIMECODE_ID:
                cluster_ticks = _uint(view[start:end])
            elif id_ == SIMPLE_BLOCK_ID:
                raw_blocks.append((view[start:end], None, 0))
            elif id_ == BLOCK_GROUP_ID:
                block: memoryview | None = None
                block_duration: int | None = None
                discard_padding = 0
                for child, child_start, child_end in _children(view, start, end):
                    if child == BLOCK_ID:
                        block = view[child_start:child_end]
                    elif child == BLOCK_DURATION_ID:
                        block_duration = _uint(view[child_start:child_end])
                    elif child == DISCARD_PADDING_ID:
                        discard_padding = _int(view[child_start:child_end])
                if block is None:
                    raise EbmlError("BlockGroup without a Block")
                raw_blocks.append((block, block_duration, discard_padding))
        if cluster_ticks is None:
            raise EbmlError("Cluster without a Timecode")
        scale = self._timecode_scale
        start_seconds = cluster_ticks * scale / 1e9
        if not raw_blocks:
            return start_seconds, 0.0
        # Only the last block sets the end; the others are parsed only when
        # its length must be guessed from the gaps between them.
        block, block_duration, discard_padding = raw_blocks[-1]
        last = _parse_block(
            block, cluster_ticks, block_duration, discard_padding, scale, self._codecs
        )
        last_duration = last.duration
        if last_duration is None:
            blocks = [
                _parse_block(b, cluster_ticks, d, p, scale, self._codecs) for b, d, p in raw_blocks
            ]
            last_duration = self._median_gap(blocks, last.track)
        end_seconds = last.ticks * scale / 1e9 + last_duration
        return start_seconds, max(0.0, end_seconds - start_seconds)

    def _median_gap(self, blocks: list[_Block], track: int) -> float:
        # Without a packet length to read, blocks are taken to be as long as
        # the usual step between them; a lone block borrows the last step
        # seen in an earlier Cluster.
        ticks = [b.ticks for b in blocks if b.track == track]
        gaps = [b - a for a, b in itertools.pairwise(ticks) if b > a]
        if gaps:
            self._gaps[track] = statistics.median(gaps) * self._timecode_scale / 1e9
        return self._gaps.get(track, 0.0)
