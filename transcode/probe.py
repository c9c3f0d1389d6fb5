"""Does this upstream need seeking? ISO-BMFF top-level boxes, read from the first bytes.

Theory of operation
-------------------

An MP4/M4A/MOV/3GP file (ISO/IEC 14496-12, "ISO base media file format") is
a sequence of boxes: a 32-bit big-endian size, a 4-character type, then the
payload. A size of 1 means a 64-bit ``largesize`` follows the type; a size of
0 means "to the end of the file" (section 4.2). ``moov`` holds the sample
tables, ``mdat`` the samples. ffmpeg reading a pipe can only play the file if
``moov`` comes first ("faststart"); with ``moov`` after ``mdat`` (ffmpeg's own
default for ``.m4a``) it would have to seek back, and fails.

``probe_container(head)`` walks the top-level boxes in the first bytes and
says whether the file is ISO-BMFF, whether it needs seeking, and where the
boxes after ``mdat`` start (``moov`` is there, or after a ``free``). Pure: no
I/O, any prefix of the file may be given; too short a prefix gives
``decided=False``.

``faststart_moov(moov, delta)`` is the other pure half, what qt-faststart
does: once ``moov`` is fetched (an HTTP Range request for the tail), it is
moved in front of ``mdat``, so every chunk offset in it (``stco`` 32-bit,
``co64`` 64-bit entries, section 8.7.5) grows by ``delta``, the moov's size.
The file then streams through a pipe: ``ftyp``, the patched ``moov``, then the
original bytes up to where ``moov`` was.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "Box",
    "ContainerProbe",
    "ProbeError",
    "iter_boxes",
    "probe_container",
    "find_box",
    "faststart_moov",
    "HEAD_BYTES",
]

# Enough for ftyp + the header of the next boxes in every file seen; a moov
# first is seen at once (its header is all that is needed).
HEAD_BYTES = 64 * 1024

# Top-level box types a file may start with (ISO BMFF, QuickTime, 3GPP).
_FIRST = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"sidx", b"moof"}
# Boxes whose payload is only boxes, on the way down to the chunk offsets.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex"}


class ProbeError(ValueError):
    """Malformed boxes, or a moov that cannot be moved (an offset would overflow)."""


@dataclass(frozen=True, slots=True)
class Box:
    type: bytes
    offset: int  # of the box header, relative to the start of the data walked (plus ``base``)
    header: int  # 8, or 16 with a largesize
    size: int | None  # None: to the end of the file

    @property
    def end(self) -> int | None:
        return None if self.size is None else self.offset + self.size


@dataclass(frozen=True, slots=True)
class ContainerProbe:
    """What the first bytes say.

    ``isobmff``: they start like an ISO-BMFF file. ``needs_seek``: ``mdat``
    comes before ``moov``, so a pipe cannot play it. ``moov_offset``: where
    the boxes after ``mdat`` start (when ``needs_seek`` and ``mdat`` has a
    size). ``prefix_end``: the end of a leading ``ftyp`` (0 without one).
    ``decided``: False if the bytes ended before ``moov`` or ``mdat``.
    """

    isobmff: bool
    needs_seek: bool = False
    moov_offset: int | None = None
    prefix_end: int = 0
    decided: bool = True


def _header(data: bytes, offset: int) -> tuple[bytes, int, int | None] | None:
    """(type, header size, box size or None) at ``offset``, None if not all buffered."""
    if offset + 8 > len(data):
        return None
    size32, kind = struct.unpack_from(">I4s", data, offset)
    if size32 == 1:
        if offset + 16 > len(data):
            return None
        (large,) = struct.unpack_from(">Q", data, offset + 8)
        if large < 16:
            raise ProbeError(f"box {kind!r} at {offset}: largesize {large} < 16")
        return kind, 16, large
    if size32 == 0:
        return kind, 8, None
    if size32 < 8:
        raise ProbeError(f"box {kind!r} at {offset}: size {size32} < 8")
    return kind, 8, size32


def iter_boxes(data: bytes, start: int = 0, stop: int | None = None, *, base: int = 0) -> Iterator[Box]:
    """The boxes in ``data[start:stop]`` whose header is buffered; raises ``ProbeError`` if malformed.

    A box may extend past the data (only its header is needed). ``base`` is
    added to every offset (the data's own position in the file).
    """
    end = len(data) if stop is None else stop
    offset = start
    while offset < end:
        header = _header(data, offset)
        if header is None:
            return
        kind, hsize, size = header
        yield Box(kind, base + offset, hsize, size)
        if size is None:
            return
        offset += size


def _plausible_type(kind: bytes) -> bool:
    return all(0x20 <= c < 0x7F for c in kind)


def probe_container(head: bytes) -> ContainerProbe:
    """Walk the top-level boxes of the file's first bytes; see ``ContainerProbe``."""
    first = _header(head, 0) if len(head) >= 8 else None
    if first is None:
        return ContainerProbe(isobmff=False, decided=len(head) >= 8)
    try:
        if first[0] not in _FIRST:
            return ContainerProbe(isobmff=False)
    except ProbeError:
        return ContainerProbe(isobmff=False)
    prefix_end = 0
    try:
        for box in iter_boxes(head):
            if not _plausible_type(box.type):
                return ContainerProbe(isobmff=True, prefix_end=prefix_end)
            if box.offset == 0 and box.type == b"ftyp" and box.size is not None:
                prefix_end = box.size
            if box.type in (b"moov", b"moof"):
                return ContainerProbe(isobmff=True, prefix_end=prefix_end)
            if box.type == b"mdat":
                return ContainerProbe(isobmff=True, needs_seek=True, moov_offset=box.end, prefix_end=prefix_end)
            if box.size is None:
                # A box to the end of the file and neither moov nor mdat: let ffmpeg judge.
                return ContainerProbe(isobmff=True, prefix_end=prefix_end)
    except ProbeError:
        # Malformed: ffmpeg gives the real answer (and the error) from a pipe.
        return ContainerProbe(isobmff=True, prefix_end=prefix_end)
    return ContainerProbe(isobmff=True, prefix_end=prefix_end, decided=False)


def find_box(data: bytes, kind: bytes) -> tuple[int, int] | None:
    """(start, end) in ``data`` of the first top-level ``kind`` box wholly inside it."""
    for box in iter_boxes(data):
        if box.type == kind:
            if box.size is None or box.offset + box.size > len(data):
                return None
            return box.offset, box.offset + box.size
    return None


def _patch(buf: bytearray, start: int, end: int, delta: int) -> int:
    """Patch the chunk offsets of every stco/co64 under ``buf[start:end]``; returns how many."""
    patched = 0
    for box in iter_boxes(bytes(buf[start:end]), base=start):
        if box.size is None or box.end is None or box.end > end:
            raise ProbeError(f"box {box.type!r} at {box.offset} runs past its parent")
        body = box.offset + box.header
        if box.type in _CONTAINERS:
            patched += _patch(buf, body, box.end, delta)
        elif box.type in (b"stco", b"co64"):
            wide = box.type == b"co64"
            if body + 8 > box.end:
                raise ProbeError(f"{box.type!r} too short")
            (count,) = struct.unpack_from(">I", buf, body + 4)
            item = 8 if wide else 4
            if body + 8 + count * item > box.end:
                raise ProbeError(f"{box.type!r} holds {count} entries, more than fit")
            fmt = ">Q" if wide else ">I"
            limit = (1 << 64) - 1 if wide else (1 << 32) - 1
            for i in range(count):
                at = body + 8 + i * item
                (value,) = struct.unpack_from(fmt, buf, at)
                if value + delta > limit:
                    raise ProbeError("a chunk offset would overflow stco once moov is moved")
                struct.pack_into(fmt, buf, at, value + delta)
            patched += 1
    return patched


def faststart_moov(moov: bytes, delta: int) -> bytes:
    """``moov`` (the whole box) with every chunk offset moved by ``delta`` bytes.

    Raises ``ProbeError`` if it is not a well-formed moov, holds no chunk
    offset table, or an offset would overflow (then spool instead).
    """
    kinds = list(iter_boxes(moov))
    if not kinds or kinds[0].type != b"moov" or kinds[0].size != len(moov):
        raise ProbeError("not exactly one moov box")
    buf = bytearray(moov)
    header = kinds[0].header
    if _patch(buf, header, len(buf), delta) == 0:
        raise ProbeError("moov has no chunk offset table")
    return bytes(buf)
